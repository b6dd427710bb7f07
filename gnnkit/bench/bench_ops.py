"""The kernel benchmark behind ``recipes/bench_ops.py``: gnnkit's spmm and scatter against PyG's
default aggregation and ``torch.sparse``, forward + backward (what is timed and how: see the
recipe's docstring). Entry point: :func:`run` with a :class:`BenchConfig`.
"""


from __future__ import annotations

import json
import os
import pathlib
import shutil
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor
from torch_geometric.utils import scatter as pyg_scatter

from gnnkit.data.paths import data_root
from gnnkit.ops import CSR, scatter, spmm
from gnnkit.bench.probes import MachineLoad, cpu_model
from gnnkit.bench.synthetic import complete_edges

# Peak HBM bandwidth in GB/s by device name (vendor datasheets).
PEAK_GBPS = {"H200": 4800.0, "H100 SXM": 3350.0, "H100 PCIe": 2000.0, "H100": 3350.0, "A100": 2039.0}


@dataclass
class BenchConfig:
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    feats: tuple[int, ...] = (16, 64, 256)
    reduces: tuple[str, ...] = ("sum", "mean", "max")
    graphs: tuple[str, ...] = ("powerlaw", "cora", "qm9")
    powerlaw_nodes: int | None = None  # default: 1M on GPU, 100k on CPU
    powerlaw_edges: int | None = None  # default: 10 per node
    qm9_molecules: int = 128
    qm9_atoms: int = 18
    data_root: str | None = None  # default: gnnkit.data.paths.data_root()
    repeats: int = 7
    warmup: int = 2
    min_seconds: float = 0.5  # keep repeating fast rows until each candidate ran this long
    clock: str = "auto"  # "wall", or "cpu" (process CPU time); auto: cpu on CPU, wall on GPU
    seed: int = 0
    out: str | None = None
    json_out: str | None = None  # also write the rows (and the device's measured copy bandwidth) as JSON
    command: str = field(default="", repr=False)


def quick_config(cfg: BenchConfig) -> BenchConfig:
    """Tiny sizes for a smoke test: every code path in seconds."""
    cfg.feats, cfg.powerlaw_nodes, cfg.powerlaw_edges = (16,), 2000, 10000
    cfg.qm9_molecules, cfg.repeats, cfg.warmup, cfg.min_seconds = 8, 2, 1, 0.0
    return cfg


def powerlaw_graph(num_nodes: int, num_edges: int, generator: torch.Generator) -> Tensor:
    """Chung-Lu style random multigraph: endpoints drawn with probability ``~ rank^-0.5`` (degree
    distribution with a power-law tail of exponent 3, as in preferential attachment), node ids
    shuffled so that hubs are spread over memory."""
    weights = torch.arange(1, num_nodes + 1, dtype=torch.float64).pow(-0.5)
    ends = torch.multinomial(weights, 2 * num_edges, replacement=True, generator=generator)
    relabel = torch.randperm(num_nodes, generator=generator)
    return relabel[ends].view(2, num_edges)


def qm9_batch(num_molecules: int, atoms: int) -> tuple[Tensor, int]:
    """``num_molecules`` disjoint complete graphs of ``atoms`` nodes (no self-loops)."""
    local = complete_edges(atoms)
    offsets = torch.arange(num_molecules).repeat_interleave(local.size(1)) * atoms
    return local.repeat(1, num_molecules) + offsets, num_molecules * atoms


def cora(root: str | None) -> tuple[Tensor, int]:
    from torch_geometric.datasets import Planetoid

    raw = data_root(root) / "planetoid" / "Cora" / "raw"
    if not raw.is_dir():
        raise FileNotFoundError(f"Cora raw files not found under {raw}; pass --data-root or set GNNKIT_DATA")
    with tempfile.TemporaryDirectory() as tmp:  # PyG writes processed/ beside raw/
        shutil.copytree(raw, pathlib.Path(tmp) / "Cora" / "raw")
        data = Planetoid(tmp, "Cora")[0]
    return data.edge_index, data.num_nodes


def load_graphs(cfg: BenchConfig) -> dict[str, tuple[Tensor, int]]:
    gen = torch.Generator().manual_seed(cfg.seed)
    on_gpu = cfg.device.startswith("cuda")
    graphs: dict[str, tuple[Tensor, int]] = {}
    for name in cfg.graphs:
        if name == "powerlaw":
            n = cfg.powerlaw_nodes or (1_000_000 if on_gpu else 100_000)
            graphs[f"powerlaw {n // 1000}k"] = (powerlaw_graph(n, cfg.powerlaw_edges or 10 * n, gen), n)
        elif name == "cora":
            graphs["Cora"] = cora(cfg.data_root)
        elif name == "qm9":
            graphs[f"QM9 batch {cfg.qm9_molecules}x{cfg.qm9_atoms}"] = qm9_batch(cfg.qm9_molecules, cfg.qm9_atoms)
        else:
            raise ValueError(f"unknown graph {name!r}; choose from powerlaw, cora, qm9")
    return graphs


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def clock_fn(cfg: BenchConfig) -> Callable[[], float]:
    """``time.process_time`` measures only this process's CPU time, so on a shared CPU the other
    jobs' load does not enter the figures (with one thread it equals the wall time of an idle
    machine; with more it is the summed work). GPU timings use CUDA events (see :func:`median_times`)."""
    use_cpu = cfg.clock == "cpu" or (cfg.clock == "auto" and not cfg.device.startswith("cuda"))
    return time.process_time if use_cpu else time.perf_counter


def median_times(fns: dict[str, Callable[[], None]], cfg: BenchConfig) -> dict[str, float]:
    """Median time in ms of each ``fn``. The candidates run interleaved, one call of each per
    round in a rotating order, so that a change in machine load hits all of them alike; rounds continue past
    ``repeats`` until every candidate has run ``min_seconds`` in total (at most 200 rounds)."""
    clock, on_gpu = clock_fn(cfg), cfg.device.startswith("cuda") and cfg.clock != "cpu"
    for _ in range(cfg.warmup):
        for fn in fns.values():
            fn()
    sync(cfg.device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    rounds = 0
    while True:
        # Rotate the order every round: a candidate that runs right after one which freed large
        # buffers finds warm heap pages (no page faults), so a fixed order would favour some.
        for name in names[rounds % len(names) :] + names[: rounds % len(names)]:
            if on_gpu:  # CUDA events: the device time, without the host's launch and sync latency
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fns[name]()
                end.record()
                end.synchronize()
                times[name].append(start.elapsed_time(end))
                continue
            t0 = clock()
            fns[name]()
            sync(cfg.device)
            times[name].append((clock() - t0) * 1e3)
        rounds += 1
        if rounds >= 200 or (rounds >= cfg.repeats and min(sum(t) for t in times.values()) >= 1e3 * cfg.min_seconds):
            break
    return {name: statistics.median(t) for name, t in times.items()}


def fwd_bwd(forward: Callable[[Tensor], Tensor], x: Tensor, grad: Tensor) -> Callable[[], None]:
    def run() -> None:
        x.grad = None
        forward(x).backward(grad)

    return run


def spmm_bytes(num_edges: int, num_nodes: int, feats: int, elem: int) -> float:
    """Bytes moved by the spmm forward in the model of the kernel's docstring: per edge an 8 B
    column index and one gathered row (``elem * F``), per target row 16 B of offsets and the
    written row. Every gathered row counts as a read, so this is an effective bandwidth."""
    return num_edges * (8 + elem * feats) + num_nodes * (16 + elem * feats)


def sparse_mm(adj: Tensor, x: Tensor, reduce: str) -> Tensor:
    return torch.sparse.mm(adj, x) if reduce == "sum" else torch.sparse.mm(adj, x, reduce)


def sparse_supports(reduce: str, device: str) -> bool:
    return reduce == "sum" or not device.startswith("cuda")  # the reduce argument is CPU-only


def bench_graph(name: str, edge_index: Tensor, num_nodes: int, cfg: BenchConfig) -> list[dict]:
    dev = cfg.device
    edge_index = edge_index.to(dev)
    src, dst = edge_index
    csr = CSR.from_edge_index(edge_index, num_nodes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        adj = torch.sparse_csr_tensor(
            csr.rowptr, csr.col, torch.ones(csr.num_edges, device=dev), size=(num_nodes, num_nodes)
        )
    rows = []
    for feats in cfg.feats:
        x = torch.randn(num_nodes, feats, device=dev, requires_grad=True)
        grad = torch.randn(num_nodes, feats, device=dev)
        for reduce in cfg.reduces:
            row = {"graph": name, "N": num_nodes, "E": csr.num_edges, "F": feats, "reduce": reduce}
            fns = {
                "spmm": fwd_bwd(lambda x: spmm(csr, x, reduce=reduce), x, grad),
                "scatter": fwd_bwd(lambda x: scatter(x.index_select(0, src), dst, num_nodes, reduce), x, grad),
                "pyg": fwd_bwd(lambda x: pyg_scatter(x.index_select(0, src), dst, 0, num_nodes, reduce), x, grad),
            }
            if sparse_supports(reduce, dev):
                fns["sparse"] = fwd_bwd(lambda x: sparse_mm(adj, x, reduce), x, grad)
            row.update({"sparse": None, **median_times(fns, cfg)})
            if dev.startswith("cuda"):
                with torch.no_grad():
                    fwd = median_times(
                        {
                            "spmm_fwd": lambda: spmm(csr, x, reduce=reduce),
                            "pyg_fwd": lambda: pyg_scatter(x.index_select(0, src), dst, 0, num_nodes, reduce),
                        },
                        cfg,
                    )
                row.update(fwd)
                row["gbps"] = spmm_bytes(csr.num_edges, num_nodes, feats, 4) / row["spmm_fwd"] / 1e6
            rows.append(row)
            print(format_row(row, dev), flush=True)
    return rows


def device_line(device: str) -> str:
    if device.startswith("cuda"):
        return f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}"
    return f"device: CPU {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def copy_gbps(device: str, gigabytes: float = 2.0, repeats: int = 20) -> float:
    """Measured device-to-device copy bandwidth in GB/s (bytes read + written, median of
    ``repeats`` copies of ``gigabytes`` GB timed with CUDA events): the practical ceiling the
    spmm bandwidth is compared with, beside the datasheet peak."""
    n = int(gigabytes * 1e9 / 4)
    src = torch.randn(n, device=device)  # random data: a copy of zeros could be cheaper
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    del src, dst
    torch.cuda.empty_cache()
    return 2 * n * 4 / statistics.median(times) / 1e6


def peak_gbps() -> float | None:
    name = torch.cuda.get_device_name()
    for key, value in PEAK_GBPS.items():  # ordered: the most specific name first
        if key in name:
            return value
    return None


def header(device: str) -> str:
    cols = "| graph | N | E | F | reduce | spmm ms | scatter ms | PyG ms | torch.sparse ms | spmm/PyG | scatter/PyG |"
    sep = "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"
    if device.startswith("cuda"):
        cols += " spmm fwd ms | PyG fwd ms | spmm fwd GB/s | % of peak |"
        sep += "---:|---:|---:|---:|"
    return cols + "\n" + sep


def format_row(row: dict, device: str) -> str:
    sparse = f"{row['sparse']:.3f}" if row["sparse"] is not None else "n/a"
    text = (
        f"| {row['graph']} | {row['N']} | {row['E']} | {row['F']} | {row['reduce']} | {row['spmm']:.3f} | "
        f"{row['scatter']:.3f} | {row['pyg']:.3f} | {sparse} | {row['spmm'] / row['pyg']:.2f} | "
        f"{row['scatter'] / row['pyg']:.2f} |"
    )
    if device.startswith("cuda"):
        peak = peak_gbps()
        frac = f"{100 * row['gbps'] / peak:.0f}%" if peak else "n/a"
        text += f" {row['spmm_fwd']:.3f} | {row['pyg_fwd']:.3f} | {row['gbps']:.0f} | {frac} |"
    return text


def clock_name(cfg: BenchConfig) -> str:
    if clock_fn(cfg) is time.process_time:
        return "CPU time of the benchmark process, time.process_time"
    return "CUDA events" if cfg.device.startswith("cuda") else "wall clock"


def run(cfg: BenchConfig) -> list[dict]:
    """Times every graph, width and reduction of ``cfg``, prints the table (and writes it to
    ``cfg.out``, the rows to ``cfg.json_out``); returns the rows."""
    torch.manual_seed(cfg.seed)
    lines = [
        "# gnnkit ops benchmark",
        "",
        f"command: `{cfg.command or 'python recipes/bench_ops.py'}`",
        "",
        device_line(cfg.device),
        "",
        f"Times are medians of forward+backward in ms ({clock_name(cfg)}); ratios are gnnkit / PyG "
        "(< 1: gnnkit faster).",
        "",
        header(cfg.device),
    ]
    print("\n".join(lines), flush=True)
    load = MachineLoad(own_threads=torch.get_num_threads())
    load.sample()
    rows = []
    for name, (edge_index, num_nodes) in load_graphs(cfg).items():
        rows += bench_graph(name, edge_index, num_nodes, cfg)
    load.sample()
    machine = load.summary()  # other processes' CPU time from /proc/stat (the load average counts this one)
    copy = copy_gbps(cfg.device) if cfg.device.startswith("cuda") else None
    spmm_ratios = [r["spmm"] / r["pyg"] for r in rows]
    scatter_ratios = [r["scatter"] / r["pyg"] for r in rows]
    summary = (
        f"\nmax spmm/PyG = {max(spmm_ratios):.2f}, max scatter/PyG = {max(scatter_ratios):.2f}, "
        f"geometric mean spmm/PyG = {statistics.geometric_mean(spmm_ratios):.2f} over {len(rows)} rows\n\n"
        f"Load: {machine['verdict']}; 1-minute load average {machine['load_average']['start']} at the start, "
        f"{machine['load_average']['end']} at the end on {machine['cpu_count']} cores (this benchmark's own "
        "threads included)"
    )
    if copy is not None:
        peak = peak_gbps()
        summary += (f"\n\nmeasured device-to-device copy: {copy:.0f} GB/s"
                    + (f" ({100 * copy / peak:.0f}% of the {peak:.0f} GB/s datasheet peak)" if peak else ""))
    print(summary, flush=True)
    if cfg.json_out:
        payload = {"command": cfg.command, "device": device_line(cfg.device), "clock": clock_name(cfg),
                   "peak_gbps": peak_gbps() if cfg.device.startswith("cuda") else None, "copy_gbps": copy,
                   "load": machine, "rows": rows}  # fmt: skip
        pathlib.Path(cfg.json_out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(cfg.json_out).write_text(json.dumps(payload, indent=1) + "\n")
    if cfg.out:
        out = pathlib.Path(cfg.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(lines + [format_row(r, cfg.device) for r in rows]) + "\n" + summary + "\n")
    return rows
