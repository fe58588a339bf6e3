"""``Param``: what a setting accepts and how ``--set key=value`` text becomes a checked value; the
standard Params of torch optimizers' keyword names."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from ..errors import ConfigError
from ..text import format_value

__all__ = ["Param", "STANDARD_PARAMS", "infer_param", "split_pairs", "standard_params"]


@dataclass(frozen=True)
class Param:
    """What a setting accepts (a hyperparameter, or a count or size of a run): its kind and its range.

    ``kind`` is ``float``, ``int``, ``bool`` or ``tuple`` (of floats); ``length`` fixes a tuple's
    length (None: any length >= 1). Bounds apply to every element of a tuple; an int is compared
    exactly (a seed near 2**64 is not rounded). ``what`` names a value in messages ("a fraction").
    """

    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    length: int | None = None
    what: str = ""

    def describe(self) -> str:
        """The allowed values in words, for error messages."""
        if self.kind is bool:
            return "true or false"
        if self.low is None and self.high is None:
            rng = "any number"
        else:
            lo = "-inf" if self.low is None else self._bound_text(self.low)
            hi = "inf" if self.high is None else self._bound_text(self.high)
            lb = "(" if self.low_open or self.low is None else "["
            hb = ")" if self.high_open or self.high is None else "]"
            rng = f"a number in {lb}{lo}, {hi}{hb}"
        if self.kind is tuple:
            n = f"{self.length} " if self.length else ""
            return f"{n}comma-separated values, each {rng}"
        if self.kind is int:
            rng = rng.replace("any number", "any integer").replace("a number", "an integer")
        if self.what:
            rng = rng.replace("any integer", f"any {self.what}").replace("an integer", self.what)
            rng = rng.replace("any number", f"any {self.what}").replace("a number", self.what)
        return rng

    def _bound_text(self, bound: float) -> str:
        return str(int(bound)) if self.kind is int else f"{bound:g}"

    def check(self, key: str, value: Any) -> Any:
        """Return ``value`` normalised to this kind, or raise ConfigError naming key and value."""
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{key}={value!r} is not allowed: expected {self.describe()}")
            return value
        items = value if self.kind is tuple else (value,)
        if self.kind is tuple:
            if not isinstance(value, (tuple, list)) or not value:
                raise ConfigError(f"{key}={value!r} is not allowed: expected {self.describe()}")
            if self.length is not None and len(value) != self.length:
                raise ConfigError(
                    f"{key}={_show(value)} has {len(value)} values: expected {self.describe()}"
                )
        out = []
        for item in items:
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                raise ConfigError(f"{key}={_show(value)} is not allowed: expected {self.describe()}")
            if self.kind is int and not (isinstance(item, int) or float(item).is_integer()):
                raise ConfigError(f"{key}={_show(value)} is not allowed: expected {self.describe()}")
            x = int(item) if self.kind is int else float(item)
            if not self.in_range(x):  # NaN is in no range
                raise ConfigError(f"{key}={_show(value)} is out of range: expected {self.describe()}")
            out.append(x)
        return tuple(out) if self.kind is tuple else out[0]

    def check_option(self, flag: str, value: Any) -> Any:
        """The value of the option ``flag``, as typed (text) or as a config file gives it, parsed and
        checked; ConfigError ``--flag VALUE is not allowed: expected ...`` (the value as given)."""
        try:
            return self.parse(flag, value) if isinstance(value, str) else self.check(flag, value)
        except ConfigError:
            shown = value.strip() if isinstance(value, str) else format_value(value, exact=True)
            raise ConfigError(f"{flag} {shown} is not allowed: expected {self.describe()}") from None

    def parse(self, key: str, text: str) -> Any:
        """Parse the text of ``--set key=text`` into this kind, then check it."""
        text = text.strip()
        if self.kind is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{key}={text!r} is not allowed: expected {self.describe()}")
        parts = [p for p in text.strip("()[] ").split(",")] if self.kind is tuple else [text]
        values = []
        for part in parts:
            try:
                values.append(int(part) if self.kind is int else float(part))
            except ValueError:
                raise ConfigError(
                    f"{key}={text!r} is not allowed: expected {self.describe()}"
                ) from None
        return self.check(key, tuple(values) if self.kind is tuple else values[0])

    def in_range(self, x: float) -> bool:
        if self.low is not None and (x < self.low or (self.low_open and x == self.low)):
            return False
        if self.high is not None and (x > self.high or (self.high_open and x == self.high)):
            return False
        return isinstance(x, int) or math.isfinite(x)


def _show(value: Any) -> str:
    """A value in an error message: sequences as typed, scalars as their repr."""
    return format_value(value) if isinstance(value, (tuple, list)) else repr(value)


def _unit(open_high: bool = True) -> Param:
    return Param(float, 0.0, 1.0, high_open=open_high)


# The keyword names of torch optimizers (and MTAdamV2) with their allowed values. A preset's keys
# are checked against this table unless the preset brings a Param of its own.
STANDARD_PARAMS: Mapping[str, Param] = {
    "lr": Param(float, 0.0, None, low_open=True),
    "momentum": _unit(),
    "dampening": _unit(open_high=False),
    "nesterov": Param(bool),
    "weight_decay": Param(float, 0.0, None),
    "betas": Param(tuple, 0.0, 1.0, high_open=True, length=2),
    "eps": Param(float, 0.0, None, low_open=True),
    "alpha": _unit(open_high=False),
    "lr_decay": Param(float, 0.0, None),
    "initial_accumulator_value": Param(float, 0.0, None),
    "rho": _unit(open_high=False),
    "centered": Param(bool),
    "amsgrad": Param(bool),
    "norm_beta": _unit(),
    "task_weights": Param(tuple, 0.0, None),
}



def standard_params(*keys: str) -> dict[str, Param]:
    """The STANDARD_PARAMS entries for ``keys``: extra settings a preset accepts beyond its defaults."""
    return {key: STANDARD_PARAMS[key] for key in keys}


def infer_param(value: Any) -> Param:
    if isinstance(value, bool):
        return Param(bool)
    if isinstance(value, int):
        return Param(int)
    if isinstance(value, (tuple, list)):
        return Param(tuple, length=len(value))
    return Param(float)


def split_pairs(items: Iterable[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"bad setting {item!r}: expected key=value, e.g. lr=0.01")
        pairs.append((key.strip(), value))
    return pairs


