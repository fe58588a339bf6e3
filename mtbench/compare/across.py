"""One comparison over several workloads: the same rows on each workload, each in its own comparison
directory (``out/<workload>/``, with its own report, through run_comparison), then the cross-workload
report in ``out`` (report.md/.csv/.json and profile.png: mtbench.report.workloads).

NOTE [workloads]: runs of different workloads cannot be paired by seed, so each workload is a comparison of
its own and the rows meet only in the profiles (their time to target and their joint score relative to the
best row's on each workload) and in the count of workloads each row is best on.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..errors import ConfigError
from ..plugins import Registry
from .launch import TrainFn
from .run import ComparisonResult, ComparisonSpec, run_comparison

__all__ = ["AcrossResult", "run_across_workloads"]


@dataclass
class AcrossResult:
    """What a comparison over workloads did: each workload's comparison, and the cross-workload files
    written in ``out`` (relative to it)."""

    out: Path
    results: dict[str, ComparisonResult]
    files: list[str]

    def failures(self) -> str | None:
        """Every workload's failed runs in one line, None when none failed."""
        failed = [f"{name}: {text}" for name, r in self.results.items() if (text := r.failures())]
        return "; ".join(failed) or None


def run_across_workloads(specs: Sequence[ComparisonSpec], out: Path, registry: Registry,
                         echo: Callable[[str], None] | None = None,
                         train_fn: TrainFn | None = None) -> AcrossResult:
    """Run each spec (one per workload; its ``out`` is replaced by ``out/<workload>``) with run_comparison,
    then write the cross-workload report into ``out``. A workload named twice is a ConfigError before
    anything trains; ComparisonInterrupted stops the whole (the same call resumes every workload)."""
    from ..report.workloads import write_cross_workload  # matplotlib: only where the report is written

    echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    names = [spec.workload for spec in specs]
    if len(names) < 2:
        raise ConfigError(f"a comparison over workloads needs two workloads or more, got {', '.join(names) or 'none'}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"workload {', '.join(twice)} is named twice")
    for name in names:
        registry.workload(name)  # an unknown name stops before anything trains
    results = {}
    for k, spec in enumerate(specs, 1):
        echo(f"workload {k} of {len(specs)}: {spec.workload}")
        results[spec.workload] = run_comparison(dataclasses.replace(spec, out=Path(out) / spec.workload), registry,
                                                echo=echo, train_fn=train_fn)
    files = write_cross_workload({name: r.report for name, r in results.items()}, Path(out))
    return AcrossResult(Path(out), results, files)
