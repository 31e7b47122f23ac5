"""One typed-config mechanism for every config of echolite: run configs and compression steps.

A config is a dataclass whose fields are declared with :func:`setting`: a default, a one-line doc
(what ``--help``, ``echolite config`` and ``echolite recipes`` print) and whether the field is part
of what an artifact is *made from* (``identity=False``: it changes how something is computed or
where it goes, never the result; see :mod:`echolite.identity`). Choices are ``Literal[...]`` types,
checked here for every config alike.

Every value that reaches a config (a YAML file, ``--set section.key=value``, a recipe's step
fields, a checkpoint's stored config) passes :func:`coerce`, the one conversion rule.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
import typing
from typing import Any, Literal, Union

from echolite import EcholiteError

DOC, IDENTITY = "doc", "identity"


def setting(default: Any, doc: str, *, identity: bool = True) -> Any:
    """A config field with its doc; lists and dicts get a fresh copy per instance."""
    meta = {DOC: doc, IDENTITY: identity}
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def doc(f: dataclasses.Field) -> str:
    return f.metadata.get(DOC, "")


def is_identity(f: dataclasses.Field) -> bool:
    """Whether the field is part of what an artifact is made from (default: yes)."""
    return bool(f.metadata.get(IDENTITY, True))


def hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _optional(hint) -> tuple[Any, bool]:
    if typing.get_origin(hint) in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0], True
    return hint, False


def type_name(hint) -> str:
    hint, optional = _optional(hint)
    origin = typing.get_origin(hint)
    if origin is Literal:
        text = " | ".join(str(a) for a in typing.get_args(hint))
    elif origin in (list, tuple):
        text = "list of names"
    elif hint is dict or origin is dict:
        text = "mapping"
    else:
        text = {bool: "true|false", int: "integer", float: "number", str: "text"}.get(hint, str(hint))
    return text + (" or null" if optional else "")


def coerce(value: Any, hint: Any, where: str) -> Any:
    """``value`` as the declared type ``hint``, or a one-line error naming ``where``.

    The rules, the same for every config: ``null`` only where the type is optional; a choice
    (``Literal``) must be one of its values; booleans are ``true``/``false`` only; an integer
    takes integers (and integral numbers, 3.0); a number takes integers and numbers; both take a
    text that reads as one (YAML reads ``3e-4`` as text); text takes text; a list of names takes a
    list or a comma-separated text (``--set x=a,b``); a mapping takes a mapping.
    """
    base, optional = _optional(hint)
    if value is None:
        if optional:
            return None
        raise EcholiteError(f"{where} must be {type_name(hint)}, but got null")
    origin = typing.get_origin(base)
    if origin is Literal:
        choices = typing.get_args(base)
        kind = type(choices[0])
        with contextlib.suppress(EcholiteError):
            value = coerce(value, kind, where)
        if value not in choices or (isinstance(value, bool) and kind is not bool):  # True == 1
            raise EcholiteError(f"{where} must be one of {', '.join(map(str, choices))}, but got {value!r}")
        return value
    bad = EcholiteError(f"{where} must be {type_name(base)}, but got {value!r}")
    if base is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if base in (int, float) and isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise bad from None
    if base is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, int):
            raise bad
        return value
    if base is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad
        try:
            value = float(value)
        except OverflowError:
            raise bad from None
        if not math.isfinite(value):
            raise bad
        return value
    if base is str:
        if not isinstance(value, str):
            raise bad
        return value
    if origin in (list, tuple) or base in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise bad
        items = typing.get_args(base)[:1]
        if items and items[0] is str and not all(isinstance(v, str) for v in value):
            raise bad
        return tuple(value) if (origin or base) is tuple else list(value)
    if base is dict or origin is dict:
        if not isinstance(value, dict):
            raise bad
        return dict(value)
    return value


def check(obj: Any, where: str) -> None:
    """Every field of a config dataclass against its declared type (after in-place changes)."""
    types_ = hints(type(obj))
    for f in dataclasses.fields(obj):
        object.__setattr__(obj, f.name, coerce(getattr(obj, f.name), types_[f.name], f"{where}.{f.name}"))


def build(cls: type, raw: dict | None, where: str) -> Any:
    """An instance of the config dataclass ``cls`` from a mapping: unknown keys, wrong types and
    the class's own checks (``__post_init__``) all become one-line errors naming ``where``."""
    raw = raw or {}
    if not isinstance(raw, dict):
        raise EcholiteError(f"{where}: expected {{field: value}}, got {raw!r}")
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise EcholiteError(f"{where}: unknown field(s) {', '.join(unknown)} "
                            f"(known: {', '.join(known) or 'none'})")
    types_ = hints(cls)
    values = {name: coerce(value, types_[name], f"{where}.{name}") for name, value in raw.items()}
    try:
        return cls(**values)
    except EcholiteError as err:
        raise EcholiteError(f"{where}: {err}") from None
    except (TypeError, ValueError) as err:
        raise EcholiteError(f"{where}: {err}") from None


def describe(cls_or_obj: Any, indent: str = "  ") -> list[str]:
    """``name: type = value  # doc`` for every field (what ``--help`` and ``echolite recipes`` print)."""
    types_ = hints(cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj))
    lines = []
    for f in dataclasses.fields(cls_or_obj):
        if isinstance(cls_or_obj, type):
            value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        else:
            value = getattr(cls_or_obj, f.name)
        note = "" if is_identity(f) else " [not part of any key]"
        lines.append(f"{indent}{f.name}: {type_name(types_[f.name])} = {value!r}  # {doc(f)}{note}")
    return lines
