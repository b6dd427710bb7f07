"""Smoke test of recipes/bench_throughput.py on a real QM9 slice: per-epoch molecules/s, the
subnormal-gradient probe, and that training flushes subnormals unless told to keep them."""

import json

import numpy as np
import pytest
import torch

from gnnkit.bench import probes

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from gnnkit.data import QM9, load_split

    root = tmp_path_factory.mktemp("throughput_data")
    split = load_split()
    QM9(root, subset=np.concatenate([split["train"][:48], split["val"][:16]]), log=False)
    return root


@pytest.mark.parametrize("keep", [False, True])
def test_quick_run_reports_every_epoch(load_recipe, data_root, tmp_path, keep):
    bench = load_recipe("bench_throughput")
    seen = []
    real = probes.SubnormalProbe.forward

    def forward(self, batch):  # records the training mode's flush setting
        from gnnkit.train import denormals_flushed

        seen.append(denormals_flushed())
        return real(self, batch)

    probes.SubnormalProbe.forward = forward
    argv = ["--quick", "--data-root", str(data_root), "--out", str(tmp_path / "run")] + (["--keep-denormals"] if keep else [])
    result = bench.main(argv)
    assert len(result["molecules_per_second"]) == 2 and min(result["molecules_per_second"]) > 0
    assert len(result["subnormal_fraction"]) == 2 and all(0.0 <= f <= 1.0 for f in result["subnormal_fraction"])
    assert result["denormals"] == ("kept" if keep else "flushed") and set(seen) == {not keep}
    saved = json.loads((tmp_path / "run" / "throughput.json").read_text())
    assert saved["last_over_first"] == pytest.approx(result["molecules_per_second"][1] / result["molecules_per_second"][0])
    table = (tmp_path / "run" / "throughput.md").read_text()
    assert "| 2 |" in table and "Last epoch / first epoch" in table


def test_subnormal_fraction_counts_subnormal_gradients(load_recipe, data_root):
    bench = load_recipe("bench_throughput")
    from gnnkit.data import QM9, load_split
    from gnnkit.models import build_model
    from torch_geometric.loader import DataLoader

    split = load_split()
    data = QM9(data_root, subset=np.concatenate([split["train"][:48], split["val"][:16]]), log=False)  # the cached slice
    batch = next(iter(DataLoader(data[:8], batch_size=8)))
    torch.manual_seed(0)
    model = build_model("mpnn", batch.x.size(1), 1, edge_dim=batch.edge_attr.size(1), channels=8, edge_hidden=8, steps=2)
    goal = torch.zeros(batch.num_graphs, 1)
    weight = model.head[-1].weight.detach().clone()
    fresh = probes.subnormal_fraction(model, batch, goal)
    assert fresh < 0.02  # a fresh model: few or none (0.0 here; views and uninitialized allocations are not counted)
    with torch.no_grad():  # an output ~1e-18 gives a loss gradient ~1e-18 and gradients below it ~1e-40
        model.head[-1].weight.mul_(1e-18)
        model.head[-1].bias.zero_()
    assert probes.subnormal_fraction(model, batch, goal) > max(0.05, 5 * fresh)
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(model.head[-1].weight, weight * 1e-18)  # the probe changes no weight
