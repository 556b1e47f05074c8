"""From image files to answers: ``zoo predict`` and :func:`predict`.

A model is a pretrained tag (``googlenet_res5x5.cifar10_paper``), a
save_pretrained folder or file, ``hf-hub:owner/name``, or an ``.onnx`` file
exported by zoo (run through onnxruntime, described by its metadata). Each image,
of any size and mode, becomes the model's input as its weights were trained:
grey for one channel, resized to the input size (MNIST's convention: a one-channel
32x32 input is a 28x28 image zero-padded by 2), scaled to [0, 1], normalised
with the model's mean and std.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.errors import ArgumentError, ZooInputError
from zoo.factory import create_model
from zoo.hub import HF_PREFIX, load_model

__all__ = ["ONNX_PREFIX", "load_images", "predict", "predictor"]

ONNX_PREFIX = "zoo."
"""The prefix of the metadata_props keys zoo writes into an exported ONNX file (export.onnx)."""


def load_images(paths: Sequence[str | os.PathLike], cfg: dict[str, Any]) -> Tensor:
    """The files as one normalised (N, C, H, W) float32 batch for a model whose pretrained_cfg is ``cfg``."""
    from PIL import Image, UnidentifiedImageError  # lazy: only predicting reads image files

    c, h, w = cfg["input_size"]
    pad = 2 if c == 1 and (h, w) == (32, 32) else 0  # zoo's MNIST: 28x28 digits padded to 32x32
    batch = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image = image.convert("L" if c == 1 else "RGB").resize((w - 2 * pad, h - 2 * pad), Image.BILINEAR)
                array = np.asarray(image, dtype=np.float32) / 255.0
        except (OSError, UnidentifiedImageError) as e:
            raise ZooInputError(f"{path} is not an image zoo can read ({e}); pass PNG or JPEG files") from None
        x = torch.from_numpy(array).reshape(h - 2 * pad, w - 2 * pad, -1).permute(2, 0, 1)
        batch.append(F.pad(x, (pad, pad, pad, pad)))
    mean = torch.tensor(cfg["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, -1, 1, 1)
    return (torch.stack(batch) - mean) / std


Predictor = tuple[Callable[[Tensor], Tensor], dict[str, Any]]
"""Logits from a normalised batch, and the pretrained_cfg that says how to make the batch."""


def predictor(model: str | os.PathLike | nn.Module) -> Predictor:
    """What runs ``model``, and its configuration (input size, mean, std, label names)."""
    if isinstance(model, nn.Module):
        module = model.eval()
    elif str(model).endswith(".onnx"):
        return _onnx_predictor(Path(model))
    elif str(model).startswith(HF_PREFIX) or Path(model).exists():
        module = load_model(model).eval()
    else:
        module = create_model(str(model), pretrained=True).eval()
    cfg = getattr(module, "pretrained_cfg", None)
    if not cfg or "mean" not in cfg:
        raise ArgumentError("the model does not say how its inputs were normalised; build it with zoo or load zoo weights")

    def run(x: Tensor) -> Tensor:
        with torch.no_grad():
            return module(x.to(next(module.parameters()).dtype))

    return run, cfg


def _onnx_predictor(path: Path) -> Predictor:
    import onnxruntime as ort  # lazy: only .onnx models need it
    from onnxruntime.capi import onnxruntime_pybind11_state as state  # lazy: as above

    if not path.is_file():
        raise ArgumentError(f"no ONNX file at {path}; export one with `zoo export`")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except (state.Fail, state.InvalidProtobuf, state.InvalidGraph, state.InvalidArgument, state.NotImplemented) as e:
        raise ArgumentError(f"onnxruntime cannot load {path} ({str(e).splitlines()[0]}); re-export it with `zoo export`") from None
    props = session.get_modelmeta().custom_metadata_map
    try:
        cfg = json.loads(props[f"{ONNX_PREFIX}config"])
        if len(cfg["input_size"]) != 3 or not cfg["mean"] or not cfg["std"]:
            raise ValueError("incomplete")
    except (KeyError, TypeError, ValueError):
        raise ArgumentError(f"{path} has no readable {ONNX_PREFIX}config metadata (input size, mean, std): it was not "
                            "exported by zoo or was edited; re-export it with `zoo export`") from None
    name = session.get_inputs()[0].name
    return (lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])), cfg


def predict(images: Sequence[str | os.PathLike], model: str | os.PathLike | nn.Module, top_k: int = 5) -> list[dict[str, Any]]:
    """Per image: its path and the ``top_k`` classes, most probable first, as {label, index, probability}."""
    if top_k < 1:
        raise ArgumentError(f"top_k must be >= 1, got {top_k}")
    run, cfg = predictor(model)
    probs = run(load_images(images, cfg)).float().softmax(dim=1)
    labels = cfg.get("label_names") or [str(i) for i in range(probs.shape[1])]
    values, indices = probs.topk(min(top_k, probs.shape[1]), dim=1)
    return [
        {"image": str(path), "top": [{"label": labels[i], "index": int(i), "probability": float(p)} for p, i in zip(v, ix)]}
        for path, v, ix in zip(images, values.tolist(), indices.tolist())
    ]
