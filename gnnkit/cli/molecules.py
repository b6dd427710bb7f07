"""``gnnkit train csv`` (and ``recipes/train_molecules.py``): train a graph network on your own
molecules, a CSV of SMILES and measured properties.

Molecules are featurized with RDKit as for QM9 (Gilmer et al.'s atom features; the element
one-hot covers the elements found in the file): by default the chemical graph with bond one-hot
edge features (``--edges bonds``); with coordinates (``--xyz-column``: an inline XYZ block or the
path of an .xyz/.sdf/.mol file per row, relative to the CSV) or ``--embed`` (ETKDG + MMFF from
each SMILES) the complete graph with (distance, bond one-hot) edges. Any graph model of the
registry trains (``--model``; GCN reads no edge features, so on the complete graph it would
average over all atoms: give it ``--edges bonds``), with one output per target, each target
standardised on the training split (``--extensive`` also subtracts a per-element linear
reference, for properties that grow with the molecule).

Rows that cannot be used (a SMILES RDKit cannot parse, a missing or non-numeric target, no bonds
fitting the coordinates, ...) are skipped and reported: the count and the first rows on screen,
all of them with their row numbers (row 1 = the first line after the header) in
``OUT/skipped_rows.csv``.

Splits: by default seeded fractions (``--split random`` or ``scaffold``: Bemis-Murcko scaffold
groups kept together, largest groups in training; fractions ``--split-sizes``). To reproduce a
published split, give it explicitly: ``--split-column NAME`` (a column holding ``train``, ``val``
or ``test`` in every row) or ``--splits-file FILE`` (chemprop's format: JSON ``{"train": [...],
"val": [...], "test": [...]}``, or a list holding one such object, of row indices, 0 = the first
data row, or strings such as ``"0-79,85"``). An explicit split is checked before any molecule is
read (unknown label, index out of range, a row in two splits, an empty split); skipped rows drop
out of their split and rows in no split are not used.

``--time-budget SECONDS`` trains for that much training wall-clock (evaluation excluded) instead
of ``--epochs`` (then only an upper bound), as ``gnnkit train qm9 --time-budget`` does
(:attr:`gnnkit.train.TrainConfig.time_budget`): a killed run continues with ``--resume`` (the
budget counts every session's training seconds), and a linear or cosine schedule decays over the
time. ``--epoch-size N`` makes an epoch, i.e. a validation point, of N molecules of an endless
shuffled stream; the test MAE is that of the best validation point: the equal-time comparison of
models.

Writes under ``OUT``: ``result.json`` (test MAE and RMSE per target at the best validation epoch,
sizes, skipped count, settings), ``test_predictions.csv``, ``skipped_rows.csv``, the training
log, learning curve and checkpoints, and ``best_model.pt``, which ``gnnkit predict`` reads. A
non-empty ``--out`` is refused unless ``--resume`` or ``--overwrite``; every argument (the CSV's
columns and an explicit split included) is checked before any molecule is read.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from gnnkit.cli.options import (
    at_least,
    build_parser,
    check_config,
    comma_list,
    config_from,
    float_list,
    option,
    parse_given,
    run_command,
    shared,
)
from gnnkit.data import TargetNormalizer, load_molecule_csv, split_molecules
from gnnkit.data.molecule_csv import (
    MoleculeCSV,
    check_columns,
    check_fractions,
    check_split_indices,
    count_rows,
    csv_header,
    explicit_split,
    read_splits_file,
    split_from_column,
)
from gnnkit.data.molecule_io import training_domain
from gnnkit.models import MODELS, build_model
from gnnkit.predict import load_predictor, predictor_card, regression_errors
from gnnkit.train import TrainConfig, check_resume, fit, make_loader, resolve_device
from gnnkit.train.checkpoint import atomic_write_text
from gnnkit.train.loop import OUTPUTS
from gnnkit.train.outdir import prepare_out_dir, releases_out_dirs

GRAPH_MODELS = tuple(n for n, spec in MODELS.items() if spec.task == "graph" and spec.inputs == "graph")
WIDTH_DEPTH = {"gcn-graph": ("hidden", "num_layers")}
RESULT_NAME, PREDICTIONS_NAME, SKIPPED_NAME = "result.json", "test_predictions.csv", "skipped_rows.csv"
NOT_RUN_SETTINGS = ("device", "out", "resume", "overwrite", "progress")
EXAMPLES = """\
  gnnkit train csv --data my.csv --smiles-column smiles --targets logS --out runs/logs
  gnnkit train csv --data my.csv --targets y1,y2 --split scaffold --model ggnn --out runs/y
  gnnkit train csv --data my.csv --targets y --splits-file splits.json --out runs/y   # a published split
  gnnkit train csv --data my.csv --targets y --split-column fold --out runs/y          # train/val/test per row
  gnnkit train csv --data my.csv --targets energy --xyz-column geometry --out runs/e  # 3D
  gnnkit train csv --data my.csv --targets energy --embed --out runs/e3d              # 3D from SMILES
  gnnkit predict --checkpoint runs/logs --smiles CCO --out preds.csv
  (python recipes/train_molecules.py takes the same options)
"""


@dataclass
class Config:
    """The options of ``gnnkit train csv`` (each written once: default, help, check)."""

    data: str = option("", "the CSV file: a header line, then one molecule per row", group="data", metavar="CSV")
    targets: tuple[str, ...] = option((), "comma-separated target columns, e.g. y1,y2", parse=comma_list, group="data",
                                      metavar="A,B")  # fmt: skip
    units: tuple[str, ...] = option((), "comma-separated unit of each target, for the outputs (e.g. eV,kcal/mol)",
                                    parse=comma_list, group="data", metavar="A,B")  # fmt: skip
    smiles_column: str = option("smiles", "column with the SMILES", group="data")
    xyz_column: str | None = option(None, "column with 3D coordinates: an inline XYZ block or an .xyz/.sdf/.mol path",
                                    group="data")  # fmt: skip
    embed: bool = option(False, "embed each SMILES in 3D (RDKit ETKDG + MMFF) for distance edges", group="data")
    edges: str = option("auto", "bonds (chemical graph), complete or bins (need coordinates); auto: complete with "
                        "--xyz-column or --embed, else bonds", choices=("auto", "bonds", "complete", "bins"), group="data")  # fmt: skip
    hydrogens: bool = option(True, "keep hydrogens as nodes", group="data")
    formal_charge: bool = option(False, "add each atom's formal charge as an atom feature (for charged molecules; "
                                 "recorded in the checkpoint)", group="data")  # fmt: skip
    extensive: tuple[str, ...] = option((), "targets that grow with the molecule: a per-element linear reference is "
                                        "subtracted before standardising", parse=comma_list, group="data", metavar="A,B")  # fmt: skip
    split: str = option("random", "seeded split: random or scaffold (Bemis-Murcko groups)", choices=("random", "scaffold"),
                        group="split")  # fmt: skip
    split_sizes: tuple[float, ...] = option((0.8, 0.1, 0.1), "train,validation,test fractions of the seeded split",
                                            parse=float_list, group="split", metavar="F,F,F")  # fmt: skip
    split_column: str | None = option(None, "explicit split: the column holding train, val or test for each row",
                                      group="split", metavar="NAME")  # fmt: skip
    splits_file: str | None = option(None, "explicit split: JSON of row indices per split (chemprop's --splits-file "
                                     "format; 0 = the first data row)", group="split", metavar="FILE")  # fmt: skip
    model: str = option("chebnet", "a graph model of the registry (default: the most accurate at equal time on a "
                        "QM9-derived CSV, recipes/results/csv_models_gap.md)", choices=GRAPH_MODELS, group="model")
    channels: int | None = option(None, "model width (none: the model's default)", check=at_least(1), group="model")
    steps: int | None = option(None, "message-passing steps (none: the model's default)", check=at_least(1), group="model")
    model_options: dict = shared("model_options")
    epochs: int = shared("epochs", 30)
    batch_size: int = shared("batch_size", 32)
    lr: float = shared("lr")
    schedule: str = shared("schedule")
    grad_clip: float | None = shared("grad_clip", 5.0)
    time_budget: float | None = shared("time_budget")
    epoch_size: int | None = shared("epoch_size")
    device: str = shared("device")
    seed: int = shared("seed", help="seeds the split, the initialisation and the batch order")
    out: str = shared("out", "runs/molecules")
    resume: bool = shared("resume")
    overwrite: bool = shared("overwrite")
    progress: bool | None = shared("progress")

    def __post_init__(self) -> None:
        """Checks every value (the CSV's header and an explicit split included), so that a bad one
        fails before any molecule is read."""
        if not self.data:
            raise ValueError("--data is required: the CSV file of molecules")
        if not self.targets:
            raise ValueError("--targets is required: the comma-separated target columns")
        self.targets, self.extensive, self.units = tuple(self.targets), tuple(self.extensive), tuple(self.units)
        check_config(self)
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
        self.explicit_split()  # an explicit split's errors now, before any molecule is read
        valid = MODELS[self.model].options()
        bad = sorted(set(self.model_options) - set(valid))
        if bad:
            raise ValueError(f"unknown --model-option {', '.join(bad)} for --model {self.model}; valid options: "
                             f"{', '.join(valid)}")  # fmt: skip
        width, depth = WIDTH_DEPTH.get(self.model, ("channels", "steps"))
        for flag, key in (("channels", width), ("steps", depth)):
            if getattr(self, flag) is not None and key in self.model_options:
                raise ValueError(f"--{flag} and --model-option {key}=... set the same option; give one")

    def explicit_split(self) -> tuple[dict[str, list[int]], str] | None:
        """The rows of each split given by ``--split-column`` or ``--splits-file`` (checked
        against the CSV), with where they came from; ``None``: the seeded split."""
        if self.split_column and self.splits_file:
            raise ValueError("--split-column and --splits-file exclude each other: give the split one way")
        if self.split_column:
            if self.split_column in (self.smiles_column, self.xyz_column, *self.targets):
                raise ValueError(f"--split-column {self.split_column} is the SMILES, coordinates or a target column")
            indices, source = split_from_column(self.data, self.split_column), f"--split-column {self.split_column}"
        elif self.splits_file:
            indices, source = read_splits_file(self.splits_file), f"--splits-file {self.splits_file}"
        else:
            return None
        check_split_indices(indices, count_rows(self.data), source)
        return indices, source

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


def _resolve(values: dict, given: set[str]) -> dict:
    """The seeded split's options do not go with an explicit split."""
    seeded = sorted(given & {"split", "split_sizes"})
    if seeded and (values.get("split_column") or values.get("splits_file")):
        raise ValueError(f"--{seeded[0].replace('_', '-')} sets the seeded split; it does not go with --split-column or "
                         "--splits-file")  # fmt: skip
    return values


def parse_args(argv: Sequence[str] | None = None, prog: str | None = None) -> Config:
    """The command line -> a checked Config (usage errors exit 2 before any molecule is read)."""
    parser = build_parser(Config, __doc__.split("\n\n")[0], EXAMPLES, prog)
    return config_from(Config, parse_given(parser, argv), parser, resolve=_resolve)


def _table(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def load_table(cfg: Config) -> MoleculeCSV:
    """The usable molecules of ``cfg.data``, featurized (embedding uses the featurizer's fixed
    seed, as ``gnnkit predict`` does for new SMILES)."""
    return load_molecule_csv(cfg.data, cfg.smiles_column, cfg.targets, cfg.xyz_column, embed=cfg.embed, edges=cfg.edges,
                             hydrogens=cfg.hydrogens, formal_charge=cfg.formal_charge)  # fmt: skip


def split_table(cfg: Config, table: MoleculeCSV) -> tuple[dict[str, np.ndarray], str]:
    """Positions of the train/val/test molecules, and how the split was made (for the card)."""
    given = cfg.explicit_split()
    if given is not None:
        indices, source = given
        return explicit_split(table, indices, source), source.split(" ")[0].lstrip("-")
    return split_molecules(table.smiles, cfg.split, cfg.split_sizes, cfg.seed), cfg.split


@releases_out_dirs
def main(cfg: Config, table: MoleculeCSV | None = None) -> dict:
    """Trains on ``cfg.data`` and writes the run under ``cfg.out`` (see the module docstring);
    returns result.json's content. ``table``: the molecules already read (e.g. to train several
    models on one file); ``None``: read here."""
    t_start = time.perf_counter()
    device = resolve_device(cfg.device)
    out = Path(cfg.out)
    train_cfg = TrainConfig(
        epochs=cfg.epochs, lr=cfg.lr, schedule=cfg.schedule, grad_clip=cfg.grad_clip, time_budget=cfg.time_budget,
        device=str(device), seed=cfg.seed,
        out_dir=cfg.out, resume=cfg.resume, progress=cfg.progress, target_names=list(cfg.targets),
        run_settings={k: v for k, v in asdict(cfg).items() if k not in NOT_RUN_SETTINGS},
    )  # fmt: skip
    prepare_out_dir(cfg.out, cfg.resume, cfg.overwrite, outputs=(*OUTPUTS, RESULT_NAME, PREDICTIONS_NAME, SKIPPED_NAME))
    check_resume(train_cfg, pending=("score_scale",))  # the targets' spread, from the data: checked by fit

    # 1. the molecules and the split
    if table is None:
        table = load_table(cfg)
    print(f"{cfg.data}: {len(table)} molecules; {table.skipped_summary()}", flush=True)
    atomic_write_text(_table(["row", "reason"], [[s.row, s.reason] for s in table.skipped]), out / SKIPPED_NAME)
    split, split_name = split_table(cfg, table)
    parts = {k: [table.data[i] for i in v] for k, v in split.items()}

    # 2. targets standardised on the training molecules; model selection on the mean over targets
    #    of validation MAE / training standard deviation
    y_train = torch.cat([d.y for d in parts["train"]])
    counts_train = torch.cat([d.atom_counts for d in parts["train"]])
    if len(y_train) < 2:
        raise ValueError(f"only {len(y_train)} training molecule(s): give more data or a larger training fraction")
    normalizer = TargetNormalizer.fit(y_train, counts_train, list(range(len(cfg.targets))),
                                      [t in cfg.extensive for t in cfg.targets])  # fmt: skip
    train_cfg.score_scale = [float(s) if s > 0 else 1.0 for s in y_train.std(0).tolist()]
    loaders = {k: make_loader(v, cfg.batch_size, shuffle=k == "train", seed=cfg.seed,
                              epoch_size=cfg.epoch_size if k == "train" else None) for k, v in parts.items()}  # fmt: skip

    # 3. the model, with the card best_model.pt carries for gnnkit predict
    torch.manual_seed(cfg.seed)
    sample = parts["train"][0]
    edge_dim = sample.edge_attr.size(1) if MODELS[cfg.model].edge_features else None
    options = cfg.build_options()
    model = build_model(cfg.model, sample.x.size(1), len(cfg.targets), edge_dim=edge_dim, **options)
    train_cfg.best_model_info = predictor_card(
        cfg.model, sample.x.size(1), len(cfg.targets), edge_dim, options, cfg.targets, cfg.units or [""] * len(cfg.targets),
        normalizer, table.options, geometry=table.geometry,
        dataset=f"{Path(cfg.data).name} ({len(parts['train'])} training molecules, {split_name} split)",
        domain=training_domain([table.smiles[i] for i in split["train"]]),
    )  # fmt: skip
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{cfg.model} ({n_params:,} parameters) on {device}, edges={table.options.edges}, elements "
          f"{','.join(table.options.elements)}; train/val/test = {len(parts['train'])}/{len(parts['val'])}/"
          f"{len(parts['test'])} molecules ({split_name} split)", flush=True)  # fmt: skip

    # 4. train
    res = fit(model, loaders["train"], loaders["val"], loaders["test"], normalizer, train_cfg)

    # 5. the test molecules through the saved best_model.pt, as gnnkit predict will use it
    status = "diverged" if res.error else "interrupted" if res.interrupted else "completed"
    errors, test_rows = None, []
    if not res.error:
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
        "rows": table.total_rows, "molecules": len(table), "skipped": len(table.skipped), "split": split_name,
        "sizes": {k: len(v) for k, v in parts.items()}, "edges": table.options.edges, "geometry": table.geometry,
        "elements": list(table.options.elements), "seconds": round(time.perf_counter() - t_start, 2),
        "fit_seconds": round(res.seconds, 2), "train_seconds": round(res.train_seconds, 2), "parameters": n_params,
        "config": asdict(cfg), "torch": torch.__version__,
    }  # fmt: skip
    if cfg.time_budget is not None and errors and res.history:
        # The equal-time result: the training seconds and molecules spent (the run stops at the first
        # batch past the budget) and the test MAE at the best validation point within them.
        last = res.history[-1]
        result["time_budget"] = {"budget": cfg.time_budget, "seconds": round(last["train_seconds"], 3),
                                 "molecules": int(last["train_molecules"]), "complete": status == "completed"
                                 and last["train_seconds"] >= cfg.time_budget,
                                 "val_mae": result["val_mae"], "test_mae": {t: e["mae"] for t, e in errors.items()}}  # fmt: skip
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


def command(argv: Sequence[str] | None = None, prog: str = "gnnkit train csv") -> int:
    """``gnnkit train csv``: exit status 0, 1 if the run diverged, 2 for a usage error or data
    that cannot be used."""
    return run_command(lambda a: parse_args(a, prog), main, argv, prog, lambda outcome: 1 if outcome["status"] == "diverged" else 0)


if __name__ == "__main__":
    sys.exit(command(sys.argv[1:]))
