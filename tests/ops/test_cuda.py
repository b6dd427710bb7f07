"""The Triton kernels on a GPU: every op and reduction on CUDA tensors against the torch path (the
CPU reference, on copies of the same tensors), forward and backward; bitwise-identical results
across two runs (the determinism promise: no floating-point atomics); the float16/bfloat16 paths
(float32 accumulation) and an MPNN training step under autocast.

Marked ``cuda`` and deselected by default (pyproject.toml's ``addopts``). On a GPU machine::

    GNNKIT_TEST_GPU=1 python -m pytest -m cuda tests/ops/test_cuda.py

(``GNNKIT_TEST_GPU=1`` keeps the suite's conftest from switching Triton to interpreter mode.)
``recipes/gpu_check.py`` runs them as its first stage; its ``--dry-run`` runs them with
``GNNKIT_CUDA_TESTS_DEVICE=cpu`` on CPU tensors under the Triton interpreter at tiny sizes, so this
file is exercised by the normal suite too. Without a GPU and without that variable every test
fails (it is never skipped).
"""

from __future__ import annotations

import os

import pytest
import torch

from gnnkit.nn import EdgeNetworkConv
from gnnkit.ops import CSR, outer_aggregate, scatter, scatter_softmax, segment, spmm, use_backend

pytestmark = pytest.mark.cuda

DEVICE = os.environ.get("GNNKIT_CUDA_TESTS_DEVICE", "cuda")
ON_CPU = DEVICE == "cpu"  # the dry run: interpreter, tiny sizes
# (rows scattered or edges, segments or nodes): a few thousand rows per op on a GPU.
SIZES = (60, 9) if ON_CPU else (200_000, 5_000)


def cases(on_gpu: list, on_cpu: list) -> list:
    """Parameters on a GPU; on CPU (the interpreter is slow) one representative each."""
    return on_cpu if ON_CPU else on_gpu


FEATS = cases([1, 7, 130], [3])  # BLOCK_F 1, 16 and two 128-wide tiles
DTYPES = cases([torch.float32, torch.float64], [torch.float64])


@pytest.fixture(autouse=True)
def _device():
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"
    if DEVICE not in ("cuda", "cpu"):
        pytest.fail(f"GNNKIT_CUDA_TESTS_DEVICE must be 'cuda' or 'cpu', got {DEVICE!r}")
    if DEVICE == "cuda" and not torch.cuda.is_available():
        pytest.fail("no CUDA device: these tests need a GPU (GNNKIT_CUDA_TESTS_DEVICE=cpu runs them on CPU tensors under "
                    "the Triton interpreter, as `python recipes/gpu_check.py --dry-run` does)")  # fmt: skip
    if DEVICE == "cuda" and interpreted:
        pytest.fail("TRITON_INTERPRET=1 on a GPU: run with GNNKIT_TEST_GPU=1 so that Triton compiles for the device")
    if DEVICE == "cpu" and not interpreted:
        pytest.fail("GNNKIT_CUDA_TESTS_DEVICE=cpu needs TRITON_INTERPRET=1 (the suite's conftest sets it)")
    yield


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def powerlaw_index(rows: int, segments: int, seed: int = 0) -> torch.Tensor:
    """Segment ids with a heavy tail (a few long segments, many short, some empty), on DEVICE."""
    weights = torch.arange(1, segments + 1, dtype=torch.float64).pow(-1.0)
    weights[torch.randperm(segments, generator=_gen(seed))[: max(segments // 10, 1)]] = 0.0  # empty segments
    return torch.multinomial(weights, rows, replacement=True, generator=_gen(seed + 1)).to(DEVICE)


def randn(*shape: int, dtype=torch.float32, seed: int = 0, grad: bool = False) -> torch.Tensor:
    t = torch.randn(*shape, generator=_gen(seed), dtype=torch.float64).to(device=DEVICE, dtype=dtype)
    return t.requires_grad_(grad)


def graph(seed: int = 0) -> tuple[CSR, torch.Tensor]:
    edges, nodes = SIZES
    ei = torch.stack([powerlaw_index(edges, nodes, seed + 7), powerlaw_index(edges, nodes, seed)])
    return CSR.from_edge_index(ei, nodes), ei


def _to(arg, device):
    if isinstance(arg, (torch.Tensor, CSR)):
        moved = arg.to(device)
        return moved.detach().clone().requires_grad_(arg.requires_grad) if isinstance(arg, torch.Tensor) else moved
    return arg


def run_both(fn, *args, seed: int = 3):
    """Forward and backward of ``fn(*args)``: the torch path on CPU copies of the arguments (the
    reference; several of its aten kernels exist for CPU only) and the Triton path on DEVICE.
    Gradients are taken for the tensor arguments that require them."""
    results = []
    for backend, device in (("torch", "cpu"), ("triton", DEVICE)):
        moved = [_to(a, device) for a in args]
        leaves = [a for a in moved if isinstance(a, torch.Tensor) and a.requires_grad]
        with use_backend(backend):
            out = fn(*moved)
            grad_out = torch.randn(out.shape, generator=_gen(seed), dtype=torch.float64).to(out)
            grads = torch.autograd.grad(out, leaves, grad_out)
        results.append((out.detach().cpu(), [g.cpu() for g in grads], out.device))
    return results


def assert_backends_agree(
    fn, *args, exact: bool = False, exact_out: bool = False, rtol: float | None = None, atol: float | None = None
):
    """Triton and torch agree on ``fn``'s output and gradients: bitwise where ``exact`` (max/min of
    a scatter: one winner per output, one contribution per gradient), bitwise output only where
    ``exact_out`` (spmm max: a source's gradient sums over the targets it won, in another order).
    Otherwise within float rounding of sums in another order: the power-law graphs have segments of
    some 20,000 rows, whose float32 sums differ by up to about 1e-5 of their size."""
    (ref, ref_grads, _), (got, got_grads, where) = run_both(fn, *args)
    assert where.type == DEVICE and got.dtype == ref.dtype
    loose = 1e-4 if got.dtype == torch.float32 else 1e-9
    rtol, atol = rtol or loose, atol or loose

    def close(a, b, same: bool) -> None:
        torch.testing.assert_close(a, b, **({"rtol": 0, "atol": 0} if same else {"rtol": rtol, "atol": atol}))

    close(got, ref, exact or exact_out)
    for g, r in zip(got_grads, ref_grads, strict=True):
        close(g, r, exact)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("feats", FEATS)
@pytest.mark.parametrize("reduce", cases(["sum", "mean", "max", "min"], ["min"]))
def test_scatter_and_segment_match_torch(reduce, feats, dtype):
    rows, segments = SIZES
    index = powerlaw_index(rows, segments)
    src = randn(rows, feats, dtype=dtype, grad=True)
    exact = reduce in ("max", "min")  # the winners and their gradients must be the same elements
    assert_backends_agree(lambda s, i: scatter(s, i, segments, reduce), src, index, exact=exact)
    rowptr = torch.searchsorted(torch.sort(index).values, torch.arange(segments + 1, device=DEVICE))
    assert_backends_agree(lambda s, r: segment(s, r, reduce), src, rowptr, exact=exact)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("feats", FEATS)
@pytest.mark.parametrize("weighted", cases([False, True], [True]))
@pytest.mark.parametrize("reduce", cases(["sum", "mean", "max"], ["max"]))
def test_spmm_matches_torch(reduce, weighted, feats, dtype):
    csr, _ = graph()
    x = randn(csr.num_src, feats, dtype=dtype, seed=1, grad=True)
    if weighted:
        w = randn(csr.num_edges, dtype=dtype, seed=2, grad=True)
        assert_backends_agree(lambda g, x, w: spmm(g, x, w, reduce), csr, x, w, exact_out=reduce == "max")
    else:
        assert_backends_agree(lambda g, x: spmm(g, x, None, reduce), csr, x, exact_out=reduce == "max")


@pytest.mark.parametrize("feats", [256] if not ON_CPU else [5])
def test_spmm_wide_features_and_a_hub(feats):
    # One target with a large in-degree (many BLOCK_E chunks in one program) and F = 256.
    edges, nodes = SIZES
    ei = torch.stack([powerlaw_index(edges, nodes, 1), powerlaw_index(edges, nodes, 2)])
    hub = torch.stack([powerlaw_index(edges // 4, nodes, 3), torch.zeros(edges // 4, dtype=torch.long, device=DEVICE)])
    csr = CSR.from_edge_index(torch.cat([ei, hub], 1), nodes)
    x = randn(nodes, feats, seed=4, grad=True)
    assert_backends_agree(lambda g, x: spmm(g, x, None, "sum"), csr, x)
    assert_backends_agree(lambda g, x: spmm(g, x, None, "max"), csr, x, exact_out=True)


def test_scatter_softmax_matches_torch():
    rows, segments = SIZES
    index = powerlaw_index(rows, segments)
    assert_backends_agree(lambda s, i: scatter_softmax(s, i, segments), randn(rows, 4, grad=True), index)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("k,d", cases([(5, 3), (64, 64), (128, 64), (40, 100)], [(5, 3)]))
@pytest.mark.parametrize("reduce", cases(["sum", "mean"], ["mean"]))
def test_outer_aggregate_matches_torch(reduce, k, d, dtype):
    edges, nodes = (60, 9) if ON_CPU else (20_000, 1_000)
    ei = torch.stack([powerlaw_index(edges, nodes, 5), powerlaw_index(edges, nodes, 6)])
    csr = CSR.from_edge_index(ei, nodes)
    z, h = randn(edges, k, dtype=dtype, seed=7, grad=True), randn(nodes, d, dtype=dtype, seed=8, grad=True)
    # float32 products in IEEE precision (no TF32), sums of up to a few thousand terms in another order
    assert_backends_agree(lambda g, z, h: outer_aggregate(g, z, h, reduce), csr, z, h)


def _triton_twice(fn, *inputs: torch.Tensor):
    runs = []
    for _ in range(2):
        leaves = [t.detach().clone().requires_grad_() for t in inputs]
        with use_backend("triton"):
            out = fn(*leaves)
            grad_out = torch.randn(out.shape, generator=_gen(11), dtype=torch.float64).to(out)
            grads = torch.autograd.grad(out, leaves, grad_out)
        runs.append([out.detach(), *grads])
    return runs


def test_results_are_bitwise_identical_across_runs():
    csr, _ = graph(seed=4)
    rows, segments = SIZES
    index = powerlaw_index(rows, segments, seed=9)
    x, w = randn(csr.num_src, 32, seed=1), randn(csr.num_edges, seed=2)
    z, h = randn(csr.num_edges, 16, seed=3), randn(csr.num_src, 8, seed=4)
    runs = {
        "spmm sum": (lambda x, w: spmm(csr, x, w, "sum"), x, w),
        "spmm mean": (lambda x, w: spmm(csr, x, w, "mean"), x, w),
        "spmm max": (lambda x, w: spmm(csr, x, w, "max"), x, w),
        "scatter sum": (lambda s: scatter(s, index, segments, "sum"), randn(rows, 32, seed=5)),
        "scatter mean": (lambda s: scatter(s, index, segments, "mean"), randn(rows, 32, seed=6)),
        "scatter softmax": (lambda s: scatter_softmax(s, index, segments), randn(rows, 2, seed=7)),
        "outer": (lambda z, h: outer_aggregate(csr, z, h, "mean"), z, h),
    }
    for name in cases(list(runs), ["spmm max", "outer"]):
        fn, *inputs = runs[name]
        first, second = _triton_twice(fn, *inputs)
        for a, b in zip(first, second, strict=True):
            assert torch.equal(a, b), f"{name}: two runs differ"


def _molecules(n_mol: int, atoms: int, seed: int = 0):
    local = torch.ones(atoms, atoms, dtype=torch.bool).fill_diagonal_(False).nonzero().t()
    ei = torch.cat([local + m * atoms for m in range(n_mol)], 1).to(DEVICE)
    return randn(n_mol * atoms, 16, seed=seed), ei, randn(ei.size(1), 5, seed=seed + 1)


def test_edge_network_layer_is_deterministic_and_matches_torch():
    x, ei, ea = _molecules(4 if ON_CPU else 256, 6 if ON_CPU else 18)
    torch.manual_seed(0)
    conv = EdgeNetworkConv(16, 16, aggr="mean", root_weight=False, edge_dim=5, hidden=32)
    runs = []
    for backend, device in (("torch", "cpu"), ("triton", DEVICE), ("triton", DEVICE)):
        conv = conv.to(device)
        conv.zero_grad(set_to_none=True)
        with use_backend(backend):
            out = conv(x.to(device), ei.to(device), ea.to(device))
            out.square().mean().backward()
        runs.append([t.cpu() for t in (out.detach(), *(p.grad for p in conv.parameters()))])
    ref, a, b = runs
    for got, want in zip(a, ref, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    for got, again in zip(a, b, strict=True):
        assert torch.equal(got, again)


# The interpreter computes a bfloat16 tl.dot on the raw bit patterns (triton-lang/triton#11584,
# "not supported yet"), so the CPU dry run takes float16 where an outer product is involved.
HALF = cases([torch.float16, torch.bfloat16], [torch.float16])
AMP_DTYPE = cases(torch.bfloat16, torch.float16)


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_half_precision_accumulates_in_float32(dtype):
    csr, _ = graph(seed=5)
    x, w = randn(csr.num_src, 64, seed=1).to(dtype), randn(csr.num_edges, seed=2).to(dtype)
    # Both sides round a float32 sum once; summation order may put them one unit apart.
    tol = {"rtol": 1.6e-2, "atol": 1e-2} if dtype == torch.bfloat16 else {"rtol": 2e-3, "atol": 1e-3}
    for reduce in ("sum", "mean", "max"):
        weight = None if reduce == "max" else w
        with use_backend("triton"):
            out = spmm(csr, x, weight, reduce)
        with use_backend("torch"):  # float32 math on the same rounded inputs, on CPU
            ref = spmm(csr.to("cpu"), x.cpu().float(), weight.cpu().float() if weight is not None else None, reduce)
        assert out.dtype == dtype
        out = out.cpu()
        if reduce == "max":
            assert torch.equal(out.float(), ref.to(dtype).float())  # a max of the inputs: no rounding
        else:
            torch.testing.assert_close(out.float(), ref.to(dtype).float(), **tol)
    rows, segments = SIZES
    index, src = powerlaw_index(rows, segments), randn(rows, 8, seed=3).to(dtype)
    for reduce in ("sum", "max"):
        with use_backend("triton"):
            out = scatter(src, index, segments, reduce)
        with use_backend("torch"):
            ref = scatter(src.cpu().float(), index.cpu(), segments, reduce)
        assert out.dtype == dtype
        torch.testing.assert_close(out.cpu().float(), ref.to(dtype).float(), **tol)
    k, d = 32, 64
    z, h = randn(csr.num_edges, k, seed=4).to(dtype), randn(csr.num_src, d, seed=5).to(dtype)
    with use_backend("triton"):
        out = outer_aggregate(csr, z, h, "mean")
    with use_backend("torch"):
        ref = outer_aggregate(csr.to("cpu"), z.cpu().float(), h.cpu().float(), "mean")
    assert out.dtype == dtype
    torch.testing.assert_close(out.cpu().float(), ref.to(dtype).float(), **tol)


def test_autocast_mpnn_step():
    # What `fit(..., amp=True)` runs: the MPNN forward under bf16 autocast (float16 in the dry run,
    # see AMP_DTYPE), backward into float32 parameters. Every gnnkit op then sees one dtype.
    from torch_geometric.data import Batch, Data

    from gnnkit.models import build_model

    n_mol, atoms = (3, 5) if ON_CPU else (128, 18)
    x, ei, ea = _molecules(n_mol, atoms)
    per = ei.size(1) // n_mol
    graphs = [Data(x=x[m * atoms:(m + 1) * atoms, :13], edge_index=ei[:, m * per:(m + 1) * per] - m * atoms,
                   edge_attr=ea[m * per:(m + 1) * per]) for m in range(n_mol)]  # fmt: skip
    batch = Batch.from_data_list(graphs)
    torch.manual_seed(0)
    model = build_model("mpnn", 13, 1, edge_dim=5, channels=32, edge_hidden=16).to(DEVICE)
    with use_backend("triton"):
        with torch.no_grad():
            ref = model(model.prepare(batch))
        with torch.autocast(DEVICE, dtype=AMP_DTYPE):
            out = model(model.prepare(batch))
        assert out.dtype == AMP_DTYPE
        out.float().square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    err = (out.float() - ref).norm() / ref.norm()
    assert err < 5e-2, f"{AMP_DTYPE} autocast relative error {err:.3g}"
