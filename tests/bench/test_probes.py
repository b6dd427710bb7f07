"""Measurement probes (gnnkit.bench.probes): peak memory, machine load, device and commit strings."""

import pathlib
import time

import pytest
import torch

from gnnkit.bench.probes import (
    LoadSample,
    MachineLoad,
    PeakMemory,
    device_description,
    git_commit,
    matmul_gflops,
    profile_summary,
    warm_up,
)


def test_peak_memory_sees_an_allocation():
    with PeakMemory("cpu") as mem:
        t = torch.ones(1 << 23)  # 32 MiB, touched
        time.sleep(0.05)
        del t
    assert mem.peak_mb is not None and mem.peak_mb >= 16


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


def test_machine_load_reads_this_machine():
    load = MachineLoad()
    load.sample()
    sum(i * i for i in range(200_000))  # some CPU of our own, which is not "other"
    load.sample()
    s = load.summary()
    assert s["cpu_count"] >= 1 and isinstance(s["shared"], bool) and s["verdict"]


def test_device_and_commit_strings(tmp_path):
    assert device_description("cpu").startswith("CPU ")
    assert git_commit(tmp_path) is None  # not a git work tree
    commit = git_commit(pathlib.Path(__file__))
    assert commit is None or len(commit.split("+")[0]) >= 7


def test_warm_up_leaves_weights_and_batch_norm_statistics_alone():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    warm_up(model, torch.randn(8, 3), "cpu")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training and all(p.grad is None for p in model.parameters())


def test_matmul_gflops_is_a_positive_rate():
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
