"""The trainer on the embedded data set, made tiny: files written, determinism, exact resume, faults."""

import csv
import itertools
import math
import json

import pytest
import torch

import mtbench.workloads.imagenet_coco as gradients_module
from mtbench.config import build_config
from mtbench.errors import ConfigError, NonFiniteLossError
from mtbench.plugins import load_registry
from mtbench.presets import OptimizerPreset
from mtbench.train import Trainer, train
from recorder import Recorder
from states import assert_same_state

REGISTRY = load_registry(environ={})
TINY = dict(image_size=32, limit_train=16, limit_val=8, batch_size=8, epochs=1, device="cpu")


def tiny_config(run_dir, optimizer="adam", **options):
    return build_config(REGISTRY.get(optimizer), run_dir, **{**TINY, **options})


def epochs_rows(run_dir):
    with open(run_dir / "epochs.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def metric_lines(run_dir):
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in rec.items() if k != "time"} for rec in lines]


def final_weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


def test_a_run_writes_its_directory(tmp_path):
    run_dir = tmp_path / "run"
    summary = train(tiny_config(run_dir, epochs=2), REGISTRY.get("adam"), progress=False, echo=lambda s: None)
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "checkpoints", "config.json", "env.json", "epochs.csv", "metrics.jsonl", "summary.json"]
    assert summary == json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs"] == 2 and summary["steps"] == 4
    for key in ("final_top1", "final_top5", "final_miou", "final_pixel_acc"):
        assert 0.0 <= summary[key] <= 1.0
    assert summary["seconds_per_step"] > 0 and summary["peak_memory_mb"] > 0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["hyperparams"] == {"lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-8}
    assert config["preset"]["expected"]["convergence"] == "fast"
    env = json.loads((run_dir / "env.json").read_text())
    assert env["torch"] == torch.__version__ and env["ops_backend"].startswith("compiled ops")
    steps = metric_lines(run_dir)
    assert [r["step"] for r in steps] == [1, 2, 3, 4] and [r["epoch"] for r in steps] == [1, 1, 2, 2]
    assert all(r["loss"] == pytest.approx(0.5 * r["loss_cls"] + 0.5 * r["loss_seg"]) for r in steps)
    rows = epochs_rows(run_dir)
    assert [r["epoch"] for r in rows] == ["1", "2"] and float(rows[-1]["val_top1"]) == summary["final_top1"]
    assert (run_dir / "checkpoints" / "last.pt").is_file()


def test_the_same_seed_gives_the_same_metrics_to_the_last_digit(tmp_path):
    for name in ("a", "b"):
        train(tiny_config(tmp_path / name, "sgd", seed=3), REGISTRY.get("sgd"), progress=False, echo=lambda s: None)
    assert epochs_rows(tmp_path / "a") == epochs_rows(tmp_path / "b")
    assert metric_lines(tmp_path / "a") == metric_lines(tmp_path / "b")
    for k, v in final_weights(tmp_path / "a").items():
        assert torch.equal(v, final_weights(tmp_path / "b")[k]), k


def test_the_same_seed_gives_every_optimizer_the_same_initial_weights(tmp_path):
    digests = {
        name: Trainer(tiny_config(tmp_path / name, name), REGISTRY.get(name), tmp_path / name, progress=False,
                      echo=print).init_digest
        for name in ("sgd", "adamw", "mtadamv2")
    }
    assert len(set(digests.values())) == 1
    other = Trainer(tiny_config(tmp_path / "x", "sgd", seed=1), REGISTRY.get("sgd"), tmp_path / "x", progress=False,
                    echo=print)
    assert other.init_digest != digests["sgd"]


@pytest.mark.parametrize("optimizer", ["adam", "mtadamv2"])
def test_a_resumed_run_ends_bit_identical_to_an_uninterrupted_one(tmp_path, monkeypatch, optimizer):
    preset = REGISTRY.get(optimizer)
    train(tiny_config(tmp_path / "whole", optimizer, epochs=3), preset, progress=False, echo=lambda s: None)

    # Interrupt in the middle of epoch 2: the step after the 3rd raises.
    calls = {"n": 0}
    real_step = Trainer.step

    def interrupted(self, *args):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_step(self, *args)

    part = tmp_path / "part"
    monkeypatch.setattr(Trainer, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(part, optimizer, epochs=3), preset, progress=False, echo=lambda s: None)
    assert json.loads((part / "summary.json").read_text())["status"] == "interrupted"
    assert len(metric_lines(part)) == 3
    monkeypatch.setattr(Trainer, "step", real_step)

    train(tiny_config(part, optimizer, epochs=3), preset, resume=True, progress=False, echo=lambda s: None)
    assert epochs_rows(part) == epochs_rows(tmp_path / "whole")
    assert metric_lines(part) == metric_lines(tmp_path / "whole")
    whole = final_weights(tmp_path / "whole")
    for k, v in final_weights(part).items():
        assert torch.equal(v, whole[k]), k
    opt_a = torch.load(part / "checkpoints" / "last.pt", weights_only=True)["optimizer"]["state"]
    opt_b = torch.load(tmp_path / "whole" / "checkpoints" / "last.pt", weights_only=True)["optimizer"]["state"]
    for i in opt_b:
        for key, value in opt_b[i].items():
            assert torch.equal(torch.as_tensor(opt_a[i][key]), torch.as_tensor(value)), (i, key)


def test_per_task_gradients_are_each_tasks_own_gradient(tmp_path):
    preset = OptimizerPreset(name="recorder", title="Recorder", factory=Recorder, defaults={"lr": 0.1},
                             per_task_gradients=True)
    config = build_config(preset, tmp_path / "r", **TINY)
    trainer = Trainer(config, preset, config.run_dir, progress=False, echo=print)
    torch.manual_seed(0)
    (xc, yc), (xs, ys) = next(trainer.epoch_batches(1))
    trainer.model.train()
    state = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.step(((xc, yc), (xs, ys)), epoch=1)
    (task_grads,) = trainer.optimizer.received

    trainer.model.load_state_dict(state)  # the same BatchNorm statistics as in the step
    model, params = trainer.model, trainer.params
    loss_c = torch.nn.functional.cross_entropy(model(xc)[0], yc)
    loss_s = gradients_module.masked_cross_entropy(model(None, xs)[1], ys)
    for task, loss in enumerate((loss_c, loss_s)):
        expected = torch.autograd.grad(loss, params, allow_unused=True)
        for name, got, want in zip(trainer.names, task_grads[task], expected):
            if want is None:
                assert got is None, name
            else:
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=name)
    heads = dict(zip(trainer.names, zip(*task_grads)))
    assert heads["seg_head.score8.weight"][0] is None and heads["cls_head.weight"][1] is None


def nan_at(steps):
    """A segmentation loss that is NaN at the given (1-based) call numbers."""
    calls = {"n": 0}
    real = gradients_module.masked_cross_entropy

    def loss(logits, target):
        calls["n"] += 1
        value = real(logits, target)
        return value * float("nan") if calls["n"] in steps else value

    return loss


def test_a_nonfinite_loss_aborts_naming_step_and_task_and_keeps_the_run_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(gradients_module, "masked_cross_entropy", nan_at({3}))
    run_dir = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 3 in segmentation .*--on-nonfinite skip"):
        train(tiny_config(run_dir, epochs=2), REGISTRY.get("adam"), progress=False, echo=lambda s: None)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "step 3" in summary["error"]
    # the failed step is logged too: strict JSON, its losses null
    lines = metric_lines(run_dir)
    assert summary["epochs"] == 1 and len(lines) == 3 and summary["skipped_steps"] == 1
    assert lines[-1]["skipped"] and lines[-1]["loss_seg"] is None and lines[-1]["loss"] is None
    assert (run_dir / "checkpoints" / "last.pt").is_file() and len(epochs_rows(run_dir)) == 1


def test_skip_counts_and_the_run_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(gradients_module, "masked_cross_entropy", nan_at({2}))
    run_dir = tmp_path / "run"
    summary = train(tiny_config(run_dir, on_nonfinite="skip", epochs=2), REGISTRY.get("adam"),
                    progress=False, echo=lambda s: None)
    assert summary["status"] == "completed" and summary["skipped_steps"] == 1 and summary["steps"] == 4
    lines = metric_lines(run_dir)
    assert [r["skipped"] for r in lines] == [False, True, False, False] and lines[1]["loss_seg"] is None
    assert all(math.isfinite(r["loss_seg"]) for i, r in enumerate(lines) if i != 1)
    # each epoch's mean training loss is over the steps taken, not NaN
    assert all(math.isfinite(float(row["train_loss_seg"])) for row in epochs_rows(run_dir))


def stepped(run_dir, optimizer, method, batches):
    """A new trainer (the run's seed, so the same initial weights) after ``Trainer.step`` on each batch."""
    preset, mp = REGISTRY.get(optimizer), method and REGISTRY.get_method(method)
    config = build_config(preset, run_dir, mp, **{**TINY, "on_nonfinite": "skip"})
    trainer = Trainer(config, preset, config.run_dir, method=mp, progress=False, echo=print)
    trainer.model.train()
    torch.manual_seed(0)
    taken = [trainer.step(((xc, yc), (xs, ys)), epoch=1).taken for (xc, yc), (xs, ys) in batches(trainer)]
    trainer.close()
    return trainer, taken


@pytest.mark.parametrize("optimizer, method", [("adam", None), ("mtadamv2", None), ("adam", "gradvac")])
def test_a_skipped_step_leaves_the_run_as_if_it_had_never_come(tmp_path, optimizer, method):
    def first_four(trainer):
        batches = list(itertools.islice(trainer.epoch_batches(1), 4))
        (xc, yc), (xs, ys) = batches[1]
        xs = xs.clone()
        xs[0, :, :4, :4] = float("nan")  # a corrupt image: its loss is NaN, and so are its BatchNorm statistics
        batches[1] = (xc, yc), (xs, ys)
        return batches

    skipping, taken = stepped(tmp_path / "skipping", optimizer, method, first_four)
    assert taken == [True, False, True, True] and skipping.state.counters["skipped_steps"] == 1
    never, _ = stepped(tmp_path / "never", optimizer, method,
                       lambda trainer: [b for i, b in enumerate(first_four(trainer)) if i != 1])
    assert_same_state(skipping.model.state_dict(), never.model.state_dict(), "model")  # parameters and buffers
    assert_same_state(skipping.optimizer.state_dict(), never.optimizer.state_dict(), "optimizer")
    assert_same_state(skipping.strategy.state_dict(), never.strategy.state_dict(), "method")


def test_skip_gives_up_after_too_many_consecutive_skips(tmp_path, monkeypatch):
    monkeypatch.setattr(gradients_module, "masked_cross_entropy", nan_at(set(range(1, 100))))
    with pytest.raises(NonFiniteLossError, match=r"3 consecutive steps skipped, more than --max-skips 2: the run diverged"):
        train(tiny_config(tmp_path / "run", on_nonfinite="skip", max_skips=2, epochs=3), REGISTRY.get("adam"),
              progress=False, echo=lambda s: None)


@pytest.mark.parametrize(
    "options, pattern",
    [
        ({"batch_size": 0}, r"--batch-size 0 is not allowed: expected a whole number in \[1, \d+\]"),
        ({"batch_size": 64}, r"--batch-size 64 is larger than the classification training set \(16 images\)"),
        ({"epochs": -1}, r"--epochs -1 is not allowed"),
        ({"device": "tpu"}, r"unknown device 'tpu': expected auto, cpu, cuda or cuda:N"),
        ({"device": "cuda:0"} if not torch.cuda.is_available() else {"device": "cuda:99"}, r"device 'cuda:\d+'"),
        ({"task_weights": "1,2,3"}, r"--task-weights '1,2,3': expected 2 numbers \(cls,seg\)"),
        ({"task_weights": "0,0"}, r"--task-weights 0,0 is not allowed"),
        ({"loss_scale": "depth=3"}, r"--loss-scale 'depth=3': unknown task 'depth'; expected cls or seg"),
        ({"amp": "fp16", "device": "cpu"}, r"--amp fp16 needs a CUDA device"),
    ],
)
def test_bad_settings_fail_before_anything_is_written(tmp_path, options, pattern):
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match=pattern):
        config = tiny_config(run_dir, **options)
        train(config, REGISTRY.get("adam"), progress=False, echo=lambda s: None)
    assert not run_dir.exists()


def test_mtadamv2_task_weights_are_one_setting(tmp_path):
    preset = REGISTRY.get("mtadamv2")
    config = build_config(preset, tmp_path, task_weights="0.3,0.7")
    assert config.task_weights == (0.3, 0.7) and config.hyperparams["task_weights"] == (0.3, 0.7)
    config = build_config(preset, tmp_path, set_values=["task_weights=0.2,0.8"])
    assert config.task_weights == (0.2, 0.8)
    with pytest.raises(ConfigError, match=r"--task-weights 0.3,0.7 disagrees with --set task_weights=0.2,0.8"):
        build_config(preset, tmp_path, task_weights="0.3,0.7", set_values=["task_weights=0.2,0.8"])
    assert "task_weights" not in build_config(REGISTRY.get("adam"), tmp_path, task_weights="0.3,0.7").hyperparams


@pytest.mark.parametrize("optimizer", ["adamw", "mtadamv2"])
def test_bf16_autocast_trains_on_cpu(tmp_path, optimizer):
    summary = train(tiny_config(tmp_path / "run", optimizer, amp="bf16", device="cpu"), REGISTRY.get(optimizer),
                    progress=False, echo=lambda s: None)
    assert summary["status"] == "completed" and summary["steps"] == 2
    first, last = metric_lines(tmp_path / "run")
    assert all(math.isfinite(first[k]) and math.isfinite(last[k]) for k in ("loss_cls", "loss_seg"))
