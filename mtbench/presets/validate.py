"""The check of what a plugin's hook returned, before the registry indexes it."""

from __future__ import annotations

from typing import Any, Mapping

from ..errors import ConfigError
from .base import Preset, is_dotted_name
from .optimizer import OptimizerPreset

__all__ = ["validate_preset"]


def validate_preset(preset: Any, kind: type[Preset] = OptimizerPreset) -> Any:
    """Check what a plugin returned; raise ValueError with the reason when it is not a usable ``kind``."""
    if not isinstance(preset, kind):
        raise ValueError(f"returned {type(preset).__name__}, expected mtbench.{kind.__name__}")
    name = preset.name
    if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum() or name != name.lower():
        raise ValueError(f"{kind.KIND} name {preset.name!r} must be lower-case letters, digits, '_' or '-'")
    if not (callable(preset.factory) or is_dotted_name(preset.factory)):
        raise ValueError(f"{kind.KIND} {preset.name!r}: factory {preset.factory!r} is not callable or a dotted "
                         "name 'package.module:attr'")
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
        preset.check_capabilities()
        try:
            preset.tuning_space()
        except ConfigError as exc:
            raise ValueError(f"{kind.KIND} {preset.name!r}: bad search space: {exc}") from None
    return preset
