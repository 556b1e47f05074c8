"""torch.hub entry points: every zoo registry name, and nothing else.

    torch.hub.load("<owner>/<repo>", "googlenet_res5x5", num_classes=10)
    torch.hub.load("<owner>/<repo>", "resnet18", pretrained=True, tag="cifar10_paper")
"""
dependencies = ["torch", "torchvision", "timm", "safetensors", "huggingface_hub"]

import zoo as _zoo
from zoo.registry import factory as _factory


def _hub_entry(name):
    def entry(pretrained=False, tag="", **kwargs):
        return _zoo.create_model(f"{name}.{tag}" if tag else name, pretrained=pretrained, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = _factory(name).__doc__ or f"zoo's {name}; see zoo.create_model."
    return entry


for _name in _zoo.list_models():
    globals()[_name] = _hub_entry(_name)
