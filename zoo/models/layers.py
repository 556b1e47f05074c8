"""Small pieces shared by the model families, and what every family declares about itself."""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from zoo.errors import ZooInputError


class ZooModel(nn.Module):
    """The base of every zoo model: the facts other layers read (checkpoint, cards, recipes, export, timm).

    Per family (class attributes): ``family``; ``variant_arg``, the kwarg that picks the paper's
    ImageNet-sized layers or the CIFAR ones ("stem" or "head"); ``arch_args``, the ``__init__``
    arguments each registered name fixes (users pass the others); ``first_conv``; ``aux_prefixes``,
    the state_dict prefixes of training-only heads. Per model (set in ``__init__``): ``num_classes``,
    ``in_chans``, ``default_input_size``, ``min_input_size``, ``classifier_names``.
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

    def check_input(self, x: Tensor) -> None:
        """Refuse, before the first conv, what this model cannot take (see :func:`check_input`)."""
        weight = next(self.parameters(), None)
        check_input(x, type(self).__name__, self.in_chans, self.min_input_size, None if weight is None else weight.dtype)


def check_input(x: Tensor, arch: str, in_chans: int, min_size: int, dtype: torch.dtype | None = None) -> None:
    """Refuse, before the first conv, a tensor the model cannot take, saying what to pass instead.

    ``dtype`` is the weights': a floating input of another precision is refused too (float64 images into a
    float32 model), except under autocast, which casts on its own.
    """
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
