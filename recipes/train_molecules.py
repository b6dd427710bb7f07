"""Train a graph network on your own molecules: a CSV of SMILES and measured properties. The same
command as ``gnnkit train csv``.

    python recipes/train_molecules.py --data my.csv --smiles-column smiles --targets logS --out runs/logs
    python recipes/train_molecules.py --data my.csv --targets y1,y2 --split scaffold --model ggnn --out runs/y
    python recipes/train_molecules.py --data my.csv --targets y --splits-file splits.json --out runs/y
    python recipes/train_molecules.py --data my.csv --targets energy --xyz-column geometry --out runs/e  # 3D
    python recipes/train_molecules.py --data my.csv --targets energy --embed --out runs/e3d  # 3D from SMILES
    python recipes/predict.py --checkpoint runs/logs --smiles CCO --out preds.csv

What the run does, top to bottom (:func:`gnnkit.cli.molecules.main`):

1. ``parse_args``: the options of :class:`gnnkit.cli.molecules.Config` (each field: default,
   help, check); the CSV's columns, an explicit split (``--split-column``/``--splits-file``) and
   ``--out`` are checked before any molecule is read.
2. ``load_table``: every row featurized with RDKit; unusable rows skipped and listed with their
   row numbers in ``OUT/skipped_rows.csv``.
3. ``split_table``: the explicit split, else seeded fractions (``--split random|scaffold``).
4. Targets standardised on the training molecules, the registry model, :func:`gnnkit.train.fit`
   (or ``--time-budget`` seconds of training), then the test molecules through the saved
   ``best_model.pt``: ``OUT/result.json`` and ``OUT/test_predictions.csv``.

See ``gnnkit train csv --help`` (or ``python recipes/train_molecules.py --help``) for every option.
"""

import sys

from gnnkit.cli.molecules import Config, command, main, parse_args  # noqa: F401  (the recipe's API)

if __name__ == "__main__":
    sys.exit(command(sys.argv[1:], prog="train_molecules.py"))
