"""recipes/node_classification.py under misuse and faults: nothing written outside --out, no
result replaced unless told, every argument checked before data is loaded, damaged results and
caches named or rebuilt. Cases record a ``reliability`` property (see tests/write_reliability_table.py)."""

import hashlib
import json
import pathlib
import shutil

import pytest

from gnnkit.bench import node_classification as runner

REPO = pathlib.Path(__file__).resolve().parents[2]
# Tiny but real: Texas (183 nodes), one split, a couple of epochs.
TINY = ["--num-splits", "1", "--epochs", "2", "--set", "hidden=8"]
SMALL_TREE = ["--set", "levels=[1]", "--set", "max_hops=2"]  # TDGNN: one level, two hops
ONE = ["--model", "tdgnn-s", "--dataset", "texas", "--splits", "geom-gcn", *SMALL_TREE]


@pytest.fixture(scope="module")
def recipe(load_recipe):
    return load_recipe("node_classification")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    # its own copy of the committed Texas files: these tests damage cache files under the root
    dst = tmp_path_factory.mktemp("nc_faults")
    src = pathlib.Path(__file__).resolve().parents[2] / "datasets" / "webkb" / "texas"
    shutil.copytree(src, dst / "webkb" / "texas", ignore=shutil.ignore_patterns("processed", "cache"))
    return dst


@pytest.fixture(scope="module")
def small_config(recipe, tmp_path_factory):
    config = json.loads(recipe.CONFIG.read_text())
    config["all"] = {"gcn": {"geom-gcn": ["texas"]}, "tdgnn-s": {"geom-gcn": ["texas"]}}
    path = tmp_path_factory.mktemp("nc_config") / "small.json"
    path.write_text(json.dumps(config))
    return path


def _digest(folder: pathlib.Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_all(recipe, root, small_config, tmp_path_factory):
    """One finished ``--all`` (2 rows) and the digest of recipes/results before and after it."""
    out = tmp_path_factory.mktemp("nc_all") / "all"
    before = _digest(REPO / "recipes" / "results")
    results = recipe.main(["--all", "--config", str(small_config), "--data-root", str(root), *TINY, *SMALL_TREE, "--out", str(out)])
    return out, results, before, _digest(REPO / "recipes" / "results")


def test_all_writes_only_under_out(recipe, finished_all, tmp_path, record_property):
    record_property("reliability", {
        "area": "node_classification.py", "case": "`--all` with a small config (2 rows)",
        "outcome": "writes only under --out (rows, all.json, the table); recipes/results untouched. The "
                   "committed table changes only by `--collect DIR --write-table PATH`"})  # fmt: skip
    out, results, before, after = finished_all
    assert after == before
    assert sorted(p.name for p in out.iterdir()) == ["all.json", "gcn-texas-geom-gcn", "node_classification_all.md", "tdgnn-s-texas-geom-gcn"]
    table = (out / "node_classification_all.md").read_text()
    assert "for 2 rows run here" in table and "| tdgnn-s | texas | geom-gcn | 1 |" in table
    # the explicit act: --collect DIR --write-table PATH reproduces the run's table exactly
    dest = tmp_path / "committed.md"
    collected = recipe.main(["--collect", str(out), "--write-table", str(dest)])
    assert dest.read_text() == table and [r["mean"] for r in collected] == [r["mean"] for r in results]


def test_all_needs_out_and_tables_need_collect(recipe, capsys):
    for argv, message in ((["--all"], "--all needs --out"), (["--all", "--out", "x", "--write-table", "t.md"], "--write-table goes with --collect"),
                          (["--collect", "x", "--out", "y"], "does not take --out")):  # fmt: skip
        with pytest.raises(SystemExit):
            recipe.main(argv)
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        recipe.main(["--all", "--results-dir", "recipes/results"])  # the option that wrote into the repo is gone


def test_single_run_out_rule(recipe, root, tmp_path, capsys, monkeypatch, record_property):
    record_property("reliability", {
        "area": "node_classification.py", "case": "a run with --out on a finished run; then `--resume`, "
                                                  "`--resume` with a changed --set, `--overwrite`",
        "outcome": "refused (result.json untouched); --resume reuses it without loading data; a changed "
                   "setting under --resume is refused naming it; --overwrite reruns"})  # fmt: skip
    args = [*ONE, *TINY, "--data-root", str(root), "--out", str(tmp_path)]
    first = recipe.main(args)[0]
    saved = (tmp_path / "result.json").read_bytes()
    with pytest.raises(SystemExit):
        recipe.main(args)
    assert "already holds result.json; pass --resume" in capsys.readouterr().err
    assert (tmp_path / "result.json").read_bytes() == saved
    real_load = runner.load_node_dataset
    monkeypatch.setattr(runner, "load_node_dataset", lambda *a, **k: pytest.fail("data loaded"))
    again = recipe.main([*args, "--resume"])[0]
    assert again == first and "reusing" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"other settings: hparams.hidden \(saved: 8, now: 16\)"):
        recipe.main([*args, "--resume", "--set", "hidden=16"])
    assert (tmp_path / "result.json").read_bytes() == saved
    monkeypatch.setattr(runner, "load_node_dataset", real_load)
    rerun = recipe.main([*args, "--overwrite", "--epochs", "3"])[0]
    assert rerun["epochs"] == 3 and rerun["hparams"]["epochs"] == 3
    assert json.loads((tmp_path / "result.json").read_text())["epochs"] == 3


# (argv, text the usage error must contain)
BAD_ARGS = [
    ([*ONE, "--epochs", "0"], "--epochs: expected an integer >= 1, got 0"),
    ([*ONE, "--num-splits", "0"], "--num-splits: expected an integer >= 1, got 0"),
    ([*ONE, "--num-splits", "11"], "--num-splits must be in 1..10"),
    ([*ONE, "--device", "gpu"], "--device 'gpu'"),
    ([*ONE, "--set", "hiden=8"], "unknown --set hiden for tdgnn-s; valid names: dropout1, dropout2, early_stopping, epochs"),
    ([*ONE, "--set", "epochs=0"], "epochs must be an integer >= 1, got 0"),
    ([*ONE, "--set", "hidden"], "--set expects KEY=VALUE"),
    (["--model", "gcn", "--dataset", "texas", "--splits", "public"], "--splits public exists only for cora and citeseer"),
    ([*ONE, "--config", "no/such/config.json"], "--config no/such/config.json: cannot read it"),
    ([*ONE, "--resume", "--overwrite"], "exclude each other"),
    (["--all", "--out", "o", "--jobs", "0"], "--jobs: expected an integer >= 1"),
    (["--all", "--out", "o", "--threads", "-2"], "--threads: expected an integer >= 1"),
    (["--model", "gcn"], "missing: dataset, splits"),
]


@pytest.mark.parametrize("argv,message", BAD_ARGS, ids=[" ".join(a[-2:]) for a, _ in BAD_ARGS])
def test_bad_arguments_fail_before_any_data(recipe, tmp_path, capsys, monkeypatch, argv, message, record_property):
    shown = " ".join(argv[len(ONE):] if argv[: len(ONE)] == ONE else argv)
    record_property("reliability", {
        "area": "node_classification.py", "case": f"`{shown}`",
        "outcome": f"usage error before any data is loaded: \"{message}\""})  # fmt: skip
    monkeypatch.setattr(runner, "load_node_dataset", lambda *a, **k: pytest.fail("data loaded"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        recipe.main(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_cuda_without_cuda_is_a_usage_error(recipe, capsys, monkeypatch, record_property):
    record_property("reliability", {
        "area": "node_classification.py", "case": "`--device cuda` on a machine without CUDA",
        "outcome": "usage error before any data is loaded: \"CUDA is not available\""})  # fmt: skip
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        recipe.main([*ONE, "--device", "cuda"])
    assert "CUDA is not available" in capsys.readouterr().err


def test_corrupt_config_is_named(recipe, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"settings": ')
    with pytest.raises(SystemExit):
        recipe.main([*ONE, "--config", str(bad)])
    assert f"--config {bad}: not valid JSON" in capsys.readouterr().err


CORRUPT = {"5": "holds 5", "null": "holds null", '{"model": "gcn", "accs": [': "not valid JSON",
           '{"model": "gcn", "dataset": "texas", "splits": "geom-gcn", "accs": []}': "missing or bad accs"}  # fmt: skip


@pytest.mark.parametrize("content", sorted(CORRUPT), ids=["truncated", "no accs", "5", "null"])
def test_corrupt_row_result(recipe, root, small_config, finished_all, tmp_path, capsys, content, record_property):
    record_property("reliability", {
        "area": "node_classification.py", "case": f"a row's result.json holds `{content[:30]}`",
        "outcome": "`--all --resume` says the file is not a result and reruns that row; `--collect`: usage "
                   "error naming the file"})  # fmt: skip
    out = tmp_path / "all"
    shutil.copytree(finished_all[0], out)
    bad = out / "gcn-texas-geom-gcn" / "result.json"
    bad.write_text(content)
    with pytest.raises(SystemExit):
        recipe.main(["--collect", str(out)])
    err = capsys.readouterr().err
    assert f"{bad}: " in err and CORRUPT[content] in err
    rows = recipe.main(["--all", "--config", str(small_config), "--data-root", str(root), *TINY, *SMALL_TREE, "--out", str(out), "--resume"])
    printed = capsys.readouterr().out
    assert f"{bad}: " in printed and CORRUPT[content] in printed and "rerunning the row" in printed
    assert "tdgnn-s texas geom-gcn: reusing" in printed and len(rows) == 2
    assert runner.check_result(json.loads(bad.read_text()), bad)["model"] == "gcn"


def test_collect_of_nothing_is_an_error(recipe, tmp_path, capsys):
    with pytest.raises(SystemExit):
        recipe.main(["--collect", str(tmp_path)])
    assert "no " in capsys.readouterr().err


def test_truncated_tdgnn_cache_is_rebuilt(recipe, root, tmp_path, capsys, record_property):
    record_property("reliability", {
        "area": "node_classification.py", "case": "a truncated TDGNN operator cache",
        "outcome": "rebuilt (a warning names the file); same accuracy as with the good cache"})  # fmt: skip
    args = [*ONE, *TINY, "--data-root", str(root)]
    first = recipe.main(args)[0]
    import torch

    caches = sorted((root / "webkb" / "texas" / "cache").glob("tdgnn-*.pt"))
    assert caches
    good = {p: torch.load(p) for p in caches}
    for path in caches:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    capsys.readouterr()
    again = recipe.main(args)[0]
    err = capsys.readouterr().err
    assert "rebuilding" in err and any(str(p) in err for p in caches)
    assert again["accs"] == first["accs"]
    for path, pairs in good.items():
        rebuilt = torch.load(path)
        assert len(rebuilt) == len(pairs) and all(torch.equal(a, b) for x, y in zip(rebuilt, pairs) for a, b in zip(x, y))
