"""gnnkit.bench: measurement machinery shared by the benchmark recipes and the tests.

- :mod:`gnnkit.bench.probes`: peak memory, machine load, device and commit strings, warm-up,
  matmul GFLOP/s, profiles and compile probes.
- :mod:`gnnkit.bench.compare`: mean ± std over seeds and rankings by disjoint intervals.

Import the submodule you need (``from gnnkit.bench.probes import MachineLoad``); nothing is
imported with the package.
"""
