"""The plugin contract: the presets a plugin hands to mtbench and the typed `--set key=value` settings.

``Preset`` holds what every kind of preset shares (typed settings, the lazily imported factory and
its one guarded call); ``OptimizerPreset`` and ``MethodPreset`` build on it. An optimizer preset
also says what `mtbench tune` searches: ``SearchDim`` ranges and lists of choices. Nothing here
imports torch.
"""

from .base import Factory, Preset, is_dotted_name
from .method import COSTS, REQUIRED, SUM_METHOD, Method, MethodPreset
from .optimizer import Expected, OptimizerPreset
from .params import STANDARD_PARAMS, Param, standard_params
from .search import LR_SPAN, WEIGHT_DECAY_RANGE, SearchDim, SearchEntry, check_search_entry
from .validate import validate_preset

__all__ = [
    "COSTS", "LR_SPAN", "REQUIRED", "STANDARD_PARAMS", "SUM_METHOD", "WEIGHT_DECAY_RANGE", "Expected", "Factory",
    "Method", "MethodPreset", "OptimizerPreset", "Param", "Preset", "SearchDim", "SearchEntry", "check_search_entry",
    "is_dotted_name", "standard_params", "validate_preset",
]
