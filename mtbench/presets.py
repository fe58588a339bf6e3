"""Optimizer presets: the data a plugin hands to mtbench, and the typed `--set key=value` overrides.

``Preset`` holds what every kind of preset shares (typed settings, the one guarded call of the
plugin's factory); ``OptimizerPreset`` here and ``mtbench.methods.MethodPreset`` build on it.
An optimizer preset also says what `mtbench tune` searches: ``SearchDim`` ranges and lists of choices.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence, Union

from .errors import ConfigError

Factory = Callable[..., Any]


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
            if not self._in_range(x):  # NaN is in no range
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

    def _in_range(self, x: float) -> bool:
        if self.low is not None and (x < self.low or (self.low_open and x == self.low)):
            return False
        if self.high is not None and (x > self.high or (self.high_open and x == self.high)):
            return False
        return isinstance(x, int) or math.isfinite(x)


def format_value(value: Any, exact: bool = False) -> str:
    """A hyperparameter as the user would type it after ``--set key=``: 0.9,0.999 / 1e-08 / true.

    ``exact`` writes floats with all their digits (for a value read back, as in a replayed config).
    """
    if isinstance(value, (tuple, list)):
        return ",".join(format_value(v, exact) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if exact else f"{value:g}"
    return str(value)


def format_settings(settings: Mapping[str, Any]) -> str:
    """Settings as the user would type them: ``lr=0.001 betas=0.9,0.999``."""
    return " ".join(f"{k}={format_value(v)}" for k, v in settings.items())


def first_line(exc: BaseException) -> str:
    """An exception in one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def failure_reason(exc: BaseException) -> str:
    """What plugin code did, for a message: ``called sys.exit(3)`` or ``raised Type: message``."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({'' if exc.code is None else repr(exc.code)})"
    return f"raised {first_line(exc)}"


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


# The default search space of `mtbench tune` (DeepOBS-style): lr log-uniform over [lr / LR_SPAN,
# lr * LR_SPAN] around the preset's, and weight_decay log-uniform over WEIGHT_DECAY_RANGE where the
# preset has a weight decay (its value may be 0, which a log range cannot hold: the range is fixed).
LR_SPAN = 10.0
WEIGHT_DECAY_RANGE = (1e-6, 1e-1)


@dataclass(frozen=True)
class SearchDim:
    """A tuned hyperparameter's range: uniform over [low, high], log-uniform when ``log``."""

    low: float
    high: float
    log: bool = False

    def text(self, key: str) -> str:
        """The range as ``--space`` takes it: ``lr=1e-05:0.1:log``."""
        return f"{key}={format_value(self.low)}:{format_value(self.high)}" + (":log" if self.log else "")

    def check(self, key: str, param: Param, shown: str | None = None) -> SearchDim:
        """This range, or ConfigError naming the key, the range (as ``shown``, else ``text``) and what is allowed."""
        shown = shown or self.text(key)
        where = f"{shown} is not allowed"
        if param.kind not in (float, int):
            raise ConfigError(f"{where}: {key} takes {param.describe()}; search it over a list of choices "
                              f"({key}=A|B)")
        ends = []
        for end in (self.low, self.high):
            if isinstance(end, bool) or not isinstance(end, (int, float)) or not math.isfinite(end):
                raise ConfigError(f"{where}: expected LOW:HIGH[:log] with finite numbers")
            if param.kind is int and not float(end).is_integer():
                raise ConfigError(f"{where}: {key} takes whole numbers")
            ends.append(float(end))
        if not ends[0] < ends[1]:
            raise ConfigError(f"{where}: expected LOW < HIGH")
        if self.log and ends[0] <= 0:
            raise ConfigError(f"{where}: a log range needs LOW > 0")
        if not all(param._in_range(end) for end in ends):
            raise ConfigError(f"{shown} is out of range: {key} takes {param.describe()}")
        return SearchDim(*ends, bool(self.log))


SearchEntry = Union[SearchDim, Sequence[Any]]  # a range, or a list of choices


def check_search_entry(key: str, entry: Any, param: Param | None) -> SearchDim | tuple:
    """A search-space entry checked against the key's Param: a SearchDim, or a tuple of >= 2 choices."""
    if param is None:
        raise ConfigError(f"{key!r} cannot be searched: the optimizer does not accept it")
    if isinstance(entry, SearchDim):
        return entry.check(key, param)
    if not isinstance(entry, (list, tuple)) or len(entry) < 2:
        raise ConfigError(f"{key}={entry!r} is not a search range: expected a mtbench.SearchDim or a list of "
                          "at least two choices")
    choices = tuple(param.check(key, choice) for choice in entry)
    if len(set(choices)) != len(choices):
        raise ConfigError(f"{key}={'|'.join(format_value(c) for c in choices)} repeats a choice")
    return choices


@dataclass(frozen=True)
class Expected:
    """The optimizer guide's expected results on real ImageNet + COCO (5 epochs, batch size 8)."""

    top1: tuple[float, float]
    miou: tuple[float, float]
    convergence: str

    def to_dict(self) -> dict:
        return {"top1": list(self.top1), "miou": list(self.miou), "convergence": self.convergence}


class Preset:
    """What both kinds of preset share: settings with defaults, resolved against ``--set`` overrides,
    and the one place a plugin's factory is called.

    A subclass is a frozen dataclass with the fields ``name``, ``factory``, ``defaults``, ``params``
    and ``source``; ``KIND`` names it in messages; ``STANDARD`` gives the Param of a default that
    ``params`` does not cover (else the Param is inferred from the default's type).
    """

    KIND: ClassVar[str] = "preset"
    STANDARD: ClassVar[Mapping[str, Param]] = {}

    def param(self, key: str) -> Param | None:
        """The Param that checks ``key``, or None when this preset does not accept it."""
        if key in self.params:
            return self.params[key]
        if key in self.defaults:
            return self.STANDARD.get(key) or _infer_param(self.defaults[key])
        return None

    def accepted_keys(self) -> list[str]:
        return sorted(set(self.defaults) | set(self.params))

    def resolve(self, overrides: Mapping[str, Any] | Iterable[str] = ()) -> dict[str, Any]:
        """Preset defaults with ``overrides`` applied and checked: user > preset > the factory's own.

        ``overrides`` is a mapping of typed values or an iterable of ``key=value`` strings.
        """
        pairs = overrides.items() if isinstance(overrides, Mapping) else _split_pairs(overrides)
        resolved = {k: self.param(k).check(k, v) for k, v in self.defaults.items()}
        for key, value in pairs:
            spec = self.param(key)
            if spec is None:
                raise ConfigError(
                    f"unknown setting {key!r} for {self.KIND} {self.name!r}; "
                    f"accepted: {', '.join(self.accepted_keys()) or 'none'}"
                )
            resolved[key] = spec.parse(key, value) if isinstance(value, str) else spec.check(key, value)
        return resolved

    def label(self) -> str:
        """The preset and, when the registry recorded it, the plugin that brought it."""
        origin = f" from plugin {self.source}" if self.source else ""
        return f"{self.KIND} {self.name!r}{origin}"

    def _call_factory(self, *args: Any, **settings: Any) -> Any:
        """``factory(*args, **settings)``; whatever goes wrong in plugin code becomes one ConfigError line."""
        try:
            return self.factory(*args, **settings)
        except (TypeError, ValueError) as exc:
            # The factory's own argument checks: the settings are what is wrong, not the plugin.
            raise ConfigError(
                f"{self.label()} rejected its settings {format_settings(settings) or '(none)'}: "
                f"{first_line(exc)}"
            ) from None
        except (Exception, SystemExit) as exc:  # a plugin's sys.exit() must not end mtbench silently
            raise ConfigError(f"{self.label()} could not be built: its factory {failure_reason(exc)}") from None

    def _returned(self, obj: Any, expected: str) -> ConfigError:
        """The error for a factory that returned ``obj`` where ``expected`` was due."""
        what = "None" if obj is None else type(obj).__name__
        return ConfigError(f"{self.label()} could not be built: its factory returned {what}, expected {expected}")


@dataclass(frozen=True)
class OptimizerPreset(Preset):
    """One optimizer with its tuned settings, as a plugin declares it.

    ``factory(params, **hyperparams)`` builds the optimizer; ``defaults`` holds the tuned
    hyperparameters under the optimizer's own keyword names; ``params`` adds or narrows what
    ``--set`` accepts beyond ``defaults`` (kinds from STANDARD_PARAMS otherwise).
    ``per_task_gradients`` says that ``step(task_grads)`` takes each task's gradients apart.
    ``order`` places the preset in listings and the run menu (ties keep discovery order).
    ``search_space`` maps a setting to the SearchDim or list of choices `mtbench tune` searches
    (empty: the default space, see ``tuning_space``).
    ``source`` is filled in by the registry: the plugin that brought the preset and where from.
    """

    KIND: ClassVar[str] = "optimizer"
    STANDARD: ClassVar[Mapping[str, Param]] = STANDARD_PARAMS

    name: str
    title: str
    factory: Factory
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    per_task_gradients: bool = False
    params: Mapping[str, Param] = field(default_factory=dict)
    expected: Expected | None = None
    order: int = 100
    search_space: Mapping[str, SearchEntry] = field(default_factory=dict)
    source: str = field(default="", compare=False)

    def tuning_space(self) -> dict[str, SearchDim | tuple]:
        """What `mtbench tune` searches, checked: ``search_space``, or when it is empty the default
        (lr log-uniform within LR_SPAN of the preset's, weight_decay over WEIGHT_DECAY_RANGE where the
        preset has one)."""
        space = dict(self.search_space)
        if not space:
            lr = self.defaults.get("lr")
            if isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0:
                space["lr"] = SearchDim(lr / LR_SPAN, lr * LR_SPAN, log=True)
            if "weight_decay" in self.defaults:
                space["weight_decay"] = SearchDim(*WEIGHT_DECAY_RANGE, log=True)
        return {key: check_search_entry(key, entry, self.param(key)) for key, entry in space.items()}

    def build(self, params: Any, **hyperparams: Any) -> Any:
        """The optimizer over ``params`` (tensors or param groups); ConfigError when the plugin fails."""
        import torch

        optimizer = self._call_factory(params, **hyperparams)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise self._returned(optimizer, "a torch.optim.Optimizer")
        return optimizer


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


def validate_preset(preset: Any, kind: type[Preset] = OptimizerPreset) -> Any:
    """Check what a plugin returned; raise ValueError with the reason when it is not a usable ``kind``."""
    if not isinstance(preset, kind):
        raise ValueError(f"returned {type(preset).__name__}, expected mtbench.{kind.__name__}")
    name = preset.name
    if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum() or name != name.lower():
        raise ValueError(f"{kind.KIND} name {preset.name!r} must be lower-case letters, digits, '_' or '-'")
    if not callable(preset.factory):
        raise ValueError(f"{kind.KIND} {preset.name!r}: factory is not callable")
    if not isinstance(preset.defaults, Mapping):
        raise ValueError(f"{kind.KIND} {preset.name!r}: defaults must be a dict")
    if not isinstance(preset.params, Mapping):
        raise ValueError(f"{kind.KIND} {preset.name!r}: params must be a dict of mtbench.Param")
    try:
        preset.resolve()
    except ConfigError as exc:
        raise ValueError(f"{kind.KIND} {preset.name!r}: bad default: {exc}") from None
    if isinstance(preset, OptimizerPreset):
        if not isinstance(preset.search_space, Mapping):
            raise ValueError(f"{kind.KIND} {preset.name!r}: search_space must be a dict of mtbench.SearchDim "
                             "or lists of choices")
        try:
            preset.tuning_space()
        except ConfigError as exc:
            raise ValueError(f"{kind.KIND} {preset.name!r}: bad search space: {exc}") from None
    return preset


def did_you_mean(name: str, choices: Sequence[str]) -> str:
    """`; did you mean 'x'?` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def standard_params(*keys: str) -> dict[str, Param]:
    """The STANDARD_PARAMS entries for ``keys``: extra settings a preset accepts beyond its defaults."""
    return {key: STANDARD_PARAMS[key] for key in keys}
