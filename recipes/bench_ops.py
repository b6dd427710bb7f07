"""Benchmark: gnnkit scatter/spmm forward+backward against PyG's default aggregation path.

    python recipes/bench_ops.py --out recipes/results/bench_ops_cpu.md      # CPU: ~10 min
    python recipes/bench_ops.py --quick                                       # smoke run, seconds
    python recipes/bench_ops.py --device cuda --graphs powerlaw --json ops.json   # GPU: GB/s, % of peak

For every graph, feature width F and reduction it times, in the same run and on the same inputs:

* ``spmm``: :func:`gnnkit.ops.spmm` over a prebuilt CSR (gather and reduce in one pass);
* ``scatter``: :func:`gnnkit.ops.scatter` on the gathered messages ``x[src]``;
* ``PyG``: PyG's default aggregation, ``torch_geometric.utils.scatter(x[src], dst, ...)``, with
  ``x[src]`` as ``x.index_select(0, src)`` (what PyG's ``MessagePassing`` does, and the same
  gather as the ``scatter`` row);
* ``torch.sparse``: ``torch.sparse.mm`` with a CSR adjacency (sum; mean/max where the device
  supports the reduce argument).

Each time is the median over at least ``repeats`` interleaved runs of ``forward + backward``
(after ``warmup`` runs), measured on CPU as this process's CPU time (so that other jobs on a
shared machine do not distort it; ``--clock wall`` for wall time) and on GPU with CUDA events;
the CSR and the sparse matrix are built once outside the timed region, as a model would build
them once per batch. Ratios are gnnkit / PyG (below 1 means gnnkit is faster). On a GPU the table
also gives the spmm forward time, the effective bandwidth of the bytes-per-edge model
(:func:`spmm_bytes`) and its fraction of the device's datasheet HBM bandwidth, and the run ends
with the device-to-device copy bandwidth measured on the same GPU (:func:`copy_gbps`).

Graphs: a power-law random graph (1M nodes / 10M edges on GPU, 100k / 1M on CPU), Cora (read with
PyG's ``Planetoid`` from a temporary copy of ``<data root>/planetoid/Cora/raw``; the data root is
``--data-root``, else ``$GNNKIT_DATA``, else the checkout's ``datasets/``) and a QM9-sized batch
(128 molecules of 18 atoms, complete graphs).
"""

from __future__ import annotations

import argparse
import sys

import torch

from gnnkit.bench.bench_ops import BenchConfig, powerlaw_graph, qm9_batch, quick_config, run

__all__ = ["BenchConfig", "main", "parse_args", "powerlaw_graph", "qm9_batch"]


def parse_args(argv: list[str] | None = None) -> BenchConfig:
    defaults = BenchConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=defaults.device)
    p.add_argument("--feats", type=int, nargs="+", default=list(defaults.feats))
    p.add_argument("--reduces", nargs="+", default=list(defaults.reduces), choices=["sum", "mean", "max"])
    p.add_argument("--graphs", nargs="+", default=list(defaults.graphs), choices=["powerlaw", "cora", "qm9"])
    p.add_argument("--powerlaw-nodes", type=int, default=None)
    p.add_argument("--powerlaw-edges", type=int, default=None)
    p.add_argument("--data-root", default=defaults.data_root,
                   help="data root holding planetoid/Cora/raw (default: $GNNKIT_DATA, else the checkout's datasets/)")
    p.add_argument("--repeats", type=int, default=defaults.repeats)
    p.add_argument("--warmup", type=int, default=defaults.warmup)
    p.add_argument("--min-seconds", type=float, default=defaults.min_seconds)
    p.add_argument("--clock", default=defaults.clock, choices=["auto", "wall", "cpu"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test in seconds")
    p.add_argument("--out", default=None, help="also write the markdown table to this file")
    p.add_argument("--json", default=None, help="also write the rows as JSON to this file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = BenchConfig(
        device=args.device,
        feats=tuple(args.feats),
        reduces=tuple(args.reduces),
        graphs=tuple(args.graphs),
        powerlaw_nodes=args.powerlaw_nodes,
        powerlaw_edges=args.powerlaw_edges,
        data_root=args.data_root,
        repeats=args.repeats,
        warmup=args.warmup,
        min_seconds=args.min_seconds,
        clock=args.clock,
        out=args.out,
        json_out=args.json,
        command="python recipes/bench_ops.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    )
    return quick_config(cfg) if args.quick else cfg


def main(cfg: BenchConfig) -> list[dict]:
    """Runs the benchmark ``cfg`` describes; returns its rows."""
    return run(cfg)


if __name__ == "__main__":
    main(parse_args())
