"""ResNet (He et al. 2016) with torchvision's module names, and a CIFAR stem."""
from torch import Tensor, nn

from zoo.models.layers import (
    DropPath,
    GlobalPool,
    Variant,
    ZooModel,
    check_rate,
    classifier,
    drop_path_rates,
    feature_info,
)
from zoo.models.registry import register_model


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs and a shortcut; ``drop_path``: the stochastic depth of the residual branch."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(self.drop_path(out) + identity)


class Bottleneck(nn.Module):
    """torchvision's ResNet V1.5: the stride sits on the 3x3 conv. ``drop_path``: as in :class:`BasicBlock`."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        width = planes
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(self.drop_path(out) + identity)


class ResNet(ZooModel):
    """ResNet with a choice of stem.

    ``stem="imagenet"`` is torchvision's (7x7/2 conv + 3x3/2 max pool), what the
    paper trained on 32x32 images; ``stem="cifar"`` is a 3x3/1 conv and no pool,
    which keeps the 32x32 resolution for the first stage.

    timm's options: ``drop_rate``, dropout before ``fc`` (none by default, as torchvision's);
    ``drop_path_rate``, stochastic depth rising block by block to this rate at the last block;
    ``global_pool``, the pool ``fc`` reads (:data:`zoo.models.layers.GlobalPool`).
    """

    family = "resnet"
    variant_arg = "stem"
    arch_args = ("block", "layers")
    first_conv = "conv1"
    classifier_names = "fc"

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: list[int],
        num_classes: int = 1000,
        in_chans: int = 3,
        stem: Variant = "imagenet",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        global_pool: GlobalPool = "avg",
    ) -> None:
        super().__init__()
        self.check_variant(stem)
        check_rate("ResNet", "drop_rate", drop_rate)
        self.num_classes, self.in_chans, self.stem = num_classes, in_chans, stem
        self.default_input_size = (in_chans, 224, 224) if stem == "imagenet" else (in_chans, 32, 32)
        self.min_input_size = 1  # every stage pads, so any image keeps at least one pixel
        self.inplanes = 64
        imagenet = stem == "imagenet"
        self.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7 if imagenet else 3, stride=2 if imagenet else 1,
                               padding=3 if imagenet else 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)  # registered right after its conv: export folds it into the conv
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if imagenet else nn.Identity()
        rates = iter(drop_path_rates("ResNet", drop_path_rate, sum(layers)))
        drop_paths = [[next(rates) for _ in range(blocks)] for blocks in layers]
        self.layer1 = self._make_layer(block, 64, drop_paths[0])
        self.layer2 = self._make_layer(block, 128, drop_paths[1], stride=2)
        self.layer3 = self._make_layer(block, 256, drop_paths[2], stride=2)
        self.layer4 = self._make_layer(block, 512, drop_paths[3], stride=2)
        first = 2 if stem == "imagenet" else 1
        self.feature_info = feature_info(
            [64 * (block.expansion if i else 1) * 2 ** max(i - 1, 0) for i in range(5)],
            [first * (2 if stem == "imagenet" and i else 1) * 2 ** max(i - 1, 0) for i in range(5)],
            ["relu", "layer1", "layer2", "layer3", "layer4"],
        )
        self.set_global_pool(global_pool, num_classes)  # avgpool, num_features, head_hidden_size
        self.dropout = nn.Dropout(p=drop_rate)
        self.fc = classifier(self.head_hidden_size, num_classes)

        for m in self.modules_to_init():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(
        self, block: type[BasicBlock | Bottleneck], planes: int, drop_paths: list[float], stride: int = 1
    ) -> nn.Sequential:
        """One block per entry of ``drop_paths``, its stochastic depth."""
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride), nn.BatchNorm2d(planes * block.expansion)
            )
        layers = [block(self.inplanes, planes, stride, downsample, drop_paths[0])]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, drop_path=p) for p in drop_paths[1:]]
        return nn.Sequential(*layers)

    def stages(self) -> list[list[nn.Module]]:
        # imagenet stem: N x 64 x H/2, then /4 after the max pool, /8, /16, /32 with 64..512 x expansion channels;
        # cifar stem: the same channels at H, H, H/2, H/4, H/8
        return [[self.conv1, self.bn1, self.relu], [self.maxpool, self.layer1], [self.layer2], [self.layer3], [self.layer4]]

    def forward_layers(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        # the stages' shapes: see stages()
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        # N x 512*expansion x h x w -> N x head_hidden_size (512*expansion, twice that for catavgmax)
        x = self.dropout(self.pool_features(x))
        return x if pre_logits else self.fc(x)


@register_model
def resnet18(**kwargs) -> ResNet:
    """ResNet-18, the paper's ResNet."""
    return ResNet(BasicBlock, [2, 2, 2, 2], **kwargs)


@register_model
def resnet34(**kwargs) -> ResNet:
    return ResNet(BasicBlock, [3, 4, 6, 3], **kwargs)


@register_model
def resnet50(**kwargs) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], **kwargs)


@register_model
def resnet101(**kwargs) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 23, 3], **kwargs)


@register_model
def resnet152(**kwargs) -> ResNet:
    return ResNet(Bottleneck, [3, 8, 36, 3], **kwargs)
