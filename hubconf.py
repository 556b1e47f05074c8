"""torch.hub entry points: every zoo registry name, and nothing else.

    torch.hub.load("<owner>/<repo>", "googlenet_res5x5", pretrained=True)                # its first tag
    torch.hub.load("<owner>/<repo>", "googlenet_res5x5", pretrained=True, tag="mnist_paper")
    torch.hub.load("<owner>/<repo>", "resnet18", num_classes=10, stem="cifar")         # untrained
"""
dependencies = ["torch", "torchvision", "timm", "safetensors", "huggingface_hub"]

import zoo as _zoo
from zoo.models.registry import factory as _factory
from zoo.models.registry import model_class as _model_class

_DOC = """{summary}

Args:
    pretrained: load trained weights (checked against their pinned sha256): the tag named by ``tag``, or {default}.
    tag: which weights; {tags}.
    num_classes: classifier outputs (0: none, the model returns pooled features).
    in_chans: input channels (1 for MNIST, which enters as 1x32x32).
    {variant}: "imagenet" (torchvision's layers, what the paper ran at 32x32) or "cifar" (for 32x32 inputs).{extra}
    **kwargs: any other zoo.create_model argument.
"""


def _doc(name):
    tags = [t.split(".", 1)[1] for t in _zoo.list_models(f"{name}.*", pretrained=True)]
    cls = _model_class(name)
    extra = ("\n    aux_logits: the two auxiliary classifiers (training only; the paper's aux ablation)."
             "\n    transform_input: torchvision's input re-normalisation, for its pretrained weights.") if cls.takes_aux() else ""
    return _DOC.format(
        summary=(_factory(name).__doc__ or f"zoo's {name}.").strip(),
        default=f"{name}.{tags[0]}" if tags else "none: no weights are published for it yet",
        tags=", ".join(tags) if tags else "none published yet",
        variant=cls.variant_arg,
        extra=extra,
    )


def _hub_entry(name):
    def entry(pretrained=False, tag="", **kwargs):
        return _zoo.create_model(f"{name}.{tag}" if tag else name, pretrained=pretrained, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = _doc(name)
    return entry


for _name in _zoo.list_models():
    globals()[_name] = _hub_entry(_name)
