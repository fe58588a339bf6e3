"""The command line `mtbench tune --jobs N` gives its worker processes: the command's own plugins and options.

A worker is the same tune in another process, so it must resolve the same optimizers, methods and workload:
it is given the ``--plugin`` paths of the command that started it (NOTE [one registry] in mtbench.config),
as compare's torchrun children are (compare.launch.plugin_args), and the command's option values as
command-line arguments (``option_args``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import click

from ..compare.launch import plugin_args

__all__ = ["option_args", "worker_argv"]


def worker_argv(command: click.Command, plugin_paths: Sequence[str], plan, params: Mapping[str, Any]) -> list[str]:
    """The tune ``command``'s command line for its workers (tuning.spawn adds ``--worker i``): the plugins, the
    same options (``params``: one workload's), the directory, storage and studies of ``plan`` resolved, no final
    runs and no progress bar."""
    values = {**params, "out": plan.out, "storage": plan.storage, "study": plan.study}
    args = option_args(command, values, skip=("final_seeds", "worker_index", "quiet"))
    return [*plugin_args(plugin_paths), "tune", *args, "--quiet"]


def option_args(command: click.Command, values: Mapping[str, Any], skip: tuple[str, ...] = ()) -> list[str]:
    """The command-line arguments that give ``command`` these option values (those at their default left out)."""
    args: list[str] = []
    for param in command.params:
        if not isinstance(param, click.Option) or param.name not in values or param.name in skip:
            continue
        value = values[param.name]
        if value is None or value == param.default or (param.multiple and not value):
            continue
        flag = next((o for o in param.opts if o.startswith("--")), param.opts[0])
        if param.is_flag:
            if value:
                args.append(flag)
            continue
        for item in (value if param.multiple else (value,)):
            args += [flag, str(item)]
    return args
