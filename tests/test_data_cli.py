"""`mtbench data synth OUT [--workload NAME]`."""

import json

import numpy as np
from click.testing import CliRunner

from mtbench.cli import main
from mtbench.data.synthetic import MANIFEST, SyntheticSpec


def test_synth_writes_both_layouts_and_says_where(tmp_path):
    out = tmp_path / "synth"
    result = CliRunner().invoke(main, ["data", "synth", str(out)])
    assert result.exit_code == 0, result.output
    spec = SyntheticSpec()
    assert f"wrote the synthetic data set to {out}" in result.output
    n_train, n_val = spec.classes * spec.train_per_class, spec.classes * spec.val_per_class
    lines = result.output.splitlines()
    assert f"  ImageNet layout: {out / 'imagenet'}  {spec.classes} classes, {n_train} train / {n_val} val images" \
        in lines
    assert (f"  COCO layout:     {out / 'coco'}  {spec.seg_classes} VOC classes, "
            f"{spec.seg_train} train / {spec.seg_val} val images") in lines
    assert len(list((out / "imagenet" / "val").glob("*/*.JPEG"))) == spec.classes * spec.val_per_class
    assert len(list((out / "coco" / "val2017").glob("*.jpg"))) == spec.seg_val
    assert json.loads((out / MANIFEST).read_text())["spec"] == spec.__dict__


def test_synth_into_an_unwritable_place_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    result = CliRunner().invoke(main, ["data", "synth", str(tmp_path / "file" / "out")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: cannot write the synthetic data set to {tmp_path / 'file' / 'out'}: Not a directory"
    ]


def test_synth_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    result = CliRunner().invoke(main, ["data", "synth", str(tmp_path)])
    assert result.exit_code == 1 and "is not empty; choose a new or empty folder" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_synth_needs_out():
    result = CliRunner().invoke(main, ["data", "synth"])
    assert result.exit_code == 2 and "Missing argument 'OUT'" in result.output


def test_synth_writes_the_multidigits_stand_in_a_run_uses(tmp_path):
    from mtbench.data.multidigits import ensure_multidigits, load_split

    out = tmp_path / "digits"
    result = CliRunner().invoke(main, ["data", "synth", str(out), "--workload", "multidigits"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"wrote the multidigits stand-in to {out}"
    assert f"  train on this copy: mtbench run --workload multidigits --data {out}" in result.output.splitlines()
    cached = ensure_multidigits(tmp_path / "cache")
    for split in ("train", "val"):
        for written, used in zip(load_split(out, split), load_split(cached, split)):
            assert np.array_equal(written, used)
    assert json.loads((out / "embedded.json").read_text()) == json.loads((cached / "embedded.json").read_text())


def test_synth_writes_a_dense_stand_in_in_the_real_layout(tmp_path, monkeypatch):
    from mtbench.data import cityscapes
    from mtbench.data.dense import open_dense

    small = cityscapes.CityscapesSpec(train=3, val=2, height=16, width=32)
    monkeypatch.setattr(cityscapes, "CityscapesSpec", lambda: small)  # the default spec, smaller
    out = tmp_path / "city"
    result = CliRunner().invoke(main, ["data", "synth", str(out), "--workload", "cityscapes"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:2] == [
        f"wrote the cityscapes stand-in to {out}",
        f"  Cityscapes layout: {out}/{{train,val}}/{{image,label_7,depth}}/<i>.npy  3 train / 2 val streets "
        f"at 16 x 32, 7 classes"]
    train, val, _, size = open_dense(cityscapes.LAYOUT, out)
    assert (len(train), len(val), size) == (3, 2, (16, 32))
    cached = cityscapes.ensure_cityscapes(tmp_path / "cache", small)
    for path in sorted(cached.glob("*/*/*.npy")):
        assert np.array_equal(np.load(path), np.load(out / path.relative_to(cached)))


def test_synth_of_an_unknown_workload_or_one_without_a_stand_in_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["data", "synth", str(tmp_path / "a"), "--workload", "nyu"])
    assert result.exit_code == 1 and result.output.startswith("Error: unknown workload 'nyu'; did you mean 'nyuv2'?")
    plugin = tmp_path / "mine.py"
    plugin.write_text(
        "from mtbench import Metric, Task, Workload, hookimpl\n"
        "@hookimpl\n"
        "def mtbench_workloads():\n"
        "    task = Task(name='a', title='a', metrics=(Metric('acc', 'acc', True),), primary='acc',\n"
        "                loss='mine:loss', meter='mine:meter')\n"
        "    return [Workload(name='mine', title='mine', tasks=(task,), build_model='mine:m', build_data='mine:d')]\n")
    result = CliRunner().invoke(main, ["--plugin", str(plugin), "data", "synth", str(tmp_path / "b"),
                                       "--workload", "mine"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: workload 'mine' has no embedded stand-in to write (the built-in ones: imagenet-coco, nyuv2, "
        "cityscapes, multidigits); a plugin's workload makes its data in its build_data"]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
