"""A method's output checked where it enters the trainer: one-line errors that name the method and its plugin.

A multi-task method is plugin code that the trainer calls on every step (``combine``) and at every
checkpoint (``state_dict``). ``CheckedMethod`` is the one place that checks what it returns.
Without it a wrong number of gradients was cut short by ``zip`` (a run "completed" without
updating some parameters), a wrong shape or dtype or an exception became a traceback from deep in
the optimizer, a NaN made by the method was blamed on the learning rate one step later, and a
state that ``weights_only`` refuses made every checkpoint of the run impossible to resume.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..errors import MethodError, NonFiniteLossError
from ..text import failure_reason, first_line

_PLAIN = (bool, int, float, str, bytes, type(None))  # besides tensors, what weights_only loads (with containers)


def _kind(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def _qualified(value: Any) -> str:
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _shape(t: torch.Tensor) -> str:
    return f"{str(t.dtype).removeprefix('torch.')} {tuple(t.shape)} on {t.device}"


def _unloadable(value: Any, where: str) -> tuple[str, Any] | None:
    """(where, value) of the first entry of a state that is not a tensor, plain value or container of them."""
    if isinstance(value, torch.Tensor) or type(value) in _PLAIN:
        return None
    if type(value) in (list, tuple):
        items = enumerate(value)
    elif isinstance(value, dict):
        items = value.items()
    else:
        return where, value
    for key, item in items:
        found = _unloadable(item, f"{where}[{key!r}]")
        if found is not None:
            return found
    return None


class CheckedMethod:
    """A method object (``combine``, ``state_dict``, ``load_state_dict``) whose results are checked.

    ``label`` names the method and its plugin (``MethodPreset.label()``); ``names`` and ``params``
    are the trainer's parameters, in the order of ``combine``'s result.
    """

    def __init__(self, method: Any, label: str, names: Sequence[str], params: Sequence[torch.Tensor]):
        self.method, self.label = method, label
        self.names, self.params = list(names), list(params)

    def _error(self, problem: str) -> MethodError:
        return MethodError(f"{self.label}: {problem}")

    def combine(self, task_grads: Sequence[Sequence[torch.Tensor | None]], losses: torch.Tensor,
                step: int) -> list[torch.Tensor | None]:
        """The method's gradient for each parameter, checked: MethodError unless there is one per parameter,
        each None (only where no task reaches the parameter) or a finite tensor like the parameter."""
        try:
            combined = self.method.combine(task_grads, losses, step)
        except Exception as exc:
            raise self._error(f"its combine {failure_reason(exc)} at step {step}") from None
        n = len(self.params)
        if not isinstance(combined, (list, tuple)):
            raise self._error(f"its combine returned {_kind(combined)} at step {step}: expected a list of {n} "
                              "gradients, one per parameter")
        if len(combined) != n:
            raise self._error(f"its combine returned {len(combined)} gradients at step {step}: expected {n}, one "
                              "per parameter (None where no task reaches it)")
        for i, (grad, param) in enumerate(zip(combined, self.params)):
            if grad is None:
                if any(task[i] is not None for task in task_grads):
                    raise self._error(f"its combine returned None for parameter {self.names[i]} at step {step}, "
                                      "which the tasks reach: expected its gradient (None only where no task does)")
                continue
            if not isinstance(grad, torch.Tensor):
                raise self._error(f"its combine returned {_kind(grad)} for parameter {self.names[i]} at step "
                                  f"{step}: expected a tensor")
            if grad.shape != param.shape or grad.dtype != param.dtype or grad.device != param.device:
                raise self._error(f"its combine returned a gradient of {_shape(grad)} for parameter "
                                  f"{self.names[i]} at step {step}: expected {_shape(param)}, like the parameter")
        self._check_finite(combined, task_grads, step)
        return list(combined)

    def _check_finite(self, combined, task_grads, step: int) -> None:
        """A non-finite combined gradient is the method's doing when its inputs were finite (one norm pass;
        the trainer calls combine only with finite losses)."""
        given = [(i, g) for i, g in enumerate(combined) if g is not None]
        if not given:
            return
        norms = torch.stack([x.float() for x in torch._foreach_norm([g for _, g in given])])
        finite = norms.isfinite()
        if bool(finite.all()):
            return
        name = self.names[given[int((~finite).nonzero()[0])][0]]
        inputs = [g for task in task_grads for g in task if g is not None]
        if inputs and not all(bool(x.isfinite()) for x in torch._foreach_norm(inputs)):
            raise NonFiniteLossError(f"non-finite task gradient at step {step} (the losses were finite); "
                                     "try a lower lr")
        raise self._error(f"its combine returned a non-finite gradient for parameter {name} at step {step}, "
                          "from finite task gradients and losses")

    def scalarize(self, losses: torch.Tensor, step: int) -> torch.Tensor:
        """A losses-only method's scalar, checked: MethodError unless it is a 0-d floating tensor that the
        losses reach (the one backward pass follows it), finite when the losses are."""
        try:
            result = self.method.scalarize(losses, step)
        except Exception as exc:
            raise self._error(f"its scalarize {failure_reason(exc)} at step {step}") from None
        if not isinstance(result, torch.Tensor) or result.dim() != 0 or not result.is_floating_point():
            what = f"a tensor of {_shape(result)}" if isinstance(result, torch.Tensor) else _kind(result)
            raise self._error(f"its scalarize returned {what} at step {step}: expected a 0-d floating tensor, "
                              "the scalar the step backpropagates")
        if not result.requires_grad:
            raise self._error(f"its scalarize returned a scalar without gradient at step {step}: expected one "
                              "computed from the losses it was given")
        if not bool(torch.isfinite(result.detach())) and bool(torch.isfinite(losses.detach()).all()):
            raise self._error(f"its scalarize returned a non-finite scalar at step {step}, from finite losses")
        return result

    @property
    def last_weights(self) -> list[float] | None:
        """The task weights of the last combine (for the logs), as floats; None when the method has none."""
        weights = getattr(self.method, "last_weights", None)
        if weights is None:
            return None
        try:
            return [float(w) for w in torch.as_tensor(weights).reshape(-1).tolist()]
        except (TypeError, ValueError, RuntimeError):
            raise self._error(f"its last_weights is {_kind(weights)}: expected a tensor of the task weights, "
                              "or None") from None

    def state_dict(self) -> dict[str, Any]:
        """The method's state, checked to load with ``weights_only`` as every checkpoint is loaded."""
        try:
            state = self.method.state_dict()
        except Exception as exc:
            raise self._error(f"its state_dict {failure_reason(exc)}") from None
        if not isinstance(state, Mapping):
            raise self._error(f"its state_dict returned {_kind(state)}: expected a dict")
        buffer = io.BytesIO()
        try:
            torch.save(state, buffer)
            buffer.seek(0)
            torch.load(buffer, weights_only=True)
        except (pickle.PicklingError, pickle.UnpicklingError, TypeError, AttributeError, RuntimeError) as exc:
            found = _unloadable(dict(state), "state_dict()")
            what = (f"an object of type {_qualified(found[1])} at {found[0]}" if found is not None
                    else f"what torch refuses ({first_line(exc)[:200]})")
            raise self._error(f"its state_dict holds {what}, which no checkpoint can hold: checkpoints load with "
                              "weights_only (tensors, numbers, strings, None, and lists, tuples and dicts of them), "
                              "so the run could never resume") from None
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.method.load_state_dict(state)
