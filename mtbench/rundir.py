"""The run directory: config, environment, per-step metrics, per-epoch table, summary, checkpoints.

Every file is written so that a crash at any moment leaves the previous version intact (JSON and
checkpoints via a temporary file and ``os.replace``; the line-oriented logs are appended and
trimmed back to the last checkpoint on resume).
"""

from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterable

import torch

from .errors import ConfigError

EPOCH_COLUMNS = [
    "epoch", "step", "train_loss_cls", "train_loss_seg",
    "val_top1", "val_top5", "val_miou", "val_pixel_acc", "seconds",
]


class RunDir:
    """One run's folder and the files in it. With ``writable=False`` (every rank of a distributed
    run but rank 0) it only reads: the write methods do nothing."""

    def __init__(self, path: str | os.PathLike, writable: bool = True):
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
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

    def file(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, data: Any) -> None:
        if not self.writable:
            return
        atomic_write_text(self.file(name), json.dumps(data, indent=2, default=_jsonable) + "\n")

    def read_json(self, name: str) -> Any:
        with open(self.file(name)) as f:
            return json.load(f)

    def append_metrics(self, records: Iterable[dict]) -> None:
        if not self.writable:
            return
        with open(self.file("metrics.jsonl"), "a") as f:
            for record in records:
                f.write(json.dumps(record) + "\n")

    def append_epoch(self, row: dict) -> None:
        if not self.writable:
            return
        path = self.file("epochs.csv")
        new = not path.exists()
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=EPOCH_COLUMNS)
            if new:
                writer.writeheader()
            writer.writerow({k: row[k] for k in EPOCH_COLUMNS})

    def trim_logs(self, last_step: int, last_epoch: int) -> None:
        """Drop log lines written after the checkpoint a resumed run starts from."""
        if not self.writable:
            return
        metrics = self.file("metrics.jsonl")
        if metrics.exists():
            lines = [ln for ln in metrics.read_text().splitlines() if ln.strip()]
            kept = [ln for ln in lines if json.loads(ln)["step"] <= last_step]
            atomic_write_text(metrics, "".join(ln + "\n" for ln in kept))
        epochs = self.file("epochs.csv")
        if epochs.exists():
            with open(epochs, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= last_epoch]
            epochs.unlink()
            for row in rows:
                self.append_epoch(row)

    def save_checkpoint(self, state: dict, name: str = "last.pt") -> None:
        if not self.writable:
            return
        target = self.checkpoints / name
        fd, tmp = tempfile.mkstemp(dir=self.checkpoints, prefix=f".{name}.")
        os.close(fd)
        try:
            torch.save(state, tmp)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def load_checkpoint(self, name: str = "last.pt") -> dict:
        """Read a checkpoint with ``weights_only=True``: a checkpoint from elsewhere cannot run code."""
        path = self.checkpoints / name
        if not path.is_file():
            raise ConfigError(f"cannot resume {self.path}: no checkpoint at {path} (no epoch finished yet?)")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ConfigError(f"cannot resume from {path}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None


def atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def environment(device: torch.device, ops_backend: str) -> dict:
    """Versions, device and the code revision, for env.json."""
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
