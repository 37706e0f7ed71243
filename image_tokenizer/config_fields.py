"""JSON objects to config dataclasses, checked at the boundary: unknown keys and wrongly typed values are refused with
a ConfigError naming the field; keyword overrides of a dataclass name every field when one is unknown."""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

from .errors import ConfigError, shorten


def with_overrides(cls: type, base: Any, overrides: dict[str, Any] | None, error: type[Exception], argument: str,
                   what: str, hint: str = "") -> Any:
    """`base` (or `cls`'s defaults) with keyword overrides, for config dataclasses built from keywords. A base of
    another type is `error` naming `argument`; an unknown keyword is `error` naming `what` (e.g. "prior config
    field") and every field."""
    base = cls() if base is None else base
    if not isinstance(base, cls):
        raise error(f"{argument} must be a {cls.__name__}, got {type(base).__name__}{hint}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(overrides or {}) - set(names))
    if unknown:
        raise error(f"unknown {what}(s) {unknown}; the {what.split()[-1]}s are {names}")
    return dataclasses.replace(base, **(overrides or {}))


def from_json_dict(cls: type, data: Any, where: str) -> Any:
    """Build a dataclass from a dict, refusing unknown keys and wrongly typed values, naming the field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a JSON object, got {shorten(data)}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown {where} field(s) {unknown}; known: {sorted(names)}")
    hints = typing.get_type_hints(cls)
    for name, value in data.items():
        check_json_type(value, hints[name], f"{where}.{name}" if where != "config" else name)
    try:
        return cls(**data)
    except TypeError as error:
        raise ConfigError(f"bad {where}: {error}") from None


def check_json_type(value: Any, hint: Any, field_name: str) -> None:
    """A JSON value against a field's annotation: a bool is a bool, an int an int, numbers finite, lists of
    numbers where tuples are expected, objects where a nested section is expected."""
    args = typing.get_args(hint)
    if type(None) in args:  # X | None
        if value is None:
            return
        hint = next(a for a in args if a is not type(None))
        args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, (dict, hint)):
            raise ConfigError(f"field {field_name} must be a JSON object, got {shorten(value)}")
        return
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"field {field_name} must be a list, got {shorten(value)}")
        item = args[0]
        for element in value:
            check_json_type(element, item, f"{field_name}[]")
        return
    wrong = (
        (hint is bool and not isinstance(value, bool))
        or (hint is int and (isinstance(value, bool) or not isinstance(value, int)))
        or (hint is float and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)))
        or (hint is str and not isinstance(value, str))
    )
    if wrong:
        kind = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}[hint]
        raise ConfigError(f"field {field_name} must be {kind}, got {shorten(value)}")
