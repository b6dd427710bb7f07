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


# The helper every command uses: fields with default, help, check, group; shared settings; presets.
from gnnkit.cli.options import check_config, layer, option, parse_config, shared  # noqa: E402
from gnnkit.train import TrainConfig  # noqa: E402


@dataclass
class Run:
    data: str = option("", "the CSV file", group="data")
    epochs: int = shared("epochs", 30)
    lr: float = shared("lr")
    grad_clip: float | None = shared("grad_clip", 5.0)
    decay_start: float = shared("decay_start")
    schedule: str = shared("schedule")
    model_options: dict = shared("model_options")
    out: str = shared("out", "")
    resume: bool = shared("resume")
    overwrite: bool = shared("overwrite")
    progress: bool | None = shared("progress")
    preset: str = option("quick", "a preset", choices=("quick", "long"))

    def __post_init__(self):
        check_config(self)


PRESETS = {"quick": {}, "long": {"epochs": 300, "lr": 3e-4, "model_options": {"a": 1, "b": 2}}}


def test_layering_defaults_preset_command_line(tmp_path):
    cfg = parse_config(Run, ["--out", str(tmp_path / "o")], presets=PRESETS)
    assert (cfg.epochs, cfg.lr, cfg.grad_clip, cfg.progress, cfg.model_options) == (30, TrainConfig.lr, 5.0, None, {})
    cfg = parse_config(Run, ["--preset", "long", "--epochs", "2", "--model-option", "b=[1, 2]", "--no-progress"],
                       presets=PRESETS)  # fmt: skip
    assert (cfg.epochs, cfg.lr, cfg.model_options, cfg.progress) == (2, 3e-4, {"a": 1, "b": [1, 2]}, False)
    assert layer(Run, {"epochs": 4}, PRESETS) == {"epochs": 4}
    with pytest.raises(ValueError, match="--preset must be one of quick, long, got 'x'"):
        layer(Run, {"preset": "x"}, PRESETS)


def test_no_clipping_has_one_meaning():
    for text in ("none", "None", "0", "0.0"):
        assert parse_config(Run, ["--grad-clip", text]).grad_clip is None
    assert parse_config(Run, ["--grad-clip", "2"]).grad_clip == 2.0
    assert Run(grad_clip=0).grad_clip is None  # a programmatic caller too


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lr", "0"], "--lr must be a finite number > 0, got 0.0"),  # TrainConfig's check, the option named
        (["--lr", "nan"], "--lr must be a finite number > 0"),
        (["--epochs", "0"], "--epochs must be an integer >= 1, got 0"),
        (["--decay-start", "1"], "--decay-start must be in [0, 1)"),
        (["--grad-clip", "-1"], "--grad-clip must be >= 0 (0 or none: no clipping), got -1.0"),
        (["--grad-clip", "x"], "expected a number or 'none', got 'x'"),
        (["--resume", "--overwrite"], "--resume and --overwrite exclude each other"),
        (["--model-option", "a"], "--model-option must be KEY=VALUE, got 'a'"),
        (["--model-option", "a=1", "--model-option", "a=2"], "--model-option a given twice"),
        (["--schedule", "step"], "invalid choice: 'step'"),
        (["--preset", "paper"], "invalid choice: 'paper'"),
    ],
)
def test_bad_values_are_usage_errors_naming_the_option(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_config(Run, argv, presets=PRESETS)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_programmatic_configs_are_checked_too():
    with pytest.raises(ValueError, match="--lr must be a finite number > 0"):
        Run(lr=-1.0)
    with pytest.raises(ValueError, match="exclude each other"):
        Run(resume=True, overwrite=True)


def test_non_empty_out_needs_resume_or_overwrite(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit):
        parse_config(Run, ["--out", str(tmp_path)])
    assert "already holds notes.txt" in capsys.readouterr().err
    assert parse_config(Run, ["--out", str(tmp_path), "--overwrite"]).overwrite


def test_help_has_groups_and_defaults(capsys):
    from gnnkit.cli.options import build_parser

    parser = build_parser(Run, "Train.", "  gnnkit train csv --data my.csv\n", prog="gnnkit train csv")
    text = parser.format_help()
    assert "data options:" in text and "training options:" in text and "run options:" in text
    assert "(default: 30)" in text and "(default: 0.001)" in text and "none (or 0): no clipping" in text
    assert "progress bar (default: only when stderr is a terminal)" in text
    assert text.rstrip().endswith("gnnkit train csv --data my.csv")


def test_json_values():
    assert key_values(["levels=[1, 2]", "x=null", "s=\"8\"", "t=None", "u=08"]) == {
        "levels": [1, 2], "x": None, "s": "8", "t": None, "u": "08"}  # fmt: skip
