"""benchmarks/workload_steps.py: every row of every workload timed through the trainer's step, each
against its own workload's adam+sum, with the passes the step made; a row that cannot be built is
named with the reason and the others are still measured."""

import importlib.util
import re
import tempfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "workload_steps.py"


def run(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # its runs' directories
    spec = importlib.util.spec_from_file_location("workload_steps", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--device", "cpu", "--rounds", "1", "--steps", "1", "--batch-size", "4", "--limit-train", "8",
                 *argv])
    return capsys.readouterr().out.splitlines()


def test_each_row_against_its_workloads_sum_with_its_passes(tmp_path, monkeypatch, capsys):
    lines = run(["--workloads", "multidigits", "--image-size", "32"], tmp_path, monkeypatch, capsys)
    rows = {line.split()[2]: line.split() for line in lines[2:]}
    assert list(rows) == ["adam+sum", "adam+famo", "adam+upgrad", "mtadamv2"], lines
    assert all(r[0] == "multidigits" and r[1] == "2" for r in rows.values())
    assert rows["adam+sum"][4] == rows["adam+sum"][6] == "1.00"
    # (forward, backward): FAMO's after_step is one more forward; per-task gradients on a shared batch, T backward
    assert [" ".join(rows[name][-2:]) for name in rows] == ["1, 1", "2, 1", "1, 2", "1, 2"]
    for r in rows.values():
        assert float(r[3]) > 0 and float(r[5]) > 0
    # the ratio of the unrounded times; the printed ms of this tiny network are rounded to 0.1
    assert float(rows["adam+upgrad"][6]) == pytest.approx(float(rows["adam+upgrad"][5]) / float(rows["adam+sum"][5]),
                                                           rel=0.1)
    assert [p for p in tmp_path.iterdir() if not p.name.startswith("torchinductor")] == []  # temporary runs


def test_a_row_that_cannot_be_built_is_named_and_the_others_run(tmp_path, monkeypatch, capsys):
    lines = run(["--workloads", "multidigits", "--image-size", "32", "--method", "nosuch"], tmp_path, monkeypatch,
                capsys)
    assert [line.split()[2] for line in lines[2:5]] == ["adam+sum", "adam+famo", "mtadamv2"]
    assert re.match(r"multidigits +adam\+nosuch +not measured: unknown method 'nosuch'", lines[5]), lines
