"""recipes/gpu_check.py: the dry run (every stage on CPU at tiny sizes, as a user runs it), a
failing and a timed-out stage reported while the next stage runs, and the argument checks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "recipes" / "gpu_check.py"
STAGES = ("cuda_tests", "bench_ops", "bench_layers", "qm9_speed", "qm9_compile", "qm9_train")


def run_check(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def test_dry_run_runs_every_stage(tmp_path):
    out = tmp_path / "check"
    done = run_check("--dry-run", "--out", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["report.md", "results.json", "stages.log"]  # .work removed
    results = json.loads((out / "results.json").read_text())
    stages = results["stages"]
    assert list(stages) == list(STAGES) and all(s["status"] == "ok" for s in stages.values())
    tests = stages["cuda_tests"]["data"]
    assert tests["tests"] >= 9 and tests["passed"] == tests["tests"] and tests["skipped"] == 0
    assert [r["F"] for r in stages["bench_ops"]["data"]["rows"]] == [16, 16, 16]
    assert set(stages["bench_layers"]["data"]["speedup"]) == {"layer", "model"}
    for stage, count in (("qm9_speed", 2), ("qm9_compile", 1)):
        variants = stages[stage]["data"]["variants"]
        assert len(variants) == count and all(v.get("molecules_per_second", 0) > 0 for v in variants.values()), variants
    train = stages["qm9_train"]["data"]
    assert train["sizes"] == {"train": 48, "val": 16, "test": 16} and train["test_mae_ev"] > 0 and train["error"] is None
    report = (out / "report.md").read_text()
    assert report.startswith("# gnnkit GPU check (dry run")
    for row in ("CUDA tests (pytest -m cuda) | all pass, none skipped | 9/9 passed", "spmm fwd+bwd vs PyG", "| >= 3x |",
                "QM9 training throughput: gnnkit MPNN, float32, torch.compile", "QM9 U0, 48 training molecules"):  # fmt: skip
        assert row in report, row
    log = (out / "stages.log").read_text()
    assert all(f"===== {s}: ok" in log for s in STAGES)


def test_a_slow_and_a_failing_stage_are_reported_and_the_next_runs(tmp_path):
    bogus = tmp_path / "bogus.npz"
    bogus.write_text("not a pack")
    out = tmp_path / "check"
    done = run_check("--dry-run", "--out", str(out), "--stages", "bench_layers,qm9_speed", "--qm9-pack", str(bogus),
                     "--limit", "bench_layers=0.5")  # fmt: skip
    assert done.returncode == 1
    stages = json.loads((out / "results.json").read_text())["stages"]
    assert [stages[s]["status"] for s in ("bench_layers", "qm9_speed")] == ["timeout", "failed"]
    assert stages["bench_layers"]["seconds"] < 5  # killed at its limit, with its process group
    report = (out / "report.md").read_text()
    assert "| bench_layers | timeout |" in report and "| qm9_speed | failed |" in report
    assert "is not a gnnkit-qm9-pack-1 file" in report  # the failing stage's last lines


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--dry-run"], "--out is required"),
        (["--dry-run", "--out", "{tmp}", "--stages", "cuda_tests,gpu_burn"], "unknown gpu_burn"),
        (["--dry-run", "--out", "{tmp}", "--limit", "bench_ops"], "--limit must be STAGE=SECONDS"),
        (["--dry-run", "--out", "{tmp}", "--limit", "bench_ops=-1"], "--limit must be STAGE=SECONDS"),
        (["--dry-run", "--out", "{tmp}", "--budget", "0"], "--budget and --train-seconds must be > 0"),
        (["--dry-run", "--out", "{tmp}", "--qm9-pack", "{tmp}/missing.npz"], "no such file"),
        (["--out", "{tmp}"], "no CUDA device"),
    ],
)
def test_bad_arguments_are_refused(argv, message, tmp_path, load_recipe, capsys):
    check = load_recipe("gpu_check")
    if "no CUDA device" in message and check.torch.cuda.is_available():
        pytest.fail("this machine has a GPU: the CPU-only refusal cannot be checked here")
    with pytest.raises(SystemExit):
        check.parse_args([a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert message in capsys.readouterr().err


def test_a_previous_report_is_not_replaced_without_overwrite(tmp_path, load_recipe, capsys):
    check = load_recipe("gpu_check")
    (tmp_path / "report.md").write_text("earlier run")
    with pytest.raises(SystemExit):
        check.parse_args(["--dry-run", "--out", str(tmp_path)])
    assert "already holds report.md" in capsys.readouterr().err
    cfg = check.parse_args(["--dry-run", "--out", str(tmp_path), "--overwrite", "--stages", "bench_ops"])
    assert cfg.stages == ("bench_ops",) and cfg.device == "cpu" and cfg.limit("bench_ops") == check.DRY_LIMIT
    assert sum(check.LIMITS.values()) <= 8 * 60  # the whole check fits 8 minutes on one GPU
