"""Checks of everything a command needs, run before its first job starts, so that a typo or a
broken file fails in the first second and not after an hour of training. Every problem is one
XadError line naming the option or the file.

Method hyperparameters are checked against the types annotated on the method's `__init__` and
against the constraints the method declares in `parameter_constraints` (after scikit-learn's
`_parameter_constraints`): {name: Interval(...) | OneOf(...) | Check(...)}.
"""
from __future__ import annotations

import json
import math
import numbers
import tempfile
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xadbench.errors import XadError


@dataclass(frozen=True)
class Interval:
    """A number of `kind` (int or float; an int passes as a float) in [low, high], finite; None
    leaves a side open. closed: which ends belong to it: "both", "left", "right" or "neither"."""

    kind: type
    low: float | None = None
    high: float | None = None
    closed: str = "both"

    def problem(self, value: Any) -> str | None:
        if not _is_kind(value, self.kind) or not math.isfinite(value):
            return f"must be a finite {'integer' if self.kind is int else 'number'}"
        low_ok = self.low is None or value > self.low or (value == self.low and self.closed in ("both", "left"))
        high_ok = self.high is None or value < self.high or (value == self.high and self.closed in ("both", "right"))
        return None if low_ok and high_ok else f"must be {self.describe()}"

    def describe(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>=' if self.closed in ('both', 'left') else '>'} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<=' if self.closed in ('both', 'right') else '<'} {self.high:g}")
        return " and ".join(parts) or "finite"


@dataclass(frozen=True)
class OneOf:
    """One of the listed values."""

    values: tuple[Any, ...]

    def problem(self, value: Any) -> str | None:
        return None if value in self.values else f"must be one of {', '.join(map(str, self.values))}"


@dataclass(frozen=True)
class Check:
    """Any test: `test(value)` raises ValueError or XadError (its message says why) for a bad
    value."""

    test: Callable[[Any], Any]

    def problem(self, value: Any) -> str | None:
        try:
            self.test(value)
        except (ValueError, TypeError, XadError) as exc:
            return " ".join(str(exc).split())
        return None


def _is_kind(value: Any, kind: Any) -> bool:
    """isinstance for the annotated types of __init__ keywords: bool is not an int here, an int
    is a float, and unions and Optional are any of their members."""
    if kind is Any:
        return True
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return any(_is_kind(value, member) for member in typing.get_args(kind))
    if kind is type(None):
        return value is None
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if origin is not None:
        kind = origin
    return isinstance(kind, type) and isinstance(value, kind)


def _type_name(kind: Any) -> str:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(member) for member in typing.get_args(kind))
    return {int: "an integer", float: "a number", str: "text", bool: "true or false", type(None): "null"}.get(
        kind, getattr(kind, "__name__", str(kind)))


def _method_class(plugin: Any) -> type:
    return getattr(plugin, "method_class", plugin)  # a Variant names its class


def check_method_params(name: str, plugin: Any, params: dict[str, Any], option: str = "--set") -> None:
    """Every value in `params` has the type annotated on the method's __init__ and meets the
    constraint it declares; one line naming the method, the key and the value otherwise."""
    cls = _method_class(plugin)
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # noqa: BLE001  a plugin's annotations may not resolve; then types are not checked
        hints = {}
    constraints = getattr(cls, "parameter_constraints", {})
    for key, value in params.items():
        where = f"{option} {name}.{key}={json.dumps(value) if not isinstance(value, str) else value}"
        if key in hints and not _is_kind(value, hints[key]):
            raise XadError(f"{where}: method {name!r} wants {_type_name(hints[key])} for {key}")
        if key in constraints:
            problem = constraints[key].problem(value)
            if problem:
                raise XadError(f"{where}: {key} {problem}")


def parse_assignment(item: str) -> tuple[str | None, str, Any]:
    """"[METHOD.]KEY=VALUE" -> (METHOD or None, KEY, VALUE); VALUE parsed as JSON where it is
    JSON (numbers, true/false, null), else kept as text."""
    target, sep, raw = item.partition("=")
    scope, dot, key = target.rpartition(".")
    if not sep or not key or (dot and not scope):
        raise XadError(f"--set {item!r}: expected KEY=VALUE or METHOD.KEY=VALUE, e.g. --set epochs=5 "
                       "or --set fcdd.epochs=5")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    if isinstance(value, float) and not math.isfinite(value):
        raise XadError(f"--set {item}: {raw} is not a finite number")
    return (scope or None), key, value


def method_params(method_names: Sequence[str], assignments: Sequence[str]) -> dict[str, tuple[tuple[str, Any], ...]]:
    """The --set values each method gets, checked: METHOD.KEY=VALUE goes to that method only (it
    must be asked for and have KEY); an unscoped KEY=VALUE goes to every asked-for method that
    has KEY, and is an error when none has it. A key that a Variant fixes cannot be set."""
    from xadbench.registry import methods

    plugins = {name: methods.get(name) for name in method_names}
    given: dict[str, dict[str, Any]] = {name: {} for name in method_names}
    for item in assignments:
        scope, key, value = parse_assignment(item)
        if scope is not None and scope not in plugins:
            raise XadError(f"--set {item}: method {scope!r} is not in --methods ({', '.join(method_names)})")
        targets = [scope] if scope is not None else list(plugins)
        takers = [name for name in targets if key in plugins[name].param_names()]
        if not takers:
            known = sorted({p for name in targets for p in plugins[name].param_names()})
            who = f"method {scope!r} has no" if scope else f"none of {', '.join(targets)} has a"
            raise XadError(f"--set {item}: {who} parameter {key!r}; parameters: {', '.join(known)}")
        for name in takers:
            fixed = getattr(plugins[name], "fixed", {})
            if key in fixed:
                raise XadError(f"--set {item}: method {name!r} fixes {key}={fixed[key]!r}; use its base method instead")
            given[name][key] = value
    for name, params in given.items():
        check_method_params(name, plugins[name], params)
    return {name: tuple(params.items()) for name, params in given.items()}


def check_out_folder(out: Path, option: str = "--out") -> None:
    """`out` is a folder we can write into, or can be created as one: not a file, not under a
    file, and its nearest existing folder accepts a new file (tried, not guessed from the mode
    bits, which root ignores). Creates nothing that stays."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise XadError(f"{option} {out}: is a file, not a folder; pass a folder")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise XadError(f"{option} {out}: {existing} is a file, so no folder can be made under it")
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".xadbench-write-test-"):
            pass
    except OSError as exc:
        reason = "permission denied" if isinstance(exc, PermissionError) else " ".join((exc.strerror or str(exc)).split())
        raise XadError(f"{option} {out}: cannot write into {existing} ({reason})") from None


def check_classes(data: Any, classes: Sequence[str], image_size: int) -> None:
    """Every asked-for class exists and passes the data set's own checks (`Dataset.check`):
    every data error loading it would raise, before any job starts. Touches no other class."""
    for class_name in classes:
        data.check(class_name, image_size)

