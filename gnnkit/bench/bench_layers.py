"""The layer benchmark behind ``recipes/bench_layers.py``: gnnkit's EdgeNetworkConv and MPNN against
PyG's NNConv and the model of PyG's examples/qm9_nn_conv.py, forward + backward, on a batch of
synthetic molecules (what is measured and how: see the recipe's docstring). Entry point:
:func:`run` with a :class:`Config`; ``python -m gnnkit.bench.bench_layers VARIANT CONFIG_JSON``
is the ``--rss`` child process.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torch_geometric.data import Batch
from torch_geometric.nn import NNConv

from gnnkit.bench.ceiling import ceiling_lines
from gnnkit.bench.probes import MachineLoad, matmul_gflops, peak_tensor_bytes, profile_summary
from gnnkit.bench.synthetic import synthetic_batch
from gnnkit.models import build_model
from gnnkit.models.pyg_reference import PygQM9NNConv
from gnnkit.nn import EdgeNetworkConv, Graph
from gnnkit.ops import _torch_kernels

ATOM_FEATURES, EDGE_DIM = 11, 5


@dataclass
class Config:
    molecules: int = 128
    min_atoms: int = 10
    max_atoms: int = 26
    channels: int = 64
    edge_hidden: int = 128
    steps: int = 3
    set2set_steps: int = 3
    repeats: int = 5
    warmup: int = 1
    threads: int | None = None
    seed: int = 0
    rss: bool = False
    profile: bool = False
    ceiling: bool = False
    block_sizes_mb: tuple[float, ...] = ()
    out: str | None = None
    json_out: str | None = None
    quick: bool = False
    device: str = "auto"  # "cpu", "cuda" or "auto" (CUDA if available)

    def resolved_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dev = torch.device(self.device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r} requested but CUDA is not available")
        return dev


def make_batch(cfg: Config) -> Batch:
    """The benchmark's batch: ``cfg.molecules`` synthetic molecules (:func:`gnnkit.bench.synthetic.synthetic_batch`)."""
    return synthetic_batch(cfg.molecules, cfg.min_atoms, cfg.max_atoms, cfg.seed, atom_features=ATOM_FEATURES)


def _layers(cfg: Config) -> tuple[nn.Module, nn.Module]:
    d, k = cfg.channels, cfg.edge_hidden
    ours = EdgeNetworkConv(d, d, edge_dim=EDGE_DIM, hidden=k, aggr="mean", root_weight=True)
    pyg = NNConv(d, d, nn.Sequential(nn.Linear(EDGE_DIM, k), nn.ReLU(), nn.Linear(k, d * d)), aggr="mean")
    with torch.no_grad():
        pyg.nn[0].load_state_dict(ours.edge_mlp[0].state_dict())
        pyg.nn[2].load_state_dict(ours.edge_out.state_dict())
        pyg.lin.weight.copy_(ours.root.weight)
        pyg.bias.copy_(ours.bias)
    return ours, pyg


def _models(cfg: Config) -> tuple[nn.Module, nn.Module]:
    ours = build_model(
        "mpnn", ATOM_FEATURES, 1, edge_dim=EDGE_DIM, channels=cfg.channels, steps=cfg.steps,
        set2set_steps=cfg.set2set_steps, edge_hidden=cfg.edge_hidden, aggr="mean",
    )
    pyg = PygQM9NNConv(ATOM_FEATURES, 1, edge_dim=EDGE_DIM, channels=cfg.channels, edge_hidden=cfg.edge_hidden,
                       steps=cfg.steps, set2set_steps=cfg.set2set_steps)
    return ours, pyg


def _steps(cfg: Config, batch: Batch, modules: dict[str, nn.Module] | None = None) -> dict[str, Callable[[], None]]:
    """One forward + backward closure per variant (on ``batch``'s device); ``modules``, if given,
    receives each variant's module."""
    torch.manual_seed(cfg.seed)
    dev = batch.edge_index.device
    x = torch.randn(batch.num_nodes, cfg.channels).to(dev).requires_grad_()
    layer_ours, layer_pyg = (m.to(dev) for m in _layers(cfg))
    model_ours, model_pyg = (m.to(dev) for m in _models(cfg))
    if modules is not None:
        modules.update({"layer/gnnkit": layer_ours, "layer/pyg": layer_pyg, "model/gnnkit": model_ours,
                        "model/pyg": model_pyg})  # fmt: skip
    target = torch.randn(batch.num_graphs, 1).to(dev)
    ei, ea = batch.edge_index, batch.edge_attr
    return {
        "layer/gnnkit": lambda: layer_ours(x, ei, ea).square().mean().backward(),
        "layer/pyg": lambda: layer_pyg(x, ei, ea).square().mean().backward(),
        "model/gnnkit": lambda: F.mse_loss(model_ours(batch), target).backward(),
        "model/pyg": lambda: F.mse_loss(model_pyg(batch), target).backward(),
    }


def work_gflop(name: str, module: nn.Module, step: Callable[[], None], batch: Batch) -> tuple[float, str]:
    """GFLOP of one forward + backward of a variant, and where the figure comes from: gnnkit's
    cost model, or (PyG) the products ``torch.utils.flop_counter`` counts in one pass."""
    n, e, g = batch.num_nodes, batch.edge_index.size(1), batch.num_graphs
    if name == "layer/gnnkit":
        return module.flops(n, e, backward=True) / 1e9, "cost model"
    if name == "model/gnnkit":
        return module.flops(n, e, g, backward=True) / 1e9, "cost model"
    with FlopCounterMode(display=False) as counter:
        step()
    module.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 1e9, "counted"


def peak_shapes(cfg: Config, num_nodes: int) -> dict[str, tuple[int, int, int]]:
    """``torch.mm`` shapes ``(m, k, n)`` for the peak: a large square product and the MPNN's
    node-level product on this batch (``[N, K d] @ [K d, d]`` forward; ``[N, d] @ [d, K d]`` and
    ``[d, N] @ [N, K d]`` for the gradients of ``S`` and of the weight)."""
    kd, d = cfg.edge_hidden * cfg.channels, cfg.channels
    square = 256 if cfg.quick else 2048
    return {
        f"{square} x {square} x {square}": (square, square, square),
        f"node product [N, Kd] x [Kd, d] = [{num_nodes}, {kd}] x [{kd}, {d}]": (num_nodes, kd, d),
        f"grad S [N, d] x [d, Kd] = [{num_nodes}, {d}] x [{d}, {kd}]": (num_nodes, d, kd),
        f"grad W [d, N] x [N, Kd] = [{d}, {num_nodes}] x [{num_nodes}, {kd}]": (d, num_nodes, kd),
    }


def training_step(cfg: Config, batch: Batch) -> Callable[[], None]:
    """One MPNN training step (forward, MSE, backward, Adam step) on ``batch``, as in
    :func:`gnnkit.train.fit`: the Graph is prepared outside the forward."""
    torch.manual_seed(cfg.seed)
    model = _models(cfg)[0].to(batch.edge_index.device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    target = torch.randn(batch.num_graphs, 1).to(batch.edge_index.device)

    def step() -> None:
        graph = model.prepare(batch)
        loss = F.mse_loss(model(graph), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def profile_lines(cfg: Config, device: torch.device, peak: float) -> list[str]:
    """The ``--profile`` section: one training step of the MPNN on the benchmark batch and on a
    batch of 32 molecules (the quick QM9 job's batch size), each after two unprofiled steps."""
    lines = ["", "## Profile: one MPNN training step (forward, backward, Adam step)", "",
             "Self time of every op call under `torch.profiler` (its own overhead included), by kind; "
             "products' GFLOP/s from their input shapes, against the peak above."]  # fmt: skip
    for label, molecules in (("benchmark batch", cfg.molecules), ("quick QM9 job's batch size", 32)):
        sub = replace(cfg, molecules=molecules)
        batch = make_batch(sub).to(device)
        step = training_step(sub, batch)
        for _ in range(2):
            step()
        summary = profile_summary(step)
        lines += ["", f"### {molecules} molecules ({label}): {batch.num_nodes} atoms, {batch.edge_index.size(1)} edges", ""]
        lines += summary.table(peak)
    return lines


def block_size_times(cfg: Config, batch: Batch) -> dict[float, tuple[int, list[float]]]:
    """The MPNN's forward + backward (ms) with each of ``cfg.block_sizes_mb`` as the fused kernel's
    block size, interleaved (``max(repeats, 10)`` runs each, after a warm-up): ``{MB: (rows, times)}``."""
    step = _steps(cfg, batch)["model/gnnkit"]
    before = _torch_kernels._OUTER_BLOCK_BYTES
    times: dict[float, tuple[int, list[float]]] = {}
    try:
        for mb in cfg.block_sizes_mb:
            _torch_kernels._OUTER_BLOCK_BYTES = int(mb * 2**20)
            step()
            times[mb] = (_torch_kernels._block_rows(cfg.edge_hidden, cfg.channels, 4), [])
        for _ in range(max(cfg.repeats, 10)):
            for mb in cfg.block_sizes_mb:
                _torch_kernels._OUTER_BLOCK_BYTES = int(mb * 2**20)
                times[mb][1].append(_time_once(step, batch.edge_index.device) * 1e3)
    finally:
        _torch_kernels._OUTER_BLOCK_BYTES = before
    return times


def _vm_hwm_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def _rss_child(cfg: Config, variant: str) -> None:
    batch = make_batch(cfg)
    step = _steps(cfg, batch)[variant]
    # ru_maxrss would include the parent's RSS at fork time; reset the high-water mark instead.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _vm_hwm_kb()
    step()
    print(json.dumps({"rss_delta_kb": _vm_hwm_kb() - before}))


def _rss_delta_mb(cfg: Config, variant: str) -> float:
    child_cfg = json.dumps({k: v for k, v in asdict(cfg).items()
                            if k not in ("out", "rss", "json_out", "profile", "ceiling", "block_sizes_mb")})  # fmt: skip
    cmd = [sys.executable, "-m", "gnnkit.bench.bench_layers", variant, child_cfg]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])["rss_delta_kb"] / 1024


def check_agreement(cfg: Config, batch: Batch) -> float:
    dev = batch.edge_index.device
    ours, pyg = (m.to(dev) for m in _layers(cfg))
    x = torch.randn(batch.num_nodes, cfg.channels).to(dev)
    with torch.no_grad():
        return float((ours(x, batch.edge_index, batch.edge_attr) - pyg(x, batch.edge_index, batch.edge_attr)).abs().max())


def _time_once(fn: Callable[[], None], device: torch.device) -> float:
    """Seconds of one call: CUDA events on a GPU (device time), else the wall clock."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _device_line(device: torch.device, cfg: Config) -> str:
    if device.type == "cuda":
        return f"Device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}."
    return (f"Device: CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores), "
            f"torch {torch.__version__}, {torch.get_num_threads()} torch thread(s).")  # fmt: skip


def run(cfg: Config) -> str:
    """Measures every variant (see the recipe's docstring) and returns the markdown report (the
    figures also go to ``cfg.json_out``)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = cfg.resolved_device()
    if cfg.rss and device.type != "cpu":
        raise ValueError("--rss measures CPU resident memory: use it with --device cpu")
    load = MachineLoad(own_threads=cfg.threads or torch.get_num_threads())
    load.sample()
    batch = make_batch(cfg).to(device)
    modules: dict[str, nn.Module] = {}
    steps = _steps(cfg, batch, modules)
    max_diff = check_agreement(cfg, batch)
    gflop = {name: work_gflop(name, modules[name], fn, batch) for name, fn in steps.items()}
    shapes = peak_shapes(cfg, batch.num_nodes)
    mm_rates = {label: matmul_gflops(*mnk, repeats=max(cfg.repeats, 3), device=device) for label, mnk in shapes.items()}
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(cfg.warmup):
        for fn in steps.values():
            fn()
    for _ in range(cfg.repeats):  # interleaved, so load changes hit all variants alike
        for name, fn in steps.items():
            times[name].append(_time_once(fn, device))
    for label, mnk in shapes.items():  # again after the variants: the best of both, against drifting load
        mm_rates[label] = max(mm_rates[label], matmul_gflops(*mnk, repeats=max(cfg.repeats, 3), device=device))
    peak = max(mm_rates.values())
    peaks = {name: peak_tensor_bytes(fn, device) / 2**20 for name, fn in steps.items()}
    rss = {name: _rss_delta_mb(cfg, name) for name in steps} if cfg.rss else {}
    load.sample()
    summary = load.summary()  # other processes' CPU time from /proc/stat, not the load average (which counts this one)

    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    e = batch.edge_index.size(1)
    lines = [
        "# bench_layers: EdgeNetworkConv / MPNN vs PyG NNConv / qm9_nn_conv.py model (forward + backward)",
        "",
        f"Command: `python recipes/bench_layers.py {' '.join(sys.argv[1:])}`".rstrip(),
        _device_line(device, cfg),
        f"Load: {summary['verdict']}; 1-minute load average {summary['load_average']['start']} at the start, "
        f"{summary['load_average']['end']} at the end (this benchmark's own threads included).",
        "",
        f"Batch: {cfg.molecules} synthetic molecules (random positions), {batch.num_nodes} atoms, "
        f"complete graphs: {e} directed edges, edge_attr (distance, bond one-hot 4). d={cfg.channels}, "
        f"edge MLP hidden {cfg.edge_hidden}, mean aggregation; model: {cfg.steps} steps, Set2Set({cfg.set2set_steps}).",
        f"Layers agree: max |gnnkit - pyg| = {max_diff:.2e}. Time: median of {cfg.repeats} runs (interleaved). "
        + ("Peak tensor memory: the CUDA allocator's peak during one fwd+bwd." if device.type == "cuda" else
           "Peak tensor memory: torch.profiler allocation events during one fwd+bwd."),
        f"An E x d x d float32 tensor (what NNConv materialises per step) is {e * cfg.channels ** 2 * 4 / 2**20:.1f} MB.",
        "",
        f"Matrix-multiply peak of this run: **{peak:.1f} GFLOP/s** (float32 `torch.mm`, "
        f"{torch.get_num_threads()} thread(s), best of the shapes below, each measured before and after the variants).",
        "",
        "| torch.mm shape (m x k x n) | GFLOP/s | % of peak |",
        "|---|---:|---:|",
        *[f"| {label} | {rate:.1f} | {100 * rate / peak:.0f} % |" for label, rate in mm_rates.items()],
        "",
        "| benchmark | variant | fwd+bwd time (ms) | GFLOP (source) | GFLOP/s | % of peak | peak tensor memory (MB) |"
        + (" RSS delta (MB) |" if rss else ""),
        "|---|---|---:|---:|---:|---:|---:|" + ("---:|" if rss else ""),
    ]
    for name in steps:
        bench, variant = name.split("/")
        label = {"gnnkit": "gnnkit EdgeNetworkConv" if bench == "layer" else "gnnkit MPNN",
                 "pyg": "PyG NNConv" if bench == "layer" else "PyG qm9_nn_conv model"}[variant]
        work, source = gflop[name]
        rate = work / (med[name] / 1e3)
        row = (f"| {bench} | {label} | {med[name]:.1f} | {work:.3g} ({source}) | {rate:.1f} | {100 * rate / peak:.1f} % "
               f"| {peaks[name]:.1f} |")  # fmt: skip
        lines.append(row + (f" {rss[name]:.1f} |" if rss else ""))
    lines += ["", "| benchmark | speed-up (pyg time / gnnkit time) | memory ratio (pyg peak / gnnkit peak) |" + (" RSS ratio |" if rss else ""),
              "|---|---:|---:|" + ("---:|" if rss else "")]
    for bench in ("layer", "model"):
        row = (f"| {bench} | {med[bench + '/pyg'] / med[bench + '/gnnkit']:.2f}x | "
               f"{peaks[bench + '/pyg'] / peaks[bench + '/gnnkit']:.2f}x |")
        if rss:
            row += f" {rss[bench + '/pyg'] / max(rss[bench + '/gnnkit'], 1e-3):.2f}x |"
        lines.append(row)
    if cfg.profile:
        lines += profile_lines(cfg, device, peak)
    bound: dict | None = None
    if cfg.ceiling and device.type == "cpu":
        section, bound = ceiling_lines(Graph.from_data(batch), cfg.edge_hidden, cfg.channels, cfg.steps,
                                       gflop["model/gnnkit"][0], peak, steps["model/gnnkit"], max(cfg.repeats, 3))  # fmt: skip
        lines += ["", "## Where the rest goes: the fused kernel's products timed alone", "",
                  "Each product of the MPNN's edge-network kernel (`gnnkit.ops.outer_linear`, forward and backward, "
                  f"{cfg.steps} steps) on this batch's shapes and blocks, one op at a time with nothing in between "
                  "(`gnnkit.bench.ceiling`), median of the repeats:", ""] + section  # fmt: skip
    block_times = block_size_times(cfg, batch) if cfg.block_sizes_mb and device.type == "cpu" else {}
    if block_times:
        lines += ["", "## Block size of the fused kernel", "",
                  f"The MPNN's forward + backward on this batch with each block size (`_OUTER_BLOCK_BYTES`), "
                  f"interleaved, {max(cfg.repeats, 10)} runs each:", "",
                  "| block (MB) | target rows per block | median (ms) | lower quartile (ms) | fastest (ms) |", "|---:|---:|---:|---:|---:|"]  # fmt: skip
        for mb, (rows, ts) in block_times.items():
            ts = sorted(ts)
            lines.append(f"| {mb:g} | {rows} | {statistics.median(ts):.1f} | {ts[len(ts) // 4]:.1f} | {ts[0]:.1f} |")
    if cfg.json_out:
        result = {
            "device": _device_line(device, cfg), "atoms": batch.num_nodes, "edges": e, "molecules": cfg.molecules,
            "max_abs_diff": max_diff, "times_ms": med, "peak_mb": peaks, "rss_mb": rss or None,
            "gflop": {k: v[0] for k, v in gflop.items()}, "gflop_source": {k: v[1] for k, v in gflop.items()},
            "gflops": {k: gflop[k][0] / (med[k] / 1e3) for k in med}, "matmul_gflops": mm_rates, "peak_gflops": peak,
            "percent_of_peak": {k: 100 * gflop[k][0] / (med[k] / 1e3) / peak for k in med},
            "speedup": {b: med[b + "/pyg"] / med[b + "/gnnkit"] for b in ("layer", "model")},
            "memory_ratio": {b: peaks[b + "/pyg"] / peaks[b + "/gnnkit"] for b in ("layer", "model")},
            "ceiling": bound, "block_sizes_ms": {f"{mb:g}": ts for mb, (_, ts) in block_times.items()} or None,
        }  # fmt: skip
        with open(cfg.json_out, "w") as f:
            json.dump(result, f, indent=1)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # the --rss child: one variant's step in a fresh process
    variant, config_json = sys.argv[1:3]
    child = Config(**json.loads(config_json))
    if child.threads:
        torch.set_num_threads(child.threads)
    _rss_child(child, variant)
