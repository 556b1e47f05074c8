"""zoo: VGG, ResNet and GoogLeNet (with the paper's ablations) and a pretrained-weight hub.

    >>> import zoo
    >>> zoo.list_models("googlenet*")
    >>> model = zoo.create_model("googlenet_res5x5", num_classes=10)
"""
__version__ = "0.1.0"

from zoo import models  # noqa: F401,E402  (registers every architecture)
from zoo.errors import (  # noqa: E402
    CheckpointError,
    DataError,
    ExportError,
    HubError,
    TrainingError,
    UnknownModelError,
    ZooError,
    ZooInputError,
)
from zoo.hub import load_model, load_weights, push_to_hub, save_pretrained  # noqa: E402
from zoo.registry import create_model, get_pretrained_tag, list_models, model_info, register_model  # noqa: E402

__all__ = [
    "CheckpointError",
    "DataError",
    "ExportError",
    "HubError",
    "TrainingError",
    "UnknownModelError",
    "ZooError",
    "ZooInputError",
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
