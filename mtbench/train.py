"""The multi-task training loop. Knows nothing of click: it takes a RunConfig and a preset.

The loop is short; its parts live in ``mtbench.training``: the data streams (batches), the
metrics (evaluate), how the gradient is made (gradients, the one seam where runs differ), the
training state a resume needs (checkpoint) and what a run writes (runlog).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import time
from contextlib import nullcontext
from typing import Callable, Iterator

import torch
from torch.nn.parallel import DistributedDataParallel

from . import distributed
from .config import SUM_METHOD, RunConfig
from .environment import environment
from .errors import ConfigError, MTBenchError, NonFiniteLossError, RunStopped
from .interrupts import Terminated, sigterm_as_interrupt
from .model import load_weights
from .plugins import load_registry
from .presets import OptimizerPreset
from .rundir import CONFIG_FILE, ENV_FILE, RunDir
from .training import checkpoint
from .training.batches import Batches, seed_for
from .training.checkpoint import TrainState
from .training.combination import check_combination
from .training.evaluate import evaluate
from .training.gradients import (
    CombinedLoss, GradientStrategy, LossMethod, MethodGradients, OptimizerTaskGradients, StepContext, StepResult,
)
from .training.memory import peak_rss_mb, reset_peak_rss
from .training.optimizers import BN_STREAM, OptimizerLifecycle, build_optimizer
from .training.runlog import RunLog
from .training.schedule import build_scheduler
from .workloads import Workload, WorkloadData
from .workloads import build as parts
from .workloads.imagenet_coco import masked_cross_entropy

__all__ = ["Trainer", "masked_cross_entropy", "train", "weights_digest"]


def train(
    config: RunConfig,
    preset: OptimizerPreset,
    *,
    method=None,
    workload: Workload | None = None,
    resume: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    on_epoch: Callable[[dict], None] | None = None,
) -> dict:
    """Train one run into ``config.run_dir`` and return its summary.

    ``method`` is the MethodPreset of ``config.method`` and ``workload`` the Workload of ``config.workload``
    (None: looked up in the plugin registry).
    With ``resume``, continue from the run directory's last checkpoint (from scratch when it has
    none). Whatever happens, the run directory keeps what was written and ``summary.json`` says how
    the run ended. ``on_epoch(summary)`` hears of every finished epoch (after its checkpoint); it may
    raise RunStopped to end the run there, e.g. a tuner pruning a trial.
    """
    trainer = Trainer(config, preset, config.run_dir, method=method, workload=workload, progress=progress, echo=echo,
                      on_epoch=on_epoch)
    try:
        return trainer.fit(resume)
    finally:
        trainer.close()


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over the model's parameters and buffers: equal digests mean equal initial weights."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _autocast(device_type: str, dtype: torch.dtype | None):
    """The mixed-precision context of a run (``--amp``): a no-op at full precision."""
    return nullcontext() if dtype is None else torch.autocast(device_type, dtype=dtype)


class Trainer:
    """One run: data, model, optimizer, gradient strategy, the loop, evaluation and the run directory.

    Everything that can be wrong with the input is checked in the constructor, before the run
    directory is written; from ``fit`` on, a failure leaves the directory with what it had written.
    """

    def __init__(self, config: RunConfig, preset: OptimizerPreset, run_dir, *, method=None,
                 workload: Workload | None = None, progress: bool, echo, on_epoch: Callable[[dict], None] | None = None):
        if config.optimizer != preset.name:
            raise ConfigError(f"the run is configured for {config.optimizer!r} but was given preset {preset.name!r}")
        self.config, self.preset = config, preset
        registry = load_registry() if method is None or workload is None else None
        if method is None:  # sum too is a plugin's method (reads="loss"); without that plugin, the weighted loss
            method = registry.methods.get(SUM_METHOD) if config.method == SUM_METHOD \
                else registry.get_method(config.method)
        self.workload = workload if workload is not None else registry.workload(config.workload)
        config.bind(self.workload)
        self.dist, self.device = distributed.init(distributed.resolve_device(config.device))
        check_combination(config, preset, self.device)
        main = self.dist.is_main
        self.run = RunDir(run_dir, writable=main)
        self.progress = progress and main
        self.echo = echo if main else (lambda text: None)
        self.on_epoch = on_epoch
        self.data: WorkloadData = parts.build_data(self.workload, config)
        for split, ds in zip(self._set_titles(), self.data.train):
            if len(ds) < config.batch_size:
                raise ConfigError(
                    f"--batch-size {config.batch_size} is larger than the {split} training set "
                    f"({len(ds)} images); use a smaller batch size or more data"
                )
        torch.manual_seed(config.seed)
        self.model = parts.build_model(self.workload, config.backbone, self.data)
        if config.weights:
            note = load_weights(self.model, config.weights)
            if note:
                self.echo(f"warning: {note}")
        self.init_digest = weights_digest(self.model)
        self.model.to(self.device)
        # NOTE [no reference cycles]: the parts the trainer owns get plain functions and data, never
        # the trainer's bound methods, so a finished run is freed by reference counting alone
        # (a cycle would keep its model and data alive until a full garbage collection).
        self._autocast = functools.partial(_autocast, self.device.type,
                                           {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.amp))
        self.scaler = torch.amp.GradScaler("cuda") if config.amp == "fp16" else None
        self.strategy = self._gradient_strategy(method)
        # What a skipped step puts back (see step): the BatchNorm statistics, copied in a few fused kernels
        # (under --on-nonfinite abort a bad step ends the run, so nothing is kept).
        self._buffers = list(self.model.buffers()) if config.on_nonfinite == "skip" else []
        self._buffers_before = [torch.empty_like(b) for b in self._buffers]
        self.strategy.state_dict()  # a method state that no checkpoint could hold is refused before training
        per_step = config.batch_size * self.dist.world
        self.steps_per_epoch = max(len(ds) // per_step for ds in self.data.train)
        self.scheduler = None
        if config.schedule != "constant" or config.warmup_epochs:
            self.scheduler = build_scheduler(self.optimizer, config.schedule, config.epochs * self.steps_per_epoch,
                                             config.warmup_epochs * self.steps_per_epoch)
        self.state = TrainState()
        self.batches = Batches(config, self.dist, self.device, self.state.counters)
        self.log = RunLog(self.run, config, {"optimizer": preset.name, "title": preset.title,
                                             "method": config.method}, self.echo, self.workload)
        self._lock = None

    def _set_titles(self) -> list[str]:
        return ["shared" if self.workload.shared_batch else t.title for t in self.workload.tasks][:len(self.data.train)]

    def _gradient_strategy(self, method) -> GradientStrategy:
        """The optimizer, and how the gradient it steps on is made: the weighted loss, the tasks'
        gradients for an optimizer that takes them, or a method's combination of them."""
        config, preset = self.config, self.preset
        per_task = preset.per_task_gradients or (method is not None and method.needs_grads)
        net = self._distribute(per_task=per_task)
        self.names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        tasks = self.workload.tasks
        built = method.build(len(tasks), **config.method_settings) \
            if method is not None and not preset.per_task_gradients else None
        extra = list(built.parameters()) if hasattr(built, "parameters") else []
        for p in extra:  # a method's learnable loss weights, made by its factory on the CPU
            p.data = p.data.to(self.device)
        self.optimizer = build_optimizer(preset, self.model, self.names, self.params, extra, config.hyperparams)
        self.lifecycle = OptimizerLifecycle(preset, self.optimizer, self.model, config.hyperparams)
        losses = parts.task_losses(self.workload)
        ctx = StepContext(config, self.model, net, self.names, self.params, self.optimizer, self.dist,
                          self.device, self._autocast, self.scaler, losses=losses,
                          trained=[t.name in config.tasks for t in tasks], shared_batch=self.workload.shared_batch,
                          closure="closure" in getattr(preset, "needs", ()))
        # The strategy follows what the optimizer and the method read (never the method's name).
        if preset.per_task_gradients:
            return OptimizerTaskGradients(ctx)  # its method is sum (check_combination)
        if built is None:
            return CombinedLoss(ctx)
        if not method.needs_grads:
            return LossMethod(ctx, built, method.label(), self._last_shared_parameters())
        return MethodGradients(ctx, built, method.label())

    def _last_shared_parameters(self) -> list[torch.Tensor]:
        shared = getattr(self.model, "last_shared_parameters", None)
        return list(shared()) if callable(shared) else []

    def _distribute(self, per_task: bool) -> torch.nn.Module:
        """The module the training step calls: the model itself, or it wrapped for several processes.

        NOTE [BatchNorm across ranks]: on CUDA the BatchNorm layers become SyncBatchNorm, so
        statistics are computed over the global batch. SyncBatchNorm has no CPU kernel, so on CPU
        each rank normalises with its own batch and rank 0's running statistics are broadcast
        (DDP syncs them at every forward, or TaskGradientBuffer.sync_buffers after a per-task step) and,
        since a forward pass moves them again, at the end of each epoch: evaluation and the checkpoint
        see the same buffers on every rank.
        """
        if not self.dist.enabled:
            return self.model
        if self.device.type == "cuda":
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        distributed.broadcast_(list(self.model.state_dict().values()))
        if per_task:
            # DDP would not reduce gradients that land on the per-task aliases: the [T, N] buffer is.
            return self.model
        ids = [self.device.index] if self.device.type == "cuda" else None
        # buffers follow rank 0 each forward; a single-task run leaves the other head without gradients
        return DistributedDataParallel(self.model, device_ids=ids,
                                       find_unused_parameters=len(self.config.tasks) < len(self.workload.tasks))

    def close(self) -> None:
        self.log.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if self.dist.enabled:
            distributed.shutdown()

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, resume: bool) -> dict:
        run, config, counters = self.run, self.config, self.state.counters
        self._lock = run.lock()
        reset_peak_rss()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        if resume and run.has_checkpoint():
            digest = checkpoint.restore(run.load_checkpoint(), self.state, config, self.model, self.optimizer,
                                        self.strategy, self.scaler, self.scheduler, self.device, str(run.path))
            self.init_digest = digest or self.init_digest
            counters["peak_memory_mb"] = max(counters["peak_memory_mb"], self.log.reported_peak_mb())
            done = counters["epoch"]
            if done > config.epochs:
                raise ConfigError(f"{run.path} has already trained {done} epochs; --epochs {config.epochs} "
                                  f"cannot shorten it (give --epochs {done} or more)")
            if done == config.epochs:
                self.echo(f"{run.path} has already completed its {done} epochs; nothing to do "
                          f"(--epochs {done + 1} or more extends it)")
                return self.log.finished_summary() or self._summary("completed")
            run.trim_logs(counters["step"], done, self.log.epoch_columns())
        else:
            run.clear_logs()
        from . import ops

        self.echo(f"run directory: {run.path}")
        self.log.open(self.state)
        run.write_json(CONFIG_FILE, {**config.to_dict(), "preset": self._preset_info()})
        run.write_json(ENV_FILE, environment(self.device, ops.describe()))
        self._summary("running")
        try:
            with sigterm_as_interrupt():
                while counters["epoch"] < config.epochs:
                    self._train_epoch(counters["epoch"] + 1)
        except KeyboardInterrupt as exc:
            why = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted by the user"
            self._summary("interrupted", f"{why} after {counters['epoch']} of {config.epochs} epochs; "
                                         f"resume with: mtbench run --resume {run.path}")
            raise
        except RunStopped as exc:
            self._summary(exc.status, str(exc))
            raise
        except MTBenchError as exc:
            self._summary("failed", str(exc))
            raise
        except Exception as exc:
            self._summary("failed", f"{type(exc).__name__}: {exc}")
            raise
        return self._summary("completed")

    def _train_epoch(self, epoch: int) -> None:
        from tqdm.auto import tqdm

        config, state, counters = self.config, self.state, self.state.counters
        # The step's own random draws; the data pipeline seeds itself per sample. The same on every
        # rank, so a random choice made from the reduced gradients agrees across ranks.
        torch.manual_seed(seed_for(config.seed, epoch))
        self.model.train()
        batches = self.epoch_batches(epoch)
        names = self.workload.task_names
        sums, taken = torch.zeros(len(names), dtype=torch.float64), 0
        # disable=None: no bar off a terminal (CI logs, nohup, pipes), where the epoch lines suffice.
        bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {epoch}/{config.epochs}", unit="step",
                   disable=None if self.progress else True, leave=False, dynamic_ncols=True)
        try:
            for _ in range(self.steps_per_epoch):
                start = time.perf_counter()
                result = self.step(next(batches), epoch, start)
                if result.taken:
                    sums += torch.tensor([x or 0.0 for x in result.losses], dtype=torch.float64)
                    taken += 1
                bar.update(1)
                bar.set_postfix(**{t: "-" if x is None else f"{x:.3f}" for t, x in zip(names, result.losses)})
        finally:
            bar.close()
            self.log.flush()
        if self.dist.enabled:  # see NOTE [BatchNorm across ranks]
            distributed.broadcast_(list(self.model.buffers()))
        # An optimizer that evaluates elsewhere (Schedule-Free) gets the BatchNorm statistics recomputed there,
        # over batches of a stream of their own (drawn only then; see OptimizerLifecycle).
        with self.lifecycle.evaluation(self.epoch_batches(BN_STREAM + epoch),
                                       lambda batch: self.strategy.ctx.losses_of(self.model, batch),
                                       (lambda: distributed.broadcast_(list(self.model.buffers())))
                                       if self.dist.enabled else None):
            state.last_val = self.evaluate(self.data.val)
            if self.data.holdout is not None:
                state.last_holdout = self.evaluate(self.data.holdout)
            counters["epoch"] = epoch
            # The mean over the steps taken (a skipped step has no loss); already averaged over ranks.
            means = (sums / taken).tolist() if taken else [math.nan] * len(names)
            self.log.epoch(state, epoch, [m if t in config.tasks else None for t, m in zip(names, means)])
            counters["peak_memory_mb"] = self._peak_memory_mb()
            self.run.save_checkpoint(checkpoint.capture(state, config, self.model, self.optimizer, self.strategy,
                                                        self.scaler, self.scheduler, self.device, self.init_digest))
        summary = self._summary("running")  # a run killed from here on still shows the epochs it finished
        if self.on_epoch is not None:
            self.on_epoch(summary)

    def step(self, batch, epoch: int, start: float | None = None) -> StepResult:
        """One optimizer step on one batch (one of each task, or the shared one: what ``epoch_batches``
        yields), counted and logged (``start``: when its batch was asked for)."""
        start = time.perf_counter() if start is None else start
        counters = self.state.counters
        # A skipped step leaves the model as it was: its forward pass updated the BatchNorm statistics
        # too, with NaN where the batch was the cause.
        if self._buffers:
            torch._foreach_copy_(self._buffers_before, self._buffers)
        result = self.strategy.step(batch, counters["step"] + 1)
        if not result.taken and self._buffers:
            torch._foreach_copy_(self._buffers, self._buffers_before)
        if self.scheduler is not None:
            self.scheduler.step()  # by step number, taken or skipped: the lr depends on the step alone
        elapsed = time.perf_counter() - start
        self.state.step_times.append(elapsed)
        counters["step"] += 1
        counters["train_seconds"] += elapsed
        self.log.step(self.state, epoch, result)
        if result.taken:
            counters["consecutive_skips"] = 0
        else:
            self._on_nonfinite(result.losses)  # after the step is logged, so the logs count it
        return result

    def epoch_batches(self, epoch: int) -> Iterator:
        """The batches of one epoch, endless: per-task batches, a tuple of one (images, target) pair per
        task ((None, None) for a task the run does not train); a shared batch, one
        (images, (target_0, ..., target_{T-1})) pair."""
        if self.workload.shared_batch:
            return self.batches.train(0, self.data.train[0], epoch)
        return zip(*(self.batches.train(t, dataset, epoch) if task.name in self.config.tasks
                     else itertools.repeat((None, None))
                     for t, (task, dataset) in enumerate(zip(self.workload.tasks, self.data.train))))

    def evaluate(self, sets) -> dict[str, float]:
        """Every task's metrics on one split (one data set per task, or the shared one)."""
        meters = parts.task_meters(self.workload, self.data, self.device)
        return evaluate(self.model, sets, meters, self.batches, self._autocast, self.workload.shared_batch,
                        [t.name in self.config.tasks for t in self.workload.tasks])

    def _on_nonfinite(self, losses: list[float]) -> None:
        """Apply --on-nonfinite to a step whose loss was not finite (the step was not taken)."""
        counters = self.state.counters
        tasks = self.workload.tasks
        bad = next(t for t, x in zip(tasks, losses) if x is not None and not math.isfinite(x))
        shown = ", ".join(f"loss_{t.name}={x}" for t, x in zip(tasks, losses))
        where = f"non-finite loss at step {counters['step']} in {bad.title} ({shown})"
        counters["skipped_steps"] += 1
        counters["consecutive_skips"] += 1
        if self.config.on_nonfinite == "abort":
            raise NonFiniteLossError(
                f"{where}; stopped (--on-nonfinite abort). {self.run.path} keeps what was written; "
                "try a lower lr or --on-nonfinite skip"
            )
        if counters["consecutive_skips"] > self.config.max_consecutive_skips:
            raise NonFiniteLossError(
                f"{where}; {counters['consecutive_skips']} consecutive steps skipped, more than "
                f"--max-skips {self.config.max_consecutive_skips}: the run diverged"
            )

    # -- what the run directory records ------------------------------------------------------
    def _preset_info(self) -> dict:
        p = self.preset
        return {
            "name": p.name, "title": p.title, "per_task_gradients": p.per_task_gradients,
            "needs": sorted(getattr(p, "needs", ())),
            "defaults": dict(p.defaults),
            "expected": p.expected.to_dict() if p.expected else None,
        }

    def _peak_memory_mb(self) -> float:
        """The peak over the whole run, the parts before a resume included."""
        if self.device.type == "cuda":
            now = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            now = peak_rss_mb()
        return max(now, self.state.counters.get("peak_memory_mb") or 0.0)

    def _summary(self, status: str, error: str | None = None) -> dict:
        return self.log.summary(status, self.state, init_digest=self.init_digest, device=str(self.device),
                                peak_memory_mb=self._peak_memory_mb(), error=error, model=self.model)
