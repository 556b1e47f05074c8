"""GoogLeNet (Szegedy et al. 2015) and the paper's Inception ablations.

``googlenet`` is torchvision's network, including its known bug: the "5x5"
branch of every Inception module is a 3x3 conv (pytorch/vision#906). It is
kept so torchvision checkpoints load. The paper's variants:

- ``_5x5``: the branch is a true 5x5 conv (padding 2);
- ``res``: an identity shortcut ``y = F(x) + x`` on the modules whose output
  shape equals their input shape (4b, 4c, 5a), the paper's implementation;
- ``resall``: every module residual, with a 1x1 conv + BN projection where the
  channel count changes, the paper's "further work".

``res`` adds no parameter to its plain twin; ``resall`` adds its projections
(with aux heads and 10 classes: googlenet_resall3x3 11.95M, googlenet 9.96M).
"""
from typing import TYPE_CHECKING, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.core.errors import ArgumentError
from zoo.models.layers import (
    DropPath,
    GlobalPool,
    Variant,
    ZooModel,
    classifier,
    classifier_drop_rate,
    drop_path_rates,
    feature_info,
)
from zoo.models.registry import IMAGENET_MEAN_STD, register_model

Residual = Literal["none", "same", "all"]

# torchvision's widths: in, 1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5", pool proj
INCEPTION_CFGS: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32),
    "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 208, 16, 48, 64),
    "inception4b": (512, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64),
    "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128),
    "inception5a": (832, 256, 160, 320, 32, 128, 128),
    "inception5b": (832, 384, 192, 384, 48, 128, 128),
}


class GoogLeNetOutputs(NamedTuple):
    """What a GoogLeNet with aux heads returns in train mode."""

    logits: Tensor
    aux_logits2: Tensor
    aux_logits1: Tensor


class BasicConv2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, **kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    """Four branches concatenated; optionally ``y = branches(x) + shortcut(x)``, with ``drop_path`` the
    stochastic depth of the branches."""

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        kernel5x5: int = 3,
        residual: bool = False,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, ch3x3red, kernel_size=1),
            BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            BasicConv2d(in_channels, ch5x5red, kernel_size=1),
            BasicConv2d(ch5x5red, ch5x5, kernel_size=kernel5x5, padding=kernel5x5 // 2),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(in_channels, pool_proj, kernel_size=1),
        )
        out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj
        self.residual = residual
        if residual and in_channels != out_channels:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
                nn.BatchNorm2d(out_channels, eps=0.001),
            )
        else:
            self.shortcut = nn.Identity()
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)
        return self.drop_path(out) + self.shortcut(x) if self.residual else out


class InceptionAux(nn.Module):
    head_hidden_size = 1024  # what its classifier, fc2, reads

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7) -> None:
        super().__init__()
        self.conv = BasicConv2d(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(2048, self.head_hidden_size)
        self.fc2 = classifier(self.head_hidden_size, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x: Tensor) -> Tensor:
        # aux1: N x 512 x h x w, aux2: N x 528 x h x w
        x = self.conv(F.adaptive_avg_pool2d(x, (4, 4)))
        # N x 128 x 4 x 4
        x = F.relu(self.fc1(torch.flatten(x, 1)), inplace=True)
        # N x 1024
        return self.fc2(self.dropout(x))


class GoogLeNet(ZooModel):
    """GoogLeNet (Inception v1) with the paper's ablation switches.

    ``kernel5x5``: 3 (torchvision's, #906) or 5. ``residual``: "none", "same"
    (identity shortcut where shapes match: 4b, 4c, 5a) or "all" (projection
    where channels differ). ``aux_logits``: the two auxiliary classifiers; in
    train mode the model then returns ``GoogLeNetOutputs(logits, aux2, aux1)``,
    in eval mode always the logits. ``stem``: "imagenet" (torchvision's, what
    the paper ran on 32x32) or "cifar" (a 3x3 conv to 192 channels, no early
    downsampling). ``transform_input``: torchvision's option, on for its
    pretrained weights.

    timm's options: ``drop_rate``, timm's name for ``dropout`` (torchvision's, 0.2), the dropout
    before ``fc``; ``drop_path_rate``, stochastic depth of the residual modules' branches, rising
    module by module to this rate at 5b (a residual variant only); ``global_pool``, the pool ``fc``
    reads (:data:`zoo.models.layers.GlobalPool`).
    """

    family = "googlenet"
    variant_arg = "stem"
    arch_args = ("kernel5x5", "residual")
    first_conv = "conv1.conv"
    aux_prefixes = ("aux1.", "aux2.")
    if TYPE_CHECKING:  # set by _inceptions, by name; only for the type checker (TorchScript cannot read these)
        inception3a: Inception
        inception3b: Inception
        inception4a: Inception
        inception4b: Inception
        inception4c: Inception
        inception4d: Inception
        inception4e: Inception
        inception5a: Inception
        inception5b: Inception

    def card_notes(self) -> list[str]:
        kernel = f"{self.kernel5x5}x{self.kernel5x5}"
        return [
            "Provenance: zoo's `googlenet` is torchvision's network, whose Inception \"5x5\" branch is a 3x3 "
            "convolution (https://github.com/pytorch/vision/issues/906), kept so torchvision checkpoints load. "
            f"Names containing `5x5` use true 5x5 convolutions; this model has {kernel} convolutions in that branch.",
            *super().card_notes(),
        ]

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        aux_logits: bool = True,
        kernel5x5: int = 3,
        residual: Residual = "none",
        stem: Variant = "imagenet",
        dropout: float | None = None,
        dropout_aux: float = 0.7,
        transform_input: bool = False,
        drop_rate: float | None = None,
        drop_path_rate: float = 0.0,
        global_pool: GlobalPool = "avg",
    ) -> None:
        super().__init__()
        self.check_variant(stem)
        if residual not in ("none", "same", "all"):
            raise ValueError(f"residual must be 'none', 'same' or 'all', got {residual!r}")
        if kernel5x5 not in (3, 5):
            raise ValueError(f"kernel5x5 must be 3 or 5, got {kernel5x5!r}")
        if drop_path_rate and residual == "none":
            raise ArgumentError(
                f"GoogLeNet with residual='none' has no residual branches to drop: drop_path_rate must be 0, got "
                f"{drop_path_rate!r} (the residual variants take it: googlenet_res3x3, googlenet_resall5x5, ...)"
            )
        self.num_classes, self.in_chans, self.stem = num_classes, in_chans, stem
        self.aux_logits, self.kernel5x5 = aux_logits, kernel5x5
        self.default_input_size = (in_chans, 224, 224) if stem == "imagenet" else (in_chans, 32, 32)
        # ceil-mode 3x3/2 pools need 2 pixels: imagenet stem 4 pools after a stride-2 conv, cifar stem 1
        self.min_input_size = 15 if stem == "imagenet" else 2
        self.classifier_names = ("fc", "aux1.fc2", "aux2.fc2") if aux_logits else "fc"

        if transform_input and in_chans != 3:
            raise ValueError(f"transform_input re-normalises RGB input; it needs in_chans=3, got {in_chans}")
        self.transform_input = transform_input
        self.transform: nn.Module | None = TransformInput() if transform_input else None
        self._stem(in_chans, stem)

        self._inceptions(kernel5x5, residual, drop_path_rate)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)

        self.aux1: InceptionAux | None = InceptionAux(512, num_classes, dropout_aux) if aux_logits else None
        self.aux2: InceptionAux | None = InceptionAux(528, num_classes, dropout_aux) if aux_logits else None
        self.feature_info = feature_info(
            [64 if stem == "imagenet" else 192, 192, 480, 832, 1024],
            [2, 4, 8, 16, 32] if stem == "imagenet" else [1, 1, 1, 2, 4],
            ["conv1", "conv3", "inception3b", "inception4e", "inception5b"],
        )
        self.set_global_pool(global_pool, num_classes)  # avgpool, num_features, head_hidden_size
        self.dropout = nn.Dropout(p=classifier_drop_rate("GoogLeNet", dropout, drop_rate, 0.2))
        self.fc = classifier(self.head_hidden_size, num_classes)

        for m in self.modules_to_init():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _inceptions(self, kernel5x5: int, residual: str, drop_path_rate: float) -> None:
        """The nine Inception modules at torchvision's widths; residual where ``residual`` says (see the class)."""
        rates = drop_path_rates("GoogLeNet", drop_path_rate, len(INCEPTION_CFGS))
        for (name, cfg), rate in zip(INCEPTION_CFGS.items(), rates):
            same_shape = cfg[0] == cfg[1] + cfg[3] + cfg[5] + cfg[6]
            is_residual = residual == "all" or (residual == "same" and same_shape)
            drop_path = rate if is_residual else 0.0
            setattr(self, name, Inception(*cfg, kernel5x5=kernel5x5, residual=is_residual, drop_path=drop_path))

    def _stem(self, in_chans: int, stem: str) -> None:
        if stem == "imagenet":
            self.conv1 = BasicConv2d(in_chans, 64, kernel_size=7, stride=2, padding=3)
            self.maxpool1: nn.Module = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            self.conv2: nn.Module = BasicConv2d(64, 64, kernel_size=1)
            self.conv3: nn.Module = BasicConv2d(64, 192, kernel_size=3, padding=1)
            self.maxpool2: nn.Module = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        else:
            self.conv1 = BasicConv2d(in_chans, 192, kernel_size=3, padding=1)
            self.maxpool1 = self.conv2 = self.conv3 = self.maxpool2 = nn.Identity()

    def stages(self) -> list[list[nn.Module]]:
        # imagenet stem at 224: N x 64 x 112, 192 x 56 -> 28, 480 x 28, 832 x 14, 1024 x 7 (after each stage);
        # the cifar stem keeps 32 x 32 until the 4x modules (192, 192, 480 x 32, 832 x 16, 1024 x 8)
        first: list[nn.Module] = [self.transform, self.conv1] if self.transform is not None else [self.conv1]
        return [
            first,
            [self.maxpool1, self.conv2, self.conv3],
            [self.maxpool2, self.inception3a, self.inception3b],
            [self.maxpool3, self.inception4a, self.inception4b, self.inception4c, self.inception4d, self.inception4e],
            [self.maxpool4, self.inception5a, self.inception5b],
        ]

    def forward_layers(self, x: Tensor) -> Tensor:
        return self._from_4e(self._to_4d(self._to_4a(x)))

    def _to_4a(self, x: Tensor) -> Tensor:
        # the stages' shapes: see stages(); this ends with N x 512 x H/16 (imagenet stem) or H/2 (cifar stem)
        if self.transform is not None:
            x = self.transform(x)
        x = self.maxpool2(self.conv3(self.conv2(self.maxpool1(self.conv1(x)))))
        return self.inception4a(self.maxpool3(self.inception3b(self.inception3a(x))))

    def _to_4d(self, x: Tensor) -> Tensor:
        return self.inception4d(self.inception4c(self.inception4b(x)))  # N x 528 x H/16 (H/2)

    def _from_4e(self, x: Tensor) -> Tensor:
        return self.inception5b(self.inception5a(self.maxpool4(self.inception4e(x))))  # N x 1024 x H/32 (H/4)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        # N x 1024 x h x w -> N x head_hidden_size (1024, twice that for catavgmax)
        x = self.dropout(self.pool_features(x))
        return x if pre_logits else self.fc(x)

    # an override ZooModel's forward (logits) does not allow: torchvision's GoogLeNet, whose API this keeps, returns
    # GoogLeNetOutputs in training with aux heads
    def forward(self, x: Tensor) -> Tensor | GoogLeNetOutputs:  # type: ignore[override]
        if self.aux1 is None or self.aux2 is None or not self.training:
            return self.forward_head(self.forward_features(x))
        # in training, the aux heads read the outputs of 4a (N x 512) and 4d (N x 528)
        if not torch.jit.is_scripting():
            self.check_input(x)
            if self.checkpointing():
                return self._checkpointed(x, self.aux1, self.aux2)
        x = self._to_4a(x)
        aux1 = self.aux1(x)
        x = self._to_4d(x)
        aux2 = self.aux2(x)
        return GoogLeNetOutputs(self.forward_head(self._from_4e(x)), aux2, aux1)

    def _checkpointed(self, x: Tensor, aux1_head: InceptionAux, aux2_head: InceptionAux) -> GoogLeNetOutputs:
        """The training forward with aux heads in seven checkpointed regions: stage 4 runs in three parts."""
        stages = self.stages()
        for stage in stages[:3]:
            x = self.run(stage, x)
        x = self.run(stages[3][:2], x)  # maxpool3, 4a
        aux1 = aux1_head(x)
        x = self.run(stages[3][2:5], x)  # 4b, 4c, 4d
        aux2 = aux2_head(x)
        x = self.run(stages[3][5:], x)  # 4e
        x = self.run(stages[4], x)
        return GoogLeNetOutputs(self.forward_head(x), aux2, aux1)


class TransformInput(nn.Module):
    """torchvision's ``transform_input``: ImageNet-normalised RGB to the (x - 0.5) / 0.5 scale of Google's original
    weights, which torchvision's pretrained GoogLeNet expects."""

    def __init__(self) -> None:
        super().__init__()
        # Python floats, not buffers or tensors: nothing to save, nothing left unset when a model is built on the
        # meta device, no copy to the device per call
        mean, std = IMAGENET_MEAN_STD
        self.scale, self.shift = [s / 0.5 for s in std], [(m - 0.5) / 0.5 for m in mean]

    def forward(self, x: Tensor) -> Tensor:
        # torchvision's arithmetic, channel by channel
        return torch.cat([x[:, i : i + 1] * self.scale[i] + self.shift[i] for i in range(3)], 1)


@register_model
def googlenet(**kwargs) -> GoogLeNet:
    """torchvision's GoogLeNet: its "5x5" branches are 3x3 (pytorch/vision#906)."""
    return GoogLeNet(kernel5x5=3, residual="none", **kwargs)


@register_model
def googlenet_5x5(**kwargs) -> GoogLeNet:
    """GoogLeNet with true 5x5 branches, as in Szegedy et al."""
    return GoogLeNet(kernel5x5=5, residual="none", **kwargs)


@register_model
def googlenet_res3x3(**kwargs) -> GoogLeNet:
    """The paper's residual GoogLeNet: identity shortcuts on 4b, 4c, 5a; 3x3 branches."""
    return GoogLeNet(kernel5x5=3, residual="same", **kwargs)


@register_model
def googlenet_res5x5(**kwargs) -> GoogLeNet:
    """The paper's residual GoogLeNet: identity shortcuts on 4b, 4c, 5a; 5x5 branches."""
    return GoogLeNet(kernel5x5=5, residual="same", **kwargs)


@register_model
def googlenet_resall3x3(**kwargs) -> GoogLeNet:
    """Every Inception module residual, 1x1 projections where channels differ; 3x3 branches."""
    return GoogLeNet(kernel5x5=3, residual="all", **kwargs)


@register_model
def googlenet_resall5x5(**kwargs) -> GoogLeNet:
    """Every Inception module residual, 1x1 projections where channels differ; 5x5 branches."""
    return GoogLeNet(kernel5x5=5, residual="all", **kwargs)
