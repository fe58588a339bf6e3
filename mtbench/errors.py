"""Errors that reach the user as one line, without a traceback."""


class MTBenchError(Exception):
    """A problem with the user's input or environment; the CLI prints ``error: <message>``."""


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
