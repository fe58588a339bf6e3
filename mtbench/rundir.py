"""The run directory: the one owner of its layout, and the only code that reads and writes it.

Layout::

    config.json   the resolved RunConfig (+ the preset)      env.json     versions, device, commit
    summary.json  how the run ended, its figures (Summary)    epochs.csv   one row per epoch (EpochRow)
    metrics.jsonl one record per optimizer step               checkpoints/last.pt   the train state
    .lock         while a process works in the directory (see mtbench.locks)

Every whole-file write goes through one atomic writer (mtbench.atomic: a temporary file beside the
target, then ``os.replace``), so a crash at any moment leaves the previous version intact; the
line-oriented logs are appended and trimmed back to the last checkpoint on resume. Files and folders get the
permissions the umask allows, as files written by any other program would. Importing this module
does not import torch (``mtbench report`` reads run directories without it). The typed records
(EpochRow, Summary) are mtbench.records', re-exported here.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import pickle
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

from .atomic import atomic_write_text, atomic_writer, make_temp_dir
from .errors import ConfigError, MTBenchError
from .locks import DirLock
from .records import EPOCH_COLUMNS, SPLITS, EpochRow, RunFileError, Summary

__all__ = [
    "CHECKPOINT_DIR", "CONFIG_FILE", "ENV_FILE", "EPOCHS_FILE", "EPOCH_COLUMNS", "LAST_CHECKPOINT", "METRICS_FILE",
    "SPLITS", "SUMMARY_FILE", "EpochRow", "RunDir", "RunFileError", "Summary", "atomic_write_text", "atomic_writer",
    "create_run_dir", "finite_number", "make_temp_dir", "read_epochs", "read_json", "read_metrics",
    "read_summary",
]

CONFIG_FILE = "config.json"
ENV_FILE = "env.json"
SUMMARY_FILE = "summary.json"
EPOCHS_FILE = "epochs.csv"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
# The files written whole (atomically): a killed writer may leave ".<name>.<random>" beside them.
_ATOMIC_FILES = (CONFIG_FILE, ENV_FILE, SUMMARY_FILE, EPOCHS_FILE, METRICS_FILE)


def _run_dir_stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def create_run_dir(out: str | os.PathLike, optimizer: str, stamp: str | None = None) -> Path:
    """Create and return a new run directory ``out/<optimizer>-<stamp>`` (parents too).

    ``stamp`` defaults to the current time to the second. The folder is made with a plain
    ``mkdir`` that fails when the name exists, so two runs started at once never share one: the
    second gets ``-2``, the next ``-3``, and so on.
    """
    base = Path(out) / f"{optimizer}-{stamp or _run_dir_stamp()}"
    path, n = base, 1
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"cannot write the run directory {path}: {base.parent} is not a folder") from None
    except OSError as exc:
        raise ConfigError(f"cannot write the run directory {path}: {exc.strerror or exc}") from None
    try:
        while True:
            try:
                path.mkdir()
                return path
            except FileExistsError:
                n += 1
                path = base.with_name(f"{base.name}-{n}")
    except OSError as exc:
        raise ConfigError(f"cannot write the run directory {path}: {exc.strerror or exc}") from None


@contextmanager
def _appending(path: Path) -> Iterator[IO]:
    try:
        with open(path, "a", newline="", encoding="utf-8") as f:
            yield f
    except OSError as exc:
        raise MTBenchError(f"cannot write {path}: {exc.strerror or exc}") from None


# ---------------------------------------------------------------------------------------------
# Reading: what was written, with missing and cut-short files told apart


def read_json(path: str | os.PathLike) -> dict:
    """A JSON object from a run or comparison directory; RunFileError says what is wrong with it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunFileError(path, "is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunFileError(path, f"cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    if not text.strip():
        raise RunFileError(path, "is empty")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RunFileError(path, f"is not valid JSON (cut short? {exc})") from None
    if not isinstance(data, dict):
        raise RunFileError(path, f"holds a JSON {type(data).__name__}, not an object")
    return data


def read_summary(run_dir: str | os.PathLike) -> Summary:
    """A run's summary.json as a Summary; RunFileError says what is wrong with the file."""
    path = Path(run_dir) / SUMMARY_FILE
    try:
        return Summary.from_json(read_json(path))
    except ValueError as exc:
        raise RunFileError(path, f"is not a run summary ({exc})") from None


def finite_number(value: Any) -> float | None:
    """A float from a log or summary field; None for an empty, unparsable or non-finite value."""
    if value is None or value == "":
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def read_epochs(run_dir: str | os.PathLike) -> list[EpochRow]:
    """The rows of epochs.csv, one per epoch (a repeated epoch keeps its last row); [] without the file.

    A row cut short by a killed run reads its missing values as None.
    """
    path = Path(run_dir) / EPOCHS_FILE
    try:
        with open(path, newline="", encoding="utf-8") as f:
            raw_rows = list(csv.DictReader(f))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise RunFileError(path, f"cannot be read ({exc.strerror or exc})") from None
    rows: dict[int, EpochRow] = {}
    for raw in raw_rows:
        values = {k: finite_number(raw.get(k)) for k in EPOCH_COLUMNS}
        if values["epoch"] is None:
            continue
        values["epoch"] = int(values["epoch"])
        values["step"] = None if values["step"] is None else int(values["step"])
        metrics = {k: finite_number(v) for k, v in raw.items()
                   if isinstance(k, str) and k.startswith(("val_", "holdout_"))}
        rows[values["epoch"]] = EpochRow(**values, metrics=metrics)
    return [rows[e] for e in sorted(rows)]


def _parse_records(lines: Iterable[str]) -> Iterator[tuple[int, str, dict]]:
    """(step, line, record) for each whole line of metrics.jsonl; a line cut short is skipped."""
    for line in lines:
        try:
            record = json.loads(line)
            yield int(record["step"]), line, record
        except (ValueError, KeyError, TypeError):
            continue


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """The per-step records of metrics.jsonl in step order; a replayed step keeps its last record."""
    path = Path(run_dir) / METRICS_FILE
    try:
        with open(path, encoding="utf-8") as f:
            records = {step: record for step, _, record in _parse_records(f)}
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise RunFileError(path, f"cannot be read ({exc.strerror or exc})") from None
    return [records[s] for s in sorted(records)]


# ---------------------------------------------------------------------------------------------
# One run directory


class RunDir:
    """One run's folder and the files in it. With ``writable=False`` (every rank of a distributed
    run but rank 0) it only reads: the write methods do nothing and ``lock`` takes no lock."""

    def __init__(self, path: str | os.PathLike, writable: bool = True):
        self.path = Path(path)
        self.checkpoints = self.path / CHECKPOINT_DIR
        self.writable = writable

    def create(self) -> None:
        """Make the folder; ConfigError when it cannot be written."""
        if not self.writable:
            return
        try:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(f"cannot write the run directory {self.path}: {exc.strerror or exc}") from None

    def lock(self, wait: bool = False, on_wait: Callable[[str], None] | None = None) -> DirLock:
        """Create the folder, lock it for this process and remove what killed writers left in it.

        Returns the held lock (``with run.lock(): ...`` releases it); LockedError names the process
        that holds it. Every rank but 0 gets a lock it does not hold: only rank 0 writes.
        """
        lock = DirLock(self.path, hint="two processes cannot write one run directory; "
                                       "wait for the other to finish")
        if not self.writable:
            return lock
        self.create()
        lock.acquire(wait=wait, on_wait=on_wait)
        self.remove_stale_temp_files()
        return lock

    def remove_stale_temp_files(self) -> list[Path]:
        """Delete the temporary files of writes that never finished (a checkpoint's can be tens of MB).

        Call it only while holding the lock: another writer's temporary files are not stale.
        """
        stale = [p for name in _ATOMIC_FILES for p in self.path.glob(f".{name}.*")]
        stale += self.checkpoints.glob(".*.pt.*")
        stale.append(self.path / ".write-test")
        removed = []
        for path in stale:
            try:
                path.unlink()
                removed.append(path)
            except FileNotFoundError:
                pass
        return removed

    def file(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, data: Any) -> None:
        if not self.writable:
            return
        atomic_write_text(self.file(name), json.dumps(data, indent=2, default=_jsonable) + "\n")

    def read_json(self, name: str) -> dict:
        """A JSON file of the run; RunFileError when it is missing, empty or cut short."""
        return read_json(self.file(name))

    def write_summary(self, summary: Summary) -> None:
        self.write_json(SUMMARY_FILE, summary.to_json())

    def read_summary(self) -> Summary:
        """summary.json; RunFileError when it is missing, cut short or not a run summary."""
        return read_summary(self.path)

    def append_metrics(self, records: Iterable[dict]) -> None:
        if not self.writable:
            return
        with _appending(self.file(METRICS_FILE)) as f:
            for record in records:
                f.write(json.dumps(record) + "\n")

    def append_epoch(self, row: dict, columns: list[str] | None = None) -> None:
        """Add one row to epochs.csv (a column ``row`` lacks stays empty); ``columns``: the file's columns
        (default EPOCH_COLUMNS, those of the ImageNet + COCO workload; another workload names its own)."""
        if not self.writable:
            return
        columns = columns or EPOCH_COLUMNS
        path = self.file(EPOCHS_FILE)
        new = not path.exists()
        with _appending(path) as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            if new:
                writer.writeheader()
            writer.writerow({k: row.get(k) for k in columns})

    def clear_logs(self) -> None:
        """Remove metrics.jsonl and epochs.csv: a run that starts afresh in this folder."""
        if not self.writable:
            return
        for name in (METRICS_FILE, EPOCHS_FILE):
            self.file(name).unlink(missing_ok=True)

    def trim_logs(self, last_step: int, last_epoch: int, columns: list[str] | None = None) -> None:
        """Drop log lines written after the checkpoint a resumed run starts from (and lines cut short);
        ``columns``: epochs.csv's columns as the run writes them (default EPOCH_COLUMNS, as in append_epoch)."""
        if not self.writable:
            return
        metrics = self.file(METRICS_FILE)
        if metrics.exists():
            with open(metrics, encoding="utf-8") as f:
                kept = [line for step, line, _ in _parse_records(f) if step <= last_step]
            atomic_write_text(metrics, "".join(line.rstrip("\n") + "\n" for line in kept))
        epochs = self.file(EPOCHS_FILE)
        if epochs.exists():
            with open(epochs, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
            # Rewritten with today's columns, so the rows appended next line up with the header.
            out = io.StringIO()
            writer = csv.DictWriter(out, fieldnames=columns or EPOCH_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(r for r in rows if None not in r.values() and (r.get("epoch") or "").isdigit()
                             and int(r["epoch"]) <= last_epoch)
            atomic_write_text(epochs, out.getvalue())

    def has_checkpoint(self, name: str = LAST_CHECKPOINT) -> bool:
        return (self.checkpoints / name).is_file()

    def save_checkpoint(self, state: dict, name: str = LAST_CHECKPOINT) -> None:
        """Write ``state`` with torch.save, atomically: a failed write leaves the previous checkpoint."""
        if not self.writable:
            return
        import torch

        with atomic_writer(self.checkpoints / name, binary=True, what="checkpoint") as f:
            torch.save(state, f)

    def load_checkpoint(self, name: str = LAST_CHECKPOINT) -> dict:
        """Read a checkpoint with ``weights_only=True``: a checkpoint from elsewhere cannot run code."""
        import torch

        path = self.checkpoints / name
        if not path.is_file():
            raise ConfigError(f"cannot resume {self.path}: no checkpoint at {path} (no epoch finished yet?)")
        size = path.stat().st_size
        damaged = (f"cannot resume from {path}: it is {{}}: the run was killed while writing it, or the "
                   "disk filled up? Remove it to start the run again from scratch")
        if size == 0:
            raise ConfigError(damaged.format("empty (0 bytes)"))
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except EOFError:
            raise ConfigError(damaged.format(f"truncated ({size} bytes)")) from None
        except Exception as exc:
            if isinstance(exc, RuntimeError) and "PytorchStreamReader" in str(exc):  # the zip ends early
                raise ConfigError(damaged.format(f"truncated or damaged ({size} bytes)")) from None
            if isinstance(exc, pickle.UnpicklingError):  # what torch's weights_only loader refuses
                raise ConfigError(f"cannot resume from {path}: {_refused(exc)}") from None
            first = (str(exc).splitlines() or ["(no message)"])[0]
            raise ConfigError(f"cannot resume from {path}: {type(exc).__name__}: {first}") from None


def _refused(exc: BaseException) -> str:
    """Why torch's ``weights_only`` loader refused a file, without its advice to load it unsafely."""
    found = re.search(r"WeightsUnpickler error:\s*(.*?)(?:\.? Please use|\n\n|$)", str(exc), re.S)
    detail = found.group(1).strip() if found else ""
    if detail.startswith("Unsupported global"):
        return (f"it holds Python objects, not only tensors and plain values ({detail}); a checkpoint mtbench "
                "wrote holds none, and one from elsewhere must not run code when it loads")
    return f"it is not a checkpoint (torch cannot read it{': ' + detail if detail else ''}); remove it to start " \
           "the run again from scratch"


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # tensors and arrays, without importing torch here
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
