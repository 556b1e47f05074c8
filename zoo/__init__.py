"""zoo: VGG, ResNet and GoogLeNet (with the paper's ablations) and a pretrained-weight hub.

    >>> import zoo
    >>> zoo.list_models("googlenet*")
    >>> model = zoo.create_model("googlenet_res5x5", num_classes=10)
"""
from zoo import models  # noqa: F401  (registers every architecture)
from zoo.errors import CheckpointError, UnknownModelError, ZooError, ZooInputError
from zoo.registry import create_model, get_pretrained_tag, list_models, model_info, register_model

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "UnknownModelError",
    "ZooError",
    "ZooInputError",
    "create_model",
    "get_pretrained_tag",
    "list_models",
    "model_info",
    "register_model",
]
