"""Errors the generation layer raises; each carries a message fit to show a user."""


class GenerationError(Exception):
    """A request could not be generated; other requests are unaffected."""


class InputError(ValueError):
    """A member's input does not fit the task (unknown task or field, empty, too long)."""


class ModelNotFound(GenerationError):
    """The configured model (or the embedded default) cannot be found locally."""


class QuantizationUnavailable(GenerationError):
    """The configured quantization does not run on the configured device (int4 off the CPU)."""


class GenerationCancelled(GenerationError):
    """The request was cancelled before it finished."""
