"""Ahead-of-time compilation of every Triton kernel for sm_80 and sm_90, on a machine without a GPU.

    python -m gnnkit.ops._aot                      # compile the covering set, print a summary
    python -m gnnkit.ops._aot --json out.json      # ... and write every result as JSON
    python -m gnnkit.ops._aot --write recipes/results/triton_aot.md   # update the committed table
    python -m gnnkit.ops._aot --full --write ...   # every configuration (780 x 2 compiles, minutes)

Triton compiles a kernel to PTX and a cubin with ``triton.compile(ASTSource(...),
target=GPUTarget("cuda", cap, 32))``; no driver is needed, and the wheel ships ``ptxas``. The
interpreter (``TRITON_INTERPRET=1``, how the rest of the suite runs the kernels) accepts code that
the compiler rejects, so this is the only check, short of a GPU, that the kernels build.

**What is compiled.** The configurations come from :data:`gnnkit.ops._launch.TABLE`, which each
kernel of :mod:`gnnkit.ops._triton_kernels` fills where it is defined: the launchers can
produce exactly the table's ``variants x dtypes x shapes`` per kernel (780 in all; the test checks
this with :func:`sweep`, below, which runs on ``meta`` tensors every sweep function that the
launchers register next to themselves, so this module names no kernel or launcher), and each
compiles with the argument types the launchers pass (taken from that sweep), pointer arguments marked 16-byte aligned as the JIT marks
freshly allocated tensors. Integer arguments get no divisibility hint and 32-bit type, the JIT's
choice for sizes below 2**31 that are not multiples of 16; those hints only change vectorisation.
Compiling all 780 for two targets takes 7 minutes on two cores, so the suite compiles a covering
set (:func:`covering_specs`, 123 configurations, 246 compilations, about a minute on two cores):
every variant of every kernel in every dtype at the kernel's largest tile (the most registers per
thread: where ptxas spills first, and a full run showed it can spill in a lighter variant too), and
every other shape with the kernel's heaviest variant, cycling through the dtypes. So every kernel,
variant, dtype and shape is compiled at least once. ``--full`` compiles the whole product; the
committed table (recipes/results/triton_aot.md) records a full run.

**What fails.** A compile error, and register spills, read from ``ptxas -v``: Triton runs ptxas
with ``-v`` and prints its log when ``TRITON_DUMP_PTXAS_LOG=1``; each compile runs with that set
(and ``TRITON_ALWAYS_COMPILE=1`` in a private cache, so the log is never skipped), and the lines
``Used N registers`` and ``... bytes spill stores, ... bytes spill loads`` are parsed from it. If a
Triton version prints no log, ptxas is rerun on the PTX with ``-v``. Shared memory is Triton's own
allocation (``metadata.shared``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import io
import itertools
import json
import multiprocessing
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from gnnkit.ops._launch import (
    DOT_BLOCKS,
    DTYPES,
    EDGE_BLOCK_F,
    ROW_BLOCK_E,
    ROW_BLOCK_F,
    SWEEPS,
    TABLE,
    KernelTable,
    Launch,
    Spec,
    SweepSizes,
    recording,
)

TARGETS: tuple[int, ...] = (80, 90)
_REG = re.compile(r"Used (\d+) registers")
_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")


# ------------------------------------------------------------- sweep: every launch, no kernel runs


def table() -> dict[str, KernelTable]:
    """:data:`gnnkit.ops._launch.TABLE`, after importing the kernels (which fill it)."""
    from gnnkit.ops import _triton_kernels  # noqa: F401 - importing it registers the table and the sweeps

    return TABLE


def call_every_launcher(sizes: SweepSizes, dtype: torch.dtype, device: str | torch.device = "meta") -> None:
    """Runs every launch sweep that :mod:`gnnkit.ops._triton_kernels` registers next to its
    launchers (:data:`gnnkit.ops._launch.SWEEPS`, see :func:`~gnnkit.ops._launch.launch_sweep`):
    every launcher once per reduction and flag combination, with tensors of ``sizes`` on
    ``device`` (``meta`` inside :func:`recording`: nothing is allocated or run). A new launcher
    registers its own sweep, so this function does not change."""
    table()
    for launch_sweep in SWEEPS.values():
        launch_sweep(sizes, dtype, device)


def sweep_sizes() -> list[SweepSizes]:
    """Sizes that reach every shape of the table: each feature block width (and one past the
    largest), each outer-product ``K`` block, and an average degree on each side of the row
    kernels' edge-chunk threshold."""
    feats = sorted({*ROW_BLOCK_F, *EDGE_BLOCK_F, *DOT_BLOCKS, ROW_BLOCK_F[-1] + 3})
    degrees = (ROW_BLOCK_E[0] // 2, 2 * ROW_BLOCK_E[0])
    return [SweepSizes(rows=16, edges=16 * deg, feats=f, k=k) for f, k, deg in itertools.product(feats, DOT_BLOCKS, degrees)]


def sweep(call: Callable[[SweepSizes, torch.dtype], None] = call_every_launcher) -> list[Launch]:
    """Every launch the launchers make over :func:`sweep_sizes` and every dtype (no kernel runs)."""
    with recording() as launches:
        for sizes in sweep_sizes():
            for dtype in DTYPES:
                call(sizes, dtype)
    return launches



def covering_specs() -> list[Spec]:
    """The configurations the suite compiles (see the module docstring), in table order."""
    out: dict[Spec, None] = {}
    for t in table().values():
        big = t.largest_shape()
        for v in t.variants:
            for d in t.dtypes:
                out[Spec(t.name, v, d, big)] = None
        others = [s for s in t.shapes if s != big]
        for i, s in enumerate(others):
            out[Spec(t.name, t.heaviest, t.dtypes[i % len(t.dtypes)], s)] = None
    return list(out)


def signatures() -> dict[Spec, dict[str, str]]:
    """The runtime argument types of every configuration, as the launchers pass them (from
    :func:`sweep`).

    Raises:
        RuntimeError: a configuration was launched with two different argument type lists.
    """
    sigs: dict[Spec, dict[str, str]] = {}
    for launch in sweep():
        known = sigs.setdefault(launch.spec, launch.signature)
        if known != launch.signature:
            raise RuntimeError(f"{launch.spec.label()} launched with two signatures: {known} and {launch.signature}")
    return sigs


@dataclass
class Result:
    """One configuration compiled for one target."""

    label: str
    kernel: str
    flags: str
    dtype: str
    shape: str
    target: str
    ok: bool
    error: str | None = None
    registers: int | None = None
    spill_stores: int | None = None
    spill_loads: int | None = None
    stack_frame: int | None = None
    shared: int | None = None
    tensor_cores: str = "-"
    seconds: float = 0.0
    log_source: str = ""
    rerun_registers: int | None = None  # ptxas -v run again on the PTX (``crosscheck``)

    @property
    def spills(self) -> bool:
        return bool(self.spill_stores or self.spill_loads)


def parse_ptxas_log(log: str) -> dict[str, int] | None:
    """Registers, stack frame and spill bytes from a ``ptxas -v`` log (None if it has none)."""
    reg, spill = _REG.search(log), _SPILL.search(log)
    if reg is None or spill is None:
        return None
    frame, stores, loads = (int(g) for g in spill.groups())
    return {"registers": int(reg.group(1)), "stack_frame": frame, "spill_stores": stores, "spill_loads": loads}


def ptxas_path(cap: int) -> str:
    """The ptxas Triton uses for compute capability ``cap``."""
    from triton.backends.nvidia import compiler as nv

    get = vars(nv).get("get_ptxas")
    try:
        tool = get(cap) if get is not None else None
    except TypeError:  # Triton versions whose get_ptxas takes no capability
        tool = get()
    path = getattr(tool, "path", None) or (tool[0] if isinstance(tool, tuple) else tool)
    if isinstance(path, str) and path:
        return path
    binary = "ptxas-blackwell" if cap >= 90 else "ptxas"
    folder = Path(nv.__file__).parent / "bin"
    return str(folder / binary if (folder / binary).exists() else folder / "ptxas")


def rerun_ptxas(ptx: str, cap: int) -> str:
    """``ptxas -v`` on ``ptx`` for the PTX's own ``.target``; returns the log."""
    arch = re.search(r"^\s*\.target\s+(\S+)", ptx, re.M)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_text(ptx)
        gpu = arch.group(1) if arch else f"sm_{cap}"
        cmd = [ptxas_path(cap), "-v", f"--gpu-name={gpu}", str(src), "-o", str(src.with_suffix(".cubin"))]
        done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ptxas failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stderr + done.stdout


def _init_worker(cache_dir: str) -> None:
    os.environ.update(TRITON_INTERPRET="0", TRITON_DUMP_PTXAS_LOG="1", TRITON_ALWAYS_COMPILE="1", TRITON_CACHE_DIR=cache_dir)
    warnings.filterwarnings("ignore")  # e.g. Triton 3.9's notice on the fp-fusion default


def compile_spec(spec: Spec, signature: dict[str, str], cap: int, crosscheck: bool = False) -> Result:
    """Compiles one configuration for ``sm_<cap>`` and reads its resources (in a worker process
    whose environment :func:`_init_worker` set). ``crosscheck`` also reruns ptxas on the PTX, the
    fallback for a Triton that prints no log, and records its register count."""
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend

    from gnnkit.ops import _triton_kernels as tk

    kernel = getattr(tk, spec.kernel)
    flags = ",".join(f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in spec.flags) or "-"
    res = Result(spec.label(), spec.kernel, flags, spec.dtype, spec.shape.label(), f"sm_{cap}", ok=False)
    t0 = time.perf_counter()
    try:
        if getattr(kernel, "arg_names", None) is None:
            raise RuntimeError("the kernels were created by the Triton interpreter; run with TRITON_INTERPRET=0")
        target = GPUTarget("cuda", cap, 32)
        aligned = make_backend(target).parse_attr("D")
        sig = {**signature, **{name: "constexpr" for name in [*spec.constexprs(), "ACC"]}}
        sig = {name: sig[name] for name in kernel.arg_names}
        attrs = {(kernel.arg_names.index(n),): aligned for n, t in signature.items() if t.startswith("*")}
        consts = {**spec.constexprs(), "ACC": tl.float64 if spec.dtype == "fp64" else tl.float32}
        src = ASTSource(fn=kernel, signature=sig, constexprs=consts, attrs=attrs)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            compiled = triton.compile(src, target=target, options={"num_warps": spec.shape.num_warps})
        ptx = compiled.asm["ptx"]
        found, res.log_source = parse_ptxas_log(printed.getvalue()), "triton"
        if found is None:
            found, res.log_source = parse_ptxas_log(rerun_ptxas(ptx, cap)), "rerun"
        if found is None:
            raise RuntimeError("ptxas -v printed no resource usage")
        for key, value in found.items():
            setattr(res, key, value)
        if crosscheck:
            res.rerun_registers = parse_ptxas_log(rerun_ptxas(ptx, cap))["registers"]
        res.shared = int(compiled.metadata.shared)
        res.target = re.search(r"^\s*\.target\s+(\S+)", ptx, re.M).group(1)
        res.tensor_cores = "wgmma" if "wgmma" in ptx else ("mma" if re.search(r"\bmma\.sync", ptx) else "-")
        res.ok = True
    except Exception as e:  # noqa: BLE001 - every failure is a result to report
        lines = [line for line in str(e).strip().splitlines() if line.strip()]
        res.error = f"{type(e).__name__}: " + " | ".join(lines[:3] + (["..."] + lines[-3:] if len(lines) > 6 else lines[3:]))
    res.seconds = round(time.perf_counter() - t0, 3)
    return res


def compile_all(specs: list[Spec], targets: tuple[int, ...] = TARGETS, workers: int | None = None) -> list[Result]:
    """Compiles ``specs`` for every target in ``workers`` processes (default: one per core)."""
    sigs = signatures()
    missing = [s.label() for s in specs if s not in sigs]
    if missing:
        raise RuntimeError(f"no launcher produces {len(missing)} table configurations, e.g. {missing[:3]}")
    # The first configuration of each target is also checked with the ptxas fallback.
    jobs = [(s, sigs[s], cap, i == 0) for i, s in enumerate(specs) for cap in targets]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with tempfile.TemporaryDirectory(prefix="gnnkit-aot-") as cache:
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(cache,)) as pool:
            # The tl.dot kernels, last in the table, compile slowest: start them first.
            return list(pool.map(compile_spec, *zip(*jobs[::-1]), chunksize=1))[::-1]


def summary(results: list[Result]) -> dict[str, Any]:
    failed = [r for r in results if not r.ok]
    spilled = [r for r in results if r.ok and r.spills]
    return {
        "compiled": len(results),
        "configurations": len({r.label for r in results}),
        "failed": [f"{r.label} {r.target}: {r.error}" for r in failed],
        "spilled": [f"{r.label} {r.target}: {r.spill_stores} B stores, {r.spill_loads} B loads" for r in spilled],
        "max_registers": max((r.registers or 0 for r in results), default=0),
        "seconds": round(sum(r.seconds for r in results), 1),
    }


def _versions() -> dict[str, str]:
    import torch
    import triton

    return {"triton": triton.__version__, "torch": torch.__version__, "python": platform.python_version()}


def markdown(results: list[Result], command: str, full: list[Result] | None = None) -> str:
    """The committed table: one row per configuration of the covering set, both targets side by
    side; with ``full``, a per-kernel summary of the whole product."""
    v = _versions()
    by = {(r.label, r.target.rstrip("a")): r for r in results}
    labels = list(dict.fromkeys(r.label for r in results))
    s = summary(results)
    lines = [
        "# Triton kernels compiled ahead of time for sm_80 and sm_90",
        "",
        f"Command: `{command}`. Triton {v['triton']}, torch {v['torch']}, Python {v['python']}; no GPU "
        "(`triton.compile` with `GPUTarget(\"cuda\", cap, 32)`, ptxas from the Triton wheel).",
        "",
        f"{s['configurations']} configurations (the covering set of `gnnkit.ops._aot.covering_specs`: every variant "
        f"of every kernel in every dtype at the kernel's largest tile, and every other block shape with the heaviest "
        f"variant), {s['compiled']} compilations: {len(s['failed'])} failed, {len(s['spilled'])} spilled. "
        "Registers, stack frame and spills from `ptxas -v`; shared memory is Triton's allocation "
        "(bytes); tensor cores: the PTX uses `wgmma` or `mma.sync`. The suite "
        "(tests/ops/test_triton_aot.py) compiles the same set and fails on an error or a spill.",
        "",
        "| kernel | flags | dtype | blocks | sm_80 regs | sm_80 smem | sm_80 TC | sm_90a regs | sm_90a smem | sm_90a TC | spills |",
        "|---|---|---|---|---:|---:|---|---:|---:|---|---|",
    ]

    def cell(r: Result | None) -> list[str]:
        if r is None:
            return ["", "", ""]
        if not r.ok:
            return ["FAILED", "", ""]
        return [str(r.registers), str(r.shared), r.tensor_cores]

    for label in labels:
        a, b = by.get((label, "sm_80")), by.get((label, "sm_90"))
        first = a or b
        spills = "yes" if any(r is not None and r.spills for r in (a, b)) else "no"
        cells = [first.kernel.strip("_"), first.flags, first.dtype, first.shape, *cell(a), *cell(b), spills]
        lines.append("| " + " | ".join(cells) + " |")
    if s["failed"]:
        lines += ["", "Failures:", ""] + [f"- {f}" for f in s["failed"]]
    if full is not None:
        fs = summary(full)
        lines += [
            "",
            f"## Every configuration (`--full`): {fs['configurations']} configurations, {fs['compiled']} compilations, "
            f"{len(fs['failed'])} failed, {len(fs['spilled'])} spilled",
            "",
            "| kernel | configurations | sm_80 max regs | sm_90a max regs | max smem (B) | failed | spilled |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name in table():
            rows = [r for r in full if r.kernel == name]
            ok = [r for r in rows if r.ok]
            regs = {t: max((r.registers for r in ok if r.target.rstrip("a") == t), default=0) for t in ("sm_80", "sm_90")}
            lines.append(
                f"| {name.strip('_')} | {len({r.label for r in rows})} | {regs['sm_80']} | {regs['sm_90']} | "
                f"{max((r.shared for r in ok), default=0)} | {len(rows) - len(ok)} | {sum(r.spills for r in ok)} |"
            )
        if fs["failed"] or fs["spilled"]:
            lines += [""] + [f"- {f}" for f in fs["failed"] + fs["spilled"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="every configuration, not the covering set (minutes)")
    p.add_argument("--workers", type=int, default=None, help="compile processes (default: one per core)")
    p.add_argument("--json", default=None, help="write the results and the summary here")
    p.add_argument("--write", default=None, help="write the markdown table here (e.g. recipes/results/triton_aot.md)")
    a = p.parse_args(argv)
    if a.workers is not None and a.workers < 1:
        p.error(f"--workers must be >= 1, got {a.workers}")
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0") and "triton" in sys.modules:
        p.error("Triton was imported in interpreter mode (TRITON_INTERPRET=1); run without it")
    os.environ["TRITON_INTERPRET"] = "0"  # the sweep imports the kernels: they must be JIT functions
    covering = covering_specs()
    t0 = time.perf_counter()
    results = compile_all([s for t in table().values() for s in t.specs()] if a.full else covering, workers=a.workers)
    wall = time.perf_counter() - t0
    chosen = {s.label() for s in covering}
    table_rows = [r for r in results if r.label in chosen]
    s = {**summary(results), "wall_seconds": round(wall, 1), **_versions(), "full": a.full}
    print(json.dumps({k: v for k, v in s.items() if k not in ("failed", "spilled")}), flush=True)
    for line in s["failed"] + s["spilled"]:
        print(line, flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps({"summary": s, "results": [asdict(r) for r in results]}, indent=1) + "\n")
    if a.write:
        flags = (["--full"] if a.full else []) + ([f"--workers {a.workers}"] if a.workers else []) + [f"--write {a.write}"]
        command = " ".join(["python -m gnnkit.ops._aot", *flags])
        Path(a.write).write_text(markdown(table_rows, command, full=results if a.full else None))
    return s


__all__ = [
    "TARGETS",
    "Result",
    "SweepSizes",
    "call_every_launcher",
    "compile_all",
    "compile_spec",
    "covering_specs",
    "markdown",
    "parse_ptxas_log",
    "signatures",
    "sweep",
    "table",
]


if __name__ == "__main__":
    outcome = main()
    sys.exit(1 if outcome["failed"] or outcome["spilled"] else 0)
