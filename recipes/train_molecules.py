"""Train a graph network on your own molecules: a CSV of SMILES and measured properties.

    python recipes/train_molecules.py --data my.csv --smiles-column smiles --targets logS --out runs/logs
    python recipes/train_molecules.py --data my.csv --targets y1,y2 --split scaffold --model ggnn --out runs/y
    python recipes/train_molecules.py --data my.csv --targets energy --xyz-column geometry --out runs/e  # 3D
    python recipes/train_molecules.py --data my.csv --targets energy --embed --out runs/e3d  # 3D from SMILES
    python recipes/predict.py --checkpoint runs/logs --smiles CCO --out preds.csv

Molecules are featurized with RDKit as for QM9 (Gilmer et al.'s atom features; the element
one-hot covers the elements found in the file): by default the chemical graph with bond one-hot
edge features (``--edges bonds``); with coordinates (``--xyz-column``: an inline XYZ block or the
path of an .xyz/.sdf/.mol file per row, relative to the CSV) or ``--embed`` (ETKDG + MMFF from
each SMILES) the complete graph with (distance, bond one-hot) edges. Any graph model of the
registry trains (``--model mpnn|ggnn|gcn-graph``, options as in ``recipes/qm9.py``; GCN reads no
edge features, so on the complete graph it would average over all atoms: give it ``--edges
bonds``), with one
output per target, each target standardised on the training split (``--extensive`` also
subtracts a per-element linear reference, for properties that grow with the molecule).

Rows that cannot be used (a SMILES RDKit cannot parse, a missing or non-numeric target, no bonds
fitting the coordinates, ...) are skipped and reported: the count and the first rows on screen,
all of them with their row numbers (row 1 = the first line after the header) in
``OUT/skipped_rows.csv``. Splits: ``--split random`` (seeded) or ``scaffold`` (Bemis-Murcko
scaffold groups kept together, largest groups in training), fractions ``--split-sizes``.

Writes under ``OUT``: ``result.json`` (test MAE and RMSE per target at the best validation epoch,
sizes, skipped count, settings), ``test_predictions.csv``, ``skipped_rows.csv``, the training
log, learning curve and checkpoints, and ``best_model.pt``, which ``recipes/predict.py`` reads.
A non-empty ``--out`` is refused unless ``--resume`` or ``--overwrite``; every argument (the CSV's
columns included) is checked before any molecule is read.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from gnnkit.data import TargetNormalizer, load_molecule_csv, split_molecules
from gnnkit.data.molecule_csv import check_columns, check_fractions, csv_header
from gnnkit.data.molecule_io import training_domain
from gnnkit.models import MODELS, build_model
from gnnkit.predict import load_predictor, predictor_card, regression_errors
from gnnkit.train import TrainConfig, check_resume, fit, make_loader
from gnnkit.train import resolve_device
from gnnkit.train.checkpoint import atomic_write_text
from gnnkit.train.loop import OUTPUTS
from gnnkit.cli.options import add_options, comma_list, given_options, key_values
from gnnkit.train.outdir import check_out_dir, prepare_out_dir, releases_out_dirs

GRAPH_MODELS = tuple(n for n, spec in MODELS.items() if spec.task == "graph" and spec.inputs == "graph")
WIDTH_DEPTH = {"gcn-graph": ("hidden", "num_layers")}
RESULT_NAME, PREDICTIONS_NAME, SKIPPED_NAME = "result.json", "test_predictions.csv", "skipped_rows.csv"
NOT_RUN_SETTINGS = ("device", "out", "resume", "overwrite", "progress")


def _fractions(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in comma_list(text))


def _opt(default, help: str, **meta):
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class Config:
    data: str = _opt("", "the CSV file: a header line, then one molecule per row")
    targets: tuple[str, ...] = _opt((), "comma-separated target columns, e.g. y1,y2", parse=comma_list)
    units: tuple[str, ...] = _opt((), "comma-separated unit of each target, for the outputs (e.g. eV,kcal/mol)",
                                  parse=comma_list)
    smiles_column: str = _opt("smiles", "column with the SMILES")
    xyz_column: str | None = _opt(None, "column with 3D coordinates: an inline XYZ block or an .xyz/.sdf/.mol path")
    embed: bool = _opt(False, "embed each SMILES in 3D (RDKit ETKDG + MMFF) for distance edges")
    edges: str = _opt("auto", "bonds (chemical graph), complete or bins (need coordinates); auto: complete "
                      "with --xyz-column or --embed, else bonds", choices=("auto", "bonds", "complete", "bins"))
    hydrogens: bool = _opt(True, "keep hydrogens as nodes")
    formal_charge: bool = _opt(False, "add each atom's formal charge as an atom feature (for charged molecules; "
                               "recorded in the checkpoint)")
    extensive: tuple[str, ...] = _opt((), "targets that grow with the molecule: a per-element linear reference is "
                                      "subtracted before standardising", parse=comma_list)
    split: str = _opt("random", "random or scaffold (Bemis-Murcko groups)", choices=("random", "scaffold"))
    split_sizes: tuple[float, ...] = _opt((0.8, 0.1, 0.1), "train,validation,test fractions", parse=_fractions)
    model: str = _opt("mpnn", "a graph model of the registry", choices=GRAPH_MODELS)
    channels: int | None = _opt(None, "model width (none: the model's default)")
    steps: int | None = _opt(None, "message-passing steps (none: the model's default)")
    model_options: dict = field(default_factory=dict, metadata={"cli": False})  # from --model-option KEY=VALUE
    epochs: int = _opt(30, "passes over the training molecules")
    batch_size: int = _opt(32, "molecules per step")
    lr: float = _opt(1e-3, "initial learning rate (Adam)")
    schedule: str = _opt("linear", "learning-rate schedule", choices=("linear", "cosine", "plateau", "constant"))
    grad_clip: float | None = _opt(5.0, "clip the gradient norm to this (none: no clipping)")
    device: str = _opt("auto", "cpu, cuda, cuda:1 or auto")
    seed: int = _opt(0, "seeds the split, the initialisation and the batch order")
    out: str = _opt("runs/molecules", "output folder")
    resume: bool = _opt(False, "continue the run in --out")
    overwrite: bool = _opt(False, "replace the run files in a non-empty --out")
    progress: bool = _opt(True, "progress bar")

    def __post_init__(self) -> None:
        """Checks every value (and the CSV's header), so that a bad one fails before any molecule is read."""
        if not self.data:
            raise ValueError("--data is required: the CSV file of molecules")
        if not self.targets:
            raise ValueError("--targets is required: the comma-separated target columns")
        self.targets, self.extensive, self.units = tuple(self.targets), tuple(self.extensive), tuple(self.units)
        if self.units and len(self.units) != len(self.targets):
            raise ValueError(f"--units: one unit per target ({len(self.targets)}), got {len(self.units)}")
        header = csv_header(self.data)  # FileNotFoundError / ValueError name the file
        check_columns(header, [self.smiles_column, *self.targets, *([self.xyz_column] if self.xyz_column else [])], self.data)
        if len(set(self.targets)) != len(self.targets):
            raise ValueError(f"--targets: each column once, got {','.join(self.targets)}")
        if self.smiles_column in self.targets or self.xyz_column in self.targets:
            raise ValueError("--targets cannot include the SMILES or coordinates column")
        unknown = [t for t in self.extensive if t not in self.targets]
        if unknown:
            raise ValueError(f"--extensive {','.join(unknown)}: not among --targets {','.join(self.targets)}")
        if self.embed and self.xyz_column:
            raise ValueError("--embed and --xyz-column exclude each other: coordinates are either given or embedded")
        if self.edges == "auto":
            self.edges = "complete" if (self.embed or self.xyz_column) else "bonds"
        elif self.edges != "bonds" and not (self.embed or self.xyz_column):
            raise ValueError(f"--edges {self.edges} carries distances: give --xyz-column or --embed (or use --edges bonds)")
        self.split_sizes = check_fractions(self.split_sizes)
        for name, low in (("epochs", 1), ("batch_size", 1), ("channels", 1), ("steps", 1)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise ValueError(f"--{name.replace('_', '-')} must be an integer >= {low}, got {value!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"--lr must be a finite number > 0, got {self.lr}")
        if self.grad_clip is not None and not (self.grad_clip > 0 and math.isfinite(self.grad_clip)):
            raise ValueError(f"--grad-clip must be a finite number > 0 or none, got {self.grad_clip}")
        if self.resume and self.overwrite:
            raise ValueError("--resume and --overwrite exclude each other")
        valid = MODELS[self.model].options()
        bad = sorted(set(self.model_options) - set(valid))
        if bad:
            raise ValueError(f"unknown --model-option {', '.join(bad)} for --model {self.model}; valid options: "
                             f"{', '.join(valid)}")  # fmt: skip
        width, depth = WIDTH_DEPTH.get(self.model, ("channels", "steps"))
        for flag, key in (("channels", width), ("steps", depth)):
            if getattr(self, flag) is not None and key in self.model_options:
                raise ValueError(f"--{flag} and --model-option {key}=... set the same option; give one")

    def build_options(self) -> dict:
        """The model's build options: --model-option, --channels, --steps."""
        opts = dict(self.model_options)
        width, depth = WIDTH_DEPTH.get(self.model, ("channels", "steps"))
        if self.channels is not None:
            opts[width] = self.channels
        if self.steps is not None:
            opts[depth] = self.steps
        if self.edges == "bins" and self.model == "ggnn":
            opts.setdefault("num_edge_types", 14)  # 4 bond types + 10 distance bins (data.edge_type)
        return opts


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(p, Config)
    p.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra build_model option, e.g. edge_hidden=64 (repeatable)")
    given = given_options(p.parse_args(argv))
    try:
        given["model_options"] = key_values(given.pop("model_option"))
        if "device" in given:
            resolve_device(given["device"])
        cfg = Config(**given)
        check_out_dir(cfg.out, cfg.resume, cfg.overwrite)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as e:  # RuntimeError: torch.device("gpu")
        p.error(str(e))
    return cfg


def _table(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


@releases_out_dirs
def main(cfg: Config) -> dict:
    t_start = time.perf_counter()
    device = resolve_device(cfg.device)
    out = Path(cfg.out)
    train_cfg = TrainConfig(
        epochs=cfg.epochs, lr=cfg.lr, schedule=cfg.schedule, grad_clip=cfg.grad_clip, device=str(device), seed=cfg.seed,
        out_dir=cfg.out, resume=cfg.resume, progress=cfg.progress, target_names=list(cfg.targets),
        run_settings={k: v for k, v in asdict(cfg).items() if k not in NOT_RUN_SETTINGS},
    )  # fmt: skip
    prepare_out_dir(cfg.out, cfg.resume, cfg.overwrite, outputs=(*OUTPUTS, RESULT_NAME, PREDICTIONS_NAME, SKIPPED_NAME))
    check_resume(train_cfg)

    # Embedding uses the featurizer's fixed seed, as recipes/predict.py does for new SMILES.
    table = load_molecule_csv(cfg.data, cfg.smiles_column, cfg.targets, cfg.xyz_column, embed=cfg.embed,
                              edges=cfg.edges, hydrogens=cfg.hydrogens, formal_charge=cfg.formal_charge)  # fmt: skip
    print(f"{cfg.data}: {len(table)} molecules; {table.skipped_summary()}", flush=True)
    split = split_molecules(table.smiles, cfg.split, cfg.split_sizes, cfg.seed)
    atomic_write_text(_table(["row", "reason"], [[s.row, s.reason] for s in table.skipped]), out / SKIPPED_NAME)
    parts = {k: [table.data[i] for i in v] for k, v in split.items()}

    y_train = torch.cat([d.y for d in parts["train"]])
    counts_train = torch.cat([d.atom_counts for d in parts["train"]])
    if len(y_train) < 2:
        raise ValueError(f"only {len(y_train)} training molecule(s): give more data or a larger training fraction")
    normalizer = TargetNormalizer.fit(y_train, counts_train, list(range(len(cfg.targets))),
                                      [t in cfg.extensive for t in cfg.targets])  # fmt: skip
    # Model selection: the mean over targets of validation MAE / training standard deviation.
    train_cfg.score_scale = [float(s) if s > 0 else 1.0 for s in y_train.std(0).tolist()]
    loaders = {k: make_loader(v, cfg.batch_size, shuffle=k == "train", seed=cfg.seed) for k, v in parts.items()}

    torch.manual_seed(cfg.seed)
    sample = parts["train"][0]
    edge_dim = sample.edge_attr.size(1) if MODELS[cfg.model].edge_features else None
    options = cfg.build_options()
    model = build_model(cfg.model, sample.x.size(1), len(cfg.targets), edge_dim=edge_dim, **options)
    train_cfg.best_model_info = predictor_card(
        cfg.model, sample.x.size(1), len(cfg.targets), edge_dim, options, cfg.targets, cfg.units or [""] * len(cfg.targets),
        normalizer, table.options, geometry=table.geometry,
        dataset=f"{Path(cfg.data).name} ({len(parts['train'])} training molecules, {cfg.split} split)",
        domain=training_domain([table.smiles[i] for i in split["train"]]),
    )  # fmt: skip
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{cfg.model} ({n_params:,} parameters) on {device}, edges={table.options.edges}, elements "
          f"{','.join(table.options.elements)}; train/val/test = {len(parts['train'])}/{len(parts['val'])}/"
          f"{len(parts['test'])} molecules ({cfg.split} split)", flush=True)  # fmt: skip

    res = fit(model, loaders["train"], loaders["val"], loaders["test"], normalizer, train_cfg)

    status = "diverged" if res.error else "interrupted" if res.interrupted else "completed"
    errors, test_rows = None, []
    if not res.error:
        # Through the saved best_model.pt, as recipes/predict.py will use it.
        predictor = load_predictor(out, device=str(device))
        pred = predictor.predict_data(parts["test"])
        truth = torch.cat([d.y for d in parts["test"]])
        errors = regression_errors(pred, truth, cfg.targets)
        for k, i in enumerate(split["test"]):
            test_rows.append([table.rows[i], table.smiles[i], *(repr(float(v)) for v in truth[k]),
                              *(repr(float(v)) for v in pred[k])])  # fmt: skip
    atomic_write_text(_table(["row", "smiles", *cfg.targets, *(f"{t}_pred" for t in cfg.targets)], test_rows),
                      out / PREDICTIONS_NAME)  # fmt: skip
    result = {
        "data": cfg.data, "targets": list(cfg.targets), "units": list(cfg.units), "status": status, "error": res.error, "test": errors,
        "val_mae": dict(zip(cfg.targets, res.val_mae)) if res.val_mae and not res.error else None,
        "best_epoch": res.best_epoch, "epochs": res.epochs_completed,
        "rows": table.total_rows, "molecules": len(table), "skipped": len(table.skipped),
        "sizes": {k: len(v) for k, v in parts.items()}, "edges": table.options.edges, "geometry": table.geometry,
        "elements": list(table.options.elements), "seconds": round(time.perf_counter() - t_start, 2),
        "config": asdict(cfg), "torch": torch.__version__,
    }  # fmt: skip
    atomic_write_text(json.dumps(result, indent=1, default=str) + "\n", out / RESULT_NAME)
    if errors:
        unit = dict(zip(cfg.targets, cfg.units))
        shown = "; ".join(f"{t}: MAE {e['mae']:.4g}, RMSE {e['rmse']:.4g}{' ' + unit[t] if unit.get(t) else ''}"
                          for t, e in errors.items())  # fmt: skip
        print(f"test ({len(parts['test'])} molecules, best validation epoch {res.best_epoch}/{res.epochs_completed}): "
              f"{shown} -> {out / RESULT_NAME}", flush=True)  # fmt: skip
    else:
        print(f"{status}: {res.error}; no result -> {out / RESULT_NAME}", flush=True)
    return result


if __name__ == "__main__":
    config = parse_args(sys.argv[1:])
    try:
        outcome = main(config)
    except ValueError as e:  # the data cannot be used (no usable row, a split left empty, ...): say why
        print(f"train_molecules.py: error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(1 if outcome["status"] == "diverged" else 0)
