"""Options from a config dataclass (gnnkit.cli.options)."""

import argparse
from dataclasses import dataclass, field

import pytest

from gnnkit.cli.options import add_options, comma_list, given_options, key_values, literal


@dataclass
class Config:
    seeds: int = field(default=3, metadata={"help": "seeds"})
    budget_seconds: float = 40.0
    name: str = "x"
    size: int | None = 5
    clip: float | None = 1.0
    amp: bool = False
    models: tuple[str, ...] = field(default=("a",), metadata={"parse": comma_list})
    mode: str = field(default="quick", metadata={"choices": ("quick", "gpu")})
    hidden: str = field(default="", metadata={"cli": False})


def _parse(argv):
    p = argparse.ArgumentParser()
    add_options(p, Config)
    return given_options(p.parse_args(argv))


def test_only_given_options_come_back_typed():
    assert _parse([]) == {}
    got = _parse(["--seeds", "5", "--budget-seconds", "1.5", "--size", "none", "--clip", "2", "--amp",
                  "--models", "mpnn, ggnn,", "--mode", "gpu", "--name", "y"])  # fmt: skip
    assert got == {"seeds": 5, "budget_seconds": 1.5, "size": None, "clip": 2.0, "amp": True,
                   "models": ("mpnn", "ggnn"), "mode": "gpu", "name": "y"}  # fmt: skip
    assert _parse(["--no-amp"]) == {"amp": False}


def test_bad_values_and_fields():
    for argv in (["--seeds", "x"], ["--mode", "cpu"], ["--hidden", "1"], ["--size", "1.5"]):
        with pytest.raises(SystemExit):
            _parse(argv)

    @dataclass
    class Odd:
        table: dict = field(default_factory=dict)

    with pytest.raises(TypeError, match="parse"):
        add_options(argparse.ArgumentParser(), Odd)
    with pytest.raises(TypeError, match="dataclass"):
        add_options(argparse.ArgumentParser(), dict)


def test_key_values_and_literals():
    assert key_values(["edge_hidden=64", "readout=gated", "lr=1e-3", "bias=false", "name=a=b"]) == {
        "edge_hidden": 64, "readout": "gated", "lr": 0.001, "bias": False, "name": "a=b"}  # fmt: skip
    assert [literal(t) for t in ("8", "2.5", "True", "x")] == [8, 2.5, True, "x"]
    with pytest.raises(ValueError, match="--model-option must be KEY=VALUE, got 'edge_hidden'"):
        key_values(["edge_hidden"])
    with pytest.raises(ValueError, match="--set a given twice"):
        key_values(["a=1", "a=2"], flag="--set")
