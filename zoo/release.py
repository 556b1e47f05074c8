"""Turn a finished training run into a bundled pretrained tag.

``release(run_dir, tag)`` writes ``model_cards/<arch>.<tag>/``, the folder
``zoo push`` uploads and ``create_model("<arch>.<tag>", pretrained=True)``
loads: the weights in fp16 without training-only parts (GoogLeNet's auxiliary
classifiers), ``config.json``, the card and the training curve. The card's
accuracy is measured here, on the full test set, on exactly what users load
(the fp16 weights, upcast to fp32 on the CPU), so CI can re-measure it. The
tag is then pinned, by sha256, in ``zoo/pretrained.json``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.cards import TOP1, TOP5, read_run, write_bundle_card
from zoo.checkpoint import WEIGHTS_NAME, atomic_write_bytes, sha256_file
from zoo.data import DeviceLoader, load_dataset
from zoo.errors import CheckpointError
from zoo.hub import load_model, save_pretrained
from zoo.registry import BUNDLED_DIR, TAGS_FILE, create_model
from zoo.train import evaluate, resolve_device

__all__ = ["bundle_model", "release", "measure_accuracy"]

BUNDLE_DTYPE = torch.float16


def bundle_model(model: nn.Module, model_kwargs: dict[str, Any], arch: str) -> tuple[nn.Module, dict[str, Any]]:
    """The inference model users get: aux heads dropped (they only serve training), weights in fp16."""
    kwargs = dict(model_kwargs)
    if getattr(model, "aux_logits", False):
        kwargs["aux_logits"] = False
    bundle = create_model(arch, **kwargs)
    keep = {k: v for k, v in model.state_dict().items() if k in bundle.state_dict()}
    bundle.load_state_dict(keep, strict=True)
    return bundle.to(BUNDLE_DTYPE).eval(), kwargs


def measure_accuracy(model: nn.Module, dataset: str, data_dir: str | None, device: str = "cpu") -> dict[str, Any]:
    """Top-1 / top-5 error and per-class accuracy (%) of ``model`` in fp32 on the full test set, single view."""
    data = load_dataset(dataset, data_dir, download=False)
    info = data.info
    dev = resolve_device(device)
    loader = DeviceLoader(data.x_test, data.y_test, batch_size=500, mean=info.mean, std=info.std, shuffle=False,
                          drop_last=False, device=dev)
    result = evaluate(model.float().to(dev), loader, info.num_classes, tta_flip=False, bf16=False)
    confusion = result["confusion"]
    per_class = (confusion.diag().float() / confusion.sum(1).clamp(min=1).float() * 100).tolist()
    return {"err": result["err"], "top5_err": result["top5_err"], "images": len(data.y_test),
            "per_class_acc": dict(zip(info.label_names, per_class))}


def release(
    run_dir: str | os.PathLike,
    tag: str,
    *,
    data_dir: str | None = None,
    out_root: str | os.PathLike = BUNDLED_DIR,
    tags_file: str | os.PathLike = TAGS_FILE,
    device: str = "cpu",
) -> Path:
    """Bundle the finished run in ``run_dir`` as ``<arch>.<tag>``; returns the folder written."""
    run_dir = Path(run_dir)
    run, history = read_run(run_dir)
    if str(run.get("dataset_source", "")).startswith("synthetic"):
        raise CheckpointError(f"{run_dir} was trained on synthetic images; only runs on the real dataset become tags")
    trained = load_model(run_dir / "model")
    bundle, kwargs = bundle_model(trained, run["model_kwargs"], run["arch"])
    accuracy = measure_accuracy(_upcast(bundle, run["arch"], kwargs), run["dataset"], data_dir, device)
    metrics = {TOP1: accuracy["err"], TOP5: accuracy["top5_err"]}
    if "val_err" in history[-1]:
        metrics["final_val_err"] = history[-1]["val_err"]
    name = f"{run['arch']}.{tag}"
    folder = Path(out_root) / name
    save_pretrained(
        bundle, folder, arch=run["arch"], model_kwargs=kwargs, tag=tag, dataset=run["dataset"],
        dataset_sha256=run["dataset_sha256"], input_size=run["input_size"], mean=run["mean"], std=run["std"],
        label_names=run["label_names"], recipe=run["recipe"], metrics=metrics, history=history,
    )
    write_bundle_card(folder, run, history, accuracy, pretrained_name=name)
    _pin(Path(tags_file), name, folder, run, kwargs, metrics)
    return folder


def _upcast(bundle: nn.Module, arch: str, kwargs: dict[str, Any]) -> nn.Module:
    """An fp32 copy of the fp16 bundle: what ``create_model(..., pretrained=True)`` gives."""
    model = create_model(arch, **kwargs).eval()
    model.load_state_dict({k: v.float() for k, v in bundle.state_dict().items()}, strict=True)
    return model


def _pin(tags_file: Path, name: str, folder: Path, run: dict[str, Any], kwargs: dict[str, Any], metrics: dict[str, float]) -> None:
    """Add or replace ``name``'s entry in pretrained.json, pinned by the bundled file's sha256."""
    entries = json.loads(tags_file.read_text()) if tags_file.is_file() else []
    if not isinstance(entries, list):
        raise CheckpointError(f"{tags_file} is not a JSON list of tags; restore it from git")
    arch, tag = name.split(".", 1)
    entry = {
        "arch": arch, "tag": tag, "sha256": sha256_file(folder / WEIGHTS_NAME), "model_kwargs": kwargs,
        "input_size": run["input_size"], "mean": run["mean"], "std": run["std"], "label_names": run["label_names"],
        "metrics": {k: round(v, 4) for k, v in metrics.items()}, "recipe": run["recipe"],
        "hf_hub_id": None, "revision": None,
    }
    entries = sorted([e for e in entries if f"{e['arch']}.{e['tag']}" != name] + [entry], key=lambda e: (e["arch"], e["tag"]))
    atomic_write_bytes(tags_file, (json.dumps(entries, indent=2) + "\n").encode())
