"""``gnnkit benchmark`` (and ``recipes/benchmark.py``): the architecture benchmark on QM9, gnnkit's
GNNs, PyG's reference models, a grid CNN, a SMILES RNN and your own model under one protocol,
with repeated seeds and two budgets.

Every model is trained on the same molecules of the committed QM9 split and the same target,
with the same loop (:func:`gnnkit.train.fit`: MSE on targets normalised by
:class:`gnnkit.data.TargetNormalizer`, with the per-element reference for extensive targets;
Adam, constant learning rate, gradient norm clipped at 5), once per seed (``--seeds K``: seeds
0..K-1 change the initialisation, the batch order and the CNN's rotations; the split is fixed).

**Two budgets from one run.** Each (model, seed) run is evaluated on the validation set at
``--time-evals`` equal fractions of ``--budget-seconds`` of training wall-clock (evaluation
excluded) and at the end of each of the first ``--epochs`` passes over the training slice
(:class:`gnnkit.train.budget.BudgetChunks`); it lasts until both budgets are spent. The
*equal-time* result is the test MAE at the best validation point within the time budget ("learns
fast per second"), the *equal-epochs* result the same within the epoch budget ("learns well per
sample"). With the constant learning rate, each is exactly what a run stopped at that budget
gives. The table reports mean ± std over seeds and ranks a model below another only when their
intervals are disjoint (:mod:`gnnkit.bench.compare`); overlapping pairs are listed.

Models (``--models``, comma-separated):

* gnnkit: ``mpnn``, ``ggnn`` (complete graph with (distance, bond one-hot) edges, Gilmer et
  al. 2017), ``gcn-graph`` (the chemical graph: GCN ignores edge features and would average over
  all atoms on the complete graph), ``cnn`` (per-element voxel grids of the 3D molecule, randomly
  rotated in training), ``rnn`` (atom-level SMILES tokens, vocabulary from the training slice).
* the rest of Gilmer et al. 2017's Section 2: ``nfp`` (Duvenaud et al. 2015; the chemical graph
  with bond one-hot edges, since its weights are per node degree), ``interaction`` (Battaglia et
  al. 2016), ``weave`` (Kearnes et al. 2016), ``dtnn`` (Schütt et al. 2017; distances from the
  positions) on the complete graph, and ``chebnet`` (Defferrard et al. 2016) on the chemical
  graph.
* PyG references (:mod:`gnnkit.models.pyg_reference`): ``pyg-nnconv`` (PyG's
  examples/qm9_nn_conv.py: NNConv + GRU + Set2Set), ``schnet`` (PyG's SchNet, on atomic numbers
  and positions), ``dimenet++`` (PyG's DimeNet++; needs pyg-lib's ``radius`` op and
  torch_sparse, which have no wheels for torch 2.13 on PyPI: where they are missing the ``gpu``
  preset lists it as not run, and asking for it is an error).
* Your model, as ``package.module:Class`` or ``path/to/file.py:Class``
  (:mod:`gnnkit.models.user_model`): built as ``Class(in_channels, out_channels, edge_dim=None)``
  and called as ``model(batch)`` on the complete-graph batch (``x [N, 13]``, ``edge_index``,
  ``edge_attr [E, 5]`` = (distance, bond one-hot), ``pos``, ``z``, ``batch``), returning
  ``[num_graphs, 1]``.

Presets (``--preset``; any option given on the command line overrides the preset):

* ``quick`` (default): 500 training / 300 validation / 300 test molecules, 45 s of training
  per run, 3 epochs, 3 seeds, mpnn, ggnn, gcn-graph, cnn, rnn, pyg-nnconv and schnet at about
  half their default widths (``MODELS`` below: GNN states 32 instead of 64, edge networks 64
  instead of 128, SchNet 64/64 with 3 interactions instead of 128/128/6, CNN blocks 16-32-64,
  RNN 32/64). Sized from per-epoch process CPU time at one thread on 320-molecule probes
  (estimates, on a shared machine): the slowest model, pyg-nnconv, trains ~42 molecules per
  CPU-second, so its 3 epochs of 500 molecules take ~36 s of the 45 s (3.7 epochs in the time
  budget); the others train 170-1,500 molecules per CPU-second, 15 (cnn) to 140 (gcn-graph)
  epochs in 45 s. 21 runs of 45 s, plus ~2 min of evaluation and featurization: about 18
  minutes on an idle 2-core CPU.
* ``section2``: every model above except dimenet++ (mpnn, ggnn, gcn-graph, cnn, rnn, nfp,
  interaction, weave, dtnn, chebnet, pyg-nnconv, schnet) at the quick widths on 2,000 training /
  500 validation / 500 test molecules, 3 seeds, equal epochs = 5 (every model sees 5 epochs of
  2,000 molecules) and equal time = 100 s of training per run, with 5 time evaluations. 100 s is
  sized so that the slowest model, pyg-nnconv (123 molecules/s on the idle 2-core CPU in the
  committed quick table, recipes/results/benchmark_U0.md), also trains its 5 epochs (10,000
  molecules, ~81 s) within the time budget; the table's "epochs in 100 s" column shows whether
  each model did (a run that has not finished its epochs goes on until it has, so the
  equal-epochs result is always 5 epochs). 36 runs of 100 s plus evaluation and featurization:
  about 70 minutes on an idle 2-core CPU (an estimate).
* ``gilmer``: Gilmer et al. 2017's ablations of GG-NN on U0, one command: Table 7 (GG-NN on the
  chemical graph without spatial information, + virtual edge, + master node, + set2set:
  ``ggnn-chemical``, ``ggnn+virtual``, ``ggnn+virtual+master``, ``ggnn+virtual+master+s2s``) and
  Table 8 (towers, k = 8, against GG-NN + set2set at equal width: ``ggnn+s2s``,
  ``ggnn+s2s+towers8``), all GG-NN rows at width 32 (towers of 4; master node of 32), 4,000 training
  / 1,000 validation / 1,000 test molecules, 100 s of training per run, 3 epochs, 3 seeds. The
  report adds the paper's error ratios beside ours (± std). 18 runs of 100 s plus evaluation and
  featurization: about 40 minutes on an idle 2-core CPU (sized from throughput probes on a
  shared machine; the towers row is the slowest).
* ``gpu``: the whole split (110,831 / 10,000 / 10,000), 30 minutes of training per run, 10
  epochs, 6 time evaluations, 3 seeds, every model and reference at its default width, on CUDA
  with 4 DataLoader workers (collation in the main process would starve the GPU).
  A run lasts max(30 min, 10 epochs): about 10-12 hours for 7-8 models x 3 seeds.

    python recipes/benchmark.py                                   # quick, CPU, ~18 min
    python recipes/benchmark.py --preset section2 --out runs/section2   # Gilmer's Section 2, CPU, ~70 min
    python recipes/benchmark.py --preset gpu                      # GPU, full split
    python recipes/benchmark.py --preset gilmer --threads 2       # Tables 7-8 ablation, CPU, ~40 min
    python recipes/benchmark.py --models mpnn,my_pkg.models:MyNet --seeds 5

writes ``benchmark_<target>.md`` / ``.json`` / ``.png`` and one ``runs/<model>/seed<k>/log.csv``
per run (fit's history, with each evaluation point's budget, time and molecules) under ``--out``
(default ``runs/benchmark``, which must be empty or absent), and nothing elsewhere except the
dataset cache under ``--data-root``. The report records the load average before and after and
the CPU that other processes used while it ran, and starts with a warning when the machine was
shared: timings, and so the equal-time column, are only meaningful on an idle machine.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gnnkit.bench.benchmark import GILMER_ROWS, MODELS, PAPER_RATIOS, PRESETS, model_config, run, run_folder
from gnnkit.cli.options import build_parser, check_config, comma_list, config_from, option, parse_given, run_command, shared, size_or_all
from gnnkit.data.qm9 import target_index
from gnnkit.models.user_model import is_model_spec, load_model_spec
from gnnkit.models.pyg_reference import dimenet_missing

__all__ = ["Config", "GILMER_ROWS", "MODELS", "PAPER_RATIOS", "PRESETS", "command", "main", "model_config", "parse_args",
           "run_folder"]  # fmt: skip

EXAMPLES = """\
  gnnkit benchmark                                     # quick, CPU, ~18 min
  gnnkit benchmark --preset section2 --out runs/section2
  gnnkit benchmark --preset gilmer --threads 2         # Tables 7-8 ablation, CPU, ~40 min
  gnnkit benchmark --models mpnn,my_pkg.models:MyNet --seeds 5
"""


@dataclass
class Config:
    """The options of ``gnnkit benchmark`` (each written once: default, help, check)."""

    preset: str = option("quick", "quick (CPU, minutes: the defaults shown), section2 (CPU, hours: every model, 5 epochs "
                         "of 2,000 molecules), gilmer (Tables 7-8) or gpu", choices=tuple(PRESETS))  # fmt: skip
    target: str = option("U0", "QM9 target, e.g. U0, gap, mu", group="data")
    models: tuple[str, ...] = option(PRESETS["quick"]["models"], "comma-separated registry names or module:Class specs",
                                     parse=comma_list, metavar="A,B,...", group="models")  # fmt: skip
    widths: str = option("quick", "model widths: quick (about half) or default", choices=("quick", "default"), group="models")
    seeds: int = option(3, "runs per model (seeds 0..K-1)", group="budgets")
    budget_seconds: float = option(45.0, "equal-time budget: training wall-clock per run", group="budgets")
    epochs: int = option(3, "equal-epochs budget: passes over the training slice", group="budgets")
    time_evals: int = option(3, "validation points within the time budget", group="budgets")
    train_size: int | None = option(500, "first N molecules of the training split, or all", parse=size_or_all, group="data")
    eval_size: int | None = option(300, "first M molecules of the validation and test splits, or all", parse=size_or_all,
                                   group="data")  # fmt: skip
    data_root: str | None = option(None, "QM9 folder with the processed cache (default: qm9/ under $GNNKIT_DATA, else the "
                                   "checkout's datasets/, else ~/.cache/gnnkit)", group="data")  # fmt: skip
    batch_size: int = option(32, "molecules per batch", group="training")
    lr: float = option(1e-3, "Adam learning rate", group="training")
    schedule: str = option("constant", "constant, or plateau (halves the rate when validation stalls; its steps then "
                           "depend on both budgets' evaluation points)", choices=("constant", "plateau"), group="training")  # fmt: skip
    grad_clip: float | None = shared("grad_clip", 5.0)
    device: str = option("auto", "cpu, cuda, cuda:1 or auto", group="run")
    threads: int | None = option(None, "torch intra-op threads (default: torch's)", group="run")
    loader_workers: int = option(0, "DataLoader worker processes", group="run")
    out: str = option("runs/benchmark", "output folder (must be empty or absent)", group="run", metavar="DIR")
    command: str = field(default="", repr=False, metadata={"cli": False})
    not_run: dict[str, str] = field(default_factory=dict, metadata={"cli": False})

    def __post_init__(self) -> None:
        """Checks every value; a user's ``module:Class`` model is imported only once every other value is good."""
        check_config(self)
        self.models = tuple(self.models)
        target_index(self.target)
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {self.preset!r}")
        if not self.models or len(set(self.models)) != len(self.models):
            raise ValueError(f"models must be a non-empty list without repeats, got {list(self.models)}")
        if self.seeds < 1 or self.epochs < 1 or self.time_evals < 1 or self.batch_size < 1:
            raise ValueError("seeds, epochs, time_evals and batch_size must be >= 1")
        if not self.budget_seconds > 0:
            raise ValueError(f"budget_seconds must be > 0, got {self.budget_seconds}")
        if any(n is not None and n < 1 for n in (self.train_size, self.eval_size)):
            raise ValueError("train_size and eval_size must be >= 1 (or None for the whole split)")
        if self.widths not in ("quick", "default") or self.schedule not in ("constant", "plateau"):
            raise ValueError(f"widths must be quick/default and schedule constant/plateau, got {self.widths!r}, {self.schedule!r}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        # Last: a user's module:Class spec is imported (its code runs) only once every other value is good.
        for name in self.models:
            if is_model_spec(name):
                load_model_spec(name)  # a bad spec fails here, before any data is prepared
            elif name not in MODELS:
                raise ValueError(f"unknown model {name!r}: use one of {sorted(MODELS)} or a 'module:Class' spec")
            elif name == "dimenet++" and dimenet_missing():
                raise ValueError(f"dimenet++ cannot run here: {dimenet_missing()}")


def _resolve(values: dict[str, Any], given: set[str]) -> dict[str, Any]:
    """Where the preset's models are used, a reference that cannot run here (dimenet++ without
    pyg-lib) is dropped, and the report says why (``not_run``)."""
    not_run = {}
    if "models" not in given:
        reason = dimenet_missing()
        preset = values.get("preset", Config.preset)
        if reason:
            values["models"] = tuple(m for m in values.get("models", Config.models) if m != "dimenet++")
            not_run["dimenet++"] = reason
        elif "dimenet++" not in values.get("models", Config.models):
            not_run["dimenet++"] = f"not in the {preset} preset; add it with --models"
    return {**values, "not_run": not_run}


def parse_args(argv: Sequence[str] | None = None, prog: str | None = None, script: str = "recipes/benchmark.py") -> Config:
    """The command line -> a checked :class:`Config`: the preset's values under the options given
    (a bad value is a usage error, exit status 2, before any data is read or a user's model imported)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(Config, __doc__.split("\n\n")[0], EXAMPLES, prog)
    command = shlex.join([*(["python", script] if prog is None else prog.split()), *argv])
    return config_from(Config, parse_given(parser, argv), parser, PRESETS,
                       lambda values, given: {**_resolve(values, given), "command": command})  # fmt: skip


def main(config: Config) -> dict[str, Any]:
    """Trains every model of ``config`` with every seed and writes the report under ``config.out``."""
    return run(config)


def command(argv: Sequence[str] | None = None, prog: str = "gnnkit benchmark") -> int:
    """``gnnkit benchmark``: exit status 0, 2 for a usage error (the reason on stderr)."""
    try:
        return run_command(lambda a: parse_args(a, prog), main, argv, prog)
    except SystemExit as e:  # argparse's usage errors
        return e.code if isinstance(e.code, int) else 2


if __name__ == "__main__":
    sys.exit(command(sys.argv[1:]))
