"""--task-weights-sweep over any number of tasks: the simplex lattice (simplex:N) and listed points, their
one-line errors, the rows they plan and how those are named, the Pareto front over T primary metrics each in
its own direction, the report's front of a T = 3 workload, and one small comparison that trains it."""

from __future__ import annotations

import itertools
import json
import math

import pytest
from click.testing import CliRunner
from matplotlib.image import imread

from mtbench.cli import main
from mtbench.compare import ComparisonSpec, ReportOptions, parse_sweep, plan_rows, run_comparison
from mtbench.compare.parse import SWEEP_MAX_POINTS
from mtbench.errors import ConfigError
from mtbench.plugins import load_registry
from mtbench.report import build_report
from mtbench.report.baseline import front_against_tuned
from mtbench.report.files import sweep_headers, sweep_rows
from mtbench.report.fronts import dominated_by_front, pareto_front
from mtbench.report.plots import plot_pareto
from mtbench.report.rows import RowSpec, same_weighting
from mtbench.report.verdict import scalarization_front
from mtbench.tuning.simplex import lattice, lattice_size
from test_report_workloads import own_run
from tiny_workloads import tiny_workload

THREE = ("t0", "t1", "t2")


@pytest.fixture(scope="module")
def registry():
    return load_registry()


# -- the lattice ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tasks, spacing", [(2, 2), (2, 10), (3, 3), (3, 5), (4, 7), (5, 12), (8, 10)])
def test_the_lattice_is_every_interior_point_of_spacing_one_over_n(tasks, spacing):
    points = lattice(tasks, spacing)
    assert len(points) == math.comb(spacing - 1, tasks - 1) == lattice_size(tasks, spacing)
    assert len(set(points)) == len(points)
    for point in points:
        assert len(point) == tasks and abs(sum(point) - 1) <= 1e-12
        ks = [w * spacing for w in point]
        assert all(k >= 1 - 1e-9 and abs(k - round(k)) <= 1e-9 for k in ks)  # each k / N with k >= 1
    if tasks <= 4:  # every composition of N into T positive parts is there
        every = {ks for ks in itertools.product(range(1, spacing), repeat=tasks) if sum(ks) == spacing}
        assert {tuple(round(w * spacing) for w in p) for p in points} == every


def test_the_lattice_of_three_tasks_and_spacing_one_fifth_and_of_two_tasks():
    assert lattice(3, 5) == [(0.2, 0.2, 0.6), (0.2, 0.4, 0.4), (0.2, 0.6, 0.2), (0.4, 0.2, 0.4), (0.4, 0.4, 0.2),
                             (0.6, 0.2, 0.2)]
    assert [p[0] for p in lattice(2, 5)] == [0.2, 0.4, 0.6, 0.8]  # w = 1/N .. (N-1)/N
    assert lattice(3, 2) == [] and lattice_size(3, 2) == 0  # no interior point


# -- parsing ----------------------------------------------------------------------------------------------

def test_a_simplex_sweep_is_expanded_for_the_workloads_tasks():
    sweep = parse_sweep(" simplex:5 ")
    assert sweep.points_for(THREE) == tuple(lattice(3, 5)) and len(sweep.points_for(THREE)) == 6
    assert [p[0] for p in sweep.points_for(("cls", "seg"))] == [0.2, 0.4, 0.6, 0.8]
    listed = parse_sweep("0.6:0.2:0.2, 0.2:0.6:0.2")
    assert listed.points_for(THREE) == ((0.6, 0.2, 0.2), (0.2, 0.6, 0.2))
    # the two-task forms weigh the same: w alone, or w:1-w
    assert parse_sweep("0.3,0.5:0.5").points_for(("cls", "seg")) == ((0.3, 0.7), (0.5, 0.5))


@pytest.mark.parametrize("text, message", [
    ("simplex:0", "^'simplex:0': expected simplex:N with N an integer from 2 to 1000"),
    ("simplex:x", "^'simplex:x': expected simplex:N with N an integer"),
    ("simplex:1", "^'simplex:1': expected simplex:N"),
    ("simplex:", "^'simplex:': expected simplex:N"),
    ("0.6:-0.2:0.6", "^0.6:-0.2:0.6: expected every weight > 0"),
    ("0.6:0:0.4", "^0.6:0:0.4: expected every weight > 0"),
    ("0.5:0.2:0.2", "^0.5:0.2:0.2 sums to 0.9: expected weights summing to 1"),
    ("0.6:0.2:0.2,0.2:0.6:0.2,0.6:0.2:0.2", "^0.6:0.2:0.2 is listed twice"),
    ("0.3,0.3:0.7", "^0.3:0.7 is listed twice"),
    ("0.6:0.2:0.2,0.5:0.5", "^'0.5:0.5' weighs 2 tasks, '0.6:0.2:0.2' 3: expected every point"),
    ("0.6:x:0.2", "^'0.6:x:0.2' is not a point of numbers"),
    ("0.3,1.5", "^1.5 is out of range: expected each weight w in \\(0, 1\\)"),
    (",".join(f"{k / 100}" for k in range(1, SWEEP_MAX_POINTS + 2)), f"lists {SWEEP_MAX_POINTS + 1} points: expected "
                                                                     f"at most {SWEEP_MAX_POINTS}"),
])
def test_bad_sweeps_are_one_line_naming_the_value(text, message):
    with pytest.raises(ConfigError, match=message) as error:
        parse_sweep(text)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("text, tasks, message", [
    ("0.6:0.4", THREE, "^'0.6:0.4' weighs 2 tasks: this workload has 3 \\(t0, t1, t2\\); expected 3 weights"),
    ("0.6:0.2:0.2", ("cls", "seg"), "^'0.6:0.2:0.2' weighs 3 tasks: this workload has 2"),
    ("0.3", THREE, "^--task-weights-sweep weighs two tasks \\(w, 1-w\\); this workload has 3 \\(t0, t1, t2\\): give "
                   "simplex:N"),
    ("simplex:2", THREE, "^'simplex:2' has no interior point for 3 tasks \\(t0, t1, t2\\): expected simplex:N with "
                         "N >= 3"),
    ("simplex:20", THREE, f"^'simplex:20' gives 171 points for 3 tasks: expected at most {SWEEP_MAX_POINTS}"),
    ("simplex:4", ("t0",), "^--task-weights-sweep simplex:4: a sweep weighs 2 or more tasks; this workload has 1"),
    ("0.3", ("t0",), "^--task-weights-sweep 0.3: a sweep weighs 2 or more tasks; this workload has 1 \\(t0\\)$"),
])
def test_a_sweep_that_does_not_fit_the_workload_is_one_line(text, tasks, message):
    with pytest.raises(ConfigError, match=message) as error:
        parse_sweep(text).points_for(tasks)
    assert "\n" not in str(error.value)


# -- the rows ---------------------------------------------------------------------------------------------

def test_a_three_task_sweep_plans_one_row_per_point_named_as_a_directory_can_be(registry):
    tasks = tiny_workload(3, True).task_names
    rows, notes = plan_rows({"adam": registry.get("adam"), "mtadamv2": registry.get("mtadamv2")}, ["sum"],
                            parse_sweep("simplex:4"), tasks=tasks)
    assert [(r.name, r.task_weights, r.tasks, r.role) for r in rows] == [
        ("adam", None, tasks, "row"), ("mtadamv2", None, tasks, "row"),
        ("adam@w0.25_0.25_0.5", (0.25, 0.25, 0.5), tasks, "sweep"),
        ("adam@w0.25_0.5_0.25", (0.25, 0.5, 0.25), tasks, "sweep"),
        ("adam@w0.5_0.25_0.25", (0.5, 0.25, 0.25), tasks, "sweep")]
    assert notes == ["the task-weight sweep leaves out mtadamv2 (per-task gradients: no weighted loss to sweep)"]
    assert rows[2].options() == {"tasks": "t0,t1,t2", "task_weights": "0.25,0.25,0.5"}
    assert rows[2].weights_text == "0.25:0.25:0.5" and rows[2].weight is None
    assert not any(c in r.name for r in rows for c in ":/\\,")  # the run directories are named after the rows
    # a comparison.json record and a run's own settings give the row back
    assert RowSpec.from_record(rows[4].record(), "comparison.json") == rows[4]
    assert RowSpec.of("adam", "sum", (0.5, 0.25, 0.25), tasks) == rows[4]


def test_the_point_that_weighs_the_tasks_as_the_plain_row_does_is_that_row(registry):
    adam = {"adam": registry.get("adam")}
    rows, _ = plan_rows(adam, ["sum"], parse_sweep("simplex:3"), tasks=THREE)  # (1/3, 1/3, 1/3) only
    assert [r.name for r in rows] == ["adam"]
    rows, _ = plan_rows(adam, ["sum"], parse_sweep("simplex:4"), task_weights=(2.0, 1.0, 1.0), tasks=THREE)
    assert [r.name for r in rows] == ["adam", "adam@w0.25_0.25_0.5", "adam@w0.25_0.5_0.25"]
    assert same_weighting((2.0, 1.0, 1.0), (0.5, 0.25, 0.25)) and not same_weighting((0.5, 0.25, 0.25), None)
    assert same_weighting(None, (1 / 3, 1 / 3, 1 / 3)) and not same_weighting((0.5, 0.5), (0.5, 0.25, 0.25))


# -- the front over T tasks, each in its own direction ---------------------------------------------------

def test_the_pareto_front_with_mixed_directions_by_hand():
    # (accuracy up, depth error down, angle down)
    points = [(0.60, 0.50, 30.0),  # 0: on the front (best angle)
              (0.60, 0.40, 31.0),  # 1: on the front (best error)
              (0.55, 0.45, 32.0),  # 2: dominated by 1: lower accuracy, higher error, higher angle
              (0.70, 0.60, 35.0),  # 3: on the front (best accuracy)
              (0.60, 0.50, 30.0),  # 4: equal to 0, on the front with it
              (0.60, None, 20.0)]  # 5: missing: on no front
    directions = (True, False, False)
    assert pareto_front(points, directions) == [0, 1, 3, 4]
    # all maximised, error and angle would favour the worst
    assert pareto_front(points) == [3]
    front = [points[i] for i in (0, 1, 3)]
    assert dominated_by_front((0.58, 0.45, 32.0), front, directions)  # 1 is as good or better on each
    assert not dominated_by_front((0.58, 0.35, 32.0), front, directions)  # the lowest error
    assert not dominated_by_front((0.60, 0.40, 31.0), front, directions)  # equal to a front point
    front_labels, dominated = scalarization_front(
        {f"w{i}": p for i, p in enumerate(points)}, {"upgrad": (0.58, 0.45, 32.0), "famo": (0.5, None, 1.0)},
        directions)
    assert front_labels == ["w0", "w1", "w3", "w4"] and dominated == {"upgrad": True, "famo": None}
    assert front_against_tuned({"w1": points[1], "w2": points[2]}, (0.59, 0.41, 31.0), directions) == (["w1"], True)
    assert front_against_tuned({"w1": points[1]}, (0.59, 0.39, 31.0), directions) == (["w1"], False)


TASK_METRICS = {
    "a": [{"name": "acc_a", "title": "acc a", "higher_is_better": True, "unit": "%", "primary": True}],
    "b": [{"name": "err_b", "title": "err b", "higher_is_better": False, "unit": "m", "primary": True}],
    "c": [{"name": "angle_c", "title": "angle c", "higher_is_better": False, "unit": "deg", "primary": True},
          {"name": "within_c", "title": "within c", "higher_is_better": True, "unit": "%", "primary": False}],
}


def sweep_runs(tmp_path, figures, metrics, workload):
    """Two seeds of each row of ``figures`` (label -> {metric: value}), its method and task weights read from
    its label as compare names rows (adam, adam+upgrad, adam@w0.3, adam@w0.5_0.25_0.25)."""
    from mtbench.report.runs import load_run

    tasks = tuple(metrics)
    runs = []
    for label, values in figures.items():
        optimizer, _, method = label.partition("+")
        weights = (1 / len(tasks),) * len(tasks)
        if "@w" in label:
            optimizer, _, text = label.partition("@w")
            weights = tuple(float(w) for w in text.split("_"))
            weights = weights if len(weights) > 1 else (weights[0], 1 - weights[0])
        for seed in (0, 1):
            run = own_run(tmp_path / f"{label}-seed{seed}", optimizer, seed,
                          {name: v + 0.01 * seed for name, v in values.items()}, tasks, metrics, workload=workload)
            config = json.loads((run.path / "config.json").read_text())
            config.update(method=method or "sum", task_weights=list(weights))
            (run.path / "config.json").write_text(json.dumps(config))
            runs.append(load_run(run.path))
    return runs


def test_the_report_of_a_three_task_sweep_holds_rows_against_the_front(tmp_path):
    figures = {  # (accuracy up, error down, angle down); the plain row is the equal-weights point
        "adam": (0.60, 0.50, 30.0),
        "adam@w0.5_0.25_0.25": (0.70, 0.55, 33.0),
        "adam@w0.25_0.5_0.25": (0.55, 0.40, 32.0),
        "adam@w0.25_0.25_0.5": (0.56, 0.52, 31.0),  # dominated by adam: worse on all three
        "adam+upgrad": (0.58, 0.51, 31.0),  # dominated by adam
        "adam+famo": (0.65, 0.45, 34.0),  # not dominated: no point has both its accuracy and its error
    }
    runs = sweep_runs(tmp_path, {label: {"acc_a": acc, "err_b": err, "angle_c": angle, "within_c": 0.5}
                                 for label, (acc, err, angle) in figures.items()}, TASK_METRICS, "three")
    report = build_report(runs)
    by = {r.label: r for r in report.rows}
    assert set(by) == set(figures)
    assert {label for label, r in by.items() if r.on_front} == {"adam", "adam@w0.5_0.25_0.25", "adam@w0.25_0.5_0.25"}
    assert by["adam@w0.25_0.25_0.5"].on_front is False
    assert by["adam+upgrad"].dominated_by_front is True and by["adam+famo"].dominated_by_front is False
    line = next(s for s in report.verdict if s.startswith("Scalarization front"))
    assert line.endswith("Dominated by it (no better on any task than some weighting of the plain loss): "
                         "adam+upgrad. Not dominated: adam+famo.")
    headers = sweep_headers(report)  # a joint column only where the workload has a joint score
    assert [h for h in headers if h != "joint"] == ["row", "weights (a:b:c)", "seeds", "acc a ↑", "err b ↓",
                                                    "angle c ↓", "on front", "steps to target", "status"]
    table = {cells[0]: dict(zip(headers, cells)) for cells in sweep_rows(report)}
    assert table["adam@w0.5_0.25_0.25"]["weights (a:b:c)"] == "0.5:0.25:0.25"
    assert table["adam"]["weights (a:b:c)"] == "0.333333:0.333333:0.333333"
    assert table["adam@w0.25_0.5_0.25"]["err b ↓"].startswith("0.4")
    assert table["adam@w0.25_0.25_0.5"]["on front"] == "no" and table["adam"]["on front"] == "yes"
    figure = plot_pareto(report, tmp_path / "pareto.png")
    height, width, _ = imread(figure).shape
    assert width > 1.5 * height  # three panels side by side: one per pair of tasks


def test_another_two_task_workloads_front_is_over_its_own_metrics(tmp_path):
    digits = {t: [{"name": f"acc_{t}", "title": f"acc {t}", "higher_is_better": True, "unit": "%", "primary": True}]
              for t in ("left", "right")}
    figures = {"adam": (0.80, 0.80), "adam@w0.3": (0.70, 0.85), "adam@w0.7": (0.78, 0.70), "sgd": (0.75, 0.75)}
    report = build_report(sweep_runs(tmp_path, {label: {"acc_left": a, "acc_right": b}
                                                for label, (a, b) in figures.items()}, digits, "digits"))
    by = {r.label: r for r in report.rows}
    assert {label for label, r in by.items() if r.on_front} == {"adam", "adam@w0.3"}
    assert by["adam@w0.7"].on_front is False and by["sgd"].dominated_by_front is True
    line = next(s for s in report.verdict if s.startswith("Scalarization front"))
    assert "(no better on either task than" in line
    assert [cells[1] for cells in sweep_rows(report)] == ["0.5", "0.3", "0.7"]
    height, width, _ = imread(plot_pareto(report, tmp_path / "pareto.png")).shape
    assert width < 1.5 * height  # one panel


# -- end to end --------------------------------------------------------------------------------------------

def test_a_three_task_sweep_trains_and_reports_its_front(tmp_path, registry):
    workload = tiny_workload(3, True, name="tiny3-sweep")
    registry.workloads[workload.name] = workload
    try:
        rows, _ = plan_rows({"adam": registry.get("adam")}, ["sum", "upgrad"],
                            parse_sweep("0.6:0.2:0.2,0.2:0.6:0.2"), tasks=workload.task_names)
        out = tmp_path / "cmp"
        spec = ComparisonSpec(tuple(rows), (0,), {"epochs": 1, "device": "cpu", "limit_train": 16, "limit_val": 8},
                              workload=workload.name, out=out, progress=False, report=ReportOptions())
        result = run_comparison(spec, registry, echo=lambda line: None)
    finally:
        del registry.workloads[workload.name]
    assert {o.status for o in result.outcomes} == {"completed"}
    assert sorted(p.name for p in (out / "runs").iterdir()) == [
        "adam+upgrad-seed0", "adam-seed0", "adam@w0.2_0.6_0.2-seed0", "adam@w0.6_0.2_0.2-seed0"]
    config = json.loads((out / "runs" / "adam@w0.6_0.2_0.2-seed0" / "config.json").read_text())
    assert config["task_weights"] == [0.6, 0.2, 0.2]
    record = json.loads((out / "report.json").read_text())
    rows = {r["label"]: r for r in record["rows"]}
    assert {label: r["role"] for label, r in rows.items()} == {
        "adam": "row", "adam+upgrad": "row", "adam@w0.6_0.2_0.2": "sweep", "adam@w0.2_0.6_0.2": "sweep"}
    # the sweep's points are on the front or not; the method row is held against it
    assert all(isinstance(rows[n]["on_front"], bool) for n in ("adam", "adam@w0.6_0.2_0.2", "adam@w0.2_0.6_0.2"))
    assert any(rows[n]["on_front"] for n in ("adam", "adam@w0.6_0.2_0.2", "adam@w0.2_0.6_0.2"))
    assert isinstance(rows["adam+upgrad"]["dominated_by_front"], bool)
    assert any(line.startswith("Scalarization front (adam over task weights): ") for line in record["verdict"])
    assert "weights (t0:t1:t2)" in (out / "report.md").read_text() and (out / "pareto.png").is_file()
    rebuilt = CliRunner().invoke(main, ["report", str(out)])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert json.loads((out / "report.json").read_text()) == record
