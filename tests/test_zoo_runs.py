"""The zoo in the trainer, on the embedded data made tiny: every preset trains (its loss falls), a
representative subset resumes bit for bit, SAM's closure runs once per step (two passes), Schedule-Free
is evaluated at its average with fresh BatchNorm statistics, Muon gets exactly the hidden matrices."""

from __future__ import annotations

import collections
import json

import pytest
import torch

from mtbench.config import build_config
from mtbench.plugins import load_registry
from mtbench.train import Trainer, train
from mtbench.training.optimizers import hidden_matrices
from mtbench_plugins.zoo_factories import MatrixMuon

REGISTRY = load_registry(environ={})
TINY = dict(image_size=32, limit_train=32, limit_val=8, batch_size=8, epochs=2, device="cpu")
ZOO = [name for name, p in REGISTRY.presets.items() if p.origin in ("torch", "pytorch-optimizer")]
QUIET = dict(progress=False, echo=lambda s: None)


def config(run_dir, optimizer, **options):
    return build_config(REGISTRY.get(optimizer), run_dir, **{**TINY, **options})


def metric_lines(run_dir):
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in rec.items() if k != "time"} for rec in lines]


def epoch_rows(run_dir):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in
            (dict(zip(lines[0].split(","), line.split(","))) for lines in [(run_dir / "epochs.csv").read_text()
                                                                             .splitlines()] for line in lines[1:])]


def checkpoint(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)


def assert_same_tensors(a, b, where=""):
    """Nested dicts / lists of tensors and plain values equal bit for bit."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_every_zoo_preset_trains_on_the_embedded_data(tmp_path, name):
    summary = train(config(tmp_path / name, name), REGISTRY.get(name), **QUIET)
    assert summary["status"] == "completed" and summary["steps"] == 8
    by_epoch = collections.defaultdict(list)
    for rec in metric_lines(tmp_path / name):
        by_epoch[rec["epoch"]].append(rec["loss"])
    first, second = (sum(v) / len(v) for v in (by_epoch[1], by_epoch[2]))
    assert second < first, (first, second)


def interrupted_then_resumed(tmp_path, monkeypatch, name, **options):
    """(the uninterrupted run's directory, the one interrupted after 3 of 6 steps and resumed)."""
    preset = REGISTRY.get(name)
    whole, part = tmp_path / "whole", tmp_path / "part"
    train(config(whole, name, epochs=3, limit_train=16, **options), preset, **QUIET)
    calls = {"n": 0}
    real_step = Trainer.step

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(config(part, name, epochs=3, limit_train=16, **options), preset, **QUIET)
    monkeypatch.setattr(Trainer, "step", real_step)
    train(config(part, name, epochs=3, limit_train=16, **options), preset, resume=True, **QUIET)
    return whole, part


@pytest.mark.slow
@pytest.mark.parametrize("name", ["muon", "sam_sgd", "schedulefree_adamw", "prodigy", "lion"])
def test_a_resumed_zoo_run_ends_bit_identical_to_an_uninterrupted_one(tmp_path, monkeypatch, name):
    whole, part = interrupted_then_resumed(tmp_path, monkeypatch, name)
    assert metric_lines(part) == metric_lines(whole)
    assert epoch_rows(part) == epoch_rows(whole)
    a, b = checkpoint(part), checkpoint(whole)
    assert_same_tensors(a["model"], b["model"], "model")
    assert_same_tensors(a["optimizer"], b["optimizer"], "optimizer")


@pytest.mark.slow
def test_sam_calls_its_closure_once_per_step_and_counts_two_passes(tmp_path):
    preset = REGISTRY.get("sam_sgd")
    trainer = Trainer(config(tmp_path / "sam", "sam_sgd", epochs=1), preset, tmp_path / "sam", **QUIET)
    calls = collections.Counter()
    real_step = trainer.optimizer.step

    def counted(closure=None):
        def wrapped():
            calls[trainer.state.counters["step"]] += 1
            return closure()
        return real_step(wrapped)

    trainer.optimizer.step = counted
    try:
        trainer.fit(resume=False)
    finally:
        trainer.close()
    assert calls == {0: 1, 1: 1, 2: 1, 3: 1}
    lines = metric_lines(tmp_path / "sam")
    assert [(r["forward_passes"], r["backward_passes"]) for r in lines] == [(2, 2)] * 4


@pytest.mark.slow
def test_schedule_free_is_evaluated_at_its_average_with_recomputed_batchnorm_and_resumes_exactly(
        tmp_path, monkeypatch):
    seen, last = [], {}
    real_step, real_evaluate = Trainer.step, Trainer.evaluate

    def step(self, *args, **kwargs):
        result = real_step(self, *args, **kwargs)
        last["train_point"] = [p.detach().clone() for p in self.params]  # where training left the weights
        return result

    def evaluate(self, *args, **kwargs):
        norm = next(m for m in self.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
        beta1 = self.optimizer.param_groups[0]["betas"][0]
        average = [torch.lerp(y, self.optimizer.state[p]["z"], 1 - 1 / beta1)
                   for p, y in zip(self.params, last["train_point"])]
        seen.append({"train_mode": [g["train_mode"] for g in self.optimizer.param_groups],
                     "bn_passes": self.lifecycle.bn_passes, "tracked": int(norm.num_batches_tracked),
                     "moved": any(not torch.equal(p, y) for p, y in zip(self.params, last["train_point"])),
                     "at_average": all(torch.allclose(p, x, rtol=1e-5, atol=1e-6)
                                       for p, x in zip(self.params, average))})
        return real_evaluate(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "step", step)
    monkeypatch.setattr(Trainer, "evaluate", evaluate)
    whole, part = interrupted_then_resumed(tmp_path, monkeypatch, "schedulefree_adamw",
                                           set_values=["bn_batches=3"])
    assert seen and all(s["train_mode"] == [False] and s["moved"] and s["at_average"] for s in seen), seen
    # 3 batches, each a classification and a segmentation batch through the shared trunk: 6 normalisations
    assert all(s["bn_passes"] == 3 and s["tracked"] == 6 for s in seen), seen
    a, b = checkpoint(part), checkpoint(whole)
    assert_same_tensors(a["model"], b["model"], "model")
    assert_same_tensors(a["optimizer"], b["optimizer"], "optimizer")
    assert metric_lines(part) == metric_lines(whole)


@pytest.mark.slow
def test_muon_steps_exactly_the_hidden_matrices(tmp_path):
    trainer = Trainer(config(tmp_path / "muon", "muon", epochs=1, limit_train=16), REGISTRY.get("muon"),
                      tmp_path / "muon", **QUIET)
    try:
        muon, adamw = trainer.optimizer.optimizers
        hidden, _ = hidden_matrices(trainer.model, list(zip(trainer.names, trainer.params)))
        held = [p for g in muon.param_groups for p in g["params"]]
        assert isinstance(muon, MatrixMuon) and [id(p) for p in held] == [id(p) for p in hidden["params"]]
        assert all(p.ndim >= 2 for p in held) and all(not n.startswith(("cls_head", "seg_head"))
                                                     for n, p in zip(trainer.names, trainer.params)
                                                     if any(p is q for q in held))
        before = {id(p): p.detach().clone() for p in trainer.params}
        trainer.fit(resume=False)
        assert all(not torch.equal(p, before[id(p)]) for p in held)
        assert all("momentum_buffer" in muon.state[p] for p in held)
        assert all("exp_avg" in adamw.state[p] for g in adamw.param_groups for p in g["params"] if p.grad is not None)
    finally:
        trainer.close()
