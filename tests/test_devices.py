"""The suite means the same on any machine (tests/devices.py): a test without the `cuda` marker
sees no GPU, in process or in the processes it starts, even on a machine with GPUs; a test
parametrized with a CUDA device cannot be collected without the marker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mtbench.distributed import resolve_device

HERE = Path(__file__).parent

# A GPU host with two devices as CUDA shows it to a process: CUDA_VISIBLE_DEVICES="" hides them all.
GPU_HOST = """
import os, torch
visible = os.environ.get("CUDA_VISIBLE_DEVICES")
torch.cuda.device_count = lambda: 2 if visible is None else len([d for d in visible.split(",") if d.strip()])
torch.cuda.is_available = lambda: torch.cuda.device_count() > 0
"""


def simulate_gpu_host(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_a_test_without_the_marker_sees_no_gpu():
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == ""
    assert not torch.cuda.is_available() and torch.cuda.device_count() == 0
    assert resolve_device("auto") == torch.device("cpu")


@pytest.fixture(scope="module")
def seen_by_a_module_fixture():
    return os.environ.get("CUDA_VISIBLE_DEVICES"), torch.cuda.is_available()


def test_module_fixtures_it_sets_up_see_no_gpu_either(seen_by_a_module_fixture):
    assert seen_by_a_module_fixture == ("", False)


def test_its_subprocesses_pick_the_cpu_under_device_auto():
    script = GPU_HOST + "from mtbench.distributed import resolve_device\nprint(resolve_device('auto'))\n"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "cpu"
    # The simulated host is a GPU host: without the variable the same process would pick cuda.
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert out.stdout.strip() == "cuda"


def test_hiding_covers_a_gpu_host(monkeypatch):
    from devices import hide_cuda

    simulate_gpu_host(monkeypatch)
    assert resolve_device("auto") == torch.device("cuda")
    hide_cuda(monkeypatch)
    assert resolve_device("auto") == torch.device("cpu")
    assert torch.cuda.device_count() == 0


@pytest.mark.cuda
def test_a_test_with_the_marker_sees_the_gpu():
    assert "CUDA_VISIBLE_DEVICES" not in os.environ or os.environ["CUDA_VISIBLE_DEVICES"] != ""
    assert torch.cuda.is_available() and resolve_device("auto").type == "cuda"


SUITE = """
import pytest

@pytest.mark.parametrize("device", ["cpu", {cuda}])
def test_on(device):
    pass
"""


@pytest.fixture
def small_suite(pytester):
    pytester.makeconftest((HERE / "conftest.py").read_text())
    pytester.makepyfile(devices=(HERE / "devices.py").read_text())

    def run(cuda_param):
        pytester.makepyfile(test_small=SUITE.format(cuda=cuda_param))
        return pytester.runpytest("-rs", "-p", "no:cacheprovider", "-W", "ignore::pytest.PytestUnknownMarkWarning")
    return run


def test_a_cuda_parameter_without_the_marker_stops_the_collection(small_suite):
    result = small_suite('"cuda:0"')
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*1 test(s) parametrized with a CUDA device lack the `cuda` marker "
                                 "(tests/devices.py), e.g. test_small.py::test_on?cuda:0?"])


def test_a_marked_cuda_parameter_is_collected_and_skipped_without_a_gpu(small_suite):
    # Without the marker, this test sees no GPU: neither does the small suite it runs.
    result = small_suite('pytest.param("cuda", marks=pytest.mark.cuda(ops=True))')
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*needs a CUDA GPU*"])
