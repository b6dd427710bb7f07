"""``gnnkit predict`` (and ``recipes/predict.py``): predict with a trained model on new molecules:
SMILES, XYZ or SDF in, one CSV row per molecule out.

``--checkpoint`` is the ``--out`` folder of ``gnnkit train qm9`` or ``gnnkit train csv`` (or its
``best_model.pt``), which carries the model, target(s), unit(s), normaliser and featurizer
settings; no other flag is needed. Inputs keep their command-line order:

* ``--smiles`` (one or more) and ``--smiles-file`` (one SMILES per line, optionally followed by
  whitespace and a name; a line starting with ``#`` is a comment, a ``#`` inside a SMILES its
  triple bond): for a model whose edges carry distances (QM9's default), each SMILES is
  embedded in 3D with RDKit's ETKDG + MMFF from a fixed seed. Those geometries are not the
  B3LYP/6-31G(2df,p) geometries QM9's targets were computed on, and the output's note says so.
* ``--xyz``: XYZ files (one or more frames each), the coordinates as given; bonds are perceived
  from them (rdDetermineBonds, molecules taken as neutral).
* ``--sdf``: SDF or MOL files, bonds and 3D coordinates from the file.

``--out`` gets one row per input molecule: its position and name, the canonical SMILES read, one
column per target in the target's unit (e.g. ``u0 (eV)``), ``status`` (``ok``/``error``), the error
(e.g. an element the model was not trained on, a SMILES that does not parse, no 3D coordinates),
a note on the geometry and ``out_of_domain``: why the molecule lies outside the training molecules'
domain (a net charge or more fragments than any training molecule had, more heavy atoms), if it
does. A molecule that fails does not stop the others: one larger than ``--max-atoms`` atoms or
whose graph has more than ``--max-edges`` edges gets an error row before any memory is spent on
it, and a batch that runs out of memory is retried one molecule at a time. An existing ``--out``
is refused unless ``--overwrite``; the file is written atomically and nothing else is written.
Exit status 0 if at least one molecule was predicted, 1 if none was, 2 for bad arguments or a
checkpoint that cannot be used (e.g. one written before checkpoints carried the model's settings).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gnnkit.cli.options import at_least, build_parser, check_config, config_from, option, parse_given, run_command, shared
from gnnkit.data import read_sdf, read_smiles_file, read_xyz, smiles_record
from gnnkit.data.molecule_io import DEFAULT_MAX_ATOMS, DEFAULT_MAX_EDGES, MoleculeRecord
from gnnkit.predict import Prediction, geometry_text, load_predictor
from gnnkit.train.checkpoint import atomic_write_text

KINDS = ("smiles", "smiles_file", "xyz", "sdf")
EXAMPLES = """\
  gnnkit predict --checkpoint runs/qm9 --smiles CCO c1ccccc1 --out preds.csv
  gnnkit predict --checkpoint runs/qm9/best_model.pt --xyz mols.xyz --sdf more.sdf --out preds.csv
  gnnkit predict --checkpoint runs/mine --smiles-file candidates.smi --out preds.csv
  (python recipes/predict.py takes the same options)
"""


@dataclass
class Config:
    """The options of ``gnnkit predict`` (the inputs are collected in command-line order)."""

    checkpoint: str = option(help="run folder or best_model.pt of a gnnkit training run", metavar="RUN")
    out: str = option(help="the CSV file to write", metavar="CSV")
    inputs: list[tuple[str, str]] = option(help="(kind, value) in command-line order", cli=False, default_factory=list)
    device: str = shared("device", "cpu")
    batch_size: int = option(64, "molecules per batch", check=at_least(1))
    overwrite: bool = option(False, "replace an existing --out")
    max_atoms: int = option(DEFAULT_MAX_ATOMS, "a larger molecule (hydrogens included) gets an error row instead of a graph",
                            check=at_least(1))  # fmt: skip
    max_edges: int = option(DEFAULT_MAX_EDGES, "a molecule whose graph has more edges gets an error row (the complete "
                            "graph has N(N-1))", check=at_least(1))  # fmt: skip

    def __post_init__(self) -> None:
        """Checks every value before the checkpoint or any molecule is read."""
        if not self.inputs:
            raise ValueError("give at least one input: --smiles, --smiles-file, --xyz or --sdf")
        for kind, value in self.inputs:
            if kind not in KINDS:
                raise ValueError(f"unknown input kind {kind!r}")
            if kind != "smiles" and not Path(value).is_file():
                raise ValueError(f"--{kind.replace('_', '-')} {value}: no such file")
        if not Path(self.checkpoint).exists():
            raise ValueError(f"--checkpoint {self.checkpoint}: no such file or folder (the --out of gnnkit train qm9 "
                             "or gnnkit train csv, or its best_model.pt)")  # fmt: skip
        out = Path(self.out)
        if out.is_dir():
            raise ValueError(f"--out {out} is a folder; give the CSV file to write, e.g. {out / 'predictions.csv'}")
        if out.exists() and not self.overwrite:
            raise ValueError(f"--out {out} exists; pass --overwrite to replace it, or choose another file")
        check_config(self)


class _Inputs(argparse.Action):
    """Collects ``--smiles``/``--smiles-file``/``--xyz``/``--sdf`` values in command-line order."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.inputs = [*getattr(namespace, "inputs", []), *((self.dest, v) for v in values)]


def parse_args(argv: Sequence[str] | None = None, prog: str | None = None) -> Config:
    """The command line -> a checked Config (usage errors exit 2 before anything loads)."""
    parser = build_parser(Config, __doc__.split("\n\n")[0], EXAMPLES, prog)
    inputs = parser.add_argument_group("inputs (any mix, one or more of each; kept in command-line order)")
    inputs.add_argument("--smiles", nargs="+", action=_Inputs, metavar="SMILES",
                        help="SMILES strings (embedded in 3D if the model reads distances)")  # fmt: skip
    inputs.add_argument("--smiles-file", nargs="+", action=_Inputs, metavar="FILE", help="files with one SMILES per line")
    inputs.add_argument("--xyz", nargs="+", action=_Inputs, metavar="FILE", help="XYZ files (coordinates as given)")
    inputs.add_argument("--sdf", nargs="+", action=_Inputs, metavar="FILE", help="SDF/MOL files (bonds and coordinates as given)")
    given = parse_given(parser, argv)
    for kind in KINDS:
        given.pop(kind, None)  # the _Inputs action's own dests; the values are in "inputs"
    return config_from(Config, given, parser)


def gather(inputs: list[tuple[str, str]], embed: bool, max_atoms: int | None = None) -> list[MoleculeRecord]:
    """The input molecules, in command-line order (a SMILES over ``max_atoms`` is not embedded)."""
    records: list[MoleculeRecord] = []
    for kind, value in inputs:
        if kind == "smiles":
            records.append(smiles_record(value, embed=embed, max_atoms=max_atoms))
        elif kind == "smiles_file":
            records += read_smiles_file(value, embed, max_atoms=max_atoms)
        elif kind == "xyz":
            records += read_xyz(value)
        else:
            records += read_sdf(value)
    return records


def predictions_csv(rows: list[Prediction], targets: list[str], units: list[str]) -> str:
    """The output table: one line per input."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["index", "input", "name", "smiles", *(f"{t} ({u})" if u else t for t, u in zip(targets, units)), "status",
                     "error", "note", "out_of_domain"])  # fmt: skip
    for r in rows:
        values = [repr(r.values[t]) if r.values else "" for t in targets]
        writer.writerow([r.index, r.source, r.name, r.smiles or "", *values, "ok" if r.error is None else "error",
                         r.error or "", r.note, "; ".join(r.out_of_domain)])  # fmt: skip
    return buf.getvalue()


def main(cfg: Config) -> list[Prediction]:
    """Predicts every input and writes ``cfg.out``; returns the rows."""
    predictor = load_predictor(cfg.checkpoint, cfg.device)
    records = gather(cfg.inputs, embed=predictor.options.needs_coordinates, max_atoms=cfg.max_atoms)
    rows = predictor.predict(records, batch_size=cfg.batch_size, max_atoms=cfg.max_atoms, max_edges=cfg.max_edges)
    Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(predictions_csv(rows, predictor.targets, predictor.units), cfg.out)

    card = predictor.card
    print(f"{card['model']['name']} trained on {card['dataset']} ({geometry_text(predictor.geometry)}); "
          f"predicting {', '.join(f'{t} ({u})' if u else t for t, u in zip(predictor.targets, predictor.units))}", flush=True)  # fmt: skip
    for r in rows[:20]:
        shown = ", ".join(f"{t} = {v:.6g}" for t, v in r.values.items()) if r.values else f"error: {r.error}"
        print(f"  {r.index:>4} {r.name[:40]:<40} {shown}", flush=True)
    if len(rows) > 20:
        print(f"  ... {len(rows) - 20} more rows in {cfg.out}", flush=True)
    failed = sum(r.error is not None for r in rows)
    if any(r.source == "smiles" and r.error is None for r in rows) and predictor.geometry == "dft" and predictor.options.needs_coordinates:
        print("note: SMILES inputs were embedded with RDKit (ETKDG + MMFF); those geometries are not the "
              "B3LYP/6-31G(2df,p) geometries QM9's targets were computed on, so expect larger errors than on QM9",
              flush=True)  # fmt: skip
    flagged = sum(bool(r.out_of_domain) and r.error is None for r in rows)
    if flagged:
        print(f"note: {flagged} molecule(s) lie outside the training molecules' domain (charge, fragments or size; "
              f"column out_of_domain): their predictions are extrapolations", flush=True)  # fmt: skip
    print(f"{len(rows) - failed} of {len(rows)} molecules predicted, {failed} failed -> {cfg.out}", flush=True)
    return rows


def command(argv: Sequence[str] | None = None, prog: str = "gnnkit predict") -> int:
    """``gnnkit predict``: exit status 0 if a molecule was predicted, 1 if none was, 2 for bad
    arguments or a checkpoint that cannot be used."""
    return run_command(lambda a: parse_args(a, prog), main, argv, prog, lambda rows: 0 if any(r.error is None for r in rows) else 1)


if __name__ == "__main__":
    sys.exit(command(sys.argv[1:]))
