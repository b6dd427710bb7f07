"""Command-line options from a config dataclass: each option is written once, as a field.

A field becomes ``--field-name``; its help text and (for types other than ``int``, ``float``,
``str``, ``bool`` and ``X | None``) its parser come from the field's metadata (a callable, or
the name of one of :data:`PARSERS`, for configs in layers below this one)::

    @dataclass
    class Config:
        seeds: int = field(default=3, metadata={"help": "seeds per model"})
        models: tuple[str, ...] = field(default=("mpnn",), metadata={"help": "...", "parse": comma_list})

    parser = argparse.ArgumentParser()
    add_options(parser, Config)
    given = given_options(parser.parse_args(argv))   # only the options on the command line

Options default to "not given" (``argparse.SUPPRESS``), so that a caller can layer defaults
(e.g. a preset) under what the user typed; the field's default is shown in the help. ``bool``
fields get ``--name`` / ``--no-name``; an ``X | None`` field parses ``none`` as ``None``. Fields
with ``metadata={"cli": False}`` (or ``init=False``) get no option.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any


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


# Parsers a field's metadata may name as a string (``{"parse": "comma_list"}``).
PARSERS: dict[str, Callable[[str], Any]] = {"positive_int": positive_int, "size_or_all": size_or_all, "comma_list": comma_list}


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


def _show(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)


def add_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """Adds one ``--option`` per field of the dataclass ``cls`` (see the module docstring).

    Raises:
        TypeError: ``cls`` is not a dataclass, or a field's type has no parser and its metadata
            gives none.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"add_options takes a dataclass, got {cls!r}")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init or f.metadata.get("cli", True) is False:
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help")
        if help_text is not None and f.default is not dataclasses.MISSING:
            help_text += f" (default: {_show(f.default)})"
        if hints[f.name] is bool and "parse" not in f.metadata:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=help_text)  # fmt: skip
            continue
        parse = f.metadata.get("parse") or _parser_for(hints[f.name])
        if isinstance(parse, str):  # a config below the CLI layer names its parser (gnnkit.bench cannot import this module)
            parse = PARSERS[parse]
        if parse is None:
            raise TypeError(f"field {cls.__name__}.{f.name} of type {hints[f.name]} needs metadata={{'parse': ...}}")
        parser.add_argument(flag, dest=f.name, type=parse, default=argparse.SUPPRESS, metavar=f.metadata.get("metavar"),
                            choices=f.metadata.get("choices"), help=help_text)  # fmt: skip


def literal(text: str) -> int | float | bool | str:
    """A command-line value as the Python value it spells: ``"8"`` -> 8, ``"1e-3"`` -> 0.001,
    ``"true"`` -> True, anything else the string itself."""
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def key_values(items: list[str], flag: str = "--model-option") -> dict[str, int | float | bool | str]:
    """``["edge_hidden=64", "readout=gated"]`` -> ``{"edge_hidden": 64, "readout": "gated"}``.

    Raises:
        ValueError: an item is not ``KEY=VALUE`` or a key is given twice (the message names ``flag``).
    """
    out: dict[str, int | float | bool | str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} must be KEY=VALUE, got {item!r}")
        if key in out:
            raise ValueError(f"{flag} {key} given twice")
        out[key] = literal(value)
    return out


def given_options(namespace: argparse.Namespace) -> dict[str, Any]:
    """The options present on the command line, as ``{field: value}``."""
    return dict(vars(namespace))


__all__ = ["add_options", "given_options", "comma_list", "key_values", "literal", "positive_int", "size_or_all"]
