"""Search spaces of `mtbench tune`: ``SearchDim`` ranges, lists of choices, and the default space."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence, Union

from ..errors import ConfigError
from ..text import format_value
from .params import Param

__all__ = ["LR_SPAN", "WEIGHT_DECAY_RANGE", "SearchDim", "SearchEntry", "check_search_entry"]


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
        if not all(param.in_range(end) for end in ends):
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


