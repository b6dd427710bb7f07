"""``python -m gnnkit``: the ``gnnkit`` command (see :mod:`gnnkit.cli.main`)."""

import sys

from gnnkit.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
