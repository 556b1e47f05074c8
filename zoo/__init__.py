"""zoo: VGG, ResNet and GoogLeNet (with the paper's ablations) and a pretrained-weight hub.

    >>> import zoo
    >>> zoo.list_models("googlenet*")
    >>> model = zoo.create_model("googlenet_res5x5.cifar10_paper", pretrained=True)

``import zoo`` is light: the public API below loads on first use (PEP 562), with every architecture
registered, so ``zoo --help`` and ``zoo --version`` start without torch. timm sees zoo's models the
moment timm is imported (zoo.bridge).
"""
from __future__ import annotations

import importlib
from typing import Any

from zoo import bridge
from zoo.core.errors import (
    CheckpointError,
    DataError,
    ExportError,
    HubError,
    TrainingError,
    UnknownModelError,
    ZooError,
    ZooInputError,
)
from zoo.core.version import __version__

_API = {
    "create_model": "zoo.hub.factory",
    "get_pretrained_tag": "zoo.models.registry",
    "list_models": "zoo.models.registry",
    "load_model": "zoo.hub.pretrained",
    "load_weights": "zoo.hub.pretrained",
    "model_info": "zoo.models.registry",
    "predict": "zoo.inference.runtime",
    "push_to_hub": "zoo.hub.pretrained",
    "register_model": "zoo.models.registry",
    "save_pretrained": "zoo.hub.pretrained",
}
"""The public functions, by the module that owns each: loaded, with the models registered, on first use."""

__all__ = [
    "CheckpointError",
    "DataError",
    "ExportError",
    "HubError",
    "TrainingError",
    "UnknownModelError",
    "ZooError",
    "ZooInputError",
    "__version__",
    *_API,
]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'zoo' has no attribute {name!r}")
    importlib.import_module("zoo.models")  # registers every architecture before any lookup
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


bridge.install()
