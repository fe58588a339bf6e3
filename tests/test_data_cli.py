"""`mtbench data synth OUT`."""

import json

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
