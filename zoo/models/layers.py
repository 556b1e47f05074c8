"""Small pieces shared by the model families, what every family declares about itself, and the
timm model API every family gets from it (forward_features / forward_intermediates, get_classifier /
reset_classifier, global pooling, feature_info, gradient checkpointing, pool_size, group_matcher).

No ``from __future__ import annotations`` here or in the families: TorchScript reads the annotations of
what it compiles (forward and what it calls, the attributes' class annotations) and cannot read strings."""
import re
import typing
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar, Literal

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from zoo.core.arguments import Range
from zoo.core.errors import ArgumentError, ZooInputError
from zoo.data.datasets import DataConfig

GlobalPool = Literal["avg", "max", "avgmax", "catavgmax", ""]
"""timm's global_pool values: average, max, their mean, both concatenated (twice the channels), "" none."""
GLOBAL_POOLS: tuple[str, ...] = typing.get_args(GlobalPool)
Variant = Literal["imagenet", "cifar"]
"""What every family's ``variant_arg`` takes: the paper's ImageNet-sized layers, or the CIFAR ones (32x32 images)."""
VARIANTS: tuple[str, ...] = typing.get_args(Variant)
RATE = Range(0, 1)
"""The range of a dropout or stochastic-depth rate."""


class ZooModel(nn.Module):
    """The base of every zoo model: the facts other layers read (checkpoint, cards, recipes, export, timm).

    Per family (class attributes): ``family``; ``variant_arg``, the kwarg that picks the paper's
    ImageNet-sized layers or the CIFAR ones ("stem" or "head"), annotated :data:`Variant` and checked by
    :meth:`check_variant`; ``folds_batchnorm``, whether every BatchNorm2d directly follows the Conv2d registered
    just before it, so export folds each into its conv (a pre-activation family declares False); ``arch_args``,
    the ``__init__`` arguments each registered name fixes (users pass the others); ``first_conv``; ``aux_prefixes``,
    the state_dict prefixes of training-only heads (a family with them takes ``aux_logits``, see
    ``takes_aux``); ``quick_kwargs``, what a quick CPU check of the machinery builds it with (small heads).
    Hooks the other layers call instead of asking which family a model is: :meth:`inference_kwargs` (the
    configuration users get when a run is released) and :meth:`card_notes` (what its card must say). Per model (set in ``__init__``): ``num_classes``,
    ``in_chans``, ``default_input_size``, ``min_input_size``, ``classifier_names`` (the first is the
    classifier; the owners of the others, auxiliary heads, declare what they read as their ``head_hidden_size``),
    ``num_features`` (the channels of the last feature map), ``head_hidden_size`` (what the classifier reads,
    the width of ``forward_head(x, pre_logits=True)``), ``feature_info`` (the five stages' channels, reduction
    and module, timm's format) and ``global_pool``; timm's names and meanings.

    A family implements ``stages()`` (the modules of each of the five stages, in forward order: features,
    gradient checkpointing), ``forward_layers(x)`` (the same modules called one by one, which TorchScript
    compiles) and ``forward_head(x, pre_logits)`` (the pool, e.g. :meth:`pool_features`, then the classifier);
    the rest is here. ``num_classes=0`` leaves no classifier: the model returns pooled features, timm's
    convention; with ``global_pool=""`` as well, the last stage's feature maps.
    """

    family: ClassVar[str]
    variant_arg: ClassVar[str]
    arch_args: ClassVar[tuple[str, ...]] = ()
    first_conv: ClassVar[str]
    aux_prefixes: ClassVar[tuple[str, ...]] = ()
    quick_kwargs: ClassVar[dict[str, Any]] = {}
    folds_batchnorm: ClassVar[bool] = True
    num_classes: int
    in_chans: int
    default_input_size: tuple[int, int, int]
    min_input_size: int
    classifier_names: str | tuple[str, ...]

    num_features: int
    head_hidden_size: int
    feature_info: list[dict[str, Any]]
    global_pool: str = "avg"
    grad_checkpointing: bool = False
    # What zoo.models.registry records on each model it builds (describe, set_data_config): the registered arch, the kwargs
    # it was built with (timm's _model_args), the data contract and its timm projection (pretrained_cfg; default_cfg,
    # timm's older name). TorchScript skips them and classifier_names: no TorchScript type, and forward reads none
    _zoo_arch: str
    _model_args: dict[str, Any]
    data_config: DataConfig
    pretrained_cfg: dict[str, Any]
    default_cfg: dict[str, Any]
    __jit_ignored_attributes__: ClassVar[list[str]] = [
        "classifier_names", "_zoo_arch", "_model_args", "data_config", "pretrained_cfg", "default_cfg"]

    def check_variant(self, variant: str) -> None:
        """Refuse a ``variant_arg`` value that is not a :data:`Variant` (the registry refuses it first, from the
        annotation; this catches the class built directly)."""
        if variant not in VARIANTS:
            raise ArgumentError(
                f"{type(self).__name__}: {self.variant_arg}={variant!r} is not one of 'imagenet', 'cifar'; pass "
                f"{self.variant_arg}='imagenet' (the paper's ImageNet-sized layers) or 'cifar' (for 32x32 images)"
            )

    @classmethod
    def takes_aux(cls) -> bool:
        """Whether the family has training-only auxiliary classifiers, switched by ``aux_logits``."""
        return bool(cls.aux_prefixes)

    def inference_kwargs(self) -> dict[str, Any]:
        """Kwargs of the model users get from a trained one: training-only parts left out."""
        return {"aux_logits": False} if self.takes_aux() else {}

    def card_notes(self) -> list[str]:
        """What a model card must say about this model beyond its numbers."""
        if self.takes_aux() and getattr(self, "aux_logits", False):
            return ["The weights include the auxiliary classifiers; they are used only in training mode."]
        return []

    def check_input(self, x: Tensor) -> None:
        """Refuse, before the first conv, what this model cannot take (see :func:`check_input`)."""
        weight = next(self.parameters(), None)
        check_input(x, type(self).__name__, self.in_chans, self.min_input_size, None if weight is None else weight.dtype)

    def stages(self) -> list[list[nn.Module]]:
        """The modules of each stage. Under gradient checkpointing a stage is one region (see :meth:`run`),
        so no stage may begin with an in-place op."""
        raise NotImplementedError

    def forward_layers(self, x: Tensor) -> Tensor:
        """The modules of :meth:`stages`, called one by one: what TorchScript compiles, which reads no list of modules."""
        raise NotImplementedError

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Pooled features, ``head_hidden_size`` wide (``pre_logits``), or the logits, from :meth:`forward_features`."""
        raise NotImplementedError

    def set_global_pool(self, global_pool: str, num_classes: int) -> None:
        """Pool the last stage with ``global_pool`` (:data:`GlobalPool`) in ``avgpool``, torchvision's name;
        ``head_hidden_size`` follows. "" pools nothing, which only a model without classifier can do."""
        arch = type(self).__name__
        if global_pool not in GLOBAL_POOLS:
            choices = ", ".join(map(repr, GLOBAL_POOLS))
            raise ArgumentError(f"{arch}: global_pool={global_pool!r} is not one of {choices}")
        if not global_pool and num_classes:
            raise ArgumentError(
                f"{arch}: global_pool='' leaves (N, C, h, w) feature maps, which a classifier cannot read; "
                "pass num_classes=0 too, or pool them (global_pool='avg')"
            )
        self.global_pool, self.avgpool = global_pool, make_global_pool(global_pool)
        self.num_features = self.feature_info[-1]["num_chs"]
        self.head_hidden_size = self.num_features * (2 if global_pool == "catavgmax" else 1)

    def pool_features(self, x: Tensor) -> Tensor:
        # N x C x h x w -> N x head_hidden_size (C, 2C for catavgmax), or, unpooled (global_pool=""), N x C x h x w
        x = self.avgpool(x)
        return x if self.global_pool == "" else torch.flatten(x, 1)

    def run(self, modules: Sequence[nn.Module], x: Tensor) -> Tensor:
        """``modules`` in order (a stage, or part of one); under gradient checkpointing one region, whose
        activations are recomputed in backward. One region, not one per module: checkpointing keeps a
        region's input for the recomputation, which an in-place ReLU on its own would modify."""
        if self.checkpointing():
            return checkpoint(run_modules, modules, x, use_reentrant=False)
        return run_modules(modules, x)

    def checkpointing(self) -> bool:
        """Whether a forward now runs its stages as checkpointed regions (see :meth:`run`)."""
        return self.grad_checkpointing and self.training and torch.is_grad_enabled()

    def forward_features(self, x: Tensor) -> Tensor:
        """The last stage's feature map, (N, C, h, w). In eager mode, bad input is refused first (TorchScript
        leaves the checks out, as it does gradient checkpointing)."""
        if not torch.jit.is_scripting():
            self.check_input(x)
            if self.checkpointing():
                for stage in self.stages():
                    x = self.run(stage, x)
                return x
        return self.forward_layers(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self, x: Tensor, indices: int | Sequence[int] | None = None, norm: bool = False, stop_early: bool = False,
        output_fmt: str = "NCHW", intermediates_only: bool = False,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """timm's feature API: the outputs of the stages ``indices`` (see :func:`take_indices`), in stage order,
        and the final features. There is no final norm: ``norm`` changes nothing."""
        if output_fmt != "NCHW":
            raise ValueError(f"{type(self).__name__} gives NCHW feature maps, not {output_fmt}")
        stages = self.stages()
        take, last = take_indices(len(stages), indices)
        self.check_input(x)
        out = []
        for i, stage in enumerate(stages[: last + 1] if stop_early or intermediates_only else stages):
            x = self.run(stage, x)
            if i in take:
                out.append(x)
        return out if intermediates_only else (x, out)

    def prune_intermediate_layers(
        self, indices: int | Sequence[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """timm's features_only models call this when built: ``indices`` checked (out of range: timm's
        AssertionError) and returned absolute, in stage order, the order of the outputs. Nothing is removed,
        whatever ``prune_norm`` and ``prune_head`` say: zoo.hub.factory loads a tag's weights into the wrapped
        model afterwards, every key included; :meth:`forward_intermediates` stops at the last stage asked for."""
        return sorted(set(take_indices(len(self.stages()), indices)[0]))

    def get_classifier(self) -> nn.Module:
        return self.get_submodule(_names(self.classifier_names)[0])

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new, randomly initialised classifier for ``num_classes`` (0: none, the model returns pooled features),
        reading the pool ``global_pool`` when given (:meth:`set_global_pool`); auxiliary heads are reset alike."""
        self.set_global_pool(self.global_pool if global_pool is None else global_pool, num_classes)
        for i, name in enumerate(_names(self.classifier_names)):
            parent, _, attr = name.rpartition(".")
            owner = self.get_submodule(parent) if parent else self
            width = owner.head_hidden_size if i else self.head_hidden_size
            if not isinstance(width, int):
                raise TypeError(f"{type(owner).__name__} must declare head_hidden_size, the int width {name} reads")
            setattr(owner, attr, classifier(width, num_classes))
        self.num_classes = num_classes

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def pool_size(self, input_size: Sequence[int]) -> tuple[int, int]:
        """timm's ``pool_size``: the (h, w) of :meth:`forward_features`' output for images of ``input_size`` ((C,) H, W),
        the last stage's reduction rounded up; exact where the sides are multiples of it (every configuration's
        input size is), as timm's configurations state it only at their input size. Running the model on the meta
        device instead would cost every build 0.4-0.9 s for a ResNet-50 or a GoogLeNet (batch norm's meta kernel is
        Python)."""
        reduction = self.feature_info[-1]["reduction"]
        return -(-input_size[-2] // reduction), -(-input_size[-1] // reduction)

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's parameter groups (layer-wise learning-rate decay in timm.optim), regular expressions on parameter
        names: the first stage is the stem, then a group per stage (``coarse``) or per block; what no group matches,
        the classifier and auxiliary heads, timm puts last."""
        names = {id(m): n for n, m in self.named_modules()}
        stem, *stages = [[names[id(m)] for m in stage] for stage in self.stages()]
        if not coarse:  # each module of a stage, a Sequential's (a ResNet layer's) block by block, as timm's
            stages = [[block] for stage in stages for name in stage for block in self._blocks(name)]
        return {"stem": _prefixes(stem), "blocks": [(_prefixes(group), (i,)) for i, group in enumerate(stages)]}

    def _blocks(self, name: str) -> list[str]:
        module = self.get_submodule(name)
        return [f"{name}.{child}" for child, _ in module.named_children()] if isinstance(module, nn.Sequential) else [name]

    def modules_to_init(self) -> Iterator[nn.Module]:
        """The modules whose weights a family's init sets: every one, except on the meta device, where there are no
        values to set and the init kernels import torch._dynamo on first use (3 s on 2 cores, in every process that
        reads a model's structure: plans, cards, sizes)."""
        return (m for m in self.modules() if not any(p.is_meta for p in m.parameters(recurse=False)))

    def no_weight_decay(self) -> set[str]:
        """timm's parameters kept from weight decay besides every 1-D one (biases, norms): none."""
        return set()


def _prefixes(names: Iterable[str]) -> str:
    """A regular expression matching the parameters of the modules ``names``."""
    return rf"^(?:{'|'.join(re.escape(n) for n in names)})\."


def run_modules(modules: Sequence[nn.Module], x: Tensor) -> Tensor:
    for module in modules:
        x = module(x)
    return x


def take_indices(count: int, indices: int | Sequence[int] | None) -> tuple[list[int], int]:
    """timm's feature_take_indices: of ``count`` stages, those ``indices`` name (all for None, the last n for an
    int n, negative ones from the end), absolute, and the largest. Out of range raises AssertionError with
    timm's message, as timm's own models do."""
    if indices is None or isinstance(indices, int):
        n = count if indices is None else indices
        if not 0 < n <= count:
            raise AssertionError(f"last-n ({n}) is out of range (1 to {count})")
        take = list(range(count - n, count))
    else:
        take = [count + i if i < 0 else i for i in indices]
        for i in take:
            if not 0 <= i < count:
                raise AssertionError(f"feature index {i} is out of range (0 to {count - 1})")
    return take, max(take)


class AvgMaxPool(nn.Module):
    """timm's "avgmax" (the mean of the global average and max pools) and "catavgmax" (both, concatenated)."""

    def __init__(self, concat: bool) -> None:
        super().__init__()
        self.concat = concat

    def forward(self, x: Tensor) -> Tensor:
        # N x C x h x w -> N x C x 1 x 1, or N x 2C x 1 x 1 (concat)
        avg, top = F.adaptive_avg_pool2d(x, 1), F.adaptive_max_pool2d(x, 1)
        return torch.cat([avg, top], 1) if self.concat else 0.5 * (avg + top)


def make_global_pool(global_pool: str) -> nn.Module:
    """The module of a :data:`GlobalPool` value: N x C x h x w -> N x C' x 1 x 1 ("" passes the maps on)."""
    if global_pool == "avg":
        return nn.AdaptiveAvgPool2d((1, 1))  # torchvision's
    if global_pool == "max":
        return nn.AdaptiveMaxPool2d((1, 1))
    return AvgMaxPool(global_pool == "catavgmax") if global_pool else nn.Identity()


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016; timm's DropPath): in training each sample's residual branch is
    dropped with probability ``p`` and kept ones are scaled by 1 / (1 - p); in eval, the identity."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        # N x C x h x w times a per-sample N x 1 x 1 x 1 mask
        keep = x.new_empty([x.shape[0], 1, 1, 1]).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p:g}"


def drop_path_rates(arch: str, drop_path_rate: float, blocks: int) -> list[float]:
    """Stochastic depth of each of ``blocks`` residual blocks: from 0 at the first to ``drop_path_rate`` at the
    last, timm's rule."""
    check_rate(arch, "drop_path_rate", drop_path_rate)
    return [drop_path_rate * i / max(blocks - 1, 1) for i in range(blocks)]


def classifier_drop_rate(arch: str, dropout: float | None, drop_rate: float | None, default: float) -> float:
    """The dropout before the classifier: torchvision's ``dropout`` and timm's ``drop_rate`` name the same
    rate; ``default`` when neither is given, both only if equal."""
    given = {name: rate for name, rate in (("dropout", dropout), ("drop_rate", drop_rate)) if rate is not None}
    if len(set(given.values())) > 1:
        raise ArgumentError(
            f"{arch}: dropout={dropout!r} and drop_rate={drop_rate!r} are torchvision's and timm's names for "
            "the same dropout before the classifier; pass one"
        )
    name, rate = next(iter(given.items()), ("dropout", default))
    check_rate(arch, name, rate)
    return rate


def check_rate(arch: str, name: str, rate: float) -> None:
    """Refuse a dropout or stochastic-depth rate outside [0, 1), as zoo.models.registry.check_model_kwargs words it
    (timm's create_model passes kwargs to the model unchecked)."""
    if not RATE.admits(rate):
        raise ArgumentError(f"{arch}: {name}={rate!r} must be {RATE}")


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
