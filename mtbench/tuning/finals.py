"""A tune's final runs: each optimizer's best setting and its preset, over fresh seeds, each a comparison of
its own (``run_comparison``, the library call `mtbench compare` makes) under ``final/``.

A comparison directory per role, optimizer, setting and seeds (``final/<tuned|preset>/<optimizer>/<hash>``):
a longer tune that finds a new best runs that one beside the old, and a comparison directory resumes like
any other. Workers of one tune on several machines that share the tune directory run the finals in turn
(each waits for the directory's lock).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

from ..compare import ComparisonResult, ComparisonSpec, plan_rows, run_comparison
from ..errors import ConfigError, MTBenchError
from ..plugins import Registry
from .plan import TunePlan
from .results import GUIDE, TUNED, Result, final_dir
from .space import setting_items

__all__ = ["check_final_seeds", "final_seeds", "final_specs", "run_finals"]

# Run options of the tune that are not a comparison's shared settings: the seed is each run's, the --set
# items are shared out per optimizer, the method and the tasks make the rows, the workload and its data
# are the spec's own.
_NOT_SHARED = ("seed", "set_values", "method", "tasks", "workload", "data")


def check_final_seeds(plan: TunePlan, final_seeds: int) -> None:
    """ConfigError when the final runs' seeds (--seed + 1 ... --seed + K) go past what a run accepts."""
    if not final_seeds:
        return
    last = plan.seed + final_seeds
    try:
        plan.config(next(iter(plan.presets)), seed=last)
    except ConfigError as exc:
        raise ConfigError(f"--final-seeds {final_seeds} runs the seeds {plan.seed + 1} to {last} (--seed + 1 on): "
                          f"{exc}") from None


def final_seeds(plan: TunePlan, count: int) -> tuple[int, ...]:
    """The seeds of the final runs: --seed + 1 on, never a seed a trial trained with."""
    return tuple(range(plan.seed + 1, plan.seed + 1 + count))


def final_specs(plan: TunePlan, results: Sequence[Result], presets: Mapping[str, dict], count: int,
                registry: Registry, *, nproc: int = 1, plugin_paths: Sequence[str] = (), progress: bool = True
                ) -> list[tuple[str, str, ComparisonSpec]]:
    """(role, optimizer, spec) of every final comparison: the tuned settings of each optimizer with a
    completed search trial, then each preset (``presets``: the optimizers' resolved preset settings)."""
    seeds = final_seeds(plan, count)
    settings = {k: v for k, v in plan.options.items() if k not in _NOT_SHARED}
    workload = plan.workload or registry.workload(plan.options["workload"])  # None: ImageNet + COCO
    specs = []
    for role in (TUNED, GUIDE):
        for r in results:
            if role == TUNED and r.best is None:
                continue
            name = r.optimizer
            rows, _ = plan_rows({name: plan.presets[name]}, [plan.options["method"]], tasks=workload.task_names)
            items = plan.overrides[name] + (setting_items(r.best_settings()) if role == TUNED else [])
            scoped = tuple(item if item.startswith("method.") else f"{name}.{item}" for item in items)
            out = final_dir(plan.out, role, name, r.best.settings if role == TUNED else presets[name], seeds)
            specs.append((role, name, ComparisonSpec(tuple(rows), seeds, settings, scoped, workload.name,
                                                     plan.options.get("data"), out=out,
                                                     nproc_per_node=nproc, plugin_paths=tuple(plugin_paths),
                                                     wait=True, progress=progress)))
    return specs


def run_finals(plan: TunePlan, results: Sequence[Result], presets: Mapping[str, dict], count: int,
               registry: Registry, *, nproc: int = 1, plugin_paths: Sequence[str] = (), progress: bool = True,
               echo: Callable[[str], None], show: Callable[[ComparisonResult], None] | None = None) -> None:
    """Run every final comparison (see ``final_specs``); ``show`` gets each one's result (its table).

    Failed runs are left out of the test figures (the tune's report says so), with a warning; Ctrl-C
    stops the finals (ComparisonInterrupted: the same tune resumes them).
    """
    missing = [r.optimizer for r in results if r.best is None]
    if missing:
        echo(f"note: no completed search trial for {', '.join(missing)}: no final runs of a tuned setting")
    for role, name, spec in final_specs(plan, results, presets, count, registry, nproc=nproc,
                                        plugin_paths=plugin_paths, progress=progress):
        echo(f"final runs, {role} settings: {name} {' '.join(spec.set_items) or '(no --set)'}, seeds "
             f"{', '.join(map(str, spec.seeds))}, in {spec.out}")
        try:
            result = run_comparison(spec, registry, echo=echo)
        except MTBenchError as exc:  # settings that do not make a run, a directory another tune left
            echo(f"warning: final runs of {name} ({role}): {exc}")
            continue
        if show is not None:
            show(result)
        failures = result.failures()
        if failures:
            echo(f"warning: final runs of {name} ({role}): {failures}")
