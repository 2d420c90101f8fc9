"""Typed options: one dataclass per component (aligner, trainer, run), parsed and checked before any work.

A component declares its knobs as dataclass fields made with `option(default, help, minimum=...)`; the type
annotation is the type. Values come in layers (the dataclass defaults, then a preset file, then the command
line); `resolve` applies them in order, parses strings from the command line into the annotated type, checks
ranges, and refuses an unknown key or a bad value with one line that names the flag, the key and what is
expected. Presets set a key on every component that has it; the command line may only name existing keys.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, Mapping

from harness.errors import HarnessError

TRUE, FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")
NULL = ("none", "null")


def option(default: Any, help: str, *, minimum: float | None = None, maximum: float | None = None,
           above: float | None = None) -> Any:
    """A dataclass field with its help text and range (`minimum` inclusive, `above` exclusive)."""
    return dataclasses.field(default=default, metadata={"help": help, "minimum": minimum, "maximum": maximum,
                                                        "above": above})


@dataclass(frozen=True)
class NoOptions:
    """For components that take no options."""


@dataclass(frozen=True)
class Layer:
    """A set of values and where they come from (for messages); `strict` refuses keys the component lacks."""

    source: str
    values: Mapping[str, Any]
    strict: bool = False


def field_type(cls: type, name: str) -> tuple[type, bool]:
    """(base type, accepts None) of a field from its annotation."""
    hint = typing.get_type_hints(cls)[name]
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        return next(a for a in args if a is not type(None)), True
    return hint, False


def parse_value(cls: type, name: str, raw: Any, source: str) -> Any:
    """`raw` (a command-line string or a value from a YAML file) as the field's type, range-checked."""
    kind, optional = field_type(cls, name)
    expected = kind.__name__ + (" or none" if optional else "")

    def bad(why: str = "") -> HarnessError:
        return HarnessError(f"{source} {name}={raw!r}: expected {why or ('a' if kind is not int else 'an')} "
                            f"{expected if not why else ''}".rstrip())

    if raw is None or (isinstance(raw, str) and raw.strip().lower() in NULL):
        if optional:
            return None
        raise bad()
    text = raw.strip() if isinstance(raw, str) else raw
    if kind is bool:
        if isinstance(text, bool):
            value: Any = text
        elif isinstance(text, str) and text.lower() in TRUE + FALSE:
            value = text.lower() in TRUE
        else:
            raise HarnessError(f"{source} {name}={raw!r}: expected true or false")
    elif kind is int:
        if isinstance(text, bool) or (isinstance(text, float) and not text.is_integer()):
            raise bad()
        try:
            value = int(text)
        except (TypeError, ValueError):
            raise bad() from None
    elif kind is float:
        if isinstance(text, bool):
            raise bad()
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise bad() from None
        if value != value or value in (float("inf"), float("-inf")):
            raise bad()
    elif kind is str:
        if not isinstance(text, str) or not text:
            raise bad()
        value = text
    elif typing.get_origin(kind) is dict or kind is dict:  # only from a file or a dedicated flag, never KEY=VALUE
        if not isinstance(text, Mapping):
            raise HarnessError(f"{source} {name}={raw!r}: expected a mapping")
        value = dict(text)
    else:  # a type this module does not parse: a programming error in the component
        raise TypeError(f"option {cls.__name__}.{name}: unsupported type {kind!r}")
    check_range(cls, name, value, source)
    return value


def check_range(cls: type, name: str, value: Any, source: str) -> None:
    meta = next(f.metadata for f in dataclasses.fields(cls) if f.name == name)
    low, high, above = meta.get("minimum"), meta.get("maximum"), meta.get("above")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if low is not None and value < low:
        raise HarnessError(f"{source} {name}={value}: must be at least {low}")
    if above is not None and value <= above:
        raise HarnessError(f"{source} {name}={value}: must be greater than {above}")
    if high is not None and value > high:
        raise HarnessError(f"{source} {name}={value}: must be at most {high}")


def names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def resolve(cls: type, layers: list[Layer], owner: str) -> Any:
    """The component's options: its defaults, then each layer in turn."""
    known = set(names(cls))
    values: dict[str, Any] = {}
    for layer in layers:
        for key, raw in layer.values.items():
            if key not in known:
                if layer.strict:
                    listed = ", ".join(sorted(known)) if known else "none"
                    raise HarnessError(f"{layer.source} {key}: {owner} has no option {key!r}; its options: {listed}")
                continue
            values[key] = parse_value(cls, key, raw, layer.source)
    return cls(**values)


def as_dict(options: Any) -> dict[str, Any]:
    return dataclasses.asdict(options)


def describe(cls: type) -> list[dict[str, Any]]:
    """Each option's name, type, default and help (for `harness list` and the docs)."""
    rows = []
    for f in dataclasses.fields(cls):
        kind, optional = field_type(cls, f.name)
        rows.append({"name": f.name, "type": kind.__name__ + (" | None" if optional else ""), "default": f.default,
                     "help": f.metadata.get("help", "")})
    return rows
