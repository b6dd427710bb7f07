"""The prepared GPU check behind ``recipes/gpu_check.py``: its stages, each run in a process of its
own with a time limit, the QM9 stages' bodies (throughput through :func:`gnnkit.train.loop.train_step`,
time-boxed training through :func:`gnnkit.train.fit` over
:class:`gnnkit.train.budget.BudgetChunks`), and the report against the targets.

Entry point: :func:`run` with a :class:`CheckConfig`. ``python -m gnnkit.bench.gpu_check STAGE
CONFIG_JSON`` is the body of one QM9 stage's process. The stages run this checkout's tests and
benchmark recipes, so the check runs from a checkout (see ``recipes/gpu_check.py``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import pathlib
import platform
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch

REPO = pathlib.Path(__file__).resolve().parents[2]  # the checkout whose tests and recipes the stages run

STAGES: tuple[str, ...] = ("cuda_tests", "bench_ops", "bench_layers", "qm9_speed", "qm9_compile", "qm9_train")
# Seconds per stage on one H100/H200 (process start and data loading included). Their sum is the
# 8 minutes the whole check may take; a stage gets less when the budget runs short.
LIMITS: dict[str, float] = {"cuda_tests": 75, "bench_ops": 70, "bench_layers": 30, "qm9_speed": 45, "qm9_compile": 70,
                            "qm9_train": 190}  # fmt: skip
DRY_LIMIT = 120.0
OUTPUTS = ("report.md", "results.json", "stages.log")
CHEMICAL_ACCURACY_U0 = 0.043  # eV, Gilmer et al. 2017, Table 2


@dataclass
class CheckConfig:
    out: str
    dry_run: bool = False
    stages: tuple[str, ...] = STAGES
    budget: float = 472.0  # seconds for all stages together (the 8 minutes, less start-up and the report)
    limits: dict[str, float] = field(default_factory=dict)  # per-stage overrides
    train_seconds: float = 130.0  # training wall-clock of qm9_train (data loading and evaluation excluded)
    batch_size: int = 32  # the qm9 recipe's
    qm9_pack: str | None = None
    data_root: str | None = None
    wheels: str | None = None
    overwrite: bool = False
    keep_work: bool = False

    @property
    def device(self) -> str:
        return "cpu" if self.dry_run else "cuda"

    @property
    def work(self) -> pathlib.Path:
        return pathlib.Path(self.out) / ".work"

    def limit(self, stage: str) -> float:
        if stage in self.limits:
            return self.limits[stage]
        if self.dry_run:
            return DRY_LIMIT
        if stage == "qm9_train":  # the training time plus data loading, compilation and evaluation
            return max(LIMITS[stage], self.train_seconds + 60)
        return LIMITS[stage]


# ------------------------------------------------------------------------------- QM9 data


def _qm9_rows(cfg: CheckConfig) -> dict[str, Any]:
    """Rows of the committed split the QM9 stages use (a few dozen in the dry run)."""
    from gnnkit.data import load_split

    split = load_split()
    if cfg.dry_run:
        return {"train": split["train"][:48], "val": split["val"][:16], "test": split["test"][:16]}
    return split


def qm9_dataset(cfg: CheckConfig, rows):
    """QM9 (complete graph, hydrogens) for ``rows``: from the pack, else from qm9pack + RDKit."""
    import numpy as np

    if cfg.qm9_pack:
        from gnnkit.data.qm9_pack import load_qm9_pack

        return load_qm9_pack(cfg.qm9_pack, subset=np.asarray(rows))
    if importlib.util.find_spec("rdkit") is None or importlib.util.find_spec("qm9pack") is None:
        raise RuntimeError("QM9 needs --qm9-pack FILE (python -m gnnkit.data.qm9_pack --out FILE, where RDKit and "
                           "qm9pack are installed) or both packages here")  # fmt: skip
    from gnnkit.data import QM9

    return QM9(cfg.data_root, subset=np.asarray(rows), log=False)


def make_dry_pack(cfg: CheckConfig) -> str:
    """The dry run's QM9: a pack of the few rows it uses, built through the real featurizer."""
    import numpy as np

    from gnnkit.data import QM9
    from gnnkit.data.qm9_pack import write_qm9_pack

    rows = np.concatenate(list(_qm9_rows(cfg).values()))
    path = cfg.work / "qm9_dry_pack.npz"
    write_qm9_pack(QM9(cfg.work / "qm9", subset=rows, num_workers=1, log=False), path)
    return str(path)


def _normalizer(dataset, rows):
    from gnnkit.data import TargetNormalizer, target_index

    col = target_index("u0")
    y, counts = dataset.graph_attr("y", rows, missing="skip"), dataset.graph_attr("atom_counts", rows, missing="skip")
    return TargetNormalizer.fit(y, counts, [col], [True])


def _models(in_channels: int, edge_dim: int, tiny: bool = False) -> dict[str, Callable[[], torch.nn.Module]]:
    """Both models at their defaults (Gilmer's enn-s2s sizes: d = 64, edge MLP 128, 3 steps,
    set2set 3); ``tiny`` (the dry run) makes them small, so that compiling them takes seconds."""
    from gnnkit.models import build_model
    from gnnkit.models.pyg_reference import PygQM9NNConv

    size = {"channels": 16, "edge_hidden": 16, "steps": 1, "set2set_steps": 1} if tiny else {}
    return {
        "gnnkit MPNN": lambda: build_model("mpnn", in_channels, 1, edge_dim=edge_dim, **size),
        "PyG qm9_nn_conv": lambda: PygQM9NNConv(in_channels, 1, edge_dim=edge_dim, **size),
    }


# ------------------------------------------------------------------------------ throughput


def train_steps_per_second(model, batches, normalizer, amp: bool, steps: int, warmup: int, device: str) -> dict:
    """Training steps as :func:`gnnkit.train.fit` takes them (its :func:`gnnkit.train.loop.train_step`:
    graph preparation, forward under autocast, MSE, backward, gradient clipping at 5, Adam), over
    ``batches`` already on the device, cyclically. Returns molecules/s and the time of the warm-up
    steps (compilation included)."""
    from gnnkit.train.loop import train_step

    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    dev = torch.device(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    for i in range(warmup):
        train_step(model, model, batches[i % len(batches)], normalizer, opt, dev, amp, grad_clip=5.0)
    sync()
    warm = time.perf_counter() - t0
    mols = 0
    t0 = time.perf_counter()
    for i in range(steps):
        batch = batches[i % len(batches)]
        train_step(model, model, batch, normalizer, opt, dev, amp, grad_clip=5.0)
        mols += batch.num_graphs
    sync()
    seconds = time.perf_counter() - t0
    return {"molecules_per_second": mols / seconds, "steps": steps, "seconds": seconds, "warmup_seconds": warm}


def stage_qm9_speed(cfg: CheckConfig, result: dict, compiled: bool) -> None:
    """gnnkit's MPNN vs PyG's model on the same batches (``compiled``: under torch.compile)."""
    from torch_geometric.loader import DataLoader

    rows = _qm9_rows(cfg)["train"][: 64 if cfg.dry_run else 4096]
    dataset = qm9_dataset(cfg, rows)
    normalizer = _normalizer(dataset, rows).to(cfg.device)
    loader = DataLoader(dataset, batch_size=cfg.batch_size if not cfg.dry_run else 8, shuffle=True,
                        generator=torch.Generator().manual_seed(0))  # fmt: skip
    batches = [b.to(cfg.device) for b in loader]
    steps, warmup = (2, 1) if cfg.dry_run else ((60, 12) if compiled else (100, 10))
    sample = dataset[0]
    result.update({"molecules": len(dataset), "batch_size": loader.batch_size, "batches": len(batches), "variants": {}})
    # bf16 first: the variants the training runs with. On CPU (dry run) autocast is off, so only
    # float32, and of the compiled variants only gnnkit's (compiling on CPU takes seconds each).
    models = _models(sample.x.size(1), sample.edge_attr.size(1), tiny=cfg.dry_run)
    order = [(m, amp) for amp in ((False,) if cfg.dry_run else (True, False)) for m in models]
    if cfg.dry_run and compiled:
        order = order[:1]
    for name, amp in order:
        label = f"{name}, {'bf16 AMP' if amp else 'float32'}" + (", torch.compile" if compiled else "")
        torch.manual_seed(0)
        model = models[name]().to(cfg.device)
        try:
            if compiled:
                fullgraph = name.startswith("gnnkit")  # gnnkit compiles without graph breaks (tests/models)
                backend = "aot_eager" if cfg.dry_run else "inductor"
                model = torch.compile(model, fullgraph=fullgraph, dynamic=True, backend=backend)
            result["variants"][label] = train_steps_per_second(model, batches, normalizer, amp, steps, warmup, cfg.device)
        except Exception as e:  # noqa: BLE001 - "where it works": a failing variant is a result
            result["variants"][label] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"}
        print(label, result["variants"][label], flush=True)
        _save(cfg, result)  # after each variant, so a timeout keeps what was measured
        if compiled:
            torch._dynamo.reset()


def stage_qm9_train(cfg: CheckConfig, result: dict) -> None:
    """U0 on the full training split, bf16 AMP, for ``train_seconds`` of training."""
    import numpy as np

    from gnnkit.train import TrainConfig, fit, make_loader
    from gnnkit.train.budget import BudgetChunks

    t0 = time.perf_counter()
    split = _qm9_rows(cfg)
    dataset = qm9_dataset(cfg, np.concatenate(list(split.values())))
    parts = {k: dataset.select(v, missing="skip") for k, v in split.items()}
    result["data_seconds"] = round(time.perf_counter() - t0, 1)
    result["sizes"] = {k: len(v) for k, v in parts.items()}
    print(f"QM9 loaded in {result['data_seconds']} s: {result['sizes']}", flush=True)
    normalizer = _normalizer(dataset, split["train"])
    on_gpu = cfg.device == "cuda"
    # Collation on the host must keep up with the GPU: loader processes, fewer for evaluation.
    workers = {k: min(8 if k == "train" else 3, max((os.cpu_count() or 1) - 2, 0)) if on_gpu else 0 for k in parts}
    loaders = {k: make_loader(v, cfg.batch_size, shuffle=k == "train", num_workers=workers[k], pin_memory=on_gpu)
               for k, v in parts.items()}  # fmt: skip
    seconds = 2.0 if cfg.dry_run else cfg.train_seconds
    chunks = 2 if cfg.dry_run else 5
    # ``seconds`` of training wall-clock in ``chunks`` equal stretches (fit validates after each), over as many passes as it takes
    train = BudgetChunks(loaders["train"], seconds, time_evals=chunks, epochs=0, synchronize=torch.cuda.synchronize if on_gpu else None)
    sample = parts["train"][0]
    torch.manual_seed(0)
    model = _models(sample.x.size(1), sample.edge_attr.size(1), tiny=cfg.dry_run)["gnnkit MPNN"]()
    config = TrainConfig(epochs=chunks, lr=1e-3, schedule="constant", grad_clip=5.0, amp=True, device=cfg.device,
                         progress=False, target_names=["u0"], score_scale=[CHEMICAL_ACCURACY_U0])  # fmt: skip
    res = fit(model, train, loaders["val"], loaders["test"], normalizer, config)
    test = res.test_mae[0] if res.test_mae and not res.error else None
    result.update({
        "train_seconds": round(res.train_seconds, 1), "fit_seconds": round(res.seconds, 1),
        "molecules_per_second": round(res.train_molecules_per_second, 1),
        "passes_started": train.passes, "chunks": chunks, "error": res.error, "best_chunk": res.best_epoch,
        "val_mae_ev": res.val_mae[0] if res.val_mae else None, "test_mae_ev": test,
        "test_mae_over_chemical_accuracy": test / CHEMICAL_ACCURACY_U0 if test is not None else None,
        "history": res.history, "loader_workers": workers, "batch_size": cfg.batch_size,
    })  # fmt: skip
    _save(cfg, result)


# ------------------------------------------------------------------------- stage processes


def _save(cfg: CheckConfig, result: dict) -> None:
    path = cfg.work / f"{result['stage']}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=str))
    os.replace(tmp, path)


def run_in_process(cfg: CheckConfig, stage: str) -> None:
    """The body of a ``--stage`` process (QM9 stages; the others are scripts of their own)."""
    result: dict[str, Any] = {"stage": stage}
    _save(cfg, result)
    if stage == "qm9_speed":
        stage_qm9_speed(cfg, result, compiled=False)
    elif stage == "qm9_compile":
        stage_qm9_speed(cfg, result, compiled=True)
    elif stage == "qm9_train":
        stage_qm9_train(cfg, result)
    else:
        raise ValueError(f"stage {stage!r} does not run in process")


def _command(cfg: CheckConfig, stage: str) -> list[str]:
    py, work = sys.executable, cfg.work
    if stage == "cuda_tests":
        cmd = [py, "-m", "pytest", "-m", "cuda", "tests/ops/test_cuda.py", "-q", "-p", "no:cacheprovider",
               f"--junitxml={work / 'cuda_tests.xml'}"]  # fmt: skip
        if not cfg.dry_run and importlib.util.find_spec("xdist") is not None:
            # Triton compiles each kernel variant the first time a process launches it: spread
            # those compilations over several processes (pytest-xdist, where installed).
            cmd += ["-n", str(_test_workers())]
        return cmd
    if stage == "bench_ops":
        cmd = [py, "recipes/bench_ops.py", "--device", cfg.device, "--graphs", "powerlaw", "--reduces", "sum", "mean",
               "max", "--json", str(work / "bench_ops.json")]  # fmt: skip
        if cfg.dry_run:
            return cmd + ["--quick", "--threads", "1"]
        return cmd + ["--feats", "16", "64", "256", "--repeats", "10", "--warmup", "3", "--min-seconds", "0.2"]
    if stage == "bench_layers":
        cmd = [py, "recipes/bench_layers.py", "--device", cfg.device, "--json", str(work / "bench_layers.json")]
        return cmd + (["--quick", "--threads", "1"] if cfg.dry_run else ["--repeats", "20"])
    return [py, "-m", "gnnkit.bench.gpu_check", stage, json.dumps(asdict(cfg))]


def _test_workers() -> int:
    return max(1, min(8, (os.cpu_count() or 1) // 2))


def _env(cfg: CheckConfig, stage: str) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(REPO)] + ([str(cfg.work / "site")] if cfg.wheels else [])
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["PYTHONUNBUFFERED"] = "1"
    if cfg.dry_run:
        env.update(TRITON_INTERPRET="1", GNNKIT_CUDA_TESTS_DEVICE="cpu", OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"))
    else:
        env.update(GNNKIT_TEST_GPU="1", TRITON_INTERPRET="0")
        env.pop("GNNKIT_CUDA_TESTS_DEVICE", None)
        if stage == "cuda_tests":  # the CPU references of parallel test processes share the cores
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // _test_workers()))
    return env


def run_stage(cfg: CheckConfig, stage: str, timeout: float, log) -> dict:
    """Runs one stage in a new process group, killed at ``timeout``; returns its record."""
    t0 = time.perf_counter()
    log.write(f"\n===== {stage} (limit {timeout:.0f} s)\n")
    log.flush()
    proc = subprocess.Popen(_command(cfg, stage), cwd=REPO, env=_env(cfg, stage), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=timeout)
        status = "ok" if proc.returncode == 0 else "failed"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        status = "timeout"
    seconds = time.perf_counter() - t0
    lines = output.splitlines()
    log.write("\n".join(lines if len(lines) <= 400 else lines[:150] + ["[...]"] + lines[-250:]) + "\n")
    log.write(f"===== {stage}: {status} in {seconds:.1f} s (exit {proc.returncode})\n")
    log.flush()
    record = {"stage": stage, "status": status, "seconds": round(seconds, 1), "limit": round(timeout),
              "exit": proc.returncode, "tail": lines[-15:]}  # fmt: skip
    record["data"] = _stage_data(cfg, stage)
    return record


def _stage_data(cfg: CheckConfig, stage: str) -> dict | None:
    work = cfg.work
    if stage == "cuda_tests":
        path = work / "cuda_tests.xml"
        if not path.exists():
            return None
        root = ET.parse(path).getroot()
        suite = root if root.tag == "testsuite" else root.find("testsuite")
        cases = suite.findall("testcase") if suite is not None else []
        failures = []
        for case in cases:
            for kind in ("failure", "error"):
                node = case.find(kind)
                if node is not None:
                    message = (node.get("message") or kind).splitlines() or [kind]
                    failures.append(f"{case.get('name')}: {message[0][:200]}")
        skipped = sum(case.find("skipped") is not None for case in cases)
        passed = len(cases) - len(failures) - skipped
        return {"tests": len(cases), "failed": len(failures), "skipped": skipped, "passed": passed, "failures": failures}
    name = {"bench_ops": "bench_ops.json", "bench_layers": "bench_layers.json"}.get(stage, f"{stage}.json")
    path = work / name
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


# ---------------------------------------------------------------------------------- report


def _fmt(x: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:{spec}}{suffix}"


def targets(records: dict[str, dict]) -> list[tuple[str, str, str, bool | None]]:
    """(what, target, measured, met) rows of the report."""
    out: list[tuple[str, str, str, bool | None]] = []
    tests = (records.get("cuda_tests") or {}).get("data")
    if tests:
        measured = f"{tests['passed']}/{tests['tests']} passed, {tests['skipped']} skipped"
        met = tests["failed"] == 0 and tests["skipped"] == 0 and tests["tests"] > 0
        out.append(("CUDA tests (pytest -m cuda)", "all pass, none skipped", measured, met))
    ops = (records.get("bench_ops") or {}).get("data")
    if ops and ops.get("rows"):
        rows, peak = ops["rows"], ops.get("peak_gbps")
        f64 = [r for r in rows if r["F"] == 64 and r["reduce"] == "sum" and "gbps" in r]
        if f64:
            frac = 100 * f64[0]["gbps"] / peak if peak else None
            measured = f"{f64[0]['gbps']:.0f} GB/s = {_fmt(frac, '.0f', '%')} of {_fmt(peak, '.0f')} GB/s"
            if ops.get("copy_gbps"):
                measured += f" (device-to-device copy: {ops['copy_gbps']:.0f} GB/s)"
            out.append(("spmm forward bandwidth, F = 64, sum (power-law 1M/10M)", ">= 70% of HBM peak", measured,
                        frac is not None and frac >= 70))  # fmt: skip
        speed = {(r["F"], r["reduce"]): r["pyg"] / r["spmm"] for r in rows}
        worst = min(speed, key=speed.get)
        measured = f"{speed[worst]:.2f}x (worst: F={worst[0]} {worst[1]}) .. {max(speed.values()):.2f}x"
        out.append(("spmm fwd+bwd vs PyG's scatter path, every F and reduce", ">= 2x", measured, speed[worst] >= 2))
        sparse = [r["sparse"] / r["spmm"] for r in rows if r.get("sparse")]
        if sparse:
            out.append(("spmm fwd+bwd vs torch.sparse (sum)", "(reported)", f"{min(sparse):.2f}x .. {max(sparse):.2f}x", None))
    layers = (records.get("bench_layers") or {}).get("data")
    if layers:
        for bench, label in (("layer", "EdgeNetworkConv vs NNConv"), ("model", "MPNN vs PyG qm9_nn_conv model")):
            s = layers["speedup"][bench]
            out.append((f"{label}, fwd+bwd", ">= 3x", f"{s:.2f}x (memory {layers['memory_ratio'][bench]:.2f}x less)", s >= 3))
    for stage in ("qm9_speed", "qm9_compile"):
        data = (records.get(stage) or {}).get("data") or {}
        variants = data.get("variants") or {}
        for label, v in variants.items():
            measured = f"{v['molecules_per_second']:.0f} mol/s" if "molecules_per_second" in v else f"failed: {v['error']}"
            out.append((f"QM9 training throughput: {label}", "(reported)", measured, None))
        for amp in ("float32", "bf16 AMP"):
            suffix = ", torch.compile" if stage == "qm9_compile" else ""
            a, b = variants.get(f"gnnkit MPNN, {amp}{suffix}", {}), variants.get(f"PyG qm9_nn_conv, {amp}{suffix}", {})
            if "molecules_per_second" in a and "molecules_per_second" in b:
                out.append((f"QM9 throughput gnnkit / PyG ({amp}{suffix})", "(reported)",
                            f"{a['molecules_per_second'] / b['molecules_per_second']:.2f}x", None))  # fmt: skip
    train = (records.get("qm9_train") or {}).get("data") or {}
    if "molecules_per_second" in train:
        mae = train.get("test_mae_ev")
        out.append((f"QM9 U0, {train['sizes']['train']:,} training molecules, bf16 AMP, {train['train_seconds']:.0f} s of training",
                    "(reported; enn-s2s: 0.45 x chemical accuracy after 3M steps)",
                    f"test MAE {_fmt(mae, '.4f', ' eV')} = {_fmt(train.get('test_mae_over_chemical_accuracy'), '.1f')} x chemical "
                    f"accuracy; {train['molecules_per_second']:.0f} mol/s", None))  # fmt: skip
    return out


def report(cfg: CheckConfig, records: dict[str, dict], env: dict, seconds: float) -> str:
    lines = [
        "# gnnkit GPU check" + (" (dry run on CPU: every stage at tiny sizes; no figure here means anything)" if cfg.dry_run else ""),
        "",
        f"Command: `python recipes/gpu_check.py {' '.join(env['argv'])}`",
        "",
        f"Device: {env['device']}; torch {env['torch']}, triton {env['triton']}, torch-geometric {env['torch_geometric']}, "
        f"Python {env['python']}; {env['cpus']} CPUs; commit {env['commit']}. Total {seconds:.0f} s.",
        "",
        "| stage | status | seconds (limit) |",
        "|---|---|---:|",
    ]
    for stage in cfg.stages:
        r = records.get(stage, {"status": "not run", "seconds": 0, "limit": 0})
        lines.append(f"| {stage} | {r['status']} | {r['seconds']:.0f} ({r['limit']:.0f}) |")
    lines += ["", "| check | target | measured | met |", "|---|---|---|---|"]
    for what, target, measured, met in targets(records):
        mark = "n/a" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {what} | {target} | {measured} | {mark} |")
    failures = (records.get("cuda_tests") or {}).get("data") or {}
    if failures.get("failures"):
        lines += ["", "CUDA test failures:", ""] + [f"- {f}" for f in failures["failures"][:30]]
    for stage in cfg.stages:
        r = records.get(stage)
        if r and r["status"] != "ok":
            lines += ["", f"`{stage}` {r['status']}; last lines:", "", "```", *r["tail"], "```"]
    lines += ["", "Every figure with its settings is in results.json; each stage's output in stages.log."]
    return "\n".join(lines) + "\n"


def _environment(cfg: CheckConfig, argv: list[str]) -> dict[str, Any]:
    def version(name: str) -> str:
        try:
            return __import__(name).__version__
        except Exception:  # noqa: BLE001
            return "not installed"

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                timeout=10).stdout.strip() or "unknown"  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    device = torch.cuda.get_device_name() if torch.cuda.is_available() and not cfg.dry_run else f"CPU ({platform.machine()})"
    return {"argv": argv, "device": device, "torch": torch.__version__, "triton": version("triton"),
            "torch_geometric": version("torch_geometric"), "python": platform.python_version(),
            "cpus": os.cpu_count(), "commit": commit}  # fmt: skip


def run(cfg: CheckConfig, argv: list[str]) -> dict:
    """Runs ``cfg.stages``, each in its own process within its limit and the whole budget, and
    writes ``report.md``, ``results.json`` and ``stages.log`` under ``cfg.out``; returns each
    stage's record."""
    t_start = time.perf_counter()
    out = pathlib.Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg.work.mkdir(exist_ok=True)
    records: dict[str, dict] = {}
    with open(out / "stages.log", "w") as log:
        if cfg.wheels:
            done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target",
                                   str(cfg.work / "site"), *map(str, sorted(pathlib.Path(cfg.wheels).glob("*.whl")))],
                                  capture_output=True, text=True)  # fmt: skip
            log.write(f"===== wheels from {cfg.wheels}: exit {done.returncode}\n{done.stdout}{done.stderr}\n")
        if cfg.dry_run and cfg.qm9_pack is None and {"qm9_speed", "qm9_compile", "qm9_train"} & set(cfg.stages):
            cfg.qm9_pack = make_dry_pack(cfg)
        deadline = t_start + cfg.budget
        for stage in cfg.stages:
            left = deadline - time.perf_counter()
            if left < 5:
                records[stage] = {"stage": stage, "status": "not run (budget spent)", "seconds": 0, "limit": 0, "tail": []}
                continue
            records[stage] = run_stage(cfg, stage, min(cfg.limit(stage), left), log)
            print(f"{stage}: {records[stage]['status']} in {records[stage]['seconds']:.0f} s", flush=True)
    seconds = time.perf_counter() - t_start
    env = _environment(cfg, argv)
    (out / "results.json").write_text(json.dumps({"config": asdict(cfg), "environment": env, "seconds": round(seconds, 1),
                                                  "stages": records}, indent=1, default=str) + "\n")  # fmt: skip
    text = report(cfg, records, env, seconds)
    (out / "report.md").write_text(text)
    print(text, flush=True)
    if not cfg.keep_work:
        shutil.rmtree(cfg.work, ignore_errors=True)
    return records


if __name__ == "__main__":
    stage, config_json = sys.argv[1:3]
    run_in_process(CheckConfig(**{**json.loads(config_json), "stages": (stage,)}), stage)
