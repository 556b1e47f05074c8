"""zoo: VGG, ResNet and GoogLeNet (with the paper's ablations) and a pretrained-weight hub.

    >>> import zoo
    >>> zoo.list_models("googlenet*")
    >>> model = zoo.create_model("googlenet_res5x5.cifar10_paper", pretrained=True)
"""
from zoo import models  # noqa: F401  (registers every architecture)
from zoo.errors import (
    CheckpointError,
    DataError,
    ExportError,
    HubError,
    TrainingError,
    UnknownModelError,
    ZooError,
    ZooInputError,
)
from zoo.factory import create_model
from zoo.hub import load_model, load_weights, push_to_hub, save_pretrained
from zoo.registry import get_pretrained_tag, list_models, model_info, register_model
from zoo.version import __version__

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
    "create_model",
    "get_pretrained_tag",
    "list_models",
    "load_model",
    "load_weights",
    "model_info",
    "push_to_hub",
    "register_model",
    "save_pretrained",
]
