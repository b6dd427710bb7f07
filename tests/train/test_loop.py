"""The training loop with a tiny model: learning, exact resume, checkpoints, logs, samplers."""

import csv
import io
import os
import re
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch_geometric.data import Data

from gnnkit.nn import SumReadout
from gnnkit.train import (
    IdentityTargets,
    ShardSampler,
    TrainConfig,
    atomic_save,
    denormals_flushed,
    evaluate,
    fit,
    flush_denormal,
    loader_throughput,
    make_loader,
)
from gnnkit.train.checkpoint import DamagedFileError
from gnnkit.train.distributed import DistInfo


class TinyNet(nn.Module):
    """Sum readout of a per-node MLP, plus dropout so that resume must restore the RNG."""

    def __init__(self, in_channels: int = 3, hidden: int = 16, out: int = 1) -> None:
        super().__init__()
        self.node = nn.Sequential(nn.Linear(in_channels, hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, out))
        self.readout = SumReadout()

    def forward(self, batch):
        return self.readout(self.node(batch.x), batch.batch, batch.num_graphs)


def graphs(n: int, seed: int) -> list[Data]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        k = int(torch.randint(1, 6, (1,), generator=g))
        x = torch.randn(k, 3, generator=g)
        y = (x[:, :1] * 2 - x[:, 1:2]).sum(0, keepdim=True) + 0.5  # a sum over nodes: learnable
        out.append(Data(x=x, edge_index=torch.zeros(2, 0, dtype=torch.long), y=y))
    return out


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def loaders():
    train, val, test = graphs(96, 0), graphs(32, 1), graphs(32, 2)

    def make():
        return (make_loader(train, 16, shuffle=True, seed=3), make_loader(val, 16, shuffle=False),
                make_loader(test, 16, shuffle=False))  # fmt: skip

    return make


def run(loaders, out_dir=None, **kw):
    torch.manual_seed(0)
    model = TinyNet()
    kw.setdefault("lr", 1e-2)
    cfg = TrainConfig(device="cpu", progress=False, out_dir=None if out_dir is None else str(out_dir), **kw)
    return model, fit(model, *loaders(), IdentityTargets(), cfg)


def test_fit_learns_and_writes_logs(loaders, tmp_path):
    model, res = run(loaders, tmp_path, epochs=6, target_names=["y"], schedule="constant", lr=3e-2)
    first, last = res.history[0], res.history[-1]
    assert last["train_loss"] < 0.3 * first["train_loss"]
    assert res.best_epoch == min(res.history, key=lambda r: r["val_score"])["epoch"]
    assert res.val_mae[0] == pytest.approx(res.history[res.best_epoch - 1]["val_mae_y"])
    assert res.test_mae is not None and res.epochs_completed == 6 and not res.interrupted
    assert res.train_molecules_per_second > 0
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 7)) and "val_mae_y" in rows[0]
    assert (tmp_path / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    best = torch.load(tmp_path / "best_model.pt", weights_only=False)
    assert best["epoch"] == res.best_epoch
    # The test MAE recorded is that of the best epoch's weights.
    model.load_state_dict(best["model"])
    assert evaluate(model, loaders()[2], IdentityTargets(), torch.device("cpu"))[0].item() == pytest.approx(res.test_mae[0])
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


@pytest.mark.parametrize("schedule", ["linear", "plateau"])
def test_resume_gives_identical_numbers(loaders, tmp_path, schedule):
    _, full = run(loaders, tmp_path / "a", epochs=4, schedule=schedule)
    _, part = run(loaders, tmp_path / "b", epochs=4, schedule=schedule, stop_after_epoch=2)
    assert part.interrupted and part.epochs_completed == 2
    _, resumed = run(loaders, tmp_path / "b", epochs=4, schedule=schedule, resume=True)
    assert resumed.epochs_completed == 4 and not resumed.interrupted
    strip = lambda h: [{k: v for k, v in r.items() if "second" not in k} for r in h]  # noqa: E731  (timings)
    assert strip(resumed.history) == strip(full.history)
    assert resumed.val_mae == full.val_mae and resumed.test_mae == full.test_mae
    assert resumed.best_epoch == full.best_epoch


def test_flush_denormal_flushes_and_restores():
    tiny = torch.finfo(torch.float32).tiny
    assert not denormals_flushed()
    assert (torch.full((1,), tiny) * 0.5).item() > 0  # a subnormal result, kept by default
    with flush_denormal():
        assert denormals_flushed()
        assert (torch.full((1,), tiny) * 0.5).item() == 0.0
        with flush_denormal(False):  # disabled: leaves the mode alone
            assert denormals_flushed()
        with flush_denormal():  # nested: restores the outer (flushing) mode
            pass
        assert denormals_flushed()
    assert not denormals_flushed()


def test_flush_denormal_reaches_intra_op_threads_started_before():
    """A parallel element-wise op splits its output between torch's threads: every part must be
    flushed, also on pool threads that started before the mode was set."""
    threads = torch.get_num_threads()
    tiny = torch.finfo(torch.float32).tiny
    x = torch.full((1 << 20,), tiny)
    try:
        torch.set_num_threads(2)
        assert bool(((x * 0.5) != 0).all())  # the pool now runs, without flushing
        with flush_denormal():
            assert int(((x * 0.5) != 0).sum()) == 0
        assert bool(((x * 0.5) != 0).all())  # restored on every thread
    finally:
        torch.set_num_threads(threads)


class FlushRecordingNet(TinyNet):
    """Records, at every forward, whether subnormals are flushed."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[bool] = set()

    def forward(self, batch):
        self.seen.add(denormals_flushed())
        return super().forward(batch)


@pytest.mark.parametrize("flush", [True, False])
def test_fit_flushes_denormals_on_cpu_and_restores(loaders, flush):
    torch.manual_seed(0)
    model = FlushRecordingNet()
    fit(model, *loaders(), IdentityTargets(), TrainConfig(device="cpu", progress=False, epochs=1, flush_denormal=flush))
    assert model.seen == {flush}  # training and evaluation alike
    assert not denormals_flushed()


def test_resume_without_checkpoint_starts_fresh(loaders, tmp_path):
    _, a = run(loaders, tmp_path / "a", epochs=2)
    _, b = run(loaders, tmp_path / "b", epochs=2, resume=True)
    assert a.val_mae == b.val_mae


def test_train_order_depends_only_on_seed_and_epoch():
    data = graphs(40, 0)
    order = lambda loader: [torch.cat([b.y for b in loader]).flatten().tolist()]  # noqa: E731
    a, b = make_loader(data, 8, shuffle=True, seed=5), make_loader(data, 8, shuffle=True, seed=5)
    a.sampler.set_epoch(3)
    torch.manual_seed(123)  # the global RNG does not matter
    first = order(a)
    b.sampler.set_epoch(3)
    assert order(b) == first
    b.sampler.set_epoch(4)
    assert order(b) != first


def test_shard_sampler_covers_each_item_once():
    shards = [list(ShardSampler(11, r, 3)) for r in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(11)) and [len(s) for s in shards] == [4, 4, 3]
    loaders = [make_loader(graphs(11, 0), 4, shuffle=False, dist_info=DistInfo(r, 3)) for r in range(3)]
    assert sum(len(loader.dataset) for loader in loaders) == 33  # same dataset, different shards
    assert sum(b.num_graphs for loader in loaders for b in loader) == 11
    with pytest.raises(ValueError, match="rank"):
        ShardSampler(5, 3, 3)


def test_atomic_save_replaces(tmp_path):
    path = tmp_path / "ck.pt"
    atomic_save({"a": 1}, path)
    atomic_save({"a": 2}, path)
    assert torch.load(path)["a"] == 2 and os.listdir(tmp_path) == ["ck.pt"]


def test_loader_throughput_counts_graphs():
    assert loader_throughput(make_loader(graphs(20, 0), 4, shuffle=False), max_batches=2) > 0


def test_bad_config():
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="step")
    with pytest.raises(ValueError, match="out_dir"):
        TrainConfig(resume=True)
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=0)
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(graphs(2, 0), 0, shuffle=False)


# -- faults: damaged checkpoints, changed settings, divergence (recorded for reliability.md) ----------


def _flip(path, count: int = 64) -> None:
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_resume_from_damaged_checkpoint_falls_back_and_matches(loaders, tmp_path, capsys, record_property):
    record_property("reliability", {
        "area": "training loop", "case": "resume from a checkpoint with 64 flipped bytes",
        "outcome": "falls back to checkpoint.prev.pt (warning names the file); final numbers equal an "
                   "uninterrupted run's. Without a previous one: DamagedFileError naming the file"})  # fmt: skip
    _, full = run(loaders, tmp_path / "a", epochs=4)
    run(loaders, tmp_path / "b", epochs=4, stop_after_epoch=3)
    assert (tmp_path / "b" / "checkpoint.prev.pt").exists()
    _flip(tmp_path / "b" / "checkpoint.pt")
    _, resumed = run(loaders, tmp_path / "b", epochs=4, resume=True)
    assert f"{tmp_path / 'b' / 'checkpoint.pt'}" in capsys.readouterr().err
    assert resumed.val_mae == full.val_mae and resumed.test_mae == full.test_mae
    strip = lambda h: [{k: v for k, v in r.items() if "second" not in k} for r in h]  # noqa: E731
    assert strip(resumed.history) == strip(full.history)
    # no previous checkpoint to fall back to: refused, naming the file
    _flip(tmp_path / "b" / "checkpoint.pt")
    (tmp_path / "b" / "checkpoint.prev.pt").unlink()
    # (which check fires, the checksum or the zip reader, depends on where the flipped bytes land)
    with pytest.raises(DamagedFileError, match=re.escape(str(tmp_path / "b" / "checkpoint.pt"))):
        run(loaders, tmp_path / "b", epochs=4, resume=True)


@pytest.mark.parametrize("change", [{"lr": 2e-2}, {"seed": 1}, {"epochs": 5}, {"run_settings": {"train_size": 96}}])
def test_resume_with_other_settings_is_refused(loaders, tmp_path, change, record_property):
    record_property("reliability", {
        "area": "training loop", "case": f"resume with changed {next(iter(change))}",
        "outcome": "refused: ValueError naming each setting with the checkpoint's and the new value"})  # fmt: skip
    base = {"epochs": 4, "run_settings": {"train_size": 48}}
    run(loaders, tmp_path, **base, stop_after_epoch=1)
    name = next(iter(change))
    key = "train_size" if name == "run_settings" else name
    with pytest.raises(ValueError, match=rf"other settings: {key} \(checkpoint: .*, now: "):
        run(loaders, tmp_path, **{**base, **change}, resume=True)
    # what may change on resume: the device string, progress display, the stop point
    _, res = run(loaders, tmp_path, **base, resume=True, log_epochs=False)
    assert res.epochs_completed == 4 and not res.interrupted


def test_resume_of_an_unversioned_checkpoint_is_refused(loaders, tmp_path):
    run(loaders, tmp_path, epochs=2, stop_after_epoch=1)
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    del ck["settings"]
    atomic_save(ck, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="records no run settings"):
        run(loaders, tmp_path, epochs=2, resume=True)


class NaNAfter(nn.Module):
    """TinyNet whose output turns NaN from the ``after``-th forward pass in training mode on."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.net, self.after, self.calls = TinyNet(), after, 0

    def forward(self, batch):
        out = self.net(batch)
        if self.training:
            self.calls += 1
            if self.calls > self.after:
                out = out * float("nan")
        return out


def test_non_finite_loss_stops_training(loaders, tmp_path, capsys, record_property):
    record_property("reliability", {
        "area": "training loop", "case": "training loss turns NaN (epoch 3)",
        "outcome": "stops at that epoch with an error naming it; FitResult.error set and interrupted; "
                   "the last good checkpoint (epoch 2) kept; the log shows the NaN row"})  # fmt: skip
    torch.manual_seed(0)
    model = NaNAfter(after=6 * 2 + 1)  # 6 steps per epoch: epoch 3's second step
    cfg = TrainConfig(epochs=5, lr=1e-2, device="cpu", progress=False, out_dir=str(tmp_path))
    res = fit(model, *loaders(), IdentityTargets(), cfg)
    assert res.interrupted and res.error is not None and "non-finite training loss" in res.error and "epoch 3" in res.error
    assert "epoch 3" in capsys.readouterr().err
    assert res.epochs_completed == 3 and res.best_epoch in (1, 2)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["epoch"] == 2
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"] and rows[-1]["train_loss"] == "nan"
    assert not (tmp_path / "learning_curve.png").exists()


def test_fit_removes_stale_temporaries(loaders, tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])  # a pid no process has any more
    proc.wait()
    stale = tmp_path / f".checkpoint.pt.tmp{proc.pid}"
    stale.write_bytes(b"half a checkpoint")
    run(loaders, tmp_path, epochs=1)
    assert not stale.exists()


def test_bad_config_values():
    for kw, match in (({"grad_clip": -1.0}, "grad_clip"), ({"grad_clip": float("nan")}, "grad_clip"),
                      ({"epochs": 2.5}, "epochs"), ({"lr": float("inf")}, "lr"), ({"weight_decay": -1e-4}, "weight_decay"),
                      ({"final_lr_factor": 0.0}, "final_lr_factor"), ({"stop_after_epoch": 0}, "stop_after_epoch")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            TrainConfig(**kw)


class RunsCode:
    """Unpickling this (with full pickle) creates ``marker``: what a crafted checkpoint could do."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_loads_weights_only(loaders, tmp_path):
    run(loaders, tmp_path, epochs=2, stop_after_epoch=1)
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # RNG states as tensors and plain values
    assert ck["epoch"] == 1 and isinstance(ck["rng"]["numpy"]["keys"], torch.Tensor)


def test_crafted_checkpoint_is_refused_without_running_it(loaders, tmp_path, record_property):
    record_property("reliability", {
        "area": "checkpoint", "case": "`--resume` of a checkpoint.pt carrying an object whose `__reduce__` runs a "
                                      "shell command (valid checksums)",
        "outcome": "refused: UnsafeFileError naming the file and the global it needs (posix.system); the command "
                   "never runs (every checkpoint loads with weights_only=True)"})  # fmt: skip
    from gnnkit.train import UnsafeFileError, check_resume

    run(loaders, tmp_path, epochs=2, stop_after_epoch=1)
    marker = tmp_path.parent / f"{tmp_path.name}-ran"
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    atomic_save({**ck, "history": [RunsCode(marker)]}, tmp_path / "checkpoint.pt")
    with pytest.raises(UnsafeFileError, match=r"checkpoint\.pt: refused: .*posix\.system") as err:
        run(loaders, tmp_path, epochs=2, resume=True)
    assert err.value.path == tmp_path / "checkpoint.pt"
    with pytest.raises(UnsafeFileError):
        check_resume(TrainConfig(epochs=2, lr=1e-2, device="cpu", progress=False, out_dir=str(tmp_path), resume=True))
    assert not marker.exists()


def test_check_resume_leaves_pending_settings_to_fit(loaders, tmp_path):
    # A caller that derives a setting from the data (train csv's score_scale) checks the others before
    # loading it; fit then compares the pending one too.
    from gnnkit.train import check_resume

    run(loaders, tmp_path, epochs=2, stop_after_epoch=1, score_scale=[2.0])
    cfg = TrainConfig(epochs=2, lr=1e-2, device="cpu", progress=False, out_dir=str(tmp_path), resume=True)
    with pytest.raises(ValueError, match=r"score_scale \(checkpoint: \[2\.0\], now: None\)"):
        check_resume(cfg)
    assert check_resume(cfg, pending=("score_scale",)) == 1
    with pytest.raises(ValueError, match="epochs"):
        check_resume(TrainConfig(epochs=3, lr=1e-2, device="cpu", out_dir=str(tmp_path), resume=True), pending=("score_scale",))
    with pytest.raises(ValueError, match="score_scale"):
        run(loaders, tmp_path, epochs=2, resume=True, score_scale=[3.0])


@pytest.mark.parametrize("content", [[1, 2, 3], {"model": {}}], ids=["list", "dict-without-keys"])
def test_checkpoint_of_another_shape_is_refused_naming_it(loaders, tmp_path, content, record_property):
    record_property("reliability", {
        "area": "checkpoint", "case": f"checkpoint.pt holding {'a list' if isinstance(content, list) else 'a dict without the training state'}",
        "outcome": "ValueError naming the file and what it holds (it used to be AttributeError: 'list' object has "
                   "no attribute 'get')"})  # fmt: skip
    from gnnkit.train import check_resume

    run(loaders, tmp_path, epochs=2, stop_after_epoch=1)
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    atomic_save(content if isinstance(content, list) else {**content, "settings": ck["settings"]}, tmp_path / "checkpoint.pt")
    for call in (lambda: run(loaders, tmp_path, epochs=2, resume=True),
                 lambda: check_resume(TrainConfig(epochs=2, lr=1e-2, device="cpu", out_dir=str(tmp_path), resume=True))):
        with pytest.raises(ValueError, match=r"checkpoint\.pt is not a .*gnnkit training checkpoint"):
            call()


def test_resume_with_another_thread_count_warns(loaders, tmp_path, capsys, record_property):
    record_property("reliability", {
        "area": "training loop", "case": "`--resume` with another CPU thread count than the checkpoint's",
        "outcome": "a warning names both thread counts and how to continue bit-identically (the count is recorded "
                   "in the checkpoint); with the same count the resumed run is bit-identical"})  # fmt: skip
    run(loaders, tmp_path, epochs=3, stop_after_epoch=1)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["threads"] == torch.get_num_threads() == 1
    capsys.readouterr()
    run(loaders, tmp_path, epochs=3, stop_after_epoch=2, resume=True)
    assert "CPU threads" not in capsys.readouterr().err
    torch.set_num_threads(2)
    try:
        run(loaders, tmp_path, epochs=3, resume=True)
    finally:
        torch.set_num_threads(1)
    err = capsys.readouterr().err
    assert "written with 1 CPU threads, this run uses 2" in err and "OMP_NUM_THREADS=1" in err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [False, True])
def test_progress_bar_only_on_a_terminal(loaders, tmp_path, monkeypatch, terminal):
    """progress=None (the default): a bar when stderr is a terminal; a redirected log (a file)
    gets no carriage-return updates. progress=True/False force it either way."""
    stream = _Terminal() if terminal else open(tmp_path / "log.txt", "w+")
    monkeypatch.setattr(sys, "stderr", stream)
    torch.manual_seed(0)
    fit(TinyNet(), *loaders(), IdentityTargets(), TrainConfig(device="cpu", epochs=1, log_epochs=False))
    stream.seek(0)
    written = stream.read()
    assert ("\r" in written and "epoch 1/1" in written) is terminal
    if not terminal:
        assert written == ""
        fit(TinyNet(), *loaders(), IdentityTargets(), TrainConfig(device="cpu", epochs=1, log_epochs=False, progress=True))
        stream.seek(0)
        assert "epoch 1/1" in stream.read()
    stream.close()
