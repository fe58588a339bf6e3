"""A finished run leaves the process as it found it: freed by reference counting alone.

A comparison or a tune trains many runs in one process. A run whose parts form a reference
cycle stays in memory until a full garbage collection, which comes rarely: memory (device memory
on a GPU) grew by a run's model, optimizer and data with each run. These tests keep the
collector off while runs train and ask that nothing of a run outlives it.
"""

import gc
import weakref

import pytest
import torch

from mtbench.config import build_config
from mtbench.errors import MTBenchError
from mtbench.plugins import load_registry
from mtbench.train import Trainer, train

REGISTRY = load_registry(environ={})
TINY = dict(image_size=32, limit_train=16, limit_val=8, batch_size=8, epochs=1, device="cpu")


@pytest.fixture
def collector_off():
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.fixture
def run_parts(monkeypatch):
    """Weak references to the parts of each Trainer that fits (trainer, model, optimizer, method, ...)."""
    parts: dict[str, weakref.ref] = {}
    fit = Trainer.fit

    def watched(self, resume):
        checked = getattr(self.strategy, "method", None)  # a method, as the trainer checks it
        named = {"trainer": self, "model": self.model, "optimizer": self.optimizer, "strategy": self.strategy,
                 "batches": self.batches, "data": self.data, "method": getattr(checked, "method", None)}
        parts.update({name: weakref.ref(obj) for name, obj in named.items() if obj is not None})
        return fit(self, resume)

    monkeypatch.setattr(Trainer, "fit", watched)
    return parts


def tiny_run(run_dir, optimizer="adam", method="sum"):
    preset, method_preset = REGISTRY.get(optimizer), None if method == "sum" else REGISTRY.get_method(method)
    config = build_config(preset, run_dir, method_preset, method=method, **TINY)
    return train(config, preset, method=method_preset, progress=False, echo=lambda line: None)


def alive(parts):
    return sorted(name for name, ref in parts.items() if ref() is not None)


@pytest.mark.parametrize("optimizer, method", [("adam", "sum"), ("mtadamv2", "sum"), ("adam", "pcgrad"),
                                               ("sgd", "uncertainty")])
def test_a_finished_run_is_freed_without_the_garbage_collector(tmp_path, collector_off, run_parts, optimizer, method):
    summary = tiny_run(tmp_path / "run", optimizer, method)
    assert summary["status"] == "completed"
    assert "model" in run_parts and "optimizer" in run_parts
    assert alive(run_parts) == []


@pytest.mark.parametrize("error", [KeyboardInterrupt, MTBenchError, ValueError])
def test_a_run_that_ends_in_an_error_is_freed_too(tmp_path, collector_off, run_parts, monkeypatch, error):
    def fail(self, *args, **kwargs):
        raise error("stopped in a step")

    monkeypatch.setattr(Trainer, "step", fail)
    with pytest.raises(error):
        tiny_run(tmp_path / "run")
    assert alive(run_parts) == []


def live_tensors() -> int:
    return sum(issubclass(type(obj), torch.Tensor) for obj in gc.get_objects())


def test_repeated_runs_in_one_process_leave_no_tensors_behind(tmp_path, collector_off):
    tiny_run(tmp_path / "first", "adam", "pcgrad")  # a first run may fill caches that last
    before = live_tensors()
    for i in range(2):
        tiny_run(tmp_path / f"run{i}", "adam", "pcgrad")
    assert live_tensors() == before


def test_a_comparison_frees_what_a_run_left_in_reference_cycles(tmp_path, collector_off):
    from mtbench.compare import PlannedRun, run_plan
    from mtbench.report.rows import RowSpec

    adam = REGISTRY.get("adam")
    plan = [PlannedRun(RowSpec.of("adam", "sum"), seed, adam, None,
                       build_config(adam, tmp_path / f"adam-seed{seed}", seed=seed)) for seed in (0, 1)]
    left = []

    class Cyclic:  # what a plugin's code might leave behind: an object that refers to itself
        def __init__(self):
            self.me = self

    def leaky_train(config, preset, **kwargs):
        left.append(weakref.ref(Cyclic()))
        return {"status": "completed"}

    run_plan(plan, leaky_train, progress=False, echo=lambda line: None)
    assert [ref() for ref in left] == [None, None]


def test_a_resumed_run_reports_the_peak_of_the_parts_before_up_to_their_summary(tmp_path, monkeypatch):
    import itertools

    import mtbench.train as train_module

    readings = itertools.count(100, 100)  # the first part's memory grows to its very end (its last summary)
    monkeypatch.setattr(train_module, "peak_rss_mb", lambda: float(next(readings)))
    first = tiny_run(tmp_path / "run")
    monkeypatch.setattr(train_module, "peak_rss_mb", lambda: 50.0)  # the resumed part needs less
    adam = REGISTRY.get("adam")
    resumed = train(build_config(adam, tmp_path / "run", **{**TINY, "epochs": 2}), adam, resume=True,
                    progress=False, echo=lambda line: None)
    assert resumed["status"] == "completed" and resumed["epochs"] == 2
    assert resumed["peak_memory_mb"] == first["peak_memory_mb"]
