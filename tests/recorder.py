"""An optimizer for trainer tests that keeps the per-task gradients it is given and changes nothing."""

import torch


class Recorder(torch.optim.Optimizer):
    """Keeps the per-task gradients it is given (``received``: one list per step, a list per task); changes
    nothing."""

    def __init__(self, params, lr=0.1):
        super().__init__(params, {"lr": lr})
        self.received = []

    def step(self, task_grads):
        self.received.append([[None if g is None else g.clone() for g in task] for task in task_grads])
