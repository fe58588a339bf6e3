"""`mtbench compare` rows: methods crossed with optimizers, the task-weight sweep, single-task baselines,
per-method settings, comparison.json's rows, and one tiny comparison trained for real."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fakeruns import write_run
from mtbench.cli import main
from mtbench.compare import parse_methods, parse_sweep, plan_rows, split_overrides
from mtbench.report.rows import RowSpec
from mtbench.errors import ConfigError
from mtbench.plugins import load_registry


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def presets(registry, *names):
    return {name: registry.get(name) for name in names}


def described(rows):
    return [(r.name, r.optimizer, r.method, r.task_weights, r.tasks, r.role) for r in rows]


# -- planning ----------------------------------------------------------------------------------

def test_methods_are_crossed_with_the_optimizers(registry):
    rows, notes = plan_rows(presets(registry, "adam", "sgd"), ["sum", "pcgrad"])
    assert described(rows) == [
        ("adam", "adam", "sum", None, ("cls", "seg"), "row"),
        ("adam+pcgrad", "adam", "pcgrad", None, ("cls", "seg"), "row"),
        ("sgd", "sgd", "sum", None, ("cls", "seg"), "row"),
        ("sgd+pcgrad", "sgd", "pcgrad", None, ("cls", "seg"), "row"),
    ]
    assert notes == []


def test_an_optimizer_taking_per_task_gradients_composes_with_sum_only(registry):
    rows, notes = plan_rows(presets(registry, "adam", "mtadamv2"), ["sum", "pcgrad", "upgrad"])
    assert [r.name for r in rows] == ["adam", "adam+pcgrad", "adam+upgrad", "mtadamv2"]
    assert notes == ["mtadamv2 with pcgrad, upgrad left out: mtadamv2 takes the tasks' gradients apart and "
                     "balances them itself, so it composes with the method sum only"]
    with pytest.raises(ConfigError, match="^no row left to compare: mtadamv2 with pcgrad, upgrad do not compose; "
                                          "add sum to --methods"):
        plan_rows(presets(registry, "mtadamv2"), ["pcgrad", "upgrad"])


def test_the_sweep_weights_each_single_gradient_optimizer(registry):
    rows, notes = plan_rows(presets(registry, "adam", "mtadamv2"), ["sum"], sweep=(0.1, 0.7))
    assert described(rows[2:]) == [
        ("adam@w0.1", "adam", "sum", (0.1, 0.9), ("cls", "seg"), "sweep"),
        ("adam@w0.7", "adam", "sum", (0.7, 0.3), ("cls", "seg"), "sweep"),  # 0.3, not 0.30000000000000004
    ]
    assert rows[3].options() == {"tasks": "cls,seg", "task_weights": "0.7,0.3"}
    assert notes == ["the task-weight sweep leaves out mtadamv2 (per-task gradients: no weighted loss to sweep)"]
    with pytest.raises(ConfigError, match="^--task-weights-sweep weights the loss of a single-gradient optimizer"):
        plan_rows(presets(registry, "mtadamv2"), ["sum"], sweep=(0.5,))


def test_a_sweep_weight_of_one_half_is_the_plain_row_and_is_not_trained_twice(registry):
    rows, _ = plan_rows(presets(registry, "adam"), ["sum"], sweep=(0.3, 0.5))
    assert [r.name for r in rows] == ["adam", "adam@w0.3"]


def test_the_sweep_is_planned_around_the_comparisons_own_task_weights(registry):
    # The plain row trains at the comparison's task weights: the sweep point that weighs the tasks as
    # they do is that row, and w = 0.5 is a point of its own.
    rows, _ = plan_rows(presets(registry, "adam"), ["sum"], sweep=(0.5, 0.2), task_weights=(0.2, 0.8))
    assert described(rows) == [
        ("adam", "adam", "sum", None, ("cls", "seg"), "row"),
        ("adam@w0.5", "adam", "sum", (0.5, 0.5), ("cls", "seg"), "sweep"),
    ]
    rows, _ = plan_rows(presets(registry, "adam"), ["sum"], sweep=(0.5, 0.3), task_weights=(1.0, 1.0))
    assert [r.name for r in rows] == ["adam", "adam@w0.3"]  # (1, 1) weighs the tasks as (0.5, 0.5) does


def test_single_task_baselines(registry):
    rows, _ = plan_rows(presets(registry, "sgd"), ["sum"], baseline=registry.get("adam"))
    assert described(rows) == [
        ("sgd", "sgd", "sum", None, ("cls", "seg"), "row"),
        ("adam[cls]", "adam", "sum", (1.0, 0.0), ("cls",), "baseline"),
        ("adam[seg]", "adam", "sum", (0.0, 1.0), ("seg",), "baseline"),
    ]
    assert rows[2].options() == {"tasks": "seg", "task_weights": "0.0,1.0"}
    with pytest.raises(ConfigError, match="^--baseline mtadamv2 takes per-task gradients: a single-task baseline "
                                          "needs a single-gradient optimizer such as adam$"):
        plan_rows(presets(registry, "sgd"), ["sum"], baseline=registry.get("mtadamv2"))


@pytest.mark.parametrize("text, weights", [("0.3", (0.3,)), (" 0.1, 0.5 ,0.9", (0.1, 0.5, 0.9)), ("1e-3", (0.001,))])
def test_parse_sweep(text, weights):
    assert parse_sweep(text).points_for(("cls", "seg")) == tuple((w, round(1 - w, 12)) for w in weights)


@pytest.mark.parametrize("text, message", [
    ("0", "^0 is out of range: expected each weight w in \\(0, 1\\)"),
    ("0.3,1", "^1 is out of range"), ("1.5", "^1.5 is out of range"), ("-0.2", "^-0.2 is out of range"),
    ("nan", "^nan is out of range"), ("0.3,x", "^'x' is not a number"), ("0.3,,0.5", "^'' is not a number"),
    (" , ", "is empty"), ("0.3,0.3", "^0.3 is listed twice"),
])
def test_parse_sweep_rejects(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_sweep(text)


def test_parse_methods(registry):
    assert parse_methods(" sum, pcgrad ", registry) == ["sum", "pcgrad"]
    with pytest.raises(ConfigError, match="^unknown method 'pcgard'; did you mean 'pcgrad'\\?"):
        parse_methods("sum,pcgard", registry)
    with pytest.raises(ConfigError, match="'upgrad' is listed twice"):
        parse_methods("upgrad,upgrad", registry)
    with pytest.raises(ConfigError, match="is empty"):
        parse_methods(",", registry)


def test_method_settings_go_to_their_rows(registry):
    methods = {"sum": None, "pcgrad": registry.get_method("pcgrad"), "upgrad": registry.get_method("upgrad")}
    overrides = split_overrides(["upgrad.reg_eps=0.02", "method.reg_eps=0.01", "pcgrad.seed=3", "lr=0.1"],
                                presets(registry, "adam"), methods)
    assert overrides.optimizers == {"adam": ["lr=0.1"]}
    assert overrides.methods == {"pcgrad": ["seed=3"], "upgrad": ["reg_eps=0.01", "reg_eps=0.02"]}  # scoped wins
    assert overrides.notes == ["--set method.reg_eps=0.01 applies to upgrad only (the others do not accept 'reg_eps')"]
    assert overrides.for_row(RowSpec("adam+upgrad", "adam", "upgrad")) == [
        "lr=0.1", "method.reg_eps=0.01", "method.reg_eps=0.02"]
    assert overrides.for_row(RowSpec("adam", "adam")) == ["lr=0.1"]


@pytest.mark.parametrize("item, methods, message", [
    ("sum.x=1", ("sum", "pcgrad"), "^--set sum.x=1: the method sum takes no settings$"),
    ("method.seed=1", ("sum",), "^--set method.seed=1: the compared methods \\(sum\\) take no settings"),
    ("method.nosuch=1", ("sum", "pcgrad"), "^--set method.nosuch=1: none of the compared methods accepts 'nosuch'"),
    ("upgrad.reg_eps=1", ("pcgrad",), "^--set upgrad.reg_eps=1: 'upgrad' is not one of the compared optimizers "
                                      "\\(adam\\) or methods \\(pcgrad\\)$"),
])
def test_method_settings_rejected(registry, item, methods, message):
    table = {m: None if m == "sum" else registry.get_method(m) for m in methods}
    with pytest.raises(ConfigError, match=message):
        split_overrides([item], presets(registry, "adam"), table)


# -- the command, with a stand-in trainer ------------------------------------------------------

class RowTrainer:
    """Writes a completed run directory for every call and records what each run was given."""

    def __init__(self):
        self.calls = []

    def __call__(self, config, preset, *, method=None, workload=None, resume=False, progress=True, echo=print):
        self.calls.append((Path(config.run_dir).name, config, method))
        write_run(config.run_dir, optimizer=config.optimizer, seed=config.seed, init_sha=f"init-{config.seed}",
                  curve=[(0.5, 0.3)], method=config.method, task_weights=config.task_weights, tasks=config.tasks)
        return json.loads((Path(config.run_dir) / "summary.json").read_text())


@pytest.fixture
def fake(monkeypatch):
    trainer = RowTrainer()
    monkeypatch.setattr("mtbench.train.train", trainer)
    return trainer


ROWS_ARGS = ["--optimizers", "adam,mtadamv2", "--methods", "sum,pcgrad", "--task-weights-sweep", "0.3",
             "--single-task", "--seeds", "2"]


def compare(out, *args):
    return CliRunner().invoke(main, ["compare", "--epochs", "2", "-q", "--out", str(out), *args])


def test_compare_plans_and_records_rows(tmp_path, fake):
    out = tmp_path / "cmp"
    result = compare(out, *ROWS_ARGS, "--set", "pcgrad.seed=5")
    assert result.exit_code == 0, result.output
    assert "note: mtadamv2 with pcgrad left out: mtadamv2 takes the tasks' gradients apart" in result.output
    assert "note: the task-weight sweep leaves out mtadamv2" in result.output
    names = ["adam", "adam+pcgrad", "mtadamv2", "adam@w0.3", "adam[cls]", "adam[seg]"]
    assert f"6 rows x 2 seeds (0, 1) = 12 runs: {', '.join(names)}" in result.output
    assert [c[0] for c in fake.calls] == [f"{n}-seed{s}" for s in (0, 1) for n in names]
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(f"{n}-seed{s}" for s in (0, 1) for n in names)

    record = json.loads((out / "comparison.json").read_text())
    assert record["optimizers"] == ["adam", "mtadamv2"] and record["seeds"] == [0, 1]
    assert record["rows"] == [
        {"name": "adam", "optimizer": "adam", "method": "sum", "task_weights": [0.5, 0.5], "tasks": ["cls", "seg"],
         "role": "row"},
        {"name": "adam+pcgrad", "optimizer": "adam", "method": "pcgrad", "task_weights": [0.5, 0.5],
         "tasks": ["cls", "seg"], "role": "row"},
        {"name": "mtadamv2", "optimizer": "mtadamv2", "method": "sum", "task_weights": [0.5, 0.5],
         "tasks": ["cls", "seg"], "role": "row"},
        {"name": "adam@w0.3", "optimizer": "adam", "method": "sum", "task_weights": [0.3, 0.7],
         "tasks": ["cls", "seg"], "role": "sweep"},
        {"name": "adam[cls]", "optimizer": "adam", "method": "sum", "task_weights": [1.0, 0.0], "tasks": ["cls"],
         "role": "baseline"},
        {"name": "adam[seg]", "optimizer": "adam", "method": "sum", "task_weights": [0.0, 1.0], "tasks": ["seg"],
         "role": "baseline"},
    ]
    settings = record["settings"]
    assert list(settings) == names
    assert settings["adam+pcgrad"]["method"] == "pcgrad" and settings["adam+pcgrad"]["method_settings"] == {"seed": 5}
    assert all(s["holdout"] == 0.1 for s in settings.values())  # compare's default

    given = {name: (config, method) for name, config, method in fake.calls}
    config, method = given["adam+pcgrad-seed1"]
    assert method is not None and method.name == "pcgrad" and config.method_settings == {"seed": 5}
    assert all(m is None for n, (_, m) in given.items() if not n.startswith("adam+pcgrad"))
    assert given["adam[seg]-seed0"][0].tasks == ("seg",) and given["adam@w0.3-seed0"][0].task_weights == (0.3, 0.7)


def test_a_sweep_around_other_task_weights_trains_each_weighting_once(tmp_path, fake):
    out = tmp_path / "cmp"
    result = compare(out, "--optimizers", "adam", "--task-weights", "0.2,0.8", "--task-weights-sweep", "0.5,0.2")
    assert result.exit_code == 0, result.output
    assert {name: config.task_weights for name, config, _ in fake.calls} == {
        "adam-seed0": (0.2, 0.8), "adam@w0.5-seed0": (0.5, 0.5)}
    rows = {row["label"]: row for row in json.loads((out / "report.json").read_text())["rows"]}
    assert {label: (row["role"], row["task_weights"]) for label, row in rows.items()} == {
        "adam": ("row", [0.2, 0.8]), "adam@w0.5": ("sweep", [0.5, 0.5])}
    assert all(isinstance(row["on_front"], bool) for row in rows.values())  # both are points of the front


def test_a_simplex_sweep_on_a_three_task_workload_plans_its_rows(tmp_path, fake):
    out = tmp_path / "cmp"
    result = compare(out, "--workload", "nyuv2", "--optimizers", "adam", "--task-weights-sweep", "simplex:4")
    names = ["adam", "adam@w0.25_0.25_0.5", "adam@w0.25_0.5_0.25", "adam@w0.5_0.25_0.25"]
    assert f"4 rows x 1 seed (0) = 4 runs: {', '.join(names)}" in result.output, result.output
    assert {name: config.task_weights for name, config, _ in fake.calls} == {
        "adam-seed0": (1 / 3, 1 / 3, 1 / 3), "adam@w0.25_0.25_0.5-seed0": (0.25, 0.25, 0.5),
        "adam@w0.25_0.5_0.25-seed0": (0.25, 0.5, 0.25), "adam@w0.5_0.25_0.25-seed0": (0.5, 0.25, 0.25)}
    record = json.loads((out / "comparison.json").read_text())
    assert [(r["name"], r["role"]) for r in record["rows"]] == [(names[0], "row")] + [(n, "sweep") for n in names[1:]]


def test_a_method_seed_that_follows_the_run_seed_is_left_out_of_the_record(tmp_path, fake):
    out = tmp_path / "cmp"
    assert compare(out, "--optimizers", "adam", "--methods", "pcgrad", "--seeds", "3,4").exit_code == 0
    assert [c[1].method_settings for c in fake.calls] == [{"seed": 3}, {"seed": 4}]
    assert json.loads((out / "comparison.json").read_text())["settings"]["adam+pcgrad"]["method_settings"] == {}
    # A seed set to the same value for every run is a setting of its own, and another comparison.
    again = compare(out, "--optimizers", "adam", "--methods", "pcgrad", "--seeds", "3,4", "--set", "pcgrad.seed=3")
    assert again.exit_code == 1
    assert "holds a comparison with other settings (method_settings.seed: 3 now, unset there)" \
        in again.output


def test_rows_resume_and_other_rows_are_refused(tmp_path, fake, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["compare", "--epochs", "2", "-q", "--optimizers", "adam", "--methods", "sum,upgrad", "--holdout", "0"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    (made,) = (tmp_path / "comparisons").iterdir()
    assert json.loads((made / "comparison.json").read_text())["settings"]["adam"]["holdout"] == 0.0
    again = CliRunner().invoke(main, args)
    assert f"comparison directory: comparisons/{made.name} (resuming: 2 of 2 runs completed)" in again.output
    assert "[2/2] adam+upgrad seed 0: completed before, skipped" in again.output
    other = compare(made, "--optimizers", "adam", "--methods", "sum,pcgrad", "--holdout", "0")
    assert other.exit_code == 1
    assert "holds a comparison with other settings (rows: adam,adam+pcgrad now, adam,adam+upgrad there)" \
        in other.output
    assert len(fake.calls) == 2


def test_a_comparison_recorded_before_rows_resumes(tmp_path, fake):
    out = tmp_path / "cmp"
    assert compare(out, "--optimizers", "sgd,adam").exit_code == 0
    path = out / "comparison.json"
    old = json.loads(path.read_text())
    del old["rows"]  # as an older mtbench wrote it: runs/<optimizer>-seed<k> are the sum rows
    path.write_text(json.dumps(old))
    result = compare(out, "--optimizers", "sgd,adam")
    assert result.exit_code == 0, result.output
    assert "(resuming: 2 of 2 runs completed)" in result.output
    refused = compare(out, "--optimizers", "sgd,adam", "--methods", "sum,pcgrad")
    assert refused.exit_code == 1 and "(rows: sgd,sgd+pcgrad,adam,adam+pcgrad now, sgd,adam there)" in refused.output


@pytest.mark.parametrize("args, message", [
    (["--methods", "sum,pcgard"], "Error: Invalid value for --methods: unknown method 'pcgard'; did you mean 'pcgrad'?"),
    (["--methods", "sum,sum"], "Error: Invalid value for --methods: 'sum' is listed twice"),
    (["--task-weights-sweep", "0.3,1.5"],
     "Error: Invalid value for --task-weights-sweep: 1.5 is out of range: expected each weight w in (0, 1)"),
    (["--task-weights-sweep", "0.3,half"], "Error: Invalid value for --task-weights-sweep: 'half' is not a number"),
    (["--task-weights-sweep", "simplex:0"],
     "Error: Invalid value for --task-weights-sweep: 'simplex:0': expected simplex:N with N an integer from 2"),
    (["--task-weights-sweep", "0.6:0.2:0.2"], "Error: '0.6:0.2:0.2' weighs 3 tasks: this workload has 2 (cls, seg)"),
    (["--workload", "nyuv2", "--task-weights-sweep", "0.3"],
     "Error: --task-weights-sweep weighs two tasks (w, 1-w); this workload has 3 (seg, depth, normal): give simplex:N"),
    (["--workload", "nyuv2", "--task-weights-sweep", "simplex:30"],
     "Error: 'simplex:30' gives 406 points for 3 tasks: expected at most 64"),
    (["--single-task", "--baseline", "mtadamv2"],
     "Error: --baseline mtadamv2 takes per-task gradients: a single-task baseline needs a single-gradient optimizer"),
    (["--single-task", "--baseline", "adamx"], "Error: Invalid value for --baseline: unknown optimizer 'adamx'; "
                                               "did you mean 'adam"),
    (["--baseline", "sgd"], "Error: Invalid value for --baseline: --baseline sgd names the optimizer of the "
                            "single-task baselines; add --single-task to run them"),
    (["--optimizers", "mtadamv2", "--methods", "pcgrad"], "Error: no row left to compare: mtadamv2 with pcgrad"),
    (["--method", "pcgrad"], "Error: Invalid value for --method: --method pcgrad: compare crosses --methods with "
                             "the optimizers, e.g. --methods sum,pcgrad"),
    (["--tasks", "cls"], "Error: Invalid value for --tasks: --tasks cls: every compared row trains all the workload's tasks (cls, seg)"),
    (["--methods", "sum,pcgrad", "--set", "pcgrad.nosuch=1"],
     "Error: adam+pcgrad: unknown setting 'nosuch' for method 'pcgrad'; accepted: seed"),
])
def test_bad_rows_input_is_one_line(tmp_path, fake, args, message):
    result = compare(tmp_path / "c", *(["--optimizers", "adam"] if "--optimizers" not in args else []), *args)
    assert result.exit_code in (1, 2)
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and errors[0].startswith(message), result.output
    assert "Traceback" not in result.output and fake.calls == []


# -- end to end, with the trainer --------------------------------------------------------------

@pytest.mark.slow
def test_a_tiny_comparison_of_rows_trains_every_run(tmp_path):
    out = tmp_path / "cmp"
    result = CliRunner().invoke(main, [
        "compare", "--seeds", "3", "--methods", "sum,pcgrad", "--optimizers", "adam", "--task-weights-sweep",
        "0.3,0.7", "--single-task", "--image-size", "32", "--limit-train", "16", "--limit-val", "8",
        "--epochs", "1", "--device", "cpu", "-q", "--out", str(out)])
    assert result.exit_code == 0, result.output
    names = ["adam", "adam+pcgrad", "adam@w0.3", "adam@w0.7", "adam[cls]", "adam[seg]"]
    summaries = {p.parent.name: json.loads(p.read_text()) for p in out.glob("runs/*/summary.json")}
    assert sorted(summaries) == sorted(f"{n}-seed{s}" for n in names for s in (0, 1, 2))
    assert all(s["status"] == "completed" for s in summaries.values())
    # a run evaluates the tasks it trains: a single-task baseline has no figures of the other task's head
    assert all((s["holdout_top1"] is not None) == ("cls" in s["tasks"]) for s in summaries.values())
    assert all((s["holdout_miou"] is not None) == ("seg" in s["tasks"]) for s in summaries.values())
    for seed in (0, 1, 2):
        runs = {n: summaries[f"{n}-seed{seed}"] for n in names}
        assert len({s["init_weights_sha256"] for s in runs.values()}) == 1  # every row from the same weights
        assert runs["adam+pcgrad"]["method"] == "pcgrad" and runs["adam@w0.7"]["task_weights"] == [0.7, 0.3]
        assert runs["adam[cls]"]["tasks"] == ["cls"] and runs["adam[seg]"]["tasks"] == ["seg"]
        first = {n: json.loads((out / f"runs/{n}-seed{seed}/metrics.jsonl").read_text().splitlines()[0])
                 for n in names}
        # the same first batch: the losses before any update agree, a single-task run's included
        for n in names:
            for task in runs[n]["tasks"]:
                assert first[n][f"loss_{task}"] == pytest.approx(first["adam"][f"loss_{task}"], rel=1e-5)
        assert first["adam+pcgrad"]["grad_cosine"] is not None and "grad_cosine" not in first["adam"]
    record = json.loads((out / "comparison.json").read_text())
    assert [r["name"] for r in record["rows"]] == names
    assert [r["role"] for r in record["rows"]] == ["row", "row", "sweep", "sweep", "baseline", "baseline"]
    for name in ("report.md", "report.csv", "report.json", "loss.png", "validation.png", "final.png",
                 "pareto.png", "conflict.png"):
        assert (out / name).stat().st_size > 0, name
    rows = {r["label"]: r for r in json.loads((out / "report.json").read_text())["rows"]}
    assert sorted(rows) == sorted(names)  # one row each: a random method's seed follows the run's
    for name in ("adam", "adam+pcgrad"):  # the compared rows, tested against the best
        assert rows[name]["metrics"]["joint"]["n"] == 3 and rows[name]["tied_with_best"] is not None
    # adam (w = 0.5) is a point of the front; adam+pcgrad is placed against it
    assert isinstance(rows["adam"]["on_front"], bool) and isinstance(rows["adam+pcgrad"]["dominated_by_front"], bool)
    # a baseline at chance (top-1 0 after one tiny epoch) leaves Δm undefined, and the report says why
    assert "Δm of adam: not computed" in (out / "report.md").read_text() or rows["adam"]["metrics"]["delta_m"]
