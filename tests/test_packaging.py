"""Packaging: declared dependencies match the imports, the layers need only the core dependencies,
and a built wheel carries its package data and works outside the checkout."""

import ast
import email
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# distribution name -> import name, for every third-party distribution gnnkit declares
MODULES = {
    "torch": "torch", "torch-geometric": "torch_geometric", "numpy": "numpy", "tqdm": "tqdm", "rdkit": "rdkit",
    "qm9pack": "qm9pack", "matplotlib": "matplotlib", "scipy": "scipy", "triton": "triton", "pytest": "pytest",
    "networkx": "networkx", "setuptools": "setuptools", "tomli": "tomli",
}  # fmt: skip


def dist_name(requirement: str) -> str:
    for stop in "<>=!~;[ ":
        requirement = requirement.split(stop, 1)[0]
    return requirement.strip().lower()


def third_party_imports(folder: pathlib.Path) -> set[str]:
    """Top-level names of the non-stdlib, non-gnnkit modules imported anywhere under ``folder``."""
    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "gnnkit"}


# Declared but not imported by name, each with the evidence checked below.
INDIRECT = {
    "qm9pack": "gnnkit/data/qm9.py finds its CSV folder with importlib.util.find_spec (importing it needs pkg_resources)",
    "scipy": "PyG's Planetoid reader unpickles scipy.sparse matrices from the Cora/CiteSeer raw files",
    "setuptools": "the build backend, used by the wheel test below with --no-build-isolation",
}


def test_declared_dependencies_match_the_imports():
    project = PYPROJECT["project"]
    core = {dist_name(r) for r in project["dependencies"]}
    extras = {k: {dist_name(r) for r in v} for k, v in project["optional-dependencies"].items()}
    assert set(extras) == {"chem", "plot", "recipes", "gpu", "test"}
    assert extras["recipes"] == extras["chem"] | extras["plot"] | {"scipy"}
    assert extras["test"] >= extras["recipes"] | extras["gpu"]  # the suite needs everything
    declared = core.union(*extras.values())
    assert declared <= set(MODULES), declared - set(MODULES)
    package, recipes, tests = (third_party_imports(REPO / d) for d in ("gnnkit", "recipes", "tests"))
    # everything imported is declared where it is needed
    assert package <= {MODULES[d] for d in declared}, package
    assert recipes <= {MODULES[d] for d in core | extras["recipes"]}, recipes
    assert tests - {"conftest"} <= {MODULES[d] for d in core | extras["test"]}, tests
    assert {MODULES[d] for d in core} <= package  # every core dependency is used by the package
    # every declared distribution is imported somewhere, or used in a way checked here
    unused = {d for d in declared if MODULES[d] not in package | recipes | tests}
    assert unused == set(INDIRECT), unused
    assert 'find_spec("qm9pack")' in (REPO / "gnnkit" / "data" / "qm9.py").read_text()
    assert b"scipy.sparse" in (REPO / "datasets" / "planetoid" / "Cora" / "raw" / "ind.cora.x").read_bytes()
    assert PYPROJECT["build-system"]["build-backend"] == "setuptools.build_meta"
    assert "tomli; python_version < '3.11'" in project["optional-dependencies"]["test"]  # this file, on 3.10


# A None entry in sys.modules makes `import name` fail and find_spec(name) return None, as for a
# package that is not installed.
BLOCK_OPTIONAL = """
import sys
for name in ("rdkit", "qm9pack", "matplotlib", "scipy", "triton", "networkx", "pytest"):
    sys.modules[name] = None
"""


def test_layers_models_and_loops_need_only_the_core_dependencies():
    """``import gnnkit`` (ops, nn, models), gnnkit.data and gnnkit.train import, and a model runs,
    with every optional dependency unimportable."""
    script = BLOCK_OPTIONAL + """
import torch, gnnkit, gnnkit.data, gnnkit.train
from gnnkit.models import build_model
from gnnkit.nn import GCNConv
x, edge_index = torch.randn(5, 3), torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]])
out = GCNConv(3, 2)(x, edge_index)
assert out.shape == (5, 2), out.shape
assert isinstance(build_model("gcn", 3, 2), torch.nn.Module)
try:
    import rdkit
except ModuleNotFoundError:
    print("ok")
"""
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
    """A wheel built, without network or build isolation, from a copy of the sources (so that the
    build writes nothing into the checkout)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(REPO / "gnnkit", src / "gnnkit", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(tmp / "dist"), str(src)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    (path,) = (tmp / "dist").glob("gnnkit-*.whl")
    return path


def test_wheel_contents(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        split = z.read("gnnkit/data/qm9_split.npz")
        node_settings = z.read("gnnkit/bench/node_classification.json")  # `gnnkit node`'s per-dataset settings
        meta = email.message_from_bytes(z.read("gnnkit-0.1.0.dist-info/METADATA"))
        license_text = z.read("gnnkit-0.1.0.dist-info/licenses/LICENSE").decode()
    sources = {p.relative_to(REPO).as_posix() for p in (REPO / "gnnkit").rglob("*.py")}
    assert {n for n in names if n.endswith(".py")} == sources
    assert split == (REPO / "gnnkit" / "data" / "qm9_split.npz").read_bytes()
    assert node_settings == (REPO / "gnnkit" / "bench" / "node_classification.json").read_bytes()
    assert "gnnkit/py.typed" in names
    assert {n.split("/")[0] for n in names} == {"gnnkit", "gnnkit-0.1.0.dist-info"}  # no datasets/, tests/, recipes/
    assert license_text.startswith("MIT License") and meta["License-Expression"] == "MIT"
    requires = meta.get_all("Requires-Dist")
    assert [r for r in requires if "extra ==" not in r] == PYPROJECT["project"]["dependencies"]
    assert set(meta.get_all("Provides-Extra")) == {"chem", "plot", "recipes", "gpu", "test"}
    assert "Programming Language :: Python :: 3.11" in meta.get_all("Classifier")
    with zipfile.ZipFile(wheel) as z:  # the `gnnkit` command
        assert z.read("gnnkit-0.1.0.dist-info/entry_points.txt").decode().split() == [
            "[console_scripts]", "gnnkit", "=", "gnnkit.cli.main:main"]  # fmt: skip


INSTALLED_RUN = """
import pathlib, sys
import numpy as np
import gnnkit
from gnnkit.data import QM9, data_root, load_split, make_split
from gnnkit.data.paths import checkout_datasets_dir

site, cache = map(pathlib.Path, sys.argv[1:3])
assert pathlib.Path(gnnkit.__file__).resolve().is_relative_to(site.resolve()), gnnkit.__file__
assert checkout_datasets_dir() is None, checkout_datasets_dir()
assert data_root() == cache / "gnnkit", data_root()
split, fresh = load_split(), make_split(0)
assert all(np.array_equal(split[k], fresh[k]) for k in ("train", "val", "test"))
ds = QM9(subset=split["test"][:3], num_workers=1, log=False)
assert len(ds) == 3 and pathlib.Path(ds.root) == cache / "gnnkit" / "qm9"
assert len(list((cache / "gnnkit" / "qm9" / "processed").glob("qm9_v1_*.pt"))) == 1
print("ok")
"""


def test_installed_wheel_works_outside_the_checkout(wheel, tmp_path):
    """``pip install`` of the wheel (into a target folder), then from another directory: the split
    is package data, and QM9's cache goes to the user cache, never into the installed package."""
    site = tmp_path / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--no-compile", "-q", "--target", str(site), str(wheel)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    before = sorted(p.relative_to(site) for p in site.rglob("*"))
    (tmp_path / "elsewhere").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("GNNKIT_DATA", "PYTHONPATH")}
    env.update(PYTHONPATH=str(site), XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONDONTWRITEBYTECODE="1", PYTHONNOUSERSITE="1")
    run = subprocess.run([sys.executable, "-c", INSTALLED_RUN, str(site), str(tmp_path / "cache")], capture_output=True,
                         text=True, timeout=300, env=env, cwd=tmp_path / "elsewhere")  # fmt: skip
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]
    assert sorted(p.relative_to(site) for p in site.rglob("*")) == before  # nothing written into the package
    assert not any((tmp_path / "elsewhere").iterdir())
    # the gnnkit command from the installed wheel: pip's console script, and python -m gnnkit
    script = site / "bin" / "gnnkit"
    assert "from gnnkit.cli.main import main" in script.read_text()
    for cmd in ([sys.executable, str(script), "--help"], [sys.executable, "-m", "gnnkit", "train", "qm9", "--help"]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path / "elsewhere")
        assert done.returncode == 0 and "gnnkit train qm9" in done.stdout, done.stderr[-3000:]
