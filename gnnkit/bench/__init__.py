"""Benchmark machinery shared by the recipes and the tests: synthetic inputs, measurement probes,
seed statistics, and the runners behind ``recipes/benchmark.py`` and
``recipes/node_classification.py``."""
