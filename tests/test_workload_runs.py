"""The trainer on workloads of T = 1..8 tasks, both data shapes (a batch per task, one shared batch):
runs, logs, a bit-identical resume with MTAdamV2 at T = 3, a method at T = 3, and each task's own gradient."""

import csv
import dataclasses
import json

import pytest
import torch

from mtbench.config import build_config
from mtbench.errors import ConfigError
from mtbench.plugins import load_registry
from mtbench.presets import OptimizerPreset
from mtbench.train import Trainer, train
from recorder import Recorder, recorded_step
from states import assert_same_state
from tiny_workloads import tiny_workload

REGISTRY = load_registry()


def run(tmp_path, workload, optimizer="adam", method=None, name="run", **options):
    preset, mp = REGISTRY.get(optimizer), method and REGISTRY.get_method(method)
    options = {"epochs": 1, "batch_size": 4, "device": "cpu", "seed": 0, **options}
    config = build_config(preset, tmp_path / name, mp, workload=workload, **options)
    summary = train(config, preset, method=mp, workload=workload, progress=False, echo=lambda s: None)
    return config, summary


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("num_tasks", [1, 8])
@pytest.mark.parametrize("shared", [False, True])
def test_a_workload_of_one_or_eight_tasks_trains_and_logs_every_task(tmp_path, num_tasks, shared):
    workload = tiny_workload(num_tasks, shared)
    config, summary = run(tmp_path, workload)
    names = [f"t{t}" for t in range(num_tasks)]
    assert summary["status"] == "completed" and summary["workload"] == workload.name
    assert summary["tasks"] == names and list(summary["task_metrics"]) == names
    assert summary["task_metrics"]["t0"] == [{"name": "acc0", "title": "acc 0", "higher_is_better": True,
                                              "unit": "%", "primary": True}]
    assert set(summary["final_metrics"]) == {f"acc{t}" for t in range(num_tasks)}
    assert all(0.0 <= v <= 1.0 for v in summary["final_metrics"].values())
    assert config.task_weights == (1 / num_tasks,) * num_tasks
    lines = records(tmp_path / "run")
    assert len(lines) == summary["steps"] == 8  # 32 images a task (or shared), batch 4
    assert all(isinstance(r[f"loss_{n}"], float) for r in lines for n in names)
    assert lines[0]["forward_passes"] == 1 and lines[0]["backward_passes"] == 1
    with open(tmp_path / "run" / "epochs.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert [k for k in row if k.startswith("train_loss_")] == [f"train_loss_{n}" for n in names]
    assert float(row[f"val_acc{num_tasks - 1}"]) == summary["final_metrics"][f"acc{num_tasks - 1}"]


def checkpoint(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)


@pytest.mark.parametrize("shared", [False, True])
def test_three_tasks_with_mtadamv2_resume_bit_identically(tmp_path, shared):
    workload = tiny_workload(3, shared)
    _, straight = run(tmp_path, workload, "mtadamv2", name="straight", epochs=2)
    config, _ = run(tmp_path, workload, "mtadamv2", name="parts", epochs=1)
    longer = dataclasses.replace(config, epochs=2)
    resumed = train(longer, REGISTRY.get("mtadamv2"), workload=workload, resume=True, progress=False,
                    echo=lambda s: None)
    a, b = checkpoint(tmp_path / "straight"), checkpoint(tmp_path / "parts")
    assert_same_state(a["model"], b["model"], "model")
    assert_same_state(a["optimizer"], b["optimizer"], "optimizer")
    assert resumed["final_metrics"] == straight["final_metrics"] and resumed["steps"] == 16
    lines = records(tmp_path / "parts")
    assert [r["loss_t2"] for r in lines] == [r["loss_t2"] for r in records(tmp_path / "straight")]
    # one forward pass a step; per-task batches need one backward, a shared batch one per task
    assert {(r["forward_passes"], r["backward_passes"]) for r in lines} == {(1, 3 if shared else 1)}


@pytest.mark.parametrize("shared", [False, True])
def test_a_method_combines_three_tasks(tmp_path, shared):
    _, summary = run(tmp_path, tiny_workload(3, shared), "adam", "upgrad")
    assert summary["status"] == "completed" and summary["method"] == "upgrad"
    last = records(tmp_path / "run")[-1]
    weights = [last[f"method_weight_t{t}"] for t in range(3)]
    assert all(w > 0 for w in weights) and last["grad_cosine"] is not None and last["grad_cosine_mean"] is not None


@pytest.mark.parametrize("shared", [False, True])
def test_every_task_gets_its_own_gradient_and_a_head_only_its_tasks(tmp_path, shared):
    workload = tiny_workload(3, shared)
    preset = OptimizerPreset(name="recorder", title="Recorder", factory=Recorder, defaults={"lr": 0.1},
                             per_task_gradients=True)
    config = build_config(preset, tmp_path / "r", workload=workload, batch_size=4, device="cpu",
                          task_weights="1,1,1", loss_scale="t1=2")
    trainer = Trainer(config, preset, config.run_dir, workload=workload, progress=False, echo=print)
    batch, task_grads = recorded_step(trainer)
    model, params, loss = trainer.model, trainer.params, torch.nn.functional.cross_entropy
    for t in range(3):
        if shared:
            images, targets = batch
            value = loss(model(images)[t], targets[t])
        else:
            images, target = batch[t]
            value = loss(model(*[images if i == t else None for i in range(3)])[t], target)
        expected = torch.autograd.grad((2.0 if t == 1 else 1.0) * value, params, allow_unused=True)
        for name, got, want in zip(trainer.names, task_grads[t], expected):
            if name.startswith("heads.") and not name.startswith(f"heads.{t}."):
                assert got is None, name
            else:
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=name)


def test_per_task_options_name_the_workloads_tasks(tmp_path):
    workload = tiny_workload(3, True)
    preset = REGISTRY.get("adam")
    config = build_config(preset, tmp_path / "r", workload=workload, task_weights="t2=0.5", tasks="t2,t0")
    assert config.task_weights == (1 / 3, 1 / 3, 0.5) and config.tasks == ("t0", "t2")
    assert config.loss_weights == (1 / 3, 0.0, 0.5)
    with pytest.raises(ConfigError, match=r"--task-weights '1,2': expected 3 numbers \(t0,t1,t2\)"):
        build_config(preset, tmp_path / "r", workload=workload, task_weights="1,2")
    with pytest.raises(ConfigError, match=r"--tasks cls: 'cls' is not a task of workload 'tiny3-shared' "
                                          r"\(its tasks: t0, t1, t2\)"):
        build_config(preset, tmp_path / "r", workload=workload, tasks="cls")
    with pytest.raises(ConfigError, match=r"--loss-scale 'seg=2': unknown task 'seg'; expected t0 or t1 or t2"):
        build_config(preset, tmp_path / "r", workload=workload, loss_scale="seg=2")


@pytest.mark.parametrize("shared", [False, True])
def test_mtadamv2_takes_eight_tasks_gradients(tmp_path, shared):
    _, summary = run(tmp_path, tiny_workload(8, shared), "mtadamv2")
    assert summary["status"] == "completed" and summary["skipped_steps"] == 0
    last = records(tmp_path / "run")[-1]
    assert last["backward_passes"] == (8 if shared else 1) and -1 <= last["grad_cosine_mean"] <= 1


@pytest.mark.parametrize("shared", [False, True])
def test_a_losses_only_method_backpropagates_once_and_its_second_forward_is_counted(tmp_path, shared):
    _, summary = run(tmp_path, tiny_workload(3, shared), "adam", "famo")
    assert summary["status"] == "completed"
    lines = records(tmp_path / "run")
    # FAMO's after_step recomputes the batch's losses: a second forward pass, no second backward
    assert {(r["forward_passes"], r["backward_passes"]) for r in lines} == {(2, 1)}
    assert sum(lines[-1][f"method_weight_t{t}"] for t in range(3)) == pytest.approx(1.0)


def test_the_strategy_follows_what_the_method_reads(tmp_path):
    from mtbench.training.gradients import LossMethod, MethodGradients, OptimizerTaskGradients

    workload = tiny_workload(3, True)
    kinds = {}
    for optimizer, method in (("adam", None), ("adam", "uw"), ("adam", "upgrad"), ("mtadamv2", None)):
        preset, mp = REGISTRY.get(optimizer), method and REGISTRY.get_method(method)
        config = build_config(preset, tmp_path / f"{optimizer}-{method}", mp, workload=workload, device="cpu")
        trainer = Trainer(config, preset, config.run_dir, method=mp, workload=workload, progress=False, echo=print)
        kinds[optimizer, method] = type(trainer.strategy)
        trainer.close()
    assert kinds == {("adam", None): LossMethod, ("adam", "uw"): LossMethod, ("adam", "upgrad"): MethodGradients,
                     ("mtadamv2", None): OptimizerTaskGradients}


class Broken:
    def __init__(self, num_tasks):
        pass

    def scalarize(self, losses, step):
        return losses.detach()  # not a scalar, and not on the graph

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_a_losses_only_method_that_returns_no_scalar_is_named(tmp_path):
    from mtbench.errors import MethodError
    from mtbench.presets import MethodPreset

    method = MethodPreset(name="broken", title="Broken", factory=Broken, reads="loss")
    workload = tiny_workload(3, False)
    preset = REGISTRY.get("adam")
    config = build_config(preset, tmp_path / "run", method, workload=workload, device="cpu", batch_size=4)
    with pytest.raises(MethodError, match=r"^method 'broken': its scalarize returned a tensor of shape \(3,\) at "
                                          r"step 1: expected a 0-d tensor attached to the losses' graph$"):
        train(config, preset, method=method, workload=workload, progress=False, echo=lambda s: None)


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("method", [None, "upgrad", "famo"])
def test_an_optimizer_that_needs_a_closure_gets_the_same_batchs_gradient_again(tmp_path, shared, method):
    preset = REGISTRY.get("sam_sgd")
    assert "closure" in preset.needs
    _, summary = run(tmp_path, tiny_workload(3, shared), "sam_sgd", method)
    assert summary["status"] == "completed" and summary["skipped_steps"] == 0
    lines = records(tmp_path / "run")
    backward = 3 if shared and method == "upgrad" else 1  # per pass over the batch
    forward = 2 + (method == "famo")  # the step's and the closure's, and FAMO's recompute
    assert {(r["forward_passes"], r["backward_passes"]) for r in lines} == {(forward, 2 * backward)}


def test_a_run_takes_the_workloads_batch_size_and_epochs_unless_given(tmp_path):
    workload = tiny_workload(2, True)
    preset = REGISTRY.get("adam")
    config = build_config(preset, tmp_path / "r", workload=workload)
    assert (config.batch_size, config.epochs) == (workload.batch_size, workload.epochs) == (4, 1)
    given = build_config(preset, tmp_path / "r", workload=workload, batch_size=2, epochs=3)
    assert (given.batch_size, given.epochs) == (2, 3)
    assert (build_config(preset, tmp_path / "d").batch_size, build_config(preset, tmp_path / "d").epochs) == (8, 5)


@pytest.mark.parametrize("optimizer, method, culprit", [("mtadamv2", None, "'mtadamv2' takes the tasks' gradients apart"),
                                                        ("adam", "famo", "--method famo combines the tasks' gradients")])
def test_a_run_of_some_tasks_refuses_what_needs_them_all(tmp_path, optimizer, method, culprit):
    workload = tiny_workload(3, True)
    preset, mp = REGISTRY.get(optimizer), method and REGISTRY.get_method(method)
    config = build_config(preset, tmp_path / "run", mp, workload=workload, tasks="t0,t2", device="cpu")
    with pytest.raises(ConfigError, match=rf"^--tasks t0,t2 trains 2 of the workload's 3 tasks, but {culprit} for all "
                                          "of them; train every task, or use a single-gradient optimizer"):
        Trainer(config, preset, config.run_dir, method=mp, workload=workload, progress=False, echo=print)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match=r"--batch-size 0 is not allowed"):
        build_config(preset, tmp_path / "r", workload=workload, batch_size=0)
