"""The training state a resume needs: saved at each epoch's end, checked against the run's settings."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch

from ..config import ADDED_SETTINGS, RESUMABLE_SETTINGS, RunConfig
from ..errors import ConfigError


@dataclass
class TrainState:
    """The counters of a run (``counters``), its step times and last evaluations."""

    counters: dict[str, Any] = field(default_factory=lambda: {
        "epoch": 0, "step": 0, "train_seconds": 0.0, "skipped_steps": 0, "consecutive_skips": 0,
        "corrupt_images": 0, "peak_memory_mb": 0.0})
    step_times: list[float] = field(default_factory=list)
    last_val: dict[str, float] | None = None
    last_holdout: dict[str, float] | None = None


def settings(config: RunConfig) -> dict[str, Any]:
    """What a checkpoint's training state depends on: the config but the settings a resume may change."""
    data = json.loads(json.dumps(config.to_dict(), default=list))
    return {k: v for k, v in data.items() if k not in RESUMABLE_SETTINGS}


def capture(state: TrainState, config: RunConfig, model, optimizer, strategy, scaler, scheduler,
            device: torch.device, init_digest: str) -> dict[str, Any]:
    """Everything a resume restores, as a dict of tensors and plain values (loadable with weights_only)."""
    ckpt = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "gradients": strategy.state_dict(),
        "state": dict(state.counters),
        "step_times": list(state.step_times),
        "last_val": state.last_val,
        "last_holdout": state.last_holdout,
        "rng_cpu": torch.get_rng_state(),
        "init_digest": init_digest,
        "settings": settings(config),
    }
    if device.type == "cuda":
        ckpt["rng_cuda"] = torch.cuda.get_rng_state(device)
    if scaler is not None:
        ckpt["scaler"] = scaler.state_dict()
    if scheduler is not None:
        # The lr schedule is laid out over --epochs: a resume must keep them to continue it exactly.
        ckpt["scheduler"] = scheduler.state_dict()
        ckpt["schedule_epochs"] = config.epochs
    return ckpt


def restore(ckpt: dict[str, Any], state: TrainState, config: RunConfig, model, optimizer, strategy, scaler,
            scheduler, device: torch.device, where: str) -> str | None:
    """Load ``ckpt`` into the run's parts; returns the initial-weights digest it recorded.

    ConfigError when the checkpoint was trained with other settings (an edited config.json) or
    does not fit the model, optimizer or method.
    """
    saved = ckpt.get("settings")
    if saved is not None:
        now = settings(config)
        saved = {**ADDED_SETTINGS, **saved}  # a checkpoint older than a setting had its default
        changed = [k for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
        if changed:
            diff = "; ".join(f"{k}: {saved.get(k)!r} in the checkpoint, {now.get(k)!r} now" for k in changed)
            raise ConfigError(f"cannot resume {where}: its checkpoint was trained with other settings "
                              f"({diff}); was config.json edited? Start a new run instead")
    planned = ckpt.get("schedule_epochs")
    if planned is not None and planned != config.epochs:
        raise ConfigError(f"cannot resume {where} with --epochs {config.epochs}: its --schedule {config.schedule} "
                          f"is laid out over {planned} epochs; resume with --epochs {planned}")
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        strategy.load_state_dict(ckpt.get("gradients") or {})
        if scheduler is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"cannot resume {where}: its checkpoint does not fit this run "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else exc!r})"
        ) from None
    state.counters.update(ckpt["state"])
    state.step_times = list(ckpt.get("step_times", []))
    state.last_val = ckpt.get("last_val")
    state.last_holdout = ckpt.get("last_holdout")
    torch.set_rng_state(ckpt["rng_cpu"])
    if "rng_cuda" in ckpt and device.type == "cuda":
        torch.cuda.set_rng_state(ckpt["rng_cuda"], device)
    if scaler is not None and "scaler" in ckpt:
        scaler.load_state_dict(ckpt["scaler"])
    return ckpt.get("init_digest")
