"""Gradient-conflict figures: read from metrics.jsonl, drawn for the runs that logged the fields only."""

import ast
import json
import math
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
