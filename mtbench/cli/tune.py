"""`mtbench tune`: the same tuning budget for every optimizer, on Optuna; resumable, over processes and machines."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

import click
from click.core import ParameterSource

from ..compare.across import PER_WORKLOAD
from ..config import LIMITS, TASKS
from ..errors import ConfigError, MTBenchError
from ..interrupts import sigterm_as_interrupt
from ..tuning.plan import DEFAULT_ROOT, TUNE_LIMITS
from ..tuning.space import DEFAULT_SAMPLER, SAMPLERS
from ..tuning.study import DEFAULT_HEARTBEAT
from ..tuning.worker import DEFAULT_OBJECTIVE, OBJECTIVES
from .bounded import Bounded
from .configfile import config_option
from .run import run_options
from .workerargs import worker_argv
from .workloads import per_workload_options, single_workload, workload_options

__all__ = ["joint_text", "tune"]

DEFAULT_TRIALS = 20


def _stderr(line: str) -> None:
    click.echo(line, err=True)


@per_workload_options
@click.command(epilog="""\b
Search spaces: each optimizer's preset may declare one; by default lr is searched log-uniform
within 10x of the preset's, and weight_decay log-uniform over [1e-6, 0.1] where the preset has one.
  --space adam.lr=1e-5:1e-1:log   a log-uniform range for adam only
  --space lr=1e-4:1e-2:log        every tuned optimizer that accepts lr
  --space momentum=0.8:0.99       a uniform range; --space sgd.nesterov=true|false: choices
A setting fixed with --set is not searched.
\b
The tune directory holds tune-settings.json, the studies (study.db, unless --storage), one run
directory per trial (trials/<optimizer>-t<n>/: `mtbench report` reads them like runs; a finished
trial's checkpoint is deleted unless --keep-checkpoints), the final runs (final/tuned/<optimizer>/
and final/preset/<optimizer>/: a comparison directory per setting and seeds) and the report
(tune.md/.csv/.json, lr_sensitivity.png). Running the same command again continues the tune:
finished trials are kept, a trial that was interrupted (Ctrl-C, SIGTERM) or whose worker was killed
is run again from its last checkpoint. Workers on several machines that run the same command against
one --storage (postgresql://USER@HOST/DB, or journal:PATH on a shared file system) finish exactly
the budget together. The exit status is 1 when every trial of an optimizer failed (tune.md says why).
\b
--workloads A,B,... tunes each workload with the same budget (--trials, --final-seeds), one after
another, each in OUT/<workload>/ exactly as `mtbench tune --workload A --out OUT/A` would (the same
command again continues them), then writes each workload's final runs as a report (OUT/<workload>/
report.md: rows "<optimizer> (tuned)" and "<optimizer> (preset)") and the cross-workload report of
those rows in OUT (report.md/.csv/.json, profile.png). --study NAME names a workload's studies
NAME-<workload>.<optimizer>. --data and the budget per workload:
  --data nyuv2=/data/nyuv2 --epochs 3 --epochs multidigits=10""")
@click.option("--optimizers", default=None, metavar="A,B,...",
              help="Optimizers to tune, comma-separated, or all (every preset)  [default: the guide's eight "
                   "and other plugins' presets, not the zoo's].")
@click.option("--trials", type=Bounded(TUNE_LIMITS["trials"]), default=DEFAULT_TRIALS, show_default=True,
              help="Search trials per optimizer; each also gets one trial at the guide's preset.")
@click.option("--sampler", type=click.Choice(SAMPLERS), default=DEFAULT_SAMPLER, show_default=True,
              help="qmc: scrambled Halton points; grid: log-spaced points over each range (DeepOBS); "
                   "tpe: Optuna's TPE, adaptive.")
@click.option("--objective", type=click.Choice(OBJECTIVES), default=DEFAULT_OBJECTIVE, show_default=True,
              help="What a trial scores on the holdout split: joint = mean of the tasks' primary metrics "
                   "(ImageNet + COCO: top-1 and mIoU; top1 and miou only there).")
@click.option("--space", "space_items", multiple=True, metavar="[OPT.]KEY=LOW:HIGH[:log] | KEY=A|B",
              help="Search KEY over a range (log-uniform with :log) or a list of choices (repeatable).")
@click.option("--search-task-weights", is_flag=True,
              help="Tune the weighted sum instead: search the task weights (the simplex of the workload's tasks, "
                   "uniformly) with the same --trials and sampler, the optimizer's settings its preset's and --set's; "
                   "mtbench compare --tuned-scalarization DIR adds the best weighting as a row.")
@click.option("--prune", is_flag=True,
              help="Stop trials whose holdout score falls below the median of earlier trials at the same epoch "
                   "(Optuna's MedianPruner), once two trials of the optimizer have finished; the report counts "
                   "the steps trained.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The tune directory [default: tunes/<hash of the settings>; with --workloads tunes/<A+B+...>].")
@click.option("--workloads", default=None, metavar="A,B,...",
              help="Tune on each workload with the same budget: a tune per workload in --out/<workload>/ (as "
                   "--workload W --out OUT/W makes it; --data and the budget per workload as NAME=VALUE), then "
                   "the final runs' tuned and preset rows compared across workloads in --out (needs --final-seeds) "
                   "[default --out: tunes/<A+B+...>].")
@click.option("--storage", default=None, metavar="URL",
              help="Where the studies live: postgresql://USER@HOST/DB, sqlite:///PATH or journal:PATH "
                   "[default: sqlite:///OUT/study.db].")
@click.option("--study", default=None, metavar="NAME",
              help="Name of the studies in the storage (NAME.<optimizer>) [default: tune-<hash of the settings>].")
@click.option("--jobs", type=Bounded(TUNE_LIMITS["jobs"]), default=1, show_default=True,
              help="Trials at once on this machine, each in its own process: one GPU each when GPUs are visible, "
                   "else the CPU threads split between them.")
@click.option("--nproc-per-node", type=Bounded(LIMITS["nproc_per_node"]), default=1, show_default=True,
              help="Run each trial distributed: torchrun with this many processes.")
@click.option("--final-seeds", type=Bounded(TUNE_LIMITS["final_seeds"]), default=0, show_default=True,
              help="After the tune, run each optimizer's best setting and its preset with this many fresh seeds "
                   "(--seed + 1, ...) and report them on the test split.")
@click.option("--heartbeat", type=Bounded(TUNE_LIMITS["heartbeat"]), default=DEFAULT_HEARTBEAT,
              show_default=True,
              metavar="SECONDS", help="How often a running trial tells the storage it is alive (for workers on "
                                      "other machines to rerun it when it stops).")
@click.option("--keep-checkpoints", is_flag=True,
              help="Keep each finished trial's resume checkpoint (checkpoints/last.pt, the size of the model and "
                   "optimizer state) [default: deleted once the trial is done; a trial under way keeps its own].")
@click.option("--quiet", "-q", is_flag=True, help="No per-trial progress bar.")
@click.option("--worker", "worker_index", type=int, default=None, hidden=True)
@run_options
@config_option
@click.pass_context
def tune(ctx: click.Context, optimizers: str | None, trials: int, sampler: str, objective: str, space_items: tuple,
         search_task_weights: bool, prune: bool, out: Path | None, storage: str | None, study: str | None, jobs: int,
         nproc_per_node: int,
         final_seeds: int, heartbeat: float, keep_checkpoints: bool, quiet: bool, worker_index: int | None,
         workloads: str | None = None, **options) -> None:
    """Give every optimizer the same tuning budget, score the trials on the holdout split, report the
    best setting beside the guide's preset."""
    from ..compare import parse_optimizers

    started = time.monotonic()
    registry = ctx.obj.registry
    try:
        names = parse_optimizers(optimizers, registry)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--optimizers") from None
    if prune and nproc_per_node > 1:
        raise ConfigError("--prune stops a trial from inside its training process, which torchrun runs apart "
                          "with --nproc-per-node; drop one of them")
    budget = _Budget(names, trials, sampler, objective, space_items, search_task_weights, prune, final_seeds)
    run = _Run(jobs, nproc_per_node, heartbeat, keep_checkpoints, quiet, worker_index)
    if workloads is not None:
        _tune_across(ctx, workloads, budget, run, options, out, storage, study, started)
        return
    single_workload(ctx, options)
    plan = _plan(registry, budget, options, out, storage, study)
    results = _tune_one(ctx, plan, budget, run, ctx.params, started)
    failed = _all_failed(results, plan)
    if failed:
        raise MTBenchError(failed)


@dataclass(frozen=True)
class _Budget:
    """What a tune searches and with what budget: the same for every workload of ``--workloads``."""

    optimizers: list[str]
    trials: int
    sampler: str
    objective: str
    space_items: tuple
    search_task_weights: bool
    prune: bool
    final_seeds: int


@dataclass(frozen=True)
class _Run:
    """How this process runs a tune's trials."""

    jobs: int
    nproc_per_node: int
    heartbeat: float
    keep_checkpoints: bool
    quiet: bool
    worker_index: int | None


def _plan(registry, budget: _Budget, options: Mapping[str, Any], out: Path | None, storage: str | None,
          study: str | None):
    """The tune of one workload (``options["workload"]``), checked: ConfigError (or a usage error) names the
    first bad setting; nothing is written."""
    from ..tuning import plan_tune
    from ..tuning.finals import check_final_seeds

    options = dict(options)
    workload = registry.workload(options["workload"])
    tasks = workload.task_names
    objective, final_seeds = budget.objective, budget.final_seeds
    if objective != "joint" and tasks != TASKS:
        raise click.BadParameter(f"--objective {objective} is a metric of ImageNet + COCO; workload {workload.name} "
                                 "is tuned on its joint score (the mean of its tasks' primary metrics)",
                                 param_hint="--objective")
    if final_seeds and options["tasks"] and {t.strip() for t in options["tasks"].split(",")} != set(tasks):
        raise ConfigError(f"--final-seeds runs the final settings as a comparison, whose rows train all the "
                          f"workload's tasks ({', '.join(tasks)}); drop --tasks {options['tasks']} or --final-seeds")
    if budget.search_task_weights and final_seeds:
        raise ConfigError("--final-seeds runs the tuned optimizer settings; the tuned task weights are run as a row "
                          "of a comparison: drop --final-seeds and use mtbench compare --tuned-scalarization DIR")
    presets = {name: registry.get(name) for name in budget.optimizers}
    method = registry.method_preset(options["method"])
    plan = plan_tune(presets, trials=budget.trials, sampler=budget.sampler, objective=objective, prune=budget.prune,
                     space_items=budget.space_items, set_items=options.pop("set_values"), options=options,
                     method=method, out=out, storage=storage, study=study, workload=workload,
                     search_task_weights=len(tasks) if budget.search_task_weights else 0)
    check_final_seeds(plan, final_seeds)
    return plan


def _tune_one(ctx: click.Context, plan, budget: _Budget, run: _Run, params: Mapping[str, Any], started: float,
              resume_dir: Path | None = None) -> list:
    """Run one workload's tune (its trials, then its final runs and report); ``params`` are the command's
    values its --jobs workers are given, ``resume_dir`` the directory the interrupted message names. Returns
    the results (none in a worker)."""
    from ..compare import launcher
    from ..tuning import Tuner, open_directory, open_studies
    from ..tuning.results import measure_overhead
    from ..tuning.spawn import run_workers, split_threads
    from ..tuning.study import quiet_optuna

    worker_index = run.worker_index
    with quiet_optuna():
        if worker_index is None:
            resumed = open_directory(plan)
            for note in plan.notes:
                _stderr(f"note: {note}")
        studies = open_studies(plan, worker_index)
        if worker_index is None:
            _describe(plan, studies, resumed)
        train_fn = launcher(run.nproc_per_node, ctx.obj.plugin_paths)  # imports the trainer: part of the setup
        since, setup = datetime.now(), time.monotonic() - started
        tuner = Tuner(plan.out, plan.presets, studies, plan.spaces, plan.options, plan.overrides, plan.objective,
                      train_fn, method=plan.method, workload=plan.workload, prune=plan.prune, heartbeat=run.heartbeat,
                      echo=_stderr, progress=not run.quiet, keep_checkpoints=run.keep_checkpoints)
        try:
            with sigterm_as_interrupt():  # SIGTERM stops the tune as Ctrl-C does, between trials too
                if worker_index is not None:
                    split_threads(run.jobs)
                    tuner.work()
                    return []
                if run.jobs > 1:
                    argv = worker_argv(ctx.command, ctx.obj.plugin_paths, plan, params)
                    pids = run_workers(argv, run.jobs, plan.options["device"], run.nproc_per_node, _stderr)
                else:
                    tuner.work()
                    pids = [os.getpid()]
        except KeyboardInterrupt:
            if worker_index is None:  # the workers' parent says it once
                _stderr(f"\ninterrupted; run the same command again to continue the tune in {resume_dir or plan.out}")
            ctx.exit(130)
        wall = time.monotonic() - started
        unfinished = [name for name, ts in studies.items() if not ts.finished()]
        if unfinished:
            raise MTBenchError(f"the budget of {', '.join(unfinished)} is not finished; run the same command again "
                               f"to continue the tune in {resume_dir or plan.out}")
        overhead = measure_overhead(studies, since, wall, setup, pids)
        return _report(ctx, plan, studies, overhead, budget.final_seeds, run.quiet, run.nproc_per_node,
                       resume_dir)


def _all_failed(results: list, plan) -> str | None:
    """The line saying which optimizers had every trial fail, None when none did."""
    failed = [r for r in results if not any(row.state == "COMPLETE" for row in r.trials)]
    if not failed:
        return None
    reasons = [row for r in failed for row in r.failed()]
    why = f" ({reasons[0].name}: {reasons[0].error.strip().splitlines()[0]})" if reasons else ""
    return (f"every trial of {', '.join(r.optimizer for r in failed)} failed{why}; {plan.out / 'tune.md'} lists "
            "each reason")


# ---------------------------------------------------------------------------------------------
# --workloads: a tune per workload, then the tuned settings across workloads


def _tune_across(ctx: click.Context, workloads: str, budget: _Budget, run: _Run, options: dict, out: Path | None,
                 storage: str | None, study: str | None, started: float) -> None:
    """tune --workloads: every workload's tune planned (and checked) first, then each run in turn into
    ``out/<workload>`` as `tune --workload W --out out/W` would, then the cross-workload report of the final
    runs in ``out`` (tuning.across, report.workloads.write_profiles)."""
    from ..report.workloads import profile_terminal, write_profiles
    from ..tuning.across import finals_report

    registry = ctx.obj.registry
    if run.worker_index is not None:
        raise click.BadParameter("a worker runs one workload's tune", param_hint="--workloads")
    for option, flag in (("workload", "--workload"), ("tasks", "--tasks"), ("task_weights", "--task-weights")):
        if ctx.get_parameter_source(option) == ParameterSource.COMMANDLINE:
            raise click.BadParameter(f"{flag} is one workload's; --workloads {workloads} tunes each workload with all "
                                     f"its tasks, equally weighted: drop {flag}", param_hint=flag)
    if budget.search_task_weights:
        raise click.BadParameter("the tuned task weights are each workload's (its tasks') and are run as a row of "
                                 "that workload's comparison (compare --tuned-scalarization), which --workloads does "
                                 "not take: tune the weights per workload with --workload", param_hint="--workloads")
    if not budget.final_seeds:
        raise click.BadParameter(f"tune --workloads {workloads} compares the tuned settings across workloads by their "
                                 "final runs: give --final-seeds K (K fresh seeds per setting)",
                                 param_hint="--final-seeds")
    options.pop("workload")
    names, per = workload_options(ctx, workloads, options)
    out = out or DEFAULT_ROOT / "+".join(names)
    plans = {}
    for name in names:  # every workload's settings checked before the first trial
        try:
            plans[name] = _plan(registry, budget, {**per[name], "workload": name}, out / name, storage,
                                f"{study}-{name}" if study else None)
        except ConfigError as exc:
            raise ConfigError(f"{name}: {exc}") from None
        except click.BadParameter as exc:
            exc.message = f"{name}: {exc.message}"
            raise
    _stderr(f"{len(names)} workloads, each its own tune in {out}/<workload>: {', '.join(names)}")
    reports, failures = {}, []
    for k, (name, plan) in enumerate(plans.items(), 1):
        _stderr(f"\n== workload {k} of {len(names)}: {name} ==")
        params = {**ctx.params, "workloads": None, "workload": name, "out": plan.out, "storage": storage,
                  "study": plan.study, **{o: () if per[name][o] is None else (per[name][o],) for o in PER_WORKLOAD}}
        results = _tune_one(ctx, plan, budget, run, params, time.monotonic(), resume_dir=out)
        failures += [f"{name}: {line}"] if (line := _all_failed(results, plan)) else []
        presets = {o: plan.record["settings"][o]["hyperparams"] for o in plan.presets}
        report = finals_report(plan, results, presets, budget.final_seeds, registry)
        if report is not None:
            reports[name] = report
    if len(reports) < 2:
        _stderr(f"note: final runs on {len(reports)} workload(s) only: no cross-workload report")
    else:
        written = write_profiles(reports, out)
        click.echo("\n" + profile_terminal(reports))
        click.echo(f"\nwritten to {out}: {', '.join(written)} (each workload's tune in {out}/<workload>/)")
    if failures:
        raise MTBenchError("; ".join(failures))


def _describe(plan, studies, resumed: bool) -> None:
    from ..tuning.storage import shown

    done = sum(s.state == "done" for ts in studies.values() for s in ts.slots().values())
    total = len(studies) * (plan.trials + 1)
    _stderr(f"tune directory: {plan.out}" + (f" (resuming: {done} of {total} trials done)" if resumed else ""))
    _stderr(f"studies: {plan.study}.<optimizer> in {shown(plan.storage)}")
    _stderr(f"{len(studies)} optimizers x ({plan.trials} {plan.sampler} trials + the preset) = {total} trials, "
            f"scored on the holdout split ({plan.objective}): {', '.join(studies)}")


# ---------------------------------------------------------------------------------------------
# The final runs and the report


def _report(ctx, plan, studies, overhead: dict | None, final_seeds: int, quiet: bool, nproc: int,
            resume_dir: Path | None = None) -> list:
    """Run the final runs (with --final-seeds) and write the report, with whatever final runs of the current
    settings earlier invocations ran; returns the results."""
    from ..compare import ComparisonInterrupted
    from ..tuning.finals import run_finals
    from ..tuning.results import add_finals, collect, terminal, write_report
    from .compare import show_result

    results = collect(studies, {n: p.title for n, p in plan.presets.items()}, plan.spaces)
    workload = plan.workload
    presets = {name: plan.record["settings"][name]["hyperparams"] for name in plan.presets}
    if final_seeds:
        try:
            run_finals(plan, results, presets, final_seeds, ctx.obj.registry, nproc=nproc,
                       plugin_paths=ctx.obj.plugin_paths, progress=not quiet, echo=_stderr, show=show_result)
        except ComparisonInterrupted:
            _stderr(f"\ninterrupted; run the same command again to continue the tune's final runs in "
                    f"{resume_dir or plan.out}")
            ctx.exit(130)
    add_finals(results, plan.out, plan.objective, presets)
    meta = {"objective": plan.objective, "sampler": plan.sampler, "trials": plan.trials, "prune": plan.prune,
            "holdout": plan.options["holdout"], "seed": plan.seed, "final_seeds": final_seeds,
            "storage": plan.storage, "study": plan.study, "overhead": overhead,
            "workload": workload.name, "joint": joint_text(workload)}
    files = write_report(results, plan.out, meta)
    click.echo(terminal(results, meta))
    click.echo(f"\nwritten to {plan.out}: {', '.join(f.name for f in files)}")
    return results


def joint_text(workload) -> str:
    """What the joint objective is on ``workload``: the mean of its tasks' primary metrics, by title."""
    titles = [task.metric(task.primary).title for task in workload.tasks]
    return f"joint = mean of {', '.join(titles[:-1])} and {titles[-1]}" if len(titles) > 1 else f"joint = {titles[0]}"
