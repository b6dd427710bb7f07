"""Node classification: GCN, TDGNN-s/-w and NHGCN on the Planetoid / Geom-GCN benchmarks.

    python recipes/node_classification.py --model tdgnn-w --dataset texas --splits geom-gcn
    python recipes/node_classification.py --all --out runs/nc-all          # every model on every dataset
    python recipes/node_classification.py --collect runs/nc-all --write-table recipes/results/node_classification_all.md

The same command as ``gnnkit node``. What it does, top to bottom:

1. ``main`` (:mod:`gnnkit.cli.node`): the options, every one checked (settings file, ``--set``
   names, ``--out`` and ``--resume``/``--overwrite``) before any data is loaded.
2. One row (:func:`gnnkit.bench.node_classification.run`): the row's settings from
   ``gnnkit/bench/node_classification.json`` (the papers' reference scripts) under ``--set``, the
   graph, what the model's protocol builds once per dataset (TDGNN's tree operator, cached on disk;
   NHGCN's homophily split), then every split of the protocol with seed ``i``; ``mean ± std`` of the
   test accuracy next to the paper's number, ``OUT/result.json``.
3. ``--all`` (:func:`~gnnkit.bench.node_classification.plan_all`, ``run_all``): every row of the
   settings file's ``all`` section, ``--jobs`` at a time in worker processes, longest first;
   ``--resume`` reuses finished rows written with the same settings; ``OUT/all.json`` and the table.
4. ``--collect DIR --write-table PATH``: the separate step that updates a committed table.

Every option: ``python recipes/node_classification.py --help`` (or :mod:`gnnkit.cli.node`).
"""

import sys

from gnnkit.cli.node import CONFIG, RunConfig, main, run  # noqa: F401  (the recipe's API)

if __name__ == "__main__":
    main(sys.argv[1:])
