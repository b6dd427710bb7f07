"""gnnkit.cli: the ``gnnkit`` command, on top of every other layer.

- :mod:`gnnkit.cli.main`: ``gnnkit COMMAND ...`` (the console script; also ``python -m gnnkit``).
- :mod:`gnnkit.cli.options`: a config dataclass turned into grouped argparse options, written once.
- one module per command, each a ``Config`` + ``main`` + ``command(argv, prog)``, which its recipe
  imports: :mod:`~gnnkit.cli.qm9` (``train qm9``), :mod:`~gnnkit.cli.molecules` (``train csv``),
  :mod:`~gnnkit.cli.predict`, :mod:`~gnnkit.cli.node`, :mod:`~gnnkit.cli.benchmark`;
  :mod:`~gnnkit.cli.csv_models` measures train csv's candidate models at equal time.
"""
