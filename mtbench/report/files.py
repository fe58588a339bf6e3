"""What a report shows for one workload: the terminal text, report.md, report.csv and report.json (the
verdict and the tables). How one figure reads in a table's cell: mtbench.report.cells. Across workloads (the
performance profiles): mtbench.report.workloads."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Sequence

from ..rundir import atomic_write_text
from ..text import format_table
from .build import ROW_METRICS, Report
from .cells import guide_cells, mean_cell, seeds_cell, time_cell, verdict_cell, vs_best_cell
from .convergence import NOT_REACHED, THRESHOLDS, UNKNOWN, thresholds_text
from .header import loss_scale
from .reference import SINGLE_TASK
from .stats import ALPHA, WILCOXON_MIN_PAIRS
from .verdict import difference_unit

__all__ = [
    "BASELINE_HEADERS", "CSV_FIELDS", "GUIDE_NOTE", "SWEEP_HEADERS", "baseline_rows", "csv_text", "json_record",
    "markdown", "notes", "own_metric_table", "strict_json", "sweep_headers", "sweep_rows", "table_headers", "table_rows", "terminal_table", "write_report",
    "write_tables",
]

GUIDE_NOTE = ("guide = the optimizer guide's expected results for real ImageNet + COCO, 5 epochs, "
              "batch size 8 (not measured here)")


# ---------------------------------------------------------------------------------------------
# Tables


# The columns of the main table that only ImageNet + COCO has: another workload's metrics have a table of
# their own (own_metric_table), and the optimizer guide's ranges are for real ImageNet + COCO.
_DEFAULT_ONLY = ("top-1", "mIoU", "guide top-1", "guide mIoU", "guide conv.")

# NOTE [joint column]: a workload whose joint score is not defined (a primary metric is lower-is-better: nyuv2,
# cityscapes) has no "joint" column in the main or the sweep table of report.md and the terminal, where it would
# be "-" on every row. report.csv keeps its fixed columns (joint_mean ... empty) and report.json its null
# "joint" summaries: one schema for every workload, so files of several workloads stack and readers keyed by
# column name never miss one.


def _all_headers(report: Report) -> list[str]:
    delta = [report.delta_m_name] if report.has_delta_m else []
    return ["rank", "row", "seeds", "top-1", "mIoU", "joint", *delta, f"vs best ({report.metric_name(report.primary)})",
            "verdict", "steps to target", "time to target", "convergence", "s/step", "peak MB",
            "guide top-1", "guide mIoU", "guide conv.", "status"]


def _shown(report: Report) -> list[bool]:
    """Which of _all_headers the report shows: no joint column where the workload has no joint score (NOTE
    [joint column])."""
    return [(report.own is None or h not in _DEFAULT_ONLY) and (report.has_joint or h != "joint")
            for h in _all_headers(report)]


def table_headers(report: Report) -> list[str]:
    return [h for h, shown in zip(_all_headers(report), _shown(report)) if shown]


def table_rows(report: Report) -> list[list[str]]:
    """The main table: the compared rows (role "row")."""
    rows = []
    for row in report.role("row"):
        m = row.metrics
        delta = [mean_cell(m["delta_m"], ".1f", unit="%")] if report.has_delta_m else []
        rows.append([str(row.rank or "-"), row.label, seeds_cell(row), mean_cell(m["top1"], ".1f", 100, "%"),
                     mean_cell(m["miou"], ".3f"), mean_cell(m["joint"], ".3f"), *delta,
                     vs_best_cell(row, report.primary), verdict_cell(row), time_cell(m["steps_to_target"], ".0f"),
                     time_cell(m["seconds_to_target"], ".1f", " s"), row.convergence,
                     mean_cell(m["seconds_per_step"], ".3f"), mean_cell(m["peak_memory_mb"], ".0f"),
                     *guide_cells(row.group.expected), row.status])
    shown = _shown(report)
    return [[cell for cell, keep in zip(cells, shown) if keep] for cells in rows]


SWEEP_HEADERS = ["row", "w (cls)", "seeds", "top-1", "mIoU", "joint", "on front", "steps to target", "status"]


def sweep_headers(report: Report) -> list[str]:
    """The sweep table's columns: another workload's shows its task weights and each task's primary metric."""
    if report.own is None:
        return SWEEP_HEADERS
    primaries = report.own.primaries(report.own.tasks)
    return ["row", f"weights ({':'.join(report.own.tasks)})", "seeds", *[f"{m.title} {m.arrow}" for m in primaries],
            *(["joint"] if report.has_joint else []), "on front", "steps to target", "status"]


def sweep_rows(report: Report) -> list[list[str]]:
    """The scalarization sweep: its points and the swept optimizers' plain rows (at the comparison's task weights)."""
    rows = []
    primaries = report.own.primaries(report.own.tasks) if report.own is not None else []
    for row in report.rows:
        if row.on_front is None:
            continue
        m, w = row.metrics, row.group.spec.weights_text
        figures = ([mean_cell(m["top1"], ".1f", 100, "%"), mean_cell(m["miou"], ".3f")] if report.own is None else
                   [p.show((m.get("task_metrics") or {}).get(p.name)) for p in primaries])
        joint = [mean_cell(m["joint"], ".3f")] if report.has_joint else []  # NOTE [joint column]
        rows.append([row.label, w or "-", seeds_cell(row), *figures, *joint,
                     "yes" if row.on_front else "no", time_cell(m["steps_to_target"], ".0f"), row.status])
    return rows


BASELINE_HEADERS = ["row", "task", "seeds", "top-1", "mIoU", "used for Δm", "status"]


def baseline_rows(report: Report) -> list[list[str]]:
    used = set(report.baselines.values())
    return [[row.label, ",".join(row.group.spec.tasks), seeds_cell(row),
             mean_cell(row.metrics["top1"], ".1f", 100, "%"), mean_cell(row.metrics["miou"], ".3f"),
             "yes" if row.label in used else "no", row.status]
            for row in report.role("baseline")]


def own_metric_table(report: Report) -> tuple[list[str], list[list[str]]]:
    """Every row's figure of each metric of a workload other than the default one (its summary.json's)."""
    own = report.own
    headers = ["row", "seeds", *[f"{m.title} {m.arrow}" for m in own.metrics]]
    rows = []
    for row in report.rows:
        figures = row.metrics.get("task_metrics") or {}
        rows.append([row.label, seeds_cell(row), *[m.show(figures.get(m.name)) if m.task in row.group.spec.tasks
                                                   else "-" for m in own.metrics]])
    return headers, rows


def _sections(report: Report) -> list[tuple[str, list[str], list[list[str]]]]:
    sections = [("", table_headers(report), table_rows(report))]
    if report.own is not None:
        sections.append((f"Metrics of workload {report.own.workload} (↑ higher is better, ↓ lower)",
                         *own_metric_table(report)))
    if any(r.on_front is not None for r in report.rows):
        sections.append(("Scalarization sweep (the front every multi-task row is held against)",
                         sweep_headers(report), sweep_rows(report)))
    if report.role("baseline"):
        keep = [report.own is None or h not in _DEFAULT_ONLY for h in BASELINE_HEADERS]  # else in own_metric_table
        headers, *rows = ([x for x, k in zip(r, keep) if k] for r in [BASELINE_HEADERS, *baseline_rows(report)])
        sections.append(("Single-task baselines", headers, rows))
    return sections


def notes(report: Report) -> list[str]:
    """The lines under the tables: how every figure is defined and measured."""
    primary = report.metric_name(report.primary)
    lines = [] if report.own is not None else [  # the workload's own metrics: its line among the facts
        "Joint score = mean of top-1 and mIoU (fractions; absolute, so each run's score is its own and rows "
        "pair by seed); a single-task row scores its task's metric.",
    ]
    lines += [
        f"vs best: the difference to the best row on {primary}{_in_points(report.primary)}, paired by seed, with "
        f"its 95 % t interval and the "
        f"p-value Holm-corrected over the compared rows (paired t-test; from {WILCOXON_MIN_PAIRS} pairs on also "
        f"the Wilcoxon signed-rank test, the larger p counts). verdict: tied = corrected p >= {ALPHA:g}; rank 1 "
        f"is shared by the best and every row tied with it. No test under 2 seeds.",
    ]
    ref = report.delta_m_reference
    if report.has_delta_m and report.own is None and ref != SINGLE_TASK:  # taskmetrics' NOTE [reference row]
        lines.append(f"{report.delta_m_name} = mean over the two tasks of 100 x (row - {ref}) / {ref}, per seed "
                     f"against the run of {ref} with the same seed (top-1 and mIoU), then over seeds.")
    elif report.has_delta_m and report.own is None:
        lines.append(f"Δm = mean over the two tasks of 100 x (row - baseline) / baseline, per seed against the "
                     f"single-task baselines of the same seed (top-1 from {report.baselines.get('cls')}, mIoU "
                     f"from {report.baselines.get('seg')}), then over seeds.")
    if any(r.on_front is not None for r in report.rows) and report.own is None:
        lines.append("Scalarization front: the sweep points (the plain row among them, at its task weights) that "
                     "no other sweep point beats on both mean top-1 and mean mIoU; a compared row is dominated when "
                     "one front point is at least as good on both tasks and better on one.")
    elif any(r.on_front is not None for r in report.rows):
        lines.append("Scalarization front: the sweep points (the plain row among them, at its task weights) that "
                     "no other sweep point beats on the mean of every task's primary metric, each in its direction; "
                     "a compared row is dominated when one front point is at least as good on every task and "
                     "better on one.")
    lines.extend(report.facts)
    t = report.target
    if t is None:
        lines.append("Convergence target: none (no row completed with a non-zero "
                     + ("figure of every primary metric)." if report.own is not None else "top-1 or mIoU)."))
    else:
        lines.append(f"Convergence target, {t.describe()}. Steps and time: end of the first epoch whose figures "
                     f"reach it (per-epoch granularity, no interpolation); median over seeds, inf when half "
                     f"or more of the seeds never reach it, (k/n) = k of n seeds reached it.")
    lines.append(f"Convergence label, median steps to target relative to the fastest row: {thresholds_text()}; "
                 f"{NOT_REACHED}: the median is inf; {UNKNOWN}: no completed run of the row has per-epoch figures "
                 f"to read the target on (epochs.csv empty or missing).")
    lines.append("Values: mean±half-width of the 95 % t interval over seeds (the mean alone under 2 seeds; "
                 "seeds = completed/planned when some failed); time = training seconds (validation excluded); "
                 "s/step = median step time; peak MB as the trainer records it.")
    if report.own is None:  # the guide's columns are ImageNet + COCO's alone (_DEFAULT_ONLY)
        lines.append(GUIDE_NOTE + ".")
    return lines


def _in_points(metric: str) -> str:
    return " (in percentage points)" if difference_unit(metric) else ""


def terminal_table(report: Report) -> str:
    parts = [*report.header, "", *report.verdict]
    for title, headers, rows in _sections(report):
        parts += ["", *([title + ":"] if title else []), format_table(headers, rows)]
    return "\n".join([*parts, "", *notes(report)])


def markdown(report: Report) -> str:
    parts = ["# Optimizer comparison", "", " ".join(report.verdict)]
    for title, headers, rows in _sections(report):
        parts += ["", *([f"## {title}", ""] if title else []), format_table(headers, rows, markdown=True)]
    parts += ["", "## Setup", "", *[f"- {line}" for line in report.header],
              "", "## Notes", "", *[f"- {line}" for line in notes(report)]]
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------------
# report.csv and report.json

CSV_FIELDS = ["optimizer", "label", "name", "role", "method", "task_weights", "tasks", "seeds", "completed",
              *[f"{m}_{k}" for m in ("top1", "miou", "joint", "delta_m") for k in ("mean", "std", "ci_low", "ci_high")],
              "steps_to_target_mean", "steps_to_target_std", "steps_to_target_median",
              "seconds_to_target_mean", "seconds_to_target_std", "seconds_to_target_median",
              "seeds_reached", "convergence", "ratio_to_fastest", "rank", "tied_with_best", "vs_best_metric",
              "vs_best_diff", "vs_best_ci_low", "vs_best_ci_high", "p_value", "p_holm", "dominated_by_front",
              "on_front", "seconds_per_step_mean", "seconds_per_step_std", "peak_memory_mb_mean",
              "guide_top1_lo", "guide_top1_hi", "guide_miou_lo", "guide_miou_hi", "guide_convergence",
              "status"]


def csv_text(report: Report) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in report.rows:
        g, exp, spec, vs = row.group, row.group.expected or {}, row.group.spec, row.vs_best or {}
        value = {"optimizer": g.optimizer, "label": g.label, "name": spec.name, "role": spec.role,
                 "method": spec.method, "task_weights": _joined(spec.task_weights), "tasks": ",".join(spec.tasks),
                 "seeds": len(g.runs), "completed": len(g.done), "convergence": row.convergence,
                 "seeds_reached": (row.metrics["steps_to_target"] or {}).get("reached"),
                 "ratio_to_fastest": row.ratio, "rank": row.rank, "tied_with_best": row.tied_with_best,
                 "vs_best_metric": vs.get("metric"), "vs_best_diff": vs.get("diff_mean"),
                 "vs_best_ci_low": vs.get("diff_ci_low"), "vs_best_ci_high": vs.get("diff_ci_high"),
                 "p_value": vs.get("p_value"), "p_holm": vs.get("p_holm"),
                 "dominated_by_front": row.dominated_by_front, "on_front": row.on_front,
                 "guide_convergence": exp.get("convergence"), "status": row.status}
        for name in (*ROW_METRICS, "seconds_to_target", "seconds_per_step", "peak_memory_mb"):
            for key in ("mean", "std", "ci_low", "ci_high", "median"):
                value[f"{name}_{key}"] = (row.metrics.get(name) or {}).get(key)
        for key in ("top1", "miou"):
            lo_hi = exp.get(key) or (None, None)
            value[f"guide_{key}_lo"], value[f"guide_{key}_hi"] = lo_hi
        writer.writerow({k: ("" if value.get(k) is None else value[k]) for k in CSV_FIELDS})
    return out.getvalue()


def _joined(values) -> str | None:
    return ",".join(f"{v:g}" for v in values) if values else None


_SUMMARY_KEYS = ("mean", "std", "n", "ci_low", "ci_high")


def _summary(summary: dict | None, extra: Sequence[str] = ()) -> dict | None:
    return {k: summary[k] for k in (*_SUMMARY_KEYS, *extra)} if summary else None


def strict_json(value):
    """JSON without the non-standard Infinity and NaN: inf (a target never reached) becomes "inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def json_record(report: Report, base: Path | None = None) -> dict:
    """The whole report as JSON: header, verdict, target, notes, one entry per row with its runs."""

    def where(path: Path) -> str:
        try:
            return str(path.resolve().relative_to(base.resolve())) if base else str(path)
        except ValueError:
            return str(path)

    time_keys = ("median", "reached")
    rows = []
    for row in report.rows:
        g, m = row.group, row.metrics
        rows.append({
            "optimizer": g.optimizer, "label": g.label, **g.spec.record(), "seeds": [r.seed for r in g.runs],
            "completed": len(g.done), "status": row.status,
            **{k: _summary(m[k]) for k in ("top1", "miou", "seconds_per_step", "peak_memory_mb")},
            **{k: _summary(m[k], time_keys) for k in ("steps_to_target", "seconds_to_target")},
            "metrics": {k: _summary(m[k], time_keys if k == "steps_to_target" else ()) for k in ROW_METRICS},
            "vs_best": row.vs_best, "tied_with_best": row.tied_with_best, "rank": row.rank,
            "dominated_by_front": row.dominated_by_front, "on_front": row.on_front,
            # against the tuned weighted sum (report.baseline), in a comparison that has one: report.json of one
            # without it is the file it has always been (tests/data/reference_report.json)
            **({} if report.tuned_baseline is None else
               {"vs_tuned": (report.tuned_baseline.get("rows") or {}).get(g.label)}),
            "seeds_reached": (m["steps_to_target"] or {}).get("reached"), "convergence": row.convergence,
            "ratio_to_fastest": row.ratio, "guide_real_data": g.expected,
            "runs": [{"seed": r.seed, "path": where(r.path), "status": r.status,
                      "error": None if r.completed else r.reason,
                      "final_top1": r.told.final_top1, "final_miou": r.told.final_miou,
                      "selected": report.selected[r.path].to_dict() if r.path in report.selected else None,
                      "target_split": "holdout" if r.split == "holdout" else "test",
                      "init_weights_sha256": r.told.init_weights_sha256,
                      "loss_scale": loss_scale(r)} for r in g.runs],
        })
    return strict_json({
        "header": report.header, "verdict": report.verdict, "primary": report.primary,
        "selection": report.selection, "target": report.target.to_dict() if report.target else None,
        "baselines": report.baselines or None,
        **({} if report.delta_m_reference is None else {"delta_m_reference": report.delta_m_reference}),
        **({} if report.tuned_baseline is None else {"tuned_baseline": report.tuned_baseline}),
        "thresholds": {label: limit for label, limit in THRESHOLDS}, "notes": notes(report), "rows": rows,
        **({} if report.own is None else {"task_metrics": _own_record(report)})})


def _own_record(report: Report) -> dict:
    """report.json's ``task_metrics`` for a workload other than the default one: its metrics and each row's."""
    own = report.own
    return {"workload": own.workload,
            "metrics": [{"task": m.task, "name": m.name, "title": m.title, "higher_is_better": m.higher_is_better,
                         "unit": m.unit, "primary": m.primary} for m in own.metrics],
            "rows": {row.label: {name: _summary(summary) for name, summary in
                                 (row.metrics.get("task_metrics") or {}).items()
                                 if any(m.name == name and m.task in row.group.spec.tasks for m in own.metrics)}
                     for row in report.rows}}


def write_tables(report: Report, out: Path) -> list[Path]:
    """report.md, report.csv and report.json in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"report.md": markdown(report), "report.csv": csv_text(report),
             "report.json": json.dumps(json_record(report, out), indent=2) + "\n"}
    for name, text in files.items():
        atomic_write_text(out / name, text)
    return [out / name for name in files]


def write_report(report: Report, out: Path) -> list[Path]:
    """The whole report of one workload in ``out``: the tables, then the figures."""
    from .plots import write_plots  # matplotlib: only where figures are drawn

    return write_tables(report, out) + write_plots(report, out)
