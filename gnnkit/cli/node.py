"""``gnnkit node`` (and ``recipes/node_classification.py``): node classification: GCN, TDGNN-s/-w and NHGCN on the Planetoid / Geom-GCN benchmarks.

    gnnkit node --model tdgnn-w --dataset texas --splits geom-gcn
    python recipes/node_classification.py --model tdgnn-w --dataset texas --splits geom-gcn   # the same
    python recipes/node_classification.py --all            # every model on every dataset

    python recipes/node_classification.py --all --out runs/nc-all          # every model on every dataset
    python recipes/node_classification.py --collect runs/nc-all --write-table recipes/results/node_classification_all.md

Runs every split of the protocol with the per-dataset hyperparameters of
gnnkit/bench/node_classification.json (taken from the papers' reference scripts), prints
``mean ± std`` of the test accuracy next to the paper's number and, with ``--out DIR``, writes
``DIR/result.json``. ``std`` is the population standard deviation over the splits (what TDGNN's
``main.py`` prints). Run ``i`` of a protocol uses split ``i`` and ``torch.manual_seed(i)``; the
public split is run 10 times with seeds 0..9.

A run writes only under its ``--out``: ``--all`` writes ``OUT/<model>-<dataset>-<splits>/result.json``,
``OUT/all.json`` (how the table was made) and ``OUT/node_classification_all.md``. Updating a
committed table is a separate act: ``--collect DIR --write-table PATH``. A non-empty ``--out`` is
refused unless ``--resume`` (reuse the finished rows there; refused for a row written with other
settings) or ``--overwrite``. Every argument is checked before any data is loaded.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

from gnnkit.bench.node_classification import (
    ALL_RECORD,
    ALL_TABLE,
    CONFIG,
    MODELS,
    RunConfig,
    check_overrides,
    collect,
    plan_all,
    read_config,
    row_settings,
    run,
    run_all,
)
from gnnkit.cli.options import HelpFormatter, literal, positive_int
from gnnkit.data.node_classification import NODE_DATASETS, SPLITS
from gnnkit.train.outdir import check_out_dir, releases_out_dirs

__all__ = ["CONFIG", "RunConfig", "command", "main", "run"]


@releases_out_dirs
def main(argv: Sequence[str] | None = None, prog: str | None = None) -> list[dict[str, Any]]:
    """Runs the command line ``argv``; returns the result of each row run (a usage error exits with status 2)."""
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--model", choices=MODELS)
    p.add_argument("--dataset", choices=NODE_DATASETS)
    p.add_argument("--splits", choices=SPLITS)
    p.add_argument("--all", action="store_true", help="every model on every dataset (config 'all'); needs --out")
    p.add_argument("--data-root", default=None, help="data root with planetoid/, webkb/, wikipedia/, actor/ (default: "
                   "$GNNKIT_DATA, else the checkout's datasets/, else ~/.cache/gnnkit)")
    p.add_argument("--out", default=None, help="write DIR/result.json (with --all: DIR/<model>-<dataset>-<splits>/, "
                                              f"DIR/{ALL_RECORD} and DIR/{ALL_TABLE})")  # fmt: skip
    p.add_argument("--resume", action="store_true", help="reuse the finished results in a non-empty --out")
    p.add_argument("--overwrite", action="store_true", help="replace the results in a non-empty --out")
    p.add_argument("--num-splits", type=positive_int, default=None, help="run only the first n splits")
    p.add_argument("--epochs", type=positive_int, default=None, help="override the configured number of epochs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--config", default=str(CONFIG))
    p.add_argument("--collect", default=None, metavar="DIR", help="only tabulate DIR/*/result.json (prints the table)")
    p.add_argument("--write-table", default=None, metavar="PATH", help="with --collect: write the table to PATH "
                                                                     "(e.g. recipes/results/node_classification_all.md)")  # fmt: skip
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting (value parsed as JSON)")
    p.add_argument("--jobs", type=positive_int, default=1, help="with --all: rows run at once, each in its own process")
    p.add_argument("--threads", type=positive_int, default=1, help="with --all: torch threads per row")
    args = p.parse_args(argv)
    if args.collect:
        given = [f"--{k.replace('_', '-')}" for k in ("all", "out", "model", "dataset", "splits", "resume", "overwrite")
                 if getattr(args, k)]  # fmt: skip
        if given:
            p.error(f"--collect only tabulates; it does not take {', '.join(given)}")
        try:
            return collect(pathlib.Path(args.collect), args.write_table)
        except ValueError as e:
            p.error(str(e))
    if args.write_table:
        p.error("--write-table goes with --collect DIR: a run writes only under --out")
    hparams = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            p.error(f"--set expects KEY=VALUE, got {item!r}")
        hparams[key] = literal(value)  # JSON (levels=[1,2], lr=0.05), else the text itself
    common = dict(
        data_root=args.data_root, num_splits=args.num_splits, epochs=args.epochs, device=args.device,
        config_file=args.config, hparams=hparams,
    )
    try:
        if args.all:
            if args.out is None:
                p.error("--all needs --out DIR: its rows and table are written there")
            plan = plan_all(args.out, args.resume, args.overwrite, common)
        else:
            missing = [k for k in ("model", "dataset", "splits") if getattr(args, k) is None]
            if missing:
                p.error(f"give --all or all of --model/--dataset/--splits (missing: {', '.join(missing)})")
            cfg = RunConfig(args.model, args.dataset, args.splits, out=args.out, resume=args.resume,
                            overwrite=args.overwrite, **common)  # fmt: skip
            check_overrides(read_config(cfg.config_file), [cfg.model], hparams)
            row_settings(read_config(cfg.config_file), cfg)
            if cfg.out:
                check_out_dir(cfg.out, cfg.resume, cfg.overwrite)
    except (ValueError, FileExistsError) as e:
        p.error(str(e))
    if args.all:
        return run_all(plan, args.jobs, args.threads)
    return [run(cfg)]


def command(argv: Sequence[str] | None = None, prog: str = "gnnkit node") -> int:
    """``gnnkit node``: exit status 0, 2 for a usage error (also one found while reading the data)."""
    try:
        main(argv, prog)
    except SystemExit as e:  # argparse's usage errors
        return e.code if isinstance(e.code, int) else 2
    except (ValueError, FileNotFoundError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(command(sys.argv[1:]))
