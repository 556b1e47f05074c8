"""MNIST and CIFAR-10: loading, and a device-resident loader with batched augmentation.

Datasets come from, in order: a directory of ``.npz`` files (``--data-dir`` or
``$ZOO_DATA_DIR``; ``mnist.npz`` / ``cifar10.npz`` with uint8 arrays
``x_train``, ``y_train``, ``x_test``, ``y_test``, images HWC), torchvision's
download, or, only when asked for, a synthetic set for tests and benchmarks.

Training keeps the whole dataset on the device as uint8 NCHW. Each epoch's
permutation and every sample's augmentation parameters are drawn on the CPU
from a generator seeded by (seed, epoch) and copied to the device once per
epoch; each step is then a gather plus a few batched ops. A resumed run
therefore sees exactly the batches it would have seen.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.errors import DataError

CIFAR10_LABELS = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    in_chans: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    label_names: tuple[str, ...]
    title: str  # for people: "CIFAR-10"
    hub_id: str  # the Hugging Face dataset a card links to

    @property
    def input_size(self) -> tuple[int, int, int]:
        return (self.in_chans, 32, 32)


DATASETS: dict[str, DatasetInfo] = {
    # MNIST enters as 1x32x32 (28x28 zero-padded by 2) so every family accepts it
    "mnist": DatasetInfo("mnist", 1, 10, (0.1307,), (0.3081,), tuple(str(i) for i in range(10)), "MNIST", "ylecun/mnist"),
    "cifar10": DatasetInfo("cifar10", 3, 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), CIFAR10_LABELS,
                           "CIFAR-10", "uoft-cs/cifar10"),
}


def get_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


@dataclass
class Dataset:
    """uint8 NCHW images and int64 labels; ``x_val`` is a held-out part of train, or None."""

    info: DatasetInfo
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    source: str
    sha256: str
    x_val: Tensor | None = None
    y_val: Tensor | None = None


def arrays_sha256(*tensors: Tensor) -> str:
    """sha256 over canonical uint8/int64 arrays: the same digest whichever source they came from."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def _dataset(info: DatasetInfo, x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor, source: str) -> Dataset:
    return Dataset(info, x_train, y_train, x_test, y_test, source, arrays_sha256(x_train, y_train, x_test, y_test))


def _to_nchw(x: np.ndarray, info: DatasetInfo) -> Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x))
    if info.in_chans == 1:  # 28x28 digits (checked) enter zero-padded to 32x32
        return F.pad(t.unsqueeze(1), (2, 2, 2, 2))
    return t.permute(0, 3, 1, 2).contiguous()


def _check_arrays(arrays: dict[str, np.ndarray], info: DatasetInfo, where: str) -> None:
    hw = {"mnist": (28, 28), "cifar10": (32, 32, 3)}[info.name]
    for split in ("train", "test"):
        x, y = arrays.get(f"x_{split}"), arrays.get(f"y_{split}")
        if x is None or y is None:
            raise DataError(f"{where} lacks x_{split}/y_{split}; expected uint8 arrays x_train, y_train, x_test, y_test")
        if y.dtype.kind not in "iu" or y.ndim != 1:
            raise DataError(f"{where}: y_{split} is {y.dtype}{y.shape}; labels must be a 1-D array of integers 0..{info.num_classes - 1}")
        if x.dtype != np.uint8 or x.shape[1:] != hw or len(x) != len(y):
            raise DataError(
                f"{where}: x_{split} is {x.dtype}{x.shape}, y_{split} has {len(y)} labels; "
                f"expected uint8 (N, {', '.join(map(str, hw))}) images (HWC) and N labels"
            )
        if len(y) and (y.min() < 0 or y.max() >= info.num_classes):
            raise DataError(f"{where}: y_{split} holds labels outside 0..{info.num_classes - 1}")


def _from_npz(path: Path, info: DatasetInfo) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # truncated, not a zip, a pickled array
        raise DataError(f"{path} is not a readable .npz archive ({type(e).__name__}: {e}); restore or re-create it") from None
    return _from_arrays(arrays, info, str(path), source=f"npz:{path}")


def _from_arrays(arrays: dict[str, np.ndarray], info: DatasetInfo, where: str, source: str) -> Dataset:
    """The checked uint8 x_train, y_train, x_test, y_test arrays of ``where`` as a Dataset."""
    _check_arrays(arrays, info, where)
    return _dataset(
        info,
        _to_nchw(arrays["x_train"], info),
        torch.from_numpy(arrays["y_train"].astype(np.int64)),
        _to_nchw(arrays["x_test"], info),
        torch.from_numpy(arrays["y_test"].astype(np.int64)),
        source=source,
    )


def _from_torchvision(root: Path, info: DatasetInfo) -> Dataset:
    import torchvision  # lazy: only the download path needs it

    cls = {"mnist": torchvision.datasets.MNIST, "cifar10": torchvision.datasets.CIFAR10}[info.name]
    splits = [cls(str(root), train=train, download=True) for train in (True, False)]
    arrays = {}
    for split, ds in zip(("train", "test"), splits):
        arrays[f"x_{split}"] = np.asarray(ds.data, dtype=np.uint8)
        arrays[f"y_{split}"] = np.asarray(ds.targets, dtype=np.int64)
    _check_arrays(arrays, info, f"torchvision {info.name} in {root}")
    return _dataset(
        info,
        _to_nchw(arrays["x_train"], info),
        torch.from_numpy(arrays["y_train"]),
        _to_nchw(arrays["x_test"], info),
        torch.from_numpy(arrays["y_test"]),
        source=f"torchvision:{root}",
    )


def synthetic(name: str, n_train: int = 2048, n_test: int = 512, seed: int = 0) -> Dataset:
    """A learnable stand-in with the real dataset's shapes: each class is a fixed random
    low-frequency pattern plus per-image noise and shift. For tests and benchmarks only."""
    info = get_info(name)
    g = torch.Generator().manual_seed(seed)
    protos = F.interpolate(torch.rand(info.num_classes, info.in_chans, 4, 4, generator=g), size=32, mode="bilinear")

    def draw(n: int) -> tuple[Tensor, Tensor]:
        y = torch.randint(0, info.num_classes, (n,), generator=g)
        x = protos[y] + 0.25 * torch.randn(n, info.in_chans, 32, 32, generator=g)
        return (x.clamp(0, 1) * 255).round().to(torch.uint8), y

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    return _dataset(info, x_train, y_train, x_test, y_test, source=f"synthetic:{n_train}+{n_test}:seed{seed}")


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
    val_split: int = 0,
    seed: int = 0,
) -> Dataset:
    """Load ``name`` ("mnist" or "cifar10") from ``data_dir`` / ``$ZOO_DATA_DIR``, else torchvision's download.

    A directory given (argument or environment) must hold ``<name>.npz``: nothing is created or
    downloaded there, so a mistyped path is an error that says where it looked. Without one,
    torchvision downloads into ``~/.cache/zoo/datasets`` (``download=False`` refuses that too).
    ``val_split`` holds out that many training images (a seeded random choice) as a validation set,
    so the learning-rate plateau need not watch the test set.
    """
    info = get_info(name)
    data_dir = data_dir or os.environ.get("ZOO_DATA_DIR")
    if data_dir:
        npz = Path(data_dir) / f"{name}.npz"
        if not npz.is_file():
            where = "--data-dir / $ZOO_DATA_DIR"
            raise DataError(f"{name}: looked for {npz} ({where}) and found no such file; pass the directory that holds "
                            f"{name}.npz (uint8 x_train, y_train, x_test, y_test), or no directory to download it")
        ds = _from_npz(npz, info)
    elif download:
        root = Path.home() / ".cache" / "zoo" / "datasets"
        try:
            ds = _from_torchvision(root, info)
        except Exception as e:  # torchvision raises URLError, RuntimeError, ... offline
            raise DataError(
                f"{name}: no --data-dir given and torchvision's download into {root} failed ({type(e).__name__}: {e}); "
                f"pass --data-dir DIR holding {name}.npz (uint8 x_train, y_train, x_test, y_test) or use a synthetic set"
            ) from e
    else:
        raise DataError(f"{name}: pass the directory that holds {name}.npz (data_dir or $ZOO_DATA_DIR)")
    if val_split:
        ds = split_validation(ds, val_split, seed)
    return ds


SAMPLE_FILE = Path(__file__).with_name("eval_sample.npz")
SAMPLE_SIZES = {"mnist": (1000, 100), "cifar10": (500, 100)}
"""zoo/eval_sample.npz (benchmarks/make_eval_sample.py): per dataset, test images for accuracy and training
images for int8 calibration, a seeded class-stratified sample of the official splits shipped with the package."""


def load_sample(name: str) -> Dataset:
    """The shipped sample of ``name``: its test part measures accuracy with no download (a sample's accuracy)."""
    info = get_info(name)
    if not SAMPLE_FILE.is_file():
        raise DataError(f"{SAMPLE_FILE} is missing from this install; pass --data-dir with {name}.npz")
    with np.load(SAMPLE_FILE, allow_pickle=False) as npz:
        arrays = {k.removeprefix(f"{name}_"): npz[k] for k in npz.files if k.startswith(f"{name}_")}
    return _from_arrays(arrays, info, f"{SAMPLE_FILE} ({name})", source=f"sample:{len(arrays.get('y_test', ()))} test images")


def split_validation(ds: Dataset, n_val: int, seed: int = 0) -> Dataset:
    if not 0 < n_val < len(ds.y_train):
        raise DataError(f"val_split must be between 1 and {len(ds.y_train) - 1}, got {n_val}")
    perm = torch.randperm(len(ds.y_train), generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
    return dataclasses.replace(
        ds,
        x_train=ds.x_train[train_idx],
        y_train=ds.y_train[train_idx],
        x_val=ds.x_train[val_idx],
        y_val=ds.y_train[val_idx],
    )


def subset(x: Tensor, y: Tensor, n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A seeded random ``n`` of (x, y): quick runs on a slice that still holds every class."""
    if not n or n >= len(y):
        return x, y
    idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return x[idx], y[idx]


# ---------------------------------------------------------------------------- augmentation

AUGMENTATIONS = ("none", "crop_flip", "paper")

# The paper names its CIFAR-10 transforms (horizontal flip, rotation, colour
# jitter, random resized crop) but not their parameters; these are ours.
PAPER_ROTATION_DEG = 15.0
PAPER_JITTER = 0.2  # brightness, contrast and saturation factors in [1 - j, 1 + j]
PAPER_CROP_SCALE = (0.6, 1.0)
PAPER_CROP_RATIO = (3 / 4, 4 / 3)


def draw_augment_params(kind: str, n: int, g: torch.Generator, flip: bool = True) -> dict[str, Tensor]:
    """Per-sample random parameters for ``n`` samples, drawn on the CPU from ``g``."""
    if kind == "none":
        return {}
    flips = torch.rand(n, generator=g) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    if kind == "crop_flip":
        return {"shift": torch.randint(0, 9, (n, 2), generator=g), "flip": flips}
    if kind == "paper":
        lo, hi = PAPER_CROP_SCALE
        area = lo + (hi - lo) * torch.rand(n, generator=g)
        log_r = math.log(PAPER_CROP_RATIO[0]) + math.log(PAPER_CROP_RATIO[1] / PAPER_CROP_RATIO[0]) * torch.rand(n, generator=g)
        ratio = log_r.exp()
        w, h = (area * ratio).sqrt().clamp(max=1), (area / ratio).sqrt().clamp(max=1)
        centre = (torch.rand(n, 2, generator=g) * 2 - 1) * torch.stack([1 - w, 1 - h], 1)
        angle = (torch.rand(n, generator=g) * 2 - 1) * math.radians(PAPER_ROTATION_DEG)
        jitter = 1 + (torch.rand(n, 3, generator=g) * 2 - 1) * PAPER_JITTER
        return {"w": w, "h": h, "centre": centre, "angle": angle, "flip": flips, "jitter": jitter}
    raise DataError(f"unknown augmentation {kind!r}; choose one of {', '.join(AUGMENTATIONS)}")


def crop_flip(x: Tensor, shift: Tensor, flip: Tensor) -> Tensor:
    """Zero-pad by 4, crop back to HxW at a per-sample offset, mirror where ``flip``: one gather."""
    n, c, h, w = x.shape
    xp = F.pad(x, (4, 4, 4, 4))
    rows = shift[:, 0, None] + torch.arange(h, device=x.device)
    cols = shift[:, 1, None] + torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return xp[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def paper_augment(x: Tensor, p: dict[str, Tensor]) -> Tensor:
    """Random resized crop, rotation and flip as one affine warp, then colour jitter; ``x`` in [0, 1]."""
    cos, sin = p["angle"].cos(), p["angle"].sin()
    sx = p["w"] * torch.where(p["flip"], -1.0, 1.0)
    sy = p["h"]
    theta = torch.stack(
        [torch.stack([cos * sx, -sin * sy, p["centre"][:, 0]], 1), torch.stack([sin * sx, cos * sy, p["centre"][:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    brightness, contrast, saturation = (p["jitter"][:, i, None, None, None].to(x.dtype) for i in range(3))
    # torchvision's ColorJitter arithmetic (each step a clamped blend), in the fixed order brightness,
    # contrast, saturation (torchvision draws a random order per call)
    x = _blend(x, torch.zeros_like(x), brightness)
    x = _blend(x, _grayscale(x).mean((1, 2, 3), keepdim=True), contrast)
    if x.shape[1] == 3:
        x = _blend(x, _grayscale(x), saturation)
    return x


def _blend(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    return (factor * x + (1 - factor) * other).clamp(0, 1)


def _grayscale(x: Tensor) -> Tensor:
    """ITU-R 601-2 luma, torchvision's weights; a 1-channel image is its own grey."""
    if x.shape[1] == 1:
        return x
    return (x * x.new_tensor([0.2989, 0.587, 0.114])[:, None, None]).sum(1, keepdim=True)


class DeviceLoader:
    """Batches of normalised float images from a uint8 dataset held on ``device``.

    ``batches(epoch, start_step)`` is a pure function of (seed, epoch): the same
    permutation and augmentation every time, on any device. Under DDP each rank
    takes its slice of every global batch of the same permutation.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        *,
        batch_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        augment: str = "none",
        flip: bool = True,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
        device: torch.device | str = "cpu",
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
    ) -> None:
        if batch_size % world_size:
            raise DataError(f"batch size {batch_size} is not divisible by the {world_size} processes")
        if augment not in AUGMENTATIONS:
            raise DataError(f"unknown augmentation {augment!r}; choose one of {', '.join(AUGMENTATIONS)}")
        self.device = torch.device(device)
        self.x = x.to(self.device)
        self.y = y.to(self.device)
        self.batch_size, self.augment, self.flip = batch_size, augment, flip
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self.rank, self.world_size = rank, world_size
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        std_t = torch.tensor(std, device=self.device).view(1, -1, 1, 1)
        self.scale = 1.0 / (255.0 * std_t)
        self.shift = torch.tensor(mean, device=self.device).view(1, -1, 1, 1) / std_t

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _plan(self, epoch: int) -> tuple[Tensor, dict[str, Tensor]]:
        n = len(self.y)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        params = draw_augment_params(self.augment, n, g, self.flip)
        return perm.to(self.device), {k: v.to(self.device) for k, v in params.items()}

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        perm, params = self._plan(epoch)
        local = self.batch_size // self.world_size
        for step in range(start_step, len(self)):
            lo = step * self.batch_size
            hi = min(lo + self.batch_size, len(perm))
            # this rank's contiguous slice of the global batch
            per_rank = math.ceil((hi - lo) / self.world_size) if not self.drop_last else local
            sel = slice(lo + self.rank * per_rank, min(lo + (self.rank + 1) * per_rank, hi))
            idx = perm[sel]
            yield self._prepare(self.x[idx], {k: v[sel] for k, v in params.items()}), self.y[idx]

    def _prepare(self, xb: Tensor, p: dict[str, Tensor]) -> Tensor:
        if self.augment == "crop_flip":
            xb = crop_flip(xb, p["shift"], p["flip"])
        x = xb.float()
        if self.augment == "paper":
            x = paper_augment(x / 255.0, p) * 255.0
        return (x * self.scale - self.shift).contiguous(memory_format=self.memory_format)
