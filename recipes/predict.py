"""Predict with a trained model on new molecules: SMILES, XYZ or SDF in, one CSV row per molecule
out. The same command as ``gnnkit predict``.

    python recipes/predict.py --checkpoint runs/qm9 --smiles CCO c1ccccc1 --out preds.csv
    python recipes/predict.py --checkpoint runs/qm9/best_model.pt --xyz mols.xyz --sdf more.sdf --out preds.csv
    python recipes/predict.py --checkpoint runs/mine --smiles-file candidates.smi --out preds.csv

What it does, top to bottom (:func:`gnnkit.cli.predict.main`):

1. ``parse_args``: the options of :class:`gnnkit.cli.predict.Config`; inputs kept in
   command-line order, every file and ``--out`` checked before the checkpoint is read.
2. :func:`gnnkit.predict.load_predictor`: the model rebuilt from the card in ``best_model.pt``
   (loaded with ``weights_only=True``), with its targets, units, normaliser and featurizer.
3. ``gather``: the molecules, embedded in 3D from SMILES if the model reads distances.
4. ``Predictor.predict``: one row per input (a per-row error instead of a crash), written
   atomically to ``--out``.

See ``gnnkit predict --help`` (or ``python recipes/predict.py --help``) for every option.
"""

import sys

from gnnkit.cli.predict import Config, command, main, parse_args  # noqa: F401  (the recipe's API)

if __name__ == "__main__":
    sys.exit(command(sys.argv[1:], prog="predict.py"))
