"""The import direction ops → nn → models → data → train (recipes on top, outside the package).

Every ``import``/``from ... import`` in gnnkit's modules, at any depth (function-level imports
included, relative ones resolved), may only name a gnnkit package at the same layer or below.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gnnkit"
LAYERS = ("ops", "nn", "models", "data", "train")


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
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def violations(path: Path) -> list[str]:
    own = layer_of(".".join(_module_name(path)))
    if own is None:  # gnnkit/__init__.py sits above every layer
        return []
    bad = []
    for line, name in imported_gnnkit_modules(path):
        target = layer_of(name)
        if name == "gnnkit" or (target is not None and target > own):
            bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}")
    return bad


def test_every_module_imports_only_downwards():
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 40
    layers_seen = {layer_of(".".join(_module_name(p))) for p in modules}
    assert set(range(len(LAYERS))) <= layers_seen
    bad = [v for p in modules for v in violations(p)]
    assert not bad, "imports against ops → nn → models → data → train:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from gnnkit.train.loop import fit\n", True),
        ("def f():\n    from ...train import loop\n", True),
        ("from gnnkit import data\n", True),
        ("import gnnkit.models\n", True),
        ("from gnnkit.ops import spmm\nfrom ..graph import Graph\n", False),
    ],
)
def test_checker_catches_an_upward_import(tmp_path, monkeypatch, source, expected):
    """The checker itself: an upward import written into a fake nn/conv module is reported."""
    fake = tmp_path / "gnnkit" / "nn" / "conv"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "gnnkit")
    assert bool(violations(fake / "bad.py")) is expected
