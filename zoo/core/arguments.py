"""Checking keyword arguments against a signature before any work: names, types, choices and ranges.

Used where arguments enter: a model's kwargs (``zoo.models.registry.build_model``), a
recipe's fields (``zoo.train.recipes.get_recipe``). A bad value is refused with the
valid ones, so ``aux_logits="False"`` (a truthy string) or ``stem="bogus"`` can
never reach a model.
"""
from __future__ import annotations

import functools
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal

from zoo.core.errors import ArgumentError, ZooError

__all__ = ["Range", "check_arguments"]


class Range(typing.NamedTuple):
    """Bounds of a number: ``low <= x`` (``low < x`` when ``open_low``), and ``x < high`` when given
    (``x <= high`` unless ``open_high``)."""

    low: float
    high: float = math.inf
    open_low: bool = False
    open_high: bool = True

    def admits(self, x: float) -> bool:
        above = x > self.low if self.open_low else x >= self.low
        return above and (x < self.high if self.open_high else x <= self.high)

    def __str__(self) -> str:
        lower = f"> {_number(self.low)}" if self.open_low else f">= {_number(self.low)}"
        upper = f" and {'<' if self.open_high else '<='} {_number(self.high)}" if self.high != math.inf else ""
        return lower + upper


def _number(x: float) -> str:
    """``1,000,000`` for a whole number (never ``1e+06``), ``0.5`` otherwise."""
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


def check_arguments(
    what: str,
    values: Mapping[str, Any],
    fn: Callable[..., Any],
    *,
    exclude: tuple[str, ...] = (),
    ranges: Mapping[str, Range] | None = None,
    error: type[ZooError] = ArgumentError,
) -> None:
    """Refuse any of ``values`` that ``fn``'s signature does not take, or takes with another type or range."""
    hints = _hints(fn)
    names = [n for n in hints if n not in ("return", "self", *exclude)]
    for name, value in values.items():
        if name not in names:
            raise error(f"{what} takes no {name!r}; it takes {', '.join(names)}")
        problem = _type_problem(value, hints[name])
        if problem is None and value is not None and ranges and name in ranges and not ranges[name].admits(value):
            problem = f"must be {ranges[name]}"
        if problem:
            raise error(f"{what}: {name}={value!r} {problem}")


@functools.lru_cache(maxsize=256)
def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """``fn``'s resolved annotations, once per function: resolving string annotations costs about a millisecond,
    and a plan checks a recipe's fields thousands of times. Read it, never change it."""
    return typing.get_type_hints(fn)


def _type_problem(value: Any, hint: Any) -> str | None:
    """Why ``value`` does not fit the annotation ``hint``, or None. Literals list their choices."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return None if value in args else f"is not one of {', '.join(map(repr, args))}"
    if origin in (typing.Union, types.UnionType):
        problems = [_type_problem(value, a) for a in args]
        return None if None in problems else " or ".join(p for p in problems if p)
    if hint is type(None):
        return None if value is None else "is not None"
    if hint is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "must be a whole number"
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok else "must be a finite number"
    if hint is str:
        return None if isinstance(value, str) else "must be a string"
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return None if isinstance(value, dict) else "must be a mapping"
    return None
