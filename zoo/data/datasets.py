"""Every fact zoo knows about a dataset, in one record per dataset: :class:`DataSpec`.

A leaf: it imports nothing of zoo but its errors, and not torch, so the command line lists the datasets
and the registry reads their statistics without loading anything. Everything else derives from a spec:
the command line's choices, the recipes' defaults, the model's data configuration, the card's notes,
the benchmark's inputs, the reproduction's sizes and predict's preprocessing. ``zoo.data.loading`` turns a
spec into tensors.

A dataset is one of three kinds, by what its spec holds: a ``<name>.npz`` archive (in ``--data-dir``,
else downloaded by the torchvision class the spec names), an image folder (``root``: one subfolder per
class, built by ``zoo.data.loading.folder_spec``) or arrays in memory (``arrays``: tests, synthetic stand-ins).

Adding a dataset is one :func:`register_dataset` call with its spec.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from zoo.core.errors import DataError

__all__ = ["AUGMENTATIONS", "DEFAULT_DATASET", "FOLDER_PREFIX", "Augment", "DataConfig", "DataSpec", "check_statistics", "find_spec",
           "get_spec", "list_datasets",
           "register_dataset", "spec_for_model"]

Augment = Literal["none", "crop_flip", "paper"]
AUGMENTATIONS: tuple[str, ...] = get_args(Augment)
"""Training augmentations (zoo.data.loading): none; pad-4 crop and flip; the paper's resized crop, rotation, flip, jitter."""

FOLDER_PREFIX = "folder:"
"""``folder:PATH`` names an image folder as a dataset: one subfolder per class."""


@dataclass(frozen=True)
class DataSpec:
    """One dataset: what its images are, how they enter a model, how recipes treat it.

    ``input_size`` is what the model sees; the stored images are ``pad`` pixels smaller on each side and
    enter zero-padded (MNIST's 28x28 digits as 1x32x32). ``mirror``: a mirrored image is the same class
    (flip augmentation and flip-averaged evaluation are allowed). ``splits``: (train, test) images, None
    when only loading tells. ``paper_augment``: the augmentation the paper's recipe uses on it;
    ``label_smoothing``: the fast recipe's. ``sample``: (test, calibration) images of it shipped in
    ``zoo/eval_sample.npz``. ``root`` (an image folder) or ``arrays`` (x_train, y_train, x_test, y_test in
    memory) say where the images are; neither: ``<name>.npz``. ``measure_stats``: mean and std are placeholders,
    measured on the training images when they are loaded (an image folder trained from scratch).
    """

    name: str
    title: str
    label_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: tuple[int, int, int]
    pad: int = 0
    mirror: bool = True
    splits: tuple[int, int] | None = None
    paper_augment: Augment = "none"
    label_smoothing: float = 0.0
    hub_id: str | None = None
    torchvision: str | None = None
    sample: tuple[int, int] | None = None
    root: Path | None = None
    arrays: Callable[[], Mapping[str, Any]] | None = None
    measure_stats: bool = False

    def __post_init__(self) -> None:
        check_statistics(self.mean, self.std, self.input_size[0], f"dataset {self.name!r}")
        if len(self.label_names) < 2:
            raise DataError(f"dataset {self.name!r} has {len(self.label_names)} class(es); a classifier needs at least 2")
        if self.paper_augment not in AUGMENTATIONS:
            raise DataError(f"dataset {self.name!r}: paper_augment={self.paper_augment!r} is not one of {AUGMENTATIONS}")

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def in_chans(self) -> int:
        return self.input_size[0]

    @property
    def stored_size(self) -> tuple[int, int]:
        """(H, W) of the images as stored, before the zero padding."""
        return self.input_size[1] - 2 * self.pad, self.input_size[2] - 2 * self.pad

    def data_config(self, **provenance: Any) -> DataConfig:
        """The data contract of a model trained on this dataset (``provenance``: dataset_sha256, images,
        base_model, metrics, or other label names); a folder is named ``folder:NAME``, never by its local path."""
        name = f"{FOLDER_PREFIX}{self.root.name}" if self.root is not None else self.name
        return DataConfig(self.input_size, self.mean, self.std, crop_pct=self.input_size[1] / self.stored_size[0],
                          mirror=self.mirror, dataset=name, **{"label_names": self.label_names, **provenance})


INTERPOLATION = "bilinear"
"""How every zoo model's images are resized (PIL's bilinear, antialiased when shrinking)."""
CROP_MODE = "squash"
"""timm's crop_mode for zoo models: each side resized to its own share of the input, then centre-cropped or padded;
an image's aspect ratio is not kept, and none of it is lost (the way zoo has always placed an image)."""


@dataclass(frozen=True)
class DataConfig:
    """A model's data contract: what its weights expect and where they came from. Made once, at the entry point,
    from a :class:`DataSpec` (:meth:`DataSpec.data_config`) or a checkpoint, then carried by the model
    (``model.data_config``, and its timm projection in ``pretrained_cfg``) and by every file it is saved to.

    ``input_size`` (C, H, W), ``mean`` and ``std`` (per channel, [0, 1] scale). ``crop_pct`` is timm's: an image is
    resized (``interpolation``, ``crop_mode``) to ``floor(side / crop_pct)`` and centre-cropped to the input, so a
    ``crop_pct`` above 1 pads (MNIST's 28x28 digits in 32x32: 32/28). ``mirror``: a mirrored image is the same
    class (flip augmentation, flip-averaged evaluation). ``label_names``: one per class, when known. Provenance:
    ``dataset`` (a registered name, or ``folder:NAME``), ``dataset_sha256``, ``images`` (train, test) trained and
    tested on, ``base_model`` (the weights training started from, for a fine-tune) and ``metrics`` (errors in %).
    """

    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pct: float = 1.0
    interpolation: str = INTERPOLATION
    crop_mode: str = CROP_MODE
    mirror: bool = False
    label_names: tuple[str, ...] | None = None
    dataset: str | None = None
    dataset_sha256: str | None = None
    images: tuple[int, int] | None = None
    base_model: str | None = None
    metrics: dict[str, float] | None = None

    def __post_init__(self) -> None:
        size = self.input_size
        if not isinstance(size, tuple) or len(size) != 3 or not all(isinstance(v, int) and v > 0 for v in size):
            raise DataError(f"data config: input_size must be 3 whole numbers > 0 (C, H, W), got {size!r}")
        check_statistics(self.mean, self.std, size[0], "data config")
        if not isinstance(self.crop_pct, (int, float)) or not 0.1 <= self.crop_pct <= 10:
            raise DataError(f"data config: crop_pct must be a number in [0.1, 10], got {self.crop_pct!r}")
        if min(self.scale_size) < 1:
            raise DataError(f"data config: crop_pct={self.crop_pct} leaves no image inside {size[1]}x{size[2]}")
        if self.label_names is not None and not all(isinstance(n, str) for n in self.label_names):
            raise DataError(f"data config: label_names must be strings, got {self.label_names!r}")

    @property
    def scale_size(self) -> tuple[int, int]:
        """(H, W) an image is resized to before the centre crop (timm's rule)."""
        return math.floor(self.input_size[1] / self.crop_pct), math.floor(self.input_size[2] / self.crop_pct)

    @property
    def pad(self) -> int:
        """Zero pixels around an image resized to :attr:`scale_size` (MNIST: 2), 0 when it is cropped instead."""
        return max(0, (self.input_size[1] - self.scale_size[0]) // 2)

    def timm_cfg(self) -> dict[str, Any]:
        """The keys of timm's pretrained_cfg this record sets (timm's resolve_data_config reads them)."""
        cfg = {"input_size": self.input_size, "mean": self.mean, "std": self.std, "crop_pct": self.crop_pct,
               "interpolation": self.interpolation, "crop_mode": self.crop_mode}
        return cfg if self.label_names is None else {**cfg, "label_names": self.label_names}

    def for_model(self, in_chans: int, num_classes: int) -> DataConfig:
        """The record of a model built from these weights with ``in_chans`` (an adapted first convolution: each
        statistic the average over the channels) and ``num_classes`` (a fresh head: no label names)."""
        cfg = self
        if in_chans != self.input_size[0]:
            mean, std = (tuple([sum(v) / len(v)] * in_chans) for v in (self.mean, self.std))
            cfg = dataclasses.replace(cfg, input_size=(in_chans, *self.input_size[1:]), mean=mean, std=std)
        if self.label_names is not None and len(self.label_names) != num_classes:
            cfg = dataclasses.replace(cfg, label_names=None)
        return cfg

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: Any, where: str) -> DataConfig:
        """Parse :meth:`to_json`'s output, every field checked; ``where`` names the file in the error."""
        if not isinstance(data, dict) or not {"input_size", "mean", "std"} <= data.keys() or data.keys() - _FIELDS:
            raise DataError(f"{where}: the data config must be an object with input_size, mean, std and only the "
                            f"fields {', '.join(sorted(_FIELDS))}; got {data!r:.200}")
        try:
            values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
            return cls(**values)
        except (DataError, TypeError) as e:
            raise DataError(f"{where}: {str(e).removeprefix('data config: ')}") from None


_FIELDS = frozenset(f.name for f in dataclasses.fields(DataConfig))


def check_statistics(mean: Any, std: Any, channels: int, where: str, error: type[Exception] = DataError) -> None:
    """Refuse normalisation statistics that would broadcast silently or divide by zero: one finite mean and one
    finite, positive std per channel."""
    for label, values in (("mean", mean), ("std", std)):
        if not isinstance(values, (list, tuple)) or len(values) != channels or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
        ):
            raise error(f"{where}: {label} must be {channels} finite number(s), one per channel, got {values!r}")
    if not all(v > 0 for v in std):
        raise error(f"{where}: std must be > 0 for every channel (it divides the pixels), got {tuple(std)!r}")


_SPECS: dict[str, DataSpec] = {}


def register_dataset(spec: DataSpec) -> DataSpec:
    """Make ``spec`` a dataset every command accepts by name (a duplicate name is an error)."""
    if spec.name in _SPECS:
        raise DataError(f"dataset {spec.name!r} is already registered; pick another name")
    if spec.name.startswith(FOLDER_PREFIX) or not spec.name:
        raise DataError(f"{spec.name!r} cannot name a registered dataset ({FOLDER_PREFIX}PATH names image folders)")
    _SPECS[spec.name] = spec
    return spec


def unregister_dataset(name: str) -> None:
    """Forget a dataset registered by :func:`register_dataset` (tests register and remove their own)."""
    _SPECS.pop(name, None)


def list_datasets() -> list[str]:
    """The registered datasets' names, in registration order."""
    return list(_SPECS)


def get_spec(name: str) -> DataSpec:
    """The registered spec ``name``; an image folder's spec comes from ``zoo.data.loading.get_dataset_spec``."""
    if name not in _SPECS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(_SPECS)} or {FOLDER_PREFIX}PATH (an image "
                        "folder, one subfolder per class)")
    return _SPECS[name]


def find_spec(name: str | None) -> DataSpec | None:
    """The registered spec ``name``, or None (an image folder, an unrecorded or unknown dataset)."""
    return _SPECS.get(name) if name else None


def spec_for_model(in_chans: int, num_classes: int, small: bool) -> DataSpec | None:
    """The dataset a model without weights is most likely for: the first registered one with its channels and
    classes; else, for a ``small`` (32x32) configuration or channels ImageNet does not have, the first with
    its channels; else None (ImageNet's)."""
    exact = [s for s in _SPECS.values() if (s.in_chans, s.num_classes) == (in_chans, num_classes)]
    if exact:
        return exact[0]
    if small or in_chans != 3:
        return next((s for s in _SPECS.values() if s.in_chans == in_chans), None)
    return None


DEFAULT_DATASET = "cifar10"
"""What ``zoo train`` and ``zoo bench`` use when no dataset is named."""

register_dataset(DataSpec(
    "mnist", "MNIST", tuple(str(i) for i in range(10)), (0.1307,), (0.3081,), (1, 32, 32), pad=2,
    mirror=False,  # digits are not mirror-symmetric
    splits=(60000, 10000), hub_id="ylecun/mnist", torchvision="MNIST", sample=(1000, 100),
))
register_dataset(DataSpec(
    "cifar10", "CIFAR-10", ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), (3, 32, 32), splits=(50000, 10000),
    paper_augment="paper",  # "horizontal flipping, rotation, colour jitter, random resize cropping"
    label_smoothing=0.1, hub_id="uoft-cs/cifar10", torchvision="CIFAR10", sample=(500, 100),
))
