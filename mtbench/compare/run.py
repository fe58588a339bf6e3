"""A comparison as one library call: ``run_comparison(spec, registry)`` plans every row for every seed, opens
(or resumes) the comparison directory, trains what is not done and writes the report.

`mtbench compare` parses its options into a ComparisonSpec, calls this and prints; `mtbench tune` runs its
final runs through it too.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from ..config import DEFAULT_WORKLOAD, build_config
from ..errors import ConfigError
from ..plugins import Registry
from ..presets import OptimizerPreset
from ..report.comparison import comparison_record, default_directory, open_directory
from ..report.rows import RowSpec
from ..report.selection import DEFAULT_SELECTION
from ..report.verdict import DEFAULT_PRIMARY
from .launch import Outcome, TrainFn, launcher, run_plan, run_state
from .plan import PlannedRun, locate_runs, plan_comparison, split_overrides

if TYPE_CHECKING:  # the report is imported where it is built (numpy, scipy, matplotlib)
    from ..report.build import Report

__all__ = ["DEFAULT_HOLDOUT", "ComparisonInterrupted", "ComparisonResult", "ComparisonSpec", "ReportOptions",
           "guide_ranges", "plan_spec", "run_comparison"]

DEFAULT_HOLDOUT = 0.1  # compare selects on a holdout split by default; a single run holds out nothing


class ComparisonInterrupted(KeyboardInterrupt):
    """A comparison stopped by Ctrl-C or SIGTERM; ``out`` is its directory, where the same spec resumes it."""

    def __init__(self, out: Path):
        super().__init__(str(out))
        self.out = out


@dataclass(frozen=True)
class ReportOptions:
    """How the report reads the runs: the convergence target (None: auto), the metric rows are ranked and
    tested on, the epoch reported per run, and the row Δm is measured against without single-task baselines
    (None: adam, else the first row)."""

    target: Any = None
    primary: str = DEFAULT_PRIMARY
    selection: str = DEFAULT_SELECTION
    reference: str | None = None


@dataclass(frozen=True)
class ComparisonSpec:
    """Everything a comparison needs, typed: what it trains, with which settings, where, and how.

    ``rows`` (plan_rows makes them, with the workload's tasks) are each run for every seed of ``seeds``
    on ``workload`` (its data from ``data``, None: its embedded stand-in). ``settings`` are the run
    options every row shares whatever the workload (build_config's keywords, as `mtbench run` names
    them: epochs, batch_size, ...); a row sets its own method, task weights and tasks over them, and
    the seed is each run's. ``set_items`` are ``--set`` items, shared out to the rows' optimizers and
    methods.
    NOTE [workloads]: one spec is one workload, one comparison directory and one report; a comparison
    over several workloads is one spec per workload, and the profiles across their reports are
    mtbench.report.workloads'.
    """

    rows: tuple[RowSpec, ...]
    seeds: tuple[int, ...]
    settings: Mapping[str, Any]
    set_items: tuple[str, ...] = ()
    workload: str = DEFAULT_WORKLOAD
    data: str | None = None
    out: Path | None = None  # None: comparisons/<hash of the settings>
    nproc_per_node: int = 1  # > 1: every run under torchrun
    plugin_paths: tuple[str, ...] = ()  # plugins the torchrun children load
    wait: bool = False  # wait for another process working in ``out`` instead of stopping
    progress: bool = True
    report: ReportOptions = field(default_factory=ReportOptions)


@dataclass
class ComparisonResult:
    """What a comparison did: its directory, whether it resumed one, each run's outcome, the report and the
    files written."""

    out: Path
    resumed: bool
    outcomes: list[Outcome]
    report: Report
    files: list[Path]

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def failures(self) -> str | None:
        """The failed runs in one line ('2 of 6 runs failed (adam seed 0: ...)'), None when none failed."""
        failed = self.failed
        if not failed:
            return None
        which = "; ".join(f"{o.run.name} seed {o.run.seed}: {o.error}" for o in failed)
        return f"{len(failed)} of {len(self.outcomes)} runs failed ({which})"


def guide_ranges(presets: Iterable[OptimizerPreset]) -> dict[str, dict]:
    """The guide's ranges from the presets, for runs whose config.json does not carry them."""
    return {p.name: p.expected.to_dict() for p in presets if p.expected is not None}


def run_comparison(spec: ComparisonSpec, registry: Registry, echo: Callable[[str], None] | None = None,
                   train_fn: TrainFn | None = None) -> ComparisonResult:
    """Run the comparison ``spec`` describes and write its report into its directory.

    Completed runs of an earlier invocation are skipped, interrupted ones resumed; a run that fails is
    recorded and the others go on. Raises ConfigError before anything trains for settings that do not
    make a run, or a directory holding another comparison; LockedError when another process works in it
    (unless ``spec.wait``); ComparisonInterrupted (a KeyboardInterrupt) when a run is interrupted (the same
    spec resumes it).
    ``echo`` gets the progress lines (default: stderr); ``train_fn`` replaces the launcher (tests).
    """
    echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    plan, presets, notes = plan_spec(spec, registry)
    for note in notes:
        echo(f"note: {note}")
    record = comparison_record(plan)
    out = spec.out or default_directory(record)
    lock, resumed = open_directory(out, record, wait=spec.wait, on_wait=lambda holder: echo(f"waiting for {out} "
                                                                                            f"({holder})"))
    try:  # the lock is held until the report is written, whichever way the comparison ends
        plan = locate_runs(plan, out)
        done = sum(run_state(run.run_dir) == "completed" for run in plan)
        echo(f"comparison directory: {out}" + (f" (resuming: {done} of {len(plan)} runs completed)" if resumed else ""))
        rows, seeds = spec.rows, spec.seeds
        echo(f"{len(rows)} row{'s' * (len(rows) > 1)} x {len(seeds)} seed{'s' * (len(seeds) > 1)} "
             f"({', '.join(map(str, seeds))}) = {len(plan)} runs: {', '.join(row.name for row in rows)}")
        train_fn = train_fn or launcher(spec.nproc_per_node, spec.plugin_paths)
        try:
            outcomes = run_plan(plan, train_fn, progress=spec.progress, echo=echo)
        except KeyboardInterrupt:
            raise ComparisonInterrupted(out) from None
        report, files = _write_report(out, outcomes, presets.values(), spec.report)
    finally:
        lock.release()
    return ComparisonResult(out, resumed, outcomes, report, files)


def plan_spec(spec: ComparisonSpec, registry: Registry) -> tuple[list[PlannedRun], dict[str, OptimizerPreset],
                                                                 list[str]]:
    """Every run of ``spec`` with its checked config, the rows' presets and the notes on the --set items;
    ConfigError for settings that do not make a run. Nothing is written."""
    if not spec.rows or not spec.seeds:
        raise ConfigError("a comparison needs at least one row and one seed")
    workload = registry.workload(spec.workload)  # ConfigError with a did-you-mean for an unknown name
    presets = {row.optimizer: registry.get(row.optimizer) for row in spec.rows}
    methods = {row.method: registry.method_preset(row.method) for row in spec.rows}
    overrides = split_overrides(spec.set_items, presets, methods)
    settings = {**spec.settings, "workload": workload, "data": spec.data}
    if settings.get("holdout") is None:
        settings["holdout"] = DEFAULT_HOLDOUT
    plan = plan_comparison(spec.rows, presets, methods, spec.seeds, lambda row, preset, method, seed: build_config(
        preset, "", method, **{**settings, **row.options(), "seed": seed, "set_values": overrides.for_row(row)}),
        workload)
    return plan, presets, list(overrides.notes)


def _write_report(out: Path, outcomes: list[Outcome], presets: Iterable[OptimizerPreset],
                  options: ReportOptions) -> tuple[Report, list[Path]]:
    """Build the report from the comparison directory alone (as `mtbench report` would) and write its files;
    a run that failed before writing its summary is reported with the reason its launch gave."""
    from ..report.build import build_report
    from ..report.files import write_report
    from ..report.runs import find_runs

    reasons = {o.run.run_dir: o.error for o in outcomes if o.status == "failed"}
    runs = find_runs([out])
    for run in runs:
        run.failure = reasons.get(run.path)
    report = build_report(runs, target=options.target, expected=guide_ranges(presets), primary=options.primary,
                          selection=options.selection, reference=options.reference)
    return report, write_report(report, out)
