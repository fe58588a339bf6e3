"""`mtbench tune --jobs N`: worker processes on this machine, each running the same tune, sharing out the GPUs
or the CPU threads; they end with the process that started them."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from typing import Callable, Sequence

from ..errors import MTBenchError
from ..interrupts import STOP_SIGNALS

__all__ = ["cpu_count", "run_workers", "split_threads", "threads_per_job", "visible_gpus", "worker_env"]

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent ends (Linux)


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def threads_per_job(jobs: int) -> int:
    """CPU threads per trial: two torch processes with 2 threads each on 2 cores run ~20x slower than with 1."""
    return max(1, cpu_count() // jobs)


def split_threads(jobs: int) -> None:
    """Give this worker its share of the CPU threads."""
    import torch

    torch.set_num_threads(threads_per_job(jobs))


def visible_gpus(device: str) -> list[str]:
    """The GPUs to share out among the workers (CUDA_VISIBLE_DEVICES values); none for --device cpu or one
    named GPU (cuda:N keeps every worker on it)."""
    if device not in ("auto", "cuda"):
        return []
    import torch

    count = torch.cuda.device_count()
    listed = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return (listed or [str(i) for i in range(count)])[:count]


def worker_env(index: int, jobs: int, gpus: list[str], per_job: int = 1) -> dict[str, str]:
    """The environment of worker ``index``: its share of the CPU threads, and its ``per_job`` GPUs (one per
    torchrun process) when there are any, the workers taking them in turn."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads_per_job(jobs))}
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus[(index * per_job + k) % len(gpus)] for k in range(per_job))
    return env


def run_workers(argv: Sequence[str], jobs: int, device: str, nproc: int,
                echo: Callable[[str], None]) -> list[int]:
    """Run ``jobs`` workers, ``python -m mtbench *argv --worker i``, and wait for them; returns their pids.

    ``argv`` is the tune's own command line (the plugins, ``tune`` and its options). The workers end with
    this process: SIGINT and SIGTERM are passed on to them and waited for (each gives its trial back for
    the next run; KeyboardInterrupt here then), and should this process be killed outright they get
    SIGTERM from the kernel (Linux). They run in their own process group, so a Ctrl-C reaches them once,
    from here. MTBenchError when a worker stops with an error.
    """
    gpus = visible_gpus(device)
    echo(f"{jobs} workers, " + (f"GPUs {', '.join(gpus)}" if gpus else f"{threads_per_job(jobs)} CPU thread(s) each"))
    stopped: list[int] = []
    procs: list[subprocess.Popen] = []

    def forward(signum, frame) -> None:
        stopped.append(signum)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in STOP_SIGNALS}
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # held until every worker is there to pass it to
        try:
            procs += [subprocess.Popen([sys.executable, "-m", "mtbench", *argv, "--worker", str(i)],
                                       env=worker_env(i, jobs, gpus, nproc), preexec_fn=_end_with(os.getpid()))
                      for i in range(jobs)]
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        codes = [p.wait() for p in procs]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stopped:
        raise KeyboardInterrupt
    failed = [code for code in codes if code != 0]
    if failed:
        raise MTBenchError(f"{len(failed)} of {jobs} workers stopped with an error (exit status "
                           f"{', '.join(map(str, failed))}); run the same command again to finish the tune")
    return [p.pid for p in procs]


def _end_with(parent: int):
    """A worker's set-up before it runs (in the child, after fork): its own process group, and SIGTERM
    when ``parent`` ends."""
    def setup() -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked in the parent while it starts them
        os.setpgid(0, 0)
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: not Linux
            return
        if os.getppid() != parent:  # the parent ended before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return setup
