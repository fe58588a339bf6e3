"""The click type of every count and size a command takes: the value parsed and range-checked by a
``Param`` (``mtbench.config.LIMITS`` holds the run's), so each option has a bound and the one-line
usage error ``--epochs 0 is not allowed: expected a whole number in [1, 100000]``, the same words
RunConfig's own check uses.

Unlike click's INT, it refuses what is not a whole number instead of truncating it: a config file's
``epochs = 1.7`` or ``epochs = true`` is an error, not 1 (and, as for every option, the error
says when the value came from ``--config FILE``).
"""

from __future__ import annotations

from typing import Any

import click

from ..errors import ConfigError
from ..presets import Param


class OutOfBounds(click.BadParameter):
    """A bad value of a Bounded option; its message names the option already."""

    def format_message(self) -> str:
        return self.message


class Bounded(click.ParamType):
    """``type=Bounded(LIMITS["epochs"])``: the option's value within the Param's range, else OutOfBounds."""

    def __init__(self, limit: Param):
        self.limit = limit
        self.name = "integer" if limit.kind is int else "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        flag = max(param.opts, key=len) if param is not None else self.name
        try:
            return self.limit.check_option(flag, value)
        except ConfigError as exc:
            raise OutOfBounds(str(exc), ctx, param) from None

    def __repr__(self) -> str:
        return f"Bounded({self.limit.describe()})"
