"""From a trained model to answers: predictions on new molecules from a ``best_model.pt``.

A training run (``recipes/qm9.py``, ``recipes/train_molecules.py``) writes into ``best_model.pt``,
beside the weights, a *predictor card* (:func:`predictor_card`): the registry name and options of
the model, its input sizes, the targets and their units, the target normaliser's state, the
featurizer settings and where the training geometries came from. Tensors and plain containers
only, so the file loads with ``torch.load(..., weights_only=True)`` and nothing in it runs code.
:func:`load_predictor` rebuilds the model from the card through :func:`gnnkit.models.build_model`
and returns a :class:`Predictor`::

    predictor = load_predictor("runs/qm9")            # the run folder or its best_model.pt
    rows = predictor.predict(["CCO", "c1ccccc1"])     # SMILES, RDKit Mols or MoleculeRecords
    rows[0].values                                    # {"u0": -4.2e3}, in predictor.units

Every input gives one :class:`Prediction`; one that cannot be featurized (an element the model
was not trained on, a SMILES that does not parse, no 3D coordinates where the model reads
distances) has ``error`` set and no values, and the others are still predicted.
"""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch, Data

from gnnkit.data.molecule import FeaturizerOptions, canonical_smiles
from gnnkit.data.molecule_io import (
    DEFAULT_MAX_ATOMS,
    DEFAULT_MAX_EDGES,
    MoleculeRecord,
    domain_flags,
    mol_record,
    molecule_data,
    size_error,
    smiles_record,
)
from gnnkit.data.normalize import TargetNormalizer
from gnnkit.models import MODELS, build_model
from gnnkit.data.files import UnsafeFileError, unsafe_reason
from gnnkit.train.checkpoint import DamagedFileError, verify_torch_file
from gnnkit.train.loop import BEST_MODEL_NAME, model_input, resolve_device

PREDICTOR_KEY = "predictor"
PREDICTOR_VERSION = 1
# Where the training molecules' coordinates came from (a card's "geometry").
GEOMETRIES = ("dft", "given", "embedded", "none")
_GEOMETRY_TEXT = {
    "dft": "QM9's B3LYP/6-31G(2df,p) geometries",
    "given": "coordinates given with the training data",
    "embedded": "RDKit ETKDG + MMFF geometries embedded from SMILES",
    "none": "no coordinates (chemical graph)",
}


def predictor_card(
    model: str,
    in_channels: int,
    out_channels: int,
    edge_dim: int | None,
    model_options: Mapping[str, Any],
    targets: Sequence[str],
    units: Sequence[str],
    normalizer: TargetNormalizer,
    featurizer: FeaturizerOptions,
    geometry: str,
    dataset: str,
    domain: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What ``best_model.pt`` must carry to predict without any other input (pass it as
    :attr:`gnnkit.train.TrainConfig.best_model_info`).

    Args:
        model: a key of :data:`gnnkit.models.MODELS`.
        in_channels, out_channels, edge_dim: the sizes :func:`gnnkit.models.build_model` took.
        model_options: the other build options (plain values).
        targets, units: name and unit of each output column.
        normalizer: the fitted target normaliser (its buffers are stored).
        featurizer: edges, hydrogens and element set of the training graphs.
        geometry: where the training coordinates came from: ``"dft"`` (QM9), ``"given"``,
            ``"embedded"`` or ``"none"``.
        dataset: a short description of the training data (for the output's notes).
        domain: the training molecules' applicability domain
            (:func:`gnnkit.data.molecule_io.training_domain`): a prediction for a molecule
            outside it is flagged. ``None``: no flags.

    Raises:
        ValueError: an unknown model or geometry, or targets/units/normaliser of different
            lengths.
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; registered models: {sorted(MODELS)}")
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry must be one of {GEOMETRIES}, got {geometry!r}")
    targets, units = [str(t) for t in targets], [str(u) for u in units]
    if not (len(targets) == len(units) == len(normalizer.columns) == out_channels):
        raise ValueError(f"targets ({len(targets)}), units ({len(units)}), normaliser columns "
                         f"({len(normalizer.columns)}) and out_channels ({out_channels}) must agree")  # fmt: skip
    return {
        "version": PREDICTOR_VERSION,
        "model": {"name": model, "in_channels": int(in_channels), "out_channels": int(out_channels),
                  "edge_dim": None if edge_dim is None else int(edge_dim), "options": dict(model_options)},  # fmt: skip
        "targets": targets,
        "units": units,
        "normalizer": {k: v.detach().cpu().clone() for k, v in normalizer.state_dict().items()},
        "featurizer": {"edges": featurizer.edges, "hydrogens": featurizer.hydrogens, "elements": list(featurizer.elements),
                       "formal_charge": featurizer.formal_charge},  # fmt: skip
        "geometry": geometry,
        "dataset": dataset,
        "domain": None if domain is None else dict(domain),
    }


@dataclass
class Prediction:
    """One input's answer.

    Attributes:
        index: position of the input (0-based).
        name: the input's name (SMILES, ``file:frame``, ...).
        source: ``"smiles"``, ``"xyz"``, ``"sdf"`` or ``"mol"``.
        values: target -> prediction in the target's unit; ``None`` if ``error``.
        error: why no prediction could be made.
        note: how the input was turned into a graph, and caveats (e.g. an embedded geometry
            that is not the kind the model was trained on).
        smiles: canonical SMILES of the molecule read (``None`` if it could not be read).
        out_of_domain: how the molecule lies outside the training molecules' domain (net
            charge, fragments, size; see :func:`gnnkit.data.molecule_io.domain_flags`): the
            prediction is an extrapolation. Empty: inside it, or the card records no domain.
    """

    index: int
    name: str
    source: str
    values: dict[str, float] | None
    error: str | None = None
    note: str = ""
    smiles: str | None = None
    out_of_domain: list[str] = field(default_factory=list)


class Predictor:
    """A trained model with everything needed to predict on new molecules (build it with
    :func:`load_predictor`).

    Attributes:
        model: the rebuilt network (eval mode).
        normalizer: maps its outputs to physical units.
        options: the featurizer settings of the training graphs.
        targets, units: name and unit of each predicted column.
        geometry: where the training coordinates came from (see :func:`predictor_card`).
        card: the card as stored.
    """

    def __init__(self, model: nn.Module, normalizer: TargetNormalizer, card: Mapping[str, Any],
                 device: torch.device) -> None:  # fmt: skip
        self.model = model.to(device).eval()
        self.normalizer = normalizer.to(device)
        self.card = card
        self.device = device
        feat = card["featurizer"]
        self.options = FeaturizerOptions(feat["edges"], bool(feat["hydrogens"]), tuple(feat["elements"]),
                                         bool(feat.get("formal_charge", False)))  # fmt: skip
        self.domain: Mapping[str, Any] | None = card.get("domain")
        self.targets: list[str] = list(card["targets"])
        self.units: list[str] = list(card["units"])
        self.geometry: str = card["geometry"]

    def record(self, item: Any, index: int = 0, max_atoms: int | None = DEFAULT_MAX_ATOMS) -> MoleculeRecord:
        """The :class:`MoleculeRecord` of one input: a SMILES string (embedded in 3D when the
        model reads distances, unless it has more than ``max_atoms`` atoms), an RDKit ``Mol`` or
        a record (returned as it is)."""
        if isinstance(item, MoleculeRecord):
            return item
        if isinstance(item, str):
            return smiles_record(item, embed=self.options.needs_coordinates, max_atoms=max_atoms)
        return mol_record(item, name=f"mol {index}")

    def _note(self, record: MoleculeRecord) -> str:
        notes = [record.note] if record.note else []
        if not self.options.needs_coordinates:
            return "; ".join(notes)
        if record.geometry == "embedded" and self.geometry == "dft":
            notes.append("geometry embedded by RDKit (ETKDG + MMFF) from the SMILES, not the B3LYP/6-31G(2df,p) "
                         "geometry QM9's targets were computed on: expect larger errors than on QM9")  # fmt: skip
        elif record.geometry == "given" and self.geometry == "embedded":
            notes.append("given coordinates, but the model was trained on ETKDG + MMFF geometries")
        elif record.geometry == "embedded" and self.geometry == "given":
            notes.append("geometry embedded by RDKit (ETKDG + MMFF), but the model was trained on given coordinates")
        return "; ".join(notes)

    @torch.no_grad()
    def predict_data(self, graphs: Sequence[Data], batch_size: int = 64) -> Tensor:
        """Predictions in physical units for featurized graphs (as :func:`molecule_data` or the
        QM9 dataset make them, with ``atom_counts``).

        Shapes:
            -> ``[len(graphs), T]`` float64, on the CPU.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        out = []
        for start in range(0, len(graphs), batch_size):
            batch = Batch.from_data_list(list(graphs[start : start + batch_size])).to(self.device)
            pred = self.model(model_input(self.model, batch)).float().reshape(batch.num_graphs, len(self.targets))
            out.append(self.normalizer.decode(pred, batch).cpu())
        return torch.cat(out) if out else torch.zeros(0, len(self.targets), dtype=torch.float64)

    def predict(self, molecules: Iterable[Any], batch_size: int = 64, max_atoms: int | None = DEFAULT_MAX_ATOMS,
                max_edges: int | None = DEFAULT_MAX_EDGES) -> list[Prediction]:  # fmt: skip
        """One :class:`Prediction` per input, in order (see :meth:`record` for the inputs).

        Args:
            batch_size: molecules per forward pass.
            max_atoms, max_edges: per-molecule limits (``None``: none); a molecule over one gets
                an error row, before any memory is spent on it. A batch that still runs out of
                memory is retried one molecule at a time, so only a molecule that does not fit
                alone gets an error row.
        """
        for name, limit in (("max_atoms", max_atoms), ("max_edges", max_edges)):
            if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
                raise ValueError(f"{name} must be an integer >= 1 or None, got {limit!r}")
        rows: list[Prediction] = []
        graphs: list[Data] = []
        at: list[int] = []
        for i, item in enumerate(molecules):
            record = self.record(item, i, max_atoms)
            smiles = None
            if record.mol is not None:
                try:
                    smiles = canonical_smiles(record.mol)
                except Exception:  # noqa: BLE001 - a name for the output only; featurizing decides
                    smiles = None
            too_big = size_error(record.mol, self.options, max_atoms, max_edges) if record.mol is not None else None
            try:
                if too_big is not None:
                    raise ValueError(too_big)
                graph = molecule_data(record, self.options)
            except ValueError as e:
                rows.append(Prediction(i, record.name, record.source, None, str(e), record.note, smiles))
                continue
            flags = domain_flags(record.mol, self.domain) if self.domain else []
            rows.append(Prediction(i, record.name, record.source, None, None, self._note(record), smiles, flags))
            graphs.append(graph)
            at.append(i)
        for start in range(0, len(graphs), batch_size):
            chunk, where = graphs[start : start + batch_size], at[start : start + batch_size]
            try:
                self._fill(rows, where, self.predict_data(chunk, len(chunk)))
            except (MemoryError, RuntimeError) as e:
                if not _out_of_memory(e):
                    raise
                self._release_memory()
                for graph, i in zip(chunk, where):  # one at a time: only a molecule that does not fit fails
                    try:
                        self._fill(rows, [i], self.predict_data([graph], 1))
                    except (MemoryError, RuntimeError) as e1:
                        if not _out_of_memory(e1):
                            raise
                        self._release_memory()
                        rows[i].error = (f"out of memory predicting this molecule alone ({graph.num_nodes} nodes, "
                                         f"{graph.num_edges} edges on {self.device}): lower --max-atoms/--max-edges "
                                         f"or use a larger device ({str(e1).splitlines()[0][:160]})")  # fmt: skip
        return rows

    def _fill(self, rows: list[Prediction], where: Sequence[int], values: Tensor) -> None:
        for k, i in enumerate(where):
            row = values[k].tolist()
            if all(math.isfinite(v) for v in row):
                rows[i].values = dict(zip(self.targets, row))
            else:
                rows[i].error = "the model's output is not finite"

    def _release_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def __repr__(self) -> str:
        m = self.card["model"]
        return (f"Predictor({m['name']}, targets={self.targets}, units={self.units}, edges={self.options.edges!r}, "
                f"hydrogens={self.options.hydrogens}, trained on {self.card['dataset']})")  # fmt: skip


def _out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation failure (torch raises ``OutOfMemoryError``, a subclass
    of RuntimeError, on CUDA, and a RuntimeError from its CPU allocator)."""
    if isinstance(error, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(error).lower()
    return "out of memory" in text or "can't allocate memory" in text or "cannot allocate memory" in text


def _checkpoint_file(path: Path) -> Path:
    if path.is_dir():
        candidate = path / BEST_MODEL_NAME
        if candidate.is_file():
            return candidate
        runs = sorted(p.parent.name for p in path.glob(f"*/{BEST_MODEL_NAME}"))
        if runs:
            raise FileNotFoundError(f"{path} holds no {BEST_MODEL_NAME} but runs in subfolders (one per target?): "
                                    f"{', '.join(runs)}; pass one of them, e.g. {path / runs[0]}")  # fmt: skip
        raise FileNotFoundError(f"no {BEST_MODEL_NAME} in {path} (the --out folder of recipes/qm9.py or "
                                "recipes/train_molecules.py)")  # fmt: skip
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} not found")
    return path


def load_predictor(checkpoint: str | os.PathLike, device: str = "cpu") -> Predictor:
    """Rebuilds the model a training run saved (``best_model.pt``) for prediction.

    Args:
        checkpoint: a run folder (its ``best_model.pt`` is used) or a ``best_model.pt``.
        device: ``"cpu"``, ``"cuda"``, ``"auto"``, ...

    Raises:
        FileNotFoundError: no such file, or a folder without ``best_model.pt``.
        gnnkit.train.DamagedFileError: the file is damaged or truncated.
        ValueError: not a ``best_model.pt`` (e.g. the training ``checkpoint.pt``), or written by
            a gnnkit that did not yet store the model's configuration, or by a newer one.
    """
    path = _checkpoint_file(Path(checkpoint))
    verify_torch_file(path)
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeFileError(path, unsafe_reason(e)) from None
    except Exception as e:  # noqa: BLE001 - a verified file that does not load is damaged
        raise DamagedFileError(path, f"does not load: {type(e).__name__}: {e}") from e
    if not isinstance(ck, dict) or "model" not in ck:
        raise ValueError(f"{path} is not a gnnkit {BEST_MODEL_NAME} (no model weights in it)")
    if PREDICTOR_KEY not in ck and "optimizer" in ck:
        raise ValueError(f"{path} is not a {BEST_MODEL_NAME} (the training checkpoint.pt holds optimizer and RNG state, "
                         f"not the predictor card); pass the run folder or its {BEST_MODEL_NAME}")  # fmt: skip
    card = ck.get(PREDICTOR_KEY)
    if card is None:
        raise ValueError(f"{path} holds only the weights and the epoch: it was written before gnnkit stored the model's "
                         "configuration, target, normaliser and featurizer settings in best_model.pt, so it cannot "
                         "be used to predict: train the model again with this version of gnnkit")  # fmt: skip
    version = card.get("version")
    if version != PREDICTOR_VERSION:
        raise ValueError(f"{path}: predictor card version {version!r}, this gnnkit reads version {PREDICTOR_VERSION}")
    m = card["model"]
    model = build_model(m["name"], m["in_channels"], m["out_channels"], edge_dim=m["edge_dim"], **m["options"])
    model.load_state_dict(ck["model"])
    n = card["normalizer"]
    normalizer = TargetNormalizer(n["columns"].tolist(), n["weights"], n["mean"], n["std"])
    return Predictor(model, normalizer, card, resolve_device(device))


def regression_errors(pred: Tensor, truth: Tensor, targets: Sequence[str]) -> dict[str, dict[str, float]]:
    """MAE and RMSE per target.

    Shapes:
        pred, truth ``[M, T]``.
    """
    if pred.shape != truth.shape or pred.dim() != 2 or pred.size(1) != len(targets) or pred.size(0) == 0:
        raise ValueError(f"pred and truth must both be [M >= 1, {len(targets)}], got {tuple(pred.shape)} and {tuple(truth.shape)}")
    err = pred.double() - truth.double()
    mae, rmse = err.abs().mean(0), err.square().mean(0).sqrt()
    return {t: {"mae": float(mae[k]), "rmse": float(rmse[k])} for k, t in enumerate(targets)}


def geometry_text(geometry: str) -> str:
    """A phrase for a card's geometry (``"dft"`` -> QM9's B3LYP geometries, ...)."""
    return _GEOMETRY_TEXT.get(geometry, geometry)


__all__ = [
    "GEOMETRIES",
    "PREDICTOR_KEY",
    "PREDICTOR_VERSION",
    "Prediction",
    "Predictor",
    "geometry_text",
    "load_predictor",
    "predictor_card",
    "regression_errors",
]
