"""From images to answers: :func:`predict` and ``zoo predict``.

A model is a module, a pretrained tag (``googlenet_res5x5.cifar10_paper``), a save_pretrained
folder or file, ``hf-hub:owner/name``, or an ``.onnx`` file exported by zoo (run through
onnxruntime, described by its metadata). Images are files, folders of them (read recursively,
in name order), PIL images or tensors ((C, H, W) or (N, C, H, W), float in [0, 1] or uint8).
Each image, of any size and mode, becomes the model's input as its data contract says
(``model.data_config``; ``zoo.data.loading.image_array``), exactly as timm's eval transform makes it: upright
(EXIF), grey or RGB by the channels, resized and centre-cropped or zero-padded by the contract's
``crop_pct`` (MNIST's 28x28 digits in 32x32), scaled to [0, 1], normalised with its mean and std. Images go through in bounded batches, so a folder of
100,000 files needs no more memory than one batch.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from zoo.core.errors import ArgumentError, ZooInputError
from zoo.core.files import check_readable
from zoo.core.progress import progress_bar
from zoo.data.datasets import DataConfig
from zoo.data.loading import IMAGE_SUFFIXES, image_array, open_image
from zoo.hub.factory import load_any
from zoo.hub.weights import legacy_data_config, unwrap_model
from zoo.models.layers import ZooModel
from zoo.models.registry import check_input_size, get_pretrained_tag, list_models

__all__ = ["ONNX_PREFIX", "PROVIDER", "ImageInput", "Predictor", "onnx_session", "predict", "predictor"]

ONNX_PREFIX = "zoo."
"""The prefix of the metadata_props keys zoo writes into an exported ONNX file (export.onnx)."""

PROVIDER = "CPUExecutionProvider"
"""onnxruntime's execution provider for zoo's ONNX sessions (predict, export's checks, bench)."""

ImageInput = str | os.PathLike | Image.Image | Tensor
"""One image or a source of several: a file, a folder, a PIL image, a (C, H, W) or (N, C, H, W) tensor."""


@dataclass(frozen=True)
class Predictor:
    """Logits from a normalised batch, the model's data contract (how to make the batch), and the class names."""

    run: Callable[[Tensor], Tensor]
    data: DataConfig
    labels: tuple[str, ...] | None

    def prepare(self, images: Sequence[Image.Image]) -> Tensor:
        """PIL images as one normalised float32 batch, each placed as timm's eval transform places it."""
        x = torch.from_numpy(np.stack([image_array(im, self.data) for im in images])).float() / 255
        return (x - torch.tensor(self.data.mean).view(1, -1, 1, 1)) / torch.tensor(self.data.std).view(1, -1, 1, 1)


def predictor(model: str | os.PathLike | nn.Module) -> Predictor:
    """What runs ``model``, with its data contract; the class names only when they are the head's."""
    if isinstance(model, (str, os.PathLike)) and str(model).lower().endswith(".onnx"):
        return _onnx_predictor(Path(model))
    module = (model if isinstance(model, nn.Module) else load_any(model)).eval()
    base = unwrap_model(module)
    data = getattr(base, "data_config", None)
    if not isinstance(base, ZooModel) or not isinstance(data, DataConfig):
        raise ArgumentError("the model does not say how its inputs were normalised; build it with zoo or load zoo weights")
    dtype = next(module.parameters()).dtype

    def run(x: Tensor) -> Tensor:
        with torch.no_grad():
            return module(x.to(dtype))

    return Predictor(run, data, _labels(data.label_names, base.num_classes))


def _labels(names: Sequence[str] | None, outputs: int) -> tuple[str, ...] | None:
    return tuple(names) if names is not None and len(names) == outputs else None


def onnx_session(path: str | os.PathLike, options: Any = None) -> Any:
    """An onnxruntime CPU session of the ONNX file ``path`` (``options``: its SessionOptions); a missing, special,
    truncated or invalid file is an ArgumentError naming it."""
    import onnxruntime as ort  # noqa: PLC0415 lazy: only .onnx models need it
    from onnxruntime.capi import onnxruntime_pybind11_state as state  # noqa: PLC0415 lazy: as above

    check_readable(path, ArgumentError)
    if not Path(path).is_file():
        raise ArgumentError(f"no ONNX file at {path}; export one with `zoo export`")
    try:
        return ort.InferenceSession(str(path), options, providers=[PROVIDER])
    except (state.Fail, state.InvalidProtobuf, state.InvalidGraph, state.InvalidArgument, state.NotImplemented) as e:
        raise ArgumentError(f"onnxruntime cannot load {path} ({str(e).splitlines()[0]}); re-export it with `zoo export`") from None


def _onnx_predictor(path: Path) -> Predictor:
    session = onnx_session(path)
    props = session.get_modelmeta().custom_metadata_map
    try:
        cfg = json.loads(props[f"{ONNX_PREFIX}config"])
        data = DataConfig.from_json(cfg["data"] if "data" in cfg else _legacy(cfg, props.get(f"{ONNX_PREFIX}arch")),
                                    f"{path}: {ONNX_PREFIX}config")
        check_input_size(data.input_size, f"{path}: {ONNX_PREFIX}config input_size")  # before an image is resized to it
    except (KeyError, TypeError, ValueError, ArgumentError) as e:  # DataError included
        raise ArgumentError(f"{path} has no readable {ONNX_PREFIX}config metadata ({e}): it was not exported by zoo or "
                            "was edited; re-export it with `zoo export`") from None
    name = session.get_inputs()[0].name
    return Predictor(lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0]), data,
                     _labels(data.label_names, cfg.get("num_classes", -1)))


def _legacy(cfg: dict[str, Any], arch: str | None) -> dict[str, Any]:
    """The data contract of a file exported before zoo recorded it: its loose fields, with the padding rule of its
    tag's dataset when it did not record one either."""
    tag = f"{arch}.{cfg.get('tag')}"
    dataset = get_pretrained_tag(tag).dataset if cfg.get("tag") and tag in list_models(pretrained=True) else None
    return legacy_data_config({**cfg, "dataset": dataset})


def _expand(images: ImageInput | Iterable[ImageInput]) -> Iterator[tuple[str, Any]]:
    """(name, one image's source) for every image the argument holds, lazily (a folder is listed, not read)."""
    if isinstance(images, (str, os.PathLike, Image.Image, Tensor)):
        images = [images]
    for i, item in enumerate(images):
        if isinstance(item, Tensor):
            batch = item.unsqueeze(0) if item.ndim == 3 else item
            if batch.ndim != 4 or batch.shape[1] not in (1, 3):
                raise ZooInputError(f"a tensor image is (C, H, W) or (N, C, H, W) with 1 or 3 channels (grey or RGB), "
                                    f"got shape {tuple(item.shape)}")
            _check_values(batch, f"tensor {i}")
            yield from ((f"tensor {i}[{j}]", t) for j, t in enumerate(batch))
        elif isinstance(item, Image.Image):
            yield f"image {i}", item
        elif Path(item).is_dir():
            yield from ((str(p), p) for p in sorted(Path(item).rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield str(item), Path(item)


def _check_values(x: Tensor, name: str) -> None:
    """Refuse a tensor image that has no pixels, a dtype that is not an image's, non-finite floats, or integers outside
    0..255 (a cast to uint8 would wrap them): each answer would be a confident top-5 of nothing."""
    fix = "pass float images in [0, 1] or integer images in 0..255"
    if not (x.is_floating_point() or x.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)):
        raise ZooInputError(f"{name} is {x.dtype}, not an image's dtype; {fix}")
    if x.numel() == 0:
        raise ZooInputError(f"{name} has an empty dimension (shape {tuple(x.shape)}); {fix}")
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise ZooInputError(f"{name} holds NaN or infinite values; {fix}")
    if not x.is_floating_point() and (x.min() < 0 or x.max() > 255):
        raise ZooInputError(f"{name} holds integers outside 0..255 ({x.min().item()} to {x.max().item()}); {fix}")


def _to_pil(source: Any) -> Image.Image:
    if isinstance(source, Tensor):
        x = source.detach().cpu()
        if x.is_floating_point():
            x = (x.clamp(0, 1) * 255).round()
        array = x.to(torch.uint8).permute(1, 2, 0).numpy()
        return Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
    return open_image(source)


def predict(images: ImageInput | Iterable[ImageInput], model: str | os.PathLike | nn.Module, top_k: int = 5,
            batch_size: int = 256, progress: bool = False) -> list[dict[str, Any]]:
    """Per image: its name (the path, or its place among the inputs) and the ``top_k`` classes, most probable
    first, as {label, index, probability}; labels are the model's own class names, else the indices."""
    if top_k < 1 or batch_size < 1:
        raise ArgumentError(f"top_k and batch_size must be >= 1, got {top_k} and {batch_size}")
    p = predictor(model)
    results: list[dict[str, Any]] = []
    items = _expand(images)
    bar = progress_bar(progress, 0, "predict")
    while chunk := list(islice(items, batch_size)):
        probs = p.run(p.prepare([_to_pil(src) for _, src in chunk])).float().softmax(dim=1)
        values, indices = probs.topk(min(top_k, probs.shape[1]), dim=1)
        for (name, _), v, ix in zip(chunk, values.tolist(), indices.tolist()):
            top = [{"label": p.labels[i] if p.labels else str(i), "index": int(i), "probability": float(q)}
                   for q, i in zip(v, ix)]
            results.append({"image": name, "top": top})
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    if not results:
        raise ZooInputError("no images to predict: the folders hold no image files "
                            f"({'/'.join(IMAGE_SUFFIXES)})")
    return results
