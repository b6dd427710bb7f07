"""gnnkit.bench: measurement machinery shared by the benchmark recipes and the tests.

- :mod:`gnnkit.bench.probes`: peak memory, machine load, device and commit strings, warm-up,
  matmul GFLOP/s, profiles and compile probes.
- :mod:`gnnkit.bench.compare`: mean ± std over seeds and rankings by disjoint intervals.
- :mod:`gnnkit.bench.synthetic`: synthetic molecules (complete graphs, QM9-style edge features).
- :mod:`gnnkit.bench.node_classification`: the node-classification runner (``run(RunConfig)``,
  ``--all``, ``--collect``) behind ``recipes/node_classification.py``.
- :mod:`gnnkit.bench.time_report`: runs compared at equal training wall-clock (validation MAE
  against training seconds on one figure, one table) behind ``recipes/qm9_report.py``.

Import the submodule you need (``from gnnkit.bench.probes import MachineLoad``); nothing is
imported with the package.
"""
