"""Architecture benchmark on QM9: gnnkit's GNNs, PyG's reference models, a grid CNN, a SMILES RNN
and your own model, under the same protocol, with repeated seeds and two budgets.

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
* PyG references (:mod:`gnnkit.models.reference`): ``pyg-nnconv`` (PyG's
  examples/qm9_nn_conv.py: NNConv + GRU + Set2Set), ``schnet`` (PyG's SchNet, on atomic numbers
  and positions), ``dimenet++`` (PyG's DimeNet++; needs pyg-lib's ``radius`` op and
  torch_sparse, which have no wheels for torch 2.13 on PyPI: where they are missing the ``gpu``
  preset lists it as not run, and asking for it is an error).
* Your model, as ``package.module:Class`` or ``path/to/file.py:Class``
  (:mod:`gnnkit.models.external`): built as ``Class(in_channels, out_channels, edge_dim=None)``
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
  2,000 molecules) and equal time = 300 s of training per run, with 5 time evaluations. 300 s is
  sized so that the slowest model, pyg-nnconv (~42 molecules per CPU-second at one thread, see
  ``quick``), also trains its 5 epochs (10,000 molecules, ~240 CPU-s) within the time budget; the
  others trained 150-800 molecules/s in a 320-molecule probe on a shared machine (dtnn the
  slowest of them). 36 runs of 300 s plus evaluation and featurization: about 3.3 hours on an
  idle 2-core CPU (an estimate).
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
    python recipes/benchmark.py --preset section2 --out runs/section2   # Gilmer's Section 2, CPU, ~3.3 h
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

import argparse
import shlex
import sys
from typing import Any

from gnnkit.bench.benchmark import GILMER_ROWS, MODELS, PAPER_RATIOS, PRESETS, Config, config_from_options, model_config, run, run_folder
from gnnkit.cli.options import add_options, given_options

__all__ = ["Config", "GILMER_ROWS", "MODELS", "PAPER_RATIOS", "PRESETS", "main", "model_config", "parse_args", "run_folder"]


def parse_args(argv: list[str] | None = None) -> Config:
    """The benchmark's :class:`Config` from the command line: a preset's values under the options given."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(p, Config)
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return config_from_options(given_options(p.parse_args(argv)), shlex.join(["python", "recipes/benchmark.py", *argv]))
    except ValueError as e:  # a usage error (exit 2), not a traceback
        p.error(str(e))


def main(config: Config) -> dict[str, Any]:
    """Trains every model of ``config`` with every seed and writes the report under ``config.out``."""
    return run(config)


if __name__ == "__main__":
    main(parse_args())
