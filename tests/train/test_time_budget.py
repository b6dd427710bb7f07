"""A training run bounded by training wall-clock (TrainConfig.time_budget) and epochs cut from an
endless stream of passes (ChunkSampler): stop, schedule by time, resume, errors."""

import pytest
import torch
from torch import nn
from torch_geometric.data import Data

from gnnkit.nn import SumReadout
from gnnkit.train import ChunkSampler, IdentityTargets, TrainConfig, fit, make_loader

pytestmark = pytest.mark.usefixtures("one_thread")


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.node = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
        self.readout = SumReadout()

    def forward(self, batch):
        return self.readout(self.node(batch.x), batch.batch, batch.num_graphs)


def graphs(n: int, seed: int) -> list[Data]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.randn(3, 3, generator=g)
        out.append(Data(x=x, edge_index=torch.zeros(2, 0, dtype=torch.long), y=x[:, :1].sum(0, keepdim=True)))
    return out


# -- ChunkSampler -----------------------------------------------------------------------------------


def epoch_indices(sampler, epoch):
    sampler.set_epoch(epoch)
    return list(sampler)


def test_chunks_tile_a_stream_of_permutations():
    s = ChunkSampler(10, 4, seed=7)
    stream = sum((epoch_indices(s, e) for e in range(1, 6)), [])  # 20 indices = 2 passes
    assert len(s) == 4 and len(stream) == 20
    for p in range(2):  # each pass is a permutation, the one drawn from seed + p
        expected = torch.randperm(10, generator=torch.Generator().manual_seed(7 + p)).tolist()
        assert stream[10 * p : 10 * (p + 1)] == expected
    assert epoch_indices(ChunkSampler(10, 4, seed=7), 3) == stream[8:12]  # a fresh sampler (a resume) agrees


def test_chunks_larger_than_the_dataset_and_ranks():
    s = ChunkSampler(3, 7, seed=0)
    first = epoch_indices(s, 1)
    assert len(first) == 7 and sorted(first[:3]) == [0, 1, 2] and sorted(first[3:6]) == [0, 1, 2]
    shards = [epoch_indices(ChunkSampler(10, 5, seed=1, rank=r, world_size=2), 2) for r in range(2)]
    whole = epoch_indices(ChunkSampler(10, 5, seed=1), 2)
    assert shards == [whole[0::2], whole[1::2]] and len(ChunkSampler(10, 5, rank=1, world_size=2)) == 2


@pytest.mark.parametrize("kw,match", [({"length": 0, "epoch_size": 2}, "length"), ({"length": 4, "epoch_size": 0}, "epoch_size"),
                                      ({"length": 4, "epoch_size": 1.5}, "epoch_size")])  # fmt: skip
def test_chunk_sampler_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        ChunkSampler(**kw)


def test_make_loader_epoch_size():
    data = graphs(10, 0)
    loader = make_loader(data, 4, shuffle=True, seed=2, epoch_size=6)
    assert len(loader) == 2 and sum(b.num_graphs for b in loader) == 6
    with pytest.raises(ValueError, match="training loaders"):
        make_loader(data, 4, shuffle=False, epoch_size=6)


# -- time budget ------------------------------------------------------------------------------------


def timed_run(tmp_path, budget=0.4, **kw):
    train, val = graphs(64, 0), graphs(16, 1)
    loaders = (make_loader(train, 8, shuffle=True, seed=0, epoch_size=32), make_loader(val, 8, shuffle=False))
    torch.manual_seed(0)
    cfg = TrainConfig(device="cpu", progress=False, log_epochs=False, out_dir=str(tmp_path), epochs=10_000,
                      time_budget=budget, lr=1e-2, final_lr_factor=0.1, **kw)  # fmt: skip
    return fit(Tiny(), *loaders, None, IdentityTargets(), cfg)


def test_time_budget_ends_the_run_and_decays_the_lr_over_it(tmp_path):
    res = timed_run(tmp_path, schedule="linear")
    last = res.history[-1]
    assert not res.interrupted and res.error is None
    assert 0.4 <= last["train_seconds"] < 0.4 + 0.5 and res.epochs_completed == len(res.history) < 10_000
    assert res.train_seconds == last["train_seconds"] < res.seconds  # training alone; seconds adds evaluation
    assert [r["train_seconds"] for r in res.history] == sorted(r["train_seconds"] for r in res.history)
    # Whole epochs of 32 molecules, then the last one cut at the budget.
    assert all(r["train_molecules"] == 32 * (i + 1) for i, r in enumerate(res.history[:-1]))
    assert 32 * (len(res.history) - 1) < last["train_molecules"] <= 32 * len(res.history)
    # The linear decay follows the time: at the end of the budget the lr is at its end value.
    assert last["lr"] == pytest.approx(1e-2 * 0.1, rel=0.02)
    mid = min(res.history, key=lambda r: abs(r["train_seconds"] - 0.2))
    expected = 1e-2 * (1 - 0.9 * mid["train_seconds"] / 0.4)
    assert mid["lr"] == pytest.approx(expected, rel=0.1)


def test_time_budget_resume_after_the_end_trains_nothing(tmp_path):
    first = timed_run(tmp_path, schedule="constant")
    again = timed_run(tmp_path, schedule="constant", resume=True)
    assert not again.interrupted and again.epochs_completed == first.epochs_completed
    assert again.history == first.history and again.test_mae is None


def test_time_budget_resume_continues_the_clock(tmp_path):
    cut = timed_run(tmp_path, budget=0.6, schedule="constant", stop_after_epoch=1)
    assert cut.interrupted and cut.epochs_completed == 1
    rest = timed_run(tmp_path, budget=0.6, schedule="constant", resume=True)
    assert not rest.interrupted and rest.history[0] == cut.history[0]
    assert 0.6 <= rest.history[-1]["train_seconds"] < 0.6 + 0.5
    assert rest.train_seconds == rest.history[-1]["train_seconds"]  # summed over both sessions


@pytest.mark.parametrize("budget", [0, -1.0, float("inf"), float("nan")])
def test_time_budget_errors(budget):
    with pytest.raises(ValueError, match="time_budget"):
        TrainConfig(time_budget=budget)
