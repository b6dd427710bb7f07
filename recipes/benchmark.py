"""Architecture benchmark on QM9: gnnkit's GNNs, PyG's reference models, a grid CNN, a SMILES RNN
and your own model, under the same protocol, with repeated seeds and two budgets (equal time and
equal epochs from one run per model and seed).

    python recipes/benchmark.py                                   # quick, CPU, ~18 min
    python recipes/benchmark.py --preset section2 --out runs/section2   # Gilmer's Section 2, CPU, ~70 min
    python recipes/benchmark.py --preset gpu                      # GPU, full split
    python recipes/benchmark.py --preset gilmer --threads 2       # Tables 7-8 ablation, CPU, ~40 min
    python recipes/benchmark.py --models mpnn,my_pkg.models:MyNet --seeds 5

The same command as ``gnnkit benchmark``. What it does, top to bottom:

1. ``parse_args`` (:mod:`gnnkit.cli.benchmark`): the options of its ``Config``, with the
   ``--preset`` dict (:data:`gnnkit.bench.benchmark.PRESETS`) layered over the defaults; every
   value is checked, and a user's ``module:Class`` model imported, before any data is read.
2. ``run`` (:func:`gnnkit.bench.benchmark.run`): the QM9 slices and the target normaliser, then,
   seed-major, one :func:`gnnkit.train.fit` per (model, seed) over
   :class:`gnnkit.train.budget.BudgetChunks` (both budgets' evaluation points in one run).
3. The report: mean ± std over seeds per budget, rankings by disjoint intervals
   (:mod:`gnnkit.bench.compare`), ``benchmark_<target>.md`` / ``.json`` / ``.png`` and
   ``runs/<model>/seed<k>/log.csv`` under ``--out``.

The protocol, the models and what each preset sizes: :mod:`gnnkit.cli.benchmark` (or
``python recipes/benchmark.py --help``).
"""

import sys

from gnnkit.cli.benchmark import GILMER_ROWS, PAPER_RATIOS, Config, main, model_config, parse_args, run_folder  # noqa: F401  (the recipe's API)

if __name__ == "__main__":
    main(parse_args(sys.argv[1:]))
