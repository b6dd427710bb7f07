"""Benchmark: does training throughput hold over a run? The MPNN on a QM9 slice for several
epochs at a constant learning rate, molecules/s of every epoch, first against last.

A step costs the same in every epoch, so the throughput of the last epoch should equal the first's.
It did not before gnnkit flushed subnormal floats on CPU (:func:`gnnkit.train.flush_denormal`):
as the weights evolved, the GRU's gates saturated, gradients underflowed into the subnormal range
and the quick QM9 run slowed from ~360 to ~90 molecules/s by epoch 5 (gnnkit issue 25). This recipe
is that check: ``--keep-denormals`` trains with subnormals kept (torch's default), for an A/B.

Besides molecules/s it reports, at the start of every epoch, the fraction of the float32 values
written during one forward + backward on a fixed batch that are subnormal (measured with
subnormals kept, so it shows where a run stands whichever mode it trains in).

Usage::

    python recipes/bench_throughput.py --out runs/throughput            # 2,000 molecules, 6 epochs (~4 min idle)
    python recipes/bench_throughput.py --keep-denormals --out runs/throughput_kept
    python recipes/bench_throughput.py --quick --out /tmp/tp             # smoke test, seconds

Writes ``OUT/throughput.md`` and ``OUT/throughput.json`` (and the training loop's ``log.csv``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gnnkit.data import QM9, TargetNormalizer, load_split, target_index
from gnnkit.data.qm9 import EXTENSIVE, TARGETS
from gnnkit.models import build_model
from gnnkit.train import TrainConfig, fit, flush_denormal, make_loader, prepare_out_dir
from gnnkit.cli.options import add_options, given_options
from gnnkit.bench.probes import MachineLoad, SubnormalProbe

RESULT_NAMES = ("throughput.md", "throughput.json")


def _opt(default: Any, text: str, **meta: Any) -> Any:
    return field(default=default, metadata={"help": text, **meta})


@dataclass
class Config:
    train_size: int = _opt(2000, "first N molecules of the training split")
    eval_size: int = _opt(500, "first M molecules of the validation split (evaluated every epoch)")
    epochs: int = _opt(6, "epochs at the constant learning rate")
    batch_size: int = _opt(32, "molecules per batch")
    lr: float = _opt(1e-3, "Adam learning rate, constant")
    grad_clip: float | None = _opt(5.0, "gradient-norm clipping, as recipes/qm9.py ('none': off)")
    channels: int = _opt(64, "MPNN state size d")
    edge_hidden: int = _opt(128, "edge network hidden size K")
    steps: int = _opt(3, "message-passing steps T")
    keep_denormals: bool = _opt(False, "train with subnormal floats kept (torch's default) instead of flushed")
    threads: int | None = _opt(None, "torch intra-op threads (default: torch's)")
    seed: int = _opt(0, "seed of the model and the batch order")
    data_root: str | None = _opt(None, "QM9 folder with the processed cache (default: qm9/ under $GNNKIT_DATA, else "
                                 "the checkout's datasets/, else ~/.cache/gnnkit)")  # fmt: skip
    out: str = _opt("runs/throughput", "output folder (must be empty or absent)")
    quick: bool = _opt(False, "tiny sizes (smoke test): 48 molecules, 2 epochs, d = 16")

    def __post_init__(self) -> None:
        for name in ("train_size", "eval_size", "epochs", "batch_size", "channels", "edge_hidden", "steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be an integer >= 1, got {value!r}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {self.threads}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"--grad-clip must be > 0 or none, got {self.grad_clip}")
        if not self.lr > 0:
            raise ValueError(f"--lr must be > 0, got {self.lr}")


QUICK = {"train_size": 48, "eval_size": 16, "epochs": 2, "batch_size": 16, "channels": 16, "edge_hidden": 16, "steps": 2}


def run(cfg: Config, command: str = "") -> dict[str, Any]:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    prepare_out_dir(out, resume=False, overwrite=False, outputs=RESULT_NAMES)
    split = load_split()
    rows = {"train": split["train"][: cfg.train_size], "val": split["val"][: cfg.eval_size]}
    dataset = QM9(cfg.data_root, edges="complete", hydrogens=True, subset=np.concatenate(list(rows.values())), log=False)
    parts = {k: dataset.select(v, missing="skip") for k, v in rows.items()}
    col = target_index("U0")
    train = parts["train"]
    normalizer = TargetNormalizer.fit(train.y, train.atom_counts, [col], [TARGETS[col] in EXTENSIVE])
    loaders = {k: make_loader(d, cfg.batch_size, shuffle=k == "train", seed=cfg.seed) for k, d in parts.items()}

    torch.manual_seed(cfg.seed)
    sample = train[0]
    model = build_model("mpnn", sample.x.size(1), 1, edge_dim=sample.edge_attr.size(1), channels=cfg.channels,
                        edge_hidden=cfg.edge_hidden, steps=cfg.steps)  # fmt: skip
    probe_batch = next(iter(make_loader(parts["val"], cfg.batch_size, shuffle=False)))
    probe = SubnormalProbe(model, probe_batch, normalizer.encode(probe_batch))
    load = MachineLoad(own_threads=torch.get_num_threads())
    load.sample()
    res = fit(probe, loaders["train"], loaders["val"], None, normalizer, TrainConfig(
        epochs=cfg.epochs, lr=cfg.lr, schedule="constant", grad_clip=cfg.grad_clip, device="cpu", seed=cfg.seed, out_dir=str(out),
        progress=False, flush_denormal=not cfg.keep_denormals, target_names=["U0"]))  # fmt: skip
    load.sample()
    rates = [row["train_molecules_per_second"] for row in res.history]
    result = {
        "command": command, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "machine_load": load.summary(), "denormals": "kept" if cfg.keep_denormals else "flushed",
        "molecules_per_second": rates, "train_loss": [row["train_loss"] for row in res.history],
        "subnormal_fraction": probe.fractions, "last_over_first": rates[-1] / rates[0], "config": asdict(cfg),
    }  # fmt: skip
    lines = [
        "# bench_throughput: molecules/s over a run at a constant learning rate (MPNN, QM9 U0)", "",
        f"Command: `{command}`", f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); "
        f"load: {result['machine_load']['verdict']}; subnormals {result['denormals']} during training.", "",
        f"{len(train)} training molecules, batch {cfg.batch_size}, Adam lr {cfg.lr} constant, gradient clipping "
        f"{cfg.grad_clip}, MPNN d = {cfg.channels}, K = {cfg.edge_hidden}, T = {cfg.steps} (the quick QM9 job's model "
        "and seed). Subnormal values: fraction of the float32 values written by the ops of one forward + backward "
        "on a fixed validation batch at the start of the epoch (subnormals kept for it).", "",
        "| epoch | train molecules/s | train loss | subnormal values |", "|---:|---:|---:|---:|",
    ]  # fmt: skip
    for i, (rate, loss, frac) in enumerate(zip(rates, result["train_loss"], probe.fractions), 1):
        lines.append(f"| {i} | {rate:.0f} | {loss:.4f} | {frac:.3%} |")
    lines += ["", f"Last epoch / first epoch: **{result['last_over_first']:.2f}x**."]
    (out / RESULT_NAMES[0]).write_text("\n".join(lines) + "\n")
    (out / RESULT_NAMES[1]).write_text(json.dumps(result, indent=1, default=str) + "\n")
    print("\n".join(lines), flush=True)
    return result


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(p, Config)
    given = given_options(p.parse_args(argv))
    try:
        cfg = Config(**given)
        if cfg.quick:
            cfg = replace(cfg, **{k: v for k, v in QUICK.items() if k not in given})
    except ValueError as e:
        p.error(str(e))
    return cfg


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else list(argv)
    return run(parse_args(argv), shlex.join(["python", "recipes/bench_throughput.py", *argv]))


if __name__ == "__main__":
    main()
