"""The README's three example plugins (a closure optimizer, a train/eval optimizer, a parameter-splitting
optimizer), taken from the README as written, loaded from $MTBENCH_PLUGINS and run on the embedded data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from mtbench.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
EXAMPLES = {"sharp_sgd", "averaged_sgd", "split_sgd_adam"}


def example(name: str) -> str:
    """The README's code block that starts with ``# NAME.py``."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    (code,) = [b for b in blocks if b.startswith(f"# {name}.py")]
    return code


def run_example(tmp_path: Path, name: str) -> tuple[dict, dict, Path]:
    plugin = tmp_path / f"{name}.py"
    plugin.write_text(example(name))
    out = tmp_path / "runs"
    args = ["run", "-o", name, "--limit-train", "16", "--limit-val", "8", "--image-size", "32", "--epochs", "2",
            "--device", "cpu", "--out", str(out), "-q"]
    result = CliRunner().invoke(main, args, env={"MTBENCH_PLUGINS": str(plugin), "MTBENCH_DISABLE_PLUGINS": ""})
    assert result.exit_code == 0, result.output
    (run_dir,) = out.iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 4
    return summary, torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True), run_dir


def test_the_readme_has_the_three_examples():
    assert {name for name in EXAMPLES if example(name)} == EXAMPLES


@pytest.mark.slow
def test_the_closure_example_runs_two_passes_per_step(tmp_path):
    _, _, run_dir = run_example(tmp_path, "sharp_sgd")
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["forward_passes"], r["backward_passes"]) for r in lines] == [(2, 2)] * 4


@pytest.mark.slow
def test_the_train_eval_example_is_saved_at_its_average(tmp_path):
    _, ckpt, _ = run_example(tmp_path, "averaged_sgd")
    groups = ckpt["optimizer"]["param_groups"]
    assert [g["averaged"] for g in groups] == [True]  # the checkpoint is written inside evaluation
    assert all("average" in s for s in ckpt["optimizer"]["state"].values())


@pytest.mark.slow
def test_the_splitting_example_gives_sgd_the_hidden_matrices(tmp_path):
    _, ckpt, _ = run_example(tmp_path, "split_sgd_adam")
    sgd, adam = ckpt["optimizer"]["optimizers"]
    assert [g["role"] for g in sgd["param_groups"]] == ["hidden"] and len(sgd["param_groups"][0]["params"]) == 19
    assert [g["role"] for g in adam["param_groups"]] == ["other"]
    assert all("exp_avg" in s for s in adam["state"].values())
