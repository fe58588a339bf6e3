"""Atomic writes: one writer for every whole file (a temporary file beside the target, then ``os.replace``),
so a crash at any moment leaves the previous version intact; folders and temporary files get the
permissions the umask allows."""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from .errors import MTBenchError
from .interrupts import deferred

__all__ = ["atomic_write_text", "atomic_writer", "make_temp_dir"]




def _new_temp_file(path: Path) -> tuple[int, Path]:
    """Create ``.<name>.<random>`` beside ``path``; mode 0666 lets the umask decide (mkstemp's is 0600)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def make_temp_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """A new, uniquely named folder ``parent/<prefix><random>`` with the umask's permissions.

    For staging a folder that is renamed into place when complete: ``tempfile.mkdtemp`` makes it
    0700, which the renamed folder would keep.
    """
    while True:
        path = Path(parent) / f"{prefix}{secrets.token_hex(4)}"
        try:
            path.mkdir(0o777)
            return path
        except FileExistsError:
            continue


def _os_error(exc: BaseException | None) -> OSError | None:
    """The OSError behind an exception (torch's zip writer wraps a failed write in a RuntimeError)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


@contextmanager
def atomic_writer(path: str | os.PathLike, binary: bool = False, what: str | None = None) -> Iterator[IO]:
    """A file object whose content replaces ``path`` in one step when the block ends without error.

    On any error the temporary file is removed and ``path`` keeps its previous content; a failed
    write (disk full, file-size limit, ...) becomes a one-line MTBenchError that says so. ``what``
    names the file in that message (default: its name). Ctrl-C and SIGTERM wait until the write
    is done or abandoned (see NOTE [signals during a write] in mtbench.interrupts).
    """
    path = Path(path)
    with deferred():
        try:
            fd, tmp = _new_temp_file(path)
        except OSError as exc:
            raise MTBenchError(f"cannot write {path}: {exc.strerror or exc}") from None
        try:
            with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())  # the data is on disk before the name points at it
            os.replace(tmp, path)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            cause = _os_error(exc)
            if cause is None:
                raise
            kept = f"the previous {what or path.name} is intact" if path.exists() else "nothing was written"
            raise MTBenchError(f"writing {path} failed ({cause.strerror or cause}); {kept}") from None


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_writer(path) as f:
        f.write(text)
