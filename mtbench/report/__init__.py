"""Results: reads run directories only, and turns them into a comparison's verdict, tables and plots.

A report can be rebuilt long after the runs, from comparison directories, loose run directories or a
tune's trials alike; nothing here imports the trainer. The package, in the order results flow:

    rows          RowSpec: what a row of a comparison trains (optimizer, method, task weights, tasks, role)
    comparison    the comparison directory: its layout, comparison.json, opening, checking and diffing it
    runs          Run: one run directory read back; finding the runs under directories
    grouping      RowRuns: the runs of one row over seeds
    selection     which epoch of a run is reported
    build         RowResult and Report: summaries, time to target, Δm, the verdict, the front
    deltam        Δm per seed: against the single-task baselines, or the --reference row
    reference     Δm against a compared row where no single-task baselines were run (--reference)
    taskmetrics   a workload's own metrics (from summary.json): their joint score and Δm, by direction
    header        what every run shares, the initial-weights check
    files         report.md/.csv/.json and the terminal table of one workload
    cells         how one figure of a row reads in a table's cell
    workloads     runs split by workload; performance profiles across workloads
    stats, fronts, verdict, convergence   the numbers and the words of the verdict
    plots, plots_gradients, plotstyle     the figures (matplotlib, imported only by them)

Names are imported on first use, so a reader of the comparison directory loads no scipy or matplotlib.
"""

from __future__ import annotations

from ..lazy import lazy_names

_LAZY = {
    "RowSpec": "mtbench.report.rows",
    "COMPARISON_FILE": "mtbench.report.comparison",
    "RUNS_DIR": "mtbench.report.comparison",
    "describe_difference": "mtbench.report.comparison",
    "is_comparison_dir": "mtbench.report.comparison",
    "open_directory": "mtbench.report.comparison",
    "Run": "mtbench.report.runs",
    "find_runs": "mtbench.report.runs",
    "load_run": "mtbench.report.runs",
    "RowRuns": "mtbench.report.grouping",
    "group_runs": "mtbench.report.grouping",
    "DEFAULT_SELECTION": "mtbench.report.selection",
    "SELECTIONS": "mtbench.report.selection",
    "select": "mtbench.report.selection",
    "Report": "mtbench.report.build",
    "RowResult": "mtbench.report.build",
    "build_report": "mtbench.report.build",
    "terminal_table": "mtbench.report.files",
    "write_tables": "mtbench.report.files",
    "split_workloads": "mtbench.report.workloads",
    "write_plots": "mtbench.report.plots",
}

__all__ = list(_LAZY)

__getattr__ = lazy_names(globals(), _LAZY)
