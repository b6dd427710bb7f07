"""Runs a recipe as ``__main__`` and, at one chosen moment, announces it and waits to be killed.

    python pause_at.py POINT COUNT MARKER RECIPE [recipe args...]

The fault test SIGKILLs the real recipe process at a known moment: it starts this script, waits
for ``MARKER`` to appear and sends ``SIGKILL``. Nothing in the recipe is replaced; the patched
functions only wait before (or after) doing their normal work. ``POINT`` is one of:

* ``step``: before the ``COUNT``-th optimiser step of this process (mid-epoch);
* ``between_renames``: the ``COUNT``-th checkpoint save of this process has written and fsync-ed
  its temporary file, moved ``checkpoint.pt`` to ``checkpoint.prev.pt`` and not yet renamed the
  temporary to ``checkpoint.pt``;
* ``result``: ``result.json``'s temporary is written and not yet renamed.
"""

import os
import runpy
import sys
import time
from pathlib import Path

import torch

POINTS = ("step", "between_renames", "result")


def main() -> None:
    point, count, marker, recipe, *args = sys.argv[1:]
    if point not in POINTS:
        raise SystemExit(f"POINT must be one of {POINTS}, got {point!r}")
    count, seen = int(count), [0]

    def pause() -> None:
        seen[0] += 1
        if seen[0] == count:
            Path(marker).write_text(str(os.getpid()))
            time.sleep(600)  # killed here

    if point == "step":
        adam_step = torch.optim.Adam.step

        def step(self, *a, **kw):
            pause()
            return adam_step(self, *a, **kw)

        torch.optim.Adam.step = step
    else:
        replace = os.replace

        def patched(src, dst, *a, **kw):
            src, dst = Path(src), Path(dst)
            if point == "result" and dst.name == "result.json":
                pause()
            replace(src, dst, *a, **kw)
            if point == "between_renames" and src.name == "checkpoint.pt" and dst.name == "checkpoint.prev.pt":
                pause()

        os.replace = patched
    sys.argv = [recipe, *args]
    runpy.run_path(recipe, run_name="__main__")


if __name__ == "__main__":
    main()
