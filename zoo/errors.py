"""Errors zoo raises on purpose. Each message says what to do instead."""
from __future__ import annotations


class ZooError(Exception):
    """Base class of every error zoo raises on purpose."""


class UnknownModelError(ZooError, ValueError):
    """A model name, pretrained tag or weights source that zoo does not know."""


class ZooInputError(ZooError, ValueError):
    """A tensor a model cannot take: wrong rank, dtype, channel count or size."""


class CheckpointError(ZooError, ValueError):
    """A file on disk that is not a valid zoo checkpoint for the model asked for."""
