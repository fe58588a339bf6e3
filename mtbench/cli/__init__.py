"""The `mtbench` command line: a click group whose commands load on first use."""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from ..errors import MTBenchError

# command name -> "module:attribute"; importing a command (and torch with it) waits until it is used.
_COMMANDS = {
    "list": "mtbench.cli.presets:list_command",
    "plugins": "mtbench.cli.presets:plugins_command",
    "run": "mtbench.cli.run:run",
    "compare": "mtbench.cli.compare:compare",
    "tune": "mtbench.cli.tune:tune",
    "report": "mtbench.cli.compare:report",
    "bench": "mtbench.cli.bench:bench",
    "data": "mtbench.cli.data:data",
}


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
    and turns MTBenchError into a one-line error."""

    def list_commands(self, ctx):
        return sorted(_COMMANDS)

    def get_command(self, ctx, name):
        target = _COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MTBenchError as exc:
            raise click.ClickException(str(exc)) from None

    def resolve_command(self, ctx, args):
        name = args[0] if args else None
        if name is not None and name not in _COMMANDS and not name.startswith("-"):
            from ..presets import did_you_mean

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
    """Compare optimizers on one multi-task problem: ImageNet classification + COCO segmentation.

    \b
      mtbench list                      the optimizer presets the plugins bring
      mtbench run --optimizer mtadamv2  one training run (embedded data by default)
      mtbench compare                   every optimizer, same data and init -> table + plots
      mtbench tune                      the same tuning budget for every optimizer (Optuna)
    """
    ctx.obj = App(tuple(str(p) for p in plugin_paths))
