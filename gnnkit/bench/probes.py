"""Measurement probes for benchmarks: peak memory, machine load, device and commit strings.

A timing is only worth reporting if the machine was not busy with something else: on a shared
CPU a model trains at a fraction of its speed, and a comparison under an equal wall-clock budget
measures the load rather than the model. :class:`MachineLoad` records how much CPU *other*
processes used while a benchmark ran (from ``/proc/stat``, minus this process's own CPU time),
and the load average before and after, so a report can say when its timings are not those of an
idle machine.
"""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import resource
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from gnnkit.train.loop import flush_denormal


class PeakMemory:
    """Peak memory while the block runs: CUDA ``max_memory_allocated`` on a GPU; on CPU the peak
    resident set size above the level at entry, sampled every 10 ms from /proc (freed memory is
    returned to the OS first, so that a previous model's heap does not hide this one's).

    ``peak_mb`` is ``None`` where it cannot be measured (no /proc).

    Example::

        with PeakMemory(device) as mem:
            train()
        print(mem.peak_mb)
    """

    def __init__(self, device: torch.device | str) -> None:
        self.device, self.peak_mb = torch.device(device), None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._base = self._peak = 0

    @staticmethod
    def _rss() -> int | None:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            return None

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            rss = self._rss()
            if rss is not None:
                self._peak = max(self._peak, rss)

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass
        self._base = self._peak = self._rss() or 0
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        rss = self._rss()
        if rss is not None:
            self._peak = max(self._peak, rss)
            self.peak_mb = (self._peak - self._base) / 2**20


def peak_tensor_bytes(fn: Callable[[], None], device: torch.device | None = None) -> int:
    """Peak of live tensor memory allocated while ``fn`` runs: torch.profiler memory events on
    CPU (every allocation and free of the CPU allocator, summed in time order), the caching
    allocator's peak on a CUDA ``device``. Tensors that exist before ``fn`` runs are not counted."""
    from torch.profiler import ProfilerActivity, profile

    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


TINY = torch.finfo(torch.float32).tiny  # the smallest normal float32


# Ops whose output holds whatever the allocator's memory held: nothing written, so not counted
# (their garbage bits made the count vary from call to call: 0.07-1.6 % on one fresh model).
_UNINITIALIZED = frozenset({"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "empty_permuted",
                            "resize_", "resize_as_"})  # fmt: skip


class _CountSubnormals(TorchDispatchMode):
    """Counts the float32 values every op writes, and how many of them are subnormal (views and
    uninitialized allocations write nothing and are not counted)."""

    def __init__(self) -> None:
        super().__init__()
        self.values = self.subnormal = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 (torch's signature)
        out = func(*args, **(kwargs or {}))
        if getattr(func, "is_view", False) or func.overloadpacket.__name__ in _UNINITIALIZED:
            return out
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.layout == torch.strided and t.numel():
                a = t.detach().abs()
                self.values += t.numel()
                self.subnormal += int(((a > 0) & (a < TINY)).sum())
        return out


def subnormal_fraction(model: torch.nn.Module, batch: Any, goal: torch.Tensor) -> float:
    """Fraction of the float32 values written by the ops of one forward + backward on ``batch``
    (activations, gradients, every intermediate) that are subnormal (nonzero, below float32's
    smallest normal), with subnormals kept. Parameters and their ``.grad`` are left unchanged."""
    params = [p for p in model.parameters() if p.requires_grad]
    counter = _CountSubnormals()
    with flush_denormal(False), counter:
        loss = F.mse_loss(model(model.prepare(batch)), goal)
        torch.autograd.grad(loss, params)
    return counter.subnormal / max(counter.values, 1)


class SubnormalProbe(torch.nn.Module):
    """The MPNN, measuring :func:`subnormal_fraction` on a fixed batch at the first forward of each
    epoch (the loop switches to train mode at the start of every epoch)."""

    def __init__(self, model: torch.nn.Module, batch: Any, goal: torch.Tensor) -> None:
        super().__init__()
        self.model, self.batch, self.goal = model, batch, goal
        self.fractions: list[float] = []
        self.pending = False

    def train(self, mode: bool = True) -> SubnormalProbe:
        self.pending = self.pending or mode
        return super().train(mode)

    def prepare(self, batch: Any) -> Any:
        return self.model.prepare(batch)  # the loop builds each batch's Graph outside the forward

    def forward(self, batch: Any) -> torch.Tensor:
        if self.pending:
            self.pending = False
            self.fractions.append(subnormal_fraction(self.model, self.batch, self.goal))
        return self.model(batch)


def _busy_seconds() -> float | None:
    """CPU seconds all cores of the machine spent busy since boot (``/proc/stat``), or ``None``."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 8:
        return None
    user, nice, system, _idle, _iowait, irq, softirq = map(int, fields[1:8])
    steal = int(fields[8]) if len(fields) > 8 else 0
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (e.g. DataLoader workers)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


@dataclass
class LoadSample:
    """One reading: wall-clock time, load average (1, 5, 15 min), machine busy CPU seconds and
    this process's CPU seconds (``None`` where the platform does not say)."""

    wall: float
    load_average: list[float] | None
    busy_seconds: float | None
    own_seconds: float

    @classmethod
    def now(cls) -> LoadSample:
        return cls(time.perf_counter(), _load_average(), _busy_seconds(), _own_cpu_seconds())


@dataclass
class MachineLoad:
    """Whether other processes shared the machine during a benchmark.

    Call :meth:`sample` at the start, between runs and at the end (``samples`` collects them);
    :meth:`summary` compares the first and last. *Other cores* is the machine's busy CPU time
    (``/proc/stat``) minus this process's own (and its finished children's), per second of wall
    clock: about 0 on an idle machine, 1 when another process kept one core busy. The machine
    counts as shared when other cores exceed ``threshold``; without ``/proc/stat``, when the
    1-minute load average at the start exceeds ``threshold`` plus one, or at the end exceeds
    ``own_threads`` (this process's busy threads) by more than one.

    Args:
        threshold: other cores above which the machine counts as shared.
        own_threads: threads this process keeps busy (for the load-average fallback).
    """

    threshold: float = 0.25
    own_threads: int = 1
    samples: list[LoadSample] = field(default_factory=list)

    def sample(self) -> LoadSample:
        s = LoadSample.now()
        self.samples.append(s)
        return s

    def summary(self) -> dict[str, Any]:
        """``cpu_count``, ``load_average`` (``start``/``end``/``max`` of the 1-minute value and the
        ``start``/``end`` triples), ``other_cores`` (``None`` without /proc/stat), ``shared`` and a
        ``verdict`` sentence."""
        if len(self.samples) < 2:
            raise ValueError("MachineLoad.summary needs at least two samples (start and end)")
        first, last = self.samples[0], self.samples[-1]
        ones = [s.load_average[0] for s in self.samples if s.load_average is not None]
        wall = max(last.wall - first.wall, 1e-9)
        other = None
        if first.busy_seconds is not None and last.busy_seconds is not None:
            busy = last.busy_seconds - first.busy_seconds
            other = max(busy - (last.own_seconds - first.own_seconds), 0.0) / wall
        cores = os.cpu_count() or 1
        start = first.load_average[0] if first.load_average is not None else None
        end = last.load_average[0] if last.load_average is not None else None
        if other is not None:
            shared = other > self.threshold
            verdict = (f"other processes used {other:.2f} of the {cores} cores on average while the benchmark ran "
                       f"({'above' if shared else 'within'} the {self.threshold} allowed for an idle machine)")  # fmt: skip
        elif start is not None and end is not None:
            shared = start > self.threshold + 1 or end > self.own_threads + 1
            verdict = (f"1-minute load average {start} at the start and {end} at the end on {cores} cores, with "
                       f"{self.own_threads} busy thread(s) of the benchmark's own")  # fmt: skip
        else:
            shared, verdict = False, "the machine's load could not be read on this platform"
        return {
            "cpu_count": cores,
            "load_average": {"start": start, "end": end, "max": max(ones) if ones else None,
                             "start_1_5_15": first.load_average, "end_1_5_15": last.load_average},
            "other_cores": None if other is None else round(other, 3),
            "threshold": self.threshold,
            "shared": shared,
            "verdict": verdict,
        }  # fmt: skip



def warm_up(model: torch.nn.Module, batch: Any, device: torch.device | str) -> None:
    """One untimed forward and backward pass of ``model`` on ``batch``, so that one-time kernel,
    thread-pool and allocator setup is not charged to a timed budget. In eval mode and without an
    optimizer step, so weights and batch-norm statistics are left as they are; gradients are
    cleared after. Leaves the model on ``device``, in training mode."""
    model.to(device).eval()
    model(batch.to(device)).float().square().mean().backward()
    model.zero_grad(set_to_none=True)
    model.train()


def device_description(device: torch.device | str) -> str:
    """``"NVIDIA H100 80GB HBM3 (CUDA 12.4)"`` or ``"CPU <model name>, 2 threads"`` (torch's intra-op threads)."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    threads = torch.get_num_threads()
    return f"CPU {cpu_model()}, {threads} thread{'s' if threads != 1 else ''}"


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``platform`` where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def git_commit(path: str | os.PathLike) -> str | None:
    """Short commit hash of the git work tree holding ``path`` (with ``+dirty`` if it has
    uncommitted changes to tracked files), or ``None`` outside one."""
    cwd = Path(path).resolve()
    cwd = cwd if cwd.is_dir() else cwd.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if head.returncode != 0 or not head.stdout.strip():
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


__all__ = ["PeakMemory", "peak_tensor_bytes", "MachineLoad", "LoadSample", "warm_up", "device_description", "git_commit",
           "matmul_gflops", "profile_summary", "ProfileSummary", "subnormal_fraction", "SubnormalProbe"]


def graph_breaks(fn: Callable[..., Any], *args: Any) -> tuple[int, list[str]]:
    """How often ``torch.compile`` splits ``fn(*args)``: ``torch._dynamo.explain``'s graph-break
    count and the first line of each reason (dynamo's caches are reset before and after)."""
    torch._dynamo.reset()
    try:
        explained = torch._dynamo.explain(fn)(*args)
    finally:
        torch._dynamo.reset()
    return explained.graph_break_count, [str(r.reason).splitlines()[0] for r in explained.break_reasons]


def compile_seconds(fn: Callable[..., Any], inputs: list[tuple], backend: str = "eager") -> float:
    """Wall-clock seconds of the first call of ``torch.compile(fn, backend=backend)`` on each input
    tuple (inputs of different shapes, so recompiles count), summed: the cost compiling adds."""
    torch._dynamo.reset()
    compiled = torch.compile(fn, backend=backend)
    total = 0.0
    try:
        for args in inputs:
            t0 = time.perf_counter()
            compiled(*args)
            total += time.perf_counter() - t0
    finally:
        torch._dynamo.reset()
    return total


def matmul_gflops(m: int, k: int, n: int, repeats: int = 5, device: torch.device | str = "cpu") -> float:
    """Achieved float32 GFLOP/s of ``torch.mm`` on ``[m, k] @ [k, n]`` (``2 m k n`` flops), the
    best of ``repeats`` timed calls after one warm-up, with torch's current thread count: the
    matrix-multiply peak a benchmark reports its own GFLOP/s against, measured in the same run."""
    device = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=gen).to(device)
    b = torch.randn(k, n, generator=gen).to(device)
    out = torch.empty(m, n, device=device)
    best = float("inf")
    for i in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:  # the first call is the warm-up
            best = min(best, time.perf_counter() - t0)
    return 2 * m * k * n / best / 1e9


# aten op -> what it is, for profile_summary's breakdown (anything else: "other").
_OP_KINDS: dict[str, tuple[str, ...]] = {
    "dense products (mm, addmm)": ("aten::mm", "aten::addmm", "aten::matmul", "aten::linear"),
    "batched products (bmm: outer-product aggregation)": ("aten::bmm",),
    "sparse products (CSR spmm, segment reductions)": ("aten::_sparse_csr_mm", "aten::_sparse_addmm", "aten::addmm_",
                                                       "aten::_sparse_mm_reduce_impl", "aten::_sparse_mm_reduce_impl_backward",
                                                       "aten::_sparse_sparse_matmul", "aten::sparse_mm"),
    "gathers and scatters": ("aten::index_select", "aten::index_add_", "aten::index_copy_", "aten::index_fill_",
                             "aten::index", "aten::gather", "aten::scatter_add_", "aten::scatter_reduce",
                             "aten::index_put_", "aten::repeat_interleave", "aten::embedding"),
    "copies and layout (copy_, cat, split backward)": ("aten::copy_", "aten::cat", "aten::clone", "aten::contiguous",
                                                      "aten::stack", "UnsafeSplitBackward0", "aten::_to_copy"),
    "allocation and fills": ("aten::empty", "aten::empty_like", "aten::empty_strided", "aten::zeros", "aten::zeros_like",
                             "aten::fill_", "aten::zero_", "aten::new_zeros", "aten::new_empty", "aten::full",
                             "aten::ones", "aten::resize_"),
    "host reads (item, sync)": ("aten::_local_scalar_dense", "aten::item"),
}  # fmt: skip
_ELEMENTWISE = ("mul", "add", "sub", "div", "sigmoid", "tanh", "relu", "threshold", "exp", "neg", "rsub", "sum",
                "clamp", "mse", "pow", "sqrt", "addcmul", "addcdiv", "lerp", "maximum", "square", "where", "lt", "gt",
                "abs", "mean", "norm", "_foreach", "softmax")  # fmt: skip


_SPARSE_PRODUCTS = ("aten::_sparse_mm", "aten::_sparse_addmm", "aten::_sparse_csr_mm", "aten::sparse_mm")


def _inside_sparse_product(event: Any) -> bool:
    """Whether a profiler event runs inside a CSR spmm (``torch.sparse.mm`` calls ``aten::addmm``
    under ``aten::_sparse_addmm``): its shapes alone cannot tell, as ``addmm(..., out=)`` records
    four shapes too."""
    parent = getattr(event, "cpu_parent", None)
    while parent is not None:
        if parent.name in _SPARSE_PRODUCTS:
            return True
        parent = getattr(parent, "cpu_parent", None)
    return False


def _op_kind(name: str, in_sparse: bool = False) -> str:
    if in_sparse and name in ("aten::addmm", "aten::mm"):
        return "sparse products (CSR spmm, segment reductions)"
    for kind, names in _OP_KINDS.items():
        if name in names:
            return kind
    if name.startswith("aten::") and any(name[6:].startswith(p) for p in _ELEMENTWISE):
        return "element-wise and reductions"
    if name.startswith("aten::") and name[6:] in ("view", "slice", "select", "as_strided", "transpose", "t", "permute",
                                                  "reshape", "expand", "unsqueeze", "squeeze", "alias", "detach",
                                                  "_unsafe_view", "unflatten", "chunk", "split", "narrow", "flatten",
                                                  "_reshape_alias", "unsafe_split", "view_as", "lift_fresh"):  # fmt: skip
        return "views (dispatch only)"
    return "other (autograd nodes, Python, glue)"


def _product_flops(name: str, shapes: list[list[int]]) -> int | None:
    """Flops of a dense or batched product from the profiler's recorded input shapes."""
    try:
        if name == "aten::mm":
            (m, k), (_, n) = shapes[0], shapes[1]
            return 2 * m * k * n
        if name == "aten::addmm":
            (m, k), (_, n) = shapes[1], shapes[2]
            return 2 * m * k * n
        if name == "aten::bmm":
            (b, m, k), (_, _, n) = shapes[0], shapes[1]
            return 2 * b * m * k * n
    except (ValueError, IndexError, TypeError):
        return None
    return None


@dataclass
class ProfileSummary:
    """What :func:`profile_summary` measured on one call: ``total_ms`` of op self time; ``kinds``
    maps each kind of op to ``(ms, calls)``; ``short_ms`` / ``short_calls``: self time and count of
    op calls under ``short_ms_limit`` each (where per-call dispatch overhead dominates);
    ``products``: the dense and batched product shapes, ``(op, shapes, calls, ms, GFLOP/s)``, most
    time first."""

    total_ms: float
    kinds: dict[str, tuple[float, int]]
    short_ms: float
    short_calls: int
    calls: int
    products: list[tuple[str, str, int, float, float]]
    short_ms_limit: float = 1.0

    def table(self, peak_gflops: float | None = None, top: int = 8) -> list[str]:
        """Markdown lines: the breakdown by kind, the share in short calls, the top product shapes."""
        lines = ["| kind of op | self time (ms) | % of step | calls |", "|---|---:|---:|---:|"]
        for kind, (ms, calls) in sorted(self.kinds.items(), key=lambda kv: -kv[1][0]):
            lines.append(f"| {kind} | {ms:.1f} | {100 * ms / self.total_ms:.1f} % | {calls} |")
        lines.append(f"| **total** | **{self.total_ms:.1f}** | 100 % | {self.calls} |")
        lines += ["", f"Op calls under {self.short_ms_limit:g} ms each: {self.short_calls} of {self.calls}, "
                  f"{self.short_ms:.1f} ms = {100 * self.short_ms / self.total_ms:.1f} % of the step.", "",
                  "| product | input shapes | calls | self time (ms) | GFLOP/s" + (" | % of peak |" if peak_gflops else " |"),
                  "|---|---|---:|---:|---:|" + ("---:|" if peak_gflops else "")]  # fmt: skip
        for op, shapes, calls, ms, rate in self.products[:top]:
            row = f"| {op} | {shapes} | {calls} | {ms:.1f} | {rate:.0f} |"
            lines.append(row + (f" {100 * rate / peak_gflops:.0f} % |" if peak_gflops else ""))
        return lines


def profile_summary(fn: Callable[[], Any], short_ms_limit: float = 1.0) -> ProfileSummary:
    """Runs ``fn`` once under ``torch.profiler`` (CPU activity, input shapes recorded) and sums
    the self time of its op calls by kind (products, gathers, copies, allocation, element-wise,
    views, host reads), the time in calls shorter than ``short_ms_limit`` each, and the achieved
    GFLOP/s of each dense or batched product shape."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fn()
    kinds: dict[str, list[float]] = {}
    short_ms, short_calls, total, calls = 0.0, 0, 0.0, 0
    per_shape: dict[tuple[str, str], list] = {}  # (op, shapes) -> [calls, ms, flops of one call]
    for event in prof.events():
        if event.device_type.name != "CPU" or event.name.startswith(("ProfilerStep", "[memory]")):
            continue
        ms = event.self_cpu_time_total / 1e3
        in_sparse = _inside_sparse_product(event)
        kind = _op_kind(event.name, in_sparse)
        acc = kinds.setdefault(kind, [0.0, 0])
        acc[0] += ms
        acc[1] += 1
        total += ms
        calls += 1
        if event.cpu_time_total / 1e3 < short_ms_limit:
            short_ms += ms
            short_calls += 1
        if event.name in ("aten::mm", "aten::addmm", "aten::bmm") and not in_sparse:
            flops = _product_flops(event.name, event.input_shapes)
            if flops:
                shapes = " x ".join(str(tuple(s)) for s in event.input_shapes if s)
                row = per_shape.setdefault((event.name, shapes), [0, 0.0, flops])
                row[0] += 1
                row[1] += ms
    products = [(op, shapes, n, ms, flops * n / (ms / 1e3) / 1e9)
                for (op, shapes), (n, ms, flops) in per_shape.items() if ms > 0]  # fmt: skip
    products.sort(key=lambda p: -p[3])
    return ProfileSummary(total, {k: (v[0], int(v[1])) for k, v in kinds.items()}, short_ms, short_calls, calls,
                          products, short_ms_limit)  # fmt: skip
