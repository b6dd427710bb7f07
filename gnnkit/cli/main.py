"""The ``gnnkit`` command: one entry point, a subcommand per task.

    gnnkit train qm9 [options]      train on QM9 targets (Gilmer et al. 2017)
    gnnkit train csv [options]      train on your own CSV of SMILES and properties
    gnnkit predict [options]        predict new molecules with a trained run
    gnnkit node [options]           node classification (Cora, CiteSeer, WebKB, ...)
    gnnkit benchmark [options]      the architecture benchmark on QM9

``gnnkit COMMAND --help`` lists the command's options by group with their defaults. Each
subcommand is the same code as its recipe (``recipes/qm9.py`` = ``gnnkit train qm9``, ...): the
options are a config dataclass in :mod:`gnnkit.cli` and the recipe imports it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence


def _version() -> str:
    # gnnkit is imported (this module's parent package) and sits above every layer: read it, not import it
    return sys.modules["gnnkit"].__version__

# (words, module, one line): the module has ``command(argv, prog) -> int``; imported only when run,
# so that ``gnnkit --help`` and one command do not pay for the others' imports.
COMMANDS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("train", "qm9"), "gnnkit.cli.qm9", "train on QM9 targets (Gilmer et al. 2017); one model per target"),
    (("train", "csv"), "gnnkit.cli.molecules", "train on your own CSV of SMILES and measured properties"),
    (("predict",), "gnnkit.cli.predict", "predict new molecules (SMILES, XYZ, SDF) with a trained run"),
    (("node",), "gnnkit.cli.node", "node classification: GCN, TDGNN, NHGCN on Cora, CiteSeer, WebKB, ..."),
    (("benchmark",), "gnnkit.cli.benchmark", "the architecture benchmark on QM9 (equal time and equal epochs)"),
)
EXAMPLES = """\
examples:
  gnnkit train qm9 --out runs/qm9                       # quick run: MPNN on U0, minutes on a CPU
  gnnkit train csv --data my.csv --targets logS --out runs/logs
  gnnkit predict --checkpoint runs/qm9 --smiles CCO c1ccccc1 --out preds.csv
  gnnkit node --model gcn --dataset cora --splits public
  gnnkit benchmark --out runs/benchmark
"""


def usage() -> str:
    """The top-level help: the commands, one line each, and examples."""
    width = max(len(" ".join(words)) for words, _, _ in COMMANDS)
    lines = [f"usage: gnnkit COMMAND [options]   (gnnkit {_version()})", "",
             "Graph neural networks for PyTorch: train, predict and benchmark from the command line.", "",
             "commands:"]  # fmt: skip
    lines += [f"  gnnkit {' '.join(words):<{width}}  {text}" for words, _, text in COMMANDS]
    lines += ["", "Run gnnkit COMMAND --help for a command's options (grouped, with their defaults).", "", EXAMPLES]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``gnnkit ARGV``; returns the exit status (0 ok, 1 the run failed, 2 usage error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(f"gnnkit {_version()}")
        return 0
    for words, module, _ in COMMANDS:
        if tuple(argv[: len(words)]) == words:
            return importlib.import_module(module).command(argv[len(words) :], prog="gnnkit " + " ".join(words))
    group = [(w, text) for w, _, text in COMMANDS if w[0] == argv[0] and len(w) > 1]
    if group:  # "gnnkit train" alone, with --help, or with an unknown kind of data
        kinds = ", ".join(w[1] for w, _ in group)
        listing = "\n".join(f"  gnnkit {' '.join(w)}  {text}" for w, text in group)
        text = f"usage: gnnkit {argv[0]} {{{kinds}}} [options]\n\n{listing}\n"
        if argv[1:2] in (["-h"], ["--help"]):
            print(text)
            return 0
        given = f"unknown kind {argv[1]!r}" if len(argv) > 1 else "missing what to train on"
        print(f"{text}gnnkit {argv[0]}: error: {given}: choose {kinds} (e.g. gnnkit {argv[0]} {group[0][0][1]} --help)",
              file=sys.stderr)  # fmt: skip
        return 2
    known = ", ".join(dict.fromkeys(w[0] for w, _, _ in COMMANDS))
    print(f"usage: gnnkit COMMAND [options]\ngnnkit: error: unknown command {argv[0]!r} (choose from {known}; "
          "gnnkit --help)", file=sys.stderr)  # fmt: skip
    return 2


if __name__ == "__main__":
    sys.exit(main())
