"""Bad inputs at the layers' public entries (issue 12's layer items): each is a clear error naming
the input, checked before any index is used, or, for half precision, it works (float32
accumulation). Every case is a row of recipes/results/reliability.md."""

import pytest
import torch

from gnnkit.nn import GCNConv, GGNNConv, Graph, Set2Set
from gnnkit.ops import CSR, spmm

pytestmark = pytest.mark.usefixtures("one_thread")


def _case(record_property, area, case, outcome):
    record_property("reliability", {"area": area, "case": case, "outcome": outcome})


def test_gcnconv_negative_edge_is_an_error_not_a_self_loop(record_property):
    _case(record_property, "GCNConv", "edge `(-1, -1)` in `edge_index`",
          "ValueError naming the negative index, raised before self-loops are added (it used to become node N-1's self-loop)")
    conv = GCNConv(3, 2)
    ei = torch.tensor([[0, 1, -1], [1, 2, -1]])
    with pytest.raises(ValueError, match=r"edge_index\[0\] \(sources\) contains a negative value \(-1\)"):
        conv(torch.randn(4, 3), ei)


def test_gcnconv_float_edge_index_is_a_type_error(record_property):
    _case(record_property, "GCNConv", "float `edge_index` with `normalize=False`",
          "TypeError naming edge_index's dtype (it used to be truncated to integers)")
    with pytest.raises(TypeError, match="edge_index must be an int64 or int32 tensor, got dtype torch.float32"):
        GCNConv(3, 2, normalize=False)(torch.randn(4, 3), torch.tensor([[0.0, 1.7], [1.0, 2.2]]))


def test_gcnconv_self_loop_out_of_range(record_property):
    _case(record_property, "GCNConv", "self-loop on node `N` (one past the last)",
          "ValueError naming the index and num_nodes (it used to be a raw IndexError)")
    with pytest.raises(ValueError, match=r"edge_index\[0\] \(sources\) contains 4, which is out of range for num_nodes=4"):
        GCNConv(3, 2)(torch.randn(4, 3), torch.tensor([[0, 4], [1, 4]]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_spmm_sum_on_cpu(dtype, record_property):
    _case(record_property, "spmm / GCNConv", f"`{str(dtype).split('.')[1]}` inputs with `reduce=\"sum\"` on CPU",
          "works: accumulated in float32, returned in the input dtype (it used to fail in MKL's sparse product)")
    ei = torch.randint(0, 9, (2, 30))
    csr = CSR.from_edge_index(ei, 9)
    x, w = torch.randn(9, 4), torch.rand(30)
    out = spmm(csr, x.to(dtype), w.to(dtype), "sum")
    assert out.dtype == dtype
    torch.testing.assert_close(out, spmm(csr, x.to(dtype).float(), w.to(dtype).float(), "sum").to(dtype))
    conv = GCNConv(4, 3).to(dtype)
    assert conv(x.to(dtype), ei).dtype == dtype


def test_set2set_batch_out_of_range(record_property):
    _case(record_property, "Set2Set", "a batch id >= num_graphs",
          "ValueError naming the batch value and num_graphs (it used to be an IndexError inside the attention)")
    with pytest.raises(ValueError, match="batch contains 3, which is out of range for num_graphs=2"):
        Set2Set(4, processing_steps=2)(torch.randn(5, 4), torch.tensor([0, 0, 1, 3, 1]), 2)
    graph = Graph.from_edge_index(torch.zeros(2, 0, dtype=torch.long), 5, batch=torch.tensor([0, 0, 1, 1, 1]))
    with pytest.raises(ValueError, match="num_graphs=3 but the graph holds 2 graphs"):
        Set2Set(4, processing_steps=2)(torch.randn(5, 4), graph, 3)


def test_ggnnconv_zero_channels(record_property):
    _case(record_property, "GGNNConv", "`GGNNConv(0, ...)` / `num_edge_types=0`",
          "ValueError naming the argument (it used to be a ZeroDivisionError in the initialiser)")
    with pytest.raises(ValueError, match="channels must be a positive int, got 0"):
        GGNNConv(0, 3)
    with pytest.raises(ValueError, match="num_edge_types must be a positive int, got 0"):
        GGNNConv(4, 0)


def test_edge_type_out_of_range_for_the_layer(record_property):
    _case(record_property, "GGNNConv / RelationalConv", "an edge type >= the layer's num_edge_types",
          "ValueError naming the type and the layer's count, read when the graph was built (no per-step check)")
    with pytest.raises(ValueError, match="edge_type contains 3, which is out of range for num_edge_types=3"):
        GGNNConv(4, 3)(torch.randn(5, 4), torch.tensor([[0, 1], [1, 2]]), torch.tensor([0, 3]))
