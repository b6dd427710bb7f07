"""Architecture benchmark on QM9: GNNs against a grid CNN and a SMILES RNN.

Every model is trained on the same QM9 split and target, with the same training loop
(:func:`gnnkit.train.fit`: MSE on normalised targets, Adam, the per-element reference for
extensive targets) and the same wall-clock budget, and is scored by test MAE at its best
validation point. Inputs per model:

* ``mpnn``, ``ggnn``: the complete graph with (distance, bond one-hot) edges (Gilmer et al. 2017).
* ``gcn``: the chemical graph (bonded pairs of the same featurization; GCN ignores edge features
  and would average over all atoms on the complete graph).
* ``cnn``: per-element Gaussian voxel grids of the 3D molecule (:func:`gnnkit.data.voxelize`),
  randomly rotated during training.
* ``rnn``: atom-level SMILES tokens, vocabulary from the training split.

The budget is training wall-clock per model, excluding evaluation: training is cut into
``--evals`` pieces of equal time, and the validation MAE after each piece is a point on the plot.

    python recipes/benchmark.py --target U0                      # quick CPU default, ~15 min
    python recipes/benchmark.py --target U0 --budget-minutes 30 --train-size all --device cuda

writes ``benchmark_<target>.md``, ``.json`` and ``.png`` to ``--out`` (default recipes/results/).
``--train-size`` / ``--eval-size`` work as in recipes/qm9.py (``all``: the whole split; giving
only ``--train-size`` evaluates on the whole validation and test splits).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gnnkit.data import EncodeSmiles, SmilesVocab, TargetNormalizer, random_rotation, read_qm9_smiles, tokenize, voxelize
from gnnkit.data.qm9 import CHEMICAL_ACCURACY, EXTENSIVE, QM9, UNITS, load_split, target_index
from gnnkit.models import build_model
from gnnkit.train import TrainConfig, evaluate, fit, make_loader, resolve_device
from gnnkit.train.loop import BEST_MODEL_NAME

MODELS: tuple[str, ...] = ("mpnn", "ggnn", "gcn", "cnn", "rnn")
# Benchmark name -> (registry name, input kind, model config). Defaults of each model unless
# noted; the registry's "gcn" is the node classifier, so the graph-level variant is used.
MODEL_SPECS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "mpnn": ("mpnn", "graph", {}),
    "ggnn": ("ggnn", "graph", {}),
    "gcn": ("gcn-graph", "bonds", {"num_layers": 3}),
    "cnn": ("cnn", "grid", {}),
    "rnn": ("rnn", "tokens", {}),
}
QUICK_TRAIN_SIZE, QUICK_EVAL_SIZE = 10_000, 500
VOXEL = {"grid_size": 16, "resolution": 0.75, "sigma": 0.6}  # a 12 A box holds every QM9 molecule


@dataclass
class Config:
    target: str = "U0"
    models: tuple[str, ...] = MODELS
    budget_minutes: float = 2.0
    train_size: int | None = QUICK_TRAIN_SIZE  # None: the whole training split
    eval_size: int | None = QUICK_EVAL_SIZE  # None: the whole validation and test splits
    evals: int = 6
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"
    data_root: str | None = None
    out: str = "recipes/results"
    loader_workers: int = 0
    command: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        target_index(self.target)
        unknown = [m for m in self.models if m not in MODEL_SPECS]
        if unknown or not self.models:
            raise ValueError(f"models must be a non-empty subset of {MODELS}, got {list(self.models)}")
        if not self.budget_minutes > 0 or self.evals < 1:
            raise ValueError("budget_minutes must be > 0 and evals >= 1")
        if any(n is not None and n < 1 for n in (self.train_size, self.eval_size)):
            raise ValueError("train_size and eval_size must be >= 1 (or None for the whole split)")


# -- inputs ---------------------------------------------------------------------------------


class BondGraph:
    """Keeps the bonded pairs of a complete-graph molecule (bond one-hot != 0) and their bond
    one-hot as ``edge_attr``."""

    def __call__(self, data):
        bond = data.edge_attr[:, 1:]
        keep = bond.sum(dim=1) > 0
        data.edge_index, data.edge_attr = data.edge_index[:, keep], bond[keep]
        return data


class SmilesTokens:
    """Attaches the molecule's SMILES (looked up by dataset row) and encodes it."""

    def __init__(self, smiles: list[str], vocab: SmilesVocab, max_length: int) -> None:
        self.smiles, self.encode = smiles, EncodeSmiles(vocab, max_length)

    def __call__(self, data):
        data.smiles = self.smiles[int(data.idx)]
        return self.encode(data)


class GridInputs:
    """Voxelises a whole batch in one call (``batch.grid``), on ``device``, with a fresh random
    rotation per molecule when training. Per batch rather than per molecule: a few large tensor
    ops instead of a few dozen small ones per molecule."""

    def __init__(self, device: torch.device, random_rotate: bool, seed: int) -> None:
        self.device = device
        self.generator = torch.Generator().manual_seed(seed) if random_rotate else None

    def __call__(self, batch):
        rotation = random_rotation(batch.num_graphs, self.generator) if self.generator is not None else None
        batch.grid = voxelize(
            batch.pos.to(self.device), batch.z.to(self.device), batch.batch.to(self.device), batch.num_graphs,
            rotation=rotation, **VOXEL,
        )  # fmt: skip
        return batch


class MapBatches:
    """A loader whose batches pass through ``fn`` (same length and sampler as ``loader``)."""

    def __init__(self, loader, fn) -> None:
        self.loader, self.fn = loader, fn

    @property
    def sampler(self):
        return self.loader.sampler

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            yield self.fn(batch)


class TimedChunks:
    """The training loader cut into "epochs" of ``seconds`` of training wall-clock each.

    Batches come from an endless stream over ``loader`` (a new shuffled pass whenever one ends).
    Chunk ``k`` ends at the batch boundary nearest to ``k * seconds`` of cumulative training
    time: it stops when the next batch, at the average batch time so far, would end more than
    half a batch past that mark, so a slow model (seconds per batch) is not handed an extra
    batch per chunk. Every chunk has at least one batch. The time between batches (the
    optimisation step) counts, evaluation between chunks does not. ``marks`` holds the
    cumulative training seconds at the end of each chunk.
    """

    def __init__(self, loader, seconds: float) -> None:
        self.loader, self.seconds = loader, seconds
        self.marks: list[float] = []
        self.molecules = self.batches = 0
        self._it = None
        self._pass = 0

    def __len__(self) -> int:  # only used by step-based LR schedules, which this recipe avoids
        return len(self.loader)

    def _next(self):
        while True:
            if self._it is None:
                self._pass += 1
                if hasattr(self.loader.sampler, "set_epoch"):
                    self.loader.sampler.set_epoch(self._pass)
                self._it = iter(self.loader)
            try:
                return next(self._it)
            except StopIteration:
                self._it = None

    def __iter__(self):
        t0 = time.perf_counter()
        done = self.marks[-1] if self.marks else 0.0
        mark = (len(self.marks) + 1) * self.seconds  # cumulative, so overshoots do not add up
        first = True
        while True:
            now = done + time.perf_counter() - t0
            per_batch = now / self.batches if self.batches else 0.0
            if not first and now + 0.5 * per_batch >= mark:
                break
            first = False
            batch = self._next()
            self.molecules += batch.num_graphs
            self.batches += 1
            yield batch
        self.marks.append(done + time.perf_counter() - t0)


class PeakMemory:
    """Peak memory while the block runs: CUDA ``max_memory_allocated`` on a GPU; on CPU the peak
    resident set size above the level at entry, sampled every 10 ms from /proc (freed memory is
    returned to the OS first, so that a previous model's heap does not hide this one's)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak_mb = device, None
        self._stop = threading.Event()

    @staticmethod
    def _rss() -> int | None:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            return None

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            rss = self._rss()
            if rss is not None:
                self._peak = max(self._peak, rss)

    def __enter__(self) -> "PeakMemory":
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass
        self._base = self._peak = self._rss() or 0
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
            return
        self._stop.set()
        self._thread.join()
        if self._rss() is not None:
            self.peak_mb = (self._peak - self._base) / 2**20


def _rows(split: dict[str, np.ndarray], config: Config) -> dict[str, np.ndarray]:
    out = {}
    for name, n in (("train", config.train_size), ("val", config.eval_size), ("test", config.eval_size)):
        out[name] = split[name][:n]
    return out


def prepare(config: Config) -> dict[str, Any]:
    """The QM9 subsets of the split, the target normaliser and the SMILES vocabulary."""
    rows = _rows(load_split(), config)
    full = config.train_size is None and config.eval_size is None  # the full cache, not a copy of it
    subset = None if full else np.concatenate(list(rows.values()))
    dataset = QM9(config.data_root, edges="complete", hydrogens=True, subset=subset)
    parts = {name: dataset.select(r, missing="skip") for name, r in rows.items()}
    col = target_index(config.target)
    train = parts["train"]
    normalizer = TargetNormalizer.fit(train.y, train.atom_counts, [col], [QM9.TARGETS[col] in EXTENSIVE])
    info: dict[str, Any] = {"parts": parts, "normalizer": normalizer, "sizes": {k: len(v) for k, v in parts.items()}}
    if "rnn" in config.models:
        smiles = read_qm9_smiles()
        info["smiles"] = smiles
        info["vocab"] = SmilesVocab.build(smiles[r] for r in parts["train"].rows)
        used = np.concatenate([p.rows for p in parts.values()])
        info["max_tokens"] = max(len(tokenize(smiles[r])) for r in used)
    return info


def _inputs(kind: str, info: dict[str, Any], train: bool, seed: int, device: torch.device):
    """``(per-molecule transform, per-batch function)`` that build a model's inputs."""
    if kind == "graph":
        return None, None
    if kind == "bonds":
        return BondGraph(), None
    if kind == "grid":
        return None, GridInputs(device, random_rotate=train, seed=seed)
    if kind == "tokens":
        return SmilesTokens(info["smiles"], info["vocab"], info["max_tokens"]), None
    raise ValueError(f"unknown input kind {kind!r}")


def run_model(name: str, config: Config, info: dict[str, Any], device: torch.device) -> dict[str, Any]:
    registry_name, kind, model_config = MODEL_SPECS[name]
    loaders = {}
    for split, part in info["parts"].items():
        ds = part.index_select(torch.arange(len(part)))  # a view whose transform is ours
        ds.transform, batch_fn = _inputs(kind, info, split == "train", config.seed, device)
        loader = make_loader(ds, config.batch_size, shuffle=split == "train", seed=config.seed, num_workers=config.loader_workers)
        loaders[split] = MapBatches(loader, batch_fn) if batch_fn is not None else loader
    sample = next(iter(loaders["val"]))
    if kind == "grid":
        in_channels, edge_dim = sample.grid.size(1), None
    elif kind == "tokens":
        in_channels, edge_dim = len(info["vocab"]), None
    else:
        in_channels, edge_dim = sample.x.size(1), sample.edge_attr.size(1)
    torch.manual_seed(config.seed)
    model = build_model(registry_name, in_channels, 1, edge_dim=edge_dim, **model_config)
    params = sum(p.numel() for p in model.parameters())
    budget_s = config.budget_minutes * 60
    chunks = TimedChunks(loaders["train"], budget_s / config.evals)
    col = target_index(config.target)
    train_config = TrainConfig(
        epochs=config.evals, lr=config.lr, schedule="plateau", plateau_patience=1, plateau_factor=0.5,
        device=str(device), seed=config.seed, progress=False, target_names=[QM9.TARGETS[col]],
    )  # fmt: skip
    print(f"[{name}] {registry_name} on {kind} inputs, {params:,} parameters, budget {budget_s:.0f} s", flush=True)
    with PeakMemory(device) as mem, tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        # The test set is scored once, with the best validation checkpoint the loop saved.
        train_config.out_dir = tmp
        result = fit(model, chunks, loaders["val"], None, targets=info["normalizer"], config=train_config)
        wall = time.perf_counter() - t0
        model.load_state_dict(torch.load(Path(tmp) / BEST_MODEL_NAME, map_location=device, weights_only=True)["model"])
        test_mae = float(evaluate(model, loaders["test"], info["normalizer"].to(device), device)[0])
    train_seconds = chunks.marks[-1] if chunks.marks else 0.0
    val_key = f"val_mae_{QM9.TARGETS[col]}"
    curve = [[round(t, 2), row[val_key]] for t, row in zip(chunks.marks, result.history)]
    out = {
        "model": registry_name, "inputs": kind, "config": model_config,
        "test_mae": test_mae, "val_mae": result.val_mae[0],
        "mae_over_chemical_accuracy": test_mae / CHEMICAL_ACCURACY[QM9.TARGETS[col]],
        "parameters": params, "train_seconds": round(train_seconds, 2), "wall_seconds": round(wall, 2),
        "molecules_per_second": round(chunks.molecules / max(train_seconds, 1e-9), 1),
        "molecules_seen": chunks.molecules, "epochs_of_train_set": round(chunks.molecules / info["sizes"]["train"], 2),
        "best_eval": result.best_epoch, "peak_memory_mb": None if mem.peak_mb is None else round(mem.peak_mb, 1),
        "curve": curve,
    }  # fmt: skip
    print(f"[{name}] test MAE {test_mae:.4f} ({out['mae_over_chemical_accuracy']:.2f} x chemical accuracy), "
          f"{out['molecules_per_second']:.0f} mol/s, peak {out['peak_memory_mb']} MB", flush=True)  # fmt: skip
    return out


# -- report ---------------------------------------------------------------------------------


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU {name}, {torch.get_num_threads()} threads"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)  # fmt: skip
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def _notes(results: dict[str, Any], device: torch.device) -> list[str]:
    notes = [
        "Epochs = molecules seen / training-set size. Molecules/s = training molecules per second of "
        "training wall-clock (data loading and input building included).",
        "A budget of minutes ranks how fast each architecture learns, not where it converges: Gilmer et "
        "al.'s MPNN reaches 0.45 x chemical accuracy on U0 after 3M steps on all 110k training molecules.",
    ]
    if device.type == "cuda":
        notes.append("Peak memory: torch.cuda.max_memory_allocated during training and evaluation.")
    else:
        notes.append(
            "Peak memory: growth of the process's resident set above its level before the model was built "
            "during training and evaluation (sampled every 10 ms; the dataset was loaded before), i.e. the "
            "model's working set."
        )
    load = results["load_average"]
    if load["start"] is not None:
        notes.append(
            f"Machine load (1-minute load average) at start / end: {load['start']} / {load['end']} on "
            f"{load['cpu_count']} cores; above the core count, other processes shared the CPU and the "
            "throughputs are lower than on an idle machine."
        )
    return notes


def write_report(results: dict[str, Any], out_dir: Path) -> list[Path]:
    target = results["target"]
    stem = out_dir / f"benchmark_{target}"
    unit = results["unit"]
    lines = [
        f"# Architecture benchmark: QM9 {target}",
        "",
        f"Command: `{results['command']}`  ",
        f"Device: {results['device']}; torch {results['torch']}; commit {results['commit']}; {results['date']}  ",
        f"Split: {results['sizes']['train']} train / {results['sizes']['val']} val / {results['sizes']['test']} test "
        f"molecules of the committed QM9 split; budget {results['config']['budget_minutes']} min of training per model "
        f"(evaluation excluded), validation after each of {results['config']['evals']} equal pieces; test MAE at the "
        "best validation point.",
        "",
        f"| model | inputs | test MAE ({unit}) | MAE / chem. acc. | parameters | training s | epochs | molecules/s | peak memory (MB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results["models"].items():
        mem = "n/a" if r["peak_memory_mb"] is None else f"{r['peak_memory_mb']:.0f}"
        lines.append(
            f"| {name} | {r['inputs']} | {r['test_mae']:.4f} | {r['mae_over_chemical_accuracy']:.2f} | {r['parameters']:,} "
            f"| {r['train_seconds']:.0f} | {r['epochs_of_train_set']:.2f} | {r['molecules_per_second']:.0f} | {mem} |"
        )
    lines += ["", f"Chemical accuracy for {target}: {results['chemical_accuracy']} {unit}."]
    if results.get("notes"):
        lines += ["", *(f"- {n}" for n in results["notes"])]
    md = stem.with_suffix(".md")
    md.write_text("\n".join(lines) + "\n")
    js = stem.with_suffix(".json")
    js.write_text(json.dumps(results, indent=1) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, r in results["models"].items():
        if r["curve"]:
            t, v = zip(*r["curve"])
            ax.plot(t, v, marker="o", ms=3, label=name)
    ax.axhline(results["chemical_accuracy"], color="grey", ls="--", lw=1, label="chemical accuracy")
    ax.set(xlabel="training wall-clock (s)", ylabel=f"validation MAE ({unit})", yscale="log",
           title=f"QM9 {target}: {results['device']}")  # fmt: skip
    ax.legend()
    fig.tight_layout()
    png = stem.with_suffix(".png")
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return [md, js, png]


def main(config: Config) -> dict[str, Any]:
    device = resolve_device(config.device)
    info = prepare(config)
    target = QM9.TARGETS[target_index(config.target)]
    print(f"QM9 {target}: {info['sizes']} molecules, device {device}", flush=True)
    results: dict[str, Any] = {
        "command": config.command or "python recipes/benchmark.py", "device": device_description(device),
        "torch": torch.__version__, "commit": _git_commit(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "target": config.target, "unit": UNITS[target], "chemical_accuracy": CHEMICAL_ACCURACY[target],
        "sizes": info["sizes"], "config": {k: v for k, v in asdict(config).items() if k != "command"},
        "models": {}, "notes": [],
    }  # fmt: skip
    load_before = _load()
    for name in config.models:
        results["models"][name] = run_model(name, config, info, device)
    results["load_average"] = {"start": load_before, "end": _load(), "cpu_count": os.cpu_count()}
    results["notes"] = _notes(results, device)
    out_dir = Path(config.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in write_report(results, out_dir):
        print(f"wrote {path}", flush=True)
    return results


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default=Config.target, help="QM9 target, e.g. U0, gap, mu (default U0)")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {','.join(MODELS)}")
    p.add_argument("--budget-minutes", type=float, default=Config.budget_minutes, help="training wall-clock per model")
    p.add_argument("--train-size", type=_size, default=argparse.SUPPRESS,
                   help=f"first N molecules of the training split, or 'all' (default {QUICK_TRAIN_SIZE})")
    p.add_argument("--eval-size", type=_size, default=argparse.SUPPRESS,
                   help=f"first M molecules of the validation and test splits, or 'all' (default: {QUICK_EVAL_SIZE} "
                        "for the quick run; 'all' as soon as --train-size is given)")  # fmt: skip
    p.add_argument("--evals", type=int, default=Config.evals, help="validation points per model")
    p.add_argument("--batch-size", type=int, default=Config.batch_size)
    p.add_argument("--lr", type=float, default=Config.lr)
    p.add_argument("--seed", type=int, default=Config.seed)
    p.add_argument("--device", default=Config.device)
    p.add_argument("--data-root", default=None, help="QM9 folder with the processed cache (default: qm9/ under "
                   "$GNNKIT_DATA, else the checkout's datasets/, else ~/.cache/gnnkit)")
    p.add_argument("--out", default=Config.out, help="where benchmark_<target>.md/.json/.png go")
    p.add_argument("--loader-workers", type=int, default=Config.loader_workers, help="DataLoader worker processes")
    a = p.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    given = vars(a)
    # As recipes/qm9.py: --train-size alone evaluates on the full validation and test splits.
    train_size = given.get("train_size", QUICK_TRAIN_SIZE)
    eval_size = given.get("eval_size", QUICK_EVAL_SIZE if "train_size" not in given else None)
    return Config(
        target=a.target, models=tuple(m.strip() for m in a.models.split(",") if m.strip()),
        budget_minutes=a.budget_minutes, train_size=train_size, eval_size=eval_size, evals=a.evals,
        batch_size=a.batch_size, lr=a.lr, seed=a.seed, device=a.device, data_root=a.data_root, out=a.out,
        loader_workers=a.loader_workers, command=shlex.join(["python", "recipes/benchmark.py", *argv]),
    )  # fmt: skip


def _size(text: str) -> int | None:
    if text.lower() == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive int or 'all', got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int or 'all', got {text!r}")
    return n


if __name__ == "__main__":
    main(parse_args())
