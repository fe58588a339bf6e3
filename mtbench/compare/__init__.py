"""Comparisons as a library call: every row for every seed, in one resumable comparison directory.

A comparison is a list of rows, each run once per seed. A row is an optimizer with a multi-task
method, task weights and the tasks it trains, and has a role:

    adam            "row"       method sum, the comparison's task weights, both tasks
    adam+pcgrad     "row"       a multi-task method other than sum (--methods)
    adam@w0.3       "sweep"     a point of the scalarization front: task weights (0.3, 0.7)
    adam@w0.6_0.2_0.2 "sweep"   the same over three tasks: task weights (0.6, 0.2, 0.2)
    adam[cls]       "baseline"  a single-task baseline for Delta-m (--single-task)

The trainer builds the model under the seed before any optimizer or method exists and draws the
data order from the seed, so for each seed every row starts from the same weights and sees the same
batches; summary.json's ``init_weights_sha256`` records it and the report checks it.

Modules: parse (the command line's lists), plan (rows, --set items, the planned runs), launch (the one
launcher of compare and tune, in process or torchrun; the loop over planned runs), run (ComparisonSpec
and run_comparison), across (the same rows on several workloads, and the cross-workload report). The
comparison directory's layout is mtbench.report.comparison's.
"""

from .across import AcrossResult, run_across_workloads
from .launch import Outcome, TrainFn, launcher, run_plan, run_state, torchrun_train
from .parse import TaskWeightSweep, parse_methods, parse_optimizers, parse_seeds, parse_sweep
from .plan import Overrides, PlannedRun, locate_runs, plan_comparison, plan_rows, split_overrides
from .run import (
    DEFAULT_HOLDOUT, ComparisonInterrupted, ComparisonResult, ComparisonSpec, ReportOptions, guide_ranges,
    run_comparison,
)

__all__ = [
    "DEFAULT_HOLDOUT", "AcrossResult", "ComparisonInterrupted", "ComparisonResult", "ComparisonSpec", "Outcome", "Overrides",
    "PlannedRun", "ReportOptions", "TaskWeightSweep", "TrainFn", "guide_ranges", "launcher", "locate_runs", "parse_methods",
    "parse_optimizers", "parse_seeds", "parse_sweep", "plan_comparison", "plan_rows", "run_across_workloads", "run_comparison", "run_plan",
    "run_state", "split_overrides", "torchrun_train",
]
