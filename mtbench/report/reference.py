"""Δm against a reference row of the comparison, where no single-task baselines were run.

The report's Δm is LibMTL's (stats.delta_m: the mean over every metric of the relative change, the sign of a
lower-is-better metric's flipped), per seed. Its reference is the single-task baseline of each metric's task
where the comparison has them; otherwise one of the compared rows (mtbench.report.taskmetrics' NOTE
[reference row]): ``--reference ROW``, by default the row of Adam on the weighted sum (``adam``; in a tune
report ``adam (preset)``, else ``adam (tuned)``: NOTE [default reference]) when one is compared, else the first
compared row. Row r's seed s is measured against the reference's seed s, so the reference row is 0 on
each of its seeds.

Pure functions of numbers keyed by metric and seed, of row labels and of the rows' specs, as
mtbench.report.build hands them over; the formula is stats.delta_m's, unchanged.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Hashable, Mapping, Sequence

from ..config import SUM_METHOD
from ..errors import ConfigError, DataError

if TYPE_CHECKING:
    from .grouping import RowRuns

__all__ = ["DEFAULT_REFERENCE", "PRESET_REFERENCE", "SINGLE_TASK", "adam_rows", "baselines_sentence",
           "choose_reference", "dropped_fact", "reference_delta_m", "reference_sentence"]

DEFAULT_REFERENCE = "adam"  # Adam on the weighted sum: the linear-scalarization baseline of the field
SINGLE_TASK = "single-task"  # report.json's delta_m_reference where the single-task baselines are the reference

ByMetric = Mapping[str, Mapping[Hashable, float | None]]  # metric -> {seed: value}, None for a failed run


def choose_reference(compared: Sequence[str], reference: str | None,
                     adam: Sequence[str] | None = None) -> str | None:
    """The label of the reference row among the compared rows' labels: ``reference`` where given (ConfigError
    in one line, naming the rows, where it is not one of them), else a row of Adam on the weighted sum where one
    is compared (NOTE [default reference]), else the first compared row; None without a compared row.

    ``adam``: the labels of the compared rows that train Adam on the weighted sum, as their specs say (optimizer,
    method, weights, tasks); None where the caller has labels alone: then only the row named DEFAULT_REFERENCE.
    """
    if reference is not None:
        if reference not in compared:
            raise ConfigError(f"--reference {reference!r} is not a compared row of this comparison (expected one "
                              f"of {', '.join(compared) or 'none: no compared row'})")
        return reference
    candidates = [label for label in compared if (label in adam if adam is not None else label == DEFAULT_REFERENCE)]
    if candidates:
        return min(candidates, key=_preference)  # min keeps the first of equals: the order rows are given in
    return compared[0] if compared else None


# NOTE [default reference]: Adam on the weighted sum is recognised by what a row trains (report.build passes the
# rows whose optimizer is adam, method the weighted sum, at the comparison's task weights on every task), not by
# its label, which `tune` decorates: its final runs are rows "adam (tuned)" and "adam (preset)"
# (mtbench.tuning.across.row_name), and two groups of one row that differ in settings are labelled
# "adam (lr=...)". Of several, the plain row "adam" comes first, then the preset (Adam as the field runs it, the
# same on every workload), then the others in the order given ("adam (tuned)", whose settings were searched).
PRESET_REFERENCE = f"{DEFAULT_REFERENCE} (preset)"


def _preference(label: str) -> int:
    return {DEFAULT_REFERENCE: 0, PRESET_REFERENCE: 1}.get(label, 2)


def adam_rows(groups: Sequence[RowRuns], tasks: Sequence[str]) -> list[str]:
    """The labels of the compared rows that train Adam on the weighted sum on every one of ``tasks``, whatever
    the labels say (NOTE [default reference]). A compared row of the weighted sum is at the comparison's task
    weights: at others it would be a sweep point (rows.RowSpec.of)."""
    return [g.label for g in groups if g.role == "row" and g.optimizer == DEFAULT_REFERENCE
            and g.spec.method == SUM_METHOD and set(g.spec.tasks) == set(tasks)]


def reference_delta_m(rows: Mapping[str, ByMetric], reference: str,
                      measure: Callable[[ByMetric, ByMetric], dict]) -> tuple[dict[str, dict], dict, dict[str, str]]:
    """Every row's Δm per seed against the row ``reference`` of the same seed.

    ``rows`` maps each row to be measured (the reference among them) to its {metric: {seed: value}};
    ``measure(row, reference)`` is Δm per seed of one row against the reference (stats.delta_m's DataError
    where a reference figure is 0 or not a number). A seed of the reference whose run failed, or whose
    figure cannot be divided by, is left out of every row's Δm, never raised: returns ({row: {seed: Δm}},
    {seed left out: why}, {row: why its Δm is empty}).
    """
    base = rows[reference]
    seeds = list(dict.fromkeys(s for by_seed in base.values() for s in by_seed))
    dropped: dict = {}
    for seed in seeds:
        one = {name: {seed: by_seed.get(seed)} for name, by_seed in base.items()}
        try:
            if not measure(one, one):
                dropped[seed] = f"the run of {reference} did not complete"
        except DataError as exc:  # a figure of the reference that no change can be measured against
            zero = [f"{name} is {values[seed]!r}" for name, values in one.items()
                    if not (isinstance(values[seed], (int, float)) and 0 < values[seed] < math.inf)]
            dropped[seed] = f"{reference}'s {', '.join(zero)}: not a value > 0 to measure against" if zero else str(exc)
    kept = {name: {s: v for s, v in by_seed.items() if s not in dropped} for name, by_seed in base.items()}
    out, problems = {}, {}
    for label, values in rows.items():
        try:
            out[label] = measure({name: {s: v for s, v in by_seed.items() if s not in dropped}
                                  for name, by_seed in values.items()}, kept)
        except DataError as exc:  # not expected once the reference's seeds are checked; said, not raised
            out[label], problems[label] = {}, str(exc)
        if not out[label] and label not in problems:
            problems[label] = (f"no seed of the reference row {reference} to measure against"
                               if len(dropped) == len(seeds) else f"no seed shared with the reference row {reference}")
    return out, dropped, problems


def dropped_fact(reference: str, dropped: Mapping) -> str | None:
    """The note that says which seeds Δm leaves out and why (None where it leaves out none)."""
    if not dropped:
        return None
    return (f"Δm vs {reference} leaves out " + "; ".join(f"seed {seed} ({why})" for seed, why in dropped.items())
            + ": every row's Δm is paired with the reference's run of the same seed.")


def reference_sentence(reference: str, given: bool, ranked: bool, no_joint: bool, adam: bool | None = None) -> str:
    """The one sentence the verdict opens with: what Δm is measured against, and why. ``given``: the reference
    was named by --reference; ``ranked``: the rows are ranked by it; ``no_joint``: because the workload has no
    joint score; ``adam``: the reference trains Adam on the weighted sum (None: it is named DEFAULT_REFERENCE)."""
    if given:
        how = "named by --reference"
    elif adam if adam is not None else reference == DEFAULT_REFERENCE:
        how = "Adam on the weighted sum, the baseline multi-task methods are held against"
    else:
        how = f"the first compared row, no row of {DEFAULT_REFERENCE} on the weighted sum being compared"
    head = f"Ranked by Δm vs {reference}" if ranked else f"Δm vs {reference}"
    why = ("the workload has no joint score (a primary metric is lower-is-better) and no single-task baselines "
           "were run" if no_joint else "no single-task baselines were run")
    return f"{head}: {why}, so each row's Δm is measured against the run of {reference} ({how}) with the same seed."


def baselines_sentence(baselines: Sequence[str]) -> str:
    """The sentence the verdict opens with where a workload without a joint score is ranked by Δm against the
    single-task baselines."""
    return (f"Ranked by Δm against the single-task baselines ({', '.join(baselines)}): the workload has no joint "
            f"score (a primary metric is lower-is-better).")
