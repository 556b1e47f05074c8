"""Datasets as tensors: loading what a :class:`~zoo.data.datasets.DataSpec` describes, reading images, and a
device-resident loader with batched augmentation.

A spec's images come from, in order: its arrays in memory, its image folder (``folder:PATH``, one
subfolder per class, decoded at the model's input size), or ``<name>.npz`` in a directory (``--data-dir``
or ``$ZOO_DATA_DIR``; uint8 arrays ``x_train``, ``y_train``, ``x_test``, ``y_test``, images HWC), else
torchvision's download; or, only when asked for, a synthetic set for tests and benchmarks.

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
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from zoo.core.errors import DataError, ZooInputError
from zoo.core.files import check_inside, check_readable
from zoo.core.progress import progress_bar
from zoo.data.datasets import AUGMENTATIONS, FOLDER_PREFIX, Augment, DataConfig, DataSpec, get_spec


@dataclass
class Dataset:
    """uint8 NCHW images and int64 labels; ``x_val`` is a held-out part of train, or None."""

    spec: DataSpec
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


def _dataset(spec: DataSpec, x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor, source: str) -> Dataset:
    return Dataset(spec, x_train, y_train, x_test, y_test, source, arrays_sha256(x_train, y_train, x_test, y_test))


def _to_nchw(x: np.ndarray, spec: DataSpec) -> Tensor:
    """Stored HWC (or HW for one channel) images as the model's NCHW input: zero-padded by the spec's ``pad``."""
    t = torch.from_numpy(np.ascontiguousarray(x))
    t = t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2).contiguous()
    return F.pad(t, (spec.pad,) * 4) if spec.pad else t


def _stored_shape(spec: DataSpec) -> tuple[int, ...]:
    h, w = spec.stored_size
    return (h, w) if spec.in_chans == 1 else (h, w, spec.in_chans)


def _check_arrays(arrays: dict[str, np.ndarray], spec: DataSpec, where: str) -> None:
    shape = _stored_shape(spec)
    for split in ("train", "test"):
        x, y = arrays.get(f"x_{split}"), arrays.get(f"y_{split}")
        if x is None or y is None:
            raise DataError(f"{where} lacks x_{split}/y_{split}; expected uint8 arrays x_train, y_train, x_test, y_test")
        if y.dtype.kind not in "iu" or y.ndim != 1:
            raise DataError(f"{where}: y_{split} is {y.dtype}{y.shape}; labels must be a 1-D array of integers 0..{spec.num_classes - 1}")
        if x.dtype != np.uint8 or x.shape[1:] != shape or len(x) != len(y):
            raise DataError(
                f"{where}: x_{split} is {x.dtype}{x.shape}, y_{split} has {len(y)} labels; "
                f"expected uint8 (N, {', '.join(map(str, shape))}) images (HWC) and N labels"
            )
        if len(y) and (y.min() < 0 or y.max() >= spec.num_classes):
            raise DataError(f"{where}: y_{split} holds labels outside 0..{spec.num_classes - 1}")


def _from_npz(path: Path, spec: DataSpec) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as e:  # numpy's advice for pickled data (a non-zip file, object arrays) is to unpickle it
        detail = "pickled data, which zoo never loads" if "pickle" in str(e) else f"ValueError: {e}"
        raise DataError(f"{path} is not a readable .npz archive ({detail}); re-create it with uint8 x_train, y_train, "
                        "x_test, y_test (np.savez)") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:  # truncated
        raise DataError(f"{path} is not a readable .npz archive ({type(e).__name__}: {e}); restore or re-create it") from None
    return _from_arrays(arrays, spec, str(path), source=f"npz:{path}")


def _from_arrays(arrays: Mapping[str, np.ndarray], spec: DataSpec, where: str, source: str) -> Dataset:
    """The checked uint8 x_train, y_train, x_test, y_test arrays of ``where`` as a Dataset."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    _check_arrays(arrays, spec, where)
    return _dataset(
        spec,
        _to_nchw(arrays["x_train"], spec),
        torch.from_numpy(arrays["y_train"].astype(np.int64)),
        _to_nchw(arrays["x_test"], spec),
        torch.from_numpy(arrays["y_test"].astype(np.int64)),
        source=source,
    )


def _from_torchvision(root: Path, spec: DataSpec) -> Dataset:
    import torchvision  # noqa: PLC0415 lazy: only the download path needs it

    if spec.torchvision is None:  # find_npz refuses such a spec first
        raise DataError(f"{spec.name}: no torchvision class downloads it; pass the directory that holds {spec.name}.npz")
    cls = getattr(torchvision.datasets, spec.torchvision)
    splits = [cls(str(root), train=train, download=True) for train in (True, False)]
    arrays = {}
    for split, ds in zip(("train", "test"), splits):
        arrays[f"x_{split}"] = np.asarray(ds.data, dtype=np.uint8)
        arrays[f"y_{split}"] = np.asarray(ds.targets, dtype=np.int64)
    return _from_arrays(arrays, spec, f"torchvision {spec.torchvision} in {root}", source=f"torchvision:{root}")


def synthetic(name: str | DataSpec, n_train: int = 2048, n_test: int = 512, seed: int = 0) -> Dataset:
    """A learnable stand-in with the dataset's shapes and classes: each class is a fixed random low-frequency
    pattern plus per-image noise and shift. For tests and benchmarks only."""
    spec = name if isinstance(name, DataSpec) else get_dataset_spec(name)
    c, h, w = spec.input_size
    g = torch.Generator().manual_seed(seed)
    protos = F.interpolate(torch.rand(spec.num_classes, c, 4, 4, generator=g), size=(h, w), mode="bilinear")

    def draw(n: int) -> tuple[Tensor, Tensor]:
        y = torch.randint(0, spec.num_classes, (n,), generator=g)
        x = protos[y] + 0.25 * torch.randn(n, c, h, w, generator=g)
        return (x.clamp(0, 1) * 255).round().to(torch.uint8), y

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    return _dataset(spec, x_train, y_train, x_test, y_test, source=f"synthetic:{n_train}+{n_test}:seed{seed}")


def get_dataset_spec(name: str, data: DataConfig | None = None, in_chans: int | None = None) -> DataSpec:
    """The spec of a registered dataset, or of ``folder:PATH`` (:func:`folder_spec`: the folder options apply to it
    alone)."""
    if name.startswith(FOLDER_PREFIX):
        return folder_spec(name[len(FOLDER_PREFIX):], data, in_chans)
    return get_spec(name)


def load_dataset(
    name: str | DataSpec,
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
    val_split: int = 0,
    seed: int = 0,
    progress: bool = False,
) -> Dataset:
    """Load a dataset (a name, ``folder:PATH`` or a spec): its arrays, its image folder, or its ``<name>.npz``.

    An npz comes from ``data_dir`` / ``$ZOO_DATA_DIR``, which must hold it: nothing is created or downloaded
    there, so a mistyped path is an error that says where it looked. Without one, torchvision downloads into
    ``~/.cache/zoo/datasets`` (``download=False`` refuses that too). ``val_split`` holds out that many training
    images (a seeded random choice) as a validation set, so the learning-rate plateau need not watch the test set.
    ``progress``: a bar while an image folder is read.
    """
    spec = name if isinstance(name, DataSpec) else get_dataset_spec(name)
    if spec.arrays is not None:
        ds = _from_arrays(spec.arrays(), spec, f"dataset {spec.name!r}", source=f"arrays:{spec.name}")
    elif spec.root is not None:
        ds = _from_folder(spec, spec.root, progress)
    else:
        ds = _from_npz_or_download(spec, data_dir, download)
    if val_split:
        ds = split_validation(ds, val_split, seed)
    return ds


def find_npz(spec: DataSpec, data_dir: str | os.PathLike | None, download: bool = True) -> Path | None:
    """The ``<name>.npz`` :func:`load_dataset` would read for ``spec`` from ``data_dir`` / ``$ZOO_DATA_DIR`` (None: it
    would download); a missing or special file is a DataError saying where it looked. Reads nothing, so a plan of
    many runs can check each one's data before the first starts."""
    name = spec.name
    data_dir = data_dir or os.environ.get("ZOO_DATA_DIR")
    if data_dir:
        npz = Path(data_dir) / f"{name}.npz"
        check_readable(npz, DataError)
        if not npz.is_file():
            raise DataError(f"{name}: looked for {npz} (--data-dir / $ZOO_DATA_DIR) and found no such file; pass the "
                            f"directory that holds {name}.npz (uint8 x_train, y_train, x_test, y_test), or no directory "
                            "to download it")
        return npz
    if not download or spec.torchvision is None:
        raise DataError(f"{name}: pass the directory that holds {name}.npz (--data-dir, data_dir or $ZOO_DATA_DIR)")
    return None


def _from_npz_or_download(spec: DataSpec, data_dir: str | os.PathLike | None, download: bool) -> Dataset:
    npz = find_npz(spec, data_dir, download)
    if npz is not None:
        return _from_npz(npz, spec)
    name = spec.name
    root = Path.home() / ".cache" / "zoo" / "datasets"
    try:
        return _from_torchvision(root, spec)
    except Exception as e:  # torchvision raises URLError, RuntimeError, ... offline, in messages of several lines
        raise DataError(
            f"{name}: no --data-dir given and torchvision's download into {root} failed ({type(e).__name__}: {' '.join(str(e).split())}); "
            f"pass --data-dir DIR holding {name}.npz (uint8 x_train, y_train, x_test, y_test) or use a synthetic set"
        ) from e


SAMPLE_FILE = Path(__file__).parents[1] / "eval_sample.npz"
"""zoo/eval_sample.npz (benchmarks/make_eval_sample.py): per dataset whose spec has a ``sample``, test images for
accuracy and training images for int8 calibration, a seeded class-stratified sample of the official splits."""


def load_sample(name: str) -> Dataset:
    """The shipped sample of ``name``: its test part measures accuracy with no download (a sample's accuracy)."""
    spec = get_spec(name)
    if spec.sample is None:
        raise DataError(f"zoo ships no sample of {name}; pass --data-dir with {name}.npz")
    if not SAMPLE_FILE.is_file():
        raise DataError(f"{SAMPLE_FILE} is missing from this install; pass --data-dir with {name}.npz")
    with np.load(SAMPLE_FILE, allow_pickle=False) as npz:
        arrays = {k.removeprefix(f"{name}_"): npz[k] for k in npz.files if k.startswith(f"{name}_")}
    return _from_arrays(arrays, spec, f"{SAMPLE_FILE} ({name})", source=f"sample:{len(arrays.get('y_test', ()))} test images")


# ---------------------------------------------------------------------------- images and image folders

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
FOLDER_TEST_FRACTION = 0.2
"""An image folder has no official test split: this share of each class (seeded, at least one image) is held out."""
FOLDER_INPUT_SIZE = (3, 32, 32)
"""The input of a model trained from scratch on an image folder (fine-tuning takes the model's own)."""


def open_image(source: str | os.PathLike | Image.Image) -> Image.Image:
    """An image file (or a PIL image) upright, its EXIF orientation applied, refused past Pillow's
    decompression-bomb limit (a huge image would take all the memory)."""
    where = "the image" if isinstance(source, Image.Image) else str(source)
    if not isinstance(source, Image.Image):
        check_readable(source, ZooInputError)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = source if isinstance(source, Image.Image) else Image.open(source)
            image.load()
            return ImageOps.exif_transpose(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ZooInputError(f"{where} is larger than Pillow's limit of {Image.MAX_IMAGE_PIXELS:,} pixels (a decompression "
                            "bomb guard); resize it first") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise ZooInputError(f"{where} is not an image zoo can read ({e}); pass PNG or JPEG files") from None


def image_array(image: Image.Image, cfg: DataConfig) -> np.ndarray:
    """One image as a model's uint8 (C, H, W) input before normalisation, placed by the model's data contract exactly
    as timm's eval transform (``create_transform(**resolve_data_config(model=m))``) places it: grey or RGB by the
    channels, each side resized (bilinear) to ``cfg.scale_size``, then centre-cropped or zero-padded to the input
    (MNIST's 28x28 digits in 32x32)."""
    c, h, w = cfg.input_size
    sh, sw = cfg.scale_size
    x = np.asarray(image.convert("L" if c == 1 else "RGB").resize((sw, sh), Image.Resampling.BILINEAR), dtype=np.uint8)
    return center_crop(x.reshape(sh, sw, -1).transpose(2, 0, 1), h, w)


def center_crop(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """(C, H', W') to (C, h, w): zero-padded where smaller (the odd pixel after), then cropped about the centre, as
    torchvision's center_crop does it (timm's eval transform uses it)."""
    dh, dw = max(h - x.shape[1], 0), max(w - x.shape[2], 0)
    if dh or dw:
        x = np.pad(x, ((0, 0), (dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2)))
    top, left = int(round((x.shape[1] - h) / 2.0)), int(round((x.shape[2] - w) / 2.0))
    return x[:, top:top + h, left:left + w]


def scan_folder(root: str | os.PathLike) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    """(class names, [(image file, class index)]) of an image folder: one subfolder per class, images in them.

    Refused, before anything is read: a missing or empty folder, one class, a class without images, images
    beside the class folders, folders inside a class folder, an image that is not a regular file (a FIFO would
    block the read) or that a link takes out of the folder (checkpoint folders' rule)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{FOLDER_PREFIX}{root}: no such folder; pass a folder with one subfolder of images per class")
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    loose = [p.name for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if loose:
        raise DataError(f"{root} holds images beside its class folders ({loose[0]}): put every image in the subfolder "
                        "named for its class")
    classes = [p for p in entries if p.is_dir()]
    if len(classes) < 2:
        raise DataError(f"{root} has {len(classes)} class folder(s); a classifier needs at least 2 (one subfolder of "
                        "images per class)")
    files = []
    for index, folder in enumerate(classes):
        inside = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        if nested := [p.name for p in inside if p.is_dir()]:
            raise DataError(f"{folder} holds a folder ({nested[0]}): class folders hold images, one level deep")
        images = [p for p in inside if p.suffix.lower() in IMAGE_SUFFIXES]
        for image in images:
            check_inside(image, root, DataError, "an image folder")
            check_readable(image, DataError)
        if len(images) < 2:
            raise DataError(f"class folder {folder} holds {len(images)} image(s) ({'/'.join(IMAGE_SUFFIXES)}); each "
                            "class needs at least 2, one to train on and one to test")
        files += [(p, index) for p in images]
    return tuple(p.name for p in classes), files


GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})
"""PIL modes of single-channel images: a folder holding only these trains 1-channel models."""


def folder_spec(root: str | os.PathLike, data: DataConfig | None = None, in_chans: int | None = None) -> DataSpec:
    """The spec of an image folder (checked by :func:`scan_folder`): its classes, and the input of the model it
    trains. ``data``, the contract of the model being fine-tuned or evaluated, gives the input size, statistics and
    placement (fitted to ``in_chans`` when given: an adapted first convolution); else a new model's input is
    :data:`FOLDER_INPUT_SIZE` with ``in_chans`` channels, by default the folder's own (1 when every image is
    greyscale, else 3), and statistics measured on the training images when they are loaded. A folder's images are
    not taken as mirror-symmetric (no flips); ``zoo train --mirror`` says otherwise."""
    root = Path(root)
    labels, files = scan_folder(root)
    n_test = len(_test_indices([label for _, label in files], len(labels)))
    if data is not None:
        data = data.for_model(in_chans or data.input_size[0], len(labels))
        size, stats, pad = data.input_size, (data.mean, data.std), data.pad
    else:
        chans = in_chans or (1 if all(_mode(path) in GREY_MODES for path, _ in files) else 3)
        size, stats, pad = (chans, *FOLDER_INPUT_SIZE[1:]), ((0.5,) * chans, (0.25,) * chans), 0
    return DataSpec(f"{FOLDER_PREFIX}{root}", root.name, labels, *stats, size, pad=pad, mirror=False,
                    splits=(len(files) - n_test, n_test), root=root, measure_stats=data is None)


def _mode(path: Path) -> str:
    """An image file's PIL mode, read from its header (refused, naming the file, when it is no image)."""
    try:
        with Image.open(path) as image:
            return image.mode
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise DataError(f"{path} is not an image zoo can read ({e}); remove it or pass PNG or JPEG files") from None


def _channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std on the [0, 1] scale of uint8 NCHW images, from exact integer sums (no float copy of
    the images); a blank channel's std is floored so that it never divides by zero."""
    n = x.shape[0] * x.shape[2] * x.shape[3]
    sums = x.sum((0, 2, 3), dtype=np.int64)
    squares = np.einsum("nchw,nchw->c", x, x, dtype=np.int64)
    mean = sums / n / 255.0
    std = np.sqrt(np.maximum(squares / n / 255.0**2 - mean**2, 0.0))
    return tuple(map(float, mean)), tuple(float(max(s, 1e-3)) for s in std)


def _test_indices(labels: Sequence[int] | np.ndarray, num_classes: int) -> np.ndarray:
    """The held-out test images of a folder: a seeded FOLDER_TEST_FRACTION of each class, at least one."""
    rng = np.random.default_rng(0)
    y = np.asarray(labels)
    picked = []
    for k in range(num_classes):
        idx = np.flatnonzero(y == k)
        picked.append(rng.choice(idx, max(1, round(len(idx) * FOLDER_TEST_FRACTION)), replace=False))
    return np.sort(np.concatenate(picked))


def _from_folder(spec: DataSpec, root: Path, progress: bool = False) -> Dataset:
    """Decode every image of the folder ``root`` (the spec's) at the spec's input size; measure mean and std when the
    spec asks."""
    labels, files = scan_folder(root)
    if labels != spec.label_names:
        raise DataError(f"{root} changed since it was scanned (classes {labels}); run again")
    bar = progress_bar(progress, len(files), f"reading {root.name}")
    cfg = spec.data_config()
    x = np.empty((len(files), *spec.input_size), np.uint8)
    for i, (path, _) in enumerate(files):
        try:
            x[i] = image_array(open_image(path), cfg)
        except ZooInputError as e:
            raise DataError(f"{FOLDER_PREFIX}{root}: {e}") from None
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    y = np.array([label for _, label in files], np.int64)
    test = np.zeros(len(y), bool)
    test[_test_indices(y, len(labels))] = True
    x_train = x[~test]
    if spec.measure_stats:
        mean, std = _channel_stats(x_train)
        spec = dataclasses.replace(spec, mean=mean, std=std, measure_stats=False)
    t = torch.from_numpy
    return _dataset(spec, t(x_train), t(y[~test]), t(x[test]), t(y[test]), source=f"{FOLDER_PREFIX}{root}")


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

# The paper names its CIFAR-10 transforms (horizontal flip, rotation, colour
# jitter, random resized crop) but not their parameters; these are ours.
PAPER_ROTATION_DEG = 15.0
PAPER_JITTER = 0.2  # brightness, contrast and saturation factors in [1 - j, 1 + j]
PAPER_CROP_SCALE = (0.6, 1.0)
PAPER_CROP_RATIO = (3 / 4, 4 / 3)


def draw_augment_params(kind: Augment, n: int, g: torch.Generator, flip: bool = True) -> dict[str, Tensor]:
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
        augment: Augment = "none",
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
