"""`mtbench tune`: every optimizer gets the same tuning budget, on Optuna, resumable, spread over processes
and machines.

One Optuna study per optimizer (each has its own search space, which the qmc and grid samplers need
fixed), named ``<study>.<optimizer>`` in one storage. Each study runs one trial at the guide's preset
(user attribute role=preset) and N search trials (role=search), all planned up front as WAITING
trials so that any number of workers finish exactly that budget (NOTE [exact budget] in study.py).
Trials are ordinary run directories scored on the holdout split only; the test split is read by
the final runs alone (``--final-seeds``), through `mtbench compare`.

Modules: space (search spaces, planned points), storage (storages, safe for workers starting at
once), study (slots, taking and recovering trials), worker (running trials), plan (a tune's settings,
directory and studies), results (the tune report).
"""

from .plan import TunePlan, open_directory, open_studies, plan_tune
from .worker import Tuner, score

__all__ = ["TunePlan", "Tuner", "open_directory", "open_studies", "plan_tune", "score"]
