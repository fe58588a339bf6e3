"""`mtbench list` and `mtbench plugins`: what the plugins bring and where it came from."""

from __future__ import annotations

import json

import click

from ..presets import MethodPreset, OptimizerPreset
from ..text import format_settings, format_table

__all__ = ["list_command", "method_record", "plugins_command", "preset_record"]


def _expected_cells(preset: OptimizerPreset) -> list[str]:
    e = preset.expected
    if e is None:
        return ["-", "-", "-"]
    return [f"{e.top1[0]:.0%}-{e.top1[1]:.0%}", f"{e.miou[0]:.2f}-{e.miou[1]:.2f}", e.convergence]


def _json_defaults(defaults) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items()}


def _plugin_name(preset) -> str:
    """The plugin part of a preset's source: ``'adam' (entry point ...)`` -> ``adam``."""
    return preset.source.split(" ")[0].strip("'")


def preset_record(preset: OptimizerPreset) -> dict:
    """The JSON form of an optimizer preset, as `mtbench list --json` prints it."""
    return {
        "name": preset.name,
        "title": preset.title,
        "defaults": _json_defaults(preset.defaults),
        "per_task_gradients": preset.per_task_gradients,
        "source": preset.source,
        "expected": preset.expected.to_dict() if preset.expected else None,
        "accepts": preset.accepted_keys(),
        "description": preset.description,
    }


def method_record(method: MethodPreset) -> dict:
    """The JSON form of a method, as `mtbench list --json` prints it."""
    return {
        "name": method.name,
        "title": method.title,
        "defaults": _json_defaults(method.defaults),
        "reads": method.reads,
        "cost": method.cost(),
        "needs_grads": method.needs_grads,
        "needs_losses": method.needs_losses,
        "source": method.source,
        "accepts": method.accepted_keys(),
        "description": method.description,
    }


@click.command("list")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"optimizers": [...], "methods": [...]} as JSON.')
@click.option("--verbose", "-v", is_flag=True, help="Add each preset's description and the settings it accepts.")
@click.pass_obj
def list_command(app, as_json: bool, verbose: bool) -> None:
    """List the optimizer presets (tuned settings, the guide's expected results), then the
    multi-task gradient methods."""
    registry = app.registry
    if as_json:
        records = {
            "optimizers": [preset_record(p) for p in registry.presets.values()],
            "methods": [method_record(m) for m in registry.methods.values()],
        }
        click.echo(json.dumps(records, indent=2))
        return
    rows = [
        [i, name, p.title, format_settings(p.defaults), "yes" if p.per_task_gradients else "no",
         *_expected_cells(p), _plugin_name(p)]
        for i, (name, p) in enumerate(registry.presets.items(), 1)
    ]
    headers = ["#", "name", "title", "settings", "per-task", "top-1*", "mIoU*", "convergence*", "plugin"]
    click.echo(format_table(headers, rows))
    click.echo(
        "\n* expected by the optimizer guide for real ImageNet + COCO, 5 epochs, batch size 8 "
        "(not measured here; `mtbench compare` measures)."
    )
    if verbose:
        for name, p in registry.presets.items():
            click.echo(f"\n{name}: {p.description}\n  accepts --set {', '.join(p.accepted_keys())}")
    click.echo(f"\n{len(rows)} optimizers; run one with `mtbench run --optimizer NAME [--set key=value]`.")

    methods = [
        [i, name, m.title, m.cost(), format_settings(m.defaults) or "-", _plugin_name(m)]
        for i, (name, m) in enumerate(registry.methods.items(), 1)
    ]
    click.echo("\n" + format_table(["#", "method", "title", "cost per step", "settings", "plugin"], methods))
    if verbose:
        for name, m in registry.methods.items():
            keys = ", ".join(f"method.{key}" for key in m.accepted_keys())
            click.echo(f"\n{name}: {m.description}\n  " + (f"accepts --set {keys}" if keys else "accepts no settings"))
    click.echo(
        f"\n{len(methods)} methods turn the per-task gradients into the one gradient a single-gradient "
        "optimizer steps on; choose one with `--method NAME [--set method.key=value]`.\n"
        "cost per step, beyond the forward passes: \"T gradients\" is one backward pass that keeps the T tasks' "
        "gradients apart in a [T, N] buffer (the run also reads it once for the logged gradient cosine)."
    )


@click.command("plugins")
@click.pass_obj
def plugins_command(app) -> None:
    """Show each loaded plugin and where it came from, the ones that failed and why, and the ops backend."""
    from .. import ops

    registry = app.registry
    click.echo(ops.describe())
    rows = [[p.name, ", ".join(p.presets) or "-", ", ".join(p.methods) or "-", p.source] for p in registry.plugins]
    click.echo(format_table(["plugin", "optimizers", "methods", "source"], rows))
    if registry.disabled:
        click.echo(f"\ndisabled by $MTBENCH_DISABLE_PLUGINS: {', '.join(registry.disabled)}")
    if registry.failures:
        click.echo(f"\n{len(registry.failures)} failed:")
        for failure in registry.failures:
            click.echo(f"  {failure}")
