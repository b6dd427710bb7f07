"""The Triton kernels as a GPU compiler sees them, without a GPU.

* The launch table (``gnnkit.ops._launch.TABLE``, declared on the kernels) is exactly what the
  launchers produce: every launcher is run on ``meta`` tensors by the sweep functions registered
  next to it, over a range of sizes and dtypes, recording its launches instead of running them.
* Every kernel compiles for sm_80 and sm_90 without register spills: ``python -m gnnkit.ops._aot``
  compiles the covering set of the table (every kernel, variant, dtype and block shape; every
  variant in every dtype at the kernel's largest tile) with ``triton.compile`` and a
  ``GPUTarget``, and reads registers and spills from ptxas's ``-v`` log (see that module's
  docstring). It runs in a subprocess because this suite imports Triton in interpreter mode.
* Launch grids stay within CUDA's limits for a 10M-edge, 1M-node graph at F = 256 (computed on
  ``meta`` tensors: nothing is allocated or launched).
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gnnkit.ops import _aot, _launch, _triton_kernels, scatter, use_backend

REPO = Path(__file__).resolve().parents[2]
TABLE_FILE = REPO / "recipes" / "results" / "triton_aot.md"


def test_every_kernel_has_a_table_entry():
    kernels = {n for n, obj in vars(_triton_kernels).items() if type(obj).__name__ in ("JITFunction", "InterpretedFunction")}
    assert kernels == set(_launch.TABLE)


def test_launchers_produce_exactly_the_table():
    launches = _aot.sweep()
    assert {launch.spec for launch in launches} == set(_launch.all_specs())
    assert len(_launch.all_specs()) == 780
    sigs = _aot.signatures()  # raises if one configuration were launched with two argument type lists
    assert all(t == "*i64" for s, sig in sigs.items() for name, t in sig.items() if name in ("rowptr_ptr", "col_ptr"))
    # int32 indices are converted, so they add no variant.
    with _launch.recording() as again:
        rowptr = torch.zeros(5, dtype=torch.int32, device="meta")
        _triton_kernels.spmm_fwd(rowptr, torch.zeros(9, dtype=torch.int32, device="meta"), None,
                                 torch.empty(4, 8, device="meta"), "sum")  # fmt: skip
    assert again[0].signature["col_ptr"] == "*i64" and again[0].spec in set(_launch.all_specs())


def test_covering_set_reaches_every_variant_dtype_and_shape():
    specs = _aot.covering_specs()
    assert len(specs) == 123 and len(set(specs)) == len(specs)
    for t in _launch.TABLE.values():
        mine = [s for s in specs if s.kernel == t.name]
        assert {s.flags for s in mine} == set(t.variants)
        assert {s.dtype for s in mine} == set(t.dtypes)
        assert {s.shape for s in mine} == set(t.shapes)
        at_largest = {(s.flags, s.dtype) for s in mine if s.shape == t.largest_shape()}
        assert at_largest == {(v, d) for v in t.variants for d in t.dtypes}


def test_table_and_sweeps_are_declared_next_to_the_kernels():
    # _launch holds the machinery only: no kernel's name appears in it as an entry.
    source = Path(_launch.__file__).read_text()
    assert not [name for name in _launch.TABLE if f'"{name}"' in source]
    # Every registered sweep launches something, and together they reach every kernel.
    sizes = _aot.SweepSizes(rows=4, edges=12, feats=8, k=16)
    reached = set()
    for name, fn in _launch.SWEEPS.items():
        with _launch.recording() as launches:
            fn(sizes, torch.float32, "meta")
        assert launches, f"sweep {name} launched nothing"
        reached |= {launch.spec.kernel for launch in launches}
    assert reached == set(_launch.TABLE)


def test_registering_twice_or_an_inconsistent_entry_is_refused():
    before, sweeps = dict(_launch.TABLE), dict(_launch.SWEEPS)

    def _edge_dot_kernel():  # same name as a registered kernel
        pass

    with pytest.raises(ValueError, match="already has an entry"):
        _launch.kernel_table(shapes=_launch.EDGE_SHAPES)(_edge_dot_kernel)

    def _new_kernel():
        pass

    with pytest.raises(ValueError, match="heaviest variant"):
        _launch.kernel_table(((("F", True),),), (("F", False),), _launch.EDGE_SHAPES)(_new_kernel)
    with pytest.raises(ValueError, match="at least one"):
        _launch.kernel_table(shapes=())(_new_kernel)

    def _sweep_edge_dot(sizes, dtype, device):
        pass

    with pytest.raises(ValueError, match="already registered"):
        _launch.launch_sweep(_sweep_edge_dot)
    assert _launch.TABLE == before and _launch.SWEEPS == sweeps


def test_a_configuration_outside_the_table_is_refused():
    shape = _launch.Shape((("BLOCK_E", 8), ("BLOCK_F", 8)), 1)  # BLOCK_F=8 is not a row block
    with pytest.raises(RuntimeError, match="not in gnnkit.ops._launch.TABLE"):
        _launch.spec_for("_csr_reduce_kernel", _triton_kernels.csr_reduce_flags("sum", True, False, False), torch.float32, shape)
    with pytest.raises(RuntimeError, match="no entry"):
        _launch.spec_for("_new_kernel", (), torch.float32, shape)
    src = torch.zeros(6, 2).to(torch.float8_e4m3fn)
    with use_backend("triton"), pytest.raises(TypeError, match="float8_e4m3fn"):
        scatter(src, torch.zeros(6, dtype=torch.long), 2, "sum")


# Per kernel with a 2-D/3-D grid: the block that tiles axis y (and z), and the size it must cover.
TILED_AXES = {
    "_csr_reduce_kernel": (("BLOCK_F", "feats"),),
    "_spmm_max_bwd_x_kernel": (("BLOCK_F", "feats"),),
    "_outer_fwd_kernel": (("BLOCK_K", "k"), ("BLOCK_D", "feats")),
    "_outer_bwd_z_kernel": (("BLOCK_K", "k"),),
    "_outer_bwd_msg_kernel": (("BLOCK_D", "feats"),),
    "_gather_sum_kernel": (("BLOCK_D", "feats"),),
}


@pytest.mark.parametrize("dtype", list(_launch.DTYPES))
def test_grids_stay_within_cuda_limits_at_10m_edges(dtype):
    sizes = _aot.SweepSizes(rows=1_000_000, edges=10_000_000, feats=256, k=256)
    with _launch.recording() as launches:
        _aot.call_every_launcher(sizes, dtype)
    assert {launch.spec.kernel for launch in launches} == set(_launch.TABLE)
    x_max, yz_max = _launch.GRID_LIMITS[0], _launch.GRID_LIMITS[1]
    for launch in launches:
        grid, blocks = launch.grid, dict(launch.spec.shape.blocks)
        assert 1 <= len(grid) <= 3 and all(n >= 1 for n in grid), launch
        assert grid[0] <= x_max and all(n <= yz_max for n in grid[1:]), launch
        # ... and each grid covers the work: edges, or rows times feature tiles.
        if len(grid) == 1:
            assert grid[0] * blocks["BLOCK_E"] >= sizes.edges, launch
            continue
        assert grid[0] == sizes.rows, launch
        tiled = TILED_AXES[launch.spec.kernel]
        assert len(tiled) == len(grid) - 1, launch
        for n, (block, size) in zip(grid[1:], tiled):
            assert (n - 1) * blocks[block] < getattr(sizes, size) <= n * blocks[block], launch


def test_a_grid_beyond_cuda_limits_is_a_clear_error():
    feats = 65_535 * 128 + 1  # one feature tile more than grid axis y allows
    src = torch.empty(4, feats, device="meta")
    with _launch.recording(), pytest.raises(ValueError, match="axis y exceeds CUDA's limit of 65,535"):
        _triton_kernels.segment_fwd(src, torch.zeros(3, dtype=torch.long, device="meta"), "sum")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("aot") / "aot.json"
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    done = subprocess.run([sys.executable, "-m", "gnnkit.ops._aot", "--json", str(out)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    if not out.exists():
        pytest.fail(f"python -m gnnkit.ops._aot wrote no results (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(out.read_text())


def test_every_kernel_compiles_for_sm80_and_sm90_without_spills(compiled):
    summary, results = compiled["summary"], compiled["results"]
    assert summary["failed"] == [], "\n".join(summary["failed"])
    assert summary["spilled"] == [], "\n".join(summary["spilled"])
    assert summary["configurations"] == len(_aot.covering_specs()) and summary["compiled"] == 2 * summary["configurations"]
    assert {r["target"] for r in results} == {"sm_80", "sm_90a"}
    assert {r["label"] for r in results} == {s.label() for s in _aot.covering_specs()}
    for r in results:
        assert r["ok"] and 0 < r["registers"] <= 255 and r["shared"] >= 0 and r["stack_frame"] == 0, r


def test_compiled_code_uses_the_expected_units(compiled):
    fwd = [r for r in compiled["results"] if r["kernel"] == "_outer_fwd_kernel" and "BLOCK_K=64 BLOCK_D=64" in r["shape"]]
    units = {(r["dtype"], r["target"]): r["tensor_cores"] for r in fwd}
    assert units[("bf16", "sm_90a")] == "wgmma" and units[("fp16", "sm_90a")] == "wgmma"  # Hopper's matrix units
    assert units[("bf16", "sm_80")] == "mma"
    assert units[("fp32", "sm_90a")] == "-"  # IEEE float32 products: FMA, no TF32
    reduce = [r for r in compiled["results"] if r["kernel"] == "_csr_reduce_kernel"]
    assert all(r["tensor_cores"] == "-" for r in reduce)


def test_ptxas_fallback_reads_the_same_registers(compiled):
    checked = [r for r in compiled["results"] if r["rerun_registers"] is not None]
    assert {r["target"] for r in checked} == {"sm_80", "sm_90a"}
    for r in checked:
        assert r["rerun_registers"] == r["registers"], r


def test_parse_ptxas_log():
    log = ("ptxas info    : Function properties for k\n    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n"
           "ptxas info    : Used 40 registers, used 1 barriers, 416 bytes cmem[0]\n")  # fmt: skip
    assert _aot.parse_ptxas_log(log) == {"registers": 40, "stack_frame": 8, "spill_stores": 4, "spill_loads": 12}
    assert _aot.parse_ptxas_log("ptxas info    : 0 bytes gmem\n") is None


def test_committed_table_lists_the_covering_set():
    text = TABLE_FILE.read_text()
    assert re.search(r"Triton \d+\.\d+", text) and "python -m gnnkit.ops._aot" in text
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| ") and not line.startswith("| kernel")]
    listed = {(r[0][2:], r[1], r[2], r[3]) for r in rows if len(r) == 11}
    want = set()
    for s in _aot.covering_specs():
        flags = ",".join(f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in s.flags) or "-"
        want.add((s.kernel.strip("_"), flags, s.dtype, s.shape.label()))
    assert listed == want, "recipes/results/triton_aot.md is stale: python -m gnnkit.ops._aot --write recipes/results/triton_aot.md"
