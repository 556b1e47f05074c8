"""Small pieces shared by the model families, what every family declares about itself, and the
timm model API every family gets from it (forward_features / forward_head / forward_intermediates,
get_classifier / reset_classifier, feature_info, gradient checkpointing)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.fx
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from zoo.errors import ZooInputError


class ZooModel(nn.Module):
    """The base of every zoo model: the facts other layers read (checkpoint, cards, recipes, export, timm).

    Per family (class attributes): ``family``; ``variant_arg``, the kwarg that picks the paper's
    ImageNet-sized layers or the CIFAR ones ("stem" or "head"); ``arch_args``, the ``__init__``
    arguments each registered name fixes (users pass the others); ``first_conv``; ``aux_prefixes``,
    the state_dict prefixes of training-only heads. Per model (set in ``__init__``): ``num_classes``,
    ``in_chans``, ``default_input_size``, ``min_input_size``, ``classifier_names`` (the first is the
    classifier), ``num_features`` (what the classifier reads) and ``feature_info`` (the five stages'
    channels, reduction and module, timm's format).

    A family implements ``stages()`` (the modules of each of the five stages, in forward order) and
    ``pool(x)`` (stage-5 features to the classifier's input); the rest is here. ``num_classes=0``
    leaves no classifier: the model returns pooled features, timm's convention.
    """

    family: ClassVar[str]
    variant_arg: ClassVar[str]
    arch_args: ClassVar[tuple[str, ...]] = ()
    first_conv: ClassVar[str]
    aux_prefixes: ClassVar[tuple[str, ...]] = ()
    num_classes: int
    in_chans: int
    default_input_size: tuple[int, int, int]
    min_input_size: int
    classifier_names: str | tuple[str, ...]

    num_features: int
    feature_info: list[dict[str, Any]]
    grad_checkpointing: bool = False

    def check_input(self, x: Tensor) -> None:
        """Refuse, before the first conv, what this model cannot take (see :func:`check_input`)."""
        weight = next(self.parameters(), None)
        check_input(x, type(self).__name__, self.in_chans, self.min_input_size, None if weight is None else weight.dtype)

    def stages(self) -> list[list[nn.Module]]:
        raise NotImplementedError

    def pool(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def run(self, module: nn.Module, x: Tensor) -> Tensor:
        """One module of a stage; under gradient checkpointing its activations are recomputed in backward."""
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(module, x, use_reentrant=False)
        return module(x)

    def forward_features(self, x: Tensor) -> Tensor:
        """The last stage's feature map, (N, C, h, w)."""
        self.check_input(x)
        for stage in self.stages():
            for module in stage:
                x = self.run(module, x)
        return x

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Pooled features (``pre_logits``) or the logits, from :meth:`forward_features`' output."""
        x = self.pool(x)
        return x if pre_logits else self.get_classifier()(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self, x: Tensor, indices: int | Sequence[int] | None = None, norm: bool = False, stop_early: bool = False,
        output_fmt: str = "NCHW", intermediates_only: bool = False,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """timm's feature API: the outputs of the stages ``indices`` (the last n when an int), and the final features."""
        if output_fmt != "NCHW":
            raise ValueError(f"{type(self).__name__} gives NCHW feature maps, not {output_fmt}")
        stages = self.stages()
        wanted = range(len(stages))[-indices:] if isinstance(indices, int) else range(len(stages)) if indices is None else indices
        wanted = {i % len(stages) for i in wanted}
        self.check_input(x)
        out = []
        for i, stage in enumerate(stages):
            for module in stage:
                x = self.run(module, x)
            if i in wanted:
                out.append(x)
            if (stop_early or intermediates_only) and i >= max(wanted):
                break
        return out if intermediates_only else (x, out)

    def get_classifier(self) -> nn.Module:
        return self.get_submodule(_names(self.classifier_names)[0])

    def reset_classifier(self, num_classes: int, global_pool: Any = None) -> None:
        """A new, randomly initialised classifier for ``num_classes`` (0: none, the model returns pooled features);
        auxiliary heads are reset alike."""
        for name in _names(self.classifier_names):
            parent, _, attr = name.rpartition(".")
            old = self.get_submodule(name)
            width = old.in_features if isinstance(old, nn.Linear) else self.num_features
            setattr(self.get_submodule(parent) if parent else self, attr, classifier(width, num_classes))
        self.num_classes = num_classes

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable


def _names(names: str | tuple[str, ...]) -> tuple[str, ...]:
    return (names,) if isinstance(names, str) else tuple(names)


def classifier(in_features: int, num_classes: int) -> nn.Module:
    """A Linear to ``num_classes``, or, for 0, nothing (timm's convention: the features pass through)."""
    return nn.Linear(in_features, num_classes) if num_classes else nn.Identity()


def feature_info(channels: Sequence[int], reductions: Sequence[int], modules: Sequence[str]) -> list[dict[str, Any]]:
    return [dict(num_chs=c, reduction=r, module=m) for c, r, m in zip(channels, reductions, modules)]


def check_input(x: Tensor, arch: str, in_chans: int, min_size: int, dtype: torch.dtype | None = None) -> None:
    """Refuse, before the first conv, a tensor the model cannot take, saying what to pass instead.

    ``dtype`` is the weights': a floating input of another precision is refused too (float64 images into a
    float32 model), except under autocast, which casts on its own. While torch.fx traces the model
    (torchvision's create_feature_extractor), there is no tensor to check.
    """
    if isinstance(x, torch.fx.Proxy):
        return
    if not isinstance(x, Tensor):
        raise ZooInputError(f"{arch} takes a torch.Tensor of shape (N, {in_chans}, H, W), got {type(x).__name__}")
    if x.ndim != 4:
        hint = " (a single image: add the batch axis with x.unsqueeze(0))" if x.ndim == 3 else ""
        raise ZooInputError(
            f"{arch} takes a 4-D batch (N, {in_chans}, H, W), got shape {tuple(x.shape)}{hint}"
        )
    if not x.is_floating_point():
        raise ZooInputError(
            f"{arch} takes floating-point input, got {x.dtype}; convert and normalise first, "
            "e.g. x.float().div(255) then subtract the mean and divide by the std"
        )
    autocast = x.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(x.device.type)
    if dtype is not None and x.dtype != dtype and not autocast:
        raise ZooInputError(
            f"{arch} holds {dtype} weights but the input is {x.dtype}; convert one to the other: "
            f"x.to({dtype}), or model.to({x.dtype})"
        )
    if x.shape[1] != in_chans:
        raise ZooInputError(
            f"{arch} was built with in_chans={in_chans} but the input has {x.shape[1]} channels; "
            f"build it with in_chans={x.shape[1]} or pass (N, {in_chans}, H, W)"
        )
    if x.shape[2] < min_size or x.shape[3] < min_size:
        raise ZooInputError(
            f"{arch} needs inputs of at least {min_size}x{min_size}, got {x.shape[2]}x{x.shape[3]}; "
            "resize or zero-pad the images (MNIST's 28x28 enters padded to 32x32)"
        )
