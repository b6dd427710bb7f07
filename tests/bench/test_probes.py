"""Measurement probes (gnnkit.bench.probes): peak memory, machine load, device and commit strings."""

import pathlib
import subprocess
import sys
import time
import types

import pytest
import torch

from gnnkit.bench import probes
from gnnkit.bench.probes import (
    LoadSample,
    MachineLoad,
    PeakMemory,
    device_description,
    git_commit,
    matmul_gflops,
    peak_tensor_bytes,
    profile_summary,
    warm_up,
)


def test_peak_memory_sees_an_allocation():
    with PeakMemory("cpu") as mem:
        t = torch.ones(1 << 23)  # 32 MiB, touched
        time.sleep(0.05)
        del t
    assert mem.peak_mb is not None and 30 <= mem.peak_mb < 64, mem.peak_mb  # the 32 MiB, not the process
    with PeakMemory("cpu") as idle:
        time.sleep(0.05)
    assert idle.peak_mb is not None and idle.peak_mb < 8, idle.peak_mb


def test_peak_tensor_bytes_counts_live_tensors_only():
    def held():  # 4 MiB and 8 MiB alive at once
        a = torch.ones(1 << 20)
        b = torch.ones(1 << 21)
        return a, b

    def sequential():  # 8 MiB, freed before the next 8 MiB
        for _ in range(2):
            t = torch.ones(1 << 21)
            del t

    assert 12 << 20 <= peak_tensor_bytes(held) < 13 << 20
    assert 8 << 20 <= peak_tensor_bytes(sequential) < 9 << 20


def _sample(wall, load, busy, own):
    return LoadSample(wall, load, busy, own)


def test_machine_load_other_cores_and_verdict():
    idle = MachineLoad(samples=[_sample(0.0, [0.1, 0.1, 0.1], 100.0, 10.0), _sample(10.0, [1.0, 0.5, 0.2], 110.5, 20.0)])
    s = idle.summary()
    assert s["other_cores"] == pytest.approx(0.05) and not s["shared"]
    assert s["load_average"]["start"] == 0.1 and s["load_average"]["end"] == 1.0
    busy = MachineLoad(samples=[_sample(0.0, [3.0, 3.0, 3.0], 100.0, 10.0), _sample(10.0, [3.5, 3.0, 3.0], 130.0, 20.0)])
    s = busy.summary()
    assert s["other_cores"] == pytest.approx(2.0) and s["shared"] and "2.00" in s["verdict"]
    # Without /proc/stat, the load average decides.
    fallback = MachineLoad(own_threads=2, samples=[_sample(0.0, [2.5, 1, 1], None, 0.0), _sample(5.0, [2.0, 1, 1], None, 5.0)])
    s = fallback.summary()
    assert s["other_cores"] is None and s["shared"]
    assert not MachineLoad(own_threads=2, samples=[_sample(0, [0.2] * 3, None, 0), _sample(5, [2.5] * 3, None, 5)]).summary()["shared"]
    with pytest.raises(ValueError, match="two samples"):
        MachineLoad().summary()


def _spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


@pytest.mark.skipif(not pathlib.Path("/proc/stat").exists(), reason="reads the machine's CPU time from /proc/stat")
def test_machine_load_on_a_busy_loop_of_its_own_and_of_another_process():
    # Our own busy loop is this process's CPU time, seen by /proc/stat too, and is not "other".
    load = MachineLoad()
    first = load.sample()
    _spin(0.4)
    last = load.sample()
    own = last.own_seconds - first.own_seconds
    assert own >= 0.39 and last.busy_seconds - first.busy_seconds >= 0.9 * own - 0.02
    s = load.summary()
    busy = last.busy_seconds - first.busy_seconds
    assert s["other_cores"] == pytest.approx(max(busy - own, 0.0) / (last.wall - first.wall), abs=1e-3)
    assert s["cpu_count"] >= 1 and s["shared"] == (s["other_cores"] > 0.25) and f"{s['other_cores']:.2f}" in s["verdict"]

    # Another process's busy loop is "other" (other processes on a shared machine can only add to it).
    code = "import time\nend = time.perf_counter() + 1.0\nwhile time.perf_counter() < end: pass\nprint(time.process_time())"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    load = MachineLoad()
    load.sample()
    child_cpu = float(child.stdout.read())  # its CPU seconds, read before it is reaped (a reaped child counts as ours)
    load.sample()
    child.wait()
    s = load.summary()
    wall = load.samples[-1].wall - load.samples[0].wall
    assert child_cpu >= 0.2 and s["other_cores"] >= 0.85 * child_cpu / wall - 0.05, (child_cpu, wall, s)
    assert s["shared"] == (s["other_cores"] > 0.25)


def test_device_and_commit_strings(tmp_path):
    threads = torch.get_num_threads()
    assert device_description("cpu").startswith("CPU ") and device_description("cpu").endswith(
        f", {threads} thread{'s' if threads != 1 else ''}")
    assert git_commit(tmp_path) is None  # not a git work tree

    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                              capture_output=True, text=True).stdout.strip()  # fmt: skip

    git("init", "-q")
    (tmp_path / "a.txt").write_text("one")
    git("add", "a.txt")
    git("commit", "-q", "-m", "one")
    head = git("rev-parse", "--short", "HEAD")
    assert git_commit(tmp_path) == head and git_commit(tmp_path / "a.txt") == head
    (tmp_path / "untracked.txt").write_text("not tracked: not dirty")
    assert git_commit(tmp_path) == head
    (tmp_path / "a.txt").write_text("two")
    assert git_commit(tmp_path) == head + "+dirty"


def test_warm_up_leaves_weights_and_batch_norm_statistics_alone():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    warm_up(model, torch.randn(8, 3), "cpu")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training and all(p.grad is None for p in model.parameters())


def test_matmul_gflops_is_the_flops_over_the_best_timed_call(monkeypatch):
    # A clock on which the timed calls after the warm-up (read once, not timed) take 0.5, 0.25 and 0.5 s.
    ticks = iter([0.0, 10.0, 10.5, 20.0, 20.25, 30.0, 30.5])
    monkeypatch.setattr(probes, "time", types.SimpleNamespace(perf_counter=lambda: next(ticks)))  # this module's clock only
    assert matmul_gflops(64, 32, 16, repeats=3) == pytest.approx(2 * 64 * 32 * 16 / 0.25 / 1e9)
    monkeypatch.undo()
    assert matmul_gflops(64, 32, 16, repeats=2) > 0


def test_profile_summary_sorts_ops_by_kind():
    a, b = torch.randn(64, 32), torch.randn(32, 48)
    idx = torch.arange(64)

    def fn():
        c = a @ b
        d = torch.bmm(c.view(4, 16, 48), torch.randn(4, 48, 8))
        return d.index_select(0, idx[:2]).sum()

    summary = profile_summary(fn)
    assert summary.kinds["dense products (mm, addmm)"][1] >= 1
    assert summary.kinds["batched products (bmm: outer-product aggregation)"][1] == 1
    assert summary.kinds["gathers and scatters"][1] >= 1
    assert abs(sum(ms for ms, _ in summary.kinds.values()) - summary.total_ms) < 1e-6
    assert summary.calls == sum(c for _, c in summary.kinds.values()) and summary.short_calls <= summary.calls
    ops = {p[0]: p for p in summary.products}
    assert ops["aten::mm"][1] == "(64, 32) x (32, 48)" and ops["aten::mm"][4] > 0
    assert "aten::bmm" in ops
    lines = summary.table(peak_gflops=100.0)
    assert lines[0].startswith("| kind of op |") and any("% of peak" in line for line in lines)


def test_profile_summary_tells_an_addmm_into_out_from_a_sparse_product():
    """``addmm(..., out=)`` (the fused kernel's weight gradient) records four shapes, like the
    ``addmm`` that a CSR ``torch.sparse.mm`` runs: only the latter is a sparse product."""
    gw, g, s = torch.zeros(16, 64), torch.randn(32, 16), torch.randn(32, 64)
    csr = torch.eye(8).to_sparse_csr()
    x = torch.randn(8, 4)

    def fn():
        torch.addmm(gw, g.t(), s, out=gw)
        return torch.sparse.mm(csr, x)

    summary = profile_summary(fn)
    assert summary.kinds["dense products (mm, addmm)"][1] == 1
    assert summary.kinds["sparse products (CSR spmm, segment reductions)"][1] >= 1
    ((op, shapes, calls, _, rate),) = summary.products
    assert (op, calls) == ("aten::addmm", 1) and shapes.startswith("(16, 64) x (16, 32) x (32, 64)") and rate > 0


def test_subnormal_count_skips_views_and_uninitialized_allocations():
    """Only values an op writes count: a view writes nothing, and ``empty`` holds whatever the
    memory held (its garbage made the fraction of a fresh model vary from call to call)."""
    from gnnkit.bench.probes import _CountSubnormals
    from gnnkit.train import flush_denormal

    with flush_denormal(False):
        counter = _CountSubnormals()
        with counter:
            t = torch.full((1000,), 1e-39)  # written: 1000 subnormal values
            t[:10].view(2, 5)
            torch.empty(4096)
            torch.empty_like(t)
            t.new_empty(64)
            u = t * 1.0  # written again: 1000 more
    assert (counter.values, counter.subnormal) == (2000, 2000)
    assert u.numel() == 1000
