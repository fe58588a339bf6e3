"""The run options that `mtbench compare` and `mtbench tune` take per workload with ``--workloads``:
``--data``, ``--epochs``, ``--batch-size``, ``--image-size`` and ``--limit-train`` as NAME=VALUE items
(mtbench.compare.across, NOTE [per-workload settings]).

The options stay `mtbench run`'s (cli/run.py); these commands take each repeatable, and a count also as
NAME=VALUE text. Without ``--workloads`` a command reads them as before: the last value given, a count
range-checked with the same one-line error (``single_workload``).
"""

from __future__ import annotations

from typing import Any

import click

from ..compare.across import PER_WORKLOAD, check_workloads, workload_settings
from ..errors import ConfigError
from .bounded import Bounded, OutOfBounds
from .configfile import config_file

__all__ = ["WorkloadCount", "per_workload_options", "single_workload", "workload_options"]

_DATA_HELP = (" With --workloads: NAME=DIR for one workload (comma-separated or repeated); a workload not named "
              "reads its embedded stand-in.")
_COUNT_HELP = (" With --workloads: a plain value for every workload, NAME=VALUE for one (comma-separated or "
               "repeated); a workload given neither keeps its own default.")


class WorkloadCount(Bounded):
    """A count as Bounded checks it, or text holding NAME=VALUE items, kept as given: those are checked with
    the workloads they name (compare.across.workload_settings)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and "=" in value:
            return value.strip()
        return super().convert(value, param, ctx)


def per_workload_options(command: click.Command) -> click.Command:
    """Make the command's PER_WORKLOAD options repeatable, a count's values WorkloadCount (put above
    ``@click.command``)."""
    command.params = [_repeatable(p) if isinstance(p, click.Option) and p.name in PER_WORKLOAD else p
                      for p in command.params]
    return command


def _repeatable(option: click.Option) -> click.Option:
    count = isinstance(option.type, Bounded)
    metavar = "N | NAME=N" if count else "DIR | NAME=DIR"
    return click.Option(option.opts, type=WorkloadCount(option.type.limit) if count else option.type, multiple=True,
                        default=None, metavar=metavar,
                        help=(option.help or "").rstrip(".") + "." + (_COUNT_HELP if count else _DATA_HELP))


def single_workload(ctx: click.Context, options: dict) -> None:
    """``options`` of a command run on one workload, in place: each PER_WORKLOAD option's last value, as
    `mtbench run` takes it (None when not given); NAME=VALUE items are a one-line usage error worded as the
    option's out-of-range value is (``--epochs nyuv2=2: ...``, with the --config file it came from)."""
    params = {p.name: p for p in ctx.command.params}
    for name in PER_WORKLOAD:
        values = options.get(name) or ()
        items = [v for v in values if isinstance(v, str) and "=" in v] if name != "data" else []
        if items:
            flag = "--" + name.replace("_", "-")
            raise OutOfBounds(f"{flag} {items[0]}: NAME=VALUE items give a workload of --workloads its own value; "
                              f"for one workload give {flag} N", ctx, params.get(name))
        options[name] = values[-1] if values else None


def workload_options(ctx: click.Context, workloads: str, options: dict) -> tuple[list[str], dict[str, dict]]:
    """The workloads of ``--workloads`` text and each one's run options (compare.across.workload_settings); a
    bad name or item is a one-line usage error naming it, before anything is written. An error that opens with
    its option's flag is that option's, worded as its out-of-range value is (``(from --config FILE)`` when the
    value came from there); another says that options were read from the --config file."""
    registry = ctx.obj.registry
    try:
        names = check_workloads(workloads.split(","), registry)
        return names, workload_settings(options, names, registry.workloads)
    except ConfigError as exc:
        flag = str(exc).split(" ", 1)[0]
        param = next((p for p in ctx.command.params if flag in p.opts), None)
        if param is not None:
            raise OutOfBounds(str(exc), ctx, param) from None
        path = config_file(ctx)
        raise click.UsageError(str(exc) + (f" (with options from --config {path})" if path else "")) from None
