"""The header of a report: what every run shares (data, budget, device), the loss scale, and whether every
row of a seed started from the same initial weights."""

from __future__ import annotations

import json
from typing import Sequence

from ..config import TASKS
from ..text import format_value
from .grouping import RowRuns
from .rows import ROLES
from .runs import Run

__all__ = ["header_lines", "loss_scale"]


def header_lines(runs: Sequence[Run], groups: Sequence[RowRuns], workload: str | None = None,
                 tasks: Sequence[str] = TASKS) -> list[str]:
    """The settings every run shares (or 'varies'), the loss scale and the initial-weights check; ``workload``
    names a workload other than the default one (ImageNet + COCO), whose ``tasks`` the loss scale names."""
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
    elif workload is not None:
        data = common("data")
        lines.append(f"Data: workload {workload}, " + (f"from {data}" if data else "its embedded stand-in"))
    elif imagenet is None and coco is None:
        lines.append("Data: the embedded synthetic data set (not real ImageNet + COCO)")
    else:
        embedded = "embedded synthetic"
        lines.append(f"Data: ImageNet {imagenet or embedded}, COCO {coco or embedded}")
    devices = {r.env.get("device") for r in runs if r.env.get("device")}
    settings = [("epochs", common("epochs")), ("batch size", common("batch_size")),
                ("image size", common("image_size")), ("train limit", common("limit_train")),
                ("val limit", common("limit_val")), *_model(runs, workload, common("backbone")),
                ("amp", common("amp")), ("device", ", ".join(sorted(devices)) or None)]
    roles = {role: sum(g.role == role for g in groups) for role in ROLES}
    names = {"row": "compared", "sweep": "sweep", "baseline": "baseline"}
    kinds = "" if roles["row"] == len(groups) else (
        "; rows: " + ", ".join(f"{n} {names[role]}" for role, n in roles.items() if n))
    lines.append(f"Runs: {len(runs)} ({len(groups)} row{'s' * (len(groups) != 1)} x {len(seeds)} "
                 f"seed{'s' * (len(seeds) != 1)}: {', '.join(map(str, seeds)) or '-'}{kinds}); "
                 + ", ".join(f"{k} {format_value(v)}" for k, v in settings if v is not None))
    scales = {tuple(loss_scale(r)) for r in runs if loss_scale(r) is not None}
    if scales and scales != {tuple(1.0 for _ in s) for s in scales}:
        shown = "; ".join(", ".join(f"{t} x{x:g}" for t, x in zip(tasks, s)) for s in sorted(scales))
        lines.append(f"Loss scale: {shown} (stress test: that task's loss is multiplied before the update)")
    else:
        lines.append(f"Loss scale: none ({', '.join(f'{t} x1' for t in tasks)})")
    weights = common("task_weights")
    if weights not in (None, "varies"):
        lines.append("Task weights: " + ", ".join(f"{t} {w:g}" for t, w in zip(tasks, weights)))
    lines.append(_init_check(runs))
    return lines


def _model(runs: Sequence[Run], workload: str | None, backbone) -> list[tuple[str, object]]:
    """The network of the runs: ("backbone", --backbone) on the default workload, as it has always read;
    on another, the model's class and the backbone it holds, as the runs recorded them (NOTE [model in
    summary], mtbench.training.runlog), the backbone left out where the network holds none. Runs that
    recorded no model (before these fields) show --backbone as before."""
    told = [r.told for r in runs if r.summary is not None]
    if workload is None or not told or any(t.model is None for t in told):
        return [("backbone", backbone)]
    models, backbones = {t.model for t in told}, {t.model_backbone for t in told}
    model = models.pop() if len(models) == 1 else "varies"
    held = backbones.pop() if len(backbones) == 1 else "varies"
    return [("model", model)] + ([("backbone", held)] if held is not None else [])


def loss_scale(run: Run) -> list[float] | None:
    """The run's per-task loss multipliers (a stress test), None when it recorded none."""
    scale = run.told.loss_scale or run.config.get("loss_scale")
    return [float(s) for s in scale] if scale else None


def _init_check(runs: Sequence[Run]) -> str:
    by_seed: dict[int, set] = {}
    for r in runs:
        sha = r.told.init_weights_sha256
        if sha and r.seed is not None:
            by_seed.setdefault(r.seed, set()).add(sha)
    differ = [s for s, shas in sorted(by_seed.items()) if len(shas) > 1]
    if differ:
        return ("Initial weights: DIFFER between optimizers for seed " + ", ".join(map(str, differ))
                + " (settings such as backbone or weights differ)")
    if not by_seed:
        return "Initial weights: not recorded"
    return "Initial weights: identical for every optimizer within each seed (init_weights_sha256)"
