"""Train a graph network on one QM9 target (Gilmer et al. 2017, "Neural Message Passing for
Quantum Chemistry").

    python recipes/qm9.py                                  # quick run: MPNN on U0, ~5 min on 2 CPU cores
    python recipes/qm9.py --model ggnn --target gap --edges bonds
    python recipes/qm9.py --train-size all --epochs 300 --device cuda --amp
    torchrun --nproc_per_node=4 recipes/qm9.py --train-size all --device cuda

Defaults follow Gilmer's enn-s2s: edge-network messages, GRU update, set2set readout, explicit
hydrogens, complete graph with (distance, bond one-hot) edges, one model per target, normalised
targets, MSE loss, Adam with a linearly decaying learning rate (plus gradient-norm clipping at 5,
which made the short default run steadier). The budget is small by default
(5,000 training molecules, 6 epochs, validation and test on the first 1,000 molecules of their
splits) so that the run, data preparation included, takes minutes on a laptop CPU; Gilmer trained
on all 110,831 molecules for 3M steps of batch 20.

Writes ``OUT/result.json``, ``OUT/log.csv``, ``OUT/learning_curve.png``, ``OUT/checkpoint.pt``
(every epoch, atomically, the previous one kept as ``checkpoint.prev.pt``) and
``OUT/best_model.pt``. A non-empty ``--out`` is refused unless ``--resume`` (continue the killed
run there; refused if its settings differ) or ``--overwrite`` (replace it). Every argument is
checked before any data is loaded. A run whose loss goes non-finite stops, records
``"status": "diverged"`` (no MAE) and exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from gnnkit.data import QM9, TargetNormalizer, load_split, target_index
from gnnkit.data.qm9 import CHEMICAL_ACCURACY, EXTENSIVE, SPLIT_SIZES, TARGETS, UNITS
from gnnkit.models import MODELS, build_model
from gnnkit.train import (
    TrainConfig,
    check_resume,
    fit,
    init_distributed,
    loader_throughput,
    make_loader,
    resolve_device,
)
from gnnkit.train.checkpoint import atomic_write_text
from gnnkit.train.loop import OUTPUTS
from gnnkit.train.outdir import check_out_dir, prepare_out_dir

QUICK_TRAIN_SIZE, QUICK_EVAL_SIZE = 5_000, 1_000
# The registry's graph-level models on molecular graphs; GCNGraph names its width and depth
# hidden / num_layers.
GRAPH_MODELS = tuple(n for n, spec in MODELS.items() if spec.task == "graph" and spec.inputs == "graph")
WIDTH_DEPTH = {"gcn-graph": ("hidden", "num_layers")}
GILMER_U0_RATIO = 0.45  # enn-s2s, MAE / chemical accuracy on U0 after 3M steps (Table 2)
RESULT_NAME = "result.json"
# Config fields that do not change what is trained: a --resume may change these, not the others.
NOT_RUN_SETTINGS = ("device", "out", "data_root", "resume", "overwrite", "loader_workers", "progress", "stop_after_epoch")


@dataclass
class Config:
    model: str = "mpnn"
    target: str = "u0"
    edges: str = "complete"
    hydrogens: bool = True
    epochs: int = 6
    batch_size: int = 32
    lr: float = 1e-3
    schedule: str = "linear"
    final_lr_factor: float = 0.05
    grad_clip: float | None = 5.0  # gradient-norm clipping; steadier than none on the quick run
    train_size: int | None = QUICK_TRAIN_SIZE  # None: the whole training split
    eval_size: int | None = QUICK_EVAL_SIZE  # None: the whole validation and test splits
    channels: int | None = None  # model width (None: the model's default)
    steps: int | None = None  # message-passing steps (None: the model's default)
    device: str = "auto"
    amp: bool = False
    seed: int = 0
    out: str = "runs/qm9"
    data_root: str | None = None
    resume: bool = False
    overwrite: bool = False  # a fresh run may replace the run files in a non-empty --out
    loader_workers: int | None = None  # None: 0 on CPU, up to 8 on CUDA (collation would starve a GPU)
    progress: bool = True
    stop_after_epoch: int | None = None  # for tests: stop as if killed after this epoch
    model_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Checks every value, so that a bad one fails before any data is loaded."""
        if self.model not in GRAPH_MODELS:
            raise ValueError(f"model must be one of {', '.join(GRAPH_MODELS)}, got {self.model!r}")
        self.target = TARGETS[target_index(self.target)]  # validates the name
        if self.edges not in ("complete", "bonds", "bins"):
            raise ValueError(f"edges must be 'complete', 'bonds' or 'bins', got {self.edges!r}")
        if self.schedule not in ("linear", "cosine", "plateau", "constant"):
            raise ValueError(f"schedule must be linear, cosine, plateau or constant, got {self.schedule!r}")
        for name, low in (("epochs", 1), ("batch_size", 1), ("channels", 1), ("steps", 1), ("loader_workers", 0),
                          ("stop_after_epoch", 1)):  # fmt: skip
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise ValueError(f"--{name.replace('_', '-')} must be an integer >= {low}, got {value!r}")
        for name, split in (("train_size", "train"), ("eval_size", "val")):
            value, most = getattr(self, name), SPLIT_SIZES[split]
            if value is not None and (not isinstance(value, int) or not 1 <= value <= most):
                raise ValueError(f"--{name.replace('_', '-')} must be in 1..{most:,} (the {split} split's size) or "
                                 f"'all', got {value!r}")  # fmt: skip
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"--lr must be a finite number > 0, got {self.lr}")
        if self.grad_clip is not None and not (self.grad_clip > 0 and math.isfinite(self.grad_clip)):
            raise ValueError(f"--grad-clip must be a finite number > 0 (0 on the command line: no clipping), got {self.grad_clip}")
        if not 0 < self.final_lr_factor <= 1:
            raise ValueError(f"final_lr_factor must be in (0, 1], got {self.final_lr_factor}")
        if self.resume and self.overwrite:
            raise ValueError("--resume and --overwrite exclude each other")
        valid = MODELS[self.model].options()
        unknown = sorted(set(self.model_options) - set(valid))
        if unknown:
            raise ValueError(f"unknown --model-option {', '.join(unknown)} for --model {self.model}; "
                             f"valid options: {', '.join(valid)}")  # fmt: skip
        named = {"channels": self.channels, "steps": self.steps}
        for flag, key in ((f, _renamed(self.model, f)) for f, v in named.items() if v is not None):
            if key in self.model_options:
                raise ValueError(f"--{flag} and --model-option {key}=... set the same option; give one")


def _renamed(model: str, flag: str) -> str:
    """The model option ``--channels`` / ``--steps`` set (GCNGraph names them ``hidden`` / ``num_layers``)."""
    width, depth = WIDTH_DEPTH.get(model, ("channels", "steps"))
    return width if flag == "channels" else depth


def _size(text: str) -> int | None:
    if text.lower() == "all":
        return None
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"size must be >= 1 or 'all', got {text}")
    return n


def _literal(text: str) -> int | float | bool | str:
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=GRAPH_MODELS, default=Config.model)
    p.add_argument("--target", default="U0", help=f"one of {', '.join(TARGETS)} (case-insensitive)")
    p.add_argument("--edges", choices=("complete", "bonds", "bins"), default=Config.edges)
    p.add_argument("--no-hydrogens", action="store_true", help="heavy atoms only")
    p.add_argument("--epochs", type=int, default=Config.epochs)
    p.add_argument("--batch-size", type=int, default=Config.batch_size)
    p.add_argument("--lr", type=float, default=Config.lr)
    p.add_argument("--grad-clip", type=float, default=Config.grad_clip,
                   help=f"clip the gradient norm to this; 0 disables (default {Config.grad_clip})")
    p.add_argument("--schedule", choices=("linear", "cosine", "plateau", "constant"), default=Config.schedule)
    p.add_argument("--train-size", type=_size, default=argparse.SUPPRESS,
                   help=f"first N molecules of the training split, or 'all' (default {QUICK_TRAIN_SIZE})")
    p.add_argument("--eval-size", type=_size, default=argparse.SUPPRESS,
                   help=f"first M molecules of the validation and test splits, or 'all' (default: {QUICK_EVAL_SIZE} "
                        "for the quick run; 'all' as soon as --train-size is given)")  # fmt: skip
    p.add_argument("--channels", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra build_model option, e.g. edge_hidden=64 (repeatable)")
    p.add_argument("--device", default=Config.device, help="cpu, cuda, cuda:1 or auto")
    p.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA")
    p.add_argument("--seed", type=int, default=Config.seed)
    p.add_argument("--out", default=Config.out)
    p.add_argument("--data-root", default=None, help="QM9 folder with the processed cache (default: qm9/ under "
                   "$GNNKIT_DATA, else the checkout's datasets/, else ~/.cache/gnnkit)")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT (from OUT/checkpoint.pt)")
    p.add_argument("--overwrite", action="store_true", help="replace the run files in a non-empty OUT")
    p.add_argument("--loader-workers", type=int, default=None, help="DataLoader workers (default: 0 on CPU, up to 8 on CUDA)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--stop-after-epoch", type=int, default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    given = vars(a)
    # --train-size alone evaluates on the full validation and test splits.
    train_size = given.get("train_size", QUICK_TRAIN_SIZE)
    eval_size = given.get("eval_size", QUICK_EVAL_SIZE if "train_size" not in given else None)
    target_index(a.target)  # validates the name (ValueError, as the library raises it)
    options = {}
    for item in a.model_option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            p.error(f"--model-option must be KEY=VALUE, got {item!r}")
        if key in options:
            p.error(f"--model-option {key} given twice")
        options[key] = _literal(value)
    if a.grad_clip < 0 or not math.isfinite(a.grad_clip):
        p.error(f"--grad-clip must be >= 0 (0: no clipping), got {a.grad_clip}")
    try:
        resolve_device(a.device)
    except (ValueError, RuntimeError) as e:  # RuntimeError: torch.device("gpu")
        p.error(f"--device {a.device!r}: {e}")
    try:
        cfg = Config(
            model=a.model, target=a.target.lower(), edges=a.edges, hydrogens=not a.no_hydrogens, epochs=a.epochs,
            batch_size=a.batch_size, lr=a.lr, schedule=a.schedule, grad_clip=a.grad_clip if a.grad_clip > 0 else None,
            train_size=train_size, eval_size=eval_size, channels=a.channels, steps=a.steps, device=a.device, amp=a.amp,
            seed=a.seed, out=a.out, data_root=a.data_root, resume=a.resume, overwrite=a.overwrite,
            loader_workers=a.loader_workers, progress=not a.no_progress, stop_after_epoch=a.stop_after_epoch,
            model_options=options,
        )  # fmt: skip
        check_out_dir(cfg.out, cfg.resume, cfg.overwrite)
    except (ValueError, FileExistsError) as e:
        p.error(str(e))
    return cfg


def model_options(cfg: Config) -> dict:
    opts = dict(cfg.model_options)
    if cfg.channels is not None:
        opts[_renamed(cfg.model, "channels")] = cfg.channels
    if cfg.steps is not None:
        opts[_renamed(cfg.model, "steps")] = cfg.steps
    if cfg.edges == "bins" and cfg.model == "ggnn":
        opts.setdefault("num_edge_types", 14)  # 4 bond types + 10 distance bins (data.edge_type)
    return opts


def _cpu_seconds(since: os.times_result) -> float:
    """CPU time of this process and its finished children (featurization workers) since ``since``."""
    now = os.times()
    return (now.user - since.user) + (now.system - since.system) + (now.children_user - since.children_user) + (
        now.children_system - since.children_system)  # fmt: skip


def main(cfg: Config) -> dict:
    t_start, cpu_start = time.perf_counter(), os.times()
    info = init_distributed(cfg.device)
    device = resolve_device(cfg.device)
    if device.type == "cpu" and info.distributed:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // info.world_size))
    col = target_index(cfg.target)
    name = TARGETS[col]
    train_cfg = TrainConfig(
        epochs=cfg.epochs, lr=cfg.lr, schedule=cfg.schedule, final_lr_factor=cfg.final_lr_factor, amp=cfg.amp,
        grad_clip=cfg.grad_clip,
        device=str(device), seed=cfg.seed, out_dir=cfg.out, resume=cfg.resume, progress=cfg.progress,
        stop_after_epoch=cfg.stop_after_epoch, target_names=[name], score_scale=[CHEMICAL_ACCURACY[name]],
        run_settings={k: v for k, v in asdict(cfg).items() if k not in NOT_RUN_SETTINGS},
    )  # fmt: skip
    # Before any data is loaded: never replace another run's files unless told to, and resume
    # only the run these arguments describe.
    if info.is_main:
        prepare_out_dir(cfg.out, cfg.resume, cfg.overwrite, outputs=(*OUTPUTS, RESULT_NAME))
    else:
        check_out_dir(cfg.out, cfg.resume, cfg.overwrite)
    check_resume(train_cfg)

    split = load_split()
    rows = {"train": split["train"][: cfg.train_size], "val": split["val"][: cfg.eval_size], "test": split["test"][: cfg.eval_size]}
    full = cfg.train_size is None and cfg.eval_size is None
    subset = None if full else np.concatenate(list(rows.values()))
    make = lambda: QM9(cfg.data_root, cfg.edges, cfg.hydrogens, subset=subset, log=info.is_main)  # noqa: E731
    if info.distributed and not info.is_main:
        torch.distributed.barrier()  # rank 0 builds the cache first
    dataset = make()
    if info.distributed and info.is_main:
        torch.distributed.barrier()
    parts = {k: dataset.select(v, missing="skip") for k, v in rows.items()}
    data_seconds = time.perf_counter() - t_start

    normalizer = TargetNormalizer.fit(
        dataset.graph_attr("y", rows["train"], missing="skip"), dataset.graph_attr("atom_counts", rows["train"], missing="skip"),
        [col], [name in EXTENSIVE],
    )  # fmt: skip
    pin = device.type == "cuda"
    workers = cfg.loader_workers
    if workers is None:
        workers = min(8, max((os.cpu_count() or 1) // info.world_size - 1, 0)) if pin else 0
    loaders = {k: make_loader(d, cfg.batch_size, shuffle=k == "train", seed=cfg.seed, dist_info=info,
                              num_workers=workers, pin_memory=pin) for k, d in parts.items()}  # fmt: skip
    loader_rate = loader_throughput(loaders["train"], device, max_batches=50) * info.world_size

    torch.manual_seed(cfg.seed)
    sample = parts["train"][0]
    edge_dim = sample.edge_attr.size(1) if MODELS[cfg.model].edge_features else None
    model = build_model(cfg.model, sample.x.size(1), 1, edge_dim=edge_dim, **model_options(cfg))
    if info.is_main:
        n_params = sum(p.numel() for p in model.parameters())
        print(f"QM9 {name}: {cfg.model} ({n_params:,} parameters) on {device}, edges={cfg.edges}, "
              f"hydrogens={cfg.hydrogens}; train/val/test = {len(parts['train'])}/{len(parts['val'])}/{len(parts['test'])} "
              f"molecules; data ready in {data_seconds:.1f} s; loader {loader_rate:.0f} mol/s", flush=True)  # fmt: skip

    res = fit(model, loaders["train"], loaders["val"], loaders["test"], normalizer, train_cfg)

    acc = CHEMICAL_ACCURACY[name]
    # A diverged run has no result: its MAEs would be those of an epoch before the divergence.
    status = "diverged" if res.error else "interrupted" if res.interrupted else "completed"
    val_mae = res.val_mae[0] if res.val_mae and not res.error else None
    test_mae = res.test_mae[0] if res.test_mae and not res.error else None
    result = {
        "model": cfg.model, "target": name, "unit": UNITS[name], "status": status, "error": res.error,
        "val_mae": val_mae, "test_mae": test_mae,
        "test_mae_ratio": test_mae / acc if test_mae is not None else None,
        "val_mae_ratio": val_mae / acc if val_mae is not None else None,
        "chemical_accuracy": acc, "best_epoch": res.best_epoch, "epochs": res.epochs_completed,
        "train_size": len(parts["train"]), "val_size": len(parts["val"]), "test_size": len(parts["test"]),
        "steps": res.epochs_completed * len(loaders["train"]),
        "seconds": round(time.perf_counter() - t_start, 2), "train_seconds": round(res.seconds, 2),
        "cpu_seconds": round(_cpu_seconds(cpu_start), 2), "threads": torch.get_num_threads(),
        "data_seconds": round(data_seconds, 2), "molecules_per_second": round(res.train_molecules_per_second, 1),
        "loader_molecules_per_second": round(loader_rate, 1), "loader_workers": workers, "device": str(device),
        "world_size": info.world_size,
        "interrupted": res.interrupted, "featurization": {k: v for k, v in dataset.report.items() if k != "failures"},
        "config": asdict(cfg), "torch": torch.__version__,
        "paper": {"gilmer_enn_s2s_u0_ratio": GILMER_U0_RATIO, "gilmer_steps": 3_000_000, "gilmer_batch_size": 20},
    }  # fmt: skip
    if info.is_main:
        atomic_write_text(json.dumps(result, indent=1, default=str) + "\n", Path(cfg.out) / RESULT_NAME)
        if test_mae is not None:
            print(f"{name}: val MAE {result['val_mae']:.4f} {UNITS[name]}, test MAE {result['test_mae']:.4f} "
                  f"{UNITS[name]} = {result['test_mae_ratio']:.2f} x chemical accuracy ({acc} {UNITS[name]}) "
                  f"at epoch {res.best_epoch}/{res.epochs_completed}, {result['steps']} steps of batch {cfg.batch_size}"
                  + (f" (Gilmer enn-s2s: {GILMER_U0_RATIO} after 3M steps of batch 20)" if name == "u0" else "")
                  + f"; {result['molecules_per_second']:.0f} mol/s training, {result['seconds']:.0f} s total "
                  f"-> {cfg.out}/result.json", flush=True)  # fmt: skip
        elif res.error:
            print(f"{name}: diverged ({res.error}); no result -> {cfg.out}/result.json", flush=True)
    if info.distributed:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return result


if __name__ == "__main__":
    outcome = main(parse_args(sys.argv[1:]))
    sys.exit(1 if outcome["status"] == "diverged" else 0)
