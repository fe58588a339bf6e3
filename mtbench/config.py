"""RunConfig: everything one training run depends on, resolved and validated before it starts."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .data.sizes import MIN_IMAGE_SIZE
from .errors import ConfigError
from .presets import SUM_METHOD, MethodPreset, OptimizerPreset, Param
from .text import format_value

if TYPE_CHECKING:
    from .workloads import Workload

MAX_TASKS = 8  # the most tasks a workload has (mtbench.workloads.Workload.MAX_TASKS)

DEFAULT_WORKLOAD = "imagenet-coco"
# The default workload's tasks (mtbench.workloads.imagenet_coco): what a run of an old config.json
# without a workload trains, and what the comparison of such runs reads.
TASKS = ("cls", "seg")
# Settings a resumed run may change: they do not alter what is computed.
RESUMABLE_SETTINGS = ("run_dir", "epochs", "device", "workers", "tensorboard")
# Settings added since the first checkpoints were written, with the value an older checkpoint had.
ADDED_SETTINGS = {"workload": DEFAULT_WORKLOAD, "data": None}
NONFINITE_POLICIES = ("abort", "skip")
AMP_MODES = ("off", "bf16", "fp16")
SCHEDULES = ("constant", "cosine", "step")  # see training/schedule.py
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")


def _count(low: int, high: int) -> Param:
    return Param(int, low, high, what="a whole number")


# The range of every count and size of a run, by RunConfig field (and `compare`'s own counts): one
# owner for the command-line options (cli/bounded.py checks them as they are parsed, config files
# included) and for RunConfig.validate (a replayed config.json, a library call). The upper bounds
# keep a typo from asking for terabytes or years, not what a machine can hold.
LIMITS: dict[str, Param] = {
    "epochs": _count(1, 100_000),
    "batch_size": _count(1, 65_536),
    "image_size": _count(MIN_IMAGE_SIZE, 2048),
    "limit_train": _count(1, 10**9),
    "limit_val": _count(1, 10**9),
    "workers": _count(0, 1024),
    "seed": _count(0, 2**64 - 1),  # what torch.manual_seed takes
    "max_consecutive_skips": _count(1, 10**9),
    "holdout": Param(float, 0.0, 1.0, high_open=True, what="a fraction"),
    "warmup_epochs": _count(0, 99_999),  # and fewer than --epochs (RunConfig.validate)
    "seeds": _count(1, 10_000),  # compare --seeds N: how many seeds
    "nproc_per_node": _count(1, 1024),
}
# RunConfig fields whose option is not named after them
FLAGS = {"max_consecutive_skips": "--max-skips"}


def flag(name: str) -> str:
    """The command-line option of a RunConfig field or a LIMITS entry: ``batch_size`` -> ``--batch-size``."""
    return FLAGS.get(name) or "--" + name.replace("_", "-")


@dataclass
class RunConfig:
    """The resolved settings of one run; written to ``config.json`` and read back on resume."""

    optimizer: str
    hyperparams: dict[str, Any]
    run_dir: str
    task_weights: tuple[float, ...] = (0.5, 0.5)  # one per task of the workload, in its order
    loss_scale: tuple[float, ...] = (1.0, 1.0)
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
    tensorboard: bool = False
    method: str = SUM_METHOD
    method_settings: dict[str, Any] = field(default_factory=dict)
    holdout: float = 0.0
    schedule: str = "constant"
    tasks: tuple[str, ...] = TASKS  # the tasks trained, a subset of the workload's, in its order
    warmup_epochs: int = 0
    workload: str = DEFAULT_WORKLOAD
    data: str | None = None  # --data: the workload's data root (None: its embedded stand-in)

    def __post_init__(self) -> None:
        self.task_weights = tuple(float(w) for w in self.task_weights)
        self.loss_scale = tuple(float(s) for s in self.loss_scale)
        self.tasks = tuple(self.tasks)
        # The workload's task names, in its order; known without the registry for the default workload,
        # else once the trainer (or build_config) binds the workload.
        # (A run that trains every task of another workload names them all in ``tasks``.)
        self.workload_tasks: tuple[str, ...] | None = TASKS if self.workload == DEFAULT_WORKLOAD else (
            self.tasks if len(self.tasks) == len(self.task_weights) == len(self.loss_scale) else None)
        self.validate()

    def bind(self, workload) -> "RunConfig":
        """Check the per-task settings against ``workload`` (a ``mtbench.workloads.Workload``) and put
        ``tasks`` in its order; ConfigError naming the first bad one."""
        if workload.name != self.workload:
            raise ConfigError(f"the run is configured for workload {self.workload!r} but was given {workload.name!r}")
        names = workload.task_names
        unknown = [t for t in self.tasks if t not in names]
        if unknown:
            raise ConfigError(f"--tasks {','.join(self.tasks)}: {unknown[0]!r} is not a task of workload "
                              f"{workload.name!r} (its tasks: {', '.join(names)})")
        for option, values in (("--task-weights", self.task_weights), ("--loss-scale", self.loss_scale)):
            if len(values) != len(names):
                raise ConfigError(f"{option} {format_value(values)}: {len(values)} values for the {len(names)} tasks "
                                  f"of workload {workload.name!r} ({', '.join(names)})")
        self.workload_tasks = names
        self.tasks = tuple(t for t in names if t in self.tasks)
        return self

    def validate(self) -> None:
        """Raise ConfigError naming the first bad setting."""
        for name, limit in LIMITS.items():
            value = getattr(self, name, None)  # None: not a field, or not set (image size, limits)
            if value is not None:
                setattr(self, name, limit.check_option(flag(name), value))
        _check_task_weights(self.task_weights, format_value(self.task_weights))
        _check_loss_scale(self.loss_scale, format_value(self.loss_scale))
        if self.image_size is not None and self.batch_size * backbone_output_side(self.image_size) ** 2 < 2:
            # Training-mode BatchNorm needs two values per channel; at the backbone's last stage a
            # batch holds batch_size * side**2 of them.
            raise ConfigError(
                f"--batch-size {self.batch_size} with --image-size {self.image_size} leaves one value per "
                "channel at the backbone's last BatchNorm; use --batch-size 2 or more, or --image-size 64 or more"
            )
        if not self.tasks or len(set(self.tasks)) != len(self.tasks) or not all(isinstance(t, str) for t in self.tasks):
            raise ConfigError(f"--tasks {','.join(map(str, self.tasks))} is not allowed: expected task names, "
                              "each once")
        if self.workload_tasks is not None:
            if not set(self.tasks) <= set(self.workload_tasks):
                raise ConfigError(f"--tasks {','.join(map(str, self.tasks))} is not allowed: expected some of "
                                  f"{', '.join(self.workload_tasks)}")
            self.tasks = tuple(t for t in self.workload_tasks if t in self.tasks)
            for option, values in (("--task-weights", self.task_weights), ("--loss-scale", self.loss_scale)):
                if len(values) != len(self.workload_tasks):
                    raise ConfigError(f"{option} {format_value(values)}: expected {len(self.workload_tasks)} values, "
                                      f"one per task ({', '.join(self.workload_tasks)})")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"--schedule {self.schedule!r}: expected one of {', '.join(SCHEDULES)}")
        if isinstance(self.warmup_epochs, bool) or not isinstance(self.warmup_epochs, int) \
                or not 0 <= self.warmup_epochs < self.epochs:
            raise ConfigError(f"--warmup-epochs {self.warmup_epochs!r} is not allowed: expected a whole number "
                              f"in [0, --epochs {self.epochs})")
        if self.on_nonfinite not in NONFINITE_POLICIES:
            raise ConfigError(f"--on-nonfinite {self.on_nonfinite!r}: expected one of {', '.join(NONFINITE_POLICIES)}")
        if self.amp not in AMP_MODES:
            raise ConfigError(f"--amp {self.amp!r}: expected one of {', '.join(AMP_MODES)}")

    @property
    def loss_weights(self) -> tuple[float, ...]:
        """Each task's factor in the training objective: task weight x loss scale; a task trained
        alone (--tasks) has its loss scale only, a task not trained 0."""
        if self.workload_tasks is None:
            raise ConfigError(f"the tasks of workload {self.workload!r} are not known yet (RunConfig.bind)")
        if len(self.tasks) == 1:
            return tuple(s if t in self.tasks else 0.0 for t, s in zip(self.workload_tasks, self.loss_scale))
        return tuple(w * s if t in self.tasks else 0.0
                     for t, w, s in zip(self.workload_tasks, self.task_weights, self.loss_scale))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        data = dict(data)
        if not data.get("extra", True):
            del data["extra"]  # an empty field of configs written by mtbench 0.1.0
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"config has unknown settings: {', '.join(unknown)}")
        hp = dict(data.get("hyperparams", {}))
        hp = {k: tuple(v) if isinstance(v, list) else v for k, v in hp.items()}
        return cls(**{**data, "hyperparams": hp})


def _method_settings(method: "MethodPreset | None", items: list[str], seed: int) -> dict[str, Any]:
    """The method's settings; a method that draws random numbers takes the run's seed unless one is set."""
    if method is None:
        return {}
    try:
        settings = method.resolve(items)
    except ConfigError as exc:
        if repr(method.name) in str(exc):
            raise
        raise ConfigError(f"--set method.{exc} (method {method.name!r})") from None
    if method.param("seed") is not None and not any(s.partition("=")[0].strip() == "seed" for s in items):
        settings["seed"] = seed
    return settings


def _given(value: Any, default: Any) -> Any:
    """An option's value, or ``default`` when it was not given (None; a 0 is given, and refused later)."""
    return default if value is None else value


def backbone_output_side(image_size: int) -> int:
    """The side of a ResNet's last feature map: five stride-2 stages (stem conv, max pool, layers 2-4)."""
    side = image_size
    for _ in range(5):
        side = (side - 1) // 2 + 1
    return side


def _check_task_weights(weights: tuple[float, ...], shown: str) -> None:
    """ConfigError unless ``weights`` are 1 to 8 finite weights >= 0, not all 0; ``shown`` as the user wrote them."""
    if not 1 <= len(weights) <= MAX_TASKS or any(not 0 <= w < math.inf for w in weights) or sum(weights) <= 0:
        raise ConfigError(f"--task-weights {shown} is not allowed: expected a finite weight >= 0 per task, not all 0, "
                          "e.g. 0.5,0.5")


def _check_loss_scale(scale: tuple[float, ...], shown: str) -> None:
    """ConfigError unless ``scale`` holds 1 to 8 finite positive factors; ``shown`` as the user wrote them."""
    if not 1 <= len(scale) <= MAX_TASKS or any(not 0 < s < math.inf for s in scale):
        raise ConfigError(f"--loss-scale {shown} is not allowed: expected finite positive factors, e.g. seg=100")


def parse_task_values(text: str, option: str, default: float, names: Sequence[str] = TASKS) -> tuple[float, ...]:
    """Parse one value per task: ``0.5,0.5`` (in the order of ``names``) or ``seg=100`` / ``cls=2,seg=3``
    (the tasks not named keep ``default``)."""
    text = text.strip()
    example = ",".join(["1"] * len(names))
    try:
        if "=" in text:
            values = dict.fromkeys(names, default)
            for item in text.split(","):
                key, _, value = item.partition("=")
                key = key.strip()
                if key not in values:
                    raise ConfigError(f"{option} {text!r}: unknown task {key!r}; expected {' or '.join(names)}")
                values[key] = float(value)
            return tuple(values.values())
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        raise ConfigError(f"{option} {text!r} does not parse: expected {len(names)} numbers like {example} "
                          f"or {names[-1]}=100") from None
    if len(parts) != len(names):
        raise ConfigError(f"{option} {text!r}: expected {len(names)} numbers ({','.join(names)})")
    return tuple(parts)


def parse_task_pair(text: str, option: str, default: float) -> tuple[float, ...]:
    """``parse_task_values`` for the default workload's two tasks (cls, seg)."""
    return parse_task_values(text, option, default, TASKS)


def build_config(preset: "OptimizerPreset", run_dir: str | Path, method_preset: "MethodPreset | None" = None,
                 **options) -> RunConfig:
    """A validated RunConfig from `run_options` values; ConfigError names the first bad one.

    ``method_preset`` is the multi-task method (None: ``sum``, the plain weighted loss);
    ``--set method.key=value`` items are its settings, the others the optimizer's. ``workload`` is the
    run's Workload (None: the default, ImageNet + COCO); the per-task options name its tasks.

    NOTE [one registry]: the workload is passed in, as the presets are, never looked up here by name: a
    registry loaded here would not have the command's --plugin paths, so a workload that only --plugin
    brings would be unknown to the run (and to a tune's workers). The caller takes it from the registry
    that resolved the presets.
    """
    method = method_preset
    workload = options.get("workload")
    if isinstance(workload, str):
        raise TypeError(f"build_config takes the run's Workload, not its name {workload!r}: look it up in the "
                        "registry the presets came from (NOTE [one registry])")
    names = workload.task_names if workload is not None else TASKS
    even = tuple(1 / len(names) for _ in names)  # 0.5,0.5 for two tasks
    items = list(options.get("set_values") or ())
    method_items = [s.partition(".")[2] for s in items if s.startswith("method.")]
    items = [s for s in items if not s.startswith("method.")]
    if method_items and method is None:
        raise ConfigError(f"--set method.{method_items[0]}: the method sum takes no settings; "
                          "choose a method with --method (mtbench list shows them)")
    hyperparams = preset.resolve(items)
    given = [s.partition("=")[0].strip() for s in items]
    weights = options.get("task_weights")
    task_weights = parse_task_values(weights, "--task-weights", even[0], names) if weights else even
    _check_task_weights(task_weights, weights)  # named as typed: seg=nan, not the pair it became
    if preset.param("task_weights") is not None:
        # One setting, not two: the trainer's task weights are this optimizer's task_weights.
        if "task_weights" in given:
            from_set = tuple(hyperparams["task_weights"])
            if weights and from_set != task_weights:
                raise ConfigError(
                    f"--task-weights {weights} disagrees with --set task_weights="
                    f"{format_value(from_set)}; give one of them"
                )
            task_weights = from_set
        hyperparams["task_weights"] = task_weights
    loss_scale = options.get("loss_scale")
    scale = parse_task_values(loss_scale, "--loss-scale", 1.0, names) if loss_scale else (1.0,) * len(names)
    _check_loss_scale(scale, loss_scale)
    config = RunConfig(
        optimizer=preset.name,
        hyperparams=hyperparams,
        run_dir=str(run_dir),
        task_weights=task_weights,
        loss_scale=scale,
        imagenet=options.get("imagenet"),
        coco=options.get("coco"),
        image_size=options.get("image_size"),
        limit_train=options.get("limit_train"),
        limit_val=options.get("limit_val"),
        epochs=_given(options.get("epochs"), workload.epochs if workload is not None else 5),
        batch_size=_given(options.get("batch_size"), workload.batch_size if workload is not None else 8),
        seed=options.get("seed", 0),
        device=options.get("device", "auto"),
        amp=options.get("amp", "off"),
        workers=options.get("workers", 0),
        backbone=options.get("backbone", "resnet18"),
        weights=options.get("weights"),
        on_nonfinite=options.get("on_nonfinite", "abort"),
        max_consecutive_skips=options.get("max_skips", 10),
        tensorboard=options.get("tensorboard", False),
        method=method.name if method is not None else SUM_METHOD,
        method_settings=_method_settings(method, method_items, options.get("seed", 0)),
        holdout=options.get("holdout") or 0.0,
        schedule=options.get("schedule", "constant"),
        tasks=tuple(t.strip() for t in (options.get("tasks") or ",".join(names)).split(",")),
        warmup_epochs=options.get("warmup_epochs", 0),
        workload=workload.name if workload is not None else DEFAULT_WORKLOAD,
        data=options.get("data"),
    )
    return config if workload is None else config.bind(workload)
