"""The run directory: the one owner of its layout, and the only code that reads and writes it.

Layout::

    config.json   the resolved RunConfig (+ the preset)      env.json     versions, device, commit
    summary.json  how the run ended, its figures (Summary)    epochs.csv   one row per epoch (EpochRow)
    metrics.jsonl one record per optimizer step               checkpoints/last.pt   the train state
    .lock         while a process works in the directory (see mtbench.locks)

Every whole-file write goes through one atomic writer (a temporary file beside the target, then
``os.replace``), so a crash at any moment leaves the previous version intact; the line-oriented logs
are appended and trimmed back to the last checkpoint on resume. Files and folders get the
permissions the umask allows, as files written by any other program would. Importing this module
does not import torch (``mtbench report`` reads run directories without it).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import pickle
import platform
import re
import secrets
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Iterable, Iterator

from .errors import ConfigError, MTBenchError
from .interrupts import deferred
from .locks import DirLock

if TYPE_CHECKING:
    import torch

CONFIG_FILE = "config.json"
ENV_FILE = "env.json"
SUMMARY_FILE = "summary.json"
EPOCHS_FILE = "epochs.csv"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
# The files written whole (atomically): a killed writer may leave ".<name>.<random>" beside them.
_ATOMIC_FILES = (CONFIG_FILE, ENV_FILE, SUMMARY_FILE, EPOCHS_FILE, METRICS_FILE)


@dataclass(frozen=True)
class EpochRow:
    """One row of epochs.csv: the state at the end of one epoch (None where the file has no value)."""

    epoch: int
    step: int | None
    train_loss_cls: float | None
    train_loss_seg: float | None
    val_top1: float | None
    val_top5: float | None
    val_miou: float | None
    val_pixel_acc: float | None
    # the held-out selection split (--holdout); empty without one
    holdout_top1: float | None
    holdout_top5: float | None
    holdout_miou: float | None
    holdout_pixel_acc: float | None
    seconds: float | None


EPOCH_COLUMNS = [f.name for f in dataclasses.fields(EpochRow)]

SPLITS = ("final", "holdout")  # summary.json's figures: the test (validation) split's, the held-out split's


@dataclass(frozen=True)
class Summary:
    """summary.json: how a run ended and its figures. The fields are the file's keys, in its order.

    The run log builds it and writes ``to_json()``; ``from_json`` reads any version's file: a key an
    older run did not write reads as None, a key this version does not know is ignored, a figure reads
    as a float and a non-finite one as None (as every reader took them), so old run directories still
    report. A value of the wrong type is a ValueError naming the key, the value and what was expected.
    """

    optimizer: str | None = None
    title: str | None = None
    method: str | None = None
    status: str | None = None
    error: str | None = None
    seed: int | None = None
    epochs: int | None = None
    steps: int | None = None
    final_top1: float | None = None
    final_top5: float | None = None
    final_miou: float | None = None
    final_pixel_acc: float | None = None
    holdout_top1: float | None = None
    holdout_top5: float | None = None
    holdout_miou: float | None = None
    holdout_pixel_acc: float | None = None
    seconds_per_step: float | None = None
    total_seconds: float | None = None
    peak_memory_mb: float | None = None
    skipped_steps: int | None = None
    corrupt_images: int | None = None
    init_weights_sha256: str | None = None
    task_weights: tuple[float, ...] | None = None
    loss_scale: tuple[float, ...] | None = None
    holdout: float | None = None
    tasks: tuple[str, ...] | None = None
    method_settings: dict | None = None
    device: str | None = None
    # The run's workload, each task's metrics ({task: [{name, title, higher_is_better, unit, primary}]})
    # and every metric's value by name on the test and holdout splits (None for runs before workloads).
    workload: str | None = None
    task_metrics: dict | None = None
    final_metrics: dict | None = None
    holdout_metrics: dict | None = None

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    def figures(self, split: str) -> tuple[float | None, float | None]:
        """(top-1, mIoU) on one split: "final" (the test split) or "holdout" (the selection split)."""
        if split not in SPLITS:
            raise ValueError(f"split {split!r} is not known (expected {' or '.join(SPLITS)})")
        if split == "final":
            return self.final_top1, self.final_miou
        return self.holdout_top1, self.holdout_miou

    def to_json(self) -> dict:
        """The content of summary.json: every field, in order (sequences as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in
                ((f.name, getattr(self, f.name)) for f in dataclasses.fields(self))}

    @classmethod
    def from_json(cls, data: dict) -> Summary:
        """The record of a summary.json's content (see the class for what an old or odd file reads as)."""
        return cls(**{name: _SUMMARY_TYPES[name](name, data[name]) for name in _SUMMARY_TYPES if name in data})


def _checked(what: str, ok: Callable[[Any], bool], convert: Callable[[Any], Any] = lambda v: v):
    """A reader of one summary.json value: None stays None, a value ``ok`` refuses is a ValueError."""
    def read(name: str, value: Any) -> Any:
        if value is None:
            return None
        if not ok(value):
            raise ValueError(f"{name} is {value!r}, expected {what}")
        return convert(value)
    return read


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_list_of(kind: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and all(kind(x) for x in v)


_SUMMARY_READERS = {
    "str": _checked("a string", lambda v: isinstance(v, str)),
    "int": _checked("a whole number", lambda v: _is_number(v) and float(v).is_integer(), int),
    "float": _checked("a number", _is_number, lambda v: float(v) if math.isfinite(v) else None),
    "tuple[float, ...]": _checked("a list of numbers", _is_list_of(_is_number), tuple),
    "tuple[str, ...]": _checked("a list of strings", _is_list_of(lambda x: isinstance(x, str)), tuple),
    "dict": _checked("an object", lambda v: isinstance(v, dict), dict),
}
_SUMMARY_TYPES = {f.name: _SUMMARY_READERS[f.type.removesuffix(" | None")] for f in dataclasses.fields(Summary)}


class RunFileError(MTBenchError):
    """A file of a run directory that is missing, empty, cut short or unreadable."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path} {problem}")
        self.path = path
        self.problem = problem  # "is missing", "is not valid JSON (...)", ...


# ---------------------------------------------------------------------------------------------
# Writing: one atomic writer, folders and temporary files with the umask's permissions


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
        rows[values["epoch"]] = EpochRow(**values)
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

    def trim_logs(self, last_step: int, last_epoch: int) -> None:
        """Drop log lines written after the checkpoint a resumed run starts from (and lines cut short)."""
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
            writer = csv.DictWriter(out, fieldnames=EPOCH_COLUMNS, extrasaction="ignore")
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
