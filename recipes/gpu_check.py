"""One prepared GPU check: everything gnnkit claims about CUDA, measured in one command.

    python recipes/gpu_check.py --out DIR --qm9-pack qm9_pack.npz     # one H100/H200: <= 8 minutes
    python recipes/gpu_check.py --dry-run --out DIR                    # every stage on CPU, tiny sizes

Stages, each in its own process with its own time limit (a stage that fails or runs out of time
is reported, and the next one runs):

* ``cuda_tests``: ``pytest -m cuda tests/ops/test_cuda.py`` (Triton vs torch on CUDA tensors for
  every op and reduction, bitwise-identical reruns, float16/bfloat16 paths);
* ``bench_ops``: recipes/bench_ops.py on the 1M-node / 10M-edge power-law graph at F = 16/64/256:
  spmm GB/s and % of HBM peak, fwd+bwd time against PyG's default path and ``torch.sparse``;
* ``bench_layers``: recipes/bench_layers.py (EdgeNetworkConv vs NNConv, MPNN vs PyG's
  qm9_nn_conv model);
* ``qm9_speed``: QM9 training steps per second of gnnkit's MPNN (Gilmer's enn-s2s defaults) and
  of PyG's model on the same batches, float32 and bf16 autocast;
* ``qm9_compile``: the same under ``torch.compile`` (where it works; a failure is recorded);
* ``qm9_train``: a time-boxed U0 training on all 110,831 training molecules with bf16 AMP:
  molecules/s and the test MAE reached (130 s of training by default, so that the whole check
  fits its 8 minutes; ``--stages qm9_train --train-seconds 240`` for four minutes on its own).

Writes ``DIR/report.md`` (each target beside what was measured), ``DIR/results.json`` (every
figure) and ``DIR/stages.log`` (each stage's output), and nothing else. Targets live in the
report, not in the tests.

It needs torch, triton and torch-geometric (what a CUDA machine has) and this checkout, which it
puts on ``PYTHONPATH`` for its stages. QM9 comes from a pack (``--qm9-pack``, written where RDKit
and qm9pack are installed by ``python -m gnnkit.data.qm9_pack --out FILE``, about 45 MB) or, if
those two packages are importable, from :class:`gnnkit.data.QM9`. ``--wheels DIR`` installs any
other package from wheels (no index) under ``DIR/.work`` first. Nothing is downloaded.

The dry run builds a QM9 pack of a few dozen molecules (it needs RDKit and qm9pack, which the test
extra installs) and runs every stage with CPU tensors: the Triton kernels under the interpreter,
``torch.compile`` with the ``aot_eager`` backend; the suite runs it (tests/recipes/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import shutil
import sys

if importlib.util.find_spec("gnnkit") is None:  # run from a checkout without installing it
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from gnnkit.bench.gpu_check import DRY_LIMIT, LIMITS, OUTPUTS, STAGES, CheckConfig, run  # noqa: E402

__all__ = ["CheckConfig", "DRY_LIMIT", "LIMITS", "main", "parse_args"]


def parse_args(argv: list[str]) -> CheckConfig:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="folder for report.md, results.json and stages.log")
    p.add_argument("--dry-run", action="store_true", help="every stage on CPU at tiny sizes")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    p.add_argument("--budget", type=float, default=CheckConfig.budget, help="seconds for all stages together")
    p.add_argument("--limit", action="append", default=[], metavar="STAGE=SECONDS", help="override one stage's limit")
    p.add_argument("--train-seconds", type=float, default=CheckConfig.train_seconds, help="qm9_train's training time")
    p.add_argument("--qm9-pack", default=None, help="QM9 pack (python -m gnnkit.data.qm9_pack --out FILE)")
    p.add_argument("--data-root", default=None, help="QM9 data root when qm9pack and RDKit are installed")
    p.add_argument("--wheels", default=None, help="folder of wheels to install (no index, no dependencies) first")
    p.add_argument("--overwrite", action="store_true", help="replace report.md, results.json and stages.log in --out")
    p.add_argument("--keep-work", action="store_true", help="keep the stages' intermediate files in OUT/.work")
    a = p.parse_args(argv)
    if not a.out:
        p.error("--out is required")
    stages = tuple(s.strip() for s in a.stages.split(",") if s.strip())
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        p.error(f"--stages: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(STAGES)}")
    limits = {}
    for item in a.limit:
        name, sep, value = item.partition("=")
        try:
            seconds = float(value)
        except ValueError:
            seconds = float("nan")
        if not sep or name not in STAGES or not seconds > 0:
            p.error(f"--limit must be STAGE=SECONDS with a stage of {', '.join(STAGES)} and seconds > 0, got {item!r}")
        limits[name] = seconds
    if not a.budget > 0 or not a.train_seconds > 0:
        p.error("--budget and --train-seconds must be > 0")
    for flag, path in (("--qm9-pack", a.qm9_pack), ("--wheels", a.wheels)):
        if path is not None and not pathlib.Path(path).exists():
            p.error(f"{flag} {path}: no such file or folder")
    if not a.dry_run and not torch.cuda.is_available():
        p.error("no CUDA device: the check needs a GPU (--dry-run runs every stage on CPU)")
    out = pathlib.Path(a.out)
    if out.is_file():
        p.error(f"--out {a.out} is a file")
    clash = [n for n in (*OUTPUTS, ".work") if (out / n).exists()]
    if clash and not a.overwrite:
        p.error(f"--out {a.out} already holds {', '.join(clash)}: pass --overwrite or another folder")
    if a.overwrite:
        shutil.rmtree(out / ".work", ignore_errors=True)
    return CheckConfig(out=a.out, dry_run=a.dry_run, stages=stages, budget=a.budget, limits=limits,
                       train_seconds=a.train_seconds, qm9_pack=a.qm9_pack, data_root=a.data_root, wheels=a.wheels,
                       overwrite=a.overwrite, keep_work=a.keep_work)  # fmt: skip


def main(cfg: CheckConfig, argv: list[str]) -> dict:
    """Runs the check ``cfg`` describes (``argv`` is recorded in the report)."""
    return run(cfg, argv)


if __name__ == "__main__":
    args = sys.argv[1:]
    records = main(parse_args(args), args)
    sys.exit(0 if all(r["status"] == "ok" for r in records.values()) else 1)
