"""``Preset``: what both kinds of preset share (typed settings, the lazily imported factory and its
one guarded call).

A factory is a callable or a dotted name ``package.module:attr`` (as timm names its optimizer
classes): the name is imported only when a run builds the optimizer or method, so loading the
registry (`mtbench list`, the run menu) imports none of the libraries the factories need.
"""

from __future__ import annotations

import importlib
import re
from typing import Any, Callable, ClassVar, Iterable, Mapping, Union

from ..errors import ConfigError
from ..text import failure_reason, first_line, format_settings
from .params import Param, infer_param, split_pairs

__all__ = ["Factory", "Preset", "is_dotted_name"]

Factory = Union[Callable[..., Any], str]  # a callable, or "package.module:attr" imported on first build

_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def is_dotted_name(factory: Any) -> bool:
    """Whether ``factory`` is a dotted name ``package.module:attr``."""
    return isinstance(factory, str) and _DOTTED.fullmatch(factory) is not None


class Preset:
    """What both kinds of preset share: settings with defaults, resolved against ``--set`` overrides,
    and the one place a plugin's factory is imported and called.

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
            return self.STANDARD.get(key) or infer_param(self.defaults[key])
        return None

    def accepted_keys(self) -> list[str]:
        return sorted(set(self.defaults) | set(self.params))

    def resolve(self, overrides: Mapping[str, Any] | Iterable[str] = ()) -> dict[str, Any]:
        """Preset defaults with ``overrides`` applied and checked: user > preset > the factory's own.

        ``overrides`` is a mapping of typed values or an iterable of ``key=value`` strings.
        """
        pairs = overrides.items() if isinstance(overrides, Mapping) else split_pairs(overrides)
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

    def resolve_factory(self) -> Callable[..., Any]:
        """The factory as a callable: a dotted name is imported now; ConfigError when that fails."""
        if not isinstance(self.factory, str):
            return self.factory
        module_name, _, attr = self.factory.partition(":")
        try:
            factory = importlib.import_module(module_name)
            for part in attr.split("."):
                factory = getattr(factory, part)
        except (Exception, SystemExit) as exc:  # a plugin's sys.exit() must not end mtbench silently
            raise ConfigError(
                f"{self.label()} could not be built: importing its factory {self.factory!r} {failure_reason(exc)}"
            ) from None
        if not callable(factory):
            raise ConfigError(f"{self.label()} could not be built: its factory {self.factory!r} is "
                              f"{type(factory).__name__}, not callable")
        return factory

    def _call_factory(self, *args: Any, **settings: Any) -> Any:
        """``factory(*args, **settings)``; whatever goes wrong in plugin code becomes one ConfigError line."""
        factory = self.resolve_factory()
        try:
            return factory(*args, **settings)
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
