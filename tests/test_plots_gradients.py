"""Gradient-conflict figures: read from metrics.jsonl, drawn for the runs that logged the fields only."""

import ast
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

import mtbench
from fakeruns import write_run
from mtbench.report.plots_gradients import load_conflict, write_conflict_plots
from mtbench.report import find_runs, group_runs


def add_conflict(run_dir, weights=True, cosine=lambda step: math.cos(step / 7)):
    """Give every step record of a fake run the fields a run with per-task gradients logs."""
    path = run_dir / "metrics.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for r in records:
        r["grad_cosine"] = cosine(r["step"])
        r["grad_norm_ratio"] = 2.0 + r["step"] / 10
        if weights:
            r["method_weight_cls"], r["method_weight_seg"] = 0.6, 0.4
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture
def comparison(tmp_path):
    runs = tmp_path / "runs"
    for seed in (0, 1):
        write_run(runs / f"adam-seed{seed}", seed=seed)
        add_conflict(write_run(runs / f"adam+upgrad-seed{seed}", seed=seed, method="upgrad"))
        add_conflict(write_run(runs / f"adam+pcgrad-seed{seed}", seed=seed, method="pcgrad"), weights=False)
    return runs


def test_load_conflict(comparison):
    assert load_conflict(comparison / "adam-seed0") is None  # the plain weighted loss logs no conflict
    data = load_conflict(comparison / "adam+upgrad-seed0")
    assert list(data["step"][:3]) == [1, 2, 3]
    assert data["grad_cosine"][0] == pytest.approx(math.cos(1 / 7)) and data["grad_norm_ratio"][0] == 2.1
    assert (data["method_weight_cls"] == 0.6).all()
    assert np.isnan(load_conflict(comparison / "adam+pcgrad-seed0")["method_weight_seg"]).all()


def test_one_figure_per_comparison_and_per_run_that_logged_the_fields(comparison, tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    files = write_conflict_plots(group_runs(find_runs([comparison])), out)
    assert sorted(f.name for f in files) == [
        "conflict-adam+pcgrad-seed0.png", "conflict-adam+pcgrad-seed1.png", "conflict-adam+upgrad-seed0.png",
        "conflict-adam+upgrad-seed1.png", "conflict.png"]
    for f in files:
        assert imread(f).shape[2] in (3, 4)
    assert imread(out / "conflict.png").shape[1] > imread(out / "conflict-adam+pcgrad-seed0.png").shape[1]


def test_no_figure_without_the_fields(tmp_path):
    write_run(tmp_path / "runs" / "adam-seed0")
    (tmp_path / "runs" / "sgd-seed0").mkdir(parents=True)  # no logs at all
    assert write_conflict_plots(group_runs(find_runs([tmp_path / "runs"])), tmp_path) == []
    assert not list(tmp_path.glob("conflict*.png"))


def test_a_step_without_a_value_leaves_a_gap(tmp_path):
    run = write_run(tmp_path / "runs" / "adam+upgrad-seed0", method="upgrad")
    add_conflict(run, cosine=lambda step: None if step % 2 else 0.5)  # e.g. a zero gradient: no cosine
    data = load_conflict(run)
    assert np.isnan(data["grad_cosine"][0]) and data["grad_cosine"][1] == 0.5
    assert [f.name for f in write_conflict_plots(group_runs(find_runs([tmp_path / "runs"])), tmp_path)] == [
        "conflict.png", "conflict-adam+upgrad-seed0.png"]


def add_task_conflict(run_dir, tasks, weights=True):
    """The fields a run of ``tasks`` with per-task gradients logs: the first pair's cosine and norm ratio (two
    tasks or more), the mean cosine over the pairs (three or more), each task's method weight."""
    path = run_dir / "metrics.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for r in records:
        r["grad_cosine"] = r["grad_norm_ratio"] = None  # one task: no pair, logged as null
        if len(tasks) > 1:
            r["grad_cosine"], r["grad_norm_ratio"] = math.cos(r["step"] / 7), 2.0
        if len(tasks) > 2:
            r["grad_cosine_mean"] = 0.5 * math.sin(r["step"] / 5)
        if weights:
            r.update({f"method_weight_{task}": (i + 1) / len(tasks) for i, task in enumerate(tasks)})
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def texts(fig) -> str:
    """Every text of a figure: titles, axis labels and legend entries."""
    found = [fig._suptitle.get_text() if fig._suptitle else ""]
    for legend in [*fig.legends, *(ax.get_legend() for ax in fig.axes)]:
        found += [t.get_text() for t in legend.get_texts()] if legend is not None else []
    return "\n".join(found + [t for ax in fig.axes for t in (ax.get_title(), ax.get_ylabel())])


@pytest.mark.parametrize("num_tasks", [1, 2, 3, 8])
def test_another_workloads_figures_draw_the_methods_weight_of_every_task(tmp_path, monkeypatch, num_tasks):
    import mtbench.report.plots_gradients as plots_gradients

    tasks = [f"t{i}" for i in range(num_tasks)]
    runs = tmp_path / "runs"
    for seed in (0, 1):
        add_task_conflict(write_run(runs / f"adam+upgrad-seed{seed}", seed=seed, method="upgrad", tasks=tasks), tasks)
        add_task_conflict(write_run(runs / f"adam+pcgrad-seed{seed}", seed=seed, method="pcgrad", tasks=tasks), tasks,
                          weights=False)
    figures = {}
    monkeypatch.setattr(plots_gradients, "save", lambda fig, path: figures.setdefault(Path(path).name, fig) and path)
    written = write_conflict_plots(group_runs(find_runs([runs])), tmp_path, tasks, f"tiny{num_tasks}")
    pcgrad = [] if num_tasks == 1 else ["conflict-adam+pcgrad-seed0.png", "conflict-adam+pcgrad-seed1.png"]
    assert sorted(p.name for p in written) == sorted(
        ["conflict.png", "conflict-adam+upgrad-seed0.png", "conflict-adam+upgrad-seed1.png", *pcgrad])

    summary = figures["conflict.png"]
    titles = [ax.get_title() for ax in summary.axes if ax.get_visible()]
    pair = [] if num_tasks == 1 else [
        "Cosine between the task gradients" if num_tasks == 2 else
        f"Mean cosine over the {num_tasks * (num_tasks - 1) // 2} pairs of task gradients", "Norm ratio"]
    assert [t.split(" of the")[0] if t.startswith("Norm") else t for t in titles] == [
        *pair, *(f"The method's weight of {task}" for task in tasks)]
    for ax in summary.axes[len(pair):len(titles)]:  # the weighted row alone, at its logged weight
        assert [line.get_label().split("[")[0] for line in ax.lines] == ["adam+upgrad"]  # [t0]: one task of one
    weights = [np.nanmean(ax.lines[0].get_ydata()) for ax in summary.axes[len(pair):len(titles)]]
    assert weights == pytest.approx([(i + 1) / num_tasks for i in range(num_tasks)])
    assert f"tiny{num_tasks}" in summary._suptitle.get_text()

    run = figures["conflict-adam+upgrad-seed0.png"]
    panel = next(ax for ax in run.axes if ax.get_title() == "The method's task weights")
    assert [line.get_label() for line in panel.lines] == tasks
    for fig in figures.values():
        text = texts(fig)
        assert not re.search(r"\b(cls|seg)\b", text), text
        lines = [line for ax in fig.axes for line in ax.lines if len(line.get_ydata())]
        assert lines and all(np.isfinite(np.asarray(line.get_ydata(), dtype=float)).any() for line in lines)
    assert all(re.search(rf"\b{task}\b", texts(summary)) for task in tasks)


def test_the_figure_modules_draw_with_the_style_module_not_with_each_other():
    """plots_gradients needs none of plots' names (no circle: plots imports it to write every figure)."""
    code = ("import sys, mtbench.report.plots_gradients; "
            "print(sorted(m for m in sys.modules if m.startswith('mtbench.report.plot')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["['mtbench.report.plots_gradients',", "'mtbench.report.plotstyle']"]


def test_no_module_imports_another_modules_private_name():
    """A helper that two modules need is public in a shared module (as plotstyle's are)."""
    package = Path(mtbench.__file__).parent
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            # names from a module of the package (``from . import _C`` takes the compiled module itself)
            if isinstance(node, ast.ImportFrom) and node.module and (node.level or node.module.startswith("mtbench")):
                found += [f"{path.relative_to(package)}: {alias.name} from {'.' * node.level}{node.module}"
                          for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert found == []
