"""A run of a --tasks subset (a single-task baseline) evaluates and records only the tasks it trains
(mtbench.training.evaluate's NOTE [trained tasks only]); and what a run records of its network, which the
report's header shows for a workload other than the default one (NOTE [model in summary])."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import mtbench.train
import mtbench.workloads.build
from mtbench.cli import main
from mtbench.config import build_config
from mtbench.plugins import load_registry
from mtbench.report.header import header_lines
from mtbench.report.runs import load_run
from mtbench.train import train
from mtbench.training.evaluate import evaluate
from mtbench.training.runlog import holds_backbone
from tiny_workloads import tiny_workload

TINY = Path(__file__).with_name("tiny_workloads.py")
REGISTRY = load_registry(environ={})
ADAM = REGISTRY.get("adam")


class Counted:
    """A meter that counts the batches it is given (per task, in ``counts``)."""

    def __init__(self, meter, task: int, counts: dict[int, int]):
        self.meter, self.task, self.counts = meter, task, counts

    def update(self, output, target):
        self.counts[self.task] = self.counts.get(self.task, 0) + 1
        self.meter.update(output, target)

    def __getattr__(self, name):
        return getattr(self.meter, name)


@pytest.fixture
def meter_counts(monkeypatch) -> dict[int, int]:
    counts: dict[int, int] = {}
    built = mtbench.workloads.build.task_meters

    def counted(*args, **kwargs):
        return [Counted(m, t, counts) for t, m in enumerate(built(*args, **kwargs))]

    monkeypatch.setattr(mtbench.workloads.build, "task_meters", counted)
    return counts


def run_tiny(tmp_path: Path, workload, tasks=None, name="run", **settings) -> dict:
    config = build_config(ADAM, tmp_path / name, workload=workload, batch_size=4, epochs=2, limit_train=8,
                          limit_val=8, holdout=0.25, device="cpu", **({"tasks": tasks} if tasks else {}), **settings)
    return train(config, ADAM, workload=workload, progress=False, echo=lambda s: None)


@pytest.mark.parametrize("shared", [False, True])
def test_a_subset_run_evaluates_and_records_only_its_task(tmp_path, meter_counts, shared):
    workload = tiny_workload(3, shared)
    summary = run_tiny(tmp_path, workload, tasks="t1")
    assert summary["status"] == "completed" and summary["tasks"] == ["t1"]
    assert list(summary["final_metrics"]) == ["acc1"] and summary["final_metrics"]["acc1"] is not None
    assert list(summary["holdout_metrics"]) == ["acc1"] and summary["holdout_metrics"]["acc1"] is not None
    # the workload's metrics (what the report reads them by) stay every task's
    assert list(summary["task_metrics"]) == ["t0", "t1", "t2"]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["final_metrics"] == summary["final_metrics"]
    rows = list(csv.DictReader((tmp_path / "run" / "epochs.csv").open()))
    assert len(rows) == 2 and all(r["val_acc0"] == r["val_acc2"] == r["holdout_acc0"] == "" for r in rows)
    assert all(r["val_acc1"] and r["holdout_acc1"] for r in rows)
    # only t1's meters saw a batch: 2 epochs x (test + holdout split), one evaluation batch each
    assert meter_counts == {1: 2 * 2}


def test_a_run_of_every_task_evaluates_every_task(tmp_path, meter_counts):
    summary = run_tiny(tmp_path, tiny_workload(3, False))
    assert list(summary["final_metrics"]) == ["acc0", "acc1", "acc2"]
    assert meter_counts == {0: 4, 1: 4, 2: 4}


def everything_evaluated(model, sets, meters, batches, autocast, shared_batch=False, trained=None):
    """Evaluation as it was before a subset run left its untrained tasks out."""
    return evaluate(model, sets, meters, batches, autocast, shared_batch)


def invoke(args: list[str]):
    return CliRunner().invoke(main, ["--plugin", str(TINY), *args],
                              env={"MTBENCH_PLUGINS": "", "MTBENCH_DISABLE_PLUGINS": ""})


def delta_m_report(out: Path) -> dict:
    result = invoke(["compare", "--workload", "tiny2-split", "--optimizers", "adam", "--single-task", "--primary",
                     "delta_m", "--seeds", "2", "--epochs", "1", "--batch-size", "4", "--limit-train", "12",
                     "--limit-val", "8", "--device", "cpu", "-q", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads((out / "report.json").read_text())


def as_recorded_before(out: Path) -> int:
    """Give each baseline's summary.json the untrained task's figures, as a run recorded them before: its last
    epochs.csv row's (written there by the evaluation of every task). The number of figures added."""
    added = 0
    for path in out.glob("runs/*/summary.json"):
        summary = json.loads(path.read_text())
        last = list(csv.DictReader((path.parent / "epochs.csv").open()))[-1]
        for split, key in (("val", "final_metrics"), ("holdout", "holdout_metrics")):
            for name in ("acc0", "acc1"):
                if summary[key] is not None and name not in summary[key]:
                    summary[key][name] = float(last[f"{split}_{name}"])
                    added += 1
            if summary[key] is not None:
                summary[key] = {n: summary[key][n] for n in ("acc0", "acc1")}
        path.write_text(json.dumps(summary, indent=2))
    return added


def test_a_delta_m_report_from_subset_baselines_is_as_before(tmp_path, monkeypatch):
    import mtbench.report.plots

    monkeypatch.setattr(mtbench.report.plots, "write_plots", lambda report, out: [])
    now = delta_m_report(tmp_path / "now")
    with monkeypatch.context() as patched:  # the baselines as they ran before, every head evaluated
        patched.setattr(mtbench.train, "evaluate", everything_evaluated)
        delta_m_report(tmp_path / "before")
    assert as_recorded_before(tmp_path / "before") == 2 * 2 * 2  # 2 baselines x 2 seeds x 2 splits
    rebuilt = invoke(["report", str(tmp_path / "before"), "--primary", "delta_m"])
    assert rebuilt.exit_code == 0, rebuilt.output
    before = json.loads((tmp_path / "before" / "report.json").read_text())
    assert [r["label"] for r in now["rows"]] == ["adam", "adam[t0]", "adam[t1]"]
    assert now["rows"][0]["metrics"]["delta_m"]["mean"] is not None
    assert [r["metrics"] for r in now["rows"]] == [r["metrics"] for r in before["rows"]]
    assert now["verdict"] == before["verdict"] and now["baselines"] == before["baselines"]


# -- what a run records of its network, and the header ---------------------------------------------------

def test_a_run_records_its_networks_class_and_the_backbone_it_holds(tmp_path):
    digits, dense = REGISTRY.workload("multidigits"), REGISTRY.workload("nyuv2")
    data = type("Data", (), {"info": {"outputs": (13, 1, 3), "tasks": ("left", "right")}})()
    assert holds_backbone(mtbench.workloads.build.build_model(dense, "resnet18", data))
    assert not holds_backbone(mtbench.workloads.build.build_model(digits, "resnet18", data))
    summary = run_tiny(tmp_path, tiny_workload(2, False))
    assert (summary["model"], summary["model_backbone"]) == ("Net", None)


def header_settings(tmp_path: Path, workload, names: list[str], **summary_edits) -> str:
    runs = []
    for name in names:
        run_tiny(tmp_path, workload, name=name)
        path = tmp_path / name / "summary.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **summary_edits.get(name, {})}))
        runs.append(load_run(tmp_path / name))
    return header_lines(runs, [], workload.name, workload.task_names)[1].split("); ", 1)[1]


def test_the_header_names_another_workloads_model_and_a_backbone_only_where_it_holds_one(tmp_path):
    workload = tiny_workload(2, False)
    assert header_settings(tmp_path, workload, ["a"]) == (
        "epochs 2, batch size 4, train limit 8, val limit 8, model Net, amp off, device cpu")
    held = header_settings(tmp_path / "held", workload, ["a", "b"],
                           a={"model": "DenseNet", "model_backbone": "resnet50"},
                           b={"model": "DenseNet", "model_backbone": "resnet50"})
    assert "model DenseNet, backbone resnet50, amp off, device cpu" in held
    mixed = header_settings(tmp_path / "mixed", workload, ["a", "b"], a={"model": "DenseNet"})
    assert "model varies, amp off, device cpu" in mixed
    # a run that recorded no network (before these fields): --backbone, as the header always said
    old = header_settings(tmp_path / "old", workload, ["a", "b"], a={"model": None, "model_backbone": None})
    assert "val limit 8, backbone resnet18, amp off, device cpu" in old
