"""recipes/pyg_interop.py end to end on one layer and the MPNN: the table is written under --out
only, with every target it reports met."""

import json

import pytest


def test_pyg_interop_recipe(load_recipe, tmp_path, one_thread):
    recipe = load_recipe("pyg_interop")
    out = tmp_path / "report"
    rows = recipe.main(recipe.parse_args(["--out", str(out), "--layers", "GINConv"]))
    assert sorted(p.name for p in out.iterdir()) == ["pyg_interop.json", "pyg_interop.md"]
    assert [r["layer"] for r in rows] == ["GINConv", "MPNN / PyG qm9_nn_conv model"]
    for r in rows:
        assert r["gnnkit_breaks"] <= r["pyg_breaks"] and r["gnnkit_breaks_prebuilt"] == 0
        assert r["pyg_compile_s"] > 0 and r["gnnkit_compile_s"] > 0
    md = (out / "pyg_interop.md").read_text()
    assert "| GINConv | 0 | 0 | 0 |" in md and "Load:" in md
    assert json.loads((out / "pyg_interop.json").read_text())["rows"] == rows
    with pytest.raises(FileExistsError):  # a run never replaces another's results
        recipe.main(recipe.parse_args(["--out", str(out), "--layers", "GINConv"]))
    with pytest.raises(SystemExit):
        recipe.parse_args(["--layers", "SAGEConv"])
