"""Comparison reports from run directories: loading, aggregation over seeds, convergence, tables.

Everything here reads run directories (through mtbench.rundir) and nothing else, so a report can be
rebuilt long after the runs, from comparison directories or single runs alike.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from .convergence import (
    NOT_REACHED, TARGET_FRACTION, THRESHOLDS, Target, convergence_label, convergence_target, first_reach,
    thresholds_text,
)
from .errors import MTBenchError
from .presets import format_value
from .rundir import (
    CONFIG_FILE, ENV_FILE, EPOCHS_FILE, SUMMARY_FILE, EpochRow, RunFileError, atomic_write_text, finite_number,
    read_epochs, read_json,
)
from .table import format_table

COMPARISON_FILE = "comparison.json"
RUNS_DIR = "runs"
# Settings that do not make two runs different experiments when grouping runs by optimizer.
_PER_RUN_KEYS = ("run_dir", "seed", "preset")


def run_name(optimizer: str, seed: int) -> str:
    """The folder of one run inside a comparison's ``runs/`` folder."""
    return f"{optimizer}-seed{seed}"


# ---------------------------------------------------------------------------------------------
# Loading


@dataclass
class Run:
    """One run directory as written by the trainer (or a planned run that never started)."""

    path: Path
    optimizer: str
    seed: int | None
    config: dict = field(default_factory=dict)
    summary: dict | None = None
    epochs: list[EpochRow] = field(default_factory=list)
    env: dict = field(default_factory=dict)
    failure: str | None = None  # why a run that left no summary.json failed, when the caller knows
    problems: dict[str, str] = field(default_factory=dict)  # file name -> "is missing", "is not valid JSON"...

    @property
    def status(self) -> str:
        if self.summary is None:
            if not self.path.exists():
                return "not run"
            return "no summary" if self.problems.get(SUMMARY_FILE, "is missing") == "is missing" else "bad summary"
        return str(self.summary.get("status") or "unknown")

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def reason(self) -> str:
        """Why the run did not complete, in one line: 'failed: <error>', 'interrupted ...', 'not run', or
        what is wrong with summary.json and what epochs.csv shows was done."""
        if self.summary is None:
            if self.failure:
                return f"failed: {self.failure}"
            if not self.path.exists():
                return "not run"
            return f"{SUMMARY_FILE} {self.problems.get(SUMMARY_FILE, 'is missing')}; {self.progress}"
        if self.status in ("running", "interrupted"):  # "running" left behind: the process was killed
            done = self.summary.get("epochs")
            return f"interrupted after epoch {done}" if done else "interrupted before the first epoch ended"
        error = self.summary.get("error")
        return "failed: " + (str(error).splitlines()[0] if error else f"status {self.status}")

    @property
    def progress(self) -> str:
        """What epochs.csv shows was done, for a run whose summary does not say."""
        if not self.epochs:
            return f"{EPOCHS_FILE} shows no finished epoch"
        last, n, planned = self.epochs[-1], len(self.epochs), self.config.get("epochs")
        done = f"{n} of {planned} epochs" if planned else f"{n} epoch{'s' * (n != 1)}"
        step = f", step {last.step}" if last.step is not None else ""
        return f"{EPOCHS_FILE} shows {done} done (last: epoch {last.epoch}{step})"

    def final(self, key: str) -> float | None:
        return finite_number((self.summary or {}).get(key))


def is_run_dir(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file() or (path / SUMMARY_FILE).is_file()


def is_comparison_dir(path: Path) -> bool:
    return (path / COMPARISON_FILE).is_file()


def load_run(path: Path, optimizer: str | None = None, seed: int | None = None) -> Run:
    """Read a run directory; a missing or unreadable file leaves its part empty and says why in ``problems``.

    ``optimizer`` and ``seed`` stand in when neither config.json nor summary.json names them.
    """
    path = Path(path)
    problems: dict[str, str] = {}

    def read(name: str) -> dict | None:
        try:
            return read_json(path / name)
        except RunFileError as exc:
            problems[name] = exc.problem
            return None

    config = read(CONFIG_FILE) or {}
    summary = read(SUMMARY_FILE)
    env = read(ENV_FILE) or {}
    try:
        epochs = read_epochs(path)
    except RunFileError as exc:
        problems[EPOCHS_FILE], epochs = exc.problem, []
    optimizer = config.get("optimizer") or (summary or {}).get("optimizer") or optimizer or path.name
    seed = config.get("seed", (summary or {}).get("seed", seed))
    return Run(path, optimizer, seed, config, summary, epochs, env, problems=problems)


def find_runs(paths: Iterable[Path]) -> list[Run]:
    """The runs under ``paths``: comparison directories, run directories, or folders of run directories.

    A comparison's planned runs that have no directory yet are included with status "not run".
    """
    runs: list[Run] = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise MTBenchError(f"{path} is not a directory")
        if is_comparison_dir(path):
            runs.extend(_comparison_runs(path))
        elif is_run_dir(path):
            runs.append(load_run(path))
        else:
            found = sorted(p for p in path.iterdir() if p.is_dir() and is_run_dir(p))
            if not found:
                raise MTBenchError(
                    f"{path} is neither a run directory (no config.json) nor a comparison "
                    f"directory (no {COMPARISON_FILE}), and holds no run directories"
                )
            runs.extend(load_run(p) for p in found)
    return runs


def _comparison_runs(path: Path) -> list[Run]:
    try:
        record = read_json(path / COMPARISON_FILE)
    except RunFileError:
        record = {}  # the plan is unreadable: report the run directories that are there
    planned = [(o, s) for s in record.get("seeds", []) for o in record.get("optimizers", [])]
    runs = [load_run(path / RUNS_DIR / run_name(o, s), o, s) for o, s in planned]
    known = {r.path.name for r in runs}
    extra = sorted(p for p in (path / RUNS_DIR).glob("*") if p.name not in known and is_run_dir(p))
    return runs + [load_run(p) for p in extra]


# ---------------------------------------------------------------------------------------------
# Aggregation over seeds


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (None for one value) over seeds."""

    mean: float
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Stat | None:
        xs = [x for x in values if x is not None]
        if not xs:
            return None
        mean = sum(xs) / len(xs)
        std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else None
        return cls(mean, std, len(xs))

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "n": self.n}


@dataclass
class Group:
    """The runs of one optimizer with one set of settings, over seeds."""

    label: str
    optimizer: str
    runs: list[Run]
    expected: dict | None = None  # the guide's ranges for real data, from config.json["preset"]

    @property
    def done(self) -> list[Run]:
        return [r for r in self.runs if r.completed]

    def stat(self, key: str) -> Stat | None:
        return Stat.of(r.final(key) for r in self.done)


def group_runs(runs: Sequence[Run]) -> list[Group]:
    """Runs grouped by optimizer and settings, in order of first appearance.

    Two runs of one optimizer whose settings differ (other than seed and folder) form two groups,
    labelled with the settings that tell them apart.
    """
    groups: dict[tuple[str, str], Group] = {}
    for run in runs:
        key = (run.optimizer, _signature(run.config) if run.config else "")
        if not run.config:
            key = next((k for k in groups if k[0] == run.optimizer), key)
        group = groups.setdefault(key, Group(run.optimizer, run.optimizer, []))
        group.runs.append(run)
        group.expected = group.expected or (run.config.get("preset") or {}).get("expected")
    by_name: dict[str, list[Group]] = {}
    for group in groups.values():
        by_name.setdefault(group.optimizer, []).append(group)
    for same in by_name.values():
        if len(same) > 1:
            flats = [flatten(g.runs[0].config) for g in same]
            differ = [k for k in flats[0].keys() | set().union(*flats)
                      if k.split(".")[0] not in _PER_RUN_KEYS and len({repr(f.get(k)) for f in flats}) > 1]
            for group, flat in zip(same, flats):
                group.label = group.optimizer + " (" + ", ".join(
                    f"{k.split('.')[-1]}={format_value(flat.get(k))}" for k in sorted(differ)) + ")"
    return list(groups.values())


def _signature(config: dict) -> str:
    return json.dumps({k: v for k, v in config.items() if k not in _PER_RUN_KEYS}, sort_keys=True)


def flatten(settings: dict, prefix: str = "") -> dict:
    """Nested settings as one level, keyed by dotted paths (``hyperparams.lr``); an empty dict is a value."""
    out = {}
    for k, v in settings.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# ---------------------------------------------------------------------------------------------
# The report


@dataclass
class Row:
    """One line of the comparison table."""

    group: Group
    top1: Stat | None
    miou: Stat | None
    steps: Stat | None
    seconds: Stat | None
    sec_per_step: Stat | None
    peak_mb: Stat | None
    reached: int
    convergence: str
    ratio: float | None

    @property
    def failures(self) -> list[Run]:
        return [r for r in self.group.runs if not r.completed]

    @property
    def status(self) -> str:
        failed = self.failures
        if not failed:
            return "ok"
        if len(self.group.runs) == 1:
            return failed[0].reason
        reasons = "; ".join(f"seed {r.seed}: {r.reason}" for r in failed)
        if len(failed) == len(self.group.runs):
            return reasons
        return f"{len(self.group.done)}/{len(self.group.runs)} ok; {reasons}"


@dataclass
class Report:
    rows: list[Row]
    target: Target | None
    header: list[str]
    runs: list[Run]

    @property
    def failed_runs(self) -> list[Run]:
        return [r for r in self.runs if not r.completed]


def build_report(runs: Sequence[Run], fraction: float = TARGET_FRACTION,
                 expected: dict[str, dict] | None = None) -> Report:
    """Aggregate runs over seeds and measure convergence against the comparison's common target.

    ``expected`` (optimizer -> {"top1", "miou", "convergence"}) fills in the guide's ranges for runs
    whose config.json does not carry them.
    """
    if not runs:
        raise MTBenchError("no runs to report")
    groups = group_runs(runs)
    for g in groups:
        g.expected = g.expected or (expected or {}).get(g.optimizer)
    finals = [(_mean(g.stat("final_top1")), _mean(g.stat("final_miou"))) for g in groups]
    target = convergence_target(finals, fraction)
    reach = [[h for h in (first_reach(r.epochs, target) for r in g.done) if h] if target else []
             for g in groups]
    fastest = min((Stat.of(h[0] for h in hits).mean for hits in reach if hits), default=None)
    rows = []
    for g, hits in zip(groups, reach):
        steps = Stat.of(h[0] for h in hits)
        ratio = steps.mean / fastest if steps and fastest else None
        label = convergence_label(ratio) if g.done and target else "n/a"
        if hits and len(hits) < len(g.done):
            label += f" ({len(hits)}/{len(g.done)} seeds)"
        rows.append(Row(g, g.stat("final_top1"), g.stat("final_miou"), steps,
                        Stat.of(h[1] for h in hits), g.stat("seconds_per_step"),
                        g.stat("peak_memory_mb"), len(hits), label, ratio))
    return Report(rows, target, _header(runs, groups), list(runs))


def _mean(stat: Stat | None) -> float | None:
    return stat.mean if stat else None


def _header(runs: Sequence[Run], groups: Sequence[Group]) -> list[str]:
    """The settings every run shares (or 'varies'), the loss scale and the initial-weights check."""
    configs = [r.config for r in runs if r.config]

    def common(key):
        values = {json.dumps(c.get(key)) for c in configs}
        if not values:
            return None
        return json.loads(values.pop()) if len(values) == 1 else "varies"

    seeds = sorted({r.seed for r in runs if r.seed is not None})
    lines = []
    imagenet, coco = common("imagenet"), common("coco")
    if not configs:
        lines.append("Data: unknown (no run wrote its config.json)")
    elif imagenet is None and coco is None:
        lines.append("Data: the embedded synthetic data set (not real ImageNet + COCO)")
    else:
        embedded = "embedded synthetic"
        lines.append(f"Data: ImageNet {imagenet or embedded}, COCO {coco or embedded}")
    devices = {r.env.get("device") for r in runs if r.env.get("device")}
    settings = [("epochs", common("epochs")), ("batch size", common("batch_size")),
                ("image size", common("image_size")), ("train limit", common("limit_train")),
                ("val limit", common("limit_val")), ("backbone", common("backbone")),
                ("amp", common("amp")), ("device", ", ".join(sorted(devices)) or None)]
    optimizers = len({g.optimizer for g in groups})
    lines.append(f"Runs: {len(runs)} ({optimizers} optimizers x {len(seeds)} seed{'s' * (len(seeds) != 1)}: "
                 f"{', '.join(map(str, seeds)) or '-'}); "
                 + ", ".join(f"{k} {format_value(v)}" for k, v in settings if v is not None))
    scales = {tuple(_loss_scale(r)) for r in runs if _loss_scale(r) is not None}
    if scales and scales != {(1.0, 1.0)}:
        shown = "; ".join(f"cls x{s[0]:g}, seg x{s[1]:g}" for s in sorted(scales))
        lines.append(f"Loss scale: {shown} (stress test: that task's loss is multiplied before the update)")
    else:
        lines.append("Loss scale: none (cls x1, seg x1)")
    weights = common("task_weights")
    if weights not in (None, "varies"):
        lines.append(f"Task weights: cls {weights[0]:g}, seg {weights[1]:g}")
    lines.append(_init_check(runs))
    return lines


def _loss_scale(run: Run) -> list[float] | None:
    scale = (run.summary or {}).get("loss_scale") or run.config.get("loss_scale")
    return [float(s) for s in scale] if scale else None


def _init_check(runs: Sequence[Run]) -> str:
    by_seed: dict[int, set] = {}
    for r in runs:
        sha = (r.summary or {}).get("init_weights_sha256")
        if sha and r.seed is not None:
            by_seed.setdefault(r.seed, set()).add(sha)
    differ = [s for s, shas in sorted(by_seed.items()) if len(shas) > 1]
    if differ:
        return ("Initial weights: DIFFER between optimizers for seed " + ", ".join(map(str, differ))
                + " (settings such as backbone or weights differ)")
    if not by_seed:
        return "Initial weights: not recorded"
    return "Initial weights: identical for every optimizer within each seed (init_weights_sha256)"


# ---------------------------------------------------------------------------------------------
# Tables

GUIDE_NOTE = ("guide = the optimizer guide's expected results for real ImageNet + COCO, 5 epochs, "
              "batch size 8 (not measured here)")


def _pm(stat: Stat | None, fmt: str, scale: float = 1.0, unit: str = "") -> str:
    if stat is None:
        return "-"
    text = format(stat.mean * scale, fmt)
    if stat.std is not None:
        text += "±" + format(stat.std * scale, fmt)
    return text + unit


def _guide(expected: dict | None) -> list[str]:
    if not expected:
        return ["-", "-", "-"]
    t, m = expected.get("top1"), expected.get("miou")
    return [f"{t[0] * 100:.0f}-{t[1] * 100:.0f}%" if t else "-",
            f"{m[0]:.2f}-{m[1]:.2f}" if m else "-", expected.get("convergence") or "-"]


TABLE_HEADERS = ["optimizer", "seeds", "top-1", "mIoU", "steps to target", "time to target",
                 "convergence", "s/step", "peak MB", "guide top-1", "guide mIoU", "guide conv.", "status"]


def table_rows(report: Report) -> list[list[str]]:
    rows = []
    for row in report.rows:
        g = row.group
        seeds = f"{len(g.done)}/{len(g.runs)}" if len(g.done) != len(g.runs) else str(len(g.runs))
        rows.append([g.label, seeds, _pm(row.top1, ".1f", 100, "%"), _pm(row.miou, ".3f"),
                     _pm(row.steps, ".0f"), _pm(row.seconds, ".1f", unit=" s"), row.convergence,
                     _pm(row.sec_per_step, ".3f"), _pm(row.peak_mb, ".0f"), *_guide(g.expected),
                     row.status])
    return rows


def notes(report: Report) -> list[str]:
    """The lines under the table: how the target and the labels are defined."""
    lines = []
    t = report.target
    if t is None:
        lines.append("Convergence target: none (no optimizer completed with a non-zero top-1 or mIoU).")
    else:
        refs = [f"{name}/{ref:.3f}" for name, ref in (("top-1", t.top1_ref), ("mIoU", t.miou_ref)) if ref]
        lines.append(
            f"Convergence target: joint score >= {t.score:.3f} = {t.fraction:g} x the best final joint "
            f"score, joint = mean of {' and '.join(refs)} (each task relative to the best final mean "
            f"in this comparison). Steps and time: end of the first epoch whose validation reaches it "
            f"(per-epoch granularity, no interpolation), mean over the seeds that reach it.")
    lines.append(f"Convergence label, steps to target relative to the fastest: {thresholds_text()}; "
                 f"{NOT_REACHED}: no seed reached the target.")
    lines.append("Values: mean±std over seeds (sample std; seeds = completed/planned when some failed); "
                 "top-1 and mIoU after the last epoch; time = training seconds (validation excluded); "
                 "s/step = median step time; peak MB as the trainer records it.")
    lines.append(GUIDE_NOTE + ".")
    return lines


def terminal_table(report: Report) -> str:
    return "\n".join([*report.header, "", format_table(TABLE_HEADERS, table_rows(report)), "",
                      *notes(report)])


def markdown(report: Report) -> str:
    parts = ["# Optimizer comparison", "", *[f"- {line}" for line in report.header], "",
             format_table(TABLE_HEADERS, table_rows(report), markdown=True), "",
             *[f"- {line}" for line in notes(report)]]
    return "\n".join(parts) + "\n"


CSV_FIELDS = ["optimizer", "label", "seeds", "completed", "top1_mean", "top1_std", "miou_mean", "miou_std",
              "steps_to_target_mean", "steps_to_target_std", "seconds_to_target_mean",
              "seconds_to_target_std", "seeds_reached", "convergence", "ratio_to_fastest",
              "seconds_per_step_mean", "seconds_per_step_std", "peak_memory_mb_mean",
              "guide_top1_lo", "guide_top1_hi", "guide_miou_lo", "guide_miou_hi", "guide_convergence",
              "status"]


def csv_text(report: Report) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in report.rows:
        g, exp = row.group, row.group.expected or {}
        value = {"optimizer": g.optimizer, "label": g.label, "seeds": len(g.runs),
                 "completed": len(g.done), "seeds_reached": row.reached, "convergence": row.convergence,
                 "ratio_to_fastest": row.ratio, "guide_convergence": exp.get("convergence"),
                 "status": row.status}
        for name, stat in (("top1", row.top1), ("miou", row.miou), ("steps_to_target", row.steps),
                           ("seconds_to_target", row.seconds), ("seconds_per_step", row.sec_per_step),
                           ("peak_memory_mb", row.peak_mb)):
            value[f"{name}_mean"] = stat.mean if stat else None
            value[f"{name}_std"] = stat.std if stat else None
        for key in ("top1", "miou"):
            lo_hi = exp.get(key) or (None, None)
            value[f"guide_{key}_lo"], value[f"guide_{key}_hi"] = lo_hi
        writer.writerow({k: ("" if value.get(k) is None else value[k]) for k in CSV_FIELDS})
    return out.getvalue()


def json_record(report: Report, base: Path | None = None) -> dict:
    """The whole report as JSON: header, target, thresholds, one entry per row with its runs."""

    def where(path: Path) -> str:
        try:
            return str(path.resolve().relative_to(base.resolve())) if base else str(path)
        except ValueError:
            return str(path)

    rows = []
    for row in report.rows:
        g = row.group
        rows.append({
            "optimizer": g.optimizer, "label": g.label, "seeds": [r.seed for r in g.runs],
            "completed": len(g.done), "status": row.status,
            **{k: s.to_dict() if s else None for k, s in (
                ("top1", row.top1), ("miou", row.miou), ("steps_to_target", row.steps),
                ("seconds_to_target", row.seconds), ("seconds_per_step", row.sec_per_step),
                ("peak_memory_mb", row.peak_mb))},
            "seeds_reached": row.reached, "convergence": row.convergence, "ratio_to_fastest": row.ratio,
            "guide_real_data": g.expected,
            "runs": [{"seed": r.seed, "path": where(r.path), "status": r.status,
                      "error": None if r.completed else r.reason,
                      "final_top1": r.final("final_top1"), "final_miou": r.final("final_miou"),
                      "init_weights_sha256": (r.summary or {}).get("init_weights_sha256"),
                      "loss_scale": _loss_scale(r)} for r in g.runs],
        })
    return {"header": report.header, "target": report.target.to_dict() if report.target else None,
            "thresholds": {label: limit for label, limit in THRESHOLDS}, "notes": notes(report),
            "rows": rows}


def write_tables(report: Report, out: Path) -> list[Path]:
    """report.md, report.csv and report.json in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"report.md": markdown(report), "report.csv": csv_text(report),
             "report.json": json.dumps(json_record(report, out), indent=2) + "\n"}
    for name, text in files.items():
        atomic_write_text(out / name, text)
    return [out / name for name in files]
