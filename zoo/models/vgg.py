"""VGG (Simonyan & Zisserman 2014) with torchvision's module names, and a CIFAR head."""
from typing import Final

import torch
from torch import Tensor, nn

from zoo.core.errors import ArgumentError
from zoo.models.layers import (
    GLOBAL_POOLS,
    GlobalPool,
    Variant,
    ZooModel,
    classifier,
    classifier_drop_rate,
    feature_info,
)
from zoo.models.registry import register_model

# Numbers are conv widths, "M" a 2x2 max pool: configurations A, B, D, E of the VGG paper.
CFGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def _linear(in_features: int, out_features: int) -> nn.Linear:
    """A Linear left uninitialised: the model's init below overwrites every value, and the default
    kaiming init of the 102M-weight first FC layer alone took 0.45 s per model on 2 cores."""
    return torch.nn.utils.skip_init(nn.Linear, in_features, out_features, device=torch.get_default_device())


def make_features(cfg: list[int | str], batch_norm: bool, in_chans: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = in_chans
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(channels, int(v), kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(int(v)))
        layers.append(nn.ReLU(inplace=True))
        channels = int(v)
    return nn.Sequential(*layers)


class VGG(ZooModel):
    """VGG with a choice of head.

    ``head="imagenet"`` is torchvision's (7x7 adaptive pool, 4096-4096 FC,
    dropout): VGG19 has the paper's 144M parameters with it. ``head="cifar"``
    is a global average pool and one linear layer, 512 -> classes.

    ``dropout`` (torchvision's name) or ``drop_rate`` (timm's) sets the dropout of the head: after
    each 4096-wide layer (default 0.5, torchvision's), or before the cifar head's linear layer
    (default none). ``global_pool`` (timm's choices, :data:`zoo.models.layers.GlobalPool`) is the
    cifar head's pool; the imagenet head reads torchvision's 7x7 average pool ("avg" only). VGG has
    no residual branches: ``drop_path_rate`` (stochastic depth) is 0 only.
    """

    family = "vgg"
    variant_arg = "head"
    arch_args = ("cfg", "batch_norm")
    first_conv = "features.0"
    quick_kwargs = {"head": "cifar"}  # the ImageNet head's 120M FC parameters make a 1.1 GB resume state
    mlp_head: Final[bool]  # TorchScript compiles only the branch of forward_head this model has

    def __init__(
        self,
        cfg: list[int | str],
        batch_norm: bool = False,
        num_classes: int = 1000,
        in_chans: int = 3,
        head: Variant = "imagenet",
        dropout: float | None = None,
        drop_rate: float | None = None,
        drop_path_rate: float = 0.0,
        global_pool: GlobalPool = "avg",
    ) -> None:
        super().__init__()
        self.check_variant(head)
        if drop_path_rate:
            raise ArgumentError(
                f"VGG has no residual branches to drop: drop_path_rate must be 0, got {drop_path_rate!r} "
                "(the ResNets and the residual GoogLeNets take it)"
            )
        rate = classifier_drop_rate("VGG", dropout, drop_rate, 0.5 if head == "imagenet" else 0.0)
        self.num_classes, self.in_chans, self.head, self.mlp_head = num_classes, in_chans, head, head == "imagenet"
        self.default_input_size = (in_chans, 224, 224) if head == "imagenet" else (in_chans, 32, 32)
        self.min_input_size = 32  # five 2x2 max pools must leave one pixel
        self.features = make_features(cfg, batch_norm, in_chans)
        pools = [i for i, m in enumerate(self.features) if isinstance(m, nn.MaxPool2d)]
        self.stage_ends = pools  # the features after each 2x2 max pool: /2 .. /32
        self.feature_info = feature_info([64, 128, 256, 512, 512], [2, 4, 8, 16, 32], [f"features.{i}" for i in pools])
        self.set_global_pool(global_pool, num_classes)  # avgpool, num_features, head_hidden_size
        if head == "imagenet":
            self.classifier: nn.Module = nn.Sequential(
                _linear(512 * 7 * 7, 4096),
                nn.ReLU(True),
                nn.Dropout(p=rate),
                _linear(4096, 4096),
                nn.ReLU(True),
                nn.Dropout(p=rate),
                classifier(4096, num_classes),
            )
            self.classifier_names = "classifier.6"
        else:
            self.dropout = nn.Dropout(p=rate)
            self.classifier = classifier(self.head_hidden_size, num_classes)
            self.classifier_names = "classifier"

        for m in self.modules_to_init():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def stages(self) -> list[list[nn.Module]]:
        # N x 64 x H/2, 128 x H/4, 256 x H/8, 512 x H/16, 512 x H/32: the convolutions up to each max pool
        starts = [0] + [end + 1 for end in self.stage_ends[:-1]]
        return [list(self.features[a : b + 1]) for a, b in zip(starts, self.stage_ends)]

    def set_global_pool(self, global_pool: str, num_classes: int) -> None:
        """The cifar head's pool (see :meth:`ZooModel.set_global_pool`). The imagenet head's is torchvision's 7x7 average
        pool, which its 4096-wide MLP reads (``head_hidden_size``, timm's); or none, without a classifier: the model
        then returns the last feature maps, as every zoo and timm model does with ``global_pool=""``."""
        if self.head == "imagenet" and global_pool not in ("avg", ""):
            raise ArgumentError(
                f"VGG with head='imagenet' supports global_pool='avg' (or '', with num_classes=0) only, got "
                f"{global_pool!r}: its classifier reads torchvision's 7x7 average pool (head='cifar' takes "
                f"{', '.join(map(repr, GLOBAL_POOLS))})"
            )
        super().set_global_pool(global_pool, num_classes)
        if self.head == "imagenet" and global_pool:
            self.avgpool, self.head_hidden_size = nn.AdaptiveAvgPool2d((7, 7)), 4096

    def forward_layers(self, x: Tensor) -> Tensor:
        return self.features(x)  # N x 512 x H/32 x W/32

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        if self.mlp_head:
            if self.global_pool == "":  # no pool, no classifier: the last feature maps, N x 512 x h x w
                return x
            # N x 512 x h x w -> N x 512*7*7 through the 4096-4096 MLP (classifier.0-5, its pre-logits) to classifier.6
            x = torch.flatten(self.avgpool(x), 1)
            for i, layer in enumerate(self.classifier.children()):  # the MLP's layers, in order
                if i < 6 or not pre_logits:
                    x = layer(x)
            return x
        # N x 512 x h x w -> N x head_hidden_size (512, twice that for catavgmax)
        x = self.dropout(self.pool_features(x))
        return x if pre_logits else self.classifier(x)


def _vgg(cfg: str, batch_norm: bool, **kwargs) -> VGG:
    return VGG(CFGS[cfg], batch_norm=batch_norm, **kwargs)


@register_model
def vgg11(**kwargs) -> VGG:
    return _vgg("vgg11", False, **kwargs)


@register_model
def vgg11_bn(**kwargs) -> VGG:
    return _vgg("vgg11", True, **kwargs)


@register_model
def vgg13(**kwargs) -> VGG:
    return _vgg("vgg13", False, **kwargs)


@register_model
def vgg13_bn(**kwargs) -> VGG:
    return _vgg("vgg13", True, **kwargs)


@register_model
def vgg16(**kwargs) -> VGG:
    return _vgg("vgg16", False, **kwargs)


@register_model
def vgg16_bn(**kwargs) -> VGG:
    return _vgg("vgg16", True, **kwargs)


@register_model
def vgg19(**kwargs) -> VGG:
    """VGG-19 (configuration E), the paper's VGG: 143,667,240 parameters with the imagenet head."""
    return _vgg("vgg19", False, **kwargs)


@register_model
def vgg19_bn(**kwargs) -> VGG:
    return _vgg("vgg19", True, **kwargs)
