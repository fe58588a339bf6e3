"""`mtbench run`: one training run of a workload, on its embedded data unless a data folder is given."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from ..config import (
    AMP_MODES, BACKBONES, DEFAULT_WORKLOAD, LIMITS, NONFINITE_POLICIES, RESUMABLE_SETTINGS, SCHEDULES, RunConfig,
    build_config,
)
from ..errors import ConfigError, MTBenchError
from ..rundir import CONFIG_FILE, SUMMARY_FILE, Summary, create_run_dir
from ..text import format_settings
from .bounded import Bounded
from .configfile import config_option

# The options that shape a run; `compare` takes them too.
_RUN_OPTIONS = [
    click.option("--set", "set_values", multiple=True, metavar="KEY=VALUE",
                 help="Override a preset setting, e.g. --set lr=0.01 --set betas=0.9,0.99 (repeatable)."),
    click.option("--workload", default=DEFAULT_WORKLOAD, show_default=True, metavar="NAME",
                 help="The tasks trained together, their data and model (mtbench list shows the workloads)."),
    click.option("--data", type=str, default=None, metavar="DIR",
                 help="The workload's data folder [default: its embedded stand-in]; imagenet-coco reads "
                      "DIR/imagenet and DIR/coco (or --imagenet and --coco)."),
    click.option("--imagenet", type=str, default=None, metavar="DIR",
                 help="ImageNet in folder layout: DIR/train/<wnid>/*.JPEG, DIR/val/<wnid>/*.JPEG."),
    click.option("--coco", type=str, default=None, metavar="DIR",
                 help="COCO: DIR/train2017, DIR/val2017, DIR/annotations/instances_{train,val}2017.json."),
    click.option("--image-size", type=Bounded(LIMITS["image_size"]), default=None,
                 help="Training crop size in pixels [default: 224 for real data, 64 for the embedded set]."),
    click.option("--limit-train", type=Bounded(LIMITS["limit_train"]), default=None, metavar="N",
                 help="Use at most N training images per task."),
    click.option("--limit-val", type=Bounded(LIMITS["limit_val"]), default=None, metavar="N",
                 help="Use at most N validation images per task."),
    click.option("--epochs", type=Bounded(LIMITS["epochs"]), default=None,
                 help="[default: the workload's, 5 for imagenet-coco]"),
    click.option("--batch-size", type=Bounded(LIMITS["batch_size"]), default=None,
                 help="Images per task per step (per step with a shared batch) [default: the workload's, 8 for "
                      "imagenet-coco]."),
    click.option("--seed", type=Bounded(LIMITS["seed"]), default=0, show_default=True,
                 help="Seeds the initial weights and the data order."),
    click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
    click.option("--amp", type=click.Choice(AMP_MODES), default="off", is_flag=False, flag_value="bf16",
                 show_default=True, help="Mixed precision: --amp alone is bf16; fp16 on CUDA only."),
    click.option("--workers", type=Bounded(LIMITS["workers"]), default=0, show_default=True,
                 help="Data-loading worker processes."),
    click.option("--backbone", type=click.Choice(BACKBONES), default="resnet18", show_default=True),
    click.option("--weights", type=str, default=None, metavar="PATH",
                 help="Initial weights: a local checkpoint (state dict); never downloaded."),
    click.option("--task-weights", type=str, default=None, metavar="W1,W2,...",
                 help="Loss weights of the workload's tasks, in its order or as TASK=W [default: 1/T each, "
                      "0.5,0.5 for two]; MTAdamV2's task_weights."),
    click.option("--loss-scale", type=str, default=None, metavar="TASK=FACTOR",
                 help="Multiply one task's loss, e.g. seg=100 (a stress test of loss balancing)."),
    click.option("--on-nonfinite", type=click.Choice(NONFINITE_POLICIES), default="abort", show_default=True,
                 help="On a NaN/inf loss: stop, or skip the step (stopping after --max-skips in a row)."),
    click.option("--max-skips", type=Bounded(LIMITS["max_consecutive_skips"]), default=10, show_default=True,
                 help="Consecutive skipped steps before a run counts as diverged."),
    click.option("--method", default="sum", show_default=True, metavar="NAME",
                 help="Multi-task method that combines the tasks' gradients (mtbench list shows them); "
                      "its settings: --set method.key=value."),
    click.option("--holdout", type=Bounded(LIMITS["holdout"]), default=None, metavar="FRACTION",
                 help="Hold out this fraction of each task's training images as a selection split, "
                      "evaluated each epoch beside the test split [run: 0; compare: 0.1]."),
    click.option("--tasks", default=None, metavar="TASK,...",
                 help="Train some of the workload's tasks (one alone: a single-task baseline, the other heads "
                      "untouched, their losses not computed, --task-weights not applied) [default: all]."),
    click.option("--schedule", type=click.Choice(SCHEDULES), default="constant", show_default=True,
                 help="Learning-rate schedule over the run: constant, cosine (to 0) or step (x0.1 at 1/3 and 2/3)."),
    click.option("--warmup-epochs", type=Bounded(LIMITS["warmup_epochs"]), default=0, show_default=True,
                 help="Epochs of linear lr warm-up before the schedule."),
    click.option("--tensorboard", is_flag=True,
                 help="Also write TensorBoard event files (scalars per step and per epoch) to RUN_DIR/tensorboard."),
]


def run_options(func):
    """Add every option of `mtbench run` that shapes a run (data, schedule, device, overrides)."""
    for option in reversed(_RUN_OPTIONS):
        func = option(func)
    return func


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def choose_optimizer(registry) -> str:
    """The numbered menu of every discovered optimizer; refuses when nobody can answer it."""
    names = registry.names()
    if not _stdin_is_terminal():
        raise ConfigError(
            f"no --optimizer given and no terminal to ask on; choose one of: {', '.join(names)}"
        )
    click.echo("Select an optimizer:")
    for i, name in enumerate(names, 1):
        preset = registry.presets[name]
        click.echo(f"  {i}. {preset.title:<16} {format_settings(preset.defaults)}")
    number = click.prompt(f"Number (1-{len(names)})", type=click.IntRange(1, len(names)))
    return names[number - 1]


# Options a resumed run may still change: they do not alter what is computed.
_RESUMABLE = tuple(s for s in RESUMABLE_SETTINGS if s != "run_dir")


@click.command()
@click.option("--optimizer", "-o", default=None, metavar="NAME",
              help="An optimizer from `mtbench list`; on a terminal, omit it to pick from a menu.")
@run_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"), show_default=True,
              help="Folder that receives the run directory.")
@click.option("--resume", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="RUN_DIR",
              help="Continue an interrupted run from its last checkpoint (--epochs may extend it).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@config_option
@click.pass_context
def run(ctx: click.Context, optimizer: str | None, out: Path, resume: Path | None, quiet: bool, **options) -> None:
    """Train a workload's tasks on one shared network with one optimizer and write a run directory."""
    from ..interrupts import Terminated, sigterm_as_interrupt

    registry = ctx.obj.registry
    if resume is not None:
        config, preset = _resume_config(ctx, registry, resume, options)
    else:
        workload = registry.workload(options["workload"])
        preset = registry.get(optimizer or choose_optimizer(registry))
        config = build_config(preset, "", registry.method_preset(options["method"]), **{**options, "workload": workload})
    from ..train import train  # torch loads here: the menu and the checks of the settings do not wait for it

    method = registry.method_preset(config.method)
    workload = registry.workload(config.workload)
    echo = click.echo if int(os.environ.get("RANK", "0")) == 0 else (lambda *a, **k: None)
    described = f" + {method.title}: {format_settings(config.method_settings)}" if method else ""
    echo(f"{preset.title}: {format_settings(config.hyperparams)}{described}")
    new = resume is None
    try:
        # From the run directory's making on, SIGTERM stops as Ctrl-C does: one that comes while the
        # run sets up (data, model) removes the directory it left empty and says so.
        with sigterm_as_interrupt():
            if new:
                config.run_dir = _new_run_dir(out, preset.name, config.device)  # after the settings are checked
            summary = Summary.from_json(train(config, preset, method=method, workload=workload, resume=not new,
                                              progress=not quiet, echo=echo))
    except MTBenchError:
        if new and config.run_dir:
            _remove_if_unused(Path(config.run_dir))
        raise
    except KeyboardInterrupt as exc:
        if config.run_dir and Path(config.run_dir, CONFIG_FILE).is_file():
            echo(f"\ninterrupted; resume with: mtbench run --resume {config.run_dir}", err=True)
        else:
            if new and config.run_dir:
                _remove_if_unused(Path(config.run_dir))
            why = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
            echo(f"\n{why} while the run was setting up; nothing was kept", err=True)
        ctx.exit(130)
    # a summary written before workloads has the default workload's figures as final_<metric>
    final = summary.final_metrics or {m.name: getattr(summary, f"final_{m.name}", None) for _, m in workload.metrics()}
    figures = "  ".join(m.show(final.get(m.name)) for _, m in workload.metrics())
    echo(
        f"final: {figures}  ({summary.steps} steps, {summary.seconds_per_step * 1000:.0f} ms/step, "
        f"peak memory {summary.peak_memory_mb:.0f} MB)"
    )
    echo(f"written: {Path(config.run_dir, SUMMARY_FILE)}")


def _new_run_dir(out: Path, name: str, device: str) -> str:
    """A new run directory; under torchrun rank 0 makes it and every rank gets its name."""
    from ..distributed import from_rank0, resolve_device

    return from_rank0(lambda: str(create_run_dir(out, name)), resolve_device(device))


def _remove_if_unused(run_dir: Path) -> None:
    """Remove a new run directory that a run refused before writing anything into it."""
    try:
        if not any(p for p in run_dir.rglob("*") if p.is_file()):
            for folder in sorted(run_dir.rglob("*"), reverse=True):
                folder.rmdir()
            run_dir.rmdir()
    except OSError:
        pass


def _resume_config(ctx: click.Context, registry, run_dir: Path, options: dict):
    from ..rundir import RunDir

    if not (run_dir / CONFIG_FILE).is_file():
        raise ConfigError(f"--resume {run_dir}: not a run directory (no config.json)")
    changed = [
        name for name in list(options) + ["optimizer"]
        if name not in _RESUMABLE and ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE
    ]
    if ctx.default_map:
        changed.append("config")
    if changed:
        flags = ", ".join("--" + n.replace("_", "-").replace("set-values", "set") for n in changed)
        raise ConfigError(f"--resume continues the run with its own settings; drop {flags}")
    data = RunDir(run_dir).read_json(CONFIG_FILE)
    data.pop("preset", None)
    data["run_dir"] = str(run_dir)
    for name in _RESUMABLE:
        if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE:
            data[name] = options[name]
    config = RunConfig.from_dict(data)
    return config, registry.get(config.optimizer)
