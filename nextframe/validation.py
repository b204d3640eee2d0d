"""One validator for every setting a user can write: config files, model metadata and CLI flags.

Config dataclasses call `check_fields(self, "train config")` first thing in `__post_init__`: each field is checked
against its annotation (an int is not a bool and not 2.5, a float is finite, a tuple holds what it says) and
against the class's `RANGES` table, so a wrong type, NaN, infinity or an out-of-range value is a one-line
ValueError naming the key, before anything is built. Rules that tie several fields together stay in the class.
CLI flags use the argparse types below, which apply the same rules to one value.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing

Range = tuple[float | None, float | None]  # inclusive (lo, hi); None: unbounded on that side


def check_fields(obj, what: str) -> None:
    """Check (and normalise: an int where a float is declared becomes a float; lists become tuples) every field."""
    hints = typing.get_type_hints(type(obj))
    ranges: dict[str, Range] = getattr(type(obj), "RANGES", {})
    unknown = sorted(set(ranges) - {f.name for f in dataclasses.fields(obj)})
    if unknown:  # a typo in a RANGES table would silently check nothing
        raise TypeError(f"{type(obj).__name__}.RANGES names unknown fields {unknown}")
    for f in dataclasses.fields(obj):
        value = _coerce(getattr(obj, f.name), hints[f.name], f"{what}: {f.name}")
        if f.name in ranges:
            _check_range(value, ranges[f.name], f"{what}: {f.name}")
        object.__setattr__(obj, f.name, value)  # frozen dataclasses too


def _coerce(value, hint, name: str):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in args:
            try:
                return _coerce(value, option, name)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(f"{name} must be one of {' | '.join(_name(a) for a in args)} (got {value!r})")
    if hint is type(None):
        if value is not None:
            raise ValueError(f"{name} must be null (got {value!r})")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false (got {value!r})")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer (got {value!r})")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number (got {value!r})")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite (got {value!r})")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string (got {value!r})")
        return value
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            raise ValueError(f"{name} must be a list (got {value!r})")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{name}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ValueError(f"{name} must have {len(args)} entries (got {len(value)})")
        return tuple(_coerce(v, a, f"{name}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    raise TypeError(f"{name}: no validation rule for annotation {hint!r}")


def _check_range(value, bounds: Range, name: str) -> None:
    lo, hi = bounds
    if value is None:  # an optional setting left out
        return
    items = value if isinstance(value, tuple) else (value,)
    for v in items:
        if isinstance(v, tuple):  # nested pairs such as event_rows: each entry
            _check_range(v, bounds, name)
            continue
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            span = f"{'-inf' if lo is None else lo}..{'inf' if hi is None else hi}"
            raise ValueError(f"{name} must be in {span} (got {value!r})")


def _name(hint) -> str:
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


@dataclasses.dataclass
class SamplerDefaults:
    """The sampler settings a model file carries in its metadata (default_steps, default_context_noise and a
    distilled student's default_times): model metadata is user input like any config."""
    steps: int = 4
    context_noise: float = 0.0
    times: tuple[float, ...] | None = None  # descending from 1 to 0, steps + 1 entries

    RANGES: typing.ClassVar[dict] = {"steps": (1, 1000), "context_noise": (0.0, 1.0), "times": (0.0, 1.0)}

    def __post_init__(self):
        check_fields(self, "model metadata")
        if self.times is not None:
            if list(self.times) != sorted(self.times, reverse=True) or len(self.times) < 2:
                raise ValueError(f"model metadata: times must descend, at least 2 entries (got {list(self.times)})")
            self.times = list(self.times)


# ---- argparse types: the same rules for one CLI value ------------------------------------------------------

def _flag_type(kind: type, lo, hi):
    """An argparse type: text -> kind, finite, within [lo, hi]; the rules of check_fields for one CLI value."""
    noun = "an integer" if kind is int else "a number"

    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun} (got {text!r})") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be finite (got {text})")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be in {lo if lo is not None else '-inf'}.."
                                             f"{hi if hi is not None else 'inf'} (got {v})")
        return v
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def int_in(lo: int | None = None, hi: int | None = None):
    return _flag_type(int, lo, hi)


def float_in(lo: float | None = None, hi: float | None = None):
    return _flag_type(float, lo, hi)


positive_int = int_in(1)
nonneg_int = int_in(0)
unit_float = float_in(0.0, 1.0)
