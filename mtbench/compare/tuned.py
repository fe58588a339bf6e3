"""The tuned weighted sum as a row of a comparison: ``--tuned-scalarization TUNE_DIR``.

A tune run with ``--search-task-weights`` searched the weighted sum's task weights (mtbench.tuning.simplex)
with the same budget as any optimizer's settings; its best trial's weights, read from that trial's own
config.json (the run the study scored), make the row ``<optimizer>@tuned``: the method sum at those
weights, with the comparison's optimizer settings (the tune ran with its preset's and --set's, so the
two should agree). The report holds every other row against it (mtbench.report.baseline).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..config import SUM_METHOD
from ..errors import ConfigError
from ..report.baseline import TUNED_SUFFIX
from ..report.rows import RowSpec
from ..rundir import CONFIG_FILE, RunFileError, read_json
from ..tuning.simplex import is_simplex_key, weights_text

__all__ = ["TUNE_REPORT", "tuned_row"]

TUNE_REPORT = "tune.json"
_TRIALS = "trials"  # tuning.worker.TRIALS_DIR, not imported: that module loads the trainer's config and Optuna's glue


def tuned_row(tune_dir: Path, tasks: Sequence[str], optimizers: Sequence[str] = ()) -> tuple[RowSpec, str]:
    """The row of the tuned weighted sum in ``tune_dir`` and a note saying where its weights come from.

    The tune's first optimizer among ``optimizers`` (the comparison's), else its first. ConfigError when
    the directory holds no finished tune, a tune of other settings than task weights, no completed
    trial, or weights for another number of tasks than ``tasks``.
    """
    shown = str(tune_dir)  # the command line names the option
    try:
        record = read_json(Path(tune_dir) / TUNE_REPORT)
    except RunFileError:
        raise ConfigError(f"{shown}: no finished tune there (no {TUNE_REPORT}; run mtbench tune "
                          "--search-task-weights --out DIR to the end first)") from None
    tuned = [r for r in record.get("optimizers") or [] if isinstance(r, dict) and r.get("optimizer")]
    if not tuned:
        raise ConfigError(f"{shown}: {TUNE_REPORT} lists no tuned optimizer")
    r = next((r for r in tuned if r["optimizer"] in optimizers), tuned[0])
    name = r["optimizer"]
    keys = list(r.get("space") or {})
    if not keys or not all(is_simplex_key(k) for k in keys):
        raise ConfigError(f"{shown}: that tune searched {name}'s {', '.join(keys) or 'nothing'}, not the task "
                          "weights; tune them with mtbench tune --search-task-weights")
    best = r.get("best")
    if not best or not best.get("name"):
        raise ConfigError(f"{shown}: no trial of {name} completed, so there is no tuned weighting")
    trial = Path(tune_dir) / _TRIALS / str(best["name"])
    try:
        weights = read_json(trial / CONFIG_FILE)["task_weights"]
    except (RunFileError, KeyError, TypeError):
        raise ConfigError(f"{shown}: the best trial's run {trial} has no {CONFIG_FILE} with task_weights") from None
    if len(weights) != len(tasks):
        raise ConfigError(f"{shown}: the tune weighed {len(weights)} tasks, this comparison's workload has "
                          f"{len(tasks)} ({', '.join(tasks)})")
    weights = tuple(float(w) for w in weights)
    row = RowSpec(f"{name}{TUNED_SUFFIX}", name, SUM_METHOD, weights, tuple(tasks), "row")
    value = best.get("value")
    note = (f"{row.name}: the weighted sum at task weights {weights_text(weights)}, the best of "
            f"{r.get('trials_done', '?')} trials of {tune_dir}"
            + (f" (holdout {record.get('objective', 'score')} {value:.4f})" if isinstance(value, float) else ""))
    return row, note
