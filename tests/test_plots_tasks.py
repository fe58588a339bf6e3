"""The report's figures over a workload's own tasks (loss.png, validation.png, final.png): one panel per task,
each task's primary metric in its direction with its unit, the joint score where the workload has one and Δm
against the reference row where it has none; ImageNet + COCO's figures as they have always been.

The figures are read back from the matplotlib objects (titles, labels, the data of each line and bar), not from
pixels: ``drawn`` keeps each figure that report.plots would have written.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

import mtbench.report.plots as plots
from fakeruns import write_comparison, write_run
from mtbench.report import build_report, find_runs, load_run
from mtbench.rundir import EPOCH_COLUMNS

ACC = {"name": "acc_a", "title": "acc a", "higher_is_better": True, "unit": "%", "primary": True}
ERR = {"name": "err_b", "title": "err b", "higher_is_better": False, "unit": "m", "primary": True}
ANGLE = {"name": "angle_c", "title": "angle c", "higher_is_better": False, "unit": "deg", "primary": True}
WITHIN = {"name": "within_c", "title": "within c", "higher_is_better": True, "unit": "%", "primary": False}
MIXED = {"a": [ACC], "b": [ERR], "c": [ANGLE, WITHIN]}  # three tasks, one up and two down: no joint score
EPOCHS = 3


def own_run(path: Path, optimizer: str, seed: int, metrics: dict, tasks: tuple[str, ...], workload: str = "three"):
    """A run of ``tasks`` of a workload whose summary.json names ``metrics``: each task's loss logged per step
    (loss_<task>, 10 steps an epoch), and each metric of its tasks after each epoch on the test split; values
    that differ by row, seed, task and epoch, so a panel that reads the wrong one shows it."""
    run = write_run(path, optimizer=optimizer, seed=seed, tasks=tasks, init_sha=f"init-{seed}")
    offset = len(optimizer) / 10 + seed / 100
    names = [m["name"] for t in metrics for m in metrics[t]]
    value = {m["name"]: (lambda e, i=i: 0.2 + 0.1 * i + 0.05 * e + offset) for i, m in enumerate(
        m for t in tasks for m in metrics[t])}
    with open(run / "metrics.jsonl", "w") as f:
        for step in range(1, EPOCHS * 10 + 1):
            losses = {f"loss_{t}": (i + 1) * math.exp(-step / 20) + offset for i, t in enumerate(tasks)}
            f.write(json.dumps({"step": step, "epoch": (step - 1) // 10 + 1, **losses, "loss": sum(losses.values())})
                    + "\n")
    with open(run / "epochs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, EPOCH_COLUMNS + [f"val_{n}" for n in names])
        writer.writeheader()
        for e in range(1, EPOCHS + 1):
            writer.writerow({"epoch": e, "step": 10 * e, "seconds": e,
                             **{f"val_{n}": value[n](e) for n in names if n in value}})
    summary = json.loads((run / "summary.json").read_text())
    summary.update(workload=workload, task_metrics={t: metrics[t] for t in tasks}, final_top1=None, final_miou=None,
                   final_metrics={n: f(EPOCHS) for n, f in value.items()}, epochs=EPOCHS, steps=10 * EPOCHS)
    (run / "summary.json").write_text(json.dumps(summary))
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "workload": workload, "tasks": list(tasks)}))
    return load_run(run)


def own_report(tmp_path: Path, metrics: dict, workload: str = "three"):
    """adam and sgd on every task, and sgd's single-task run of the first task; two seeds each."""
    tasks = tuple(metrics)
    runs = [own_run(tmp_path / f"{opt}{seed}", opt, seed, metrics, tasks, workload)
            for opt in ("adam", "sgd") for seed in (0, 1)]
    runs += [own_run(tmp_path / f"base{seed}", "sgd", seed, metrics, tasks[:1], workload) for seed in (0, 1)]
    return build_report(runs)


@pytest.fixture
def drawn(monkeypatch):
    """The figures report.plots draws, by file name, kept instead of written."""
    figures = {}

    def keep(fig, path):
        figures[Path(path).name] = fig
        return Path(path)

    monkeypatch.setattr(plots, "save", keep)
    return figures


def shown(fig) -> list:
    """The visible panels of a figure."""
    return [ax for ax in fig.axes if ax.get_visible()]


def test_every_figure_of_three_mixed_tasks_is_drawn_over_the_workloads_own_tasks(tmp_path, drawn):
    report = own_report(tmp_path, MIXED)
    plots.write_plots(report, tmp_path / "out")
    assert set(drawn) == {"loss.png", "validation.png", "final.png"}
    for fig in drawn.values():
        text = " ".join([fig.get_suptitle()] + [ax.get_title() + ax.get_ylabel() for ax in shown(fig)])
        assert not any(word in text for word in ("ImageNet", "COCO", "top-1", "mIoU", "cls", "seg")), text

    loss = shown(drawn["loss.png"])
    assert [ax.get_title() for ax in loss] == ["Training loss of a", "Training loss of b", "Training loss of c"]
    # sgd[a] trained task a alone: a line in a's panel, none in b's or c's
    assert [[line.get_label() for line in ax.lines] for ax in loss] == [["adam", "sgd", "sgd[a]"], ["adam", "sgd"],
                                                                        ["adam", "sgd"]]
    # task c's loss of adam: 3 exp(-step / 20) + 0.4 + seed / 100, the mean of seeds 0 and 1 at each step
    steps, values = loss[2].lines[0].get_data()
    assert values == pytest.approx(3 * np.exp(-steps / 20) + 0.405)

    validation = shown(drawn["validation.png"])
    assert [ax.get_title() for ax in validation] == ["a: validation acc a", "b: validation err b",
                                                     "c: validation angle c"]
    assert [ax.get_ylabel() for ax in validation] == ["acc a (%) ↑", "err b (m) ↓", "angle c (deg) ↓"]
    # adam's acc a after each epoch in %: 100 x (0.2 + 0.05 e + 0.4 + 0.005); err b without a scale
    assert validation[0].lines[0].get_ydata() == pytest.approx([100 * (0.605 + 0.05 * e) for e in (1, 2, 3)])
    assert validation[1].lines[0].get_ydata() == pytest.approx([0.705 + 0.05 * e for e in (1, 2, 3)])
    assert [len(ax.lines) for ax in validation] == [3, 2, 2]

    assert all(fig.get_suptitle().split(" (")[0].endswith(" of three") or " of three," in fig.get_suptitle()
               for fig in drawn.values())  # each figure names the workload
    final = shown(drawn["final.png"])
    assert [ax.get_title() for ax in final] == ["a: test acc a", "b: test err b", "c: test angle c",
                                                "Δm vs adam (every metric)"]
    assert [ax.get_ylabel() for ax in final] == ["acc a (%) ↑", "err b (m) ↓", "angle c (deg) ↓", "Δm vs adam (%) ↑"]
    rows = [r.label for r in report.rows]
    assert rows == ["adam", "sgd", "sgd[a]"]
    heights = [[bar.get_height() for bar in ax.patches] for ax in final]
    means = {r.label: r.metrics["task_metrics"] for r in report.rows}
    assert heights[0] == pytest.approx([100 * means[label]["acc_a"]["mean"] for label in rows])
    assert heights[1][:2] == pytest.approx([means[label]["err_b"]["mean"] for label in rows[:2]])
    assert heights[3][:2] == pytest.approx([r.metrics["delta_m"]["mean"] for r in report.rows[:2]])
    assert heights[3][0] == 0 and heights[3][1] != 0  # adam is the reference
    # the single-task run has no bar of the tasks it did not train, and says so (not "failed")
    assert [t.get_text() for t in final[1].texts][2] == "not trained" and final[3].texts[2].get_text() == "n/a"
    assert "failed" not in [t.get_text() for ax in final for t in ax.texts]


def test_the_final_figure_has_the_joint_score_where_every_primary_metric_is_higher_is_better(tmp_path, drawn):
    accuracies = {t: [{**ACC, "name": f"acc_{t}", "title": f"acc {t}"}] for t in "abc"}
    report = own_report(tmp_path, accuracies, "accs")
    assert report.has_joint
    plots.plot_final(report, tmp_path / "final.png")
    final = shown(drawn["final.png"])
    assert [ax.get_title() for ax in final][-1] == "Joint score (mean of the primary metrics)"
    assert final[-1].get_ylabel() == "joint score (%) ↑" and "Δm" not in " ".join(ax.get_title() for ax in final)
    assert final[-1].patches[0].get_height() == pytest.approx(100 * report.rows[0].metrics["joint"]["mean"])


@pytest.mark.parametrize("num_tasks", [1, 2, 8])
def test_one_panel_per_task_for_one_to_eight_tasks(tmp_path, drawn, num_tasks):
    metrics = {f"t{t}": [{**(ERR if t % 2 else ACC), "name": f"m{t}", "title": f"m {t}"}] for t in range(num_tasks)}
    report = own_report(tmp_path, metrics, f"w{num_tasks}")
    plots.write_plots(report, tmp_path / "out")
    tasks = list(metrics)
    assert [ax.get_title() for ax in shown(drawn["loss.png"])] == [f"Training loss of {t}" for t in tasks]
    assert [ax.get_title() for ax in shown(drawn["validation.png"])] == [f"{t}: validation m {t[1:]}" for t in tasks]
    extra = (["Joint score (mean of the primary metrics)"] if num_tasks == 1 else ["Δm vs adam (every metric)"])
    assert [ax.get_title() for ax in shown(drawn["final.png"])] == [f"{t}: test m {t[1:]}" for t in tasks] + extra
    if num_tasks == 8:  # two rows of four panels, the rows' legend once below them
        width, height = drawn["loss.png"].get_size_inches()
        assert width > 1.8 * height and len(drawn["loss.png"].legends) == 1


def test_imagenet_and_cocos_figures_are_drawn_as_they_always_were(tmp_path, drawn):
    curves = {"adam": [[(0.5, 0.3), (0.70, 0.40)], [(0.5, 0.3), (0.72, 0.42)]],
              "sgd": [[(0.2, 0.1), (0.50, 0.30)], [(0.3, 0.1), (0.56, 0.28)]]}
    report = build_report(find_runs([write_comparison(tmp_path / "cmp", curves)]))
    plots.write_plots(report, tmp_path / "out")
    titles = {name: [ax.get_title() for ax in shown(fig)] for name, fig in drawn.items()}
    assert titles == {"loss.png": ["Classification loss (ImageNet)", "Segmentation loss (COCO)"],
                      "validation.png": ["Validation top-1 accuracy (ImageNet)", "Validation mIoU (COCO, 21 classes)"],
                      "final.png": ["Test top-1", "Test mIoU"]}
    assert [ax.get_ylabel() for ax in shown(drawn["final.png"])] == ["top-1 accuracy (%)", "mIoU (fraction)"]
    assert [tuple(fig.get_size_inches()) for fig in drawn.values()] == [(12, 4.5), (12, 4.5), (8, 4.8)]
    assert all(ax.get_legend() is not None for name in ("loss.png", "validation.png") for ax in shown(drawn[name]))
    assert [bar.get_height() for bar in shown(drawn["final.png"])[0].patches] == pytest.approx([71.0, 53.0])
