"""Across workloads: the runs split by workload (the data, the model and the budget), and the performance
profiles over the workloads' reports (report.md/.csv/.json in the output folder, each workload's own report
in a folder named after it).

Runs of different workloads cannot be paired by seed, so each workload gets its own report (its verdict,
table and plots) and the rows are compared across workloads by profiles: of their time to target, and of
their score, and by the number of workloads each row is best on.

NOTE [score profile]: the score a row is profiled on is its joint score (the mean over seeds of the mean of
the tasks' primary metrics), and its ratio on a workload is the best row's score over its own (>= 1, 1 for
the best; a score <= 0 never counts), so the time profile's machinery (fronts.performance_profile, AlgoPerf's
area) applies unchanged to 1 / score. Not Δm: it needs single-task baselines on every workload, and a ratio
of Δm's is meaningless where they change sign (a row at +2 % and one at -1 %). A workload whose joint score
is not defined (a lower-is-better primary metric: depth error, normal angle) scores each row by its relative
joint instead, the mean over the primary metrics of value / best (best / value where lower is better, the
best being the best row's mean), as its relative convergence target does; the notes name such workloads.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Sequence

from ..config import ADDED_SETTINGS
from ..rundir import atomic_write_text
from ..text import format_table
from .build import Report
from .comparison import is_comparison_dir
from .convergence import own_target
from .files import strict_json, write_report
from .runs import Run, find_runs, unseen
from .fronts import PROFILE_TAU_MAX, performance_profile, score_profile

__all__ = [
    "PROFILE_TAUS", "WORKLOAD_KEYS", "best_on", "profile_notes", "profile_record", "profile_scores",
    "profile_table", "profile_terminal", "profile_times", "score_profile", "split_workloads", "write_cross_workload",
    "write_profile_tables", "write_profiles",
]

# The profile's fractions as report.json lists them; the figure draws the exact step function.
PROFILE_TAUS = tuple(1 + 0.25 * i for i in range(int((PROFILE_TAU_MAX - 1) / 0.25) + 1))


# What makes a workload: the data, the model and the budget. Rows (optimizer, method, task weights,
# tasks) differ within a workload; these settings may not.
WORKLOAD_KEYS = ("workload", "data", "imagenet", "coco", "image_size", "limit_train", "limit_val", "backbone",
                 "weights", "epochs", "batch_size", "loss_scale", "holdout")


def _workload_key(config: dict) -> str:
    """A run's workload settings; a run recorded before workloads had names is of the default one."""
    return json.dumps({k: config.get(k, ADDED_SETTINGS.get(k)) for k in WORKLOAD_KEYS}, sort_keys=True)


def split_workloads(dirs: Sequence[Path]) -> list[tuple[str, list[Run]]]:
    """The runs under ``dirs`` split by workload, each named after the directories it came from.

    A comparison directory is one workload; a loose run directory joins the workload its settings
    match. One workload makes one comparison table; several make performance profiles, since runs of
    different workloads cannot be paired by seed.
    """
    workloads: dict[str, tuple[list[str], list[Run]]] = {}
    seen: set = set()
    for d in map(Path, dirs):
        runs = unseen(find_runs([d]), seen)
        configs = [r.config for r in runs if r.config]
        fallback = _workload_key(configs[0]) if configs else ""
        for run in runs:
            key = fallback if is_comparison_dir(d) or not run.config else _workload_key(run.config)
            names, members = workloads.setdefault(key, ([], []))
            if d.resolve().name not in names:
                names.append(d.resolve().name)
            members.append(run)
    named: list[tuple[str, list[Run]]] = []
    for names, members in workloads.values():
        name = "+".join(names) or "runs"
        taken = sum(n == name or n.startswith(f"{name}-") for n, _ in named)
        named.append((f"{name}-{taken + 1}" if taken else name, members))
    return named


def profile_times(reports: dict[str, Report]) -> dict[str, dict[str, float | None]]:
    """{row: {workload: median steps to target}} over the compared rows of every workload; a row a
    workload did not run is absent there (the profile counts it as never reaching)."""
    times: dict[str, dict[str, float | None]] = {}
    for workload, report in reports.items():
        for row in report.role("row"):
            times.setdefault(row.label, {})[workload] = (row.metrics["steps_to_target"] or {}).get("median")
    return times


def profile_scores(reports: dict[str, Report]) -> dict[str, dict[str, float | None]]:
    """{row: {workload: its score there}} over the compared rows of every workload: the mean joint score over
    seeds, or where the workload has none the relative joint (NOTE [score profile]); a row a workload did
    not run is absent there."""
    scores: dict[str, dict[str, float | None]] = {}
    for workload, report in reports.items():
        relative = None if report.has_joint else _relative_joint(report)
        for row in report.role("row"):
            scores.setdefault(row.label, {})[workload] = \
                (row.metrics["joint"] or {}).get("mean") if relative is None else relative.get(row.label)
    return scores


def _relative_joint(report: Report) -> dict[str, float | None]:
    """{row: its relative joint score as the relative convergence target defines it (convergence.own_target:
    the mean over the workload's primary metrics of its mean / the best row's mean, the other way round where
    lower is better)}; None for a row with a primary metric missing, not finite or <= 0."""
    rows = report.role("row")
    metrics = [(m.task, m.name, m.higher_is_better) for m in report.own.primaries(report.own.tasks)]
    means = {r.label: tuple(_usable(((r.metrics.get("task_metrics") or {}).get(name) or {}).get("mean"))
                            for _, name, _ in metrics) for r in rows}
    scale = own_target(metrics, list(means.values()))
    return {row: None if scale is None else scale.joint(*values) for row, values in means.items()}


def _usable(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) and value > 0 else None


def best_on(reports: dict[str, Report]) -> dict[str, list[str]]:
    """{row: the workloads where it is rank 1 on the report's primary metric (the best row and every row its
    verdict ties with it)}, every compared row of every workload listed."""
    out: dict[str, list[str]] = {}
    for workload, report in reports.items():
        for row in report.role("row"):
            out.setdefault(row.label, [])
            if row.rank == 1:
                out[row.label].append(workload)
    return out


def _most_often_best(reports: dict[str, Report]) -> str:
    wins = best_on(reports)
    most = max((len(w) for w in wins.values()), default=0)
    if not most:
        return "No row is best on any workload (no compared row has a value of the primary metric)."
    leaders = [row for row, w in wins.items() if len(w) == most]
    return (f"Best on most workloads: {', '.join(leaders)} ({most} of {len(reports)}; best = rank 1 on the "
            f"workload's primary metric, the best row and the rows tied with it).")


def profile_record(reports: dict[str, Report]) -> dict:
    """report.json across workloads: each workload's verdict and where its report is, and the profiles."""
    times, scores = profile_times(reports), profile_scores(reports)
    profile, sprofile = performance_profile(times, PROFILE_TAUS), score_profile(scores, PROFILE_TAUS)
    return strict_json({
        "workloads": [{"name": name, "report": f"{name}/report.json", "primary": r.primary,
                       "target": r.target.to_dict() if r.target else None, "verdict": r.verdict}
                      for name, r in reports.items()],
        "profile": {"time": "steps to target, median over seeds", "taus": list(PROFILE_TAUS),
                    "tau_max": PROFILE_TAU_MAX,
                    "rows": {name: {**profile[name], "times": times[name]} for name in times}},
        "score_profile": {"score": "joint score, mean over seeds (relative joint where a workload has none); "
                                   "ratio = the best row's / the row's",
                          "taus": list(PROFILE_TAUS), "tau_max": PROFILE_TAU_MAX,
                          "relative_joint": [w for w, r in reports.items() if not r.has_joint],
                          "rows": {name: {**sprofile[name], "scores": scores[name]} for name in scores}},
        "best_on": best_on(reports), "best": _most_often_best(reports),
        "notes": profile_notes(reports)})


def profile_notes(reports: dict[str, Report]) -> list[str]:
    return [f"Performance profile (AlgoPerf): for each row, the fraction of the {len(reports)} workloads on "
            f"which its time to target (median steps over seeds) is within tau x the best row's on that "
            f"workload, for tau from 1 to {PROFILE_TAU_MAX:g}; a target not reached, or a workload the row was "
            f"not run on, never counts. Area = the integral of that fraction over tau in [1, "
            f"{PROFILE_TAU_MAX:g}] divided by {PROFILE_TAU_MAX - 1:g}: 1 is fastest everywhere, 0 never within "
            f"{PROFILE_TAU_MAX:g}x of the fastest.",
            f"Score profile: the same over the joint score (the mean of the tasks' primary metrics, mean over "
            f"seeds), a row's ratio on a workload the best row's score over its own; a score <= 0, or a workload "
            f"the row was not run on, never counts."
            + ("" if all(r.has_joint for r in reports.values()) else
               " Scored by the relative joint (no joint score: a primary metric is lower-is-better; the mean over "
               "the primary metrics of the row's mean / the best row's, the other way round where lower is "
               "better): " + ", ".join(w for w, r in reports.items() if not r.has_joint) + "."),
            "Each workload's own report (its verdict, table and plots) is in the folder named after it."]


def profile_table(reports: dict[str, Report]) -> tuple[list[str], list[list[str]]]:
    times, scores = profile_times(reports), profile_scores(reports)
    profile, sprofile = performance_profile(times, PROFILE_TAUS), score_profile(scores, PROFILE_TAUS)
    wins = best_on(reports)
    scored = list(reports)
    headers = ["row", "score area", "time area", "best on",
               *[f"{'joint' if r.has_joint else 'relative joint'}: {w}" for w, r in reports.items()],
               *[f"steps to target: {w}" for w in reports]]
    rows = [[name, f"{sprofile[name]['area']:.3f}", f"{profile[name]['area']:.3f}", str(len(wins.get(name, []))),
             *[_score(scores[name].get(w), w in scores[name]) for w in scored],
             *[_steps(times[name].get(w), w in times[name]) for w in reports]]
            for name in sorted(times, key=lambda n: (-sprofile[n]["area"], -profile[n]["area"]))]
    return headers, rows


def _score(value: float | None, ran: bool) -> str:
    if not ran:
        return "not run"
    return "-" if value is None else f"{value:.3f}"


def _steps(value: float | None, ran: bool) -> str:
    if not ran:
        return "not run"
    if value is None:
        return "-"
    return "inf" if not math.isfinite(value) else f"{value:.0f}"


def write_profile_tables(reports: dict[str, Report], out: Path) -> list[Path]:
    """report.md, report.csv and report.json across workloads in ``out``; each workload's own report is
    in the folder named after it."""
    headers, rows = profile_table(reports)
    md = ["# Performance profiles", "",
          f"{len(reports)} workloads; rows by the area under their score profile, then their time profile "
          "(larger is better).", "", _most_often_best(reports), "",
          format_table(headers, rows, markdown=True), "", "## Verdict per workload", ""]
    for name, report in reports.items():
        md += [f"### {name} ([report]({name}/report.md))", "", " ".join(report.verdict), ""]
    md += ["## Notes", "", *[f"- {line}" for line in profile_notes(reports)]]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerows([headers, *rows])
    files = {"report.md": "\n".join(md) + "\n", "report.csv": text.getvalue(),
             "report.json": json.dumps(profile_record(reports), indent=2) + "\n"}
    out.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        atomic_write_text(out / name, content)
    return [out / name for name in files]


def profile_terminal(reports: dict[str, Report]) -> str:
    headers, rows = profile_table(reports)
    lines = [f"Performance profiles over {len(reports)} workloads:", "", format_table(headers, rows), "",
             _most_often_best(reports), ""]
    for name, report in reports.items():
        lines += [f"{name}: " + " ".join(report.verdict)]
    return "\n".join([*lines, "", *profile_notes(reports)])


def write_cross_workload(reports: dict[str, Report], out: Path) -> list[str]:
    """The profiles' tables (report.md/.csv/.json) and profile.png in ``out``; the files, relative to ``out``."""
    from .plots import plot_profile  # matplotlib: only where figures are drawn

    written = [f.name for f in write_profile_tables(reports, out)]
    written.append(plot_profile(profile_times(reports), out / "profile.png", profile_scores(reports)).name)
    return written


def write_profiles(reports: dict[str, Report], out: Path) -> list[str]:
    """The reports of several workloads: the profiles' tables and profile.png in ``out``, each workload's own
    report in ``out/<name>``; the files written, relative to ``out``."""
    written = write_cross_workload(reports, out)
    for name, report in reports.items():
        written += [f"{name}/{f.name}" for f in write_report(report, out / name)]
    return written
