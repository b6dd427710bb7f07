"""best_model.pt carries a predictor card; load_predictor rebuilds the model and predicts per input,
with per-row errors; old or wrong files get clear errors. Also the learning-rate decay start."""

import math

import pytest
import torch
from torch_geometric.data import Batch

from gnnkit.data import FeaturizerOptions, TargetNormalizer, molecule_data, smiles_record
from gnnkit.data.molecule_io import training_domain
from gnnkit.models import build_model
from gnnkit.predict import load_predictor, predictor_card, regression_errors
from gnnkit.train import DamagedFileError, TrainConfig, fit, make_loader
from gnnkit.train.loop import _scheduler

pytestmark = pytest.mark.usefixtures("one_thread")

SMILES = ["CCO", "CCN", "CCC", "CC=O", "OCCO", "NCCN", "CC(C)O", "C#N", "CC#N", "c1ccccc1", "c1ccncc1", "C1CC1",
          "CO", "CN", "C=C", "CC(=O)O"]  # fmt: skip
OPTIONS = FeaturizerOptions("complete")
MODEL_OPTIONS = {"channels": 8, "steps": 1, "edge_hidden": 8}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny MPNN fitted for one epoch on embedded SMILES, its run folder and graphs."""
    out = tmp_path_factory.mktemp("run")
    graphs = []
    for k, s in enumerate(SMILES):
        g = molecule_data(smiles_record(s), OPTIONS, y=[float(len(s)), float(k % 3)])
        graphs.append(g)
    y = torch.cat([g.y for g in graphs])
    counts = torch.cat([g.atom_counts for g in graphs])
    normalizer = TargetNormalizer.fit(y, counts, [0, 1], [True, False])
    torch.manual_seed(0)
    model = build_model("mpnn", 13, 2, edge_dim=5, **MODEL_OPTIONS)
    card = predictor_card("mpnn", 13, 2, 5, MODEL_OPTIONS, ["size", "klass"], ["chars", ""], normalizer, OPTIONS,
                          geometry="dft", dataset="test molecules", domain=training_domain(SMILES))  # fmt: skip
    cfg = TrainConfig(epochs=1, device="cpu", out_dir=str(out), progress=False, log_epochs=False, best_model_info=card)
    loader = make_loader(graphs, 8, shuffle=True)
    fit(model, loader, make_loader(graphs, 8, shuffle=False), None, normalizer, cfg)
    return out, model, normalizer, graphs


def test_best_model_loads_weights_only_and_carries_the_card(trained):
    out, _, _, _ = trained
    ck = torch.load(out / "best_model.pt", weights_only=True)
    assert set(ck) == {"model", "epoch", "predictor"}
    card = ck["predictor"]
    assert card["model"] == {"name": "mpnn", "in_channels": 13, "out_channels": 2, "edge_dim": 5, "options": MODEL_OPTIONS}
    assert card["targets"] == ["size", "klass"] and card["units"] == ["chars", ""] and card["geometry"] == "dft"
    assert card["featurizer"] == {"edges": "complete", "hydrogens": True, "elements": ["H", "C", "N", "O", "F"],
                                  "formal_charge": False}
    assert card["domain"] == {"molecules": 16, "max_heavy_atoms": 6, "net_charges": [0], "max_fragments": 1}
    assert set(card["normalizer"]) == {"columns", "weights", "mean", "std"}


def test_predictions_equal_the_model_on_the_same_graphs(trained):
    out, model, normalizer, graphs = trained
    predictor = load_predictor(out)
    batch = Batch.from_data_list(graphs)
    model.eval()
    with torch.no_grad():
        expected = normalizer.decode(model(batch), batch)
    torch.testing.assert_close(predictor.predict_data(graphs, batch_size=5), expected, rtol=1e-5, atol=1e-6)
    rows = predictor.predict(SMILES[:3])  # the same SMILES, embedded the same way
    for k, row in enumerate(rows):
        assert row.error is None and row.index == k and row.source == "smiles" and row.smiles == SMILES[k]
        assert row.values["size"] == pytest.approx(float(expected[k, 0]), rel=1e-5)
        assert "not the B3LYP/6-31G(2df,p) geometry" in row.note


def test_bad_inputs_get_row_errors_and_the_others_are_predicted(trained):
    from rdkit import Chem
    from rdkit.Chem import AllChem

    predictor = load_predictor(trained[0])
    flat = Chem.MolFromSmiles("CCO")
    AllChem.Compute2DCoords(flat)
    rows = predictor.predict(["CCO", "CCCl", "C1CC", flat, 42, "CCN"])
    assert [r.error is None for r in rows] == [True, False, False, False, False, True]
    assert "element Cl not supported" in rows[1].error and rows[1].smiles == "CCCl"
    assert "does not parse" in rows[2].error
    assert "2D coordinates only" in rows[3].error and "needs 3D coordinates" in rows[3].error
    assert "expected an RDKit Mol" in rows[4].error
    assert all(math.isfinite(v) for v in rows[5].values.values())
    assert [r.index for r in rows] == list(range(6))


def test_load_errors(trained, tmp_path):
    out = trained[0]
    ck = torch.load(out / "best_model.pt", weights_only=True)
    torch.save({"model": ck["model"], "epoch": 1}, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="holds only the weights and the epoch: it was written before"):
        load_predictor(tmp_path / "old.pt")
    with pytest.raises(ValueError, match="not a best_model.pt .*checkpoint.pt holds optimizer"):
        load_predictor(out / "checkpoint.pt")
    torch.save({**ck, "predictor": {**ck["predictor"], "version": 99}}, tmp_path / "new.pt")
    with pytest.raises(ValueError, match="card version 99"):
        load_predictor(tmp_path / "new.pt")
    damaged = bytearray((out / "best_model.pt").read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    (tmp_path / "bad.pt").write_bytes(bytes(damaged))
    with pytest.raises(DamagedFileError):
        load_predictor(tmp_path / "bad.pt")
    (tmp_path / "runs" / "u0").mkdir(parents=True)
    (tmp_path / "runs" / "u0" / "best_model.pt").write_bytes((out / "best_model.pt").read_bytes())
    with pytest.raises(FileNotFoundError, match="runs in subfolders .*u0"):
        load_predictor(tmp_path / "runs")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no best_model.pt in .*empty"):
        load_predictor(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_predictor(tmp_path / "none.pt")


def test_card_checks(trained):
    normalizer = trained[2]
    with pytest.raises(ValueError, match="unknown model"):
        predictor_card("mlp", 13, 2, 5, {}, ["a", "b"], ["", ""], normalizer, OPTIONS, "dft", "x")
    with pytest.raises(ValueError, match="geometry"):
        predictor_card("mpnn", 13, 2, 5, {}, ["a", "b"], ["", ""], normalizer, OPTIONS, "b3lyp", "x")
    with pytest.raises(ValueError, match="must agree"):
        predictor_card("mpnn", 13, 2, 5, {}, ["a"], [""], normalizer, OPTIONS, "dft", "x")


def test_regression_errors():
    pred, truth = torch.tensor([[1.0, 0.0], [3.0, 0.0]]), torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    errors = regression_errors(pred, truth, ["a", "b"])
    assert errors["a"] == {"mae": 2.0, "rmse": pytest.approx(math.sqrt(5))} and errors["b"]["mae"] == 1.0
    with pytest.raises(ValueError, match="pred and truth"):
        regression_errors(pred, truth[:1], ["a", "b"])


def test_decay_start_keeps_the_rate_then_decays_linearly():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = _scheduler(opt, TrainConfig(decay_start=0.5, final_lr_factor=0.1), total_steps=10)
    rates = []
    for _ in range(11):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert rates[:6] == [1.0] * 6
    assert rates[6:] == pytest.approx([0.82, 0.64, 0.46, 0.28, 0.1])
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = _scheduler(opt, TrainConfig(final_lr_factor=0.5), total_steps=4)  # decay_start 0: as before
    rates = []
    for _ in range(5):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert rates == pytest.approx([1.0, 0.875, 0.75, 0.625, 0.5])
    with pytest.raises(ValueError, match="decay_start"):
        TrainConfig(decay_start=1.0)


def test_out_of_domain_inputs_are_flagged(trained, record_property):
    record_property("reliability", {
        "area": "predict.py", "case": "a model trained on neutral single molecules of up to 6 heavy atoms asked for "
        "`[OH-]`, `[NH4+]`, `O.O.O`, `CC.CC` and a 12-carbon chain",
        "outcome": "predicted, each row flagged out of domain with its reason (net charge, fragments, heavy atoms "
                   "beyond the training molecules', recorded in the predictor card); in-domain rows unflagged"})  # fmt: skip
    predictor = load_predictor(trained[0])
    rows = predictor.predict(["CCO", "[OH-]", "[NH4+]", "O.O.O", "CC.CC", "C" * 12])
    assert all(r.error is None for r in rows)
    assert rows[0].out_of_domain == []
    assert rows[1].out_of_domain == ["net charge -1 (training molecules: 0)"]
    assert rows[2].out_of_domain == ["net charge +1 (training molecules: 0)"]
    assert rows[3].out_of_domain == ["3 fragments (training molecules: at most 1)"]
    assert rows[4].out_of_domain == ["2 fragments (training molecules: at most 1)"]
    assert rows[5].out_of_domain == ["12 heavy atoms (training molecules: at most 6)"]


def test_size_limits_give_per_row_errors(trained, record_property):
    record_property("reliability", {
        "area": "predict.py", "case": "a 3,002-carbon chain (9,008 atoms with hydrogens) between `CCO` and `CCN`; "
                                      "`--max-edges 60` with ethanol (72 complete-graph edges)",
        "outcome": "that row is an error naming its atom (or edge) count and the limit, found before embedding or "
                   "any graph is built; the other rows are predicted (the run used to abort in the allocator)"})  # fmt: skip
    predictor = load_predictor(trained[0])
    rows = predictor.predict(["CCO", "C" * 3002, "CCN"])
    assert [r.error is None for r in rows] == [True, False, True]
    assert "9008 atoms (hydrogens included), more than the limit of 500" in rows[1].error
    rows = predictor.predict(["CCO", "C"], max_edges=60)
    assert "72 edges (9 nodes, edges='complete'), more than the limit of 60" in rows[0].error and rows[1].error is None
    with pytest.raises(ValueError, match="max_atoms"):
        predictor.predict(["C"], max_atoms=0)


def test_memory_failure_is_caught_per_batch(trained, monkeypatch, record_property):
    record_property("reliability", {
        "area": "predict.py", "case": "the allocator fails for any batch holding benzene (torch.OutOfMemoryError)",
        "outcome": "the batch is retried one molecule at a time: benzene gets an 'out of memory' error row naming "
                   "its size, every other molecule of the batch is predicted"})  # fmt: skip
    predictor = load_predictor(trained[0])
    expected = predictor.predict(["CCO", "CCN", "CC#N"])
    forward = predictor.model.forward

    def allocator(graph):
        if graph.num_nodes >= 12 and graph.x.size(0) >= 12 and (graph.x[:, 1] == 1).sum() >= 6:  # six carbons: benzene
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.90 GiB")
        return forward(graph)

    monkeypatch.setattr(predictor.model, "forward", allocator)
    rows = predictor.predict(["CCO", "c1ccccc1", "CCN", "CC#N"], batch_size=4)
    assert [r.error is None for r in rows] == [True, False, True, True]
    assert "out of memory predicting this molecule alone (12 nodes, 132 edges" in rows[1].error
    for got, want in zip([rows[0], rows[2], rows[3]], expected):
        assert got.values == pytest.approx(want.values, rel=1e-5)
