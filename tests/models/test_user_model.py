"""A user's model from a "module:Class" spec (gnnkit.models.user_model): import forms and errors."""

import sys
import textwrap

import pytest
from torch import nn

from gnnkit.models.user_model import build_from_spec, is_model_spec, load_model_spec

SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn

    class MyModel(nn.Module):
        def __init__(self, in_channels, out_channels, edge_dim=None, hidden=8):
            super().__init__()
            self.sizes = (in_channels, out_channels, edge_dim)
            self.lin = nn.Linear(in_channels, out_channels)

        def forward(self, batch):
            return self.lin(batch.x).sum(0, keepdim=True)

    class Outer:
        class Inner(MyModel):
            pass

    class NotAModule:
        def __init__(self, in_channels, out_channels, edge_dim=None):
            pass

    class NoEdgeDim(nn.Module):
        def __init__(self, in_channels, out_channels):
            super().__init__()

    def factory(in_channels, out_channels, edge_dim=None):
        return MyModel(in_channels, out_channels, edge_dim)

    def bad_factory(in_channels, out_channels, edge_dim=None):
        return "not a module"

    WIDTH = 3
    """
)


@pytest.fixture
def user_package(tmp_path, monkeypatch):
    pkg = tmp_path / "my_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "my_module.py").write_text(SOURCE)
    (pkg / "broken.py").write_text("import a_dependency_that_is_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield pkg
    for name in [m for m in sys.modules if m == "my_pkg" or m.startswith("my_pkg.")]:
        del sys.modules[name]


def test_dotted_module_class_factory_and_nested_class(user_package):
    model = build_from_spec("my_pkg.my_module:MyModel", 13, 1, edge_dim=5)
    assert isinstance(model, nn.Module) and model.sizes == (13, 1, 5)
    assert build_from_spec("my_pkg.my_module:factory", 4, 2).sizes == (4, 2, None)
    assert build_from_spec("my_pkg.my_module:Outer.Inner", 3, 1).sizes == (3, 1, None)
    assert is_model_spec("my_pkg.my_module:MyModel") and not is_model_spec("mpnn")


def test_file_path_spec(user_package):
    path = user_package / "my_module.py"
    model = build_from_spec(f"{path}:MyModel", 6, 1, edge_dim=None)
    assert model.sizes == (6, 1, None)
    assert load_model_spec(f"{path}:MyModel") is load_model_spec(f"{path}:MyModel")  # imported once
    with pytest.raises(ValueError, match="no such file"):
        load_model_spec(f"{user_package / 'missing.py'}:MyModel")


@pytest.mark.parametrize(
    "spec,error,match",
    [
        ("mpnn", ValueError, "module:Class"),
        ("my_pkg.my_module:", ValueError, "module and an attribute"),
        (":MyModel", ValueError, "module and an attribute"),
        ("my_pkg.my_module:My-Model", ValueError, "module and an attribute"),
        ("my_pkg.no_such_module:MyModel", ValueError, "cannot import module 'my_pkg.no_such_module'"),
        ("no_such_package_xyz.mod:MyModel", ValueError, "PYTHONPATH"),
        ("my_pkg.my_module:Missing", ValueError, "has no attribute 'Missing'"),
        ("my_pkg.my_module:NotAModule", TypeError, "not a torch.nn.Module subclass"),
        ("my_pkg.my_module:WIDTH", TypeError, "not an nn.Module class or factory"),
    ],
)
def test_bad_specs_name_what_is_wrong(user_package, spec, error, match):
    with pytest.raises(error, match=match):
        load_model_spec(spec)


def test_construction_errors(user_package):
    with pytest.raises(TypeError, match=r"must accept \(in_channels, out_channels, edge_dim=None\)"):
        build_from_spec("my_pkg.my_module:NoEdgeDim", 3, 1)
    with pytest.raises(TypeError, match="returned a str"):
        build_from_spec("my_pkg.my_module:bad_factory", 3, 1)
    # A missing dependency of the user's module is its own ImportError, not a bad spec.
    with pytest.raises(ModuleNotFoundError, match="a_dependency_that_is_not_installed"):
        load_model_spec("my_pkg.broken:MyModel")
