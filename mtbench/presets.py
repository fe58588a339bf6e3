"""Optimizer presets: the data a plugin hands to mtbench, and the typed `--set key=value` overrides."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from .errors import ConfigError

Factory = Callable[..., Any]


@dataclass(frozen=True)
class Param:
    """What a hyperparameter accepts: its kind and its allowed range.

    ``kind`` is ``float``, ``int``, ``bool`` or ``tuple`` (of floats); ``length`` fixes a tuple's
    length (None: any length >= 1). Bounds apply to every element of a tuple.
    """

    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    length: int | None = None

    def describe(self) -> str:
        """The allowed values in words, for error messages."""
        if self.kind is bool:
            return "true or false"
        if self.low is None and self.high is None:
            rng = "any number"
        else:
            lo = "-inf" if self.low is None else f"{self.low:g}"
            hi = "inf" if self.high is None else f"{self.high:g}"
            lb = "(" if self.low_open or self.low is None else "["
            hb = ")" if self.high_open or self.high is None else "]"
            rng = f"a number in {lb}{lo}, {hi}{hb}"
        if self.kind is tuple:
            n = f"{self.length} " if self.length else ""
            return f"{n}comma-separated values, each {rng}"
        if self.kind is int:
            return rng.replace("a number", "an integer")
        return rng

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
            if self.kind is int and not float(item).is_integer():
                raise ConfigError(f"{key}={_show(value)} is not allowed: expected {self.describe()}")
            x = float(item)
            if math.isnan(x) or not self._in_range(x):
                raise ConfigError(f"{key}={_show(value)} is out of range: expected {self.describe()}")
            out.append(int(item) if self.kind is int else x)
        return tuple(out) if self.kind is tuple else out[0]

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

    def _in_range(self, x: float) -> bool:
        if self.low is not None and (x < self.low or (self.low_open and x == self.low)):
            return False
        if self.high is not None and (x > self.high or (self.high_open and x == self.high)):
            return False
        return math.isfinite(x)


def format_value(value: Any) -> str:
    """A hyperparameter as the user would type it after ``--set key=``: 0.9,0.999 / 1e-08 / true."""
    if isinstance(value, (tuple, list)):
        return ",".join(format_value(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


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


@dataclass(frozen=True)
class Expected:
    """The optimizer guide's expected results on real ImageNet + COCO (5 epochs, batch size 8)."""

    top1: tuple[float, float]
    miou: tuple[float, float]
    convergence: str

    def to_dict(self) -> dict:
        return {"top1": list(self.top1), "miou": list(self.miou), "convergence": self.convergence}


@dataclass(frozen=True)
class OptimizerPreset:
    """One optimizer with its tuned settings, as a plugin declares it.

    ``factory(params, **hyperparams)`` builds the optimizer; ``defaults`` holds the tuned
    hyperparameters under the optimizer's own keyword names; ``params`` adds or narrows what
    ``--set`` accepts beyond ``defaults`` (kinds from STANDARD_PARAMS otherwise).
    ``per_task_gradients`` says that ``step(task_grads)`` takes each task's gradients apart.
    ``order`` places the preset in listings and the run menu (ties keep discovery order).
    """

    name: str
    title: str
    factory: Factory
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    per_task_gradients: bool = False
    params: Mapping[str, Param] = field(default_factory=dict)
    expected: Expected | None = None
    order: int = 100

    def param(self, key: str) -> Param | None:
        """The Param that checks ``key``, or None when this preset does not accept it."""
        if key in self.params:
            return self.params[key]
        if key in self.defaults:
            return STANDARD_PARAMS.get(key) or _infer_param(self.defaults[key])
        return None

    def accepted_keys(self) -> list[str]:
        return sorted(set(self.defaults) | set(self.params))

    def resolve(self, overrides: Mapping[str, Any] | Iterable[str] = ()) -> dict[str, Any]:
        """Preset defaults with ``overrides`` applied and checked: user > preset > optimizer.

        ``overrides`` is a mapping of typed values or an iterable of ``key=value`` strings.
        """
        pairs = overrides.items() if isinstance(overrides, Mapping) else _split_pairs(overrides)
        resolved = {k: self.param(k).check(k, v) for k, v in self.defaults.items()}
        for key, value in pairs:
            spec = self.param(key)
            if spec is None:
                raise ConfigError(
                    f"unknown setting {key!r} for optimizer {self.name!r}; "
                    f"accepted: {', '.join(self.accepted_keys()) or 'none'}"
                )
            resolved[key] = spec.parse(key, value) if isinstance(value, str) else spec.check(key, value)
        return resolved


def _infer_param(value: Any) -> Param:
    if isinstance(value, bool):
        return Param(bool)
    if isinstance(value, int):
        return Param(int)
    if isinstance(value, (tuple, list)):
        return Param(tuple, length=len(value))
    return Param(float)


def _split_pairs(items: Iterable[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"bad setting {item!r}: expected key=value, e.g. lr=0.01")
        pairs.append((key.strip(), value))
    return pairs


def validate_preset(preset: Any) -> OptimizerPreset:
    """Check what a plugin returned; raise ValueError with the reason when it is not a usable preset."""
    if not isinstance(preset, OptimizerPreset):
        raise ValueError(f"returned {type(preset).__name__}, expected mtbench.OptimizerPreset")
    if not preset.name or not preset.name.replace("_", "").replace("-", "").isalnum() or preset.name != preset.name.lower():
        raise ValueError(f"preset name {preset.name!r} must be lower-case letters, digits, '_' or '-'")
    if not callable(preset.factory):
        raise ValueError(f"preset {preset.name!r}: factory is not callable")
    if not isinstance(preset.defaults, Mapping):
        raise ValueError(f"preset {preset.name!r}: defaults must be a dict")
    try:
        preset.resolve()
    except ConfigError as exc:
        raise ValueError(f"preset {preset.name!r}: bad default: {exc}") from None
    return preset


def did_you_mean(name: str, choices: Sequence[str]) -> str:
    """`; did you mean 'x'?` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def standard_params(*keys: str) -> dict[str, Param]:
    """The STANDARD_PARAMS entries for ``keys``: extra settings a preset accepts beyond its defaults."""
    return {key: STANDARD_PARAMS[key] for key in keys}
