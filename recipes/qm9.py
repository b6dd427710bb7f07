"""Train a graph network on QM9 targets (Gilmer et al. 2017, "Neural Message Passing for
Quantum Chemistry"). The same command as ``gnnkit train qm9``.

    python recipes/qm9.py                                  # quick run: MPNN on U0, ~5 min on 2 CPU cores
    python recipes/qm9.py --model ggnn --target gap --edges bonds
    python recipes/qm9.py --target all --out runs/qm9_all  # one model per target + the 13-target table
    python recipes/qm9.py --preset gilmer --target all --device cuda --out runs/gilmer   # the paper's setup
    python recipes/qm9.py --train-size all --epochs 300 --device cuda --amp
    torchrun --nproc_per_node=4 recipes/qm9.py --train-size all --device cuda
    python recipes/qm9.py --preset full --out runs/full_mpnn      # 60 min of training on the whole split
    python recipes/qm9.py --preset full-pyg --out runs/full_pyg   # PyG's qm9_nn_conv example, the same
    python recipes/qm9_report.py runs/full_mpnn runs/full_pyg --out recipes/results/qm9_full_cpu

What the run does, top to bottom (:func:`gnnkit.cli.qm9.main`):

1. ``parse_args``: the options of :class:`gnnkit.cli.qm9.Config` (each field: default, help,
   check) with the ``--preset`` dict layered over the defaults; every value is checked and a
   non-empty ``--out`` refused (unless ``--resume``/``--overwrite``) before any data is read.
2. ``load_data``: the committed QM9 split (``gnnkit/data/qm9_split.npz``), the first
   ``--train-size``/``--eval-size`` molecules of each part, featurized once into a cache.
3. ``train_target`` per target: normaliser fitted on the training molecules, loaders, the
   registry model, :func:`gnnkit.train.fit` (checkpoints every epoch, exact ``--resume``), and
   ``OUT/result.json`` with the test MAE over chemical accuracy beside Gilmer's enn-s2s.
4. ``--target all``: ``OUT/table.md`` / ``OUT/table.json``, the 13-target table.

See ``gnnkit train qm9 --help`` (or ``python recipes/qm9.py --help``) for every option and
:mod:`gnnkit.cli.qm9` for the presets: what ``--preset gilmer`` fixes, and ``full`` / ``full-pyg``,
the equal-wall-clock comparison (``--time-budget``, ``--epoch-size``) that ``recipes/qm9_report.py``
turns into one figure and one table.
"""

import sys

from gnnkit.cli.qm9 import PRESETS, Config, command, main, parse_args  # noqa: F401  (the recipe's API)

if __name__ == "__main__":
    sys.exit(command(sys.argv[1:], prog="qm9.py"))
