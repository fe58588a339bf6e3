"""The `mtbench` command line: a click group whose commands load on first use."""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from ..errors import ConfigError, MTBenchError
from .configfile import config_file, origin

# command name -> ("module:attribute", its one-line help). Importing a command (and torch, numpy or
# matplotlib with it) waits until it runs or its own help is shown: `mtbench --help` and the
# completion of command names draw from this table alone (tests/test_cli_startup.py keeps each line
# equal to the command's own short help).
_COMMANDS = {
    "list": ("mtbench.cli.presets:list_command",
             "List the optimizer presets (tuned settings, the guide's expected results), then the multi-task "
             "gradient methods."),
    "plugins": ("mtbench.cli.presets:plugins_command",
                "Show each loaded plugin and where it came from, the ones that failed and why, and the ops backend."),
    "run": ("mtbench.cli.run:run",
            "Train a workload's tasks on one shared network with one optimizer and write a run directory."),
    "compare": ("mtbench.cli.compare:compare",
                "Train every row (optimizers crossed with methods, a task-weight sweep, single-task baselines) "
                "from the same initial weights on the same data, for each seed, then write the comparison table "
                "and plots."),
    "tune": ("mtbench.cli.tune:tune",
             "Give every optimizer the same tuning budget, score the trials on the holdout split, report the "
             "best setting beside the guide's preset."),
    "report": ("mtbench.cli.compare:report",
               "Rebuild the comparison's verdict, tables and plots from run directories alone."),
    "bench": ("mtbench.cli.bench:bench",
              "Time one optimizer step: MTAdamV2 fused and reference, Adam fused and foreach."),
    "data": ("mtbench.cli.data:data", "Data sets: write a workload's embedded stand-in where you can look at it."),
}


def _short_help(name: str, limit: int = 45) -> str:
    """A command's one-line help from the table, shortened as click shortens a command's own."""
    return click.Command(name, help=_COMMANDS[name][1]).get_short_help_str(limit)


class App:
    """What every command shares: the plugin paths given on the command line and the loaded registry."""

    def __init__(self, plugin_paths: tuple[str, ...] = ()):
        self.plugin_paths = plugin_paths
        self._registry = None

    @property
    def registry(self):
        """The plugin registry, loaded on first use; broken plugins are reported on stderr once."""
        if self._registry is None:
            from ..plugins import load_registry

            self._registry = load_registry(self.plugin_paths)
            for failure in self._registry.failures:
                click.secho(f"warning: {failure}", fg="yellow", err=True)
        return self._registry


class LazyGroup(click.Group):
    """A group that imports a command's module only when that command runs or its help is shown,
    and turns MTBenchError into a one-line error (naming the --config file where one was read)."""

    def list_commands(self, ctx):
        return sorted(_COMMANDS)

    def get_command(self, ctx, name):
        target = _COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target[0].split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx, formatter):
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)  # click.Group's own layout
        with formatter.section("Commands"):
            formatter.write_dl([(name, _short_help(name, limit)) for name in names])

    def shell_complete(self, ctx, incomplete):
        from click.shell_completion import CompletionItem

        # The options' completions come from click.Command, past click.Group's, which imports every command.
        names = [CompletionItem(name, help=_short_help(name)) for name in self.list_commands(ctx)
                 if name.startswith(incomplete)]
        return names + click.Command.shell_complete(self, ctx, incomplete)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MTBenchError as exc:
            message, path = str(exc), config_file(ctx)
            if isinstance(exc, ConfigError) and path is not None:
                message += f" (with options from --config {path})"  # the bad value may be the file's
            raise click.ClickException(message) from None
        except click.BadParameter as exc:
            exc.message += origin(exc.ctx, exc.param)  # a value from --config FILE: say so
            raise

    def resolve_command(self, ctx, args):
        name = args[0] if args else None
        if name is not None and name not in _COMMANDS and not name.startswith("-"):
            from ..text import did_you_mean

            raise click.UsageError(f"no such command {name!r}{did_you_mean(name, list(_COMMANDS))}", ctx)
        return super().resolve_command(ctx, args)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--plugin",
    "plugin_paths",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="A plugin .py file or a folder of them (repeatable); $MTBENCH_PLUGINS adds more.",
)
@click.version_option(package_name="mtbench", prog_name="mtbench")
@click.pass_context
def main(ctx: click.Context, plugin_paths: tuple[Path, ...]) -> None:
    """Compare optimizers and multi-task methods on multi-task workloads (ImageNet + COCO by default).

    \b
      mtbench list                      the optimizer presets the plugins bring
      mtbench run --optimizer mtadamv2  one training run (embedded data by default)
      mtbench compare                   every optimizer, same data and init -> table + plots
      mtbench tune                      the same tuning budget for every optimizer (Optuna)
    """
    ctx.obj = App(tuple(str(p) for p in plugin_paths))
