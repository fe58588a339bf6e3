"""What a run ran on, for its env.json: versions, the device, the threads, the compiled-ops backend and the
code revision. Importing this module does not import torch (run directories are read without it)."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["environment"]


def environment(device: torch.device, ops_backend: str) -> dict:
    """Versions, device and the code revision, for env.json."""
    import torch
    import torchvision

    from . import __version__

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "mtbench": __version__,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "cpu_threads": torch.get_num_threads(),
        "ops_backend": ops_backend,
        "git_commit": _git_commit(),
    }
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
