"""Hand-made run directories in the run-directory format, for testing report, convergence and plots."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Mapping, Sequence

from mtbench.rundir import CONFIG_FILE, ENV_FILE, EPOCH_COLUMNS, EPOCHS_FILE, METRICS_FILE, SUMMARY_FILE

EXPECTED = {"top1": [0.55, 0.65], "miou": [0.03, 0.04], "convergence": "fast"}


def write_run(
    run_dir: Path,
    optimizer: str = "adam",
    seed: int = 0,
    curve: Sequence[tuple[float, float]] = ((0.2, 0.1), (0.5, 0.3), (0.7, 0.4)),
    holdout_curve: Sequence[tuple[float, float]] | None = None,
    steps_per_epoch: int = 10,
    seconds_per_step: float = 0.1,
    status: str = "completed",
    error: str | None = None,
    loss_scale: tuple[float, float] = (1.0, 1.0),
    expected: dict | None = EXPECTED,
    init_sha: str | None = None,
    peak_memory_mb: float = 123.0,
    epochs: int | None = None,
    hyperparams: dict | None = None,
    method: str = "sum",
    task_weights: tuple[float, float] = (1.0, 1.0),
    tasks: Sequence[str] = ("cls", "seg"),
    image_size: int = 32,
) -> Path:
    """Write a run directory whose test-split (top-1, mIoU) after each epoch follows ``curve``.

    ``holdout_curve`` gives the held-out split's figures per epoch (none: the run had no --holdout).
    ``epochs`` is the configured epoch count (default: the length of ``curve``); a run with
    status "running" or "failed" may have fewer rows in ``curve`` than configured epochs.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    configured = epochs if epochs is not None else len(curve)
    holdout = 0.1 if holdout_curve is not None else 0.0
    preset = {"name": optimizer, "title": optimizer.upper(), "per_task_gradients": False,
              "defaults": {"lr": 0.001}}
    if expected is not None:
        preset["expected"] = expected
    config = {
        "optimizer": optimizer, "hyperparams": hyperparams or {"lr": 0.001}, "task_weights": list(task_weights),
        "loss_scale": list(loss_scale), "imagenet": None, "coco": None, "image_size": image_size,
        "limit_train": 16, "limit_val": 16, "epochs": configured, "batch_size": 8, "seed": seed,
        "device": "cpu", "amp": "off", "workers": 0, "backbone": "resnet18", "weights": None,
        "run_dir": str(run_dir), "on_nonfinite": "abort", "max_consecutive_skips": 10,
        "method": method, "method_settings": {}, "holdout": holdout, "tasks": list(tasks),
        "preset": preset,
    }
    (run_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    (run_dir / ENV_FILE).write_text(json.dumps({"python": "3.11", "torch": "2.x", "device": "cpu"}))

    with open(run_dir / METRICS_FILE, "w") as f:
        for step in range(1, len(curve) * steps_per_epoch + 1):
            loss_cls = 2.0 * math.exp(-step / 20) + 0.1
            loss_seg = 1.0 * math.exp(-step / 30) + 0.05
            f.write(json.dumps({
                "step": step, "epoch": (step - 1) // steps_per_epoch + 1, "loss_cls": loss_cls,
                "loss_seg": loss_seg, "loss": loss_cls + loss_seg,
                "time": step * seconds_per_step, "skipped": False,
            }) + "\n")

    with open(run_dir / EPOCHS_FILE, "w", newline="") as f:
        writer = csv.DictWriter(f, EPOCH_COLUMNS)
        writer.writeheader()
        for i, (top1, miou) in enumerate(curve, 1):
            step = i * steps_per_epoch
            held = holdout_curve[i - 1] if holdout_curve is not None else None
            writer.writerow({
                "epoch": i, "step": step, "train_loss_cls": 1.0 / i, "train_loss_seg": 0.5 / i,
                "val_top1": top1, "val_top5": min(1.0, top1 + 0.2), "val_miou": miou, "val_pixel_acc": miou + 0.3,
                "holdout_top1": held[0] if held else "", "holdout_top5": min(1.0, held[0] + 0.2) if held else "",
                "holdout_miou": held[1] if held else "", "holdout_pixel_acc": held[1] + 0.3 if held else "",
                "seconds": round(step * seconds_per_step, 6)})

    final = curve[-1] if curve else (None, None)
    final_held = holdout_curve[len(curve) - 1] if holdout_curve is not None and curve else (None, None)
    steps = len(curve) * steps_per_epoch
    summary = {
        "optimizer": optimizer, "title": optimizer.upper(), "status": status, "error": error,
        "seed": seed, "epochs": len(curve), "steps": steps,
        "final_top1": final[0], "final_top5": None if final[0] is None else min(1.0, final[0] + 0.2),
        "final_miou": final[1], "final_pixel_acc": None if final[1] is None else final[1] + 0.3,
        "holdout_top1": final_held[0], "holdout_miou": final_held[1],
        "seconds_per_step": seconds_per_step, "total_seconds": steps * seconds_per_step,
        "peak_memory_mb": peak_memory_mb, "skipped_steps": 0, "corrupt_images": 0,
        "init_weights_sha256": init_sha or f"sha-seed{seed}", "task_weights": list(task_weights),
        "loss_scale": list(loss_scale), "holdout": holdout, "tasks": list(tasks), "method": method,
        "method_settings": {},
    }
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    return run_dir


def write_comparison(
    out: Path, curves: Mapping[str, Sequence[Sequence[tuple[float, float]]]],
    rows: Mapping[str, dict] | None = None,
    holdout_curves: Mapping[str, Sequence[Sequence[tuple[float, float]]]] | None = None, **kwargs
) -> Path:
    """A comparison directory: ``curves[row][seed_index]`` is one run's test-split curve.

    Without ``rows`` every row is an optimizer of that name (a comparison written before rows, whose
    comparison.json lists optimizers only). ``rows[name]`` gives a row's optimizer, method, task_weights,
    tasks and role, and comparison.json lists the rows as `mtbench compare` writes them.
    ``holdout_curves[row][seed_index]`` is a run's held-out split curve.
    """
    out = Path(out)
    seeds = range(len(next(iter(curves.values()))))
    records = []
    for name in curves:
        spec = {"optimizer": name, "method": "sum", "task_weights": (0.5, 0.5), "tasks": ("cls", "seg"),
                "role": "row", **((rows or {}).get(name) or {})}
        records.append({"name": name, **spec, "task_weights": list(spec["task_weights"]),
                        "tasks": list(spec["tasks"])})
    for seed in seeds:
        for record in records:
            name = record["name"]
            held = (holdout_curves or {}).get(name)
            run_options = {k: record[k] for k in ("method", "tasks")}
            if rows:
                run_options["task_weights"] = tuple(record["task_weights"])
            write_run(out / "runs" / f"{name}-seed{seed}", optimizer=record["optimizer"], seed=seed,
                      curve=curves[name][seed], holdout_curve=held[seed] if held else None,
                      **run_options, **kwargs)
    comparison = {"format": 1, "optimizers": list(dict.fromkeys(r["optimizer"] for r in records if r["role"] == "row")),
                  "seeds": list(seeds), "settings": {}}
    if rows:
        comparison["rows"] = records
    (out / "comparison.json").write_text(json.dumps(comparison))
    return out


def write_reference_comparison(out: Path) -> Path:
    """A fixed comparison whose runs use what summary.json can say: rows over three seeds with held-out
    curves, two points of a task-weight sweep, a loss scale, a failed run with its error, an interrupted
    one and a run that left no summary. Its report.json is stored in tests/data/ as the report built
    before summary.json had a type, so a change to how summaries are read shows as a different report."""
    curves = {
        "adam": [[(0.5, 0.3), (0.70, 0.40)], [(0.5, 0.3), (0.72, 0.42)], [(0.4, 0.3), (0.69, 0.41)]],
        "sgd": [[(0.2, 0.1), (0.50, 0.30)], [(0.3, 0.1), (0.56, 0.28)], [(0.3, 0.2), (0.52, 0.33)]],
        "adam@w0.3": [[(0.3, 0.3), (0.55, 0.45)], [(0.3, 0.4), (0.57, 0.47)], [(0.2, 0.3), (0.50, 0.44)]],
        "adam@w0.7": [[(0.6, 0.2), (0.75, 0.30)], [(0.5, 0.2), (0.74, 0.33)], [(0.6, 0.1), (0.78, 0.31)]],
    }
    rows = {"adam": {}, "sgd": {"optimizer": "sgd"},
            "adam@w0.3": {"optimizer": "adam", "task_weights": (0.3, 0.7), "role": "sweep"},
            "adam@w0.7": {"optimizer": "adam", "task_weights": (0.7, 0.3), "role": "sweep"}}
    holdout = {name: [[(top1 * 0.9, miou * 1.1) for top1, miou in seed] for seed in seeds]
               for name, seeds in curves.items()}
    out = write_comparison(out, curves, rows=rows, holdout_curves=holdout, loss_scale=(1.0, 10.0))
    write_run(out / "runs/sgd-seed1", optimizer="sgd", seed=1, curve=[(0.1, 0.05)], epochs=2, status="failed",
              holdout_curve=[(0.09, 0.06)], error="non-finite loss at step 12 in segmentation (loss_cls=2.1, "
              "loss_seg=nan)\nmore", loss_scale=(1.0, 10.0), task_weights=(0.5, 0.5))
    write_run(out / "runs/adam@w0.7-seed2", optimizer="adam", seed=2, curve=[(0.6, 0.1)], epochs=2,
              holdout_curve=[(0.54, 0.11)], status="interrupted", loss_scale=(1.0, 10.0), task_weights=(0.7, 0.3))
    (out / "runs/adam@w0.3-seed1" / SUMMARY_FILE).unlink()
    return out
