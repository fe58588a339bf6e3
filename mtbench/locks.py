"""An exclusive lock on a folder, so that one process at a time works in a run or comparison directory.

The lock is ``fcntl.flock`` on a file inside the folder. The operating system drops it when the
holder's process ends, however it ends, so a killed holder never leaves a stale lock behind. The
holder writes who it is (pid, host, start time, command) into the lock file, so that a process
turned away can say who holds the folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Callable

from .errors import MTBenchError

LOCK_FILE = ".lock"


class LockedError(MTBenchError):
    """Another process holds the lock of a folder."""


class DirLock:
    """The lock of one folder: ``acquire`` it, ``release`` it when done (``with lock.acquire():``).

    ``hint`` ends the message of a process that is turned away (what the user can do about it).
    """

    def __init__(self, folder: str | os.PathLike, hint: str = "wait for it to finish"):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.hint = hint
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, wait: bool = False, command: str | None = None,
                on_wait: Callable[[str], None] | None = None) -> DirLock:
        """Take the lock, or raise LockedError naming the holder; with ``wait``, block until it is free.

        ``on_wait(holder)`` is called once before blocking. ``command`` is recorded for others to
        see (default: this process's command line).
        """
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this object")
        announced = False
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise MTBenchError(f"cannot lock {self.folder}: {exc.strerror or exc}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _describe(_read_holder(fd))
                if not wait:
                    os.close(fd)
                    raise LockedError(f"{self.folder} is in use by another process ({holder}); "
                                      f"{self.hint}") from None
                if on_wait is not None and not announced:
                    on_wait(holder)
                    announced = True
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
            # A releasing holder unlinks the file before unlocking it: a lock taken on an unlinked
            # file guards nothing, so start again on the file that is at the path now.
            if _same_file(fd, self.path):
                break
            os.close(fd)
        self._fd = fd
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": time.strftime("%Y-%m-%d %H:%M:%S%z"), "command": command or _command_line()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        return self

    def release(self) -> None:
        """Give the lock up and remove the lock file (a no-op when not held)."""
        if self._fd is None:
            return
        try:
            self.path.unlink()
        except OSError:
            pass  # the folder itself was removed: nothing left to guard
        os.close(self._fd)  # closing the last descriptor drops the flock
        self._fd = None

    def __enter__(self) -> DirLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 65536, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}  # the holder has the lock but has not written its record yet


def _describe(holder: dict) -> str:
    if not holder.get("pid"):
        return "holder not yet recorded"
    parts = [f"pid {holder['pid']} on {holder.get('host', '?')}"]
    if holder.get("since"):
        parts.append(f"since {holder['since']}")
    if holder.get("command"):
        parts.append(f"command: {holder['command']}")
    return ", ".join(parts)


def _command_line() -> str:
    argv = list(sys.argv) or ["python"]
    argv[0] = Path(argv[0]).name
    return shlex.join(argv)
