"""`mtbench list` and `mtbench plugins`: what the plugins bring and where it came from."""

from __future__ import annotations

import json

import click

from ..presets import MethodPreset, OptimizerPreset
from ..presets.optimizer import NEEDS, ORIGINS
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
        "origin": preset.listed_origin or "plugin",
        "needs": sorted(preset.needs),
        "groups": preset.groups if isinstance(preset.groups, str) or preset.groups is None
        else getattr(preset.groups, "__qualname__", repr(preset.groups)),
        "capabilities": preset.capabilities(),
        "tuning_space": {k: (v.text(k) if hasattr(v, "text") else list(v)) for k, v in preset.tuning_space().items()},
        "notice": preset.notice,
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


def workload_record(workload) -> dict:
    """The JSON form of a workload, as `mtbench list --json` prints it: its tasks and their metrics."""
    return {
        "name": workload.name,
        "title": workload.title,
        "batches": workload.batches,
        "tasks": [{"name": t.name, "title": t.title, "primary": t.primary,
                   "metrics": [{"name": m.name, "title": m.title, "higher_is_better": m.higher_is_better,
                                "unit": m.unit} for m in t.metrics]} for t in workload.tasks],
        "image_size": workload.image_size,
        "batch_size": workload.batch_size,
        "epochs": workload.epochs,
        "source": workload.source,
        "description": workload.description,
    }


def _by_origin(presets: dict[str, OptimizerPreset]) -> list[tuple[str, list[tuple[int, str, OptimizerPreset]]]]:
    """The presets grouped by origin (the guide's first, then torch.optim, pytorch-optimizer, other
    plugins), each with its number in the run menu (the registry's order)."""
    numbered = [(i, name, p) for i, (name, p) in enumerate(presets.items(), 1)]
    origins = list(ORIGINS) + sorted({p.listed_origin for p in presets.values()} - set(ORIGINS))
    groups = [(o, [row for row in numbered if row[2].listed_origin == o]) for o in origins]
    return [(o, rows) for o, rows in groups if rows]


def _library_rows() -> list[list]:
    """`mtbench list --all`: every optimizer of pytorch-optimizer, runnable by name or refused and why."""
    from ..presets.library import library_entries

    rows = []
    for entry in library_entries():
        status = f"refused: it {entry.refused}" if entry.refused else (
            f"runs ({', '.join(sorted(entry.needs))})" if entry.needs else "runs")
        rows.append([entry.name, entry.cls.__name__, status + (f"; {entry.notice}" if entry.notice else "")])
    return rows


@click.command("list")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"optimizers": [...], "methods": [...], "workloads": [...]} as JSON.')
@click.option("--verbose", "-v", is_flag=True, help="Add each preset's description and the settings it accepts.")
@click.option("--all", "show_all", is_flag=True,
              help="Also list every optimizer of pytorch-optimizer, runnable as --optimizer pytorch_optimizer:NAME "
                   "with its class defaults (imports the library).")
@click.pass_obj
def list_command(app, as_json: bool, verbose: bool, show_all: bool) -> None:
    """List the optimizer presets (tuned settings, the guide's expected results), then the
    multi-task gradient methods.

    The presets are grouped by where they come from: the optimizer guide's, torch.optim's,
    pytorch-optimizer's, other plugins'."""
    registry = app.registry
    if as_json:
        records = {
            "optimizers": [preset_record(p) for p in registry.presets.values()],
            "methods": [method_record(m) for m in registry.methods.values()],
            "workloads": [workload_record(w) for w in registry.workloads.values()],
        }
        if show_all:
            records["library"] = [{"name": name, "class": cls, "status": status}
                                  for name, cls, status in _library_rows()]
        click.echo(json.dumps(records, indent=2))
        return
    headers = ["#", "name", "title", "settings", "needs", "top-1*", "mIoU*", "convergence*", "plugin"]
    for origin, members in _by_origin(registry.presets):
        rows = [[i, name, p.title + (" (!)" if p.notice else ""), format_settings(p.defaults),
                 ", ".join(p.capabilities()) or "-", *_expected_cells(p), _plugin_name(p)]
                for i, name, p in members]
        click.echo(f"{ORIGINS.get(origin, origin)} ({len(rows)})\n" + format_table(headers, rows) + "\n")
    click.echo(
        "* expected by the optimizer guide for real ImageNet + COCO, 5 epochs, batch size 8 "
        "(not measured here; `mtbench compare` measures).\n"
        "needs: per-task = step(task_grads) with each task's gradient; groups = parameters split by role "
        "(hidden matrices apart); " + "; ".join(f"{k} = {v}" for k, v in NEEDS.items())
        + "; lr-free = tuned by another knob than lr."
    )
    notices = [f"  {name}: {p.notice}" for name, p in registry.presets.items() if p.notice]
    if notices:
        click.echo("(!) read before use:\n" + "\n".join(notices))
    if verbose:
        for name, p in registry.presets.items():
            click.echo(f"\n{name}: {p.description}\n  accepts --set {', '.join(p.accepted_keys())}")
    click.echo(f"\n{len(registry.presets)} optimizers; run one with `mtbench run --optimizer NAME [--set key=value]`.")
    if show_all:
        rows = _library_rows()
        click.echo("\n" + format_table(["name", "class", "status"], rows))
        runnable = sum(row[2].startswith("runs") for row in rows)
        click.echo(f"\n{runnable} of {len(rows)} optimizers of pytorch-optimizer run by name, with the class's "
                   "defaults: `mtbench run --optimizer pytorch_optimizer:NAME [--set key=value]`.")

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
    workloads = [[name, w.title, ", ".join(f"{t.name} ({'/'.join(m.title for m in t.metrics)})" for t in w.tasks),
                  "shared" if w.shared_batch else "per task", _plugin_name(w)]
                 for name, w in registry.workloads.items()]
    click.echo("\n" + format_table(["workload", "title", "tasks (metrics)", "batch", "plugin"], workloads))
    click.echo(f"\n{len(workloads)} workloads; train one with `mtbench run --workload NAME [--data DIR]`.")


@click.command("plugins")
@click.pass_obj
def plugins_command(app) -> None:
    """Show each loaded plugin and where it came from, the ones that failed and why, and the ops backend."""
    from .. import ops

    registry = app.registry
    click.echo(ops.describe())
    rows = [[p.name, ", ".join(p.presets) or "-", ", ".join(p.methods) or "-", ", ".join(p.workloads) or "-",
             p.source] for p in registry.plugins]
    click.echo(format_table(["plugin", "optimizers", "methods", "workloads", "source"], rows))
    if registry.disabled:
        click.echo(f"\ndisabled by $MTBENCH_DISABLE_PLUGINS: {', '.join(registry.disabled)}")
    if registry.failures:
        click.echo(f"\n{len(registry.failures)} failed:")
        for failure in registry.failures:
            click.echo(f"  {failure}")
