"""Errors zoo raises on purpose. Each message says what to do instead."""
from __future__ import annotations


class ZooError(Exception):
    """Base class of every error zoo raises on purpose."""


class UnknownModelError(ZooError, ValueError):
    """A model name, pretrained tag or weights source that zoo does not know."""


class ArgumentError(ZooError, ValueError):
    """A keyword argument (a model's, a recipe's, a command line's) that is unknown, of the wrong type or out of range."""


class ZooInputError(ZooError, ValueError):
    """A tensor a model cannot take: wrong rank, dtype, channel count or size."""


class CheckpointError(ZooError, ValueError):
    """A file on disk that is not a valid zoo checkpoint for the model asked for."""


class ExportError(ZooError, RuntimeError):
    """An ONNX export that failed, or whose outputs differ from torch beyond tolerance."""


class HubError(ZooError, RuntimeError):
    """A weights source that cannot be reached, resolved or trusted."""


class TrainingError(ZooError, RuntimeError):
    """A training run that cannot continue (non-finite loss, incompatible resume state)."""


class RunStopped(ZooError):
    """A run stopped on request (SIGINT / SIGTERM) with its state saved; running the command again goes on."""


class DataError(ZooError, ValueError):
    """A dataset that cannot be found or does not have the expected layout."""
