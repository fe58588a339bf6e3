"""Planning a comparison: its rows (optimizers crossed with methods, the sweep, the baselines), the ``--set``
items shared out to them, and every row for every seed as a resolved run config."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from ..config import SUM_METHOD, TASKS, RunConfig
from ..errors import ConfigError
from ..presets import MethodPreset, OptimizerPreset
from ..workloads.types import Workload
from ..report.comparison import run_dir
from ..report.rows import RowSpec, same_weighting
from .parse import TaskWeightSweep

__all__ = ["Overrides", "PlannedRun", "locate_runs", "plan_comparison", "plan_rows", "split_overrides"]


def plan_rows(optimizers: Mapping[str, OptimizerPreset], methods: Sequence[str],
              sweep: TaskWeightSweep | Sequence[float] = (),
              baseline: OptimizerPreset | None = None,
              task_weights: Sequence[float] | None = None,
              tasks: Sequence[str] = TASKS) -> tuple[list[RowSpec], list[str]]:
    """The rows of a comparison, and a note for each optimizer left out of some of them.

    Every optimizer with every method at the comparison's ``task_weights`` (None: equal weights; an
    optimizer that takes the per-task gradients itself composes with ``sum`` only); each
    single-gradient optimizer with ``sum`` at each point of ``sweep`` (parse_sweep's, expanded for
    ``tasks``; a plain sequence of w is the two-task form (w, 1-w)), the point that weighs the tasks as
    ``task_weights`` do being the plain row itself; with ``baseline``, one single-task row per task.
    ``tasks`` are the workload's. ConfigError when no optimizer-method pair is left, or the sweep or the
    baseline cannot be run.
    """
    rows, notes = [], []
    for name, preset in optimizers.items():
        left_out = [m for m in methods if preset.per_task_gradients and m != SUM_METHOD]
        if left_out:
            notes.append(f"{name} with {', '.join(left_out)} left out: {name} takes the tasks' gradients apart and "
                         "balances them itself, so it composes with the method sum only")
        rows += [RowSpec.of(name, m, all_tasks=tasks) for m in methods if m not in left_out]
    if not rows:
        raise ConfigError(f"no row left to compare: {', '.join(optimizers)} with {', '.join(methods)} do not "
                          "compose; add sum to --methods or a single-gradient optimizer such as adam to --optimizers")
    if not isinstance(sweep, TaskWeightSweep):
        sweep = TaskWeightSweep(",".join(map(str, sweep)), tuple((w, round(1 - w, 12)) for w in sweep), shares=True)
    if sweep.points or sweep.spacing is not None:
        points = sweep.points_for(tasks)
        swept = [name for name, preset in optimizers.items() if not preset.per_task_gradients]
        if not swept:
            raise ConfigError(f"--task-weights-sweep weights the loss of a single-gradient optimizer; "
                              f"{', '.join(optimizers)} take per-task gradients (add one such as adam)")
        if len(swept) < len(optimizers):
            notes.append("the task-weight sweep leaves out " + ", ".join(n for n in optimizers if n not in swept)
                         + " (per-task gradients: no weighted loss to sweep)")
        rows += [RowSpec.of(name, SUM_METHOD, point, plain=task_weights, all_tasks=tasks)
                 for name in swept for point in points
                 if not same_weighting(point, task_weights)]  # that point is the plain row: not trained twice
    if baseline is not None:
        if len(tasks) < 2:
            raise ConfigError(f"--single-task runs a baseline per task of a workload of several; this workload has "
                              f"one task ({', '.join(tasks)}): its rows are single-task runs already")
        if baseline.per_task_gradients:
            raise ConfigError(f"--baseline {baseline.name} takes per-task gradients: a single-task baseline needs "
                              "a single-gradient optimizer such as adam")
        rows += [RowSpec.of(baseline.name, SUM_METHOD, tuple(1.0 if t == task else 0.0 for t in tasks), (task,))
                 for task in tasks]
    seen: set[str] = set()
    for row in rows:
        if row.name in seen:  # a plugin's preset name with + @ or [ in it
            raise ConfigError(f"two rows would both be named {row.name!r}; compare the optimizers in two "
                              "comparisons, or rename one of the presets")
        seen.add(row.name)
    return rows, notes


@dataclass
class Overrides:
    """``--set`` items shared out: ``key=value`` items per optimizer and per method (its settings)."""

    optimizers: dict[str, list[str]]
    methods: dict[str, list[str]]
    notes: list[str]

    def for_row(self, row: RowSpec) -> list[str]:
        """The row's items as build_config takes them (a method's settings as ``method.key=value``)."""
        return self.optimizers[row.optimizer] + [f"method.{item}" for item in self.methods.get(row.method, [])]


def split_overrides(items: Sequence[str], presets: Mapping[str, OptimizerPreset],
                    methods: Mapping[str, MethodPreset | None] | None = None) -> Overrides:
    """Share ``--set`` items out to the compared optimizers and methods (None stands for ``sum``).

    ``name.key=value`` goes to optimizer ``name`` only, or is a setting of method ``name`` in its
    rows; ``method.key=value`` goes to every compared method that accepts ``key``; ``key=value``
    goes to every compared optimizer that accepts ``key``. Either shared form is an error when none
    accepts the key and gets a note when only some do. Scoped items come after the shared ones, so
    they win.
    """
    methods = methods or {}
    settled = {name: m for name, m in methods.items() if m is not None}  # the methods that take settings
    shared: dict[str, list[str]] = {name: [] for name in presets}
    scoped: dict[str, list[str]] = {name: [] for name in presets}
    method_shared: dict[str, list[str]] = {name: [] for name in settled}
    method_scoped: dict[str, list[str]] = {name: [] for name in settled}
    notes = []

    def share(item, key, value, table, out, kind):
        takers = [name for name, preset in table.items() if preset.param(key) is not None]
        if not table:
            raise ConfigError(f"--set {item}: the compared methods ({', '.join(methods) or SUM_METHOD}) take no "
                              "settings; add a method with --methods (mtbench list shows them)")
        if not takers:
            raise ConfigError(f"--set {item}: none of the compared {kind}s accepts {key!r} "
                              "(mtbench list -v shows what each accepts)")
        if len(takers) < len(table):
            notes.append(f"--set {item} applies to {', '.join(takers)} only (the others do not accept {key!r})")
        for name in takers:
            out[name].append(f"{key}={value}")

    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"bad setting {item!r}: expected key=value, optimizer.key=value or "
                              "method.key=value, e.g. adam.lr=0.01")
        if "." not in key:
            share(item, key, value, presets, shared, "optimizer")
            continue
        name, _, sub = key.partition(".")
        if name == "method":
            share(item, sub, value, settled, method_shared, "method")
        elif name in presets and name in methods:
            raise ConfigError(f"--set {item}: {name!r} names both a compared optimizer and a compared method")
        elif name in presets:
            scoped[name].append(f"{sub}={value}")
        elif name in settled:
            method_scoped[name].append(f"{sub}={value}")
        elif name in methods:
            raise ConfigError(f"--set {item}: the method {name} takes no settings")
        else:
            also = f" or methods ({', '.join(settled)})" if settled else ""
            raise ConfigError(f"--set {item}: {name!r} is not one of the compared optimizers "
                              f"({', '.join(presets)}){also}")
    return Overrides({name: shared[name] + scoped[name] for name in presets},
                     {name: method_shared[name] + method_scoped[name] for name in settled}, notes)


@dataclass
class PlannedRun:
    """One row and seed of a comparison, with its optimizer, its method (None: sum), its resolved config and
    the comparison's workload (None: the trainer looks it up by the config's name)."""

    row: RowSpec
    seed: int
    preset: OptimizerPreset
    method: MethodPreset | None
    config: RunConfig
    workload: Workload | None = None

    @property
    def name(self) -> str:
        return self.row.name

    @property
    def optimizer(self) -> str:
        return self.row.optimizer

    @property
    def run_dir(self) -> Path:
        return Path(self.config.run_dir)


def plan_comparison(rows: Sequence[RowSpec], presets: Mapping[str, OptimizerPreset],
                    methods: Mapping[str, MethodPreset | None], seeds: Sequence[int],
                    make_config: Callable[[RowSpec, OptimizerPreset, MethodPreset | None, int], RunConfig],
                    workload: Workload | None = None) -> list[PlannedRun]:
    """Every row for every seed, seed by seed (an interrupted comparison has whole seeds done).

    ``make_config(row, preset, method, seed)`` builds and checks each run's config; its ConfigError
    gets the row's name in front.
    """
    plan = []
    for seed in seeds:
        for row in rows:
            preset, method = presets[row.optimizer], methods[row.method]
            try:
                config = make_config(row, preset, method, seed)
            except ConfigError as exc:
                raise ConfigError(f"{row.name}: {exc}") from None
            plan.append(PlannedRun(row, seed, preset, method, config, workload))
    return plan


def locate_runs(plan: Sequence[PlannedRun], out: Path) -> list[PlannedRun]:
    """The plan with each run's directory set to ``out/runs/<row>-seed<k>``."""
    return [dataclasses.replace(run, config=dataclasses.replace(
        run.config, run_dir=str(run_dir(out, run.name, run.seed)))) for run in plan]
