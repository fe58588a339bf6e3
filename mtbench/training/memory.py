"""The peak memory of a run: the process's resident high-water mark, reset when a run starts."""

from __future__ import annotations

import resource
import sys

__all__ = ["peak_rss_mb", "reset_peak_rss"]


def reset_peak_rss() -> None:
    """Start a new peak for this process's resident memory (Linux; elsewhere the peak is process-wide).

    NOTE [peak memory of a run]: ``peak_memory_mb`` is the high-water mark of the process's
    resident memory (CUDA: of allocated device memory) between the run's start and its end, the
    mark reset when the run starts: writing 5 to /proc/self/clear_refs resets VmHWM to the current
    resident size, torch.cuda.reset_peak_memory_stats the device's. It includes what the process
    holds anyway (Python, torch); as runs free all they allocate (see NOTE [no reference cycles]),
    equal runs in one process (a comparison, a tune) report equal peaks.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """Peak resident memory since the last reset_peak_rss (VmHWM), else since the process started."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS, KiB elsewhere
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
