"""``gnnkit train qm9`` (and ``recipes/qm9.py``): train a graph network on QM9 targets (Gilmer et
al. 2017, "Neural Message Passing for Quantum Chemistry").

Defaults follow Gilmer's enn-s2s: edge-network messages, GRU update, set2set readout, explicit
hydrogens, complete graph with (distance, bond one-hot) edges, one model per target, normalised
targets, MSE loss, Adam with a linearly decaying learning rate (plus gradient-norm clipping at 5,
which made the short default run steadier). The budget is small by default
(5,000 training molecules, 6 epochs, validation and test on the first 1,000 molecules of their
splits) so that the run, data preparation included, takes minutes on a laptop CPU; Gilmer trained
on all 110,831 molecules for 3M steps of batch 20.

``--target all`` trains one model per target (as Gilmer did), each in ``OUT/<target>/``, and
writes ``OUT/table.md`` and ``OUT/table.json``: test MAE, MAE / chemical accuracy per target and
the mean ratio, beside Gilmer's enn-s2s ratios (Table 2 of arXiv:1704.01212), and per target the
test MAE of the normaliser alone (a network predicting 0) and the spread the network learns. With
the quick defaults it is 13 quick runs, one after the other: measured 36 minutes on the idle
2-core CPU with torch's 2 threads (152-178 s per target, 4,185 CPU-s in all;
recipes/results/qm9_all_quick_cpu.md).

``--preset gilmer`` sets the paper's enn-s2s training (Section 7 of the paper; options given on
the command line override it): all 110,831 training molecules and the full validation and test
splits, batch 20, 541 epochs (2,998,222 steps: the paper's 3M steps, "540 epochs"), Adam with a
constant learning rate and then a linear decay, no gradient clipping, MPNN with edge network,
set2set and GRU, explicit hydrogens, complete graph with (distance, bond one-hot) edges. The
paper searched some settings per target (50 random trials each) without reporting the winners;
gnnkit picks one value for all targets:

* state size d: not reported for enn-s2s; **200**, the largest d the paper trained (its towers and
  GG-NN baselines, supplement Table 8), since "the most effective way to increase performance
  was to tie the weights and use a larger hidden dimension d";
* message steps T in 3..8 ("in practice, any T >= 3 works"): **3**;
* set2set steps M in 1..12: **6**;
* initial learning rate drawn uniformly from [1e-5, 5e-4]: **2.5e-4**, the middle;
* decay start between 10 % and 90 % of training: **50 %**; decay factor F in [0.01, 1]: **0.1**;
* the edge network's hidden layer (not described): gnnkit's default, 128 units.

``--preset full`` and ``--preset full-pyg`` are the equal-wall-clock comparison on the whole split
(110,831 training molecules, the full validation and test splits, U0 unless ``--target``): 60
minutes of training wall-clock each (``--time-budget 3600``: evaluation excluded, the schedule
decays over the time), a validation point (and checkpoint) every 20,000 molecules
(``--epoch-size``), resumable with ``--resume`` (the budget counts the training seconds of every
session). ``full`` is gnnkit's MPNN with the settings the pilots chose
(recipes/results/qm9_pilots.md); ``full-pyg`` is PyG's ``examples/qm9_nn_conv.py`` model
(``--model pyg-nnconv``) at that example's settings. ``recipes/qm9_report.py``
(:mod:`gnnkit.bench.time_report`) turns the two run folders into one figure and one table.

Gilmer normalised every target to mean 0 and variance 1; gnnkit also subtracts a per-element
linear reference from extensive targets first (:mod:`gnnkit.data.normalize`). Expected time, an
estimate: 1.7 CPU-s per step of batch 20 measured on one core, so 13 targets x 3M steps is about
2 CPU-years; on one GPU (not measured), at an assumed 5-15 ms per step, 2-7 days.

Writes ``OUT/result.json``, ``OUT/log.csv``, ``OUT/learning_curve.png``, ``OUT/checkpoint.pt``
(every epoch, atomically, the previous one kept as ``checkpoint.prev.pt``) and
``OUT/best_model.pt``: the best epoch's weights with everything ``gnnkit predict`` needs
(model name and options, target, unit, normaliser, featurizer settings). A non-empty ``--out`` is
refused unless ``--resume`` (continue the killed run there; refused if its settings differ) or
``--overwrite`` (replace it). Every argument is checked before any data is loaded. A run whose
loss goes non-finite stops, records ``"status": "diverged"`` (no MAE) and exits with status 1.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from gnnkit.bench.probes import MachineLoad, PeakMemory, device_description, git_commit
from gnnkit.cli.options import (
    at_least,
    build_parser,
    check_config,
    config_from,
    option,
    parse_given,
    run_command,
    shared,
    size_or_all,
)
from gnnkit.data import QM9, FeaturizerOptions, TargetNormalizer, load_split, target_index
from gnnkit.data.molecule_io import training_domain
from gnnkit.data.qm9 import CHEMICAL_ACCURACY, EXTENSIVE, SPLIT_SIZES, TARGETS, UNITS
from gnnkit.data.smiles import read_qm9_smiles
from gnnkit.models import MODELS, build_model
from gnnkit.predict import predictor_card
from gnnkit.train import TrainConfig, check_resume, fit, init_distributed, loader_throughput, make_loader, resolve_device
from gnnkit.train.checkpoint import atomic_write_text
from gnnkit.train.loop import OUTPUTS
from gnnkit.train.outdir import check_out_dir, prepare_out_dir, releases_out_dirs

EXAMPLES = """\
  gnnkit train qm9                                  # quick run: MPNN on U0, ~5 min on 2 CPU cores
  gnnkit train qm9 --model ggnn --target gap --edges bonds
  gnnkit train qm9 --target all --out runs/qm9_all  # one model per target + the 13-target table
  gnnkit train qm9 --preset gilmer --target all --device cuda --out runs/gilmer   # the paper's setup
  gnnkit train qm9 --train-size all --epochs 300 --device cuda --amp
  gnnkit train qm9 --preset full --out runs/full_mpnn      # 60 min of training on the whole split
  gnnkit train qm9 --preset full-pyg --out runs/full_pyg   # PyG's qm9_nn_conv example, the same
  torchrun --nproc_per_node=4 -m gnnkit train qm9 --train-size all --device cuda
  (python recipes/qm9.py takes the same options)
"""

QUICK_TRAIN_SIZE, QUICK_EVAL_SIZE = 5_000, 1_000
# The registry's graph-level models on molecular graphs; GCNGraph names its width and depth
# hidden / num_layers.
GRAPH_MODELS = tuple(n for n, spec in MODELS.items() if spec.task == "graph" and spec.inputs == "graph")
WIDTH_DEPTH = {"gcn-graph": ("hidden", "num_layers")}
# Gilmer et al. 2017 (arXiv:1704.01212), Table 2, column enn-s2s: MAE / chemical accuracy after
# 3M steps on 110k molecules, one model per target. Its "Average" row is 0.68.
GILMER_ENN_S2S: dict[str, float] = {
    "mu": 0.30, "alpha": 0.92, "homo": 0.99, "lumo": 0.87, "gap": 1.60, "r2": 0.15, "zpve": 1.27,
    "u0": 0.45, "u": 0.45, "h": 0.39, "g": 0.44, "cv": 0.80, "omega": 0.19,
}  # fmt: skip
GILMER_ENN_S2S_MEAN = 0.68
RESULT_NAME = "result.json"
TABLE_NAMES = ("table.md", "table.json")
# Config fields that do not change what is trained: a --resume may change these, not the others.
NOT_RUN_SETTINGS = ("device", "out", "data_root", "resume", "overwrite", "loader_workers", "progress", "stop_after_epoch",
                    "preset")  # fmt: skip

# Presets: plain dicts layered over the defaults (an option given on the command line wins).
# "quick" is the dataclass defaults. "gilmer": see the module docstring for what the paper fixes and what we pick.
GILMER_EPOCHS = 541  # ceil(110,831 / 20) = 5,542 steps per epoch; 541 epochs = 2,998,222 steps
# The whole split for 60 minutes of training wall-clock (--epochs then defaults to an upper bound the time reaches
# first), a validation point every 20,000 molecules.
FULL_DATA = {"train_size": None, "eval_size": None, "time_budget": 3600.0, "epoch_size": 20_000, "edges": "complete",
             "hydrogens": True}  # fmt: skip
PRESETS: dict[str, dict] = {
    "quick": {},
    "gilmer": {
        "model": "mpnn", "edges": "complete", "hydrogens": True, "train_size": None, "eval_size": None,
        "batch_size": 20, "epochs": GILMER_EPOCHS, "lr": 2.5e-4, "schedule": "linear", "decay_start": 0.5,
        "final_lr_factor": 0.1, "grad_clip": None, "channels": 200, "steps": 3,
        "model_options": {"set2set_steps": 6},
    },
    # 60 minutes of training wall-clock on the whole split (recipes/results/qm9_pilots.md chose the MPNN's settings).
    # Messages summed as in Gilmer's paper, scaled by 1/18 (about 1 / the mean in-degree of QM9's complete graphs with
    # hydrogens), edge network hidden size 64: per step as fast as 128, 1.6x the molecules per CPU-second.
    "full": {**FULL_DATA, "model": "mpnn", "batch_size": 32, "lr": 1e-3, "schedule": "linear", "decay_start": 0.0,
             "final_lr_factor": 0.05, "grad_clip": 5.0, "channels": 64, "steps": 3,
             "model_options": {"message_scale": 1 / 18, "edge_hidden": 64}},
    # PyG's examples/qm9_nn_conv.py: d = 64, mean aggregation, batch 128, Adam 1e-3 (its ReduceLROnPlateau, patience
    # 5 epochs, cannot act within the few passes of an hour on a CPU, so the lr is constant), no clipping.
    "full-pyg": {**FULL_DATA, "model": "pyg-nnconv", "batch_size": 128, "lr": 1e-3, "schedule": "constant",
                 "grad_clip": None, "channels": 64},
}  # fmt: skip


def _renamed(model: str, flag: str) -> str:
    """The model option ``--channels`` / ``--steps`` set (GCNGraph names them ``hidden`` / ``num_layers``)."""
    width, depth = WIDTH_DEPTH.get(model, ("channels", "steps"))
    return width if flag == "channels" else depth



def _target(value: str) -> str:
    """A QM9 target name (case-insensitive) or ``all``."""
    return "all" if value.lower() == "all" else TARGETS[target_index(value)]


def _split_size(split: str):
    most = SPLIT_SIZES[split]

    def check(value: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most:
            raise ValueError(f"must be in 1..{most:,} (the {split} split's size) or 'all', got {value!r}")
        return value

    return check


@dataclass
class Config:
    """The options of ``gnnkit train qm9`` (each written once: default, help, check)."""

    model: str = option("mpnn", "a graph model of the registry", choices=GRAPH_MODELS, group="model")
    channels: int | None = option(None, "model width (none: the model's default)", check=at_least(1), group="model")
    steps: int | None = option(None, "message-passing steps (none: the model's default)", check=at_least(1), group="model")
    model_options: dict = shared("model_options")
    target: str = option("u0", f"one of {', '.join(TARGETS)} (case-insensitive), or all: one model per target and the "
                         "13-target table", check=_target, group="data")  # fmt: skip
    edges: str = option("complete", "complete (distance + bond one-hot), bonds or bins", choices=("complete", "bonds", "bins"),
                        group="data")  # fmt: skip
    hydrogens: bool = option(True, "keep hydrogens as nodes (--no-hydrogens: heavy atoms only)", group="data")
    train_size: int | None = option(QUICK_TRAIN_SIZE, "first N molecules of the training split, or all", parse=size_or_all,
                                    check=_split_size("train"), group="data")  # fmt: skip
    eval_size: int | None = option(QUICK_EVAL_SIZE, "first M molecules of the validation and test splits, or all (all as "
                                   "soon as --train-size is given)", parse=size_or_all, check=_split_size("val"),
                                   group="data")  # fmt: skip
    data_root: str | None = option(None, "QM9 folder with the processed cache (default: qm9/ under $GNNKIT_DATA, else the "
                                   "checkout's datasets/, else ~/.cache/gnnkit)", group="data")  # fmt: skip
    epochs: int = shared("epochs", 6)
    batch_size: int = shared("batch_size", 32)
    lr: float = shared("lr")
    schedule: str = shared("schedule")
    final_lr_factor: float = shared("final_lr_factor")
    decay_start: float = shared("decay_start")
    grad_clip: float | None = shared("grad_clip", 5.0, "clip the gradient norm to this (steadier than none on the quick "
                                     "run); none (or 0): no clipping")  # fmt: skip
    time_budget: float | None = shared("time_budget")
    epoch_size: int | None = shared("epoch_size")
    amp: bool = option(False, "bf16 autocast on CUDA", group="training")
    device: str = shared("device")
    seed: int = shared("seed")
    out: str = shared("out", "runs/qm9")
    resume: bool = shared("resume")
    overwrite: bool = shared("overwrite")
    loader_workers: int | None = option(None, "DataLoader workers (none: 0 on CPU, up to 8 on CUDA)", check=at_least(0),
                                        group="run")  # fmt: skip
    progress: bool | None = shared("progress")
    stop_after_epoch: int | None = option(None, "for tests: stop as if killed after this epoch", check=at_least(1),
                                          group="run")  # fmt: skip
    preset: str = option("quick", "quick (the defaults shown), gilmer (Gilmer et al.'s enn-s2s training), full or "
                         "full-pyg (60 minutes on the whole split: gnnkit's MPNN, PyG's example)",
                         choices=tuple(PRESETS))  # fmt: skip

    def __post_init__(self) -> None:
        """Checks every value, so that a bad one fails before any data is loaded."""
        check_config(self)
        valid = MODELS[self.model].options()
        unknown = sorted(set(self.model_options) - set(valid))
        if unknown:
            raise ValueError(f"unknown --model-option {', '.join(unknown)} for --model {self.model}; "
                             f"valid options: {', '.join(valid)}")  # fmt: skip
        named = {"channels": self.channels, "steps": self.steps}
        for flag, key in ((f, _renamed(self.model, f)) for f, v in named.items() if v is not None):
            if key in self.model_options:
                raise ValueError(f"--{flag} and --model-option {key}=... set the same option; give one")

    @property
    def targets(self) -> tuple[str, ...]:
        """The targets this run trains (one model each)."""
        return TARGETS if self.target == "all" else (self.target,)


def _resolve(values: dict, given: set[str]) -> dict:
    """qm9's own rules: a preset trains its model only; --train-size alone evaluates on the full
    validation and test splits."""
    preset = values.get("preset", "quick")
    fixed = PRESETS[preset].get("model")
    if fixed is not None and values.get("model", fixed) != fixed:
        raise ValueError(f"--preset {preset} trains {fixed}; it cannot be combined with "
                         f"--model {values['model']}")  # fmt: skip
    if "train_size" in given and "eval_size" not in values:
        values["eval_size"] = None
    return values


def parse_args(argv: Sequence[str] | None = None, prog: str | None = None) -> Config:
    """The command line -> a checked Config (usage errors exit 2; an unknown --target raises
    ValueError, as :func:`gnnkit.data.target_index` does)."""
    parser = build_parser(Config, __doc__.split("\n\n")[0], EXAMPLES, prog)
    given = parse_given(parser, argv)
    if "target" in given:
        _target(given["target"])
    return config_from(Config, given, parser, PRESETS, _resolve)


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


def _command_line() -> list[str]:
    """This process's command as typed: ``python recipes/qm9.py ...``, ``python -m gnnkit ...`` or
    ``gnnkit ...`` (the console script), for the result's record."""
    script, rest = sys.argv[0], sys.argv[1:]
    if Path(script).name == "__main__.py":
        return ["python", "-m", Path(script).parent.name, *rest]
    if script.endswith(".py"):
        return ["python", script, *rest]
    return [Path(script).name, *rest]


def _train_config(cfg: Config, device: torch.device) -> TrainConfig:
    name = cfg.target
    return TrainConfig(
        epochs=cfg.epochs, lr=cfg.lr, schedule=cfg.schedule, final_lr_factor=cfg.final_lr_factor,
        decay_start=cfg.decay_start, amp=cfg.amp, grad_clip=cfg.grad_clip, time_budget=cfg.time_budget,
        device=str(device), seed=cfg.seed, out_dir=cfg.out, resume=cfg.resume, progress=cfg.progress,
        stop_after_epoch=cfg.stop_after_epoch, target_names=[name], score_scale=[CHEMICAL_ACCURACY[name]],
        run_settings={k: v for k, v in asdict(cfg).items() if k not in NOT_RUN_SETTINGS},
    )  # fmt: skip


def _per_target(cfg: Config) -> list[Config]:
    """One config per trained target; with ``--target all`` each writes under ``OUT/<target>``."""
    if cfg.target != "all":
        return [cfg]
    return [replace(cfg, target=t, out=str(Path(cfg.out) / t)) for t in TARGETS]


def load_data(cfg: Config, info) -> tuple[QM9, dict[str, np.ndarray]]:
    """The QM9 molecules this run needs (the cache of that subset) and the rows of each split."""
    split = load_split()
    rows = {"train": split["train"][: cfg.train_size], "val": split["val"][: cfg.eval_size], "test": split["test"][: cfg.eval_size]}
    full = cfg.train_size is None and cfg.eval_size is None
    subset = None if full else np.concatenate(list(rows.values()))
    if info.distributed and not info.is_main:
        torch.distributed.barrier()  # rank 0 builds the cache first
    dataset = QM9(cfg.data_root, cfg.edges, cfg.hydrogens, subset=subset, log=info.is_main)
    if info.distributed and info.is_main:
        torch.distributed.barrier()
    return dataset, rows


@functools.lru_cache(maxsize=1)
def _training_domain(rows: tuple[int, ...]) -> dict:
    """The training molecules' applicability domain (net charges, fragments, size), once per run."""
    smiles = read_qm9_smiles()
    return training_domain([smiles[r] for r in rows])


def reference_mae(normalizer: TargetNormalizer, dataset: QM9, rows: np.ndarray) -> float:
    """MAE on ``rows`` of the normaliser alone, i.e. of a network that predicts 0: the training
    mean, plus the per-element linear reference for an extensive target. What the network has to
    beat; in physical units."""
    y = dataset.graph_attr("y", rows, missing="skip")
    counts = dataset.graph_attr("atom_counts", rows, missing="skip")
    pred = normalizer.denormalize(torch.zeros(len(y), len(normalizer.columns)), counts)
    return float((pred - normalizer.target(y)).abs().mean())


def train_target(cfg: Config, info, dataset: QM9, rows: dict[str, np.ndarray], t_start: float,
                 cpu_start: os.times_result) -> dict:  # fmt: skip
    """Trains one model on ``cfg.target`` and writes its result.json (returned)."""
    device = resolve_device(cfg.device)
    col = target_index(cfg.target)
    name = TARGETS[col]
    train_cfg = _train_config(cfg, device)
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
    loaders = {k: make_loader(d, cfg.batch_size, shuffle=k == "train", seed=cfg.seed, dist_info=info, num_workers=workers,
                              pin_memory=pin, epoch_size=cfg.epoch_size if k == "train" else None)
               for k, d in parts.items()}  # fmt: skip
    loader_rate = loader_throughput(loaders["train"], device, max_batches=50) * info.world_size

    torch.manual_seed(cfg.seed)
    sample = parts["train"][0]
    edge_dim = sample.edge_attr.size(1) if MODELS[cfg.model].edge_features else None
    options = model_options(cfg)
    model = build_model(cfg.model, sample.x.size(1), 1, edge_dim=edge_dim, **options)
    # best_model.pt carries what gnnkit predict needs to use the model on new molecules.
    train_cfg.best_model_info = predictor_card(
        cfg.model, sample.x.size(1), 1, edge_dim, options, [name], [UNITS[name]], normalizer,
        FeaturizerOptions(cfg.edges, cfg.hydrogens), geometry="dft",
        dataset=f"QM9 ({len(parts['train'])} training molecules of the committed split)",
        domain=_training_domain(tuple(parts["train"].rows.tolist())),
    )  # fmt: skip
    if info.is_main:
        n_params = sum(p.numel() for p in model.parameters())
        print(f"QM9 {name}: {cfg.model} ({n_params:,} parameters) on {device}, edges={cfg.edges}, "
              f"hydrogens={cfg.hydrogens}; train/val/test = {len(parts['train'])}/{len(parts['val'])}/{len(parts['test'])} "
              f"molecules; data ready in {data_seconds:.1f} s; loader {loader_rate:.0f} mol/s", flush=True)  # fmt: skip

    load = MachineLoad(own_threads=torch.get_num_threads())
    load.sample()
    with PeakMemory(device) as memory:
        res = fit(model, loaders["train"], loaders["val"], loaders["test"], normalizer, train_cfg)
    load.sample()

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
        # The normaliser alone (a network predicting 0) on the test molecules, and the spread the
        # network learns (std of the training targets after the reference): a ratio far from the
        # others' is read against these (recipes/results/qm9_all_quick_cpu.md).
        "reference_test_mae": reference_mae(normalizer, dataset, rows["test"]),
        "residual_std": float(normalizer.std[0]),
        "train_size": len(parts["train"]), "val_size": len(parts["val"]), "test_size": len(parts["test"]),
        "steps": res.epochs_completed * len(loaders["train"]),
        "seconds": round(time.perf_counter() - t_start, 2), "fit_seconds": round(res.seconds, 2),
        "train_seconds": round(res.train_seconds, 2), "cpu_seconds": round(_cpu_seconds(cpu_start), 2),
        "threads": torch.get_num_threads(),
        "data_seconds": round(data_seconds, 2), "molecules_per_second": round(res.train_molecules_per_second, 1),
        "loader_molecules_per_second": round(loader_rate, 1), "loader_workers": workers, "device": str(device),
        "world_size": info.world_size, "parameters": sum(p.numel() for p in model.parameters()),
        "peak_memory_mb": memory.peak_mb, "machine_load": load.summary(), "machine": device_description(device),
        "commit": git_commit(Path(__file__).resolve().parent), "time_budget": cfg.time_budget, "argv": _command_line(),
        "interrupted": res.interrupted, "featurization": {k: v for k, v in dataset.report.items() if k != "failures"},
        "config": asdict(cfg), "torch": torch.__version__,
        "paper": {"gilmer_enn_s2s_ratio": GILMER_ENN_S2S[name], "gilmer_steps": 3_000_000, "gilmer_batch_size": 20},
    }  # fmt: skip
    if info.is_main:
        atomic_write_text(json.dumps(result, indent=1, default=str) + "\n", Path(cfg.out) / RESULT_NAME)
        if test_mae is not None:
            print(f"{name}: val MAE {result['val_mae']:.4f} {UNITS[name]}, test MAE {result['test_mae']:.4f} "
                  f"{UNITS[name]} = {result['test_mae_ratio']:.2f} x chemical accuracy ({acc} {UNITS[name]}) "
                  f"at epoch {res.best_epoch}/{res.epochs_completed}, {result['steps']} steps of batch {cfg.batch_size}"
                  f" (Gilmer enn-s2s: {GILMER_ENN_S2S[name]} after 3M steps of batch 20)"
                  f"; {result['molecules_per_second']:.0f} mol/s training, {result['seconds']:.0f} s total "
                  f"-> {cfg.out}/result.json", flush=True)  # fmt: skip
        elif res.error:
            print(f"{name}: diverged ({res.error}); no result -> {cfg.out}/result.json", flush=True)
    return result


def target_table(results: list[dict], cfg: Config) -> tuple[dict, str]:
    """The 13-target table (JSON and markdown) of ``--target all``: test MAE, MAE / chemical
    accuracy, Gilmer's enn-s2s ratio; the mean ratio over the targets that have a result."""
    rows = []
    for r in results:
        mae, ref, spread = r["test_mae"], r["reference_test_mae"], r["residual_std"]  # spread > 0: the normaliser checks it
        rows.append({"target": r["target"], "unit": r["unit"], "chemical_accuracy": r["chemical_accuracy"],
                     "test_mae": mae, "ratio": r["test_mae_ratio"], "gilmer_enn_s2s_ratio": GILMER_ENN_S2S[r["target"]],
                     "status": r["status"], "best_epoch": r["best_epoch"], "epochs": r["epochs"],
                     "reference_test_mae": ref, "residual_std": spread,
                     "mae_over_reference": mae / ref if mae is not None and ref > 0 else None,
                     "mae_over_residual_std": mae / spread if mae is not None else None})  # fmt: skip
    have = [row["ratio"] for row in rows if row["ratio"] is not None and row["status"] == "completed"]
    complete = len(have) == len(TARGETS)
    mean = sum(have) / len(have) if have else None
    table = {"rows": rows, "mean_ratio": mean, "mean_over": len(have), "gilmer_enn_s2s_mean_ratio": GILMER_ENN_S2S_MEAN,
             "model": cfg.model, "train_size": results[0]["train_size"], "test_size": results[0]["test_size"],
             "epochs": cfg.epochs, "batch_size": cfg.batch_size, "preset": cfg.preset,
             "source": "Gilmer et al. 2017, arXiv:1704.01212, Table 2 (enn-s2s column)"}  # fmt: skip
    fmt = lambda v, spec: "n/a" if v is None else format(v, spec)  # noqa: E731
    lines = [
        f"# QM9, one {cfg.model} per target (`--preset {cfg.preset}`)", "",
        f"{results[0]['train_size']:,} training molecules, {results[0]['test_size']:,} test molecules, {cfg.epochs} "
        f"epoch{'s' if cfg.epochs != 1 else ''} of batch {cfg.batch_size} per target. Ratio = test MAE / chemical accuracy (below 1: chemical accuracy). "
        "Gilmer: enn-s2s, Table 2 of Gilmer et al. 2017 (arXiv:1704.01212), 3M steps on 110k molecules. "
        "Reference MAE: the normaliser alone (a network predicting 0: the training mean, plus the per-element linear "
        "reference for extensive targets) on the same test molecules; residual std: the spread the network learns "
        "(training targets after the reference). Test MAE / residual std compares targets whose chemical accuracy is a "
        "very different fraction of their spread.", "",
        "| target | unit | chemical accuracy | test MAE | ratio | Gilmer enn-s2s ratio | reference MAE | MAE / reference "
        "| residual std | MAE / residual std | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for row in rows:
        lines.append(f"| {row['target']} | {row['unit']} | {row['chemical_accuracy']} | {fmt(row['test_mae'], '.4g')} | "
                     f"{fmt(row['ratio'], '.2f')} | {row['gilmer_enn_s2s_ratio']:.2f} | {fmt(row['reference_test_mae'], '.4g')} | "
                     f"{fmt(row['mae_over_reference'], '.2f')} | {fmt(row['residual_std'], '.4g')} | "
                     f"{fmt(row['mae_over_residual_std'], '.2f')} | {row['status']} |")  # fmt: skip
    label = "mean ratio" if complete else f"mean ratio ({len(have)} of {len(TARGETS)} targets)"
    lines.append(f"| **{label}** | | | | **{fmt(mean, '.2f')}** | **{GILMER_ENN_S2S_MEAN:.2f}** | | | | | |")
    return table, "\n".join(lines) + "\n"


@releases_out_dirs
def main(cfg: Config) -> dict:
    """Trains ``cfg.target`` (or every target, with ``--target all``); returns the result (the
    table for ``all``)."""
    t_start, cpu_start = time.perf_counter(), os.times()
    info = init_distributed(cfg.device)
    device = resolve_device(cfg.device)
    if device.type == "cpu" and info.distributed:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // info.world_size))
    if info.distributed and cfg.time_budget is not None:  # before any data is loaded (fit refuses it too)
        raise ValueError("--time-budget runs in one process (under torchrun the ranks' clocks would stop them at "
                         "different batches)")  # fmt: skip
    runs = _per_target(cfg)
    # Before any data is loaded: never replace another run's files unless told to, and resume
    # only the runs these arguments describe.
    outputs = (*OUTPUTS, RESULT_NAME)
    if info.is_main:
        prepare_out_dir(cfg.out, cfg.resume, cfg.overwrite, outputs=TABLE_NAMES if cfg.target == "all" else outputs)
        for run in runs if cfg.target == "all" else []:
            prepare_out_dir(run.out, run.resume, run.overwrite, outputs=outputs)
    else:
        check_out_dir(cfg.out, cfg.resume, cfg.overwrite)
    for run in runs:
        check_resume(_train_config(run, device))

    dataset, rows = load_data(cfg, info)
    results = []
    for run in runs:
        results.append(train_target(run, info, dataset, rows, t_start, cpu_start))
        t_start, cpu_start = time.perf_counter(), os.times()  # each target's own time (the first's includes the data)
    outcome = results[0]
    if cfg.target == "all":
        outcome, text = target_table(results, cfg)
        outcome["status"] = "diverged" if any(r["status"] == "diverged" for r in results) else (
            "interrupted" if any(r["status"] == "interrupted" for r in results) else "completed")  # fmt: skip
        if info.is_main:
            atomic_write_text(json.dumps(outcome, indent=1) + "\n", Path(cfg.out) / TABLE_NAMES[1])
            atomic_write_text(text, Path(cfg.out) / TABLE_NAMES[0])
            print(text + f"-> {cfg.out}/{TABLE_NAMES[0]}", flush=True)
    if info.distributed:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return outcome


def command(argv: Sequence[str] | None = None, prog: str = "gnnkit train qm9") -> int:
    """``gnnkit train qm9``: exit status 0, 1 if the run diverged, 2 for a usage error."""
    return run_command(lambda a: parse_args(a, prog), main, argv, prog, lambda outcome: 1 if outcome["status"] == "diverged" else 0)


if __name__ == "__main__":
    sys.exit(command(sys.argv[1:]))
