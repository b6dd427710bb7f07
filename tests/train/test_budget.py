"""BudgetChunks: evaluation points of a time and an epoch budget in one run, and reading each
budget's result off fit's history."""

import math

import pytest
import torch
from torch import nn
from torch_geometric.data import Data
from torch_geometric.nn import global_mean_pool

from gnnkit.train import TrainConfig, fit, make_loader
from gnnkit.train import budget as budget_module
from gnnkit.train.budget import BudgetChunks


class FakeBatch:
    num_graphs = 2


class FakeLoader:
    """3 batches per pass; each batch advances the fake clock by ``dt`` (the training step)."""

    def __init__(self, clock, dt):
        self.clock, self.dt, self.passes = clock, dt, []
        self.sampler = self

    def set_epoch(self, epoch):
        self.passes.append(epoch)

    def __len__(self):
        return 3

    def __iter__(self):
        for _ in range(3):
            self.clock[0] += self.dt
            yield FakeBatch()


@pytest.fixture
def clock(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(budget_module.time, "perf_counter", lambda: now[0])
    return now


def _drain(chunks, clock, eval_seconds=0.0):
    sizes = []
    for _ in range(chunks.num_chunks):
        sizes.append(len(list(chunks)))
        clock[0] += eval_seconds  # evaluation between chunks is not training time
    return sizes


def test_fast_model_reaches_the_epoch_marks_first(clock):
    loader = FakeLoader(clock, 0.01)
    chunks = BudgetChunks(loader, seconds=0.3, time_evals=3, epochs=2)
    sizes = _drain(chunks, clock, eval_seconds=5.0)
    assert [p.budget for p in chunks.points] == ["epochs", "epochs", "time", "time", "time"]
    assert [p.batches for p in chunks.points] == [3, 6, 10, 20, 30] and sizes == [3, 3, 4, 10, 10]
    assert [p.seconds for p in chunks.points] == pytest.approx([0.03, 0.06, 0.1, 0.2, 0.3])
    assert chunks.molecules == 60 and loader.passes == list(range(1, 11))
    with pytest.raises(RuntimeError, match="chunks"):
        list(chunks)


def test_slow_model_gets_one_batch_per_chunk_and_the_epoch_after_the_time(clock):
    chunks = BudgetChunks(FakeLoader(clock, 0.2), seconds=0.3, time_evals=3, epochs=1)
    assert _drain(chunks, clock) == [1, 1, 1, 1]
    # The third batch ends the first pass before the third time mark is tested.
    assert [p.budget for p in chunks.points] == ["time", "time", "epochs", "time"]


def test_a_time_budget_alone_cuts_passes_into_equal_stretches_of_training(clock):
    """epochs=0: only the time marks end chunks (the GPU check's fixed training time in chunks),
    over as many passes as the time takes."""
    loader = FakeLoader(clock, 0.1)
    chunks = BudgetChunks(loader, seconds=1.0, time_evals=2, epochs=0)
    assert chunks.num_chunks == 2
    assert _drain(chunks, clock, eval_seconds=5.0) == [5, 5]
    assert [p.budget for p in chunks.points] == ["time", "time"]
    assert [p.seconds for p in chunks.points] == pytest.approx([0.5, 1.0])
    assert chunks.passes == 4 and loader.passes == [1, 2, 3, 4]  # 10 batches of 3 per pass
    assert chunks.result(_history([0.5, 0.4], [5.0, 4.0]), "time").test_mae == [4.0]
    with pytest.raises(ValueError, match="no epoch budget"):
        chunks.result(_history([0.5, 0.4], [5.0, 4.0]), "epochs")


def _history(scores, improved_test):
    rows, best = [], math.inf
    for i, s in enumerate(scores):
        row = {"epoch": i + 1, "val_mae_u0": s, "val_score": s}
        if s < best:
            best = s
            row["test_mae_u0"] = improved_test[i]
        rows.append(row)
    return rows


def test_result_selects_the_best_validation_point_within_each_budget(clock):
    chunks = BudgetChunks(FakeLoader(clock, 0.01), seconds=0.3, time_evals=3, epochs=2)
    _drain(chunks, clock)  # points: epochs, epochs, time, time, time
    history = _history([0.5, 0.4, 0.45, 0.3, 0.35], [5.0, 4.0, None, 3.0, None])
    ep = chunks.result(history, "epochs")
    assert (ep.point, ep.last, ep.val_mae, ep.test_mae, ep.molecules, ep.complete) == (1, 1, [0.4], [4.0], 12, True)
    t = chunks.result(history, "time")
    assert (t.point, t.last, t.val_mae, t.test_mae, t.complete) == (3, 4, [0.3], [3.0], True)
    assert t.seconds == pytest.approx(0.3)
    # Non-finite scores are never selected; a run that stopped early has incomplete budgets.
    nan = _history([math.nan, 0.6, math.nan], [None, 6.0, None])
    r = chunks.result(nan, "time")
    assert (r.point, r.last, r.test_mae, r.complete) == (1, 2, [6.0], False)
    assert chunks.result(nan[:1], "epochs").point is None
    with pytest.raises(ValueError, match="budget"):
        chunks.result(history, "steps")
    with pytest.raises(ValueError, match="rows"):
        chunks.result(history + history, "time")


def test_bad_arguments():
    loader = FakeLoader([0.0], 0.1)
    for kwargs, match in (({"seconds": 0}, "seconds"), ({"seconds": math.inf}, "seconds"), ({"time_evals": 0}, "time_evals"),
                          ({"epochs": 1.5}, "epochs"), ({"epochs": -1}, "epochs")):  # fmt: skip
        args = {"seconds": 1.0, "time_evals": 1, "epochs": 1, **kwargs}
        with pytest.raises(ValueError, match=match):
            BudgetChunks(loader, **args)

    class Empty(FakeLoader):
        def __len__(self):
            return 0

    with pytest.raises(ValueError, match="empty"):
        BudgetChunks(Empty([0.0], 0.1), seconds=1.0, time_evals=1, epochs=1)


class TinyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 1)

    def forward(self, batch):
        return global_mean_pool(self.lin(batch.x), batch.batch, size=batch.num_graphs)


def _loader(data, seed):
    return make_loader(data, batch_size=4, shuffle=True, seed=seed)


def test_each_budget_equals_a_run_stopped_at_it(clock, one_thread):
    """With a constant learning rate, the epoch budget's points of a combined run are exactly
    those of a plain N-epoch run, even when time marks fall between them."""
    g = torch.Generator().manual_seed(0)
    data = [Data(x=torch.randn(3, 4, generator=g), y=torch.randn(1, 1, generator=g)) for _ in range(10)]
    val = make_loader(data[:6], batch_size=3, shuffle=False)

    class Ticking:
        """The training loader, one fake second per batch."""

        def __init__(self, loader):
            self.loader, self.sampler = loader, loader.sampler

        def __len__(self):
            return len(self.loader)

        def __iter__(self):
            for batch in self.loader:
                clock[0] += 1.0
                yield batch

    cfg = dict(lr=0.05, schedule="constant", seed=3, device="cpu", progress=False, log_epochs=False)
    torch.manual_seed(1)
    plain_model = TinyModel()
    plain = fit(plain_model, _loader(data, 3), val, val, config=TrainConfig(epochs=3, **cfg))
    # 3 batches per pass; time marks at 2, 4, 6, 8 s interleave with the pass ends at 3, 6, 9 batches.
    chunks = BudgetChunks(Ticking(_loader(data, 3)), seconds=8.0, time_evals=4, epochs=3)
    torch.manual_seed(1)
    combined = fit(TinyModel(), chunks, val, val, config=TrainConfig(epochs=chunks.num_chunks, **cfg))
    kinds = [p.budget for p in chunks.points]
    assert kinds.count("epochs") == 3 and kinds.index("epochs") > 0  # interleaved
    epoch_rows = [row for row, p in zip(combined.history, chunks.points) if p.budget == "epochs"]
    assert [r["val_mae"] for r in epoch_rows] == pytest.approx([r["val_mae"] for r in plain.history], rel=1e-12)
    result = chunks.result(combined.history, "epochs")
    assert result.val_mae == pytest.approx(plain.val_mae, rel=1e-12)
    assert result.test_mae == pytest.approx(plain.test_mae, rel=1e-12)
