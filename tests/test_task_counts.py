"""Every command for workloads of T = 1..8 tasks, in both data shapes (a batch per task, one batch labelled for
every task): compare and its report (rows, verdict, per-task metrics, Δm against single-task baselines, the
figures), report rebuilding it, compare and tune across workloads, tune (its objective and the task weights),
bench, TensorBoard's scalars, and what one task means for the per-task gradients, MTAdamV2 and every method.

The workloads are tests/tiny_workloads.py's, loaded as a plugin (``tiny<T>-split``, ``tiny<T>-shared``): a
tiny network on 32 x 32 random images, one epoch of a few steps.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mtbench.cli import main
from mtbench.config import build_config
from mtbench.plugins import load_registry
from mtbench.presets import OptimizerPreset
from mtbench.train import Trainer, train
from recorder import Recorder, recorded_step
from tiny_workloads import tiny_workload

TINY = Path(__file__).with_name("tiny_workloads.py")
# One epoch of 2 or 3 steps: 12 training images per task (one held out by compare and tune), 8 to test on.
FAST = ["--epochs", "1", "--batch-size", "4", "--limit-train", "12", "--limit-val", "8", "--device", "cpu", "-q"]
REGISTRY = load_registry(environ={})


def invoke(args: list[str]):
    """The CLI with the tiny workloads as a plugin, given with --plugin (none from $MTBENCH_PLUGINS)."""
    return CliRunner().invoke(main, ["--plugin", str(TINY), *args],
                              env={"MTBENCH_PLUGINS": "", "MTBENCH_DISABLE_PLUGINS": ""})


def shape(shared: bool) -> str:
    return "shared" if shared else "split"


def summaries(folder: Path) -> dict[str, dict]:
    """summary.json of every run under ``folder``/runs or ``folder``/trials, by run directory name."""
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(folder.glob("*/*/summary.json"))}


@pytest.fixture
def no_figures(monkeypatch):
    """Reports without their figures (matplotlib takes most of a tiny comparison's time); where a test is about
    the figures, or about a comparison that draws them, it leaves this fixture out."""
    import mtbench.report.plots

    monkeypatch.setattr(mtbench.report.plots, "write_plots", lambda report, out: [])


def joint(summary: dict) -> float:
    """The run's joint score by hand: the mean of its tasks' primary metrics (acc<t>), on the test split."""
    return statistics.fmean(summary["final_metrics"][f"acc{t[1:]}"] for t in summary["tasks"])


# -- compare and report ------------------------------------------------------------------------

@pytest.mark.parametrize("num_tasks, shared, figures", [(1, False, False), (1, True, True), (8, False, True),
                                                       (8, True, False)])
def test_compare_ranks_every_kind_of_row_on_the_workloads_own_metrics(tmp_path, request, num_tasks, shared, figures):
    if not figures:
        request.getfixturevalue("no_figures")
    workload = f"tiny{num_tasks}-{shape(shared)}"
    losses_only = "dwa" if shared else "famo"
    out = tmp_path / "cmp"
    result = invoke(["compare", "--workload", workload, "--optimizers", "adam,mtadamv2", "--methods",
                     f"sum,upgrad,{losses_only}", "--seeds", "2", *FAST, "--out", str(out)])
    assert result.exit_code == 0, result.output
    labels = ["adam", "adam+upgrad", f"adam+{losses_only}", "mtadamv2"]
    runs = summaries(out)
    assert sorted(runs) == sorted(f"{label}-seed{seed}" for label in labels for seed in (0, 1))
    tasks = [f"t{t}" for t in range(num_tasks)]
    assert all(s["status"] == "completed" and s["tasks"] == tasks and s["workload"] == workload for s in runs.values())

    report = json.loads((out / "report.json").read_text())
    rows = {row["label"]: row for row in report["rows"]}
    assert list(rows) == labels and {row["role"] for row in rows.values()} == {"row"}
    assert all(row["status"] == "ok" and row["completed"] == 2 for row in rows.values())
    assert report["primary"] == "joint" and not report["baselines"]
    assert [m["name"] for m in report["task_metrics"]["metrics"]] == [f"acc{t}" for t in range(num_tasks)]
    by_hand = {label: statistics.fmean(joint(runs[f"{label}-seed{seed}"]) for seed in (0, 1)) for label in labels}
    for label, row in rows.items():
        assert row["metrics"]["joint"]["mean"] == pytest.approx(by_hand[label], abs=1e-12)
        last = f"acc{num_tasks - 1}"
        assert report["task_metrics"]["rows"][label][last]["mean"] == pytest.approx(statistics.fmean(
            runs[f"{label}-seed{seed}"]["final_metrics"][last] for seed in (0, 1)))
    best = report["verdict"][0]
    assert best.startswith("Best joint score: ")
    named = best.removeprefix("Best joint score: ").split(" (")[0]
    assert by_hand[named] == max(by_hand.values())

    markdown = (out / "report.md").read_text()
    assert re.search(r"\| row +\| seeds +" + "".join(rf"\| acc {t} ↑ +" for t in range(num_tasks)) + r"\|\n", markdown)
    written = {name: (out / name).read_text() for name in ("report.json", "report.md")}
    rebuilt = invoke(["report", str(out)])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert {name: (out / name).read_text() for name in written} == written
    refused = invoke(["report", str(out), "--primary", "top1"])  # ImageNet's metric: nothing to rank here
    assert refused.exit_code == 1 and refused.output.strip().splitlines() == [
        f"Error: --primary top1 is a metric of ImageNet + COCO; workload {workload} is ranked by joint or delta_m"]
    assert {name: (out / name).read_text() for name in written} == written
    # the run directories alone, without comparison.json: every row still trains all the workload's tasks
    loose = invoke(["report", str(out / "runs"), "--out", str(tmp_path / "loose")])
    assert loose.exit_code == 0, loose.output
    rows = json.loads((tmp_path / "loose" / "report.json").read_text())["rows"]
    assert sorted((row["label"], row["role"]) for row in rows) == sorted((label, "row") for label in labels)


@pytest.mark.parametrize("shared", [False, True])
def test_single_task_baselines_at_three_tasks_give_each_rows_delta_m(tmp_path, no_figures, shared):
    out = tmp_path / "cmp"
    result = invoke(["compare", "--workload", f"tiny3-{shape(shared)}", "--optimizers", "adam", "--methods",
                     "sum,upgrad", "--single-task", "--primary", "delta_m", "--seeds", "2", "--tasks", "t2,t0,t1",
                     *FAST, "--limit-val", "16", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    rows = {row["label"]: row for row in report["rows"]}
    assert {label: (row["role"], row["tasks"]) for label, row in rows.items()} == {
        "adam": ("row", ["t0", "t1", "t2"]), "adam+upgrad": ("row", ["t0", "t1", "t2"]),
        "adam[t0]": ("baseline", ["t0"]), "adam[t1]": ("baseline", ["t1"]), "adam[t2]": ("baseline", ["t2"])}
    assert report["baselines"] == {"t0": "adam[t0]", "t1": "adam[t1]", "t2": "adam[t2]"}
    runs = summaries(out)
    for t in range(3):  # a baseline trains its task alone: the others' losses weigh nothing
        assert runs[f"adam[t{t}]-seed0"]["tasks"] == [f"t{t}"]
        assert runs[f"adam[t{t}]-seed0"]["task_weights"] == [1.0 if u == t else 0.0 for u in range(3)]

    def delta_m(label: str, seed: int) -> float:  # LibMTL's Δm, by hand: all higher-is-better metrics
        row = runs[f"{label}-seed{seed}"]["final_metrics"]
        base = {t: runs[f"adam[t{t}]-seed{seed}"]["final_metrics"][f"acc{t}"] for t in range(3)}
        return statistics.fmean(100 * (row[f"acc{t}"] - base[t]) / base[t] for t in range(3))

    for label in ("adam", "adam+upgrad"):
        assert rows[label]["metrics"]["delta_m"]["mean"] == pytest.approx(
            statistics.fmean(delta_m(label, seed) for seed in (0, 1)), rel=1e-9)
    assert report["primary"] == "delta_m" and report["verdict"][0].startswith("Best Δm: ")
    markdown = (out / "report.md").read_text()
    # the baselines' figures are in the workload's metric table; ImageNet + COCO's columns and guide are not here
    assert "| row      | task | seeds | used for Δm | status |" in markdown
    assert "top-1" not in markdown and "mIoU" not in markdown and "ImageNet" not in markdown
    written = (out / "report.json").read_text()
    rebuilt = invoke(["report", str(out), "--primary", "delta_m"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert (out / "report.json").read_text() == written


@pytest.mark.parametrize("args, message", [
    (["--workload", "tiny3-shared", "--tasks", "t0,t2"],
     "Error: Invalid value for --tasks: --tasks t0,t2: every compared row trains all the workload's tasks (t0, t1, "
     "t2); --single-task adds a single-task baseline per task"),
    (["--workload", "tiny3-split", "--tasks", "t0,t1,t2,t3"],
     "Error: Invalid value for --tasks: --tasks t0,t1,t2,t3: every compared row trains all the workload's tasks "
     "(t0, t1, t2); --single-task adds a single-task baseline per task"),
    (["--workload", "tiny1-split", "--single-task"],
     "Error: --single-task runs a baseline per task of a workload of several; this workload has one task (t0): its "
     "rows are single-task runs already"),
    (["--workload", "tiny3-shared", "--primary", "top1"],
     "Error: Invalid value for --primary: --primary top1 is a metric of ImageNet + COCO; this workload's tasks "
     "(t0, t1, t2) are ranked by joint or delta_m"),
    (["--workload", "tiny8-split", "--primary", "miou"],
     "Error: Invalid value for --primary: --primary miou is a metric of ImageNet + COCO; this workload's tasks "
     "(t0, t1, t2, t3, t4, t5, t6, t7) are ranked by joint or delta_m"),
    (["--workload", "tiny1-shared", "--task-weights-sweep", "0.3"], "--task-weights-sweep"),
])
def test_compare_refuses_what_a_workloads_tasks_cannot_do_in_one_line(tmp_path, args, message):
    result = invoke(["compare", "--optimizers", "adam", *args, *FAST, "--out", str(tmp_path / "cmp")])
    assert result.exit_code in (1, 2)
    line = result.output.strip().splitlines()[-1]  # after click's usage lines, where it gives them
    assert line == message if message.startswith("Error: ") else line.startswith(f"Error: {message}")
    assert not (tmp_path / "cmp").exists()  # refused before anything was planned or trained


def test_compare_across_workloads_of_one_and_eight_tasks_profiles_each_ones_joint(tmp_path, no_figures):
    out, workloads = tmp_path / "across", ["tiny1-shared", "tiny8-split"]
    result = invoke(["compare", "--workloads", ",".join(workloads), "--optimizers", "adam,mtadamv2", "--methods",
                     "sum,upgrad", *FAST, "--out", str(out)])
    assert result.exit_code == 0, result.output
    scores = json.loads((out / "report.json").read_text())["score_profile"]["rows"]
    assert sorted(scores) == ["adam", "adam+upgrad", "mtadamv2"]
    for workload, num_tasks in zip(workloads, (1, 8)):
        rows = {row["label"]: row for row in json.loads((out / workload / "report.json").read_text())["rows"]}
        assert sorted(rows) == sorted(scores) and {row["role"] for row in rows.values()} == {"row"}
        runs = summaries(out / workload)
        for label, row in rows.items():
            assert runs[f"{label}-seed0"]["tasks"] == [f"t{t}" for t in range(num_tasks)]
            assert scores[label]["scores"][workload] == pytest.approx(joint(runs[f"{label}-seed0"]))


# -- tune ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("num_tasks, shared", [(1, False), (8, True)])
def test_tune_scores_each_trial_on_the_holdout_joint_of_every_task(tmp_path, num_tasks, shared):
    workload, out = f"tiny{num_tasks}-{shape(shared)}", tmp_path / "tune"
    result = invoke(["tune", "--workload", workload, "--optimizers", "adam,mtadamv2", "--trials", "1", *FAST,
                     "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "tune.json").read_text())
    titles = [f"acc {t}" for t in range(num_tasks)]
    assert report["workload"] == workload and report["joint"] == (
        f"joint = {titles[0]}" if num_tasks == 1 else f"joint = mean of {', '.join(titles[:-1])} and {titles[-1]}")
    trials = {t["name"]: t for o in report["optimizers"] for t in o["trials"]}
    runs = summaries(out)
    assert sorted(trials) == sorted(runs) == ["adam-t0", "adam-t1", "mtadamv2-t0", "mtadamv2-t1"]
    for name, trial in trials.items():
        summary = runs[name]
        assert summary["status"] == "completed" and summary["tasks"] == [f"t{t}" for t in range(num_tasks)]
        held = summary["holdout_metrics"]
        assert trial["value"] == pytest.approx(statistics.fmean(held[f"acc{t}"] for t in range(num_tasks)))


@pytest.mark.parametrize("num_tasks, shared", [(2, False), (8, True)])
def test_tune_searches_the_task_weights_of_every_task(tmp_path, no_figures, num_tasks, shared):
    out = tmp_path / "tune"
    result = invoke(["tune", "--workload", f"tiny{num_tasks}-{shape(shared)}", "--optimizers", "adam",
                     "--search-task-weights", "--trials", "2", *FAST, "--out", str(out)])
    assert result.exit_code == 0, result.output
    (tuned,) = json.loads((out / "tune.json").read_text())["optimizers"]
    weights = {name: json.loads((out / "trials" / name / "config.json").read_text())["task_weights"]
               for name in ("adam-t0", "adam-t1", "adam-t2")}
    assert weights["adam-t0"] == [1 / num_tasks] * num_tasks  # the preset's trial: equal weights
    for name in ("adam-t1", "adam-t2"):  # the search's points: inside the simplex of the T tasks
        assert len(weights[name]) == num_tasks and sum(weights[name]) == pytest.approx(1.0)
        assert all(w > 0 for w in weights[name]) and weights[name] != weights["adam-t0"]
    assert weights["adam-t1"] != weights["adam-t2"]
    best = tuned["best"]
    assert best["settings"]["task_weights"] == pytest.approx(weights[best["name"]], rel=1e-9)
    assert list(tuned["space"]) == [f"task_weights.q{q}" for q in range(1, num_tasks)]

    compared = tmp_path / "cmp"  # the best weighting as a row of a comparison, held against the plain sum
    result = invoke(["compare", "--workload", f"tiny{num_tasks}-{shape(shared)}", "--optimizers", "adam",
                     "--tuned-scalarization", str(out), *FAST, "--out", str(compared)])
    assert result.exit_code == 0, result.output
    runs = {name: json.loads((compared / "runs" / name / "config.json").read_text())
            for name in ("adam-seed0", "adam@tuned-seed0")}
    assert runs["adam-seed0"]["task_weights"] == [1 / num_tasks] * num_tasks
    assert runs["adam@tuned-seed0"]["task_weights"] == pytest.approx(best["settings"]["task_weights"], rel=1e-9)


def test_tune_across_workloads_of_one_and_eight_tasks_runs_each_ones_finals(tmp_path, no_figures):
    out = tmp_path / "tunes"
    result = invoke(["tune", "--workloads", "tiny1-shared,tiny8-split", "--optimizers", "adam", "--trials", "1",
                     "--final-seeds", "1", *FAST, "--out", str(out)])
    assert result.exit_code == 0, result.output
    for workload, num_tasks in (("tiny1-shared", 1), ("tiny8-split", 8)):
        assert json.loads((out / workload / "tune.json").read_text())["workload"] == workload
        finals = list((out / workload / "final").glob("*/*/*/runs/*/summary.json"))
        assert len(finals) == 2  # the tuned setting and the preset, one seed each
        for path in finals:
            summary = json.loads(path.read_text())
            assert summary["status"] == "completed" and summary["workload"] == workload
            assert summary["tasks"] == [f"t{t}" for t in range(num_tasks)]


def test_tune_refuses_to_search_the_weights_of_one_task(tmp_path):
    result = invoke(["tune", "--workload", "tiny1-shared", "--optimizers", "adam", "--search-task-weights",
                     *FAST, "--out", str(tmp_path / "tune")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: searching the task weights needs a workload of 2 or more tasks, got 1 (one task has nothing to "
        "weigh)"]


# -- bench ---------------------------------------------------------------------------------------

BENCH = ["bench", "--model", "squeezenet1_1", "--repeat", "1", "--device", "cpu", "--threads", "1", "--json"]


@pytest.mark.parametrize("num_tasks", range(1, 9))
def test_bench_times_the_step_for_every_task_count(num_tasks):
    result = CliRunner().invoke(main, [*BENCH, "-T", str(num_tasks)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    rows = {row["name"]: row for row in data["rows"]}
    assert data["tasks"] == num_tasks and rows["Adam (fused)"]["ratio"] == 1.0
    # MTAdamV2 moves 2 + 6T floats per parameter where Adam moves 7 (README: the byte floor)
    assert rows["MTAdamV2 (reference)"]["floor"] == pytest.approx((2 + 6 * num_tasks) / 7)
    assert all(row["median_ms"] > 0 for row in rows.values())


@pytest.mark.parametrize("num_tasks", [1, 3, 8])
@pytest.mark.parametrize("method", ["upgrad", "famo"])
def test_bench_times_a_methods_combine_for_one_to_eight_tasks(num_tasks, method):
    result = CliRunner().invoke(main, [*BENCH, "-T", str(num_tasks), "--method", method])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["method"], data["tasks"]) == (method, num_tasks) and data["ratio"] > 0


@pytest.mark.parametrize("tasks", ["0", "9", "-1"])
@pytest.mark.parametrize("method", [[], ["--method", "upgrad"]])
def test_bench_refuses_a_task_count_outside_one_to_eight_in_one_line(tasks, method):
    result = CliRunner().invoke(main, [*BENCH, *method, "-T", tasks])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: tasks must be in 1..8, got {tasks}"]


# -- one task ------------------------------------------------------------------------------------

def trainer_for(tmp_path, workload, preset, method=None, name="run") -> Trainer:
    config = build_config(preset, tmp_path / name, method, workload=workload, batch_size=4, device="cpu")
    return Trainer(config, preset, config.run_dir, method=method, workload=workload, progress=False, echo=print)


@pytest.mark.parametrize("shared", [False, True])
def test_a_per_task_optimizer_gets_the_one_tasks_gradient(tmp_path, shared):
    workload = tiny_workload(1, shared)
    preset = OptimizerPreset(name="task_gradients", title="Task gradients", factory=Recorder,
                             defaults={"lr": 0.1}, per_task_gradients=True)
    trainer = trainer_for(tmp_path, workload, preset)
    batch, (task,) = recorded_step(trainer)
    images, target = (batch[0], batch[1][0]) if shared else batch[0]
    loss = torch.nn.functional.cross_entropy(trainer.model(images)[0], target)
    for name, got, want in zip(trainer.names, task, torch.autograd.grad(loss, trainer.params)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=name)


def model_state(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


@pytest.mark.parametrize("shared", [False, True])
def test_mtadamv2_of_one_task_steps_as_adam(tmp_path, shared):
    # DESIGN §3 at T = 1: the task is its own anchor (s = w = 1), D its one denominator: Adam's step
    workload = tiny_workload(1, shared)
    for name in ("adam", "mtadamv2"):
        config = build_config(REGISTRY.get(name), tmp_path / name, workload=workload, epochs=1, batch_size=4,
                              device="cpu", seed=3)
        summary = train(config, REGISTRY.get(name), workload=workload, progress=False, echo=lambda s: None)
        assert summary["status"] == "completed" and summary["steps"] == 8
    adam, mtadamv2 = model_state(tmp_path / "adam"), model_state(tmp_path / "mtadamv2")
    for key in adam:
        torch.testing.assert_close(mtadamv2[key], adam[key], rtol=1e-4, atol=1e-6, msg=key)
    lines = [json.loads(line) for line in (tmp_path / "mtadamv2" / "metrics.jsonl").read_text().splitlines()]
    assert {(r["forward_passes"], r["backward_passes"]) for r in lines} == {(1, 1)}
    assert all(r["grad_cosine"] is None for r in lines)  # one task: no pair to measure a conflict on


class Gradient(torch.optim.Optimizer):
    """Keeps the gradient a single-gradient optimizer is given, and steps nowhere."""

    def __init__(self, params, lr=0.1):
        super().__init__(params, {"lr": lr})
        self.received = None

    def step(self, closure=None):
        self.received = {p: p.grad.clone() for group in self.param_groups for p in group["params"]
                         if p.grad is not None}


@pytest.mark.parametrize("shared", [False, True])
def test_every_method_of_one_task_steps_along_its_gradient(tmp_path, shared):
    """With one task there is nothing to balance: every method's gradient is the task's, scaled by a positive
    factor (a loss weight, a normalisation), never turned or dropped."""
    workload = tiny_workload(1, shared)
    preset = OptimizerPreset(name="gradient", title="Gradient", factory=Gradient, defaults={"lr": 0.1})
    state, batch, expected = None, None, None
    for name in REGISTRY.method_names():
        trainer = trainer_for(tmp_path, workload, preset, REGISTRY.get_method(name), name)
        trainer.model.train()
        if state is None:
            state = {k: v.clone() for k, v in trainer.model.state_dict().items()}
            batch = next(trainer.epoch_batches(1))
        trainer.model.load_state_dict(state)
        trainer.step(batch, epoch=1)
        got = torch.cat([trainer.optimizer.received[p].flatten() for p in trainer.params])
        trainer.close()
        if expected is None:
            assert name == "sum"
            expected = got
            continue
        cosine = torch.nn.functional.cosine_similarity(got, expected, dim=0)
        assert cosine > 1 - 1e-5, f"{name}: cosine {cosine.item():.6f} to the task's gradient"


@pytest.mark.parametrize("shared", [False, True])
def test_tensorboard_has_every_tasks_loss_and_metric(tmp_path, shared):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    workload, preset = tiny_workload(3, shared), REGISTRY.get("adam")
    config = build_config(preset, tmp_path / "run", workload=workload, batch_size=8, device="cpu", tensorboard=True)
    assert train(config, preset, workload=workload, progress=False, echo=lambda s: None)["status"] == "completed"
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {f"train/loss_t{t}" for t in range(3)} | {f"epoch/val_acc{t}" for t in range(3)} <= tags
    assert [e.step for e in events.Scalars("train/loss_t2")] == [1, 2, 3, 4]  # 32 images, batch 8


# -- the report's figures over three tasks ---------------------------------------------------------

@pytest.fixture(scope="module")
def three_task_figures(tmp_path_factory) -> dict:
    """The figures a comparison of three tasks draws (adam, adam+upgrad; one seed), by file name, not saved."""
    import mtbench.report.plots
    import mtbench.report.plots_gradients

    figures = {}

    def keep(fig, path):
        figures[Path(path).name] = fig
        return Path(path)

    out = tmp_path_factory.mktemp("figures") / "cmp"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mtbench.report.plots, "save", keep)
        patch.setattr(mtbench.report.plots_gradients, "save", keep)
        result = invoke(["compare", "--workload", "tiny3-shared", "--optimizers", "adam", "--methods", "sum,upgrad",
                         *FAST, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return figures


def words(fig) -> str:
    """Every text of a figure: its title, each panel's title, axis labels, legend and annotations."""
    texts = [fig._suptitle.get_text() if fig._suptitle else "", *(t.get_text() for t in fig.texts)]
    for ax in fig.axes:
        texts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel(), *(t.get_text() for t in ax.texts)]
        if ax.get_legend() is not None:
            texts += [t.get_text() for t in ax.get_legend().get_texts()]
    return "\n".join(texts)


def assert_drawn_for_three_tasks(fig, names: list[str]) -> None:
    """Names every task (or its metric), nothing of ImageNet + COCO, and no curve without a finite point."""
    text = words(fig)
    assert not re.search(r"\b(cls|seg)\b|ImageNet|COCO|top-1|mIoU", text), text
    assert all(re.search(rf"\b{re.escape(name)}\b", text) for name in names), text
    lines = [line for ax in fig.axes for line in ax.lines if len(line.get_ydata()) > 0]
    assert lines and all(np.isfinite(np.asarray(line.get_ydata(), dtype=float)).any() for line in lines)


def test_the_loss_figure_has_every_tasks_loss(three_task_figures):
    assert_drawn_for_three_tasks(three_task_figures["loss.png"], ["t0", "t1", "t2"])


def test_the_validation_figure_has_every_tasks_metric(three_task_figures):
    assert_drawn_for_three_tasks(three_task_figures["validation.png"], ["acc 0", "acc 1", "acc 2"])


def test_the_final_figure_shows_every_tasks_metric_of_completed_rows(three_task_figures):
    fig = three_task_figures["final.png"]
    assert "failed" not in [t.get_text() for ax in fig.axes for t in ax.texts]
    assert_drawn_for_three_tasks(fig, ["acc 0", "acc 1", "acc 2"])


def test_a_runs_conflict_figure_has_the_methods_weight_of_every_task(three_task_figures):
    fig = three_task_figures["conflict-adam+upgrad-seed0.png"]
    assert_drawn_for_three_tasks(fig, ["t0", "t1", "t2"])
