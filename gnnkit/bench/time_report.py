"""Runs compared at equal training wall-clock: one figure, one table.

Reads the run folders a training recipe wrote (``result.json`` and the per-epoch ``log.csv`` of
:func:`gnnkit.train.fit`, whose rows carry the cumulative ``train_seconds`` and
``train_molecules``) and writes ``<stem>.md``, ``<stem>.json`` and ``<stem>.png``: validation MAE
against training wall-clock for every run on one figure, and a table with test MAE (in the
target's unit and as a multiple of its chemical accuracy), epochs reached, molecules/s (mean
over the run and the range of its epochs, to show whether the step slowed), parameters and peak
memory, with each run's command, commit, machine and load before and after.

    python recipes/qm9_report.py runs/full_mpnn runs/full_pyg --out recipes/results/qm9_full_cpu
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gnnkit.data.files import atomic_write
from gnnkit.train.checkpoint import atomic_write_text


@dataclass
class RunCurve:
    """One run: its ``result.json`` and the validation curve of its ``log.csv``.

    Attributes:
        label: the run's name in the table and the legend (the folder's name).
        result: the parsed ``result.json``.
        seconds: cumulative training seconds at each evaluation (``[epochs]``).
        val_mae: validation MAE of the target at each evaluation, in its unit (``[epochs]``).
        molecules: cumulative training molecules at each evaluation (``[epochs]``).
        rates: training molecules/s of each epoch (``[epochs]``).
    """

    label: str
    result: dict[str, Any]
    seconds: list[float]
    val_mae: list[float]
    molecules: list[float]
    rates: list[float]


def read_run(folder: str | os.PathLike, label: str | None = None) -> RunCurve:
    """Reads a run folder written by a recipe with :func:`gnnkit.train.fit` (``result.json`` and
    ``log.csv``).

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: the log lacks the columns of a timed run (``train_seconds``, a ``val_mae``
            column), or the result has no test MAE (a run that diverged or never finished).
    """
    folder = Path(folder)
    result = json.loads((folder / "result.json").read_text())
    with open(folder / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{folder / 'log.csv'} has no epochs")
    val_key = next((k for k in rows[0] if k.startswith("val_mae")), None)
    missing = [k for k in ("train_seconds", "train_molecules", "train_molecules_per_second") if k not in rows[0]]
    if val_key is None or missing:
        raise ValueError(f"{folder / 'log.csv'} lacks the columns {missing or ['val_mae']} (written by an older gnnkit?)")
    if result.get("test_mae") is None:
        raise ValueError(f"{folder / 'result.json'} has no test MAE (status {result.get('status')!r})")
    rows = [r for r in rows if r.get("train_seconds")]  # a diverged epoch's row has no time
    return RunCurve(
        label or folder.name, result, [float(r["train_seconds"]) for r in rows], [float(r[val_key]) for r in rows],
        [float(r["train_molecules"]) for r in rows], [float(r["train_molecules_per_second"]) for r in rows],
    )  # fmt: skip


def summary_row(run: RunCurve) -> dict[str, Any]:
    """The table's row for one run."""
    r = run.result
    train_size = r.get("train_size") or 0
    load = r.get("machine_load") or {}
    return {
        "run": run.label, "model": r.get("model"), "target": r.get("target"), "unit": r.get("unit"),
        "test_mae": r["test_mae"], "test_mae_ratio": r.get("test_mae_ratio"), "val_mae": r.get("val_mae"),
        "best_epoch": r.get("best_epoch"), "epochs": r.get("epochs"),
        "passes": run.molecules[-1] / train_size if train_size else None, "train_seconds": run.seconds[-1],
        "molecules_per_second": r.get("molecules_per_second"),
        "molecules_per_second_range": [min(run.rates), max(run.rates)],
        "parameters": r.get("parameters"), "peak_memory_mb": r.get("peak_memory_mb"), "status": r.get("status"),
        "train_size": train_size, "val_size": r.get("val_size"), "test_size": r.get("test_size"),
        "batch_size": (r.get("config") or {}).get("batch_size"), "threads": r.get("threads"),
        "argv": r.get("argv"), "commit": r.get("commit"), "machine": r.get("machine"),
        "load_average_start": (load.get("load_average") or {}).get("start_1_5_15"),
        "load_average_end": (load.get("load_average") or {}).get("end_1_5_15"), "load_verdict": load.get("verdict"),
    }  # fmt: skip


def _fmt(value: Any, spec: str) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)


def markdown(rows: list[dict[str, Any]], title: str) -> str:
    """The markdown report of :func:`write_time_comparison`."""
    unit = rows[0]["unit"]
    lines = [
        f"# {title}", "",
        "Validation MAE against training wall-clock (evaluation excluded) in the figure beside this file; "
        f"test MAE at the best validation point. Ratio = test MAE / chemical accuracy. Epochs: evaluation points "
        f"(passes = training molecules seen / training set). Molecules/s: the run's mean (its epochs' range). Peak memory: "
        "resident memory above the process's level when training began (the loaded dataset excluded; of the last "
        "session if the run was resumed).", "",
        f"| run | model | test MAE ({unit}) | ratio | best / epochs | passes | training s | molecules/s | parameters | "
        "peak memory (MB) | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in rows:
        lo, hi = r["molecules_per_second_range"]
        lines.append(
            f"| {r['run']} | {r['model']} | {_fmt(r['test_mae'], '.4f')} | {_fmt(r['test_mae_ratio'], '.2f')} | "
            f"{r['best_epoch']} / {r['epochs']} | {_fmt(r['passes'], '.2f')} | {_fmt(r['train_seconds'], '.0f')} | "
            f"{_fmt(r['molecules_per_second'], '.1f')} ({lo:.1f}-{hi:.1f}) | {_fmt(r['parameters'], ',')} | "
            f"{_fmt(r['peak_memory_mb'], '.0f')} | {r['status']} |"
        )  # fmt: skip
    lines.append("")
    for r in rows:
        argv = " ".join(r["argv"]) if isinstance(r["argv"], list) else r["argv"]
        lines += [
            f"**{r['run']}**: `{argv}`; {r['train_size']:,} training / {r['val_size']:,} validation / "
            f"{r['test_size']:,} test molecules, batch {r['batch_size']}, {r['threads']} thread(s); commit "
            f"{r['commit']}; {r['machine']}; load average (1, 5, 15 min) before {r['load_average_start']}, after "
            f"{r['load_average_end']}: {r['load_verdict']}", "",
        ]  # fmt: skip
    return "\n".join(lines)


def plot_curves(runs: list[RunCurve], path: str | os.PathLike, title: str) -> None:
    """Validation MAE against training minutes, one line per run, chemical accuracy dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for run in runs:
        ax.plot([s / 60 for s in run.seconds], run.val_mae, marker="o", ms=3, label=f"{run.label} ({run.result.get('model')})")
    acc = runs[0].result.get("chemical_accuracy")
    if acc:
        ax.axhline(acc, color="grey", ls="--", lw=1, label="chemical accuracy")
    ax.set(xlabel="training wall-clock (min, evaluation excluded)", ylabel=f"validation MAE ({runs[0].result.get('unit')})",
           yscale="log", title=title)  # fmt: skip
    ax.legend()
    fig.tight_layout()
    try:
        atomic_write(path, lambda f: fig.savefig(f, dpi=100, format="png"), "wb")
    finally:
        plt.close(fig)


def write_time_comparison(folders: list[str | os.PathLike], stem: str | os.PathLike, title: str) -> list[Path]:
    """Writes ``stem.md``, ``stem.json`` and ``stem.png`` comparing the runs in ``folders`` (see
    the module docstring); returns the three paths.

    Raises:
        ValueError: no folders, two folders with the same name, or runs of different targets.
    """
    if not folders:
        raise ValueError("give at least one run folder")
    runs = [read_run(f) for f in folders]
    labels = [r.label for r in runs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"run folders need distinct names (the table's labels), got {labels}")
    if len({r.result.get("target") for r in runs}) != 1:
        raise ValueError(f"the runs trained different targets: {[r.result.get('target') for r in runs]}")
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    rows = [summary_row(r) for r in runs]
    md, js, png = (stem.with_suffix(s) for s in (".md", ".json", ".png"))
    atomic_write_text(markdown(rows, title) + f"\nFigure: `{png.name}`.\n", md)
    data = {"title": title, "runs": rows, "curves": {r.label: {k: v for k, v in asdict(r).items() if k not in ("label", "result")}
                                                      for r in runs}}  # fmt: skip
    atomic_write_text(json.dumps(data, indent=1) + "\n", js)
    plot_curves(runs, png, title)
    return [md, js, png]


__all__ = ["RunCurve", "read_run", "summary_row", "markdown", "plot_curves", "write_time_comparison"]
