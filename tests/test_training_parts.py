"""The trainer's parts: gradient strategies (sum, per-task, methods), the [T, N] buffer, schedules,
single-task runs, runs stopped by a caller, and exact resume with stateful methods."""

import json

import pytest
import torch
import torch.nn.functional as F

import mtbench.workloads.imagenet_coco as gradients_module
from mtbench.config import build_config
from mtbench.errors import ConfigError, RunStopped
from mtbench.plugins import load_registry
from mtbench.train import Trainer, train
from mtbench.training.schedule import lr_factor
from states import assert_same_state

REGISTRY = load_registry(environ={})
TINY = dict(image_size=32, limit_train=16, limit_val=8, batch_size=8, epochs=1, device="cpu")


def make(tmp_path, optimizer="adam", method=None, **options):
    preset = REGISTRY.get(optimizer)
    mp = REGISTRY.method_preset(method) if method else None
    config = build_config(preset, tmp_path / "run", mp, **{**TINY, **options})
    return config, preset, mp


def quiet(config, preset, method=None, **kw):
    return train(config, preset, method=method, progress=False, echo=lambda s: None, **kw)


def test_sum_is_the_plain_weighted_loss_bit_for_bit(tmp_path):
    config, preset, _ = make(tmp_path, task_weights="0.3,0.7", loss_scale="seg=2")
    trainer = Trainer(config, preset, config.run_dir, progress=False, echo=print)
    (xc, yc), (xs, ys) = next(trainer.epoch_batches(1))
    model = trainer.model
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.step(((xc, yc), (xs, ys)), epoch=1)
    stepped = {k: v.clone() for k, v in model.state_dict().items()}

    model.load_state_dict(reference)
    model.zero_grad(set_to_none=True)
    opt = preset.build(list(model.parameters()), **config.hyperparams)
    out_c, out_s = model(xc, xs)
    loss = 0.3 * F.cross_entropy(out_c, yc) + 0.7 * 2.0 * gradients_module.masked_cross_entropy(out_s, ys)
    loss.backward()
    opt.step()
    for name, value in model.state_dict().items():
        assert torch.equal(value, stepped[name]), name
    trainer.close()


def test_per_task_gradients_are_views_of_one_buffer_with_the_shared_parameters_first(tmp_path):
    config, preset, mp = make(tmp_path, method="upgrad")
    trainer = Trainer(config, preset, config.run_dir, method=mp, progress=False, echo=print)
    batches = trainer.epoch_batches(1)
    for _ in range(2):  # the buffer is laid out from the first pass, then used from the second
        (xc, yc), (xs, ys) = next(batches)
        result = trainer.step(((xc, yc), (xs, ys)), epoch=1)
    grads = trainer.strategy.grads
    (buffer,) = grads.buffers
    names = trainer.names
    shared = {names[i] for i in grads.shared}
    assert shared and all(n.startswith("backbone.") for n in shared)
    for t, task in enumerate(grads.views):
        for name, view in zip(names, task):
            head = "cls_head" if t == 0 else "seg_head"
            other = "seg_head" if t == 0 else "cls_head"
            if name.startswith(other):
                assert view is None, name
            else:
                assert view is not None and view.untyped_storage().data_ptr() == buffer.untyped_storage().data_ptr()
                assert name in shared or name.startswith(head)
    (matrix,) = grads.shared_matrices()
    assert matrix.data_ptr() == buffer.data_ptr() and matrix.shape == (2, sum(
        trainer.params[i].numel() for i in grads.shared))
    assert -1.0 <= result.diagnostics["grad_cosine"] <= 1.0 and result.diagnostics["grad_norm_ratio"] > 0
    assert {"method_weight_cls", "method_weight_seg"} <= set(result.diagnostics)
    trainer.close()


@pytest.mark.parametrize("method", ["gradvac", "uncertainty"])
def test_a_run_with_a_stateful_method_resumes_exactly(tmp_path, monkeypatch, method):
    config, preset, mp = make(tmp_path / "whole", method=method, epochs=3)
    quiet(config, preset, mp)
    calls = {"n": 0}
    real = Trainer.step

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    part, preset, mp = make(tmp_path / "part", method=method, epochs=3)
    monkeypatch.setattr(Trainer, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        quiet(part, preset, mp)
    monkeypatch.setattr(Trainer, "step", real)
    quiet(part, preset, mp, resume=True)
    whole = torch.load(tmp_path / "whole" / "run" / "checkpoints" / "last.pt", weights_only=True)
    again = torch.load(tmp_path / "part" / "run" / "checkpoints" / "last.pt", weights_only=True)
    for part in ("model", "optimizer", "gradients"):  # the method's own state, tensors compared bit for bit
        assert_same_state(again[part], whole[part], part)


def test_a_cosine_schedule_with_warmup_resumes_exactly(tmp_path, monkeypatch):
    options = dict(epochs=3, schedule="cosine", warmup_epochs=1)
    config, preset, _ = make(tmp_path / "whole", "sgd", **options)
    quiet(config, preset)
    real = Trainer.step
    calls = {"n": 0}

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    part, preset, _ = make(tmp_path / "part", "sgd", **options)
    monkeypatch.setattr(Trainer, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        quiet(part, preset)
    monkeypatch.setattr(Trainer, "step", real)
    quiet(part, preset, resume=True)
    whole = torch.load(tmp_path / "whole" / "run" / "checkpoints" / "last.pt", weights_only=True)
    again = torch.load(tmp_path / "part" / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert whole["scheduler"]["last_epoch"] == again["scheduler"]["last_epoch"] == 6
    for k, v in whole["model"].items():
        assert torch.equal(v, again["model"][k]), k


@pytest.mark.parametrize(
    "schedule, step, total, warmup, factor",
    [
        ("constant", 0, 10, 0, 1.0), ("constant", 0, 10, 4, 0.25), ("constant", 3, 10, 4, 1.0),
        ("cosine", 0, 10, 0, 1.0), ("cosine", 5, 10, 0, 0.5), ("cosine", 10, 10, 0, 0.0),
        ("cosine", 2, 10, 2, 1.0), ("step", 3, 9, 0, 0.1), ("step", 6, 9, 0, 0.01), ("step", 2, 9, 0, 1.0),
    ],
)
def test_lr_factor(schedule, step, total, warmup, factor):
    assert lr_factor(schedule, step, total, warmup) == pytest.approx(factor, abs=1e-12)


def test_a_caller_can_stop_a_run_after_an_epoch(tmp_path):
    config, preset, _ = make(tmp_path, epochs=3, holdout=0.25)
    seen = []

    def prune(summary):
        seen.append(summary)
        raise RunStopped("pruned at epoch 1: holdout score below the median")

    with pytest.raises(RunStopped):
        quiet(config, preset, on_epoch=prune)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "pruned" and summary["epochs"] == 1 and "below the median" in summary["error"]
    assert seen[0]["holdout_top1"] is not None and seen[0]["epochs"] == 1


@pytest.mark.parametrize("task, trained, untouched", [("cls", "loss_cls", "loss_seg"), ("seg", "loss_seg", "loss_cls")])
def test_a_single_task_run_trains_its_task_alone(tmp_path, task, trained, untouched):
    config, preset, _ = make(tmp_path, tasks=task)
    trainer = Trainer(config, preset, config.run_dir, progress=False, echo=print)
    other = "seg_head" if task == "cls" else "cls_head"
    before = {k: v.clone() for k, v in trainer.model.state_dict().items() if k.startswith(other)}
    trainer.close()
    summary = quiet(config, preset)
    after = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert record[trained] is not None and record[untouched] is None
    assert summary["tasks"] == [task]


@pytest.mark.parametrize(
    "optimizer, method, options, message",
    [
        ("mtadamv2", "pcgrad", {}, "--method pcgrad does not compose with 'mtadamv2'"),
        ("mtadamv2", None, {"tasks": "cls"}, "--tasks cls trains one task alone"),
        ("adam", "upgrad", {"tasks": "seg"}, "--tasks seg trains one task alone"),
        ("adam", None, {"tasks": "depth"}, "--tasks depth is not allowed: expected some of cls, seg"),
        ("adam", None, {"schedule": "linear"}, "--schedule 'linear': expected one of constant, cosine, step"),
        ("adam", None, {"warmup_epochs": 1}, r"--warmup-epochs 1 is not allowed: expected a whole number in \[0, --epochs 1\)"),
        ("adam", None, {"holdout": 1.5}, r"--holdout 1.5 is not allowed: expected a fraction in \[0, 1\)"),
        ("adam", None, {"set_values": ["method.alpha=2"]}, "the method sum takes no settings"),
    ],
)
def test_combinations_that_do_not_fit_are_one_line_errors(tmp_path, optimizer, method, options, message):
    with pytest.raises(ConfigError, match=message):
        config, preset, mp = make(tmp_path, optimizer, method, **options)
        Trainer(config, preset, config.run_dir, method=mp, progress=False, echo=print)


def test_unknown_methods_and_settings_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"'pcgrd'.*did you mean 'pcgrad'"):
        REGISTRY.method_preset("pcgrd")
    with pytest.raises(ConfigError, match="upgrad"):
        make(tmp_path, method="upgrad", set_values=["method.bogus=1"])


def test_a_bad_method_setting_names_the_option_and_the_method(tmp_path):
    with pytest.raises(ConfigError, match=r"^--set method.c='abc' is not allowed: .*\(method 'cagrad'\)$"):
        make(tmp_path, method="cagrad", set_values=["method.c=abc"])
