"""`mtbench list` and `mtbench plugins`: what the plugins bring and where it came from."""

from __future__ import annotations

import json

import click

from ..presets import OptimizerPreset, format_value
from ..table import format_table


def format_settings(settings: dict) -> str:
    return " ".join(f"{k}={format_value(v)}" for k, v in settings.items())


def _expected_cells(preset: OptimizerPreset) -> list[str]:
    e = preset.expected
    if e is None:
        return ["-", "-", "-"]
    return [f"{e.top1[0]:.0%}-{e.top1[1]:.0%}", f"{e.miou[0]:.2f}-{e.miou[1]:.2f}", e.convergence]


def preset_record(preset: OptimizerPreset, source: str) -> dict:
    """The JSON form of a preset, as `mtbench list --json` prints it."""
    return {
        "name": preset.name,
        "title": preset.title,
        "defaults": {k: list(v) if isinstance(v, tuple) else v for k, v in preset.defaults.items()},
        "per_task_gradients": preset.per_task_gradients,
        "source": source,
        "expected": preset.expected.to_dict() if preset.expected else None,
        "accepts": preset.accepted_keys(),
        "description": preset.description,
    }


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the presets as JSON.")
@click.option("--verbose", "-v", is_flag=True, help="Add each preset's description.")
@click.pass_obj
def list_command(app, as_json: bool, verbose: bool) -> None:
    """List the optimizer presets with their tuned settings and the guide's expected results."""
    registry = app.registry
    if as_json:
        records = [preset_record(p, registry.sources[n]) for n, p in registry.presets.items()]
        click.echo(json.dumps(records, indent=2))
        return
    rows = [
        [i, name, p.title, format_settings(p.defaults), "yes" if p.per_task_gradients else "no",
         *_expected_cells(p), registry.sources[name].split(" ")[0].strip("'")]
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


@click.command("plugins")
@click.pass_obj
def plugins_command(app) -> None:
    """Show each loaded plugin and where it came from, the ones that failed and why, and the ops backend."""
    from .. import ops

    registry = app.registry
    click.echo(ops.describe())
    rows = [[p.name, ", ".join(p.presets) or "-", p.source] for p in registry.plugins]
    click.echo(format_table(["plugin", "optimizers", "source"], rows))
    if registry.disabled:
        click.echo(f"\ndisabled by $MTBENCH_DISABLE_PLUGINS: {', '.join(registry.disabled)}")
    if registry.failures:
        click.echo(f"\n{len(registry.failures)} failed:")
        for failure in registry.failures:
            click.echo(f"  {failure}")
