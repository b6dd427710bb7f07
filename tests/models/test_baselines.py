import pytest
import torch
from torch import nn

from gnnkit.models import build_model
from gnnkit.models.baselines import GridCNN, SeqRNN


def test_grid_cnn_shapes_and_batch_independence():
    cnn = GridCNN(5, 2, dim=3, channels=(4, 8), hidden=16).eval()
    grids = torch.randn(3, 5, 8, 8, 8)
    out = cnn(grids)
    assert out.shape == (3, 2)
    # Eval mode (batch-norm running statistics): each molecule's output ignores the others.
    torch.testing.assert_close(cnn(grids[1:2]), out[1:2])
    cnn2d = GridCNN(1, 3, dim=2, channels=(4,), pool="avg", batch_norm=False)
    assert cnn2d(torch.randn(2, 1, 5, 7)).shape == (2, 3)
    assert sum(p.numel() for p in cnn.parameters()) > 0


def test_grid_cnn_reads_the_voxelised_batch():
    from torch_geometric.data import Data
    from torch_geometric.loader import DataLoader

    from gnnkit.data import Voxelize

    vox = Voxelize(grid_size=8, resolution=1.0)
    mols = [vox(Data(pos=torch.randn(n, 3), z=torch.tensor([6] + [1] * (n - 1)))) for n in (3, 5)]
    batch = next(iter(DataLoader(mols, batch_size=2)))
    assert batch.grid.shape == (2, 5, 8, 8, 8)
    cnn = GridCNN(5, 1, channels=(4, 4)).eval()
    torch.testing.assert_close(cnn(batch), cnn(batch.grid))


def test_grid_cnn_learns_a_simple_target(one_thread):
    torch.manual_seed(0)
    grids = torch.rand(32, 2, 6, 6)
    y = grids[:, 0].mean(dim=(1, 2), keepdim=False).unsqueeze(1) * 10
    cnn = GridCNN(2, 1, dim=2, channels=(8,), hidden=16)
    opt = torch.optim.Adam(cnn.parameters(), lr=1e-2)
    first = None
    for _ in range(40):
        loss = nn.functional.mse_loss(cnn(grids), y)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.2 * first


def test_seq_rnn_ignores_padding_and_batch_neighbours():
    rnn = SeqRNN(10, 2, embed_dim=8, hidden=6, num_layers=2).eval()
    tokens = torch.tensor([[3, 4, 5, 0, 0], [6, 7, 8, 9, 2]])
    out = rnn(tokens)  # lengths inferred from the padding id
    assert out.shape == (2, 2)
    torch.testing.assert_close(rnn(tokens[:1, :3]), out[:1])
    torch.testing.assert_close(rnn(tokens, torch.tensor([3, 5])), out)
    for readout, cell in (("mean", "gru"), ("last", "lstm"), ("mean", "lstm")):
        m = SeqRNN(10, 1, embed_dim=4, hidden=5, cell=cell, readout=readout).eval()
        torch.testing.assert_close(m(tokens[:1, :3]), m(tokens)[:1])


def test_seq_rnn_last_readout_is_the_final_states_of_both_directions():
    rnn = SeqRNN(10, 1, embed_dim=4, hidden=3, num_layers=1).eval()
    tokens = torch.tensor([[1, 2, 3, 4, 0, 0]])
    emb = rnn.embed(tokens[:, :4])
    gru = rnn.rnn
    fwd = nn.GRU(4, 3, batch_first=True)
    bwd = nn.GRU(4, 3, batch_first=True)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(fwd, name + "_l0").copy_(getattr(gru, name + "_l0"))
            getattr(bwd, name + "_l0").copy_(getattr(gru, name + "_l0_reverse"))
    h = torch.cat([fwd(emb)[0][:, -1], bwd(emb.flip(1))[0][:, -1]], dim=1)
    torch.testing.assert_close(rnn(tokens), rnn.head(h))


def test_seq_rnn_reads_the_encoded_batch():
    from torch_geometric.data import Data
    from torch_geometric.loader import DataLoader

    from gnnkit.data import EncodeSmiles, SmilesVocab

    vocab = SmilesVocab.build(["CCO", "C#N", "OC=O"])
    enc = EncodeSmiles(vocab, max_length=6)
    batch = next(iter(DataLoader([enc(Data(smiles=s, num_nodes=1)) for s in ("CCO", "C#N", "OC=O")], batch_size=3)))
    rnn = SeqRNN(len(vocab), 1).eval()
    torch.testing.assert_close(rnn(batch), rnn(batch.tokens, batch.num_tokens))


def test_registry():
    cnn = build_model("cnn", 5, 1, channels=(4,))
    rnn = build_model("rnn", 12, 1, hidden=8)
    assert isinstance(cnn, GridCNN) and isinstance(rnn, SeqRNN)
    with pytest.raises(TypeError, match="no_such_option"):
        build_model("cnn", 5, 1, no_such_option=1)
    with pytest.raises(TypeError, match="reads no edge features"):
        build_model("cnn", 5, 1, edge_dim=5)


def test_errors():
    with pytest.raises(ValueError, match="dim"):
        GridCNN(5, 1, dim=4)
    with pytest.raises(ValueError, match="kernel_size"):
        GridCNN(5, 1, kernel_size=2)
    cnn = GridCNN(5, 1, channels=(4, 4))
    with pytest.raises(ValueError, match="grid must have shape"):
        cnn(torch.randn(2, 3, 8, 8, 8))
    with pytest.raises(ValueError, match="spatial size"):
        cnn(torch.randn(2, 5, 2, 8, 8))
    with pytest.raises(TypeError, match="data.grid"):
        cnn(object())
    rnn = SeqRNN(5, 1)
    with pytest.raises(ValueError, match="tokens must be ids"):
        rnn(torch.tensor([[1, 7]]))
    with pytest.raises(ValueError, match="lengths"):
        rnn(torch.tensor([[1, 2]]), torch.tensor([3]))
    with pytest.raises(ValueError, match="lengths"):
        rnn(torch.tensor([[0, 0]]))
    with pytest.raises(ValueError, match="cell"):
        SeqRNN(5, 1, cell="rnn")
    with pytest.raises(TypeError, match="data.tokens"):
        rnn(object())
