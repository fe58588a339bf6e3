"""Stopping by a signal: SIGTERM as Ctrl-C, and never in the middle of a file write.

NOTE [signals during a write]: Python runs a signal's handler in the main thread between two
bytecodes, wherever that thread is. Inside ``torch.save`` the zip writer calls the file's
``write`` from C++, which turns a KeyboardInterrupt raised there into ``RuntimeError: ...
unexpected pos``: an interruption would become a failure (and a comparison or a tune would go
on as after one). ``deferred()`` holds SIGINT and SIGTERM while a file is written: their handler
only notes the signal, and when the write is done (or abandoned) the signal is raised again
under the handlers that were there before, so it acts as if it had come a moment later. Nothing
here imports torch.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: the run stops as on Ctrl-C, its summary saying so and how to resume."""


def _in_main_thread() -> bool:
    # Python sets handlers, and runs them, in the main thread only.
    return threading.current_thread() is threading.main_thread()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises Terminated in the main thread (elsewhere it is left alone)."""
    if not _in_main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def deferred() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM are held; at its end, however it ends, they are raised
    again in the order they came, under the handlers of before (see NOTE [signals during a write]).

    Outside the main thread it does nothing: no signal handler runs in another thread. A handler
    that was not set from Python (``signal.getsignal`` gives None) cannot be put back, so its
    signal is left alone.
    """
    if not _in_main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum, frame) -> None:
        held.append(signum)

    previous = {}
    try:
        for sig in STOP_SIGNALS:
            if signal.getsignal(sig) is not None:
                previous[sig] = signal.signal(sig, hold)
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in dict.fromkeys(held):
            signal.raise_signal(signum)  # its handler runs now: KeyboardInterrupt, Terminated, exit, ...
