"""gnnkit.cli: the command line, on top of every other layer.

- :mod:`gnnkit.cli.options`: a config dataclass turned into argparse options, written once.
"""
