"""sum: the plain sum of the task gradients, i.e. the gradient of the weighted sum of the task losses."""

from mtbench import MethodPreset, hookimpl

__all__ = ["Sum", "mtbench_methods"]


class Sum:
    """Adds the tasks' gradients of each parameter; holds no state and no weights of its own."""

    last_weights = None  # the task weights are already in the losses; sum applies none of its own

    def __init__(self, num_tasks):
        self.num_tasks = num_tasks

    def combine(self, task_grads, losses, step):
        if len(task_grads) != self.num_tasks or len({len(grads) for grads in task_grads}) > 1:
            raise ValueError(
                f"sum was built for {self.num_tasks} tasks, each with a gradient per parameter; got "
                f"{len(task_grads)} tasks with {sorted({len(grads) for grads in task_grads})} gradients"
            )
        combined = []
        for grads in zip(*task_grads):
            present = [g for g in grads if g is not None]
            if not present:
                combined.append(None)
                continue
            # A fresh tensor: the caller may reuse the buffers the task gradients live in.
            total = present[0].clone()
            for grad in present[1:]:
                total += grad
            combined.append(total)
        return combined

    def scalarize(self, losses, step):
        """The losses-only step: the sum of the (already weighted) task losses, backpropagated once."""
        if losses.shape != (self.num_tasks,):
            raise ValueError(f"losses has shape {tuple(losses.shape)}: expected ({self.num_tasks},), one loss per task")
        return losses.sum()

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        if state:
            raise ValueError(f"sum holds no state, got keys {sorted(state)}")


@hookimpl
def mtbench_methods():
    return [
        MethodPreset(
            name="sum",
            title="Weighted sum",
            factory=Sum,
            description=(
                "The plain weighted sum of the task losses, the usual multi-task baseline (Caruana, "
                "\"Multitask Learning\", Machine Learning 1997): every task's gradient is added "
                "unchanged. mtbench's default; a run with it takes one backward pass of the weighted "
                "loss, which gives the same gradient."
            ),
            reads="loss",
            order=0,
        )
    ]
