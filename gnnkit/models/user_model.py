"""A user's own model, named by a ``"module:Class"`` spec, built like gnnkit's models.

``recipes/benchmark.py --models mpnn,my_package.my_module:MyModel`` trains a researcher's
architecture next to gnnkit's. The interface it must have:

* **constructor** ``MyModel(in_channels, out_channels, edge_dim=None)``: node feature size,
  number of predicted targets, edge feature size (``None`` when the inputs have no edge
  features). Other constructor arguments need defaults.
* **forward** ``model(batch) -> [batch.num_graphs, out_channels]`` on a PyG ``Batch``, like a
  PyG model (for QM9 in the benchmark: the complete graph with ``x``, ``edge_index``,
  ``edge_attr``, ``pos``, ``z`` and ``batch``).

The spec's module part is a dotted module name (installed, or on ``PYTHONPATH``) or a path to a
``.py`` file; the part after the colon is an attribute of it (dots allowed for nested classes),
an ``nn.Module`` subclass or a factory function returning an ``nn.Module``.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any, Callable

from torch import nn


def is_model_spec(name: str) -> bool:
    """Whether ``name`` is a ``"module:Class"`` spec rather than a registered model name."""
    return isinstance(name, str) and ":" in name


def _import_module(module: str, spec: str) -> Any:
    if module.endswith(".py") or "/" in module or "\\" in module:
        path = Path(module).expanduser().resolve()
        if not path.is_file():
            raise ValueError(f"model spec {spec!r}: no such file {str(path)!r}")
        name = f"gnnkit_user_model_{abs(hash(str(path)))}"
        if name in sys.modules:
            return sys.modules[name]
        file_spec = importlib.util.spec_from_file_location(name, path)
        if file_spec is None or file_spec.loader is None:
            raise ValueError(f"model spec {spec!r}: {str(path)!r} cannot be imported as a Python module")
        mod = importlib.util.module_from_spec(file_spec)
        sys.modules[name] = mod  # dataclasses and pickling look the module up there
        try:
            file_spec.loader.exec_module(mod)
        except BaseException:
            del sys.modules[name]
            raise
        return mod
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        # Only a missing module named by the spec is the spec's fault; a missing dependency of
        # the user's module is reported as the ImportError it is.
        if e.name is not None and (module == e.name or module.startswith(e.name + ".")):
            raise ValueError(
                f"model spec {spec!r}: cannot import module {module!r} ({e}); install it or put its folder on PYTHONPATH"
            ) from e
        raise


def load_model_spec(spec: str) -> Callable[..., nn.Module]:
    """The class or factory named by ``spec`` (``"package.module:Class"`` or ``"path/file.py:Class"``).

    Raises:
        ValueError: ``spec`` is malformed, its module cannot be found, or it has no such attribute.
        TypeError: the attribute is neither an ``nn.Module`` subclass nor a callable.
    """
    if not is_model_spec(spec):
        raise ValueError(f"a model spec is 'module:Class', got {spec!r}")
    module, _, attr = spec.rpartition(":")  # the last colon: a file path may hold one
    if not module or not attr or not all(part.isidentifier() for part in attr.split(".")):
        raise ValueError(f"a model spec is 'module:Class' with a module and an attribute name, got {spec!r}")
    obj: Any = _import_module(module, spec)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"model spec {spec!r}: module {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if inspect.isclass(obj):
        if not issubclass(obj, nn.Module):
            raise TypeError(f"model spec {spec!r}: {attr} is a class but not a torch.nn.Module subclass")
    elif not callable(obj):
        raise TypeError(f"model spec {spec!r}: {attr} is a {type(obj).__name__}, not an nn.Module class or factory")
    return obj


def build_from_spec(spec: str, in_channels: int, out_channels: int, edge_dim: int | None = None) -> nn.Module:
    """Imports ``spec`` (see :func:`load_model_spec`) and builds it as
    ``cls(in_channels, out_channels, edge_dim=edge_dim)``.

    Raises:
        ValueError: as :func:`load_model_spec`.
        TypeError: the class does not take ``(in_channels, out_channels, edge_dim=...)``, or the
            factory did not return an ``nn.Module``.
    """
    factory = load_model_spec(spec)
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # some builtins have no signature: just call
        signature = None
    if signature is not None:
        try:
            signature.bind(in_channels, out_channels, edge_dim=edge_dim)
        except TypeError as e:
            raise TypeError(
                f"model spec {spec!r}: {getattr(factory, '__name__', factory)}{signature} must accept "
                f"(in_channels, out_channels, edge_dim=None) ({e})"
            ) from None
    model = factory(in_channels, out_channels, edge_dim=edge_dim)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model spec {spec!r}: the factory returned a {type(model).__name__}, not an nn.Module")
    return model


__all__ = ["is_model_spec", "load_model_spec", "build_from_spec"]
