"""Errors that reach the user as one line, without a traceback."""

import re

# NOTE [errors from data-loading workers]: torch's DataLoader re-raises an exception from a worker process
# as the same type built from a new message, "Caught DataError in DataLoader worker process 0.", the
# worker's whole traceback, then the original "mtbench.errors.DataError: <message>". The error stays one
# line wherever it is shown (the CLI, summary.json, a comparison's failures, a tune's trial) because every
# MTBenchError reads back its original message: the same words with --workers 2 as with --workers 0.
_FROM_WORKER = re.compile(r"Caught (\w+) in DataLoader worker process \d+\.\nOriginal Traceback \(most recent "
                          r"call last\):\n.*^(?:[\w.]+\.)?\1: (.*?)\n?\Z", re.S | re.M)


class MTBenchError(Exception):
    """A problem with the user's input or environment; the CLI prints ``error: <message>``."""

    def __str__(self) -> str:
        text = super().__str__()
        original = _FROM_WORKER.fullmatch(text)
        return original[2] if original else text


class ConfigError(MTBenchError):
    """An invalid option, override or preset value."""


class DataError(MTBenchError):
    """A missing, empty or malformed data set."""


class NonFiniteLossError(MTBenchError):
    """Training produced a NaN or infinite loss and the policy says stop."""


class MethodError(MTBenchError):
    """A multi-task method's plugin code broke its contract during a run; the message names the method and plugin."""


class RunStopped(MTBenchError):
    """A caller ended a run early on purpose (e.g. a tuner pruning a trial); ``status`` goes to summary.json."""

    def __init__(self, message: str, status: str = "pruned"):
        super().__init__(message)
        self.status = status
