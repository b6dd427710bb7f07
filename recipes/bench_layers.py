"""Benchmark: gnnkit's EdgeNetworkConv and MPNN against PyG's NNConv and the model of PyG's
examples/qm9_nn_conv.py, forward + backward, on QM9-sized batches of complete graphs.

Data: synthetic molecules (sizes drawn uniformly from ``min_atoms..max_atoms``, mean 18 atoms
like QM9 with hydrogens; random 3-D positions); complete graphs without self-loops; edge features
``(distance, bond one-hot of 4)`` with a random bond on a fraction of the pairs; 11 atom features.

Measured, for each variant, in the same process and interleaved:

* **time**: median wall-clock time of ``repeats`` forward + backward passes (after ``warmup``;
  on a GPU, timed with CUDA events).
* **peak tensor memory**: the peak of live tensor bytes allocated during one forward + backward:
  on CPU from ``torch.profiler``'s memory events (``profile_memory=True``: every allocation and
  free of the CPU allocator, summed in time order), on a GPU from the CUDA caching allocator's
  peak statistic. Inputs and parameters exist beforehand and are not counted; gradients of
  parameters are.
* **GFLOP/s and % of peak**: gnnkit's work from its cost model (:meth:`gnnkit.nn.EdgeNetworkConv.flops`,
  :meth:`gnnkit.models.MPNN.flops`: the products, a multiply-add counting 2), PyG's counted by
  ``torch.utils.flop_counter`` on one pass (its products), each divided by the time; the peak is
  the best ``torch.mm`` float32 rate measured in the same run with the same threads
  (:func:`gnnkit.bench.probes.matmul_gflops`) on 2048 x 2048 x 2048 and on the shapes of the
  MPNN's node-level product (forward, and both gradients) at this batch.
* **profile** (optional, ``--profile``): ``torch.profiler`` on one training step (forward,
  backward, Adam step) of the MPNN on this batch and on a batch of 32 molecules (the quick QM9
  job's batch size): self time by kind of op, the share in calls under 1 ms (dispatch overhead),
  and the GFLOP/s of each product shape (:func:`gnnkit.bench.probes.profile_summary`).
* **where the rest goes** (optional, ``--ceiling``, CPU): each product of the MPNN's fused
  edge-network kernel timed alone on this batch's shapes (:mod:`gnnkit.bench.ceiling`): their sum
  bounds the step's time from below and its share of the peak from above.
* **block size** (optional, ``--block-sizes 2,4,8,16``, CPU): the MPNN's forward + backward with
  each block size of the fused kernel, interleaved.
* **RSS delta** (optional, ``--rss``, Linux): each variant once in a fresh subprocess; the peak
  resident set size (``VmHWM``, reset through ``/proc/self/clear_refs`` just before) during one
  forward + backward minus the resident size before it (includes allocator caching).

The layer comparison uses the same weights in both layers and checks that their outputs agree.
The baseline model is our own transcription of PyG's example
(:class:`gnnkit.models.pyg_reference.PygQM9NNConv`: NNConv(mean) inside a GRU loop, 3 steps sharing
one conv, Set2Set(3), d=64); its NNConv recomputes the E x d x d edge matrices in
every step, while gnnkit's MPNN computes the edge MLP's hidden activation once.

Usage::

    python recipes/bench_layers.py --out recipes/results/bench_layers_cpu.md
    python recipes/bench_layers.py --threads 2 --profile --out recipes/results/bench_layers_cpu.md
    python recipes/bench_layers.py --quick        # smoke test, seconds
    python recipes/bench_layers.py --device cuda --json layers.json   # on a GPU
"""

from __future__ import annotations

import argparse

from gnnkit.bench.bench_layers import Config, run


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (smoke test)")
    p.add_argument("--out", help="also write the markdown table to this file")
    p.add_argument("--threads", type=int, help="torch.set_num_threads")
    p.add_argument("--repeats", type=int)
    p.add_argument("--molecules", type=int)
    p.add_argument("--rss", action="store_true", help="also measure ru_maxrss deltas in subprocesses")
    p.add_argument("--profile", action="store_true",
                   help="also profile one MPNN training step (this batch and 32 molecules) with torch.profiler")
    p.add_argument("--ceiling", action="store_true",
                   help="also time each product of the MPNN's fused kernel alone (CPU): the step's best share of the peak")
    p.add_argument("--block-sizes", metavar="MB,MB,...",
                   help="also time the MPNN with each block size of the fused kernel, interleaved (CPU), e.g. 2,4,8,16")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: CUDA if available)")
    p.add_argument("--json", help="also write the figures as JSON to this file")
    args = p.parse_args(argv)
    cfg = Config(out=args.out, threads=args.threads, rss=args.rss, quick=args.quick, device=args.device,
                 json_out=args.json, profile=args.profile, ceiling=args.ceiling)
    if args.block_sizes:
        try:
            cfg.block_sizes_mb = tuple(float(x) for x in args.block_sizes.split(","))
        except ValueError:
            p.error(f"--block-sizes {args.block_sizes!r}: give sizes in MB separated by commas, e.g. 2,4,8")
        if not cfg.block_sizes_mb or min(cfg.block_sizes_mb) <= 0:
            p.error(f"--block-sizes {args.block_sizes!r}: every size must be > 0 MB")
    try:
        cfg.resolved_device()
    except (ValueError, RuntimeError) as e:
        p.error(f"--device {args.device!r}: {e}")
    if cfg.rss and cfg.resolved_device().type != "cpu":
        p.error("--rss measures CPU resident memory: use it with --device cpu")
    if (cfg.ceiling or cfg.block_sizes_mb) and cfg.resolved_device().type != "cpu":
        p.error("--ceiling and --block-sizes time the fused CPU kernel: use them with --device cpu")
    if args.quick:
        cfg.molecules, cfg.min_atoms, cfg.max_atoms = 4, 3, 6
        cfg.channels, cfg.edge_hidden, cfg.repeats, cfg.warmup = 8, 8, 1, 0
    if args.repeats:
        cfg.repeats = args.repeats
    if args.molecules:
        cfg.molecules = args.molecules
    table = run(cfg)
    print(table, end="")
    if cfg.out:
        with open(cfg.out, "w") as f:
            f.write(table)
    return table


if __name__ == "__main__":
    main()
