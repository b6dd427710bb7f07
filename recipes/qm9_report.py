"""Equal-wall-clock comparison of QM9 runs: validation MAE against training time on one figure and a
table (test MAE and x chemical accuracy, epochs reached, molecules/s, parameters, peak memory,
command, commit, machine and load), from the run folders ``recipes/qm9.py`` wrote
(:mod:`gnnkit.bench.time_report`).

    python recipes/qm9.py --preset full --out runs/full_mpnn
    python recipes/qm9.py --preset full-pyg --out runs/full_pyg
    python recipes/qm9_report.py runs/full_mpnn runs/full_pyg --out recipes/results/qm9_full_cpu

Writes ``OUT.md``, ``OUT.json`` and ``OUT.png`` (``OUT`` is a path without a suffix).
"""

from __future__ import annotations

import argparse
import sys

from gnnkit.bench.time_report import write_time_comparison


def main(argv: list[str] | None = None) -> list[str]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folders (each with result.json and log.csv); the folder names label them")
    p.add_argument("--out", required=True, help="path of the report without suffix, e.g. recipes/results/qm9_full_cpu")
    p.add_argument("--title", default="QM9 U0 on the full training set at equal training wall-clock (CPU)")
    a = p.parse_args(argv)
    try:
        paths = write_time_comparison(a.runs, a.out, a.title)
    except (ValueError, FileNotFoundError) as e:
        p.error(str(e))
    for path in paths:
        print(path)
    return [str(x) for x in paths]


if __name__ == "__main__":
    main(sys.argv[1:])
