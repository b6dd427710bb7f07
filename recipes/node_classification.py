"""Node classification: GCN, TDGNN-s/-w and NHGCN on the Planetoid / Geom-GCN benchmarks.

    python recipes/node_classification.py --model tdgnn-w --dataset texas --splits geom-gcn
    python recipes/node_classification.py --all            # every model on every dataset

    python recipes/node_classification.py --all --out runs/nc-all          # every model on every dataset
    python recipes/node_classification.py --collect runs/nc-all --write-table recipes/results/node_classification_all.md

Runs every split of the protocol with the per-dataset hyperparameters of
gnnkit/bench/node_classification.json (taken from the papers' reference scripts), prints
``mean ± std`` of the test accuracy next to the paper's number and, with ``--out DIR``, writes
``DIR/result.json``. ``std`` is the population standard deviation over the splits (what TDGNN's
``main.py`` prints). Run ``i`` of a protocol uses split ``i`` and ``torch.manual_seed(i)``; the
public split is run 10 times with seeds 0..9.

A run writes only under its ``--out``: ``--all`` writes ``OUT/<model>-<dataset>-<splits>/result.json``,
``OUT/all.json`` (how the table was made) and ``OUT/node_classification_all.md``. Updating a
committed table is a separate act: ``--collect DIR --write-table PATH``. A non-empty ``--out`` is
refused unless ``--resume`` (reuse the finished rows there; refused for a row written with other
settings) or ``--overwrite``. Every argument is checked before any data is loaded.

The same command as ``gnnkit node``: the options and their checks are :mod:`gnnkit.cli.node`'s,
the runner (per-model protocols, the TDGNN operator cache, ``--all``'s scheduler and process pool,
``--resume``, ``--collect``) is :mod:`gnnkit.bench.node_classification`.
"""

import sys

from gnnkit.cli.node import CONFIG, RunConfig, main, run  # noqa: F401  (the recipe's API)

if __name__ == "__main__":
    main(sys.argv[1:])
