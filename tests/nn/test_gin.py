"""GINConv (the worked example of a layer on the base) == torch_geometric.nn.GINConv."""

import pytest
import torch
from torch import nn
from torch_geometric.nn import GINConv as PygGINConv

from gnnkit.nn import GINConv, Graph

pytestmark = pytest.mark.usefixtures("one_thread")


def _mlp():
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)).double()


@pytest.mark.parametrize("eps,train_eps", [(0.0, False), (0.3, True)])
def test_matches_pyg(eps, train_eps):
    ei = torch.randint(0, 10, (2, 40))  # nodes 10, 11 isolated
    x = torch.randn(12, 5, dtype=torch.float64)
    ours = GINConv(_mlp(), eps=eps, train_eps=train_eps).double()
    theirs = PygGINConv(_mlp(), eps=eps, train_eps=train_eps).double()
    theirs.nn.load_state_dict(ours.nn.state_dict())
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, ref = ours(x1, ei), theirs(x2, ei)
    torch.testing.assert_close(out, ref)
    out.square().sum().backward()
    ref.square().sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(ours.nn[0].weight.grad, theirs.nn[0].weight.grad)
    if train_eps:
        torch.testing.assert_close(ours.eps.grad, theirs.eps.grad)
    torch.testing.assert_close(ours(x, Graph.from_edge_index(ei, 12)), ref.detach())


def test_bipartite_matches_pyg():
    ei = torch.stack([torch.randint(0, 7, (20,)), torch.randint(0, 4, (20,))])
    x_src, x_dst = torch.randn(7, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    ours, theirs = GINConv(_mlp(), eps=0.1), PygGINConv(_mlp(), eps=0.1)
    theirs.nn.load_state_dict(ours.nn.state_dict())
    torch.testing.assert_close(ours((x_src, x_dst), ei), theirs((x_src, x_dst), ei))


def test_permutation_equivariance():
    ei = torch.randint(0, 9, (2, 30))
    x = torch.randn(9, 5, dtype=torch.float64)
    conv = GINConv(_mlp())
    perm = torch.randperm(9)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(9)
    torch.testing.assert_close(conv(x[perm], inv[ei]), conv(x, ei)[perm])
