"""The import direction ops → nn → models → data → train → {bench, predict} → cli (recipes on top,
outside the package).

Every ``import``/``from ... import`` in gnnkit's modules, at any depth (function-level imports
included, relative ones resolved), may only name a gnnkit package at the same layer or below.
``bench`` and ``predict`` share a layer: neither imports the other.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gnnkit"
# One entry per layer, lowest first; a tuple holds the packages that share a layer.
LAYERS = ("ops", "nn", "models", "data", "train", ("bench", "predict"), "cli")
RANK = {name: i for i, layer in enumerate(LAYERS) for name in ((layer,) if isinstance(layer, str) else layer)}


def _module_name(path: Path) -> list[str]:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def imported_gnnkit_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every gnnkit module that ``path`` imports."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            # ``from gnnkit import train`` names a subpackage through the imported names
            if name == "gnnkit":
                found += [(node.lineno, f"gnnkit.{a.name}") for a in node.names]
    return [(line, name) for line, name in found if name == "gnnkit" or name.startswith("gnnkit.")]


def layer_of(dotted: str) -> int | None:
    parts = dotted.split(".")
    return RANK.get(parts[1]) if len(parts) > 1 else None


def violations(path: Path) -> list[str]:
    own = layer_of(".".join(_module_name(path)))
    if own is None:  # gnnkit/__init__.py sits above every layer
        return []
    bad = []
    for line, name in imported_gnnkit_modules(path):
        target = layer_of(name)
        sibling = target == own and name.split(".")[1] != _module_name(path)[1]
        if name == "gnnkit" or (target is not None and target > own) or sibling:
            bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}")
    return bad


def test_every_module_imports_only_downwards():
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 40
    layers_seen = {layer_of(".".join(_module_name(p))) for p in modules}
    assert set(range(len(LAYERS))) <= layers_seen
    bad = [v for p in modules for v in violations(p)]
    assert not bad, "imports against ops → nn → models → data → train → {bench, predict} → cli:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from gnnkit.train.loop import fit\n", True),
        ("def f():\n    from ...train import loop\n", True),
        ("from gnnkit import data\n", True),
        ("import gnnkit.models\n", True),
        ("from gnnkit.ops import spmm\nfrom ..graph import Graph\n", False),
        ("from gnnkit.bench.probes import MachineLoad\n", True),
        ("from gnnkit.predict import load_predictor\n", True),
        ("from gnnkit.cli.options import add_options\n", True),
    ],
)
def test_checker_catches_an_upward_import(tmp_path, monkeypatch, source, expected):
    """The checker itself: an upward import written into a fake nn/conv module is reported."""
    fake = tmp_path / "gnnkit" / "nn" / "conv"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "gnnkit")
    assert bool(violations(fake / "bad.py")) is expected


@pytest.mark.parametrize(
    ("layer", "source", "expected"),
    [
        ("train", "from gnnkit.predict import load_predictor\n", True),
        ("bench", "from gnnkit.predict import load_predictor\n", True),
        ("predict", "from gnnkit.bench import probes\n", True),
        ("predict", "from gnnkit.cli.options import add_options\n", True),
        ("predict", "from gnnkit.train.loop import fit\nfrom .predictor import Predictor\n", False),
        ("cli", "from gnnkit.predict import load_predictor\nfrom gnnkit.bench.compare import summarize\n", False),
    ],
)
def test_checker_knows_the_upper_layers(tmp_path, monkeypatch, layer, source, expected):
    """bench and predict sit above train and beside each other (neither imports the other); cli
    sits above both."""
    fake = tmp_path / "gnnkit" / layer
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "gnnkit")
    assert bool(violations(fake / "bad.py")) is expected
