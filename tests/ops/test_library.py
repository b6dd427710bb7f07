"""The two ways an op runs: ``torch.ops.gnnkit.*`` through the dispatcher (what compiled graphs
keep) and the direct eager call of ``_library.call`` (no dispatcher round trip). Same kernels,
so the outputs and gradients are bitwise equal, on both backends; under torch.compile the graph
keeps the registered op as one node."""

import pytest
import torch

from gnnkit.ops import CSR, DegreeBuckets, _library, use_backend
from gnnkit.ops.spmm import spmm_unchecked


def _graph(n=12, e=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, e), generator=g)
    ei[:, :n] = torch.stack([torch.arange(n), torch.arange(n).roll(1)])  # no empty row
    return CSR.from_edge_index(ei, n), g


def _cases(reduce):
    """(op name, args builder): fresh leaf tensors per call, so both paths start equal."""
    csr, g = _graph()
    x0 = torch.randn(csr.num_dst, 5, generator=g, dtype=torch.float64)
    w0 = torch.rand(csr.num_edges, generator=g, dtype=torch.float64)
    src0 = torch.randn(csr.num_edges, 3, generator=g, dtype=torch.float64)
    z0 = torch.randn(csr.num_edges, 4, generator=g, dtype=torch.float64)
    packed = DegreeBuckets.from_csr(csr).packed

    def leaf(t):
        return t.clone().requires_grad_(True)

    return {
        "spmm": lambda: ("spmm", (csr.rowptr, csr.col, leaf(w0), leaf(x0), reduce,
                                  csr.row, csr.t_rowptr, csr.t_col, csr.t_perm)),
        "scatter": lambda: ("scatter", (leaf(src0), csr.row, csr.num_dst, reduce)),
        "segment": lambda: ("segment", (leaf(src0), csr.rowptr, reduce)),
        "outer": lambda: ("outer", (csr.rowptr, csr.col, leaf(z0), leaf(x0), packed, csr.t_rowptr, csr.t_perm)),
    }  # fmt: skip


def _run(call, name, args):
    out = call(name, *args)
    out = out[0] if isinstance(out, tuple) else out
    leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    grads = torch.autograd.grad(out, leaves, torch.ones_like(out))
    return out, grads


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize(
    ("op", "reduce"),
    # the outer-product op has one reduction (its mean scales z before it)
    [(op, r) for op in ("spmm", "scatter", "segment") for r in ("sum", "mean", "max")] + [("outer", "sum")],
)
def test_direct_call_equals_the_registered_op(op, reduce, backend):
    build = _cases(reduce)[op]
    with use_backend(backend):
        direct_out, direct_grads = _run(_library.call, *build())
        op_out, op_grads = _run(lambda name, *a: getattr(torch.ops.gnnkit, name)(*a), *build())
    assert torch.equal(direct_out, op_out)
    for a, b in zip(direct_grads, op_grads, strict=True):
        assert torch.equal(a, b)


def test_direct_call_skips_the_dispatcher_in_eager_mode_only(monkeypatch):
    """Eager: the implementation runs without ``torch.ops.gnnkit.spmm``; compiled: the graph holds
    that op as one node (and nothing of its implementation)."""
    csr, g = _graph()
    x = torch.randn(csr.num_dst, 5, generator=g, requires_grad=True)
    want = spmm_unchecked(csr, x)

    def refuse(*args):
        raise AssertionError("eager call went through the dispatcher")

    with monkeypatch.context() as m:
        for name in ("spmm", "spmm_fwd"):
            m.setattr(torch.ops.gnnkit, name, refuse)
        got = spmm_unchecked(csr, x)
        got.sum().backward()  # the backward's transposed product: spmm_fwd, called directly
    assert torch.equal(got, want)
    seen = []

    def backend(gm, example_inputs):
        seen.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm

    torch._dynamo.reset()
    compiled = torch.compile(lambda x: spmm_unchecked(csr, x), backend=backend, fullgraph=True)
    torch.testing.assert_close(compiled(x), spmm_unchecked(csr, x))
    assert any("gnnkit.spmm" in t for t in seen), seen
    assert not any("sparse" in t or "addmm" in t for t in seen), seen


def test_plain_detects_traced_and_subclassed_tensors():
    from torch._subclasses.fake_tensor import FakeTensorMode

    t = torch.zeros(2)
    assert _library._plain(t, torch.nn.Parameter(torch.zeros(1)), None, "sum", 3)
    with FakeTensorMode() as mode:
        fake = mode.from_tensor(t)
    assert not _library._plain(t, fake)
    assert not _library._plain(torch.fx.Proxy(torch.fx.Graph().placeholder("x")))


def test_every_public_op_compiles_with_fullgraph():
    """Compiled code skips the value checks of every public op (they read tensors on the host), so
    each compiles with ``fullgraph=True``, forward and backward, and gives the eager result."""
    import gnnkit.ops as ops

    csr, g = _graph()
    ei = torch.stack([csr.col, csr.row])
    x = torch.randn(csr.num_src, 5, generator=g, dtype=torch.float64, requires_grad=True)
    src = torch.randn(csr.num_edges, 3, generator=g, dtype=torch.float64, requires_grad=True)
    z = torch.randn(csr.num_edges, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.rand(csr.num_edges, generator=g, dtype=torch.float64, requires_grad=True)
    calls = {
        "scatter": lambda: ops.scatter(src, csr.row, csr.num_dst, "mean"),
        "segment": lambda: ops.segment(src, csr.rowptr, "max"),
        "scatter_softmax": lambda: ops.scatter_softmax(src, csr.row, csr.num_dst),
        "spmm": lambda: ops.spmm(csr, x, w, "sum"),
        "outer_aggregate": lambda: ops.outer_aggregate(csr, z, x, "sum", z_order="csr"),
        "CSR.from_edge_index": lambda: ops.spmm(ops.CSR.from_edge_index(ei, csr.num_dst), x, w),
    }
    public = {n for n in ops.__all__ if not n.endswith("_unchecked")}
    host_algorithms = {"hop_distances", "gcn_adjacency", "tree_decomposition", "khop_neighbourhood",
                       "neighbourhood_homophily", "set_backend", "get_backend", "use_backend", "DegreeBuckets", "cpu_buckets",
                       "outer_aggregate_flops"}  # host-side builders, backend switches and the cost model
    assert public - host_algorithms == {n.split(".")[0] for n in calls}  # a new public op needs a case here
    for name, call in calls.items():
        torch._dynamo.reset()
        compiled = torch.compile(call, fullgraph=True, dynamic=True)
        out, ref = compiled(), call()
        torch.testing.assert_close(out, ref, msg=name)
        grads = torch.autograd.grad(out.sum(), [t for t in (x, src, z, w)], allow_unused=True)
        refs = torch.autograd.grad(ref.sum(), [t for t in (x, src, z, w)], allow_unused=True)
        for a, b in zip(grads, refs):
            assert (a is None) == (b is None), name
            if a is not None:
                torch.testing.assert_close(a, b, msg=name)
