"""The tune report, read from the studies and the final runs alone: per optimizer the best setting the
holdout split chose, the guide's preset beside it, and (after ``--final-seeds``) both on the test split
over seeds with the preset's gap to the tuned setting; tune.md/.csv/.json and lr_sensitivity.png.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..report.comparison import default_directory
from ..report.stats import compare_to_best, summarize
from ..rundir import CONFIG_FILE, SUMMARY_FILE, RunFileError, atomic_write_text, read_json, read_summary
from ..text import format_settings, format_table
from .simplex import is_simplex_key
from .space import Space, space_record, space_text
from .study import PRESET, ROLE, SEARCH, SLOT, WORKER, TuneStudy, Worker, attempt, owners, result, run_name
from .worker import score

__all__ = [
    "CSV_FIELDS", "FINAL_DIR", "GUIDE", "HEADERS", "SENSITIVITY_PLOT", "TUNED", "Result", "TrialRow",
    "add_finals", "collect", "csv_text", "final_dir", "final_scores", "json_record", "markdown",
    "measure_overhead", "notes", "plot_lr_sensitivity", "table_rows", "terminal", "write_report",
]

FINAL_DIR = "final"
TUNED, GUIDE = "tuned", "preset"  # the two comparisons under final/: the best settings, the guide's presets
SENSITIVITY_PLOT = "lr_sensitivity.png"


@dataclass
class TrialRow:
    """One trial of a study as the report shows it (a slot's latest attempt, or an earlier one killed)."""

    number: int
    name: str  # its run directory's name, which it goes by in the messages
    role: str
    slot: int | None
    state: str
    value: float | None
    settings: dict
    steps: int | None
    seconds: float | None
    outcome: str | None
    error: str | None  # why it failed on its own account (it used its slot)
    attempt: int

    def to_dict(self) -> dict:
        return dict(vars(self))


@dataclass
class Result:
    """One optimizer's tuning: its trials, the best, the preset, and the final runs' test figures."""

    optimizer: str
    title: str
    space: Space
    budget: int
    trials: list[TrialRow]
    test: dict = field(default_factory=dict)  # after the final runs: tuned, preset, gap

    def _latest(self, role: str) -> list[TrialRow]:
        rows: dict[tuple, TrialRow] = {}
        for row in sorted(self.trials, key=lambda r: r.attempt):
            if row.role == role:
                rows[(row.role, row.slot)] = row
        return list(rows.values())

    @property
    def search(self) -> list[TrialRow]:
        """The search slots' latest attempts."""
        return self._latest(SEARCH)

    @property
    def done(self) -> int:
        return sum(r.state in ("COMPLETE", "PRUNED") or (r.state == "FAIL" and r.error is not None)
                   for r in self.search)

    @property
    def best(self) -> TrialRow | None:
        complete = [r for r in self.search if r.state == "COMPLETE" and r.value is not None]
        return max(complete, key=lambda r: (r.value, -r.number), default=None)

    @property
    def preset(self) -> TrialRow | None:
        rows = self._latest(PRESET)
        return rows[0] if rows and rows[0].state == "COMPLETE" else None

    def best_settings(self) -> dict:
        """The searched settings of the best trial (the others are the preset's or --set's)."""
        best = self.best
        if best is not None and any(is_simplex_key(k) for k in self.space):  # --search-task-weights
            return {"task_weights": best.settings.get("task_weights")}
        return {} if best is None else {k: best.settings[k] for k in self.space if k in best.settings}

    def failed(self) -> list[TrialRow]:
        """The slots whose latest attempt failed on its own account (its error says why), in slot order."""
        return sorted((r for r in self._latest(PRESET) + self.search if r.state == "FAIL" and r.error is not None),
                      key=lambda r: (r.role != PRESET, r.slot or 0))

    def count(self, state: str) -> int:
        """Search slots whose latest attempt ended in ``state`` (a FAIL counts when it was the setting's own)."""
        return sum(r.state == state and (state != "FAIL" or r.error is not None) for r in self.search)

    @property
    def retried(self) -> int:
        return sum(r.attempt > 0 for r in self.trials)

    @property
    def steps(self) -> int:
        """Steps the search trials trained (pruned ones stop early)."""
        return sum(r.steps or 0 for r in self.search)

    @property
    def full_steps(self) -> int | None:
        """Steps the search would have trained without pruning: the budget times a full trial's steps."""
        full = max((r.steps or 0 for r in self.search if r.state == "COMPLETE"), default=0)
        return full * self.budget if full else None


def collect(studies: Mapping[str, TuneStudy], titles: Mapping[str, str], spaces: Mapping[str, Space]) -> list[Result]:
    """Each optimizer's result, from its study alone."""
    results = []
    for name, ts in studies.items():
        trials = ts.all_trials()
        owned = set(owners(trials).values())
        rows = []
        for t in trials:
            if t.number not in owned:
                continue  # a copy dropped unrun
            facts = result(t)
            rows.append(TrialRow(
                number=t.number, name=run_name(t, name), role=t.user_attrs[ROLE], slot=t.user_attrs.get(SLOT),
                state=t.state.name, value=t.value, settings=dict(facts.get("settings") or {}), steps=facts.get("steps"),
                seconds=facts.get("seconds"), outcome=facts.get("outcome"), error=facts.get("error"),
                attempt=attempt(t)))
        results.append(Result(name, titles.get(name, name), spaces[name], ts.trials, rows))
    return results


def final_dir(out: Path, role: str, optimizer: str, settings: Mapping[str, Any], seeds: Sequence[int]) -> Path:
    """``final/<tuned|preset>/<optimizer>/<hash>``: the comparison of one optimizer's final runs at ``settings``
    over ``seeds``; a new best setting, or other seeds, make another one beside it."""
    record = {"settings": json.loads(json.dumps(dict(settings))), "seeds": list(seeds)}
    return default_directory(record, out / FINAL_DIR / role / optimizer)


def final_scores(folder: Path, objective: str, settings: Mapping[str, Any]) -> dict[int, float | None]:
    """{seed: the objective on the test split} of the completed final runs at ``settings`` among the
    comparisons in ``folder`` (one optimizer's, each over its seeds); runs at other settings are not these."""
    wanted = json.loads(json.dumps(dict(settings)))
    scores: dict[int, float | None] = {}
    for path in sorted(folder.glob(f"*/runs/*/{SUMMARY_FILE}")):
        try:
            summary, config = read_summary(path.parent), read_json(path.with_name(CONFIG_FILE))
        except RunFileError:
            continue
        if summary.completed and config.get("hyperparams") == wanted:
            scores[summary.seed] = score(summary, objective, "final")
    return scores


def add_finals(results: Sequence[Result], out: Path, objective: str, presets: Mapping[str, Mapping[str, Any]]) -> None:
    """The test split's figures of the final runs (whichever invocation ran them): the best setting and the
    preset (``presets``: each optimizer's resolved preset settings) over seeds, and the preset's paired gap to
    the best (preset - tuned, over the seeds both completed)."""
    for result in results:
        best = result.best
        t = final_scores(out / FINAL_DIR / TUNED / result.optimizer, objective, best.settings) if best else {}
        p = final_scores(out / FINAL_DIR / GUIDE / result.optimizer, objective, presets[result.optimizer])
        if not t and not p:
            continue
        result.test = {"tuned": summarize(t.values()), "preset": summarize(p.values())}
        if t and p:
            verdict = compare_to_best({TUNED: t, GUIDE: p})
            row = verdict[GUIDE] if verdict[TUNED]["is_best"] else verdict[TUNED]
            sign = 1.0 if verdict[TUNED]["is_best"] else -1.0  # the other row's difference, turned to preset - tuned
            ends = sorted(sign * x for x in (row["diff_ci_low"], row["diff_ci_high"]) if x is not None)
            result.test["gap"] = {
                "mean": None if row["diff_mean"] is None else sign * row["diff_mean"],
                "ci_low": ends[0] if len(ends) == 2 else None, "ci_high": ends[1] if len(ends) == 2 else None,
                "p_value": row["p_value"], "pairs": row["n_pairs"]}


# ---------------------------------------------------------------------------------------------
# Tables


HEADERS = ["optimizer", "trials", "best setting", "holdout best", "holdout preset", "test tuned",
           "test preset", "preset - tuned (test)", "steps trained"]


def _num(x: float | None, digits: int = 4) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _interval(stat: Mapping[str, Any] | None) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    if stat.get("ci_low") is None:
        return f"{_num(stat['mean'])} (n={stat.get('n', 1)})"
    return f"{_num(stat['mean'])} [{_num(stat['ci_low'])}, {_num(stat['ci_high'])}]"


def table_rows(results: Sequence[Result]) -> list[list[str]]:
    rows = []
    for r in results:
        best, preset = r.best, r.preset
        extra = ", ".join(f"{n} {s}" for n, s in ((r.count("PRUNED"), "pruned"), (r.count("FAIL"), "failed"),
                                                   (r.retried, "rerun after a kill")) if n)
        steps = f"{r.steps}" + (f" of {r.full_steps}" if r.full_steps and r.count("PRUNED") else "")
        rows.append([
            r.optimizer, f"{r.done}/{r.budget}" + (f" ({extra})" if extra else ""),
            format_settings(r.best_settings()) or "-",
            _num(best.value if best else None) + (f" ({best.name})" if best else ""),
            _num(preset.value if preset else None),
            _interval(r.test.get("tuned")), _interval(r.test.get("preset")),
            _interval(r.test.get("gap") and {**r.test["gap"], "n": r.test["gap"]["pairs"]}), steps,
        ])
    return rows


def notes(results: Sequence[Result], meta: Mapping[str, Any]) -> list[str]:
    objective = meta["objective"]
    lines = [
        f"Objective: holdout {objective} (the holdout split, {meta.get('holdout')} of each task's training images; "
        f"{meta.get('joint') or 'joint = mean of top-1 and mIoU'}). The test split chose nothing; it is read only "
        "by the final runs.",
        f"Budget: {meta['trials']} trials per optimizer from the {meta['sampler']} sampler, plus one trial at the "
        "guide's preset. best = the best completed search trial on the holdout split.",
    ]
    if any(r.test for r in results):
        lines.append(f"test = the objective on the test split over the final runs' seeds (mean [95 % t interval]); "
                     "preset - tuned is paired by seed (same initial weights and data order).")
    if meta.get("prune"):
        lines.append("Pruning: Optuna's median rule on each epoch's holdout score; 'steps trained' counts the "
                     "steps the search trials actually trained, 'of N' the steps without pruning.")
    for r in results:
        lines.append(f"{r.optimizer} searched: {space_text(r.space)}")
    for r in results:
        for row in r.failed():
            shown = format_settings({k: row.settings[k] for k in r.space if k in row.settings})
            lines.append(f"{row.name} ({shown or row.role}) failed: {(row.error.strip().splitlines() or ['?'])[0]}")
    overhead = meta.get("overhead")
    if overhead:
        lines.append(f"Tuning overhead of the last invocation: {overhead['seconds']:.1f} s of "
                     f"{overhead['wall_seconds']:.1f} s x {overhead['workers']} worker(s) outside the trials' "
                     f"training ({overhead['fraction']:.1%}): {overhead['setup_seconds']:.1f} s of setup (imports, "
                     f"planning), then {overhead['per_trial_seconds'] * 1000:.0f} ms per trial (the studies' "
                     "bookkeeping).")
    return lines


def markdown(results: Sequence[Result], meta: Mapping[str, Any]) -> str:
    body = format_table(HEADERS, table_rows(results), markdown=True)
    return "# Tuning\n\n" + body + "\n\n" + "\n".join(f"- {line}" for line in notes(results, meta)) + "\n"


def terminal(results: Sequence[Result], meta: Mapping[str, Any]) -> str:
    return format_table(HEADERS, table_rows(results)) + "\n\n" + "\n".join(notes(results, meta))


CSV_FIELDS = ["optimizer", "budget", "trials_done", "pruned", "failed", "rerun", "best_trial", "best_settings",
              "holdout_best", "holdout_preset", "test_tuned_mean", "test_tuned_ci_low", "test_tuned_ci_high",
              "test_preset_mean", "gap_mean", "gap_ci_low", "gap_ci_high", "gap_p", "steps_trained"]


def csv_text(results: Sequence[Result]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in results:
        best, preset = r.best, r.preset
        tuned, guide, gap = r.test.get("tuned") or {}, r.test.get("preset") or {}, r.test.get("gap") or {}
        writer.writerow({
            "optimizer": r.optimizer, "budget": r.budget, "trials_done": r.done, "pruned": r.count("PRUNED"),
            "failed": r.count("FAIL"), "rerun": r.retried, "best_trial": best.name if best else None,
            "best_settings": format_settings(r.best_settings()), "holdout_best": best.value if best else None,
            "holdout_preset": preset.value if preset else None, "test_tuned_mean": tuned.get("mean"),
            "test_tuned_ci_low": tuned.get("ci_low"), "test_tuned_ci_high": tuned.get("ci_high"),
            "test_preset_mean": guide.get("mean"), "gap_mean": gap.get("mean"), "gap_ci_low": gap.get("ci_low"),
            "gap_ci_high": gap.get("ci_high"), "gap_p": gap.get("p_value"), "steps_trained": r.steps})
    return buffer.getvalue()


def json_record(results: Sequence[Result], meta: Mapping[str, Any]) -> dict:
    return {**meta, "optimizers": [{
        "optimizer": r.optimizer, "title": r.title, "space": space_record(r.space), "budget": r.budget,
        "trials_done": r.done, "pruned": r.count("PRUNED"), "failed": r.count("FAIL"), "rerun": r.retried,
        "steps_trained": r.steps, "steps_without_pruning": r.full_steps,
        "best": r.best.to_dict() if r.best else None, "best_settings": r.best_settings(),
        "preset": r.preset.to_dict() if r.preset else None,
        "holdout_gap": (r.preset.value - r.best.value) if r.best and r.preset else None,
        "test": r.test, "trials": [row.to_dict() for row in sorted(r.trials, key=lambda row: row.number)],
    } for r in results]}


def write_report(results: Sequence[Result], out: Path, meta: Mapping[str, Any]) -> list[Path]:
    """tune.md, tune.csv, tune.json and lr_sensitivity.png in ``out``."""
    files = []
    for name, text in (("tune.md", markdown(results, meta)), ("tune.csv", csv_text(results)),
                       ("tune.json", json.dumps(json_record(results, meta), indent=2, default=str) + "\n")):
        atomic_write_text(out / name, text)
        files.append(out / name)
    files.append(plot_lr_sensitivity(results, out / SENSITIVITY_PLOT, meta["objective"]))
    return files


def plot_lr_sensitivity(results: Sequence[Result], path: Path, objective: str) -> Path:
    """Holdout score against lr on a log axis, one line per optimizer through its search trials in
    order of lr, the guide's preset marked with a star (DeepOBS's LR sensitivity plot)."""
    from matplotlib.figure import Figure

    from ..report.plotstyle import palette, save

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    for r, color in zip(results, palette(len(results))):
        points = sorted((row.settings["lr"], row.value) for row in r.search
                        if row.state == "COMPLETE" and row.value is not None and "lr" in row.settings)
        if points:
            ax.plot(*zip(*points), marker="o", markersize=4, linewidth=1.2, color=color, label=r.optimizer)
        preset = r.preset
        if preset is not None and "lr" in preset.settings:
            ax.plot([preset.settings["lr"]], [preset.value], marker="*", markersize=13, linestyle="none",
                    color=color, markeredgecolor="black", label=f"{r.optimizer} preset")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(f"holdout {objective}")
    ax.set_title("LR sensitivity (stars: the guide's presets)")
    ax.grid(True, which="both", alpha=0.3)
    if ax.lines:
        ax.legend(fontsize="small")
    return save(fig, path)


def measure_overhead(studies, since: datetime, wall: float, setup: float, pids: list[int]) -> dict | None:
    """What the invocation spent outside its trials' training: its wall time (x its workers, ``pids``) less the
    training time of the trials they finished (not those of other tunes sharing the studies), absolute and as
    a fraction, split into the setup before the first trial (imports, planning) and the rest per trial; None
    when it finished no trial."""
    host, ours = Worker().host, set(pids)
    trained = [result(t)["seconds"] for ts in studies.values() for t in ts.all_trials()
               if "seconds" in result(t) and t.datetime_complete is not None and t.datetime_complete >= since
               and (t.user_attrs.get(WORKER) or {}).get("host") == host
               and (t.user_attrs.get(WORKER) or {}).get("pid") in ours]
    if not trained:
        return None
    workers = len(pids)
    total = wall * workers
    outside = total - sum(trained)
    return {"wall_seconds": wall, "workers": workers, "trial_seconds": sum(trained), "trials": len(trained),
            "seconds": outside, "fraction": outside / total, "setup_seconds": setup,
            "per_trial_seconds": max(0.0, outside - setup * workers) / len(trained)}
