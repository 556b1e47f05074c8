"""Model cards from data: every number on a card comes from the checkpoint, the run or a measurement.

A card is a ``huggingface_hub.ModelCard``: YAML metadata with a ``model-index``
(dataset, top-1 accuracy and error on the test split) and a markdown body
with the usage, the model's size and cost (``zoo.model_info``), the file and
its sha256, the recipe, the training curve, ONNX latency when measured, the
limitations and, for GoogLeNet, which "5x5" branch it has (pytorch/vision#906).

``zoo card RUN_DIR`` (:func:`write_run_card`) rewrites ``RUN_DIR/model/README.md``
and its curve from the trainer's ``run.json`` and ``metrics.jsonl``.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from zoo.checkpoint import (
    CARD_NAME,
    CURVE_NAME,
    WEIGHTS_NAME,
    CheckpointMeta,
    atomic_write_bytes,
    read_metadata,
    sha256_file,
)
from zoo.errors import CheckpointError
from zoo.plots import history_png

__all__ = ["build_card", "metrics_from_history", "write_run_card"]

PAPER = "Deeper Networks for Image Classification"

TOP1, TOP5 = "final_test_err", "final_test_top5_err"
"""The metrics a card reports: the last epoch's test errors in percent (the trainer's summary keys)."""

# zoo dataset name -> (Hugging Face dataset id, display name)
DATASETS = {"mnist": ("ylecun/mnist", "MNIST"), "cifar10": ("uoft-cs/cifar10", "CIFAR-10")}


def metrics_from_history(history: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The card's metrics from metrics.jsonl rows: the last epoch's test errors (%), never the best epoch's.

    Picking the best epoch on the test split would report a test-selected number.
    """
    if not history:
        raise CheckpointError("no epoch in the training history; a card needs at least one finished epoch")
    last = history[-1]
    metrics = {TOP1: float(last["test_err"])}
    if last.get("test_top5_err") is not None:
        metrics[TOP5] = float(last["test_top5_err"])
    return metrics


def _dataset(meta: CheckpointMeta) -> tuple[str, str]:
    """(Hugging Face dataset id, display name) of the data the checkpoint was trained on."""
    if meta.dataset in DATASETS:
        return DATASETS[meta.dataset]
    return meta.dataset or "unknown", meta.dataset or "an unrecorded dataset"


def _eval_results(meta: CheckpointMeta) -> list[EvalResult]:
    dataset_id, dataset_name = _dataset(meta)
    rows = []
    metrics = meta.metrics or {}
    if TOP1 in metrics:
        rows += [("accuracy", "Top-1 accuracy (%)", round(100 - metrics[TOP1], 2)),
                 ("error", "Top-1 error (%)", round(metrics[TOP1], 2))]
    if TOP5 in metrics:
        rows.append(("top-5-accuracy", "Top-5 accuracy (%)", round(100 - metrics[TOP5], 2)))
    return [
        EvalResult(
            task_type="image-classification",
            task_name="Image Classification",
            dataset_type=dataset_id,
            dataset_name=dataset_name,
            dataset_split="test",
            metric_type=metric_type,
            metric_name=metric_name,
            metric_value=value,
        )
        for metric_type, metric_name, value in rows
    ]


def _table(rows: Sequence[tuple[str, Any]]) -> str:
    return "\n".join(["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows])


def _limitations(meta: CheckpointMeta) -> list[str]:
    h, w = meta.input_size[1:]
    dataset = _dataset(meta)[1]
    notes = [
        f"Trained and evaluated only on {dataset} at {meta.in_chans}x{h}x{w}"
        + (" (28x28 digits zero-padded by 2 pixels)" if meta.dataset == "mnist" else "")
        + "; expect far lower accuracy on other images. Inputs must be scaled to [0, 1] and normalised "
        "with the mean and std above.",
        "Not evaluated for calibration, robustness to corruptions or adversarial inputs.",
    ]
    if meta.recipe and meta.recipe.startswith("paper"):
        notes.append(
            "The paper's recipe steers its learning-rate plateau on the test split, so the test error above "
            "is optimistic; train with a validation split for an unbiased number."
        )
    if meta.arch.startswith("googlenet"):
        kernel = "5x5" if "5x5" in meta.arch else "3x3"
        notes.append(
            f"Provenance: zoo's `googlenet` is torchvision's network, whose Inception \"5x5\" branch is a 3x3 "
            "convolution (https://github.com/pytorch/vision/issues/906), kept so torchvision checkpoints load. "
            f"Names containing `5x5` use true 5x5 convolutions; this model ({meta.arch}) has {kernel} convolutions "
            "in that branch."
        )
    if meta.arch.startswith("googlenet") and meta.model_kwargs.get("aux_logits", True):
        notes.append("The weights include the two auxiliary classifiers; they are used only in training mode.")
    return notes


def build_card(
    meta: CheckpointMeta,
    weights: str | os.PathLike,
    *,
    curve: bool = False,
    recipe_config: Mapping[str, Any] | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    latency: Mapping[str, float] | None = None,
    repo_id: str | None = None,
) -> ModelCard:
    """The model card of the checkpoint ``weights`` described by ``meta``.

    ``curve`` embeds training_curves.png (next to the card). ``latency`` maps
    a measured setting (e.g. "onnxruntime CPU, 2 threads, batch 1") to
    milliseconds. ``repo_id`` fills in the usage snippet.
    """
    from zoo.registry import TIMM_PREFIX, model_info

    weights = Path(weights)
    info = model_info(meta.arch, input_size=meta.input_size, **meta.model_kwargs)
    name = f"{meta.arch}.{meta.tag}" if meta.tag else meta.arch
    dataset_id, dataset_name = _dataset(meta)
    data = ModelCardData(
        model_name=name,
        license="mit",
        library_name="zoo",
        pipeline_tag="image-classification",
        tags=["image-classification", "zoo", "timm", meta.arch] + ([meta.dataset] if meta.dataset else []),
        datasets=[dataset_id] if meta.dataset else None,
        metrics=["accuracy"] if meta.metrics else None,
        eval_results=_eval_results(meta) or None,
    )
    source = f"hf-hub:{repo_id}" if repo_id else "path/to/this/folder"
    kwargs = ", ".join(f"{k}={v!r}" for k, v in meta.model_kwargs.items())
    usage = [
        "```python",
        "import zoo",
        "from zoo.hub import load_weights",
        "",
        f"model = {meta.create_call}.eval()",
        f"load_weights(model, {source!r})  # checks sha256, keys, shapes and architecture",
    ]
    if meta.tag:
        usage += ["# or, once the tag is published:", f"model = zoo.create_model({name!r}, pretrained=True)"]
    if repo_id:
        usage += ["", "import timm  # after `import zoo`, which registers zoo_* models in timm",
                  f"model = timm.create_model({'hf-hub:' + repo_id!r}, pretrained=True)"]
    usage.append("```")

    metrics = meta.metrics or {}
    results = ["No test metrics recorded."]
    if TOP1 in metrics:
        top5 = f"{metrics[TOP5]:.2f}%" if TOP5 in metrics else "-"
        results = [
            "| dataset | split | top-1 accuracy | top-1 error | top-5 error |",
            "|---|---|---|---|---|",
            f"| {dataset_name} | test (last epoch) | {100 - metrics[TOP1]:.2f}% | {metrics[TOP1]:.2f}% | {top5} |",
        ]
    others = {k: v for k, v in metrics.items() if k not in (TOP1, TOP5)}
    if others:
        results += ["", "Also recorded: " + ", ".join(f"`{k}` {v:g}" for k, v in others.items()) + "."]
    c, h, w = meta.input_size
    model_rows = [
        ("architecture", f"`{meta.arch}` (timm: `{TIMM_PREFIX}{meta.arch}`)"),
        ("model kwargs", f"`{kwargs}`"),
        ("parameters", f"{info['params']:,}"),
        ("MACs", f"{info['macs']:,} at {c}x{h}x{w}, batch 1 (FLOPs / 2, convolutions and matrix products)"),
        ("input", f"{c}x{h}x{w}, mean {list(meta.mean) if meta.mean else 'not recorded'}, "
                  f"std {list(meta.std) if meta.std else 'not recorded'}"),
        ("classes", ", ".join(meta.label_names) if meta.label_names else str(meta.num_classes)),
        ("weights", f"`{WEIGHTS_NAME}`, {weights.stat().st_size:,} bytes, sha256 `{sha256_file(weights)}`"),
        ("zoo", f"{meta.zoo_version}, commit `{meta.git_commit or 'unknown'}`"),
    ]
    training_rows = [
        ("dataset", dataset_name + (f" (sha256 `{meta.dataset_sha256}`)" if meta.dataset_sha256 else "")),
        ("recipe", f"`{meta.recipe}`" if meta.recipe else "not recorded"),
    ]
    if epochs is not None:
        training_rows.append(("epochs", epochs))
    if seed is not None:
        training_rows.append(("seed", seed))
    training_rows += [(f"`{k}`", f"`{json.dumps(v)}`") for k, v in (recipe_config or {}).items()]

    body = [
        f"# {name}",
        "",
        f"{meta.arch} trained from scratch on {dataset_name} with zoo, "
        f'the model zoo of "{PAPER}".',
        "",
        "## Results",
        "",
        *results,
        "",
        "## Usage",
        "",
        *usage,
        "",
        "## Model",
        "",
        _table(model_rows),
        "",
        "## Training",
        "",
        _table(training_rows),
    ]
    if curve:
        body += ["", f"![training curves]({CURVE_NAME})"]
    if latency:
        body += ["", "## ONNX latency", "", "| setting | latency (ms) |", "|---|---|"]
        body += [f"| {setting} | {ms:.3f} |" for setting, ms in latency.items()]
    body += ["", "## Limitations", ""] + [f"- {note}" for note in _limitations(meta)]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body) + "\n")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} not found: pass the run directory that zoo train wrote (--out)") from None
    except ValueError as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})") from None


def _read_history(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise CheckpointError(f"{path} not found: pass the run directory that zoo train wrote (--out)")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                raise CheckpointError(f"{path}:{number} is not a JSON line ({e})") from None
    return rows


def write_run_card(
    run_dir: str | os.PathLike, *, latency: Mapping[str, float] | None = None, repo_id: str | None = None
) -> Path:
    """(Re)write ``RUN_DIR/model/README.md`` and its training curve from run.json and metrics.jsonl.

    The metrics are the last epoch's (:func:`metrics_from_history`); the rest
    comes from the weights' metadata, which must name the run's architecture.
    Returns the card's path.
    """
    run_dir = Path(run_dir)
    run = _read_json(run_dir / "run.json")
    history = _read_history(run_dir / "metrics.jsonl")
    model_dir = run_dir / "model"
    weights = model_dir / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{weights} not found: the run has not finished; resume it with zoo train --resume")
    meta = CheckpointMeta.from_metadata(read_metadata(weights), str(weights))
    if meta is None or meta.arch != run["arch"]:
        raise CheckpointError(f"{weights} does not hold the run's {run['arch']!r} weights; re-save it from the run")
    meta = dataclasses.replace(meta, metrics={**(meta.metrics or {}), **metrics_from_history(history)})
    atomic_write_bytes(model_dir / CURVE_NAME, history_png(history))
    card = build_card(
        meta,
        weights,
        curve=True,
        recipe_config=run.get("recipe_config"),
        epochs=len(history),
        seed=run.get("seed"),
        latency=latency,
        repo_id=repo_id,
    )
    atomic_write_bytes(model_dir / CARD_NAME, str(card).encode())
    return model_dir / CARD_NAME
