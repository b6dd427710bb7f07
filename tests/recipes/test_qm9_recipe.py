"""recipes/qm9.py (= ``gnnkit train qm9``, implemented in gnnkit.cli.qm9) end to end on a small real
slice of QM9: smoke, exact resume, DDP (2 gloo ranks)."""

import csv
import json
import math
import os
import pathlib
import subprocess
import sys
from dataclasses import asdict

import numpy as np
import pytest

import gnnkit.cli.qm9 as qm9_cli  # the recipe's implementation (its internals are patched there)

REPO = pathlib.Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "qm9.py"
# A tiny MPNN so that a run takes seconds on a CPU; the data are real QM9 molecules.
TINY = ["--train-size", "48", "--eval-size", "16", "--batch-size", "16", "--channels", "16", "--steps", "2",
        "--model-option", "edge_hidden=16", "--device", "cpu", "--no-progress"]  # fmt: skip
REQUIRED = {"model", "target", "unit", "val_mae", "test_mae", "test_mae_ratio", "epochs", "train_size", "seconds",
            "molecules_per_second"}  # fmt: skip


@pytest.fixture(scope="module")
def recipe(load_recipe):
    return load_recipe("qm9")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """The processed cache of the slice the tiny runs use, built once for the module."""
    from gnnkit.data import QM9, load_split

    root = tmp_path_factory.mktemp("qm9_recipe_data")
    split = load_split()
    QM9(root, subset=np.concatenate([split["train"][:48], split["val"][:16], split["test"][:16]]), log=False)
    return root


pytestmark = pytest.mark.usefixtures("one_thread")


def run(recipe, data_root, out, *extra):
    return recipe.main(recipe.parse_args([*TINY, "--data-root", str(data_root), "--out", str(out), *extra]))


def test_parse_args_sizes(recipe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default --out (runs/qm9) must not depend on the checkout's runs/
    quick = recipe.parse_args([])
    assert (quick.train_size, quick.eval_size, quick.model, quick.target, quick.edges) == (5000, 1000, "mpnn", "u0", "complete")
    assert recipe.parse_args(["--train-size", "300"]).eval_size is None  # full validation/test splits
    assert quick.grad_clip == 5.0 and recipe.parse_args(["--grad-clip", "0"]).grad_clip is None
    cfg = recipe.parse_args(["--train-size", "all", "--eval-size", "200", "--model-option", "edge_hidden=8"])
    assert cfg.train_size is None and cfg.eval_size == 200 and cfg.model_options == {"edge_hidden": 8}
    with pytest.raises(ValueError, match="target"):
        recipe.parse_args(["--target", "energy"])
    with pytest.raises(SystemExit):
        recipe.parse_args(["--train-size", "0"])


def test_smoke(recipe, data_root, tmp_path, capsys):
    result = run(recipe, data_root, tmp_path, "--epochs", "2", "--target", "gap")
    saved = json.loads((tmp_path / "result.json").read_text())
    assert REQUIRED <= set(saved) and saved["target"] == "gap" and saved["unit"] == "eV"
    assert saved["train_size"] == 48 and saved["val_size"] == 16 and saved["test_size"] == 16 and saved["epochs"] == 2
    assert saved["test_mae_ratio"] == pytest.approx(saved["test_mae"] / 0.043)
    assert 0 < saved["test_mae"] < 5 and saved["molecules_per_second"] > 0 and saved["loader_molecules_per_second"] > 0
    assert result["val_mae"] == saved["val_mae"]
    with open(tmp_path / "log.csv") as f:
        log = list(csv.DictReader(f))
    assert [r["epoch"] for r in log] == ["1", "2"]
    # train_seconds: training alone (the log's last cumulative value); fit_seconds adds evaluation
    assert saved["train_seconds"] == pytest.approx(float(log[-1]["train_seconds"]), abs=0.01)
    assert 0 < saved["train_seconds"] < saved["fit_seconds"] <= saved["seconds"]
    assert (tmp_path / "learning_curve.png").stat().st_size > 0 and (tmp_path / "checkpoint.pt").exists()
    assert "x chemical accuracy" in capsys.readouterr().out


def test_resume_matches_uninterrupted(recipe, data_root, tmp_path):
    full = run(recipe, data_root, tmp_path / "full", "--epochs", "2")
    killed = run(recipe, data_root, tmp_path / "killed", "--epochs", "2", "--stop-after-epoch", "1")
    assert killed["interrupted"] and killed["epochs"] == 1
    resumed = run(recipe, data_root, tmp_path / "killed", "--epochs", "2", "--resume")
    for key in ("val_mae", "test_mae", "best_epoch", "epochs", "steps"):
        assert resumed[key] == full[key], key
    with open(tmp_path / "full" / "log.csv") as a, open(tmp_path / "killed" / "log.csv") as b:
        cols = ("epoch", "lr", "train_loss", "val_mae_u0", "test_mae_u0")
        assert [[r[c] for c in cols] for r in csv.DictReader(a)] == [[r[c] for c in cols] for r in csv.DictReader(b)]


def test_ddp_two_gloo_processes(recipe, data_root, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(RECIPE), *TINY,
           "--data-root", str(data_root), "--out", str(tmp_path / "ddp"), "--epochs", "2"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = json.loads((tmp_path / "ddp" / "result.json").read_text())
    assert saved["world_size"] == 2 and saved["epochs"] == 2
    # Evaluation is sharded without padding: each molecule counted once across the ranks.
    assert saved["val_size"] == 16 and 0 < saved["test_mae"] < 5
    assert proc.stdout.count("x chemical accuracy") == 1  # only rank 0 reports


# -- misuse and faults (cases recorded for recipes/results/reliability.md) ---------------------------


def _files(folder: pathlib.Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_out_holding_a_run_is_refused(recipe, data_root, tmp_path, record_property):
    record_property("reliability", {
        "area": "qm9.py", "case": "fresh run with --out on a finished run",
        "outcome": "refused before loading data (names the files, suggests --resume / --overwrite); the "
                   "finished run's checkpoint, result and log are untouched"})  # fmt: skip
    first = run(recipe, data_root, tmp_path, "--epochs", "1")
    before = _files(tmp_path)
    with pytest.raises(SystemExit):
        recipe.parse_args([*TINY, "--data-root", str(data_root), "--out", str(tmp_path), "--epochs", "1"])
    cfg = recipe.Config(**{**asdict(recipe.parse_args([*TINY, "--out", str(tmp_path / "x")])), "out": str(tmp_path)})
    with pytest.raises(FileExistsError, match=r"already holds .*result.json"):
        recipe.main(cfg)  # main() checks too (a programmatic caller skips parse_args)
    assert _files(tmp_path) == before
    # --resume of the finished run trains nothing and reports the same numbers
    again = run(recipe, data_root, tmp_path, "--epochs", "1", "--resume")
    assert again["val_mae"] == first["val_mae"] and again["epochs"] == 1
    # --overwrite replaces the run (and only the run's files)
    (tmp_path / "notes.txt").write_text("mine")
    replaced = run(recipe, data_root, tmp_path, "--epochs", "2", "--overwrite")
    assert replaced["epochs"] == 2 and (tmp_path / "notes.txt").read_text() == "mine"
    assert torch_epoch(tmp_path / "checkpoint.pt") == 2 and torch_epoch(tmp_path / "checkpoint.prev.pt") == 1
    assert json.loads((tmp_path / "result.json").read_text())["epochs"] == 2


def torch_epoch(path: pathlib.Path) -> int:
    import torch

    return torch.load(path, weights_only=False)["epoch"]


# (argv, text the error must contain)
BAD_ARGS = [
    (["--train-size", "999999"], "--train-size must be in 1..110,831"),
    (["--eval-size", "20000"], "--eval-size must be in 1..10,000"),
    (["--grad-clip", "-1"], "--grad-clip must be >= 0"),
    (["--grad-clip", "nan"], "--grad-clip must be >= 0"),
    (["--model-option", "hiden=64"], "unknown --model-option hiden for --model mpnn; valid options: channels, steps"),
    (["--model", "ggnn", "--model-option", "edge_hidden=8"], "unknown --model-option edge_hidden for --model ggnn"),
    (["--channels", "16", "--model-option", "channels=8"], "--channels and --model-option channels=... set the same"),
    (["--model-option", "edge_hidden"], "KEY=VALUE"),
    (["--channels", "-8"], "--channels must be an integer >= 1, got -8"),
    (["--steps", "0"], "--steps must be an integer >= 1"),
    (["--epochs", "0"], "--epochs must be an integer >= 1"),
    (["--batch-size", "0"], "--batch-size must be an integer >= 1"),
    (["--lr", "0"], "--lr must be a finite number > 0"),
    (["--lr", "inf"], "--lr must be a finite number > 0"),
    (["--loader-workers", "-1"], "--loader-workers must be an integer >= 0"),
    (["--device", "gpu"], "--device 'gpu': "),
    (["--resume", "--overwrite"], "exclude each other"),
    (["--decay-start", "1"], "--decay-start must be in [0, 1)"),
    (["--final-lr-factor", "0"], "--final-lr-factor must be in (0, 1]"),
    (["--preset", "paper"], "invalid choice: 'paper'"),
    (["--preset", "gilmer", "--model", "ggnn"], "--preset gilmer trains mpnn"),
]


@pytest.mark.parametrize("argv,message", BAD_ARGS, ids=[" ".join(a) for a, _ in BAD_ARGS])
def test_bad_arguments_fail_before_any_data(recipe, tmp_path, capsys, monkeypatch, argv, message, record_property):
    record_property("reliability", {
        "area": "qm9.py", "case": f"`{' '.join(argv)}`",
        "outcome": f"usage error before any data is loaded: \"{message}\""})  # fmt: skip
    monkeypatch.setattr(qm9_cli, "load_split", lambda *a, **k: pytest.fail("data loaded"))
    with pytest.raises(SystemExit) as exit_:
        recipe.parse_args([*argv, "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cuda_without_cuda_is_a_usage_error(recipe, tmp_path, capsys, monkeypatch, record_property):
    record_property("reliability", {
        "area": "qm9.py", "case": "`--device cuda` on a machine without CUDA",
        "outcome": "usage error before any data is loaded: \"CUDA is not available\""})  # fmt: skip
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        recipe.parse_args(["--device", "cuda", "--out", str(tmp_path)])
    assert "CUDA is not available" in capsys.readouterr().err


def test_model_option_names_come_from_the_registry(recipe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    options = qm9_cli.MODELS["mpnn"].options()
    assert {"channels", "steps", "edge_hidden", "readout", "set2set_steps"} <= set(options)
    assert "edge_dim" not in options and "hidden" in qm9_cli.MODELS["gcn-graph"].options()
    cfg = recipe.parse_args(["--model", "gcn-graph", "--channels", "8", "--model-option", "readout=sum"])
    assert cfg.model_options == {"readout": "sum"} and qm9_cli.model_options(cfg) == {"readout": "sum", "hidden": 8}
    with pytest.raises(SystemExit):
        recipe.parse_args(["--model", "gcn-graph", "--model-option", "channels=8"])  # GCNGraph's width is hidden
    # Gilmer's Section 5 variants are model options of both molecular models
    for model, extra, value in (("mpnn", "directed=True", {"directed": True}), ("ggnn", "readout=set2set", {"readout": "set2set"})):
        args = ["--model", model, "--model-option", "virtual_edges=True", "--model-option", "master_node=16", "--model-option", extra]
        assert recipe.parse_args(args).model_options == {"virtual_edges": True, "master_node": 16, **value}
    cfg = recipe.parse_args(["--model", "ggnn", "--model-option", "towers=8"])
    assert cfg.model_options == {"towers": 8}


SECTION2 = {  # Gilmer et al. 2017's Section 2 models, tiny, one epoch on the same slice
    "nfp": ["--model-option", "fingerprint=8"],
    "interaction": ["--model-option", "hidden=8"],
    "weave": ["--model-option", "edge_channels=8"],
    "dtnn": ["--model-option", "factors=8"],
    "chebnet": ["--model-option", "K=2"],
}


@pytest.mark.parametrize("name", SECTION2)
def test_section2_model_smoke(recipe, data_root, tmp_path, name):
    argv = ["--train-size", "48", "--eval-size", "16", "--batch-size", "16", "--channels", "8", "--steps", "2",
            "--epochs", "1", "--device", "cpu", "--no-progress", "--model", name, *SECTION2[name]]  # fmt: skip
    result = recipe.main(recipe.parse_args([*argv, "--data-root", str(data_root), "--out", str(tmp_path)]))
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["model"] == name and saved["status"] == "completed" and saved["epochs"] == 1
    assert math.isfinite(saved["test_mae"]) and saved["test_mae"] > 0 and result["val_mae"] == saved["val_mae"]
    assert (tmp_path / "best_model.pt").exists()


@pytest.mark.parametrize("change", [["--train-size", "32"], ["--lr", "0.002"], ["--seed", "1"], ["--model-option", "edge_hidden=8"]],
                         ids=lambda c: c[0])
def test_resume_with_changed_arguments_is_refused(recipe, data_root, tmp_path, monkeypatch, change, record_property):
    record_property("reliability", {
        "area": "qm9.py", "case": f"`--resume` with a changed `{change[0]}`",
        "outcome": "refused before loading data, naming each changed setting with the checkpoint's value "
                   "and the new one; result.json and checkpoint untouched"})  # fmt: skip
    run(recipe, data_root, tmp_path, "--epochs", "2", "--stop-after-epoch", "1")
    before = _files(tmp_path)
    monkeypatch.setattr(qm9_cli, "load_split", lambda *a, **k: pytest.fail("data loaded"))
    args = [*TINY, "--data-root", str(data_root), "--out", str(tmp_path), "--epochs", "2", "--resume"]
    if change[0] == "--model-option":
        args = [a for a in args if a != "edge_hidden=16"]
        args.remove("--model-option")
    key = {"--train-size": "train_size", "--lr": "lr", "--seed": "seed", "--model-option": "model_options"}[change[0]]
    with pytest.raises(ValueError, match=rf"other settings: .*{key} \(checkpoint: "):
        recipe.main(recipe.parse_args([*args, *change]))
    assert _files(tmp_path) == before


def test_nan_loss_is_recorded_as_diverged(recipe, data_root, tmp_path, record_property):
    record_property("reliability", {
        "area": "qm9.py", "case": "a checkpoint whose Adam state holds NaN (valid checksum), resumed",
        "outcome": "training stops at the first non-finite loss; result.json says status 'diverged', "
                   "interrupted, val/test MAE null; exit status 1"})  # fmt: skip
    import torch

    from gnnkit.train.checkpoint import atomic_save

    run(recipe, data_root, tmp_path, "--epochs", "3", "--stop-after-epoch", "1")
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    for state in ck["optimizer"]["state"].values():
        state["exp_avg"].fill_(float("nan"))
    atomic_save(ck, tmp_path / "checkpoint.pt")
    result = run(recipe, data_root, tmp_path, "--epochs", "3", "--resume")
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved == json.loads(json.dumps(result, default=str))
    assert saved["status"] == "diverged" and saved["interrupted"] and "non-finite training loss" in saved["error"]
    assert saved["val_mae"] is None and saved["test_mae"] is None and saved["epochs"] == 2
    assert torch_epoch(tmp_path / "checkpoint.pt") == 1  # the last good checkpoint is kept


def _default_sigint() -> None:
    """In the child before exec: Ctrl-C's default disposition. A shell starts background jobs
    (``pytest ... &``, a CI runner's ``nohup``) with SIGINT ignored, which the child would
    inherit, and Python installs its KeyboardInterrupt handler only where SIGINT is not ignored."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _recipe_process(args: list[str], point: str | None = None, count: int = 1, marker: pathlib.Path | None = None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    if point is None:
        return subprocess.Popen([sys.executable, str(RECIPE), *args], env=env, cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)  # fmt: skip
    pause = pathlib.Path(__file__).with_name("pause_at.py")
    return subprocess.Popen([sys.executable, str(pause), point, str(count), str(marker), str(RECIPE), *args], env=env,
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)  # fmt: skip


def _kill_at(args: list[str], point: str, count: int, marker: pathlib.Path, sig: int | None = None) -> str:
    """Starts the recipe, sends it ``sig`` (default SIGKILL) when it reaches ``point`` and returns its stderr."""
    import signal
    import time

    sig = signal.SIGKILL if sig is None else sig

    marker.unlink(missing_ok=True)
    proc = _recipe_process(args, point, count, marker)
    deadline = time.monotonic() + 120
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before {point} #{count}: {proc.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run did not reach {point} #{count} in 120 s")
        time.sleep(0.05)
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -sig, err[-3000:]
    return err


def test_sigkill_at_several_points_then_resume_gives_identical_weights(data_root, tmp_path, record_property):
    """A real recipe process killed with SIGKILL mid-epoch, during a checkpoint save (before and
    between its renames) and while writing result.json; each time ``--resume`` continues, and the
    final weights, result and log equal those of an uninterrupted run."""
    import torch

    points = {"step": "mid-epoch (epoch 2, step 2)",
              "between_renames": "during a checkpoint save (temporary written, checkpoint.pt moved to .prev, not replaced)",
              "result": "while writing result.json after the last epoch"}  # fmt: skip
    for point, where in points.items():
        record_property("reliability", {
            "area": "qm9.py (real process, SIGKILL)", "case": f"killed {where}",
            "outcome": "`--resume` continues; final weights, best model, result and log identical to an "
                       "uninterrupted run (3 epochs)"})  # fmt: skip
    base = [*TINY, "--data-root", str(data_root), "--epochs", "3"]
    ref = _recipe_process([*base, "--out", str(tmp_path / "ref")])
    killed, marker = tmp_path / "killed", tmp_path / "paused"
    resume = [*base, "--out", str(killed), "--resume"]
    _kill_at([*base, "--out", str(killed)], "step", 5, marker)  # 3 steps per epoch: epoch 2, step 2
    assert torch_epoch(killed / "checkpoint.pt") == 1
    _kill_at(resume, "between_renames", 1, marker)  # saving epoch 2, after the rotation
    left = [p.name for p in killed.iterdir() if ".tmp" in p.name]
    assert len(left) == 1 and left[0].startswith(".checkpoint.pt.tmp")
    assert not (killed / "checkpoint.pt").exists() and torch_epoch(killed / "checkpoint.prev.pt") == 1
    err = _kill_at(resume, "result", 1, marker)  # resumes from checkpoint.prev.pt, trains epochs 2-3
    assert "resuming from the previous checkpoint" in err
    assert not (killed / left[0]).exists(), "the stale temporary of the killed save is removed"
    assert torch_epoch(killed / "checkpoint.pt") == 3 and not (killed / "result.json").exists()
    last = _recipe_process(resume)
    assert last.wait(timeout=300) == 0, last.stderr.read()[-3000:]
    assert ref.wait(timeout=300) == 0, ref.stderr.read()[-3000:]
    a, b = (json.loads((d / "result.json").read_text()) for d in (tmp_path / "ref", killed))
    for key in ("status", "val_mae", "test_mae", "best_epoch", "epochs", "steps", "interrupted"):
        assert a[key] == b[key], key
    for name in ("checkpoint.pt", "best_model.pt"):
        wa, wb = (torch.load(d / name, weights_only=False)["model"] for d in (tmp_path / "ref", killed))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), name
    with open(tmp_path / "ref" / "log.csv") as fa, open(killed / "log.csv") as fb:
        cols = ("epoch", "lr", "train_loss", "val_mae_u0", "test_mae_u0")
        assert [[r[c] for c in cols] for r in csv.DictReader(fa)] == [[r[c] for c in cols] for r in csv.DictReader(fb)]
    assert not [p for p in killed.iterdir() if ".tmp" in p.name]


def test_sigint_and_sigterm_keep_the_checkpoint_and_resume_is_identical(data_root, tmp_path, record_property):
    """Ctrl-C (SIGINT: a KeyboardInterrupt through the recipe) mid-epoch, then SIGTERM mid-epoch
    of the resumed run: the last checkpoint is kept each time, no temporary is left, the --out
    lock is released (SIGINT) or left stale (SIGTERM: the process ends without cleanup), and the
    final weights equal an uninterrupted run's."""
    import signal

    import torch

    from gnnkit.train.outdir import LOCK_NAME

    record_property("reliability", {
        "area": "qm9.py (real process, SIGINT / SIGTERM)",
        "case": "SIGINT (Ctrl-C) mid-epoch 2, then SIGTERM mid-epoch 3 of the resumed run",
        "outcome": "each time the last checkpoint is kept and no temporary is left (SIGINT also removes the --out "
                   "lock; SIGTERM's is stale and taken over); `--resume` ends bit-identical to an uninterrupted "
                   "run"})  # fmt: skip
    base = [*TINY, "--data-root", str(data_root), "--epochs", "3"]
    ref = _recipe_process([*base, "--out", str(tmp_path / "ref")])
    out, marker = tmp_path / "stopped", tmp_path / "paused"
    resume = [*base, "--out", str(out), "--resume"]
    err = _kill_at([*base, "--out", str(out)], "step", 5, marker, signal.SIGINT)  # epoch 2, step 2
    assert "KeyboardInterrupt" in err and torch_epoch(out / "checkpoint.pt") == 1
    assert not [p for p in out.iterdir() if ".tmp" in p.name] and not (out / LOCK_NAME).exists()
    _kill_at(resume, "step", 5, marker, signal.SIGTERM)  # resumed at epoch 2: epoch 3, step 2
    assert torch_epoch(out / "checkpoint.pt") == 2 and (out / LOCK_NAME).exists()
    last = _recipe_process(resume)
    assert last.wait(timeout=300) == 0, last.stderr.read()[-3000:]
    assert ref.wait(timeout=300) == 0, ref.stderr.read()[-3000:]
    for name in ("checkpoint.pt", "best_model.pt"):
        wa, wb = (torch.load(d / name, weights_only=True)["model"] for d in (tmp_path / "ref", out))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), name
    a, b = (json.loads((d / "result.json").read_text()) for d in (tmp_path / "ref", out))
    assert a["test_mae"] == b["test_mae"] and a["val_mae"] == b["val_mae"]
    assert not (out / LOCK_NAME).exists()


# -- --target all, --preset gilmer ----------------------------------------------------------------


def test_target_all_trains_one_model_per_target_and_writes_the_table(recipe, data_root, tmp_path, capsys):
    from gnnkit.data.qm9 import TARGETS
    from gnnkit.predict import load_predictor

    out = tmp_path / "all"
    table = run(recipe, data_root, out, "--epochs", "1", "--target", "all")
    saved = json.loads((out / "table.json").read_text())
    assert saved == json.loads(json.dumps(table)) and saved["status"] == "completed"
    assert [r["target"] for r in saved["rows"]] == list(TARGETS) and saved["mean_over"] == 13
    assert [r["gilmer_enn_s2s_ratio"] for r in saved["rows"]] == [qm9_cli.GILMER_ENN_S2S[t] for t in TARGETS]
    assert saved["mean_ratio"] == pytest.approx(sum(r["ratio"] for r in saved["rows"]) / 13)
    for row in saved["rows"]:
        result = json.loads((out / row["target"] / "result.json").read_text())
        assert result["target"] == row["target"] and result["test_mae"] == row["test_mae"]
        assert row["ratio"] == pytest.approx(row["test_mae"] / row["chemical_accuracy"])
    assert load_predictor(out / "gap").targets == ["gap"] and load_predictor(out / "cv").units == ["cal/mol K"]
    # The reference columns, against a numpy transcription: the training mean (intensive gap), plus
    # the least-squares per-element fit without intercept (extensive u0), on the same test molecules.
    from gnnkit.data import QM9, load_split
    from gnnkit.data.qm9 import target_index

    split = load_split()
    ds = QM9(data_root, log=False, subset=np.concatenate([split["train"][:48], split["val"][:16], split["test"][:16]]))
    def column(key, part, n):
        return np.asarray(ds.graph_attr(key, split[part][:n], missing="skip"), dtype=np.float64)

    y_tr, y_te, c_tr, c_te = (column(k, part, n) for k in ("y", "atom_counts") for part, n in (("train", 48), ("test", 16)))
    rows = {r["target"]: r for r in saved["rows"]}
    j = target_index("gap")
    assert rows["gap"]["reference_test_mae"] == pytest.approx(np.abs(y_te[:, j] - y_tr[:, j].mean()).mean(), rel=1e-9)
    assert rows["gap"]["residual_std"] == pytest.approx(y_tr[:, j].std(), rel=1e-9)
    j = target_index("u0")
    w = np.linalg.lstsq(c_tr, y_tr[:, j], rcond=None)[0]
    resid = y_tr[:, j] - c_tr @ w
    expected = np.abs(y_te[:, j] - c_te @ w - resid.mean()).mean()
    assert rows["u0"]["reference_test_mae"] == pytest.approx(expected, rel=1e-6)
    assert rows["u0"]["residual_std"] == pytest.approx(resid.std(), rel=1e-6)
    for row in saved["rows"]:
        assert row["mae_over_reference"] == pytest.approx(row["test_mae"] / row["reference_test_mae"])
        assert row["mae_over_residual_std"] == pytest.approx(row["test_mae"] / row["residual_std"])
    text = (out / "table.md").read_text()
    assert "| **mean ratio** |" in text and "**0.68**" in text and "arXiv:1704.01212" in text
    assert "| u0 | eV | 0.043 |" in text and "| reference MAE | MAE / reference |" in text and text in capsys.readouterr().out
    with pytest.raises(SystemExit):  # a second fresh run may not replace the table
        recipe.parse_args([*TINY, "--data-root", str(data_root), "--out", str(out), "--target", "all"])
    again = run(recipe, data_root, out, "--epochs", "1", "--target", "all", "--resume")  # all finished: nothing trains
    assert [r["test_mae"] for r in again["rows"]] == [r["test_mae"] for r in saved["rows"]]


def test_gilmer_table_2_column():
    module = qm9_cli
    from gnnkit.data.qm9 import TARGETS

    assert set(module.GILMER_ENN_S2S) == set(TARGETS)
    assert round(sum(module.GILMER_ENN_S2S.values()) / 13, 2) == module.GILMER_ENN_S2S_MEAN == 0.68
    assert module.GILMER_ENN_S2S["u0"] == 0.45


def test_gilmer_preset(recipe, tmp_path, monkeypatch):
    import math

    from gnnkit.models import build_model

    monkeypatch.chdir(tmp_path)
    cfg = recipe.parse_args(["--preset", "gilmer", "--target", "all"])
    assert (cfg.model, cfg.edges, cfg.hydrogens, cfg.train_size, cfg.eval_size) == ("mpnn", "complete", True, None, None)
    assert (cfg.batch_size, cfg.lr, cfg.schedule, cfg.decay_start, cfg.final_lr_factor, cfg.grad_clip) == (
        20, 2.5e-4, "linear", 0.5, 0.1, None)  # fmt: skip
    assert (cfg.channels, cfg.steps, cfg.model_options, cfg.preset, cfg.target) == (200, 3, {"set2set_steps": 6}, "gilmer", "all")
    steps = math.ceil(110_831 / cfg.batch_size) * cfg.epochs
    assert abs(steps - 3_000_000) < 5_542  # the paper's 3M steps, to within one epoch
    model = build_model(cfg.model, 13, 1, edge_dim=5, **qm9_cli.model_options(cfg))
    assert model.channels == 200 and model.steps == 3 and model.readout.steps == 6
    # The command line wins over the preset.
    mine = recipe.parse_args(["--preset", "gilmer", "--epochs", "2", "--train-size", "100", "--model-option", "set2set_steps=2",
                              "--grad-clip", "1", "--no-hydrogens"])  # fmt: skip
    assert (mine.epochs, mine.train_size, mine.eval_size, mine.model_options, mine.grad_clip, mine.hydrogens) == (
        2, 100, None, {"set2set_steps": 2}, 1.0, False)  # fmt: skip
    assert mine.batch_size == 20 and mine.channels == 200
    quick = recipe.parse_args([])
    assert (quick.preset, quick.decay_start, quick.epochs, quick.channels) == ("quick", 0.0, 6, None)
