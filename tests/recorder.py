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


def recorded_step(trainer):
    """Step ``trainer`` (its optimizer a Recorder) twice from the same weights on its first batch, the first step
    laying the gradient buffer out and the second writing into it; then put the weights back (the same BatchNorm
    statistics as in the step) and close it. Returns the batch and the per-task gradients the second step gave."""
    trainer.model.train()
    batch = next(trainer.epoch_batches(1))
    state = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    for _ in range(2):
        trainer.model.load_state_dict(state)
        trainer.step(batch, epoch=1)
    task_grads = trainer.optimizer.received[-1]
    trainer.close()
    trainer.model.load_state_dict(state)
    return batch, task_grads
