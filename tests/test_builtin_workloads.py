"""The nyuv2, cityscapes and multidigits declarations hold to the workload contract: every dotted name
imports, the data builders return one shared set whose items carry one target per task, the model
returns one output per task, each task's loss takes its pair, and each meter computes exactly the
task's metrics."""

import importlib
import math

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from densedata import write_dense
from mtbench import Workload
from mtbench.errors import ConfigError, DataError
from mtbench_plugins.workloads import CITYSCAPES, MULTIDIGITS, NYUV2, mtbench_workloads


def _load(name):
    module, _, attr = name.partition(":")
    return getattr(importlib.import_module(module), attr)


def _digits(root):
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("val", 6)):
        (root / split).mkdir(parents=True)
        np.save(root / split / "images.npy", rng.uniform(0, 1, (n, 32, 32)).astype(np.float32))
        np.save(root / split / "labels.npy", rng.integers(0, 10, (n, 2)))
    return root


DATA = {
    "nyuv2": lambda root: write_dense(root, size=(32, 48), count=(6, 3)),
    "cityscapes": lambda root: write_dense(root, "label_7", 7, normals=False, size=(32, 64), count=(6, 3)),
    "multidigits": _digits,
}


def test_the_plugin_brings_three_shared_batch_workloads():
    workloads = mtbench_workloads()
    assert [w.name for w in workloads] == ["nyuv2", "cityscapes", "multidigits"]
    assert all(isinstance(w, Workload) and w.batches == "shared" for w in workloads)
    assert NYUV2.task_names == ("seg", "depth", "normal") and CITYSCAPES.task_names == ("seg", "depth")
    assert [m.name for t in NYUV2.tasks for m in t.metrics] == [
        "miou", "pixel_acc", "depth_abs", "depth_rel", "normal_mean", "normal_median", "normal_11", "normal_22",
        "normal_30"]
    directions = {m.name: m.higher_is_better for t in NYUV2.tasks for m in t.metrics}
    assert not directions["depth_abs"] and not directions["normal_median"] and directions["normal_30"]
    units = {w.name: {m.name: m.unit for t in w.tasks for m in t.metrics} for w in (NYUV2, CITYSCAPES)}
    assert units["nyuv2"]["depth_abs"] == "m" and units["cityscapes"]["depth_abs"] == "px/256"
    assert units["nyuv2"]["depth_rel"] == units["cityscapes"]["depth_rel"] == ""


@pytest.mark.parametrize("workload", [NYUV2, CITYSCAPES, MULTIDIGITS], ids=lambda w: w.name)
def test_builders_model_losses_and_meters_fit_together(tmp_path, workload):
    root = DATA[workload.name](tmp_path / workload.name)
    data = _load(workload.build_data)(root, image_size=None, limit_train=4, limit_val=None, holdout=0.25)
    assert len(data.train) == len(data.val) == len(data.holdout) == 1 and not data.synthetic
    assert (len(data.train[0]), len(data.holdout[0])) == (3, 1)
    images, targets = default_collate([data.val[0][i] for i in range(3)])
    assert len(targets) == len(workload.tasks)
    torch.manual_seed(0)
    model = _load(workload.build_model)("resnet18", data).eval()
    with torch.no_grad():
        outputs = model(images)
    assert len(outputs) == len(workload.tasks) and model.last_shared_parameters()
    for task, output, target in zip(workload.tasks, outputs, targets):
        loss = _load(task.loss)(output, target)
        assert loss.dim() == 0 and math.isfinite(loss.item())
        meter = _load(task.meter)(data, "cpu")
        meter.update(output, target)
        meter.all_reduce()
        assert set(meter.compute()) == {m.name for m in task.metrics}


@pytest.mark.parametrize("workload", [NYUV2, CITYSCAPES], ids=lambda w: w.name)
def test_dense_image_size_is_the_height(tmp_path, workload):
    root = DATA[workload.name](tmp_path / workload.name)
    data = _load(workload.build_data)(root, image_size=64)
    image, _ = data.train[0][0]
    assert tuple(image.shape[-2:]) == ((64, 96) if workload is NYUV2 else (64, 128))  # 32 x 48, 32 x 64 stored
    with pytest.raises(ConfigError, match="at least 32"):
        _load(workload.build_data)(root, image_size=16)


def test_a_folder_of_the_wrong_set_is_refused(tmp_path):
    root = DATA["nyuv2"](tmp_path / "nyu")
    with pytest.raises(DataError, match="has no train/label_7/ folder"):
        _load(CITYSCAPES.build_data)(root)
    with pytest.raises(DataError, match="images.npy does not exist"):
        _load(MULTIDIGITS.build_data)(root)


def test_multidigits_runs_on_its_embedded_set_out_of_the_box(tmp_path):
    data = _load(MULTIDIGITS.build_data)(None, cache_dir=tmp_path)
    assert data.synthetic and (len(data.train[0]), len(data.val[0]), data.image_size) == (2000, 500, 32)
