"""Which model should ``gnnkit train csv`` default to? The candidate models at equal training
wall-clock on a molecular CSV made from QM9, through ``gnnkit train csv`` itself.

    python -m gnnkit.cli.csv_models --out runs/csv_models             # ~9 min on an idle 2-core CPU
    python -m gnnkit.cli.csv_models --models mpnn,ggnn --seeds 3 --budget-seconds 60 --out runs/x

1. Writes ``OUT/qm9_<target>.csv``: SMILES and one target (default gap, in eV) of ``--rows``
   molecules of QM9's committed training split (a random sample of QM9, not its first, smallest
   rows), as a user's CSV would hold them: no coordinates, so every model sees the chemical graph
   with bond one-hot edges (what ``gnnkit train csv`` does by default).
2. Featurizes it once, then for every model and seed runs :func:`gnnkit.cli.molecules.main` with
   ``--time-budget`` (constant learning rate, a validation point every ``--epoch-size`` molecules
   or every pass): seed ``k`` sets the seeded 80/10/10 split, the initialisation and the batch order, the
   same for every model.
3. Reports the test MAE at the best validation point within the budget, mean ± std over seeds,
   ranked only where intervals are disjoint (:mod:`gnnkit.bench.compare`), with each model's
   parameters and the training molecules it saw: ``OUT/csv_models.md`` and ``.json``.

Timings need an idle machine: the report records the load average before and after.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from gnnkit.bench.compare import rank_by_intervals, summarize
from gnnkit.cli import molecules
from gnnkit.cli.options import BUDGET_EPOCHS, at_least, check_config, comma_list, option, parse_config, shared
from gnnkit.data.qm9 import TARGETS, UNITS, read_raw, target_index
from gnnkit.data import load_split
from gnnkit.train.outdir import prepare_out_dir, releases_out_dirs

# The registry's graph models that train on a chemical graph without coordinates (DTNN needs positions).
CANDIDATES = ("mpnn", "ggnn", "gcn-graph", "nfp", "interaction", "weave", "chebnet")
REPORT = ("csv_models.md", "csv_models.json")


def _target(value: str) -> str:
    return TARGETS[target_index(value)]


@dataclass
class Config:
    """The options of the CSV-default measurement."""

    models: tuple[str, ...] = option(CANDIDATES, "candidate models, comma-separated", parse=comma_list, metavar="A,B")
    target: str = option("gap", "the QM9 target in the CSV", check=_target, group="data")
    rows: int = option(3000, "molecules in the CSV (from QM9's committed training split)", check=at_least(30), group="data")
    seeds: int = option(2, "runs per model (seeds 0..K-1: split, initialisation, batch order)", check=at_least(1))
    budget_seconds: float = option(30.0, "training wall-clock per run (evaluation excluded)", group="training")
    epoch_size: int | None = shared("epoch_size")
    batch_size: int = shared("batch_size", 32)
    lr: float = shared("lr")
    threads: int | None = option(None, "torch threads (none: torch's default)", check=at_least(1), group="run")
    device: str = shared("device", "cpu")
    out: str = shared("out", "runs/csv_models")
    resume: bool = option(False, "not supported (the measurement restarts)", cli=False)
    overwrite: bool = shared("overwrite")

    def __post_init__(self) -> None:
        self.models = tuple(self.models)
        check_config(self)
        unknown = [m for m in self.models if m not in CANDIDATES]
        if unknown or not self.models or len(set(self.models)) != len(self.models):
            raise ValueError(f"--models: distinct names among {', '.join(CANDIDATES)} (the models that train on SMILES "
                             f"alone), got {','.join(self.models)}")  # fmt: skip
        if not self.budget_seconds > 0:
            raise ValueError(f"--budget-seconds must be > 0, got {self.budget_seconds}")


def write_csv(path: Path, target: str, rows: int) -> None:
    """SMILES and ``target`` of the first ``rows`` molecules of QM9's committed training split."""
    chosen = load_split()["train"][:rows].tolist()
    raw = read_raw(max_rows=max(chosen) + 1)  # the file up to the last row needed
    col = target_index(target)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["smiles", target])
        for r in chosen:
            writer.writerow([raw.smiles[r], repr(float(raw.targets[r, col]))])


def report(cfg: Config, runs: list[dict], load: tuple) -> tuple[dict, str]:
    """Mean ± std of the equal-time test MAE per model, with ranks where intervals are disjoint."""
    summaries = {m: summarize([r["test_mae"] for r in runs if r["model"] == m]) for m in cfg.models}
    ranks = rank_by_intervals(summaries)
    unit = UNITS[cfg.target]
    lines = [f"# Equal-time comparison on a QM9-derived CSV ({cfg.target}, {unit})", "",
             f"{cfg.rows} molecules (SMILES only: chemical graph, bond one-hot edges), seeded 80/10/10 split per seed, "
             f"{cfg.budget_seconds:g} s of training per run, {cfg.seeds} seed(s), batch {cfg.batch_size}, Adam lr "
             f"{cfg.lr} constant; test MAE at the best validation point within the budget (one every "
             f"{f'{cfg.epoch_size:,} molecules' if cfg.epoch_size else 'pass'}). "
             f"Load average before {load[0]}, after {load[1]}; threads {torch.get_num_threads()}.", "",
             "| rank | model | test MAE (mean ± std) | parameters | training molecules seen |", "|---|---|---|---|---|"]  # fmt: skip
    def order(m: str) -> tuple:
        mean = summaries[m].mean
        return (ranks[m].rank or len(cfg.models) + 1, mean if mean is not None else float("inf"))

    for m in sorted(cfg.models, key=order):
        mine = [r for r in runs if r["model"] == m]
        seen = sum(r["molecules"] for r in mine) / max(len(mine), 1)
        rank = ranks[m].rank if ranks[m].rank is not None else "n/a"
        lines.append(f"| {rank} | {m} | {summaries[m].format(4)} | {mine[0]['parameters']:,} | {seen:,.0f} |")
    overlapping = sorted({tuple(sorted((m, o))) for m in cfg.models for o in ranks[m].overlaps})
    if overlapping:
        lines += ["", "Overlapping intervals (no ranking claimed): " + ", ".join(f"{a}/{b}" for a, b in overlapping)]
    lines += ["", f"Command: `python -m gnnkit.cli.csv_models {' '.join(sys.argv[1:])}`".rstrip()]
    record = {"config": asdict(cfg), "runs": runs, "load": load, "summaries": {m: asdict(s) for m, s in summaries.items()},
              "ranks": {m: asdict(ranks[m]) for m in cfg.models}}  # fmt: skip
    return record, "\n".join(lines) + "\n"


@releases_out_dirs
def main(cfg: Config) -> dict:
    """Writes the CSV, trains every (model, seed) for the budget and writes the report."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    prepare_out_dir(out, False, cfg.overwrite, outputs=REPORT)
    data = out / f"qm9_{cfg.target}.csv"
    write_csv(data, cfg.target, cfg.rows)
    load_before = tuple(round(x, 2) for x in os.getloadavg())
    # epochs only bounds the run: every model trains for the whole time budget (an epoch cap would stop
    # the fast ones early, as the command line's --time-budget without --epochs does not)
    base = dict(data=str(data), targets=(cfg.target,), units=(UNITS[cfg.target],), time_budget=cfg.budget_seconds,
                epochs=BUDGET_EPOCHS,
                epoch_size=cfg.epoch_size, schedule="constant", batch_size=cfg.batch_size, lr=cfg.lr, device=cfg.device,
                progress=False, overwrite=True)  # fmt: skip
    table = molecules.load_table(molecules.Config(**base, model=cfg.models[0], out=str(out / "runs" / "probe")))
    runs = []
    for seed in range(cfg.seeds):
        for model in cfg.models:
            run_cfg = molecules.Config(**base, model=model, seed=seed, out=str(out / "runs" / f"{model}-seed{seed}"))
            t0 = time.perf_counter()
            result = molecules.main(run_cfg, table=table)
            budget = result.get("time_budget") or {}
            runs.append({"model": model, "seed": seed, "status": result["status"],
                         "test_mae": (budget.get("test_mae") or {}).get(cfg.target), "seconds": budget.get("seconds"),
                         "molecules": budget.get("molecules", 0), "parameters": result["parameters"],
                         "wall_seconds": round(time.perf_counter() - t0, 1)})  # fmt: skip
    record, text = report(cfg, runs, (load_before, tuple(round(x, 2) for x in os.getloadavg())))
    (out / REPORT[1]).write_text(json.dumps(record, indent=1, default=str) + "\n")
    (out / REPORT[0]).write_text(text)
    print(text, flush=True)
    return record


def command(argv: Sequence[str] | None = None, prog: str = "python -m gnnkit.cli.csv_models") -> int:
    cfg = parse_config(Config, argv, description=__doc__.split("\n\n")[0], prog=prog)
    main(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(command(sys.argv[1:]))
