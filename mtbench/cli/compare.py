"""`mtbench compare` and `mtbench report`: every row (optimizer x method, sweep, baselines) over seeds,
then tables and plots."""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from ..compare import (
    ComparisonInterrupted, ComparisonResult, ComparisonSpec, ReportOptions, guide_ranges, parse_methods,
    parse_optimizers, parse_seeds, parse_sweep, plan_rows, run_comparison,
)
from ..config import LIMITS, SUM_METHOD, TASKS, parse_task_values
from ..errors import ConfigError, MTBenchError
from ..report.build import build_report
from ..report.comparison import is_comparison_dir
from ..report.convergence import AUTO, parse_target
from ..report.selection import DEFAULT_SELECTION, SELECTIONS
from ..report.files import terminal_table, write_report
from ..report.reference import choose_reference
from ..report.verdict import DEFAULT_PRIMARY, PRIMARY_METRICS
from ..report.workloads import profile_terminal, split_workloads, write_profiles
from .bounded import Bounded
from .configfile import config_option
from .run import run_options
from .workloads import per_workload_options, single_workload, workload_options

__all__ = ["compare", "report", "report_options", "show_result"]


def _stderr(line: str) -> None:
    click.echo(line, err=True)


def report_options(func):
    """The verdict's options, shared by `mtbench compare` and `mtbench report`."""
    func = click.option(
        "--reference", default=None, metavar="ROW",
        help="The compared row Δm is measured against, seed by seed, where no single-task baselines were run  "
             "[default: adam when compared, else the first row].")(func)
    func = click.option(
        "--target", "target", default=AUTO, show_default=True, metavar="auto | relative | FRACTION | top1=X,miou=Y",
        callback=lambda ctx, param, text: _parsed(parse_target, text, "--target"),
        help="The convergence target: auto (the embedded workload's fixed target on it, else relative), "
             "relative (0.9 x the best final relative joint score), a fraction of it, or fixed per-task "
             "targets, all to be met; read on the held-out split of runs that have one.")(func)
    func = click.option(
        "--select", type=click.Choice(SELECTIONS), default=DEFAULT_SELECTION, show_default=True,
        help="The epoch reported per run: final (the fixed budget) or best-holdout (the epoch with the best "
             "joint score on the held-out split, reported with its test figures).")(func)
    return click.option(
        "--primary", type=click.Choice(PRIMARY_METRICS), default=DEFAULT_PRIMARY, show_default=True,
        help="The metric rows are ranked and tested on: joint (mean of the tasks' primary metrics: top-1 and "
             "mIoU on ImageNet + COCO; Δm on a workload without one), top1, miou, or delta_m (against the "
             "single-task baselines, else the --reference row).")(func)


def _parsed(parse, text, hint: str):
    """``parse(text)``, its ConfigError as click's one-line error on the option ``hint``."""
    try:
        return parse(text)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from None


@per_workload_options
@click.command(epilog="""\b
Rows (each run for every seed, from the same initial weights on the same data):
  adam          --optimizers adam (the method sum)
  adam+pcgrad   --methods sum,pcgrad crosses the methods with the optimizers
  adam@w0.3     --task-weights-sweep 0.3,...: task weights (0.3, 0.7), the scalarization front
  adam@w0.6_0.2_0.2  --task-weights-sweep 0.6:0.2:0.2,... or simplex:N (three or more tasks)
  adam[cls]     --single-task: one run per task alone with --baseline (for Delta-m)
\b
--set applies per optimizer or method:
  --set adam.lr=0.003        only adam
  --set lr=0.003             every compared optimizer that accepts lr (an error if none does)
  --set pcgrad.seed=1        a setting of the method pcgrad, in its rows
  --set method.reg_eps=1e-3  every compared method that accepts reg_eps
\b
The comparison directory holds comparison.json (the rows and settings), runs/<row>-seed<k>/ and the
report (report.md/.csv/.json, loss.png, validation.png, final.png, conflict.png). Running the same
command again skips the completed runs and runs the others again, from their last checkpoint where
they have one; a directory made with other settings is refused, and so is one that another
`mtbench compare` is working in (--wait waits for it instead). The exit status is 1 when any run
failed (the table says which and why; the other runs are reported as usual).
\b
With --workloads, --data and the budget may be given per workload:
  --data nyuv2=/data/nyuv2,cityscapes=/data/city   each one's data root (the others: their stand-in)
  --epochs 3 --epochs multidigits=10               3 for every workload, 10 for multidigits
  --batch-size nyuv2=4                             nyuv2's; the others keep their own default
--image-size and --limit-train take the same forms; --imagenet and --coco are imagenet-coco's.""")
@click.option("--optimizers", default=None, metavar="A,B,...",
              help="Optimizers to compare, comma-separated, or all (every preset)  [default: the guide's eight "
                   "and other plugins' presets, not the zoo's].")
@click.option("--methods", default=SUM_METHOD, show_default=True, metavar="M1,M2,...",
              help="Multi-task methods, each crossed with every optimizer (mtbench list shows them); one that "
                   "takes per-task gradients itself (mtadamv2) composes with sum only.")
@click.option("--task-weights-sweep", "sweep", default=None, metavar="W1,W2,... | simplex:N",
              help="Also run each single-gradient optimizer with the method sum at each point of task weights: "
                   "the scalarization front. Two tasks: w in (0, 1) for (w, 1-w), e.g. 0.1,0.3,0.5,0.7,0.9; any "
                   "number: simplex:N (every weight k/N, k >= 1; simplex:5 is 6 points for 3 tasks) or points "
                   "such as 0.6:0.2:0.2,0.2:0.6:0.2 (weights > 0 summing to 1). The point of --task-weights is "
                   "the plain row itself.")
@click.option("--tuned-scalarization", "tuned", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, metavar="TUNE_DIR",
              help="Also run the tuned weighted sum: a row <optimizer>@tuned at the best task weights of a finished "
                   "`mtbench tune --search-task-weights --out TUNE_DIR`; the report holds every row against it.")
@click.option("--single-task", is_flag=True,
              help="Also run single-task baselines: one run per task alone with --baseline, for Delta-m.")
@click.option("--baseline", default="adam", show_default=True, metavar="NAME",
              help="The single-gradient optimizer of the --single-task baselines.")
@click.option("--seeds", default="1", show_default=True, metavar="N | S1,S2,...",
              help="A count (3: seeds --seed, --seed+1, --seed+2) or a list of seeds (0,5,7).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The comparison directory [default: comparisons/<hash of the settings>; with --workloads "
                   "comparisons/<A+B+...>].")
@click.option("--workloads", default=None, metavar="A,B,...",
              help="Run the same rows on each workload (its embedded data unless --data NAME=DIR; its default "
                   "epochs and batch size unless given, per workload as NAME=VALUE): one comparison directory per "
                   "workload in --out/<workload>/ with its report, and the cross-workload report in --out "
                   "(performance profiles of the joint score and of the time to target, the rows best on most "
                   "workloads, profile.png).")
@click.option("--quiet", "-q", is_flag=True, help="No per-run progress bar.")
@click.option("--wait", is_flag=True,
              help="When another process is working in the comparison directory, wait for it to finish "
                   "instead of stopping.")
@click.option("--nproc-per-node", type=Bounded(LIMITS["nproc_per_node"]), default=1, show_default=True,
              help="Run each run distributed: torchrun with this many processes (one per GPU, or gloo on CPU).")
@report_options
@run_options
@config_option
@click.pass_context
def compare(ctx: click.Context, optimizers: str | None, methods: str, sweep: str | None, tuned: Path | None,
            single_task: bool,
            baseline: str, seeds: str, out: Path | None, workloads: str | None, quiet: bool, wait: bool,
            nproc_per_node: int, primary: str, select: str, target, reference: str | None, **options) -> None:
    """Train every row (optimizers crossed with methods, a task-weight sweep, single-task baselines)
    from the same initial weights on the same data, for each seed, then write the comparison table
    and plots."""
    registry = ctx.obj.registry
    if workloads is not None:
        _across(ctx, workloads, optimizers, methods, sweep, tuned, single_task, baseline, seeds, out, quiet, wait,
                nproc_per_node, ReportOptions(target, primary, select, reference), options)
        return
    single_workload(ctx, options)
    workload = _parsed(registry.workload, options.pop("workload"), "--workload")
    _check_combinations(ctx, options, seeds, single_task, baseline, primary, workload.task_names)
    names = _parsed(lambda text: parse_optimizers(text, registry), optimizers, "--optimizers")
    method_names = _parsed(lambda text: parse_methods(text, registry), methods, "--methods")
    weights = _parsed(parse_sweep, sweep, "--task-weights-sweep") if sweep is not None else ()
    seed_list = _parsed(lambda text: parse_seeds(text, first=options["seed"]), seeds, "--seeds")
    base = _parsed(registry.get, baseline, "--baseline") if single_task else None
    compared = {name: registry.get(name) for name in names}
    tasks = workload.task_names
    plain = parse_task_values(options["task_weights"], "--task-weights", 1 / len(tasks), tasks) \
        if options["task_weights"] else None
    rows, notes = plan_rows(compared, method_names, weights, base, plain, tasks)
    if tuned is not None:  # the tuned weighted sum, the baseline every row is held against (report.baseline)
        from ..compare.tuned import tuned_row

        row, note = _parsed(lambda path: tuned_row(path, tasks, names), tuned, "--tuned-scalarization")
        rows, notes = [*rows, row], [*notes, note]
    _check_reference(reference, rows, single_task)
    for note in notes:
        _stderr(f"note: {note}")
    spec = ComparisonSpec(tuple(rows), seed_list, options, tuple(options.pop("set_values")), workload.name,
                          options.pop("data"), out=out,
                          nproc_per_node=nproc_per_node, plugin_paths=tuple(ctx.obj.plugin_paths), wait=wait,
                          progress=not quiet, report=ReportOptions(target, primary, select, reference))
    try:
        result = run_comparison(spec, registry, echo=_stderr)
    except ComparisonInterrupted as stop:
        _stderr(f"\ninterrupted; run the same command again to resume the comparison in {stop.out}")
        ctx.exit(130)
    show_result(result)
    failures = result.failures()
    if failures:
        raise MTBenchError(failures)


def _across(ctx: click.Context, workloads: str, optimizers, methods, sweep, tuned, single_task, baseline, seeds,
            out, quiet, wait, nproc_per_node, report: ReportOptions, options: dict) -> None:
    """compare --workloads: the same rows on each workload (compare.across), then the cross-workload report."""
    from ..compare.across import run_across_workloads
    from ..report.workloads import profile_terminal

    registry = ctx.obj.registry
    for option, value in (("workload", "--workload"), ("task_weights", "--task-weights"), ("tasks", "--tasks")):
        if ctx.get_parameter_source(option) == ParameterSource.COMMANDLINE:
            raise click.BadParameter(f"{value} is one workload's; --workloads {workloads} runs each workload with all "
                                     f"its tasks, equally weighted: drop {value}", param_hint=value)
    if sweep is not None or tuned is not None:
        raise click.BadParameter("the task-weight sweep and the tuned weighted sum are one workload's (its tasks' "
                                 "weights): compare them per workload with --workload",
                                 param_hint="--task-weights-sweep" if sweep is not None else "--tuned-scalarization")
    options.pop("workload")
    names, per = workload_options(ctx, workloads, options)
    specs = []
    for name in names:
        workload = registry.workload(name)
        each = dict(per[name])
        _check_combinations(ctx, each, seeds, single_task, baseline, report.primary, workload.task_names)
        chosen = _parsed(lambda text: parse_optimizers(text, registry), optimizers, "--optimizers")
        method_names = _parsed(lambda text: parse_methods(text, registry), methods, "--methods")
        seed_list = _parsed(lambda text: parse_seeds(text, first=each["seed"]), seeds, "--seeds")
        base = _parsed(registry.get, baseline, "--baseline") if single_task else None
        rows, notes = plan_rows({n: registry.get(n) for n in chosen}, method_names, (), base, None,
                                workload.task_names)
        _check_reference(report.reference, rows, single_task)
        for note in notes:
            _stderr(f"note: {name}: {note}")
        set_values = tuple(each.pop("set_values"))
        specs.append(ComparisonSpec(tuple(rows), seed_list, each, set_values, workload.name, each.pop("data"),
                                    nproc_per_node=nproc_per_node, plugin_paths=tuple(ctx.obj.plugin_paths),
                                    wait=wait, progress=not quiet, report=report))
    out = out or Path("comparisons") / "+".join(names)
    try:
        result = _parsed(lambda _: run_across_workloads(specs, out, registry, echo=_stderr), None, "--workloads")
    except ComparisonInterrupted as stop:
        _stderr(f"\ninterrupted; run the same command again to resume the comparison in {stop.out}")
        ctx.exit(130)
    for name, each_result in result.results.items():
        click.echo(f"\n== {name} ==")
        show_result(each_result)
    click.echo("\n" + profile_terminal({name: r.report for name, r in result.results.items()}))
    click.echo(f"\nwritten to {out}: {', '.join(result.files)} (each workload's comparison in {out}/<workload>/)")
    failures = result.failures()
    if failures:
        raise MTBenchError(failures)


def show_result(result: ComparisonResult) -> None:
    """Print a comparison's table and the files its report wrote."""
    click.echo(terminal_table(result.report))
    click.echo(f"\nwritten to {result.out}: {', '.join(f.name for f in result.files)}")


def _check_combinations(ctx: click.Context, options: dict, seeds: str, single_task: bool, baseline: str,
                        primary: str, tasks: tuple[str, ...]) -> None:
    """Every check of options that are wrong together, in one place, before anything is planned or trained.

    `mtbench run`'s --method and --tasks choose one run's strategy, where a comparison chooses per row:
    they are taken out of ``options``.
    """
    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE

    method, given_tasks = options.pop("method"), options.pop("tasks")  # --tasks: all by default
    if method != SUM_METHOD:
        raise click.BadParameter(f"--method {method}: compare crosses --methods with the optimizers, e.g. "
                                 f"--methods sum,{method}", param_hint="--method")
    if given_tasks and {t.strip() for t in given_tasks.split(",")} != set(tasks):
        raise click.BadParameter(f"--tasks {given_tasks}: every compared row trains all the workload's tasks "
                                 f"({', '.join(tasks)}); --single-task adds a single-task baseline per task",
                                 param_hint="--tasks")
    if primary in ("top1", "miou") and tuple(tasks) != TASKS:  # ImageNet + COCO's metrics: nothing to rank here
        raise click.BadParameter(f"--primary {primary} is a metric of ImageNet + COCO; this workload's tasks "
                                 f"({', '.join(tasks)}) are ranked by joint or delta_m", param_hint="--primary")
    if given("seed") and "," in seeds:
        raise click.BadParameter(f"--seeds {seeds} lists the seeds; --seed only sets the first seed of "
                                 "a count (--seeds 3 --seed 10): give one of them", param_hint="--seed")
    if not single_task and given("baseline"):
        raise click.BadParameter(f"--baseline {baseline} names the optimizer of the single-task baselines; "
                                 "add --single-task to run them", param_hint="--baseline")


def _check_reference(reference: str | None, rows, single_task: bool) -> None:
    """--reference names a compared row, and only where no single-task baselines are the reference of Δm."""
    if reference is not None and single_task:
        raise click.BadParameter(f"--reference {reference}: --single-task runs the single-task baselines, the "
                                 "reference of Δm; give one of them", param_hint="--reference")
    if reference is not None:
        _parsed(lambda ref: choose_reference([r.name for r in rows if r.role == "row"], ref), reference,
                "--reference")


@click.command(epilog="""\b
--target sets the convergence target (steps and seconds to target, the label, the profiles):
  auto                  the embedded workload's fixed target (top-1 0.45 and mIoU 0.35) when every
                        run is of it, else relative [default]
  relative              0.9 x the best final relative joint score of the comparison
  0.8                   another fraction of it
  top1=0.5,miou=0.3     fixed per-task targets, all to be met
Targets are read on the held-out split of runs that have one, else on the test split.
\b
DIRs of several workloads (other data, model or budget) get one report each, in --out/<DIR name>/,
and performance profiles across them in --out (profile.png).""")
@click.argument("dirs", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the report goes [default: the first DIR when it is a comparison directory].")
@report_options
@click.pass_context
def report(ctx: click.Context, dirs: tuple[Path, ...], out: Path | None, target, primary: str,
           select: str, reference: str | None) -> None:
    """Rebuild the comparison's verdict, tables and plots from run directories alone.

    Each DIR is a comparison directory, a run directory, or a folder of run directories; several of
    one workload are merged into one table (runs of one row with different settings get separate rows).
    """
    workloads = split_workloads(dirs)
    if out is None:
        if len(workloads) > 1:
            raise click.UsageError(f"--out is required: the DIRs hold {len(workloads)} workloads "
                                   f"({', '.join(name for name, _ in workloads)}), reported side by side")
        if not is_comparison_dir(dirs[0]):
            raise click.UsageError(f"--out is required: {dirs[0]} is not a comparison directory")
        out = dirs[0]
    runs = [run for _, members in workloads for run in members]
    # Only runs whose config.json lacks the guide's ranges need the plugins (and their imports).
    missing = {r.optimizer for r in runs if not (r.config.get("preset") or {}).get("expected")}
    known = ctx.obj.registry.presets if missing else {}
    expected = guide_ranges([known[name] for name in sorted(missing) if name in known])
    reports = {name: build_report(members, target=target, expected=expected, primary=primary, selection=select,
                                  reference=reference) for name, members in workloads}
    if len(reports) == 1:
        result = next(iter(reports.values()))
        files = write_report(result, out)
        click.echo(terminal_table(result))
        click.echo(f"\nwritten to {out}: {', '.join(f.name for f in files)}")
        return
    written = write_profiles(reports, out)
    click.echo(profile_terminal(reports))
    click.echo(f"\nwritten to {out}: {', '.join(written)}")
