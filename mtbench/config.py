"""RunConfig: everything one training run depends on, resolved and validated before it starts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .presets import format_value

TASKS = ("cls", "seg")
TASK_NAMES = {"cls": "classification", "seg": "segmentation"}
NONFINITE_POLICIES = ("abort", "skip")
AMP_MODES = ("off", "bf16", "fp16")
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")


@dataclass
class RunConfig:
    """The resolved settings of one run; written to ``config.json`` and read back on resume."""

    optimizer: str
    hyperparams: dict[str, Any]
    run_dir: str
    task_weights: tuple[float, float] = (0.5, 0.5)
    loss_scale: tuple[float, float] = (1.0, 1.0)
    imagenet: str | None = None
    coco: str | None = None
    image_size: int | None = None
    limit_train: int | None = None
    limit_val: int | None = None
    epochs: int = 5
    batch_size: int = 8
    seed: int = 0
    device: str = "auto"
    amp: str = "off"
    workers: int = 0
    backbone: str = "resnet18"
    weights: str | None = None
    on_nonfinite: str = "abort"
    max_consecutive_skips: int = 10
    max_corrupt_images: int = 100
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.task_weights = tuple(float(w) for w in self.task_weights)
        self.loss_scale = tuple(float(s) for s in self.loss_scale)
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the first bad setting."""
        _positive_int("epochs", self.epochs)
        _positive_int("batch_size", self.batch_size, flag="--batch-size")
        _positive_int("max_consecutive_skips", self.max_consecutive_skips)
        for name, value in (("image_size", self.image_size), ("limit_train", self.limit_train),
                            ("limit_val", self.limit_val)):
            if value is not None:
                _positive_int(name, value)
        if self.image_size is not None and self.image_size < 32:
            raise ConfigError(f"--image-size {self.image_size} is too small: expected at least 32 pixels")
        if not isinstance(self.workers, int) or self.workers < 0:
            raise ConfigError(f"--workers {self.workers!r} is not allowed: expected an integer >= 0")
        if len(self.task_weights) != 2 or any(w < 0 for w in self.task_weights) or sum(self.task_weights) <= 0:
            raise ConfigError(
                f"--task-weights {format_value(self.task_weights)} is not allowed: expected two weights >= 0, "
                "not both 0, e.g. 0.5,0.5"
            )
        if len(self.loss_scale) != 2 or any(not s > 0 for s in self.loss_scale):
            raise ConfigError(f"--loss-scale {format_value(self.loss_scale)} is not allowed: expected positive factors")
        if self.on_nonfinite not in NONFINITE_POLICIES:
            raise ConfigError(f"--on-nonfinite {self.on_nonfinite!r}: expected one of {', '.join(NONFINITE_POLICIES)}")
        if self.amp not in AMP_MODES:
            raise ConfigError(f"--amp {self.amp!r}: expected one of {', '.join(AMP_MODES)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"config has unknown settings: {', '.join(unknown)}")
        hp = dict(data.get("hyperparams", {}))
        hp = {k: tuple(v) if isinstance(v, list) else v for k, v in hp.items()}
        return cls(**{**data, "hyperparams": hp})


def _positive_int(name: str, value: Any, flag: str | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        flag = flag or "--" + name.replace("_", "-")
        raise ConfigError(f"{flag} {value!r} is not allowed: expected a whole number > 0")


def parse_task_pair(text: str, option: str, default: float) -> tuple[float, float]:
    """Parse ``0.5,0.5`` or ``seg=100`` / ``cls=2,seg=3`` into a (cls, seg) pair."""
    text = text.strip()
    try:
        if "=" in text:
            pair = {"cls": default, "seg": default}
            for item in text.split(","):
                key, _, value = item.partition("=")
                key = key.strip()
                if key not in pair:
                    raise ConfigError(f"{option} {text!r}: unknown task {key!r}; expected cls or seg")
                pair[key] = float(value)
            return pair["cls"], pair["seg"]
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        raise ConfigError(f"{option} {text!r} does not parse: expected two numbers like 0.5,0.5 or seg=100") from None
    if len(parts) != 2:
        raise ConfigError(f"{option} {text!r}: expected two numbers (classification,segmentation)")
    return parts[0], parts[1]
