"""Command-line options from a config dataclass: each option is written once, as a field.

A field declares its default, help text, check, parser and help group with :func:`option`; the
settings every command spells the same way (``--lr``, ``--grad-clip``, ``--device``, ``--out``,
``--resume``/``--overwrite``, ...) come ready-made from :func:`shared`. :func:`add_options` turns
the dataclass into argparse options grouped as in the help (defaults shown), :func:`check_config`
runs the checks (call it from ``__post_init__``, so that a programmatic caller is checked too) and
:func:`parse_config` does the whole trip, command line -> checked config, with an optional preset
layered between the defaults and what the user typed::

    @dataclass
    class Config:
        data: str = option("", "the CSV file", group="data")
        epochs: int = shared("epochs", 30)                  # TrainConfig's check
        lr: float = shared("lr")                            # TrainConfig's default and check
        grad_clip: float | None = shared("grad_clip", 5.0)  # none (or 0): no clipping
        model_options: dict = shared("model_options")      # --model-option KEY=VALUE, repeatable
        out: str = shared("out", "runs/mine")
        resume: bool = shared("resume")
        overwrite: bool = shared("overwrite")
        preset: str = option("quick", "a preset", choices=("quick", "long"))

        def __post_init__(self) -> None:
            check_config(self)                              # every field's check, then the cross rules

    PRESETS = {"quick": {}, "long": {"epochs": 300, "lr": 3e-4}}
    cfg = parse_config(Config, ["--epochs", "5"], presets=PRESETS)   # usage error (exit 2) if bad

Rules written here once:

* **Layering**: field default < preset (a plain dict named by the config's ``preset`` field) <
  the command line. Dict fields (``model_options``) are merged in the same order.
* **KEY=VALUE** (:func:`key_values`, :func:`literal`): the value is read as JSON (``8``,
  ``1e-3``, ``true``, ``null``, ``[1, 2]``, ``"text"``); Python's ``True``/``False``/``None`` are
  accepted too; anything else is the text itself (``readout=gated``).
* **No gradient clipping** is spelled ``--grad-clip none``; ``0`` means the same (older commands).
* **--resume / --overwrite** exclude each other; with an ``out`` field, :func:`parse_config` also
  refuses a non-empty ``--out`` unless one of them is given
  (:func:`gnnkit.train.outdir.check_out_dir`), before any data is read.
* **lr, epochs, schedule, final_lr_factor, decay_start**: default and check are
  :class:`gnnkit.train.TrainConfig`'s (:func:`train_setting`).
* **Progress bars**: ``--progress``/``--no-progress``; neither: a bar only when stderr is a
  terminal (a redirected log gets none; :class:`gnnkit.train.TrainConfig` ``progress=None``).

A check is a function ``value -> value`` that returns the (possibly normalised) value or raises
``ValueError`` with what is wrong, e.g. ``"must be an integer >= 1, got 0"``; :func:`check_config`
names the option (``--epochs must be an integer >= 1, got 0``). ``None`` skips the check of an
optional field. Fields with ``cli=False`` (or ``init=False``) get no option.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gnnkit.train.loop import TrainConfig, resolve_device
from gnnkit.train.outdir import check_out_dir

Check = Callable[[Any], Any]
MISSING = dataclasses.MISSING


# ----------------------------------------------------------------------------- parsers (argparse types)
def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def size_or_all(text: str) -> int | None:
    """An argparse type: an integer >= 1, or ``all`` (``None``: everything)."""
    if text.strip().lower() == "all":
        return None
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive int or 'all', got {text!r}") from None


def comma_list(text: str) -> tuple[str, ...]:
    """``"a, b,c"`` -> ``("a", "b", "c")`` (empty items dropped)."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def float_list(text: str) -> tuple[float, ...]:
    """``"0.8,0.1,0.1"`` -> ``(0.8, 0.1, 0.1)``."""
    try:
        return tuple(float(v) for v in comma_list(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def clip_norm(text: str) -> float | None:
    """``--grad-clip``: a gradient-norm bound, or ``none`` (``0`` means the same): no clipping."""
    if text.strip().lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None
    return None if value == 0 else value


def literal(text: str) -> Any:
    """A command-line value as the value it spells: JSON (``"8"`` -> 8, ``"1e-3"`` -> 0.001,
    ``"true"`` -> True, ``"[1, 2]"`` -> [1, 2]), Python's ``True``/``False``/``None``, else the
    text itself (``"gated"``)."""
    python = {"True": True, "False": False, "None": None}
    if text in python:
        return python[text]
    try:
        return json.loads(text)
    except ValueError:
        return text


def key_values(items: Sequence[str], flag: str = "--model-option") -> dict[str, Any]:
    """``["edge_hidden=64", "readout=gated"]`` -> ``{"edge_hidden": 64, "readout": "gated"}``
    (values read by :func:`literal`).

    Raises:
        ValueError: an item is not ``KEY=VALUE`` or a key is given twice (the message names ``flag``).
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} must be KEY=VALUE, got {item!r}")
        if key in out:
            raise ValueError(f"{flag} {key} given twice")
        out[key] = literal(value)
    return out


# ----------------------------------------------------------------------------- checks (value -> value)
def at_least(low: int) -> Check:
    """Check: an integer (not a bool) >= ``low``."""

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"must be an integer >= {low}, got {value!r}")
        return value

    return check


def fraction(low_open: bool = False, high_open: bool = True) -> Check:
    """Check: a number in [0, 1) (the ends as given)."""
    text = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"

    def check(value: Any) -> float:
        bad_low = value <= 0 if low_open else value < 0
        bad_high = value >= 1 if high_open else value > 1
        if not math.isfinite(value) or bad_low or bad_high:
            raise ValueError(f"must be in {text}, got {value}")
        return value

    return check


def one_of(choices: Sequence[str]) -> Check:
    """Check: one of ``choices``."""

    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(map(str, choices))}, got {value!r}")
        return value

    return check


def device_check(value: str) -> str:
    """Check: a device :func:`gnnkit.train.resolve_device` accepts here (CUDA present if named)."""
    try:
        resolve_device(value)
    except (ValueError, RuntimeError) as e:  # RuntimeError: torch.device("gpu")
        raise ValueError(f"{value!r}: {e}") from None
    return value


def grad_clip_check(value: float | None) -> float | None:
    """Check: ``None`` or ``0`` (no clipping, returned as ``None``) or a finite number > 0."""
    if value is None or value == 0:
        return None
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"must be >= 0 (0 or none: no clipping), got {value}")
    return float(value)


def train_check(name: str) -> Check:
    """Check: the value :class:`gnnkit.train.TrainConfig` accepts for its field ``name`` (its
    check, its message)."""

    def check(value: Any) -> Any:
        try:
            TrainConfig(**{name: value})
        except ValueError as e:
            raise ValueError(str(e).removeprefix(f"{name} ")) from None
        return value

    return check


# ----------------------------------------------------------------------------- fields
def option(
    default: Any = MISSING,
    help: str = "",
    *,
    check: Check | None = None,
    parse: Callable[[str], Any] | None = None,
    group: str | None = None,
    choices: Sequence[Any] | None = None,
    metavar: str | None = None,
    flag: str | None = None,
    cli: bool = True,
    key_values: bool = False,
    default_factory: Callable[[], Any] | Any = MISSING,
) -> Any:
    """A config field with everything its command-line option needs.

    Args:
        default: the default value (shown in the help).
        help: one line for ``--help``.
        check: ``value -> value`` (normalised) or ``ValueError`` saying what is wrong; run by
            :func:`check_config`. With ``choices`` and no check, the check is :func:`one_of`.
        parse: the argparse type (text -> value); by default from the field's type (``int``,
            ``float``, ``str``, ``X | None`` with ``none``; ``bool``: ``--name``/``--no-name``).
        group: the help section (e.g. ``"training"``); ``None``: the first, "options".
        choices, metavar: as argparse's.
        flag: the option's name if not ``--field-name`` (e.g. ``--model-option``).
        cli: ``False``: no option (set by the program, or by another option).
        key_values: a dict field filled by a repeatable ``FLAG KEY=VALUE`` (:func:`key_values`).
        default_factory: for mutable defaults, as :func:`dataclasses.field`'s.
    """
    if check is None and choices is not None:
        check = one_of(tuple(choices))
    meta = {"help": help, "check": check, "parse": parse, "group": group, "choices": choices, "metavar": metavar,
            "flag": flag, "cli": cli, "key_values": key_values}  # fmt: skip
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


_TRAIN_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def train_setting(name: str, help: str, default: Any = MISSING, **kwargs: Any) -> Any:
    """A field for one of :class:`gnnkit.train.TrainConfig`'s settings: its default (unless
    ``default`` is given) and its check are TrainConfig's, so they are written once."""
    if name not in _TRAIN_FIELDS:
        raise KeyError(f"TrainConfig has no field {name!r}")
    kwargs.setdefault("group", "training")
    kwargs.setdefault("check", train_check(name))
    return option(_TRAIN_FIELDS[name].default if default is MISSING else default, help, **kwargs)


# --epochs under --time-budget when not given: an upper bound the time reaches first.
BUDGET_EPOCHS = 10_000
_SCHEDULES: tuple[str, ...] = typing.get_args(typing.get_type_hints(TrainConfig)["schedule"])

# The settings every command spells the same way: name -> (default, help, option keywords).
_SHARED: dict[str, tuple[Any, str, dict[str, Any]]] = {
    "device": ("auto", "cpu, cuda, cuda:1 or auto (CUDA if available)", {"check": device_check, "group": "run"}),
    "seed": (0, "seeds the initialisation, the batch order (and a random split)", {"group": "run"}),
    "out": (MISSING, "output folder; a run writes only there", {"group": "run", "metavar": "DIR"}),
    "resume": (False, "continue the run in a non-empty --out (refused if its settings differ)", {"group": "run"}),
    "overwrite": (False, "replace the run files in a non-empty --out", {"group": "run"}),
    "progress": (None, "progress bar (default: only when stderr is a terminal)", {"group": "run"}),
    "model_options": (MISSING, "extra build_model option, e.g. edge_hidden=64 (repeatable; VALUE read as JSON)",
                      {"group": "model", "flag": "--model-option", "metavar": "KEY=VALUE", "key_values": True}),
}  # fmt: skip
_SHARED_TRAIN = {
    "epochs": "passes over the training data",
    "lr": "initial learning rate (Adam)",
    "schedule": f"learning-rate schedule: {', '.join(_SCHEDULES)}",
    "final_lr_factor": "end of the linear/cosine decay relative to --lr",
    "decay_start": "fraction of the training steps at --lr before the linear/cosine decay begins",
    "time_budget": "train for this many seconds of training wall-clock (evaluation excluded; counted over --resume) "
                   "instead of --epochs, which is then an upper bound; a linear/cosine schedule decays over the time",
}


def shared(name: str, default: Any = MISSING, help: str | None = None, **kwargs: Any) -> Any:
    """The field of a setting every command spells the same way: ``device``, ``seed``, ``out``,
    ``resume``, ``overwrite``, ``progress``, ``model_options`` (``--model-option KEY=VALUE``),
    ``grad_clip`` (``none``/``0``: no clipping), ``batch_size``, ``epoch_size`` and TrainConfig's
    ``epochs``, ``lr``, ``schedule``, ``final_lr_factor``, ``decay_start``, ``time_budget`` (default and check from
    :class:`gnnkit.train.TrainConfig`). ``default`` / ``help`` / keywords override the shared ones."""
    if name in _SHARED_TRAIN:
        if name == "schedule":
            kwargs.setdefault("choices", _SCHEDULES)
        if name == "time_budget":
            kwargs.setdefault("metavar", "SECONDS")
        return train_setting(name, help or _SHARED_TRAIN[name], default, **kwargs)
    if name == "grad_clip":
        return option(default, help or "clip the gradient norm to this; none (or 0): no clipping", check=grad_clip_check,
                      parse=clip_norm, group="training", **kwargs)  # fmt: skip
    if name == "epoch_size":  # make_loader(epoch_size=...): an epoch of N samples of an endless shuffled stream
        return option(None if default is MISSING else default, help or "molecules per epoch (a validation point and "
                      "checkpoint each, cut from an endless shuffled stream); none: one pass over the training set",
                      check=at_least(1), group="training", metavar="N", **kwargs)  # fmt: skip
    if name == "batch_size":
        return option(32 if default is MISSING else default, help or "molecules per step", check=at_least(1),
                      group="training", **kwargs)  # fmt: skip
    if name not in _SHARED:
        raise KeyError(f"no shared option {name!r}")
    base, text, meta = _SHARED[name]
    meta = {**meta, **kwargs}
    if name == "model_options":
        return option(help=help or text, default_factory=dict, **meta)
    return option(base if default is MISSING else default, help or text, **meta)


# ----------------------------------------------------------------------------- argparse
class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's and epilog's line breaks (examples), wraps option help."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=100)


def _optional(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse_optional(text: str) -> Any:
        return None if text.strip().lower() == "none" else parse(text)

    parse_optional.__name__ = getattr(parse, "__name__", "value")  # argparse names it in errors
    return parse_optional


def _parser_for(tp: Any) -> Callable[[str], Any] | None:
    if tp in (int, float, str):
        return tp
    args = typing.get_args(tp)
    if (typing.get_origin(tp) in (typing.Union, types.UnionType)) and type(None) in args and len(args) == 2:
        inner = _parser_for(next(a for a in args if a is not type(None)))
        return _optional(inner) if inner is not None else None
    return None


def _is_flag(tp: Any) -> bool:
    """``bool`` and ``bool | None`` fields are on/off switches."""
    return tp is bool or (typing.get_origin(tp) in (typing.Union, types.UnionType) and set(typing.get_args(tp)) == {bool, type(None)})


def _show(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value)) or "none"
    return "none" if value is None else str(value)


def _flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _cli_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init and f.metadata.get("cli", True) is not False]


def add_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """Adds one option per field of the dataclass ``cls``, in the help sections its fields name
    (see the module docstring). Options default to "not given" (``argparse.SUPPRESS``), so that
    :func:`given_options` returns only what the command line holds; the field's default is shown.

    Raises:
        TypeError: ``cls`` is not a dataclass, or a field's type has no parser and its metadata
            gives none.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"add_options takes a dataclass, got {cls!r}")
    hints = typing.get_type_hints(cls)
    groups: dict[str | None, Any] = {None: parser}
    for f in _cli_fields(cls):
        group = f.metadata.get("group")
        if group not in groups:
            groups[group] = parser.add_argument_group(f"{group} options")
        target = groups[group]
        help_text = f.metadata.get("help") or ""
        if f.default not in (MISSING, "") and "(default" not in help_text:
            help_text += f" (default: {_show(f.default)})"
        flag, kind = _flag(f), hints[f.name]
        if f.metadata.get("key_values"):
            target.add_argument(flag, dest=f.name, action="append", default=argparse.SUPPRESS,
                                metavar=f.metadata.get("metavar") or "KEY=VALUE", help=help_text)  # fmt: skip
            continue
        if _is_flag(kind) and not f.metadata.get("parse"):
            target.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=help_text)  # fmt: skip
            continue
        parse = f.metadata.get("parse") or _parser_for(kind)
        if parse is None:
            raise TypeError(f"field {cls.__name__}.{f.name} of type {kind} needs metadata={{'parse': ...}}")
        target.add_argument(flag, dest=f.name, type=parse, default=argparse.SUPPRESS, metavar=f.metadata.get("metavar"),
                            choices=f.metadata.get("choices"), help=help_text)  # fmt: skip


def given_options(namespace: argparse.Namespace) -> dict[str, Any]:
    """The options present on the command line, as ``{field: value}``."""
    return dict(vars(namespace))


def build_parser(cls: type, description: str | None = None, examples: str | None = None, prog: str | None = None,
                 parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:  # fmt: skip
    """An argparse parser for ``cls`` (or ``parser``, e.g. a subcommand's, filled in), with the
    examples as epilog."""
    if parser is None:
        text = description.replace("``", "") if description else None  # docstring markup reads as noise in a terminal
        parser = argparse.ArgumentParser(prog=prog, description=text, formatter_class=HelpFormatter)
    if examples:
        parser.epilog = "examples:\n" + examples.rstrip("\n") + "\n"
    add_options(parser, cls)
    return parser


def check_config(cfg: Any) -> None:
    """Runs every field's check (storing the value it returns), then the rules between fields:
    ``resume`` and ``overwrite`` exclude each other. Call it from ``__post_init__``.

    Raises:
        ValueError: ``--flag what is wrong``, for the first bad field.
    """
    for f in dataclasses.fields(cfg):
        check = f.metadata.get("check")
        value = getattr(cfg, f.name)
        if check is None or value is None:
            continue
        try:
            setattr(cfg, f.name, check(value))
        except ValueError as e:
            raise ValueError(f"{_flag(f)} {e}") from None
    if getattr(cfg, "resume", False) and getattr(cfg, "overwrite", False):
        raise ValueError("--resume and --overwrite exclude each other")


def layer(cls: type, given: Mapping[str, Any], presets: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The values a config is built from: the preset named by ``given["preset"]`` (or the
    ``preset`` field's default) over the defaults, then ``given``; dict values are merged."""
    values: dict[str, Any] = {}
    if presets is not None:
        name = given.get("preset", next((f.default for f in dataclasses.fields(cls) if f.name == "preset"), None))
        if name not in presets:
            raise ValueError(f"--preset must be one of {', '.join(presets)}, got {name!r}")
        values.update(presets[name])
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return values


def parse_given(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The options on the command line, as ``{field: value}`` (argparse's usage errors exit 2)."""
    return given_options(parser.parse_args(argv))


def config_from(
    cls: type,
    given: dict[str, Any],
    parser: argparse.ArgumentParser,
    presets: Mapping[str, Mapping[str, Any]] | None = None,
    resolve: Callable[[dict[str, Any], set[str]], dict[str, Any]] | None = None,
) -> Any:
    """The checked config from the options given (see :func:`parse_config`); a bad value is a
    usage error of ``parser`` (exit status 2)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    try:
        given = dict(given)
        for name, value in list(given.items()):
            if fields[name].metadata.get("key_values"):
                given[name] = key_values(value, _flag(fields[name]))
        values = layer(cls, given, presets)
        if resolve is not None:
            values = resolve(values, set(given))
        if "time_budget" in fields and values.get("time_budget") is not None and "epochs" in fields:
            values.setdefault("epochs", BUDGET_EPOCHS)  # the time ends the run; --epochs only if given
        missing = [_flag(f) for f in fields.values() if f.init and f.default is MISSING and f.default_factory is MISSING
                   and f.name not in values]  # fmt: skip
        if missing:
            raise ValueError(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required")
        cfg = cls(**values)
        if {"out", "resume", "overwrite"} <= set(fields) and getattr(cfg, "out", None):
            check_out_dir(cfg.out, cfg.resume, cfg.overwrite)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        parser.error(str(e))
    return cfg


def parse_config(
    cls: type,
    argv: Sequence[str] | None = None,
    *,
    parser: argparse.ArgumentParser | None = None,
    presets: Mapping[str, Mapping[str, Any]] | None = None,
    resolve: Callable[[dict[str, Any], set[str]], dict[str, Any]] | None = None,
    description: str | None = None,
    examples: str | None = None,
    prog: str | None = None,
) -> Any:
    """Command line -> checked config; a bad value is a usage error (exit status 2) before any
    data is read. :func:`parse_given` then :func:`config_from`.

    Args:
        cls: the config dataclass (its ``__post_init__`` should call :func:`check_config`).
        argv: the arguments (``None``: ``sys.argv[1:]``).
        parser: a parser already holding ``cls``'s options (e.g. a subcommand's); else one is built.
        presets: ``{name: {field: value}}`` layered between the defaults and the command line.
        resolve: ``(values, given) -> values``: a command's own rule between options (``given``:
            the fields typed on the command line), run before the config is built.
        description, examples, prog: for the parser built here.
    """
    if parser is None:
        parser = build_parser(cls, description, examples, prog)
    return config_from(cls, parse_given(parser, argv), parser, presets, resolve)


def run_command(parse: Callable[[Sequence[str] | None], Any], main: Callable[[Any], Any], argv: Sequence[str] | None,
                prog: str, status: Callable[[Any], int] = lambda outcome: 0) -> int:  # fmt: skip
    """Parses, runs and returns the exit status: 2 for a usage error (argparse's) or a ValueError
    the run raises before or while reading its data (``prog: error: ...`` on stderr, no
    traceback), else ``status(outcome)``."""
    try:
        cfg = parse(argv)
        outcome = main(cfg)
    except (ValueError, FileNotFoundError) as e:  # e.g. --out taken by another run, data that cannot be used: say why
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    return status(outcome)
