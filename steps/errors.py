"""Exceptions that end a step with one clear line instead of a traceback."""


class StepError(Exception):
    """An expected reason for a step to stop; its message is shown to the user as it is."""


class UserInputError(StepError):
    """Bad input from the user (file, column or parameter); the message names what is wrong."""


class CheckFailedError(StepError):
    """A quality check of the step did not pass (for example ONNX parity); nothing downstream may use its output."""
