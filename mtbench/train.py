"""The multi-task training loop. Knows nothing of click: it takes a RunConfig and a preset."""

from __future__ import annotations

import hashlib
import json
import math
import resource
import signal
import statistics
import threading
import time
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch.func import functional_call
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset

from . import distributed

from .board import Board
from .config import RESUMABLE_SETTINGS, TASK_NAMES, TASKS, RunConfig
from .data import DataBundle, SampleSeeds, SeededDataset, build_datasets, collate_skip_corrupt
from .data.coco import IGNORE_INDEX
from .errors import ConfigError, DataError, MTBenchError, NonFiniteLossError
from .metrics import ConfusionMatrix, TopKAccuracy
from .model import MultiTaskNet, load_weights
from .presets import OptimizerPreset
from .rundir import RunDir, environment




def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when there is a device; anything else must name an available device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {name!r}: expected auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but no CUDA device is available; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) available")
    return device


def train(
    config: RunConfig,
    preset: OptimizerPreset,
    *,
    resume: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict:
    """Train one run into ``config.run_dir`` and return its summary.

    With ``resume``, continue from the run directory's last checkpoint (from scratch when it has
    none). Whatever happens, the run directory keeps what was written and ``summary.json`` says how
    the run ended.
    """
    trainer = Trainer(config, preset, config.run_dir, progress=progress, echo=echo)
    try:
        return trainer.fit(resume)
    finally:
        trainer.close()


def _seed_for(*parts: int) -> int:
    """A 63-bit seed derived from integers: one independent stream per (seed, epoch, task, pass)."""
    digest = hashlib.sha256(",".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over the model's parameters and buffers: equal digests mean equal initial weights."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pixel cross-entropy averaged over the labelled pixels (0 when a batch has none, never NaN)."""
    total = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (target != IGNORE_INDEX).sum().clamp_min(1)


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: the run stops as on Ctrl-C, its summary saying so and how to resume."""


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises Terminated in the main thread (elsewhere it is left alone)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def reset_peak_rss() -> None:
    """Start a new peak for this process's resident memory (Linux; elsewhere the peak is process-wide)."""
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
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Trainer:
    """One run: data, model, optimizer, the loop, validation and the run directory.

    Everything that can be wrong with the input is checked in the constructor, before the run
    directory exists; from ``fit`` on, a failure leaves the directory with what it had written.
    """

    def __init__(self, config: RunConfig, preset: OptimizerPreset, run_dir, *, progress: bool, echo):
        if config.optimizer != preset.name:
            raise ConfigError(f"the run is configured for {config.optimizer!r} but was given preset {preset.name!r}")
        self.config, self.preset = config, preset
        self.dist, self.device = distributed.init(resolve_device(config.device))
        main = self.dist.is_main
        self.run = RunDir(run_dir, writable=main)
        self.progress = progress and main
        self.echo = echo if main else (lambda text: None)
        if config.amp == "fp16" and (self.device.type != "cuda" or preset.per_task_gradients):
            raise ConfigError(
                "--amp fp16 needs a CUDA device and a single-gradient optimizer; use --amp bf16"
            )
        self.data: DataBundle = build_datasets(
            imagenet=config.imagenet, coco=config.coco, image_size=config.image_size,
            limit_train=config.limit_train, limit_val=config.limit_val,
        )
        for split, ds in (("classification", self.data.cls_train), ("segmentation", self.data.seg_train)):
            if len(ds) < config.batch_size:
                raise ConfigError(
                    f"--batch-size {config.batch_size} is larger than the {split} training set "
                    f"({len(ds)} images); use a smaller batch size or more data"
                )
        torch.manual_seed(config.seed)
        self.model = MultiTaskNet(config.backbone, self.data.num_cls_outputs, self.data.num_seg_classes)
        if config.weights:
            note = load_weights(self.model, config.weights)
            if note:
                self.echo(f"warning: {note}")
        self.init_digest = weights_digest(self.model)
        self.model.to(self.device)
        self.net = self._distribute()
        self.names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = self._build_optimizer()
        per_step = config.batch_size * self.dist.world
        self.steps_per_epoch = max(len(self.data.cls_train) // per_step, len(self.data.seg_train) // per_step)
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.amp)
        self.scaler = torch.amp.GradScaler("cuda") if config.amp == "fp16" else None
        self.state = {"epoch": 0, "step": 0, "train_seconds": 0.0, "skipped_steps": 0,
                      "consecutive_skips": 0, "corrupt_images": 0, "peak_memory_mb": 0.0}
        self.step_times: list[float] = []
        self.last_val: dict[str, float] | None = None
        self.board = Board()

    # -- setup -------------------------------------------------------------------------------
    def _distribute(self) -> torch.nn.Module:
        """The module the training step calls: the model itself, or it wrapped for several processes.

        NOTE [BatchNorm across ranks]: on CUDA the BatchNorm layers become SyncBatchNorm, so
        statistics are computed over the global batch. SyncBatchNorm has no CPU kernel, so on CPU
        each rank normalises with its own batch and rank 0's running statistics are broadcast
        (DDP syncs them at every forward, or ``_sync_buffers`` after a per-task step): the buffers are
        identical on every rank either way.
        """
        if not self.dist.enabled:
            return self.model
        if self.device.type == "cuda":
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        distributed.broadcast_(list(self.model.state_dict().values()))
        if self.preset.per_task_gradients:
            # DDP would not reduce gradients that land on the per-task aliases: reduced by hand.
            return self.model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=ids)  # buffers follow rank 0 each forward

    def close(self) -> None:
        self.board.close()
        if self.dist.enabled:
            distributed.shutdown()

    def _build_optimizer(self) -> torch.optim.Optimizer:
        return self.preset.build(self.params, **self.config.hyperparams)

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _loader(self, dataset, sampler, seed: int, batch_size: int, drop_last: bool = True) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=self.config.workers,
            collate_fn=collate_skip_corrupt,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(seed),
        )

    def _batches(self, task: str, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless batches of one task, this rank's share; each pass over the data has its own order.

        The order depends on (seed, epoch, task, pass) and each sample's augmentation on that and
        its index alone (see data/seeding.py), whatever the optimizer or the number of workers.
        """
        dataset = self.data.cls_train if task == "cls" else self.data.seg_train
        sampler = DistributedSampler(
            dataset, num_replicas=self.dist.world, rank=self.dist.rank, shuffle=True, drop_last=True,
            seed=_seed_for(self.config.seed, TASKS.index(task)) % 2**31,
        )
        seeded = SeededDataset(dataset)
        pass_ = 0
        while True:
            sampler.set_epoch(epoch * 1000 + pass_)
            seed = _seed_for(self.config.seed, epoch, TASKS.index(task), pass_)
            keys = SampleSeeds(sampler, dataset, seed)
            for images, targets, n_corrupt in self._loader(seeded, keys, seed, self.config.batch_size):
                self._count_corrupt(n_corrupt)
                if len(images):
                    yield images, targets
            pass_ += 1

    def _count_corrupt(self, n: int) -> None:
        if not n:
            return
        self.state["corrupt_images"] += n
        if self.state["corrupt_images"] > self.config.max_corrupt_images:
            raise DataError(
                f"{self.state['corrupt_images']} corrupt images skipped, more than the limit of "
                f"{self.config.max_corrupt_images}; check the data set (the warnings name the files)"
            )

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, resume: bool) -> dict:
        run, config = self.run, self.config
        run.create()
        reset_peak_rss()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        if resume and (run.checkpoints / "last.pt").exists():
            self._load(run.load_checkpoint())
            done = self.state["epoch"]
            if done > config.epochs:
                raise ConfigError(f"{run.path} has already trained {done} epochs; --epochs {config.epochs} "
                                  f"cannot shorten it (give --epochs {done} or more)")
            if done == config.epochs:
                self.echo(f"{run.path} has already completed its {done} epochs; nothing to do "
                          f"(--epochs {done + 1} or more extends it)")
                return self._finished_summary()
            run.trim_logs(self.state["step"], self.state["epoch"])
        else:
            for name in ("metrics.jsonl", "epochs.csv"):
                run.file(name).unlink(missing_ok=True)
        from . import ops

        self.echo(f"run directory: {run.path}")
        if config.tensorboard and run.writable:
            self.board = Board(run.file("tensorboard"), purge_step=self.state["step"] + 1)
        run.write_json("config.json", {**config.to_dict(), "preset": self._preset_info()})
        run.write_json("env.json", environment(self.device, ops.describe()))
        self._write_summary("running")
        try:
            with _sigterm_as_interrupt():
                while self.state["epoch"] < config.epochs:
                    self._train_epoch(self.state["epoch"] + 1)
        except KeyboardInterrupt as exc:
            why = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted by the user"
            self._write_summary("interrupted", f"{why} after {self.state['epoch']} of {config.epochs} epochs; "
                                f"resume with: mtbench run --resume {run.path}")
            raise
        except MTBenchError as exc:
            self._write_summary("failed", str(exc))
            raise
        except Exception as exc:
            self._write_summary("failed", f"{type(exc).__name__}: {exc}")
            raise
        return self._write_summary("completed")

    def _train_epoch(self, epoch: int) -> None:
        from tqdm.auto import tqdm

        config = self.config
        # The step's own random draws; the data pipeline seeds itself per sample. The same on every
        # rank, so a random choice made from the reduced gradients agrees across ranks.
        torch.manual_seed(_seed_for(config.seed, epoch))
        self.model.train()
        batches = zip(self._batches("cls", epoch), self._batches("seg", epoch))
        sums = torch.zeros(2, dtype=torch.float64)
        stepped = 0
        records = []
        # disable=None: no bar off a terminal (CI logs, nohup, pipes), where the epoch lines suffice.
        bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {epoch}/{config.epochs}", unit="step",
                   disable=None if self.progress else True, leave=False, dynamic_ncols=True)
        try:
            for _ in range(self.steps_per_epoch):
                start = time.perf_counter()
                (xc, yc), (xs, ys) = next(batches)
                losses, skipped = self._step(xc, yc, xs, ys)
                elapsed = time.perf_counter() - start
                self.step_times.append(elapsed)
                self.state["step"] += 1
                self.state["train_seconds"] += elapsed
                record = self._step_record(epoch, losses, skipped)
                records.append(record)
                self.board.step(record)
                if skipped:
                    self._on_nonfinite(losses)  # after the step is recorded, so the logs count it
                else:
                    self.state["consecutive_skips"] = 0
                    sums += torch.tensor(losses, dtype=torch.float64)
                    stepped += 1
                if len(records) >= 50:
                    self.run.append_metrics(records)
                    records = []
                bar.update(1)
                bar.set_postfix(cls=f"{losses[0]:.3f}", seg=f"{losses[1]:.3f}",
                                img_s=f"{2 * len(xc) / elapsed:.0f}")
        finally:
            bar.close()
            self.run.append_metrics(records)
        self.last_val = self.validate()
        # The mean over the steps taken (skipped steps have no loss); already averaged over ranks.
        mean = (sums / stepped).tolist() if stepped else [math.nan, math.nan]
        self.state["epoch"] = epoch
        row = {
            "epoch": epoch, "step": self.state["step"],
            "train_loss_cls": mean[0], "train_loss_seg": mean[1],
            **{f"val_{k}": v for k, v in self.last_val.items()},
            "seconds": round(self.state["train_seconds"], 3),
        }
        self.run.append_epoch(row)
        self.board.epoch(row)
        self.state["peak_memory_mb"] = self._peak_memory_mb()
        self.run.save_checkpoint(self._checkpoint())
        self._write_summary("running")  # a run killed from here on still shows the epochs it finished
        v = self.last_val
        self.echo(
            f"epoch {epoch}/{config.epochs}  loss cls {mean[0]:.3f} seg {mean[1]:.3f}  "
            f"top-1 {v['top1']:.1%} top-5 {v['top5']:.1%}  mIoU {v['miou']:.3f} "
            f"pixel acc {v['pixel_acc']:.1%}  {self.state['train_seconds']:.1f}s"
        )

    def _step_record(self, epoch: int, losses: list[float], skipped: bool) -> dict:
        w, s = self.config.task_weights, self.config.loss_scale
        loss = w[0] * s[0] * losses[0] + w[1] * s[1] * losses[1]
        return {
            "step": self.state["step"], "epoch": epoch,
            # metrics.jsonl is strict JSON: a non-finite loss is null (and the step marked skipped)
            "loss_cls": _finite_or_none(losses[0]), "loss_seg": _finite_or_none(losses[1]),
            "loss": _finite_or_none(loss),
            "time": round(self.state["train_seconds"], 4), "skipped": skipped,
        }

    def _step(self, xc, yc, xs, ys) -> tuple[list[float], bool]:
        """One optimizer step on one batch of each task; returns the raw task losses."""
        dev = self.device
        xc, yc = xc.to(dev, non_blocking=True), yc.to(dev, non_blocking=True)
        xs, ys = xs.to(dev, non_blocking=True), ys.to(dev, non_blocking=True)
        s = self.config.loss_scale
        if self.preset.per_task_gradients:
            # NOTE [per-task gradients]: each task runs the model through its own detached aliases
            # of the parameters (no copies). One backward pass over the sum of the task losses then
            # leaves each task's gradient on its own leaves: the tasks' gradients stay apart at
            # the cost of a single backward, and a parameter a task never reaches gets None.
            leaves = [[p.detach().requires_grad_() for p in self.params] for _ in TASKS]
            with self._autocast():
                out_c, _ = functional_call(self.model, dict(zip(self.names, leaves[0])), (xc, None))
                _, out_s = functional_call(self.model, dict(zip(self.names, leaves[1])), (None, xs))
                loss_c = F.cross_entropy(out_c.float(), yc)
                loss_s = masked_cross_entropy(out_s, ys)
            losses = self._reduced_losses(loss_c, loss_s)
            if not all(math.isfinite(x) for x in losses):
                return losses, True
            (s[0] * loss_c + s[1] * loss_s).backward()
            task_grads = [[leaf.grad for leaf in task] for task in leaves]
            if self.dist.enabled:
                # One collective for all tasks' gradients (grouped by dtype), the way DDP buckets.
                distributed.all_reduce_mean_([g for task in task_grads for g in task if g is not None])
            self.optimizer.step(task_grads)
            if self.dist.enabled and self.device.type != "cuda":
                self._sync_buffers()
            return losses, False

        w = self.config.task_weights
        with self._autocast():
            out_c, out_s = self.net(xc, xs)
            loss_c = F.cross_entropy(out_c.float(), yc)
            loss_s = masked_cross_entropy(out_s, ys)
        losses = self._reduced_losses(loss_c, loss_s)
        if not all(math.isfinite(x) for x in losses):
            return losses, True
        self.optimizer.zero_grad(set_to_none=True)
        total = w[0] * s[0] * loss_c + w[1] * s[1] * loss_s
        if self.scaler is not None:
            self.scaler.scale(total).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            total.backward()
            self.optimizer.step()
        return losses, False

    def _reduced_losses(self, loss_c, loss_s) -> list[float]:
        """The task losses averaged over ranks: a NaN on any rank is a NaN on all, so all decide alike."""
        losses = torch.stack([loss_c.detach().float(), loss_s.detach().float()])
        if self.dist.enabled:
            distributed.all_reduce_mean_([losses])
        return losses.tolist()

    def _sync_buffers(self) -> None:
        distributed.broadcast_(list(self.model.buffers()))

    def _on_nonfinite(self, losses: list[float]) -> None:
        """Apply --on-nonfinite to a step whose loss was not finite (the step was not taken)."""
        bad = next(t for t, x in zip(TASKS, losses) if not math.isfinite(x))
        where = (f"non-finite loss at step {self.state['step']} in {TASK_NAMES[bad]} "
                 f"(loss_cls={losses[0]}, loss_seg={losses[1]})")
        self.state["skipped_steps"] += 1
        self.state["consecutive_skips"] += 1
        if self.config.on_nonfinite == "abort":
            raise NonFiniteLossError(
                f"{where}; stopped (--on-nonfinite abort). {self.run.path} keeps what was written; "
                "try a lower lr or --on-nonfinite skip"
            )
        if self.state["consecutive_skips"] > self.config.max_consecutive_skips:
            raise NonFiniteLossError(
                f"{where}; {self.state['consecutive_skips']} consecutive steps skipped, more than "
                f"--max-skips {self.config.max_consecutive_skips}: the run diverged"
            )

    # -- validation --------------------------------------------------------------------------
    @torch.inference_mode()
    def validate(self) -> dict[str, float]:
        """Top-1/top-5 on the classification split, mIoU and pixel accuracy on the segmentation split."""
        self.model.eval()
        cls_meter = TopKAccuracy((1, 5), device=self.device)
        confusion = ConfusionMatrix(self.data.num_seg_classes, IGNORE_INDEX, device=self.device)
        for task, dataset in (("cls", self.data.cls_val), ("seg", self.data.seg_val)):
            shard = Subset(dataset, range(self.dist.rank, len(dataset), self.dist.world))
            loader = self._loader(shard, None, 0, self.config.batch_size * 2, drop_last=False)
            for images, targets, n_corrupt in loader:
                self._count_corrupt(n_corrupt)
                if not len(images):
                    continue
                images, targets = images.to(self.device), targets.to(self.device)
                with self._autocast():
                    if task == "cls":
                        cls_meter.update(self.model(images)[0].float(), targets)
                    else:
                        confusion.update(self.model(None, images)[1].float(), targets)
        cls_meter.all_reduce()
        confusion.all_reduce()
        self.model.train()
        top = cls_meter.compute()
        seg = confusion.compute()
        return {"top1": top["top1"], "top5": top["top5"], "miou": seg["miou"], "pixel_acc": seg["pixel_acc"]}

    # -- state ------------------------------------------------------------------------------
    def _preset_info(self) -> dict:
        p = self.preset
        return {
            "name": p.name, "title": p.title, "per_task_gradients": p.per_task_gradients,
            "defaults": dict(p.defaults),
            "expected": p.expected.to_dict() if p.expected else None,
        }

    def _checkpoint(self) -> dict[str, Any]:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "state": dict(self.state),
            "step_times": list(self.step_times),
            "last_val": self.last_val,
            "rng_cpu": torch.get_rng_state(),
            "init_digest": self.init_digest,
            "settings": self._settings(),
        }
        if self.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def _settings(self) -> dict[str, Any]:
        """What the checkpoint's training state depends on: the config but the settings a resume may change."""
        data = json.loads(json.dumps(self.config.to_dict(), default=list))
        return {k: v for k, v in data.items() if k not in RESUMABLE_SETTINGS}

    def _load(self, ckpt: dict[str, Any]) -> None:
        saved = ckpt.get("settings")
        if saved is not None:
            now = self._settings()
            changed = [k for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
            if changed:
                diff = "; ".join(f"{k}: {saved.get(k)!r} in the checkpoint, {now.get(k)!r} now" for k in changed)
                raise ConfigError(f"cannot resume {self.run.path}: its checkpoint was trained with other settings "
                                  f"({diff}); was config.json edited? Start a new run instead")
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise ConfigError(
                f"cannot resume {self.run.path}: its checkpoint does not fit this run "
                f"({type(exc).__name__}: {str(exc).splitlines()[0]})"
            ) from None
        self.state.update(ckpt["state"])
        self.step_times = list(ckpt.get("step_times", []))
        self.last_val = ckpt.get("last_val")
        self.init_digest = ckpt.get("init_digest", self.init_digest)
        torch.set_rng_state(ckpt["rng_cpu"])
        if "rng_cuda" in ckpt and self.device.type == "cuda":
            torch.cuda.set_rng_state(ckpt["rng_cuda"], self.device)
        if self.scaler is not None and "scaler" in ckpt:
            self.scaler.load_state_dict(ckpt["scaler"])

    def _peak_memory_mb(self) -> float:
        """The peak over the whole run, the parts before a resume included."""
        if self.device.type == "cuda":
            now = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            now = peak_rss_mb()
        return max(now, self.state.get("peak_memory_mb") or 0.0)

    def _finished_summary(self) -> dict:
        """The summary of a run that has nothing left to train, read back rather than rewritten."""
        try:
            summary = self.run.read_json("summary.json")
        except (OSError, ValueError):
            summary = None
        if isinstance(summary, dict) and summary.get("status") == "completed":
            return summary
        return self._write_summary("completed")

    def _write_summary(self, status: str, error: str | None = None) -> dict:
        v = self.last_val or {}
        summary = {
            "optimizer": self.preset.name,
            "title": self.preset.title,
            "status": status,
            "error": error,
            "seed": self.config.seed,
            "epochs": self.state["epoch"],
            "steps": self.state["step"],
            "final_top1": v.get("top1"),
            "final_top5": v.get("top5"),
            "final_miou": v.get("miou"),
            "final_pixel_acc": v.get("pixel_acc"),
            "seconds_per_step": statistics.median(self.step_times) if self.step_times else None,
            "total_seconds": round(self.state["train_seconds"], 3),
            "peak_memory_mb": round(self._peak_memory_mb(), 1),
            "skipped_steps": self.state["skipped_steps"],
            "corrupt_images": self.state["corrupt_images"],
            "init_weights_sha256": self.init_digest,
            "task_weights": list(self.config.task_weights),
            "loss_scale": list(self.config.loss_scale),
            "device": str(self.device),
        }
        self.run.write_json("summary.json", summary)
        return summary
