"""The training loop's parts, one concern each; ``mtbench.train`` puts them together.

- batches.py     the per-task data streams (order from the seed, augmentation seeded per sample)
- evaluate.py    metrics on a split (the test split, and the holdout where there is one)
- gradients.py   the one seam where runs differ: how the gradient the optimizer steps on is made
- checkpoint.py  the training state a resume needs, saved and checked against the run's settings
- runlog.py      what a run tells: step records, epoch rows, the summary, the console lines
"""
