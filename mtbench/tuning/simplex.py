"""The task weights of the weighted sum as a search space of `mtbench tune`: T weights on the simplex.

Kurin et al. 2022 and Xin et al. 2022 found that a weighted sum of the task losses whose weights are
*tuned* matches the specialised multi-task methods; giving it the same tuning budget as every other
setting is what makes a comparison against it fair. Here the weights are searched with the trials of
an optimizer's tune (the same ``--trials``, the same sampler), and a trial's point becomes the run's
``--task-weights``: its run is an ordinary run, read back by `mtbench report` like any other.

NOTE [simplex parametrisation]
    A sampler draws T - 1 numbers q_1..q_{T-1}, each uniform on [0, 1] (Optuna's FloatDistribution,
    keys ``task_weights.q1``...), and stick-breaking maps them onto the simplex:

        v_k = 1 - (1 - q_k) ** (1 / (T - k))        (the inverse CDF of Beta(1, T - k))
        w_k = v_k * (1 - v_1) * ... * (1 - v_{k-1}),   w_T = what is left

    With q uniform, v_k ~ Beta(1, T - k) independently, which is exactly the stick-breaking
    construction of Dirichlet(1, ..., 1): the uniform distribution on the simplex. The map is
    measure-preserving, so qmc's Halton points stay low-discrepancy on the simplex and grid's
    points cut it into cells of equal probability (for two tasks: w_1 = q_1, an even sweep of
    the first task's share, corners included). Normalising T independent uniforms, or
    log-uniforms, would not be uniform: it piles the points up in the middle, or in the corners.
    T - 1 numbers, not T normalised ones, because the weights have T - 1 degrees of freedom: a
    T-th number would only rescale them, wasting a grid's or Halton's points on one weighting.
    A weight may be 0 (a corner: the other tasks alone), as ``--task-weights`` allows.

NOTE [simplex lattice]
    `mtbench compare --task-weights-sweep simplex:N` runs the interior points of the lattice of
    spacing 1/N: every weighting (k_1/N, ..., k_T/N) with each k_t >= 1 and k_1 + ... + k_T = N,
    C(N - 1, T - 1) points (the compositions of N into T positive parts). Interior only: a corner
    or an edge leaves a task out of the loss, which is a single-task baseline (--single-task) or a
    smaller workload, not a point of the multi-task front. For two tasks it is the sweep
    w = 1/N, ..., (N - 1)/N that a list of w gives by hand. Unlike the tune's draws, the
    lattice is even in the weights themselves, which is what a front read off a plot wants.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from ..errors import ConfigError
from ..presets import SUM_METHOD, SearchDim
from ..text import format_value

__all__ = [
    "PREFIX", "is_simplex_key", "lattice", "lattice_size", "quantiles_of", "simplex_keys", "simplex_space",
    "split_params", "weight_spaces", "weights_of", "weights_text",
]

PREFIX = "task_weights.q"
# Rounding of a weight before it becomes --task-weights: enough digits to tell trials apart, few enough
# that 1 - sum(others) is not shown as 0.30000000000000004.
DIGITS = 12


def simplex_keys(n_tasks: int) -> list[str]:
    """The search keys of ``n_tasks`` weights: ``task_weights.q1`` .. ``task_weights.q{T-1}``."""
    if isinstance(n_tasks, bool) or not isinstance(n_tasks, int) or n_tasks < 2:
        raise ConfigError(f"searching the task weights needs a workload of 2 or more tasks, got {n_tasks!r} "
                          "(one task has nothing to weigh)")
    return [f"{PREFIX}{k}" for k in range(1, n_tasks)]


def simplex_space(n_tasks: int) -> dict[str, SearchDim]:
    """The search space of ``n_tasks`` task weights (NOTE [simplex parametrisation]), to merge into an
    optimizer's space."""
    return {key: SearchDim(0.0, 1.0) for key in simplex_keys(n_tasks)}


def weight_spaces(optimizers: Sequence[str], n_tasks: int, *, method: str, space_items: Sequence[str] = (),
                  task_weights: str | None = None) -> dict[str, dict[str, SearchDim]]:
    """Each tuned optimizer's space when the tune searches the weighted sum's task weights: the simplex
    alone, its settings those of the preset and ``--set`` (the same ones a comparison's row runs with).

    ConfigError for what does not go with it: a method other than sum (whose weights are not a weighted
    sum's), ``--space`` (a second search inside the same budget) or ``--task-weights`` (fixed and searched).
    """
    if method != SUM_METHOD:
        raise ConfigError(f"--search-task-weights tunes the weighted sum's task weights (--method {SUM_METHOD}); "
                          f"--method {method} weighs the tasks itself")
    if space_items:
        raise ConfigError(f"--space {space_items[0]}: --search-task-weights searches the task weights alone, "
                          "with the optimizer's settings from its preset and --set; drop one of them")
    if task_weights:
        raise ConfigError(f"--task-weights {task_weights} fixes the weights --search-task-weights searches; "
                          "drop one of them")
    space = simplex_space(n_tasks)
    return {name: dict(space) for name in optimizers}


def lattice_size(n_tasks: int, spacing: int) -> int:
    """How many points ``lattice(n_tasks, spacing)`` has: C(N - 1, T - 1), 0 when N < T."""
    return math.comb(spacing - 1, n_tasks - 1) if spacing >= n_tasks >= 1 else 0


def lattice(n_tasks: int, spacing: int) -> list[tuple[float, ...]]:
    """The interior points of the simplex lattice of spacing 1/``spacing`` over ``n_tasks`` weights
    (NOTE [simplex lattice]), each weight k/N with k >= 1, in lexicographic order of (k_1, ..., k_T):
    for two tasks the first task's weight rises from 1/N to (N - 1)/N."""
    if isinstance(n_tasks, bool) or not isinstance(n_tasks, int) or n_tasks < 1:
        raise ConfigError(f"a lattice of task weights needs 1 or more tasks, got {n_tasks!r}")
    if isinstance(spacing, bool) or not isinstance(spacing, int) or spacing < 1:
        raise ConfigError(f"the lattice spacing 1/N needs an integer N >= 1, got {spacing!r}")
    points: list[tuple[float, ...]] = []

    def compose(prefix: tuple[int, ...], left: int) -> None:
        slots = n_tasks - len(prefix)
        if slots == 1:
            points.append(tuple(k / spacing for k in (*prefix, left)))
            return
        for k in range(1, left - slots + 2):  # leave at least 1 for each slot after this one
            compose((*prefix, k), left - k)

    if spacing >= n_tasks:
        compose((), spacing)
    return points


def is_simplex_key(key: str) -> bool:
    return key.startswith(PREFIX) and key[len(PREFIX):].isdigit()


def weights_of(quantiles: Sequence[float]) -> tuple[float, ...]:
    """The T task weights (summing to 1) of T - 1 quantiles in [0, 1], by stick-breaking."""
    t = len(quantiles) + 1
    weights, left = [], 1.0
    for k, q in enumerate(quantiles, start=1):
        q = float(q)
        if not 0.0 <= q <= 1.0:
            raise ConfigError(f"task weight quantile {PREFIX}{k} = {q!r} is not in [0, 1]")
        v = 1.0 - (1.0 - q) ** (1.0 / (t - k))
        weights.append(left * v)
        left *= 1.0 - v
    weights.append(left)
    return tuple(weights)


def quantiles_of(weights: Sequence[float]) -> tuple[float, ...]:
    """The quantiles whose stick-breaking gives ``weights`` (normalised first): the inverse of ``weights_of``.

    Where the stick is used up (a weight after it would be 0 whatever), the quantile is 0.
    """
    total = float(sum(weights))
    if len(weights) < 2 or not total > 0 or any(not 0 <= w < math.inf for w in weights):
        raise ConfigError(f"task weights {tuple(weights)!r}: expected 2 or more finite weights >= 0, not all 0")
    t, left, out = len(weights), 1.0, []
    for k, w in enumerate(weights[:-1], start=1):
        v = min(1.0, (w / total) / left) if left > 0 else 0.0
        out.append(1.0 - (1.0 - v) ** (t - k))
        left *= 1.0 - v
    return tuple(out)


def split_params(params: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[float, ...] | None]:
    """A trial's point as (the optimizer's settings, the task weights or None when they are not searched)."""
    keys = sorted((k for k in params if is_simplex_key(k)), key=lambda k: int(k[len(PREFIX):]))
    settings = {k: v for k, v in params.items() if not is_simplex_key(k)}
    if not keys:
        return settings, None
    if keys != [f"{PREFIX}{k}" for k in range(1, len(keys) + 1)]:
        raise ConfigError(f"the task weight quantiles {', '.join(keys)} are not {PREFIX}1..{PREFIX}{len(keys)}")
    return settings, weights_of([params[k] for k in keys])


def weights_text(weights: Sequence[float]) -> str:
    """Task weights as ``--task-weights`` takes them: ``0.25,0.75``."""
    return ",".join(format_value(float(f"{w:.{DIGITS}g}"), exact=True) for w in weights)
