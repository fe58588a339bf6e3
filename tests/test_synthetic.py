"""The embedded synthetic set: byte-deterministic, in both layouts, read by the real loaders, cached atomically."""

import json
import os
import re

import pytest
import torch

from mtbench.data import build_datasets
from mtbench.data import synthetic
from mtbench.data.coco import VOC_CATEGORY_IDS
from mtbench.data.synthetic import MANIFEST, SyntheticSpec, ensure_synthetic, write_synthetic
from mtbench.errors import DataError

SMALL = SyntheticSpec(classes=3, train_per_class=4, val_per_class=2, seg_classes=5, seg_train=12, seg_val=4)


def _tree(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generation_is_byte_deterministic(tmp_path):
    write_synthetic(tmp_path / "a", SMALL)
    write_synthetic(tmp_path / "b", SMALL)
    a, b = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert len(a) == 3 * 6 + 16 + 2 + 1 and a == b
    write_synthetic(tmp_path / "c", SyntheticSpec(**{**SMALL.__dict__, "seed": 1}))
    assert _tree(tmp_path / "c") != a


def test_layouts(tmp_path):
    imagenet, coco = write_synthetic(tmp_path, SMALL)
    wnids = sorted(p.name for p in (imagenet / "train").iterdir())
    assert len(wnids) == 3 and all(re.fullmatch(r"n\d{8}", w) for w in wnids)
    assert sorted(p.name for p in (imagenet / "val").iterdir()) == wnids
    assert all(len(list((imagenet / "train" / w).glob("*.JPEG"))) == 4 for w in wnids)
    instances = json.loads((coco / "annotations" / "instances_train2017.json").read_text())
    assert len(instances["images"]) == 12 == len(list((coco / "train2017").glob("*.jpg")))
    assert {c["id"] for c in instances["categories"]} == set(VOC_CATEGORY_IDS[1:6])
    assert {c["name"] for c in instances["categories"]} == {"airplane", "bicycle", "bird", "boat", "bottle"}
    assert instances["annotations"] and all(
        ann["iscrowd"] == 0 and len(ann["segmentation"][0]) >= 6 for ann in instances["annotations"]
    )
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["spec"]["seg_train"] == 12 and len(manifest["imagenet_classes"]) == 3


def test_default_set_through_build_datasets(tmp_path):
    bundle = build_datasets(cache_dir=tmp_path)
    spec = SyntheticSpec()
    assert bundle.synthetic and bundle.image_size == 64
    assert bundle.imagenet_dir == tmp_path / spec.cache_name() / "imagenet"
    assert len(bundle.cls_classes) == spec.classes and bundle.num_cls_outputs == 1000
    assert len(bundle.cls_train) == spec.classes * spec.train_per_class
    assert len(bundle.cls_val) == spec.classes * spec.val_per_class
    assert (len(bundle.seg_train), len(bundle.seg_val)) == (spec.seg_train, spec.seg_val)
    image, mask = bundle.seg_val[0]
    assert image.shape == (3, 64, 64) and mask.shape == (64, 64)
    masks = torch.stack([bundle.seg_val[i][1] for i in range(20)])
    objects = (masks > 0) & (masks < 255)
    assert 0.05 < objects.float().mean() < 0.6  # objects take a fair share of the pixels
    assert len(masks.unique()) > 5  # several classes appear

    limited = build_datasets(cache_dir=tmp_path, limit_train=20, limit_val=10, image_size=32)
    sizes = [len(ds) for ds in (limited.cls_train, limited.seg_train, limited.cls_val, limited.seg_val)]
    assert sizes == [20, 20, 10, 10]
    assert sorted({label for _, label in limited.cls_train.samples}) == list(range(spec.classes))
    assert limited.cls_train[0][0].shape == (3, 32, 32)


def test_drawn_objects_match_their_polygons(tmp_path):
    """Pixels inside an object's polygon are far more uniform in colour than the noisy background."""
    imagenet, coco = write_synthetic(tmp_path, SMALL)
    bundle = build_datasets(imagenet=imagenet, coco=coco, image_size=SMALL.image_size)
    for i in range(len(bundle.seg_val)):
        image, mask = bundle.seg_val[i]
        for cls in set(mask.unique().tolist()) - {0, 255}:
            inside = image[:, mask == cls]
            assert float(inside.std(dim=1).mean()) < float(image[:, mask == 0].std(dim=1).mean())


def test_ensure_generates_once(tmp_path, monkeypatch):
    first = ensure_synthetic(tmp_path, SMALL)
    stamp = (first[0].parent / MANIFEST).stat().st_mtime_ns
    monkeypatch.setattr(synthetic, "write_synthetic", pytest.fail)
    assert ensure_synthetic(tmp_path, SMALL) == first
    assert (first[0].parent / MANIFEST).stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [SMALL.cache_name()]


def test_ensure_uses_the_copy_of_a_process_that_finished_first(tmp_path, monkeypatch):
    final = tmp_path / SMALL.cache_name()
    real_write = synthetic.write_synthetic

    def racing_write(out, spec):
        # Another process completes and renames its copy while this one is still writing.
        real_write(tmp_path / "other", spec)
        os.rename(tmp_path / "other", final)
        return real_write(out, spec)

    monkeypatch.setattr(synthetic, "write_synthetic", racing_write)
    imagenet, coco = ensure_synthetic(tmp_path, SMALL)
    assert imagenet == final / "imagenet" and (final / MANIFEST).is_file()
    assert [p.name for p in tmp_path.iterdir()] == [final.name]  # the staging copy is gone


def test_cache_location(tmp_path, monkeypatch):
    monkeypatch.setenv("MTBENCH_CACHE", str(tmp_path / "env"))
    assert synthetic.cache_root() == tmp_path / "env"
    assert synthetic.cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("MTBENCH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert synthetic.cache_root() == tmp_path / "xdg" / "mtbench"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert synthetic.cache_root() == tmp_path / "home" / ".cache" / "mtbench"


def test_unwritable_cache_is_a_data_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match=r"cannot create the data cache .*file: .*; set MTBENCH_CACHE to a writable"):
        ensure_synthetic(tmp_path / "file", SMALL)


def test_write_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match=r"is not empty; choose a new or empty folder"):
        write_synthetic(tmp_path, SMALL)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_spec_changes_the_cache_name():
    assert SMALL.cache_name() != SyntheticSpec().cache_name()
    assert SMALL.cache_name() == SyntheticSpec(**SMALL.__dict__).cache_name()
    assert re.fullmatch(r"synthetic-v\d+-[0-9a-f]{10}", SMALL.cache_name())


@pytest.mark.parametrize("field, value", [("classes", 0), ("seg_classes", 21), ("image_size", 16)])
def test_spec_rejects_impossible_values(field, value):
    with pytest.raises(ValueError, match=field):
        SyntheticSpec(**{field: value})
