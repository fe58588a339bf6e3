"""Two gloo processes on CPU under torchrun: identical state on every rank, parity with one process,
resume, and a NaN on one rank stopping both."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from states import assert_same_state

HERE = Path(__file__).parent
pytestmark = pytest.mark.slow


def torchrun(*args, nproc=2, timeout=300, **env):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MTBENCH_DIST_TIMEOUT": "60", **env}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def worker(out, optimizer, nproc, **kw):
    extra = [f"--{k.replace('_', '-')}={v}" for k, v in kw.items()]
    args = [str(HERE / "dist_worker.py"), "--optimizer", optimizer, "--out", str(out), *extra]
    if nproc == 1:
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)
    return torchrun(*args, nproc=nproc)


def state(out, rank, world):
    return torch.load(out / f"rank{rank}-of-{world}.pt", weights_only=True)


def optimizer_tensors(state_dict):
    return [torch.as_tensor(v) for s in state_dict["state"].values() for _, v in sorted(s.items())]


def flat_state(saved):
    return list(saved["params"]) + optimizer_tensors(saved["optimizer"])


@pytest.mark.parametrize("optimizer", ["adam", "mtadamv2"])
def test_two_ranks_hold_identical_state_and_match_one_process(tmp_path, optimizer):
    result = worker(tmp_path, optimizer, 2)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = flat_state(state(tmp_path, 0, 2)), flat_state(state(tmp_path, 1, 2))
    assert len(rank0) == len(rank1)
    for a, b in zip(rank0, rank1):
        assert torch.equal(a, b)

    if optimizer == "mtadamv2":
        # Communication per step: one all-reduce of the whole [T, N] gradient buffer, in place (the
        # columns of the head a task does not reach are zeros), one for the two losses, and on CPU
        # one broadcast per buffer dtype (BatchNorm statistics).
        saved = state(tmp_path, 0, 2)
        total = sum(p.numel() for p in saved["params"])
        counts = saved["collectives_per_step"]
        assert counts["all_reduce"] == 2 and counts["broadcast"] == 2
        assert counts["all_reduce_elements"] == 2 * total + 2

    single = worker(tmp_path, optimizer, 1)
    assert single.returncode == 0, single.stderr[-3000:]
    one = state(tmp_path, 0, 1)
    # The reduced gradient is the full-batch gradient up to summation order, so after one step
    # the optimizer state (moments, norm averages: continuous in the gradient) agrees tightly.
    for a, b in zip(optimizer_tensors(state(tmp_path, 0, 2)["after_first_step"]),
                    optimizer_tensors(one["after_first_step"])):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-8)
    # Parameters: Adam-type steps divide by sqrt(v), so where a gradient is ~0 summation-order noise
    # can flip an element's step. Stated tolerance: no element further apart than the two
    # trajectories can move (2 x steps x tasks x lr), and 99 % of the elements within 1e-4 (a tenth of lr).
    tasks = 2 if optimizer == "mtadamv2" else 1
    a = torch.cat([p.flatten() for p in state(tmp_path, 0, 2)["params"]])
    b = torch.cat([p.flatten() for p in one["params"]])
    assert (a - b).abs().max() <= 2 * 3 * tasks * 1e-3
    assert ((a - b).abs() <= 1e-4).float().mean() >= 0.99


@pytest.mark.parametrize("method", ["pcgrad", "upgrad"])
def test_two_ranks_with_a_method_hold_identical_state(tmp_path, method):
    result = worker(tmp_path, "adam", 2, method=method)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = [state(tmp_path, rank, 2) for rank in (0, 1)]
    # Every rank combines the same all-reduced [T, N] buffer, PCGrad's random task order drawn from
    # the run's seed on each, so parameters and Adam's state agree bit for bit.
    for a, b in zip(flat_state(saved[0]), flat_state(saved[1])):
        assert torch.equal(a, b)
    for a, b in zip(saved[0]["method_weights"], saved[1]["method_weights"]):
        assert torch.equal(a, b)
    counts = saved[0]["collectives_per_step"]
    assert counts["all_reduce"] == 2 and counts["broadcast"] == 2  # the buffer, the losses; BatchNorm buffers
    if method != "upgrad":
        return

    # UPGrad is deterministic: two ranks on halves of the global batch match one process on all of it,
    # up to the summation order of the reduced gradient (tolerances as for Adam above).
    single = worker(tmp_path, "adam", 1, method=method)
    assert single.returncode == 0, single.stderr[-3000:]
    one = state(tmp_path, 0, 1)
    assert len(one["method_weights"]) == len(saved[0]["method_weights"]) == 3
    for a, b in zip(saved[0]["method_weights"], one["method_weights"]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    for a, b in zip(optimizer_tensors(saved[0]["after_first_step"]), optimizer_tensors(one["after_first_step"])):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-8)
    a = torch.cat([p.flatten() for p in saved[0]["params"]])
    b = torch.cat([p.flatten() for p in one["params"]])
    assert (a - b).abs().max() <= 2 * 3 * 1e-3
    assert ((a - b).abs() <= 1e-4).float().mean() >= 0.99


def test_a_nan_on_one_rank_stops_both(tmp_path):
    result = worker(tmp_path, "mtadamv2", 2, nan_rank=1)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "rank 0 stopped: non-finite loss at step 2 in segmentation" in output
    assert "rank 1 stopped: non-finite loss at step 2 in segmentation" in output


def test_a_distributed_run_writes_once_and_resumes(tmp_path):
    common = ["--device", "cpu", "--image-size", "32", "--limit-train", "16", "--limit-val", "8", "--batch-size", "4",
              "--quiet"]
    first = torchrun("-m", "mtbench", "run", "-o", "mtadamv2", "--out", str(tmp_path), "--epochs", "1", *common)
    assert first.returncode == 0, first.stderr[-3000:]
    (run_dir,) = tmp_path.iterdir()
    assert first.stdout.count("final: top-1") == 1
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # 16 images / (4 per rank x 2 ranks)
    resumed = torchrun("-m", "mtbench", "run", "--resume", str(run_dir), "--epochs", "2", "--quiet")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs"] == 2 and summary["steps"] == 4


@pytest.mark.parametrize("optimizer, method", [("adam", "sum"), ("mtadamv2", "sum"), ("adam", "pcgrad"), ("adam", "uw")])
def test_a_torchrun_run_ends_with_the_same_state_on_every_rank(tmp_path, optimizer, method):
    # Each rank saves its model (parameters and BatchNorm buffers) and optimizer state at exit
    # (tests/rank_state_plugin.py); only rank 0's would otherwise be seen, in the checkpoint.
    out = tmp_path / "ranks"
    out.mkdir()
    result = torchrun("-m", "mtbench", "run", "-o", optimizer, "--method", method, "--device", "cpu",
                      "--out", str(tmp_path / "runs"), "--epochs", "1", "--image-size", "32", "--limit-train", "16",
                      "--limit-val", "8", "--batch-size", "4", "--quiet",
                      MTBENCH_PLUGINS=str(HERE / "rank_state_plugin.py"), MTBENCH_TEST_RANK_STATE=str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(out / f"rank{rank}.pt", weights_only=True) for rank in (0, 1))
    (run_dir,) = (tmp_path / "runs").iterdir()
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["state"]["step"] == 2 and len(rank0["optimizer"]["state"]) > 0  # the ranks trained
    for part in ("model", "optimizer"):
        assert_same_state(rank0[part], checkpoint[part], f"rank 0 {part}")  # the dump is what the run saved
        assert_same_state(rank1[part], rank0[part], f"rank 1 {part}")


def test_compare_runs_each_run_under_torchrun(tmp_path):
    out = tmp_path / "cmp"
    cmd = [sys.executable, "-m", "mtbench", "compare", "--optimizers", "sgd,mtadamv2", "--methods", "sum,upgrad",
           "--nproc-per-node", "2", "--out", str(out), "--device", "cpu", "--image-size", "32", "--limit-train", "16",
           "--limit-val", "8", "--batch-size", "4", "--epochs", "1", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "note: mtadamv2 with upgrad left out" in result.stderr
    for name, method in (("sgd", "sum"), ("sgd+upgrad", "upgrad"), ("mtadamv2", "sum")):
        summary = json.loads((out / "runs" / f"{name}-seed0" / "summary.json").read_text())
        # compare holds out 2 of the 16 training images: 14 make one step of 4 images x 2 ranks
        assert summary["status"] == "completed" and summary["steps"] == 1 and summary["method"] == method
    assert not (out / "runs" / "mtadamv2+upgrad-seed0").exists()
    assert (out / "report.md").is_file()
