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

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.core.errors import ArgumentError, CheckpointError
from zoo.core.files import atomic_write_bytes, check_writable, sha256_file
from zoo.hub.cards import TOP1, TOP5, read_run, write_bundle_card
from zoo.hub.factory import create_model
from zoo.hub.pretrained import load_model, read_meta, save_pretrained, timm_config
from zoo.hub.rundir import RunDir, RunRecord
from zoo.hub.weights import CONFIG_NAME, WEIGHTS_NAME
from zoo.models.layers import ZooModel
from zoo.models.registry import BUNDLED_DIR, TAGS_FILE, PretrainedTag, read_tags, tag_from_json
from zoo.train.loop import evaluate_model, resolve_device

__all__ = ["bundle_model", "release"]

BUNDLE_DTYPE = torch.float16
TAG_PATTERN = re.compile(r"[a-z0-9][a-z0-9_]*")
"""A tag names a folder and a timm config (``<arch>.<tag>``): lowercase letters, digits and underscores."""


def bundle_model(model: ZooModel, model_kwargs: dict[str, Any], arch: str) -> tuple[nn.Module, dict[str, Any]]:
    """The inference model users get: aux heads dropped (they only serve training), weights in fp16."""
    kwargs = {**model_kwargs, **model.inference_kwargs()}  # e.g. GoogLeNet's aux heads, which only serve training
    bundle = create_model(arch, **kwargs)
    wanted = bundle.state_dict()
    bundle.load_state_dict({k: v for k, v in model.state_dict().items() if k in wanted}, strict=True)
    return bundle.to(BUNDLE_DTYPE).eval(), kwargs


def release(
    run_dir: str | os.PathLike,
    tag: str,
    *,
    data_dir: str | None = None,
    out_root: str | os.PathLike = BUNDLED_DIR,
    tags_file: str | os.PathLike = TAGS_FILE,
    device: str = "cpu",
    card_only: bool = False,
) -> Path:
    """Bundle the finished run in ``run_dir`` as ``<arch>.<tag>``; returns the folder written. Every input (tag, device,
    run record and history, output paths, tags file, weights) is checked before anything is written."""
    if not TAG_PATTERN.fullmatch(tag):
        raise ArgumentError(f"tag {tag!r} must be lowercase letters, digits and underscores (e.g. cifar10_paper): "
                            "it names a folder and the timm config <arch>.<tag>")
    resolve_device(device)
    record = RunDir(run_dir)
    run, history = read_run(record.path)
    name = f"{run.arch}.{tag}"
    folder = Path(out_root) / name
    check_writable(folder, folder=True)
    check_writable(tags_file)
    entries = read_tags(Path(tags_file))  # a damaged tags file is refused before anything is written
    if run.dataset_source.startswith("synthetic"):
        raise CheckpointError(f"{record.path} was trained on synthetic images; only runs on the real dataset become tags")
    if card_only:
        if name not in entries:
            raise CheckpointError(f"{name} is not pinned in {tags_file}: release the run first (without --card-only)")
        return _refresh(folder, entries[name], run, history, data_dir, device)
    trained = load_model(record.model)
    bundle, kwargs = bundle_model(trained, run.model_kwargs, run.arch)
    # what users load: the fp16 weights upcast to fp32, one view, no autocast
    accuracy = evaluate_model(_upcast(bundle, run.arch, kwargs), run.dataset, data_dir, device=device, bf16=False,
                              download=False)
    metrics = {TOP1: accuracy["err"], TOP5: accuracy["top5_err"]}
    if "val_err" in history[-1]:
        metrics["final_val_err"] = history[-1]["val_err"]
    data = trained.data_config  # the run's data contract and provenance, as its trainer recorded them
    save_pretrained(bundle, folder, arch=run.arch, model_kwargs=kwargs, data=data, tag=tag, recipe=run.recipe,
                    metrics=metrics, history=history)
    write_bundle_card(folder, run, history, accuracy, pretrained_name=name)
    _write_records(folder, run, history)
    entry = PretrainedTag(
        arch=run.arch, tag=tag, sha256=sha256_file(folder / WEIGHTS_NAME), model_kwargs=kwargs, recipe=run.recipe,
        data=dataclasses.replace(data, metrics={k: round(v, 4) for k, v in metrics.items()}),
    )
    tag_from_json(entry.to_json(), f"the new entry {name}")  # what read_tags would refuse is never written
    tags = sorted({**entries, name: entry}.values(), key=lambda e: (e.arch, e.tag))
    atomic_write_bytes(Path(tags_file), (json.dumps([t.to_json() for t in tags], indent=2) + "\n").encode())
    return folder


def _write_records(folder: Path, run: RunRecord, history: list[dict[str, Any]]) -> None:
    """The run's records beside its weights: run.json and metrics.jsonl, so every number on the card has its source."""
    records = RunDir(folder)
    records.write_run(run)
    records.write_history(history)


def _refresh(folder: Path, entry: PretrainedTag, run: RunRecord, history: list[dict[str, Any]], data_dir: str | None,
             device: str) -> Path:
    """A bundled tag's card and run records rewritten from its run, the weights and their pin untouched: the accuracy
    is measured again on the weights in ``folder`` (checked against the tag's pin) and must be the one their
    metadata records."""
    model = load_model(folder, sha256=entry.sha256).eval()
    accuracy = evaluate_model(model, run.dataset, data_dir, device=device, bf16=False, download=False)
    recorded = read_meta(folder).data.metrics or {}
    if TOP1 not in recorded or abs(recorded[TOP1] - accuracy["err"]) > 1e-9:
        raise CheckpointError(f"{folder} measures {accuracy['err']:.4f}% top-1 error on the test set, its weights' metadata "
                              f"records {recorded.get(TOP1)}: release the run again instead of refreshing its card")
    meta = read_meta(folder)
    config = timm_config(meta, sha256_file(folder / WEIGHTS_NAME))  # the data contract as this zoo writes it
    atomic_write_bytes(folder / CONFIG_NAME, (json.dumps(config, indent=2) + "\n").encode())
    write_bundle_card(folder, run, history, accuracy, pretrained_name=entry.name)
    _write_records(folder, run, history)
    return folder


def _upcast(bundle: nn.Module, arch: str, kwargs: dict[str, Any]) -> nn.Module:
    """An fp32 copy of the fp16 bundle: what ``create_model(..., pretrained=True)`` gives."""
    model = create_model(arch, **kwargs).eval()
    model.load_state_dict({k: v.float() for k, v in bundle.state_dict().items()}, strict=True)
    return model
