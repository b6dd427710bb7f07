"""The architecture benchmark on QM9 behind ``recipes/benchmark.py`` (and ``gnnkit benchmark``):
its model table and presets, the :class:`Config`, one (model, seed) run under two budgets,
aggregation over seeds, rankings and the report.

Entry point: :func:`run` with a :class:`gnnkit.cli.benchmark.Config` (its options, presets and
checks live with the ``gnnkit benchmark`` command, which builds it from a command line). The
protocol, the presets and the outputs are described in :mod:`gnnkit.cli.benchmark`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Callable, Literal, NamedTuple

import numpy as np
import torch
from torch import nn

from gnnkit.bench.compare import SeedSummary, overlapping_pairs, rank_by_intervals, seed_band, summarize
from gnnkit.bench.probes import MachineLoad, PeakMemory, device_description, git_commit, warm_up
from gnnkit.data import SmilesVocab, TargetNormalizer, read_qm9_smiles, tokenize
from gnnkit.data.inputs import BondGraph, GridInputs, MapBatches, SmilesTokens
from gnnkit.data.qm9 import CHEMICAL_ACCURACY, EXTENSIVE, QM9, UNITS, load_split, target_index
from gnnkit.models import MODELS as REGISTRY
from gnnkit.models import build_model
from gnnkit.models.user_model import build_from_spec, is_model_spec
from gnnkit.models.pyg_reference import REFERENCE_MODELS
from gnnkit.train import TrainConfig, fit, make_loader, resolve_device, write_log_csv
from gnnkit.train.budget import BudgetChunks


class ModelEntry(NamedTuple):
    inputs: Literal["graph", "bonds", "grid", "tokens"]
    config: dict[str, Any]  # in every preset
    quick: dict[str, Any]  # on top, for --widths quick
    model: str | None = None  # the registry (or reference) name, when the row is a variant of it


# Gilmer et al. 2017's ablations as rows: GG-NN without spatial information (Table 7) and towers
# (Table 8), all at the quick GG-NN width (32; towers of 4), on the same molecules and budgets.
_GGNN_QUICK = {"channels": 32, "readout_channels": 64}
GILMER_ROWS: dict[str, ModelEntry] = {
    "ggnn-chemical": ModelEntry("graph", {"virtual_edges": False}, _GGNN_QUICK, "ggnn"),
    "ggnn+virtual": ModelEntry("graph", {"virtual_edges": True}, _GGNN_QUICK, "ggnn"),
    "ggnn+virtual+master": ModelEntry("graph", {"virtual_edges": True, "master_node": 32}, _GGNN_QUICK, "ggnn"),
    "ggnn+virtual+master+s2s": ModelEntry("graph", {"virtual_edges": True, "master_node": 32, "readout": "set2set"}, _GGNN_QUICK, "ggnn"),
    "ggnn+s2s": ModelEntry("graph", {"virtual_edges": True, "readout": "set2set"}, _GGNN_QUICK, "ggnn"),
    "ggnn+s2s+towers8": ModelEntry("graph", {"virtual_edges": True, "readout": "set2set", "towers": 8}, _GGNN_QUICK, "ggnn"),
}
# The paper's error ratios (MAE / chemical accuracy): the average over its 13 targets and U0's.
PAPER_RATIOS: dict[str, dict[str, Any]] = {
    "ggnn-chemical": {"table": "Table 7: GG-NN (no spatial information)", "average": 3.47, "U0": 1.98},
    "ggnn+virtual": {"table": "Table 7: + virtual edge", "average": 2.90, "U0": 0.89},
    "ggnn+virtual+master": {"table": "Table 7: + master node", "average": 2.62, "U0": 0.90},
    "ggnn+virtual+master+s2s": {"table": "Table 7: + set2set", "average": 2.57, "U0": 0.72},
    "ggnn+s2s": {"table": "Table 8: GG-NN, individual training", "average": 1.53, "U0": None},
    "ggnn+s2s+towers8": {"table": "Table 8: towers8, individual training", "average": 1.37, "U0": None},
}


# Registry name -> what the benchmark feeds the model and how wide it is. Unlisted options are
# the model's defaults; a user's "module:Class" model gets the complete graph at its own widths.
MODELS: dict[str, ModelEntry] = {
    "mpnn": ModelEntry("graph", {}, {"channels": 32, "edge_hidden": 64}),
    "ggnn": ModelEntry("graph", {}, {"channels": 32, "readout_channels": 64}),
    "gcn-graph": ModelEntry("bonds", {"num_layers": 3}, {"hidden": 32}),
    "cnn": ModelEntry("grid", {}, {"channels": (16, 32, 64), "hidden": 64}),
    "rnn": ModelEntry("tokens", {}, {"embed_dim": 32, "hidden": 64}),
    "pyg-nnconv": ModelEntry("graph", {}, {"channels": 32, "edge_hidden": 64}),
    "nfp": ModelEntry("bonds", {}, {"channels": 32, "fingerprint": 64}),
    "interaction": ModelEntry("graph", {}, {"channels": 32, "hidden": 32}),
    "weave": ModelEntry("graph", {}, {"channels": 32, "edge_channels": 16}),
    "dtnn": ModelEntry("graph", {}, {}),
    "chebnet": ModelEntry("bonds", {}, {"channels": 32}),
    "schnet": ModelEntry("graph", {}, {"hidden_channels": 64, "num_filters": 64, "num_interactions": 3}),
    "dimenet++": ModelEntry("graph", {}, {"hidden_channels": 64, "out_emb_channels": 128, "num_blocks": 2}),
    **GILMER_ROWS,
}
SECTION2_SECONDS = 100.0  # see gnnkit.cli.benchmark's docstring: the slowest model's 5 epochs of 2,000 molecules fit in it
INPUT_LABELS = {"graph": "complete graph", "bonds": "chemical graph", "grid": "voxel grid", "tokens": "SMILES tokens"}
GNNKIT = ("mpnn", "ggnn", "gcn-graph", "cnn", "rnn")
# Gilmer et al. 2017's Section 2 models that gnnkit added beside mpnn (enn-s2s), ggnn and gcn-graph.
SECTION2 = ("nfp", "interaction", "weave", "dtnn", "chebnet")
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"models": (*GNNKIT, "pyg-nnconv", "schnet")},
    "section2": {"models": (*GNNKIT, *SECTION2, "pyg-nnconv", "schnet"), "train_size": 2000, "eval_size": 500,
                 "budget_seconds": SECTION2_SECONDS, "epochs": 5, "time_evals": 5},
    "gpu": {"models": (*GNNKIT, "pyg-nnconv", *REFERENCE_MODELS), "train_size": None, "eval_size": None, "budget_seconds": 1800.0,
            "epochs": 10, "time_evals": 6, "widths": "default", "device": "cuda", "loader_workers": 4},
    "gilmer": {"models": tuple(GILMER_ROWS), "train_size": 4000, "eval_size": 1000, "budget_seconds": 100.0,
               "epochs": 3, "time_evals": 3, "seeds": 3},
}  # fmt: skip


def model_config(name: str, widths: str) -> dict[str, Any]:
    if is_model_spec(name):
        return {}
    entry = MODELS[name]
    return {**entry.config, **(entry.quick if widths == "quick" else {})}


def registry_name(name: str) -> str:
    """The registry or reference model a row builds (a Gilmer row is a variant of ``ggnn``)."""
    return MODELS[name].model or name if name in MODELS else name


def _builder(name: str) -> Callable[..., nn.Module]:
    if is_model_spec(name):
        return lambda i, o, edge_dim=None: build_from_spec(name, i, o, edge_dim=edge_dim)
    name = registry_name(name)
    if name in REFERENCE_MODELS:
        return REFERENCE_MODELS[name]
    return lambda i, o, edge_dim=None, **cfg: build_model(name, i, o, edge_dim=edge_dim, **cfg)


# -- data -----------------------------------------------------------------------------------


def prepare(config: Any) -> dict[str, Any]:
    """The QM9 slices of the split, the target normaliser and (for the RNN) the SMILES vocabulary."""
    split = load_split()
    rows = {"train": split["train"][: config.train_size], "val": split["val"][: config.eval_size],
            "test": split["test"][: config.eval_size]}  # fmt: skip
    full = config.train_size is None and config.eval_size is None  # the full cache, not a copy of it
    subset = None if full else np.concatenate(list(rows.values()))
    dataset = QM9(config.data_root, edges="complete", hydrogens=True, subset=subset)
    parts = {name: dataset.select(r, missing="skip") for name, r in rows.items()}
    col = target_index(config.target)
    train = parts["train"]
    normalizer = TargetNormalizer.fit(train.y, train.atom_counts, [col], [QM9.TARGETS[col] in EXTENSIVE])
    info: dict[str, Any] = {"parts": parts, "normalizer": normalizer, "sizes": {k: len(v) for k, v in parts.items()}}
    if any(not is_model_spec(m) and MODELS[m].inputs == "tokens" for m in config.models):
        smiles = read_qm9_smiles()
        info["smiles"] = smiles
        info["vocab"] = SmilesVocab.build(smiles[r] for r in parts["train"].rows)
        info["max_tokens"] = max(len(tokenize(smiles[r])) for p in parts.values() for r in p.rows)
    return info


def loaders_for(kind: str, info: dict[str, Any], config: Any, seed: int, device: torch.device) -> dict[str, Any]:
    """Train/val/test loaders that build ``kind`` inputs from the complete-graph molecules."""
    out = {}
    for split, part in info["parts"].items():
        ds = part.index_select(torch.arange(len(part)))  # a view whose transform is ours
        batch_fn = None
        if kind == "bonds":
            ds.transform = BondGraph()
        elif kind == "tokens":
            ds.transform = SmilesTokens(info["smiles"], info["vocab"], info["max_tokens"])
        elif kind == "grid":
            batch_fn = GridInputs(device, random_rotate=split == "train", seed=seed)
        loader = make_loader(ds, config.batch_size, shuffle=split == "train", seed=seed, num_workers=config.loader_workers)
        out[split] = MapBatches(loader, batch_fn) if batch_fn is not None else loader
    return out


# -- one run --------------------------------------------------------------------------------


def run_one(name: str, seed: int, config: Any, info: dict[str, Any], device: torch.device, run_dir: Path) -> dict[str, Any]:
    """Trains ``name`` with ``seed`` under both budgets; its history goes to ``run_dir/log.csv``."""
    kind = "graph" if is_model_spec(name) else MODELS[name].inputs
    loaders = loaders_for(kind, info, config, seed, device)
    sample = next(iter(loaders["val"]))
    if kind == "grid":
        in_channels, edge_dim = sample.grid.size(1), None
    elif kind == "tokens":
        in_channels, edge_dim = len(info["vocab"]), None
    else:
        in_channels, edge_dim = sample.x.size(1), sample.edge_attr.size(1)
        if registry_name(name) in REGISTRY and not REGISTRY[registry_name(name)].edge_features:
            edge_dim = None  # a registry model that reads no edge features is built without edge_dim
    torch.manual_seed(seed)
    model = _builder(name)(in_channels, 1, edge_dim=edge_dim, **model_config(name, config.widths))
    params = sum(p.numel() for p in model.parameters())
    warm_up(model, sample, device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    chunks = BudgetChunks(loaders["train"], config.budget_seconds, config.time_evals, config.epochs, synchronize=sync)
    target = QM9.TARGETS[target_index(config.target)]
    train_config = TrainConfig(
        epochs=chunks.num_chunks, lr=config.lr, schedule=config.schedule, plateau_patience=1, plateau_factor=0.5,
        grad_clip=config.grad_clip, device=str(device), seed=seed, progress=False, log_epochs=False,
        target_names=[target],
    )  # fmt: skip
    cpu0 = time.process_time()
    with PeakMemory(device) as mem:
        result = fit(model, chunks, loaders["val"], loaders["test"], targets=info["normalizer"], config=train_config)
    cpu = time.process_time() - cpu0
    n_train = info["sizes"]["train"]
    budgets = {}
    for budget in ("time", "epochs"):
        r = chunks.result(result.history, budget)
        budgets[budget] = {
            "test_mae": None if r.test_mae is None else r.test_mae[0], "val_mae": None if r.val_mae is None else r.val_mae[0],
            "point": r.point, "seconds": round(r.seconds, 3), "molecules": r.molecules,
            "epochs": round(r.molecules / n_train, 3), "complete": r.complete,
        }  # fmt: skip
    curve = [{"budget": p.budget, "seconds": round(p.seconds, 3), "molecules": p.molecules,
              "val_mae": row.get(f"val_mae_{target}")} for p, row in zip(chunks.points, result.history)]  # fmt: skip
    # fit's own files (checkpoints every evaluation, a learning-curve PNG) would cost more than a
    # short run; the history with each point's budget is the run's record.
    run_dir.mkdir(parents=True)
    write_log_csv([{**row, **p.as_dict()} for p, row in zip(chunks.points, result.history)], run_dir / "log.csv")
    last = chunks.points[-1]
    return {
        "seed": seed, "parameters": params, "inputs": kind, "config": model_config(name, config.widths), "budgets": budgets,
        "train_seconds": round(last.seconds, 3), "molecules_seen": last.molecules,
        "molecules_per_second": round(last.molecules / max(last.seconds, 1e-9), 2),
        "cpu_seconds": round(cpu, 2), "peak_memory_mb": None if mem.peak_mb is None else round(mem.peak_mb, 1),
        "stopped_early": len(result.history) < chunks.num_chunks, "curve": curve,
    }  # fmt: skip


# -- aggregation and report -----------------------------------------------------------------


def aggregate(runs: list[dict[str, Any]], chemical_accuracy: float) -> dict[str, Any]:
    """Mean ± std over a model's runs of each budget's test MAE, time, epochs and throughput."""
    out: dict[str, Any] = {"inputs": runs[0]["inputs"], "config": runs[0]["config"], "parameters": runs[0]["parameters"]}
    for budget in ("time", "epochs"):
        test = summarize(r["budgets"][budget]["test_mae"] for r in runs)
        out[budget] = {
            "test_mae": asdict(test),
            "mae_over_chemical_accuracy": None if test.mean is None else test.mean / chemical_accuracy,
            "seconds": asdict(summarize(r["budgets"][budget]["seconds"] for r in runs)),
            "epochs": asdict(summarize(r["budgets"][budget]["epochs"] for r in runs)),
            "complete": all(r["budgets"][budget]["complete"] for r in runs),
        }
    out["molecules_per_second"] = asdict(summarize(r["molecules_per_second"] for r in runs))
    mems = [r["peak_memory_mb"] for r in runs if r["peak_memory_mb"] is not None]
    out["peak_memory_mb"] = max(mems) if mems else None
    return out


def _summary(d: dict[str, Any]) -> SeedSummary:
    return SeedSummary(**d)


def rankings(models: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for budget in ("time", "epochs"):
        ranks = rank_by_intervals({m: _summary(r[budget]["test_mae"]) for m, r in models.items()})
        out[budget] = {"rank": {m: r.rank for m, r in ranks.items()}, "overlapping": overlapping_pairs(ranks)}
    return out


def _fmt(d: dict[str, Any], digits: int) -> str:
    return _summary(d).format(digits)


def write_report(results: dict[str, Any], out_dir: Path) -> list[Path]:
    cfg, unit, target = results["config"], results["unit"], results["target"]
    stem = out_dir / f"benchmark_{target}"
    load = results["machine_load"]
    lines = [f"# Architecture benchmark: QM9 {target}", ""]
    if load["shared"]:
        lines += [f"> **Warning: the machine was shared.** {load['verdict'][0].upper()}{load['verdict'][1:]}. Throughputs "
                  "and the equal-time column are lower than on an idle machine; rerun on an idle one to compare.", ""]  # fmt: skip
    seeds = ", ".join(str(s) for s in range(cfg["seeds"]))
    lines += [
        f"Command: `{results['command']}`  ",
        f"Device: {results['device']}; torch {results['torch']}; commit {results['commit']}; {results['date']}  ",
        f"Machine load: {load['verdict']}; 1-minute load average {load['load_average']['start']} before, "
        f"{load['load_average']['end']} after, on {load['cpu_count']} cores.  ",
        f"Split: {results['sizes']['train']} train / {results['sizes']['val']} val / {results['sizes']['test']} test "
        f"molecules of the committed QM9 split; seeds {seeds} per model; preset {cfg['preset']}, widths {cfg['widths']}, "
        f"batch {cfg['batch_size']}, Adam lr {cfg['lr']} ({cfg['schedule']}), gradient clip {cfg['grad_clip']}.  ",
        f"Budgets, from one run per (model, seed): **equal time** = {cfg['budget_seconds']:g} s of training wall-clock "
        f"(evaluation excluded; validation at {cfg['time_evals']} equal fractions), **equal epochs** = {cfg['epochs']} "
        "passes over the training slice (validation after each). Test MAE at the best validation point within each budget.",
        "",
        f"| model | inputs | parameters | test MAE ({unit}), equal time | rank | test MAE ({unit}), equal epochs | rank "
        f"| epochs in {cfg['budget_seconds']:g} s | s for {cfg['epochs']} epochs | molecules/s | peak memory (MB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ranks = results["rankings"]
    for name, m in results["models"].items():
        cells = []
        for budget in ("time", "epochs"):
            ratio = m[budget]["mae_over_chemical_accuracy"]
            cell = _fmt(m[budget]["test_mae"], 4) + (f" ({ratio:.1f}x)" if ratio is not None else "")
            if not m[budget]["complete"]:
                cell += " (budget not reached)"
            rank = ranks[budget]["rank"][name]
            cells += [cell, "–" if rank is None else str(rank)]
        mem = "n/a" if m["peak_memory_mb"] is None else f"{m['peak_memory_mb']:.0f}"
        lines.append(
            f"| {name} | {INPUT_LABELS[m['inputs']]} | {m['parameters']:,} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} "
            f"| {_fmt(m['time']['epochs'], 1)} | {_fmt(m['epochs']['seconds'], 1)} | {_fmt(m['molecules_per_second'], 0)} | {mem} |"
        )
    lines += ["", f"Test MAE: mean ± sample std over the seeds, (x) = mean / chemical accuracy ({results['chemical_accuracy']} "
              f"{unit}). Rank = 1 + the number of models whose mean ± std interval lies entirely below this one's.", ""]  # fmt: skip
    for budget, label in (("time", "Equal time"), ("epochs", "Equal epochs")):
        pairs = ranks[budget]["overlapping"]
        text = "; ".join(f"{a} ~ {b}" for a, b in pairs) if pairs else "none: every pair of intervals is disjoint"
        lines.append(f"- {label}, intervals overlap (no ranking claimed between them): {text}.")
    if cfg["seeds"] < 2:
        lines.append("- One seed: no spread, so no ranking is claimed.")
    lines += paper_comparison(results)
    lines += ["", "Models:"]
    for name, m in results["models"].items():
        lines.append(f"- {name}: {json.dumps(m['config'])}" if m["config"] else f"- {name}: the model's defaults")
    for name, reason in results["not_run"].items():
        lines.append(f"- {name}: not run ({reason}).")
    lines += ["", *(f"- {n}" for n in results["notes"])]
    md = stem.with_suffix(".md")
    md.write_text("\n".join(lines) + "\n")
    js = stem.with_suffix(".json")
    js.write_text(json.dumps(results, indent=1) + "\n")
    png = stem.with_suffix(".png")
    plot_curves(results, png)
    return [md, js, png]


def paper_comparison(results: dict[str, Any]) -> list[str]:
    """The rows that reproduce a line of Gilmer et al.'s Tables 7-8, beside the paper's ratios
    (MAE / chemical accuracy), ours with ± std over the seeds; empty when no such row ran."""
    rows = [name for name in results["models"] if name in PAPER_RATIOS]
    if not rows:
        return []
    acc, target = results["chemical_accuracy"], results["target"]
    lines = ["", f"Beside Gilmer et al. 2017 (error ratio = MAE / chemical accuracy; ours on {target}, mean ± std over the seeds; "
             "the paper's after full training on all 110k molecules, so compare the ordering, not the values):", "",
             f"| row | paper line | paper ratio, 13-target average | paper ratio, U0 | ours, equal time | ours, equal epochs |",
             "|---|---|---:|---:|---:|---:|"]  # fmt: skip
    for name in rows:
        paper, m = PAPER_RATIOS[name], results["models"][name]
        ours = []
        for budget in ("time", "epochs"):
            t = m[budget]["test_mae"]
            ours.append("n/a" if t["mean"] is None else f"{t['mean'] / acc:.2f} ± {(t['std'] or 0.0) / acc:.2f}")
        u0 = "–" if paper["U0"] is None else f"{paper['U0']:.2f}"
        lines.append(f"| {name} | {paper['table']} | {paper['average']:.2f} | {u0} | {ours[0]} | {ours[1]} |")
    return lines


def plot_curves(results: dict[str, Any], path: Path) -> None:
    """Validation MAE against training wall-clock and against molecules seen, one line per model
    (mean over seeds) with a band from the lowest to the highest seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = results["config"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for i, (name, runs) in enumerate(results["runs"].items()):
        color = f"C{i % 10}"
        for ax, key in zip(axes, ("seconds", "molecules")):
            curves = []
            for run in runs:
                pts = [(p[key], p["val_mae"]) for p in run["curve"] if p["val_mae"] is not None and np.isfinite(p["val_mae"])]
                curves.append(([x for x, _ in pts], [y for _, y in pts]))
            band = seed_band(curves)
            if band is None:
                continue
            x, mean, lo, hi = band
            ax.plot(x, mean, color=color, label=name, marker="o" if len(x) == 1 else None, ms=3)
            ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)
    for ax in axes:
        ax.axhline(results["chemical_accuracy"], color="grey", ls="--", lw=1, label="chemical accuracy")
        ax.set_yscale("log")
    axes[0].axvline(cfg["budget_seconds"], color="black", ls=":", lw=1)
    axes[1].axvline(cfg["epochs"] * results["sizes"]["train"], color="black", ls=":", lw=1)
    axes[0].set(xlabel="training wall-clock (s)", ylabel=f"validation MAE ({results['unit']})",
                title=f"equal time: {cfg['budget_seconds']:g} s (dotted)")  # fmt: skip
    # Log scale: in equal time a fast model sees a hundred times the molecules of a slow one.
    axes[1].set(xlabel="molecules seen", xscale="log", title=f"equal epochs: {cfg['epochs']} (dotted)")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"QM9 {results['target']}, {results['device']}: mean over {cfg['seeds']} seed(s), band = min-max", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _notes(results: dict[str, Any], device: torch.device) -> list[str]:
    notes = [
        "Epochs = molecules seen / training-slice size. Molecules/s = training molecules per second of training "
        "wall-clock over the whole run (data loading and input building included).",
        "mean ± std of a few seeds is a rough interval, not a significance test; more seeds (--seeds) narrow it.",
        "A budget of seconds or a few epochs ranks how fast each architecture learns, not where it converges: "
        "Gilmer et al.'s MPNN reaches 0.45 x chemical accuracy on U0 after 3M steps on all 110k training molecules.",
    ]
    if results["config"]["widths"] == "quick":
        notes.append("Quick widths: each model at about half its default width (see Models), so that every model "
                     "trains its epochs within the time budget on a CPU.")  # fmt: skip
    if device.type == "cuda":
        notes.append("Peak memory: torch.cuda.max_memory_allocated during training and evaluation, max over seeds.")
    else:
        notes.append("Peak memory: growth of the process's resident set above its level before training (sampled "
                     "every 10 ms; the dataset was loaded before), max over seeds, i.e. the model's working set.")  # fmt: skip
    return notes


def _mae(value: float | None) -> str:
    return "n/a (no finite validation score)" if value is None else f"{value:.4f}"


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {str(out)!r} is not an empty folder; choose a new one (a benchmark never overwrites results)")


def run_folder(name: str) -> str:
    """The folder name of a model's runs (a spec's slashes and colons replaced)."""
    return "".join(c if c.isalnum() or c in "._+-" else "_" for c in name)


def run(config: Any) -> dict[str, Any]:
    """Runs the benchmark ``config`` describes and writes its report under ``config.out``
    (``benchmark_<target>.md``/``.json``/``.png``, ``runs/<model>/seed<k>/log.csv``); returns
    what the JSON holds."""
    out_dir = Path(config.out)
    _check_out(out_dir)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    load = MachineLoad(own_threads=torch.get_num_threads() + config.loader_workers)
    load.sample()
    info = prepare(config)
    target = QM9.TARGETS[target_index(config.target)]
    print(f"QM9 {target}: {info['sizes']} molecules, device {device}, models {', '.join(config.models)}, "
          f"{config.seeds} seed(s)", flush=True)  # fmt: skip
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in config.models}
    # Seed-major order: a change of load during the benchmark hits every model alike.
    for seed in range(config.seeds):
        for name in config.models:
            run_dir = out_dir / "runs" / run_folder(name) / f"seed{seed}"
            run = run_one(name, seed, config, info, device, run_dir)
            runs[name].append(run)
            load.sample()
            t, e = run["budgets"]["time"], run["budgets"]["epochs"]
            print(f"[{name} seed {seed}] test MAE {_mae(t['test_mae'])} after {config.budget_seconds:g} s "
                  f"({t['epochs']:.1f} epochs), {_mae(e['test_mae'])} after {config.epochs} epochs ({e['seconds']:.0f} s); "
                  f"{run['molecules_per_second']:.0f} mol/s", flush=True)  # fmt: skip
    results: dict[str, Any] = {
        "command": config.command or "python recipes/benchmark.py", "device": device_description(device),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "commit": git_commit(Path(__file__)),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "target": config.target, "unit": UNITS[target],
        "chemical_accuracy": CHEMICAL_ACCURACY[target], "sizes": info["sizes"],
        "config": {f.name: getattr(config, f.name) for f in fields(config) if f.name not in ("command", "not_run")},
        "machine_load": load.summary(), "not_run": dict(config.not_run),
    }  # fmt: skip
    results["models"] = {name: aggregate(r, results["chemical_accuracy"]) for name, r in runs.items()}
    results["rankings"] = rankings(results["models"])
    results["notes"] = _notes(results, device)
    results["runs"] = runs
    for path in write_report(results, out_dir):
        print(f"wrote {path}", flush=True)
    if results["machine_load"]["shared"]:
        print(f"warning: the machine was shared ({results['machine_load']['verdict']})", flush=True)
    return results
