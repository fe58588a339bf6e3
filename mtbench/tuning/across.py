"""`mtbench tune --workloads A,B,...`: one tune per workload, each in ``out/<workload>`` exactly as
`mtbench tune --workload A --out out/A` makes it, then the tuned settings compared across workloads.

NOTE [tuned across workloads]: the studies, trials and final runs are each workload's own (a setting good on
one workload is not another's, and runs of different workloads cannot be paired by seed), so what meets across
workloads is each workload's final runs: per optimizer its best setting, row ``<optimizer> (tuned)``, and its
preset, row ``<optimizer> (preset)``, over the same fresh seeds. Each workload's final runs make one report
(``out/<workload>/report.md``: the rows paired by seed, tuned against preset), and the cross-workload report in
``out`` profiles those rows over the workloads (mtbench.report.workloads). The rows are named for their role,
not their settings, so that one optimizer's tuned row is one row on every workload whatever it found there.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Mapping, Sequence

from ..plugins import Registry
from .finals import final_specs
from .plan import TunePlan
from .results import Result

if TYPE_CHECKING:
    from ..report.build import Report

__all__ = ["finals_report", "row_name"]


def row_name(optimizer: str, role: str) -> str:
    """The row of an optimizer's final runs in a role (tuned or preset) across workloads."""
    return f"{optimizer} ({role})"


def finals_report(plan: TunePlan, results: Sequence[Result], presets: Mapping[str, dict], count: int,
                  registry: Registry) -> Report | None:
    """The report over one workload's final runs of its current best settings and presets with ``count`` seeds,
    each optimizer's two rows named by ``row_name``; None when none of those runs is there yet."""
    from ..report.build import build_report
    from ..report.comparison import is_comparison_dir
    from ..report.runs import find_runs

    runs = []
    for role, name, spec in final_specs(plan, results, presets, count, registry):
        if spec.out is None or not is_comparison_dir(spec.out):
            continue
        for run in find_runs([spec.out]):
            run.row = dataclasses.replace(run.row, name=row_name(name, role))
            runs.append(run)
    if not any(run.summary is not None for run in runs):
        return None
    return build_report(runs)

