"""Which tests may use a GPU, for tests/conftest.py: the suite means the same on any machine.

A test that needs CUDA carries the marker `cuda` (`@pytest.mark.cuda`, or `pytest.param("cuda",
marks=pytest.mark.cuda)` for one parameter); `cuda(ops=True)` also needs the compiled ops built
with CUDA. Such a test is skipped with the reason where that is missing. Every other test runs on
the CPU even where GPUs are visible: `hide_cuda` makes the process and its subprocesses see none,
so `--device auto` resolves to cpu, a torchrun worker does not look for a GPU of its own, and
results that a test compares bit for bit come from the CPU kernels.
"""

from __future__ import annotations

import pytest
import torch

MARKER = "cuda"


def hide_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GPU for the rest of the test: none in this process, none in the processes it starts."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def missing_for(marker: pytest.Mark) -> str | None:
    """Why a test with this `cuda` marker cannot run here; None when it can."""
    if not torch.cuda.is_available():
        return "needs a CUDA GPU"
    if marker.kwargs.get("ops"):
        from mtbench import ops

        if not ops.cuda_available():
            return f"needs the compiled ops built with CUDA ({ops.describe()})"
    return None


def is_cuda_value(value: object) -> bool:
    """Whether a test parameter names a CUDA device ("cuda", "cuda:1", torch.device("cuda"))."""
    if isinstance(value, torch.device):
        return value.type == "cuda"
    return isinstance(value, str) and (value == "cuda" or value.startswith("cuda:"))


def unmarked_cuda_tests(items: list[pytest.Item]) -> list[str]:
    """The node ids of tests parametrized with a CUDA device that do not carry the `cuda` marker."""
    return [item.nodeid for item in items
            if item.get_closest_marker(MARKER) is None
            and any(is_cuda_value(v) for v in getattr(getattr(item, "callspec", None), "params", {}).values())]
