"""Training recipes as data: the paper's tables (section 2.2), and our faster ones.

``paper`` follows the paper per family and dataset; the transforms it names
for CIFAR-10 without parameters get ours (see ``zoo.data.loading.PAPER_*``). ``fast``
is our recipe: a CIFAR stem or head, one-cycle style warmup and linear decay,
Nesterov momentum, label smoothing and a larger batch; it reaches a lower error
in far fewer epochs. (Every recipe trains under bf16 autocast on CUDA.)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import zoo.models  # noqa: F401  (registers the built-in families, which this module looks up)
from zoo.core.arguments import Range, check_arguments
from zoo.core.errors import TrainingError
from zoo.data.datasets import Augment, DataSpec, get_spec
from zoo.models.layers import ZooModel
from zoo.models.registry import model_class

Schedule = Literal["plateau", "step", "onecycle"]


@dataclass(frozen=True)
class Recipe:
    name: str
    epochs: int
    lr: float
    batch_size: int = 256
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: Schedule = "plateau"
    plateau_patience: int = 5  # epochs without a better eval error before the LR drops
    plateau_factor: float = 0.1
    step_every: int = 8  # "step": multiply the LR by step_gamma every step_every epochs
    step_gamma: float = 0.96
    compress_from: int = 0  # > 0: the step schedule of a run this many epochs long, compressed into ``epochs``
    warmup_epochs: float = 0.0  # "onecycle": linear warmup, then linear decay to zero
    label_smoothing: float = 0.0
    aux_weight: float = 0.3  # GoogLeNet's auxiliary classifiers, as in Szegedy et al.
    augment: Augment = "none"  # see zoo.data.datasets.AUGMENTATIONS
    flip: bool = True
    tta_flip: bool = False  # evaluate on the image and its mirror, averaged
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    def lr_at(self, step: int, steps_per_epoch: int, plateau_scale: float = 1.0) -> float:
        """The learning rate at optimizer step ``step``: a pure function, so resuming is exact.

        For "plateau", ``plateau_scale`` is the product of the drops so far (the
        only schedule that depends on eval results, kept in the resume state).
        """
        epoch = step / steps_per_epoch
        if self.schedule == "plateau":
            return self.lr * plateau_scale
        if self.schedule == "step":
            if self.compress_from:  # the same number of drops as the full-length schedule, at the same fractions of it
                return self.lr * self.step_gamma ** int(epoch * self.compress_from / self.epochs / self.step_every)
            return self.lr * self.step_gamma ** (int(epoch) // self.step_every)
        total = self.epochs * steps_per_epoch
        warmup = self.warmup_epochs * steps_per_epoch
        if step < warmup:
            return self.lr * (step + 1) / warmup
        return self.lr * max(0.0, (total - step) / max(1.0, total - warmup))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _family(arch: str) -> type[ZooModel]:
    cls = model_class(arch)
    if not issubclass(cls, ZooModel) or cls.family not in PAPER:
        raise TrainingError(f"no recipes for {arch!r}: recipes exist for the {', '.join(PAPER)} families")
    return cls


# The paper's section 2.2 tables. Augmentation: none on MNIST, "horizontal
# flipping, rotation, colour jitter, random resize cropping" on CIFAR-10.
PAPER: dict[str, dict[str, Any]] = {
    "vgg": dict(lr=0.01, momentum=0.9, weight_decay=5e-4, batch_size=256, schedule="plateau", plateau_patience=5, epochs=100),
    # momentum and weight decay are not in the ResNet table; He et al.'s values
    "resnet": dict(lr=0.1, momentum=0.9, weight_decay=1e-4, batch_size=256, schedule="plateau", plateau_patience=1, epochs=50),
    # "decrease by 4% every 8 epochs"; weight decay is not in the table, Szegedy et al. give none; we use 2e-4
    "googlenet": dict(lr=0.1, momentum=0.9, weight_decay=2e-4, batch_size=256, schedule="step", step_every=8, step_gamma=0.96, epochs=160),
}

FAST: dict[str, dict[str, Any]] = {
    "vgg": dict(lr=0.02, batch_size=512, epochs=30, warmup_epochs=3),  # 0.1 diverged for VGG19 without BN (reports/h200)
    "resnet": dict(lr=0.2, batch_size=512, epochs=24, warmup_epochs=2),
    "googlenet": dict(lr=0.2, batch_size=512, epochs=30, warmup_epochs=2),
}

FINETUNE: dict[str, Any] = dict(lr=0.01, batch_size=64, epochs=10, warmup_epochs=1)
"""Every family's fine-tuning from trained weights (``zoo train --init``): a tenth of the fast recipe's rate, so the
trained features are adjusted, not rewritten, and small batches, for small image folders."""

RECIPES = ("paper", "fast", "finetune")


def get_recipe(name: str, arch: str, dataset: str | DataSpec, **overrides: Any) -> Recipe:
    """The recipe ``name`` ("paper", "fast" or "finetune") for ``arch`` on ``dataset`` (a registered name or a spec), with
    overrides applied.

    What depends on the dataset comes from its spec: the paper's augmentation; for the fast recipe, whether
    images may be mirrored (flip augmentation, flip-averaged evaluation) and its label smoothing.
    """
    cls = _family(arch)
    spec = dataset if isinstance(dataset, DataSpec) else get_spec(dataset)
    if name == "paper":
        cfg = dict(PAPER[cls.family], augment=spec.paper_augment)
    elif name in ("fast", "finetune"):
        cfg = dict(
            FAST[cls.family] if name == "fast" else FINETUNE,
            momentum=0.9,
            nesterov=True,
            weight_decay=5e-4,
            schedule="onecycle",
            label_smoothing=spec.label_smoothing,
            augment="crop_flip",
            flip=spec.mirror,
            tta_flip=spec.mirror,
            # VGG's head, the others' stem; fine-tuning keeps the trained model's
            model_kwargs={cls.variant_arg: "cifar"} if name == "fast" else {},
        )
    else:
        raise TrainingError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    check_arguments(f"the {name} recipe", given, Recipe, exclude=("name",), ranges=RANGES, error=TrainingError)
    cfg.update(given)
    return Recipe(name=name, **cfg)


RANGES = {
    "epochs": Range(1), "lr": Range(0, open_low=True), "batch_size": Range(1), "momentum": Range(0, 1),
    "weight_decay": Range(0), "plateau_patience": Range(0), "plateau_factor": Range(0, 1, open_low=True),
    "step_every": Range(1), "step_gamma": Range(0, 1.000001, open_low=True), "compress_from": Range(0),
    "warmup_epochs": Range(0), "label_smoothing": Range(0, 1), "aux_weight": Range(0),
}
"""What each numeric field may be; a value outside is refused before any work."""
