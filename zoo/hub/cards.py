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

import zoo.models  # noqa: F401  (registers the built-in families, which this module looks up)
from zoo.core.errors import CheckpointError
from zoo.core.files import atomic_write_bytes, sha256_file
from zoo.core.plots import history_png
from zoo.data.datasets import FOLDER_PREFIX, DataConfig, find_spec
from zoo.hub.rundir import RunDir, RunRecord
from zoo.hub.weights import CARD_NAME, CURVE_NAME, WEIGHTS_NAME, CheckpointMeta, float_dtypes, read_metadata
from zoo.models.registry import TIMM_PREFIX, hub_model_id, meta_model, model_info

__all__ = ["build_card", "metrics_from_history", "read_run", "run_notes", "write_bundle_card", "write_run_card"]

PAPER = "Deeper Networks for Image Classification"

TOP1, TOP5 = "final_test_err", "final_test_top5_err"
"""The metrics a card reports: the last epoch's test errors in percent (the trainer's summary keys)."""



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


def _dataset(data: DataConfig) -> tuple[str | None, str]:
    """(Hugging Face dataset id or None, display name) of the data the checkpoint was trained on: a registered
    dataset's Hub id, an image folder described as one (its classes and images), never by its local path."""
    spec = find_spec(data.dataset)
    if spec is not None:
        return spec.hub_id, spec.title
    if data.dataset and data.dataset.startswith(FOLDER_PREFIX):
        name = Path(data.dataset[len(FOLDER_PREFIX):]).name
        images = f", {data.images[0]:,} training and {data.images[1]:,} test images" if data.images else ""
        classes = f"{len(data.label_names)} classes" if data.label_names else "its classes"
        return None, f"the image folder {name!r} ({classes}{images})"
    return None, data.dataset or "an unrecorded dataset"


def _padding(data: DataConfig) -> str:
    """" (HxW images zero-padded by P pixels)", or nothing for images that enter as they are."""
    h, w = data.scale_size
    return f" ({h}x{w} images zero-padded by {data.pad} pixels)" if data.pad else ""


def _eval_results(meta: CheckpointMeta) -> list[EvalResult]:
    dataset_id, dataset_name = _dataset(meta.data)
    rows = []
    metrics = meta.data.metrics or {}
    if TOP1 in metrics:
        rows += [("accuracy", "Top-1 accuracy (%)", round(100 - metrics[TOP1], 2)),
                 ("error", "Top-1 error (%)", round(metrics[TOP1], 2))]
    if TOP5 in metrics:
        rows.append(("top-5-accuracy", "Top-5 accuracy (%)", round(100 - metrics[TOP5], 2)))
    return [
        EvalResult(
            task_type="image-classification",
            task_name="Image Classification",
            dataset_type=dataset_id or "imagefolder",
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


def run_notes(recipe_config: Mapping[str, Any] | None, history: Sequence[Mapping[str, Any]]) -> list[str]:
    """Limitations that follow from what a run did, not from its recipe's name."""
    steered = (
        (recipe_config or {}).get("schedule") == "plateau"
        and history and "val_err" not in history[0]
        and any(later["lr"] < earlier["lr"] for earlier, later in zip(history, history[1:]))
    )
    if not steered:
        return []
    return ["The learning rate was lowered when the test error stopped improving (no validation split was held "
            "out: the paper's protocol), so the test error above is optimistic; train with --val-split for an "
            "unbiased number."]


def _limitations(meta: CheckpointMeta) -> list[str]:
    c, h, w = meta.data.input_size
    mirror = ("mirror-symmetric (trained with flips)" if meta.data.mirror
              else "not mirror-symmetric (trained without flips)")
    notes = [
        f"Trained and evaluated only on {_dataset(meta.data)[1]} at {c}x{h}x{w}" + _padding(meta.data)
        + "; expect far lower accuracy on other images. Inputs must be scaled to [0, 1] and normalised "
        "with the mean and std above.",
        f"Its images were taken as {mirror}.",
        "Not evaluated for calibration, robustness to corruptions or adversarial inputs.",
    ]
    return notes + meta_model(meta.arch, **meta.model_kwargs).card_notes()


INSTALL = ("Install zoo first: `pip install deeper-zoo` (the import is `zoo`). timm loads this model only after "
           "`import zoo`, which registers zoo's `zoo_*` architectures in timm; without it, timm fails with "
           "`Unknown model (zoo_...)`.")
"""What a card says before its snippet: the package to install, and that timm needs ``import zoo``."""


def _usage(meta: CheckpointMeta, repo_id: str | None, pretrained_name: str | None) -> list[str]:
    """A snippet that runs when copied: load (digests checked) and classify an image with zoo.predict, which places
    it as the weights' data contract says."""
    if pretrained_name:
        load = f"model = zoo.create_model({pretrained_name!r}, pretrained=True)  # checks the pinned sha256"
    else:
        source = f"hf-hub:{repo_id}" if repo_id else "path/to/this/folder"
        load = f"model = zoo.load_model({source!r})  # checks the sha256, keys, shapes and architecture"
    c, (h, w) = meta.data.input_size[0], meta.data.scale_size
    lines = [INSTALL, "", "```python", "import zoo  # pip install deeper-zoo", "from PIL import Image", "", load,
             f"image = Image.new({'L' if c == 1 else 'RGB'!r}, ({w}, {h}))  # your image: any size or mode, placed as "
             "the weights expect" + _padding(meta.data),
             "top = zoo.predict(image, model, top_k=1)[0][\"top\"][0]",
             "print(top[\"label\"], top[\"probability\"])"]
    if repo_id:
        lines += ["", "import timm  # after `import zoo`: plain timm does not know zoo_* models (\"Unknown model\")",
                  f"model = timm.create_model({'hf-hub:' + repo_id!r}, pretrained=True)"]
    return lines + ["```"]


def _results(meta: CheckpointMeta, dataset_name: str, selection: str, per_class: Mapping[str, float] | None,
             during_training: str | None = None) -> list[str]:
    metrics = meta.data.metrics or {}
    if TOP1 not in metrics:
        return ["No test metrics recorded."]
    top5 = f"{metrics[TOP5]:.2f}%" if TOP5 in metrics else "-"
    lines = [
        "| dataset | split | top-1 accuracy | top-1 error | top-5 error |",
        "|---|---|---|---|---|",
        f"| {dataset_name} | test ({selection}) | {100 - metrics[TOP1]:.2f}% | {metrics[TOP1]:.2f}% | {top5} |",
    ]
    others = {k: v for k, v in metrics.items() if k not in (TOP1, TOP5)}
    if others:
        how = f" (measured during training: {during_training})" if during_training else ""
        lines += ["", "Also recorded" + how + ": " + ", ".join(f"`{k}` {v:g}" for k, v in others.items()) + "."]
    if per_class:
        lines += ["", "Per-class accuracy on the test set:", "", "| class | accuracy |", "|---|---|"]
        lines += [f"| {label} | {acc:.2f}% |" for label, acc in per_class.items()]
    return lines


def _model_rows(meta: CheckpointMeta, weights: Path) -> list[tuple[str, Any]]:
    data = meta.data
    info = model_info(meta.arch, input_size=data.input_size, **meta.model_kwargs)
    kwargs = ", ".join(f"{k}={v!r}" for k, v in meta.model_kwargs.items())
    dtypes = sorted(_float_dtypes(weights))
    c, h, w = data.input_size
    return [
        ("architecture", f"`{meta.arch}` (timm: `{TIMM_PREFIX}{meta.arch}`)"),
        ("model kwargs", f"`{kwargs}`"),
        ("parameters", f"{info['params']:,}"),
        ("MACs", f"{info['macs']:,} at {c}x{h}x{w}, batch 1 (FLOPs / 2, convolutions and matrix products)"),
        ("input", f"{c}x{h}x{w}, mean {list(data.mean)}, std {list(data.std)}, crop_pct {data.crop_pct:.4g} "
                  f"({data.crop_mode}, {data.interpolation})" + _padding(data)),
        ("mirror-symmetric", "yes: flips in training and evaluation" if data.mirror else "no: never flipped"),
        ("classes", ", ".join(data.label_names) if data.label_names else str(meta.num_classes)),
        ("weights", f"`{WEIGHTS_NAME}`, {weights.stat().st_size:,} bytes, sha256 `{sha256_file(weights)}`"
                    + (f", {'/'.join(dtypes)}" if dtypes else "")),
        ("zoo", f"{meta.zoo_version}, commit `{meta.git_commit or 'unknown'}`"),
    ]


def _float_dtypes(weights: Path) -> set[str]:
    try:
        return float_dtypes(weights)
    except CheckpointError:  # a stand-in file (tests) or a damaged one: the card still describes the rest
        return set()


def _training_rows(meta: CheckpointMeta, run: Mapping[str, Any]) -> list[tuple[str, Any]]:
    data = meta.data
    rows: list[tuple[str, Any]] = [
        ("dataset", _dataset(data)[1] + (f" (sha256 `{data.dataset_sha256}`)" if data.dataset_sha256 else "")),
        ("started from", f"`{data.base_model}`" if data.base_model else "random initialisation (from scratch)"),
        ("recipe", f"`{meta.recipe}`" if meta.recipe else "not recorded"),
    ]
    for key, label in (("epochs", "epochs"), ("seed", "seed"), ("machine", "machine"), ("git_commit", "trained at commit")):
        if run.get(key) not in (None, ""):
            rows.append((label, f"`{run[key]}`" if key == "git_commit" else run[key]))
    if run.get("train_seconds") is not None:
        rows.append(("training time", f"{run['train_seconds'] / 60:.1f} min (training steps; evaluation excluded)"))
    # the recipe's own model_kwargs are its defaults; the model row above has what the model really was built with
    recipe = {k: v for k, v in (run.get("recipe_config") or {}).items() if k != "model_kwargs"}
    return rows + [(f"`{k}`", f"`{json.dumps(v)}`") for k, v in recipe.items()]


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
    machine: str | None = None,
    train_seconds: float | None = None,
    per_class: Mapping[str, float] | None = None,
    selection: str = "last epoch",
    pretrained_name: str | None = None,
    train_commit: str | None = None,
    notes: Sequence[str] = (),
    during_training: str | None = None,
) -> ModelCard:
    """The model card of the checkpoint ``weights`` described by ``meta``.

    ``curve`` embeds training_curves.png (next to the card). ``latency`` maps
    a measured setting (e.g. "onnxruntime CPU, 2 threads, batch 1") to
    milliseconds. ``repo_id`` fills in the usage snippet; ``pretrained_name``
    (``arch.tag``) makes it load the tag with ``pretrained=True``.
    ``selection`` says which weights the test numbers are of, ``during_training`` how the other recorded
    metrics (a validation error) were measured: precision and views.
    """
    weights = Path(weights)
    name = f"{meta.arch}.{meta.tag}" if meta.tag else meta.arch
    dataset_id, dataset_name = _dataset(meta.data)
    card_data = ModelCardData(
        model_name=name,
        license="mit",
        library_name="timm",  # the Hub's timm snippet works once zoo is installed and imported (INSTALL says so)
        pipeline_tag="image-classification",
        tags=["image-classification", "zoo", "timm", meta.arch] + ([str(meta.data.dataset)] if dataset_id else []),
        datasets=[dataset_id] if dataset_id else None,
        base_model=hub_model_id(meta.data.base_model),
        metrics=["accuracy"] if meta.data.metrics else None,
        eval_results=_eval_results(meta) or None,
    )
    run = {"epochs": epochs, "seed": seed, "machine": machine, "git_commit": train_commit, "train_seconds": train_seconds,
           "recipe_config": recipe_config}
    body = [
        f"# {name}", "", f"{meta.arch} {f'fine-tuned from {meta.data.base_model}' if meta.data.base_model else 'trained from scratch'} on "
        f'{dataset_name} with zoo, the model zoo of "{PAPER}".', "",
        "## Results", "", *_results(meta, dataset_name, selection, per_class, during_training), "",
        "## Usage", "", *_usage(meta, repo_id, pretrained_name), "",
        "## Model", "", _table(_model_rows(meta, weights)), "",
        "## Training", "", _table(_training_rows(meta, run)),
    ]
    if curve:
        body += ["", f"![training curves]({CURVE_NAME})"]
    if latency:
        body += ["", "## ONNX latency", "", "| setting | latency (ms) |", "|---|---|"]
        body += [f"| {setting} | {ms:.3f} |" for setting, ms in latency.items()]
    body += ["", "## Limitations", ""] + [f"- {note}" for note in [*_limitations(meta), *notes]]
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(body) + "\n")


def read_run(run_dir: str | os.PathLike) -> tuple[RunRecord, list[dict[str, Any]]]:
    """``run.json`` and the rows of ``metrics.jsonl`` of a finished-epoch run directory written by zoo train."""
    folder = RunDir(run_dir)
    run, history = folder.read_run(), folder.read_history()
    if not history:
        raise CheckpointError(f"{folder.metrics} has no finished epoch; train or resume the run first")
    return run, history


def training_measure(run: RunRecord) -> str:
    """How a run measured its errors while training: the precision it ran at and the views it averaged."""
    precision = ("precision not recorded" if not run.machine else "fp32 on the CPU" if run.machine.startswith("CPU")
                 else "bf16 autocast on CUDA")
    return f"{precision}, {'flip-averaged (two views)' if run.recipe_config.get('tta_flip') else 'one view'}"


def write_bundle_card(
    folder: Path, run: RunRecord, history: Sequence[Mapping[str, Any]], accuracy: Mapping[str, Any], *, pretrained_name: str
) -> Path:
    """The card of a bundled tag (zoo.train.release): numbers measured on the released fp16 weights."""
    weights = folder / WEIGHTS_NAME
    meta = CheckpointMeta.from_metadata(read_metadata(weights), str(weights))
    if meta is None:
        raise CheckpointError(f"{weights} has no zoo metadata; release the run again")
    last = history[-1]
    selection = (f"final weights, epoch {last['epoch']} of {run.epochs}, fp16; "
                 f"{accuracy['images']:,} images, one view, fp32 on the CPU")
    card = build_card(
        meta, weights, curve=True, recipe_config=run.recipe_config, epochs=len(history), seed=run.seed,
        machine=run.machine, train_seconds=last.get("train_seconds"), per_class=accuracy["per_class_acc"],
        selection=selection, pretrained_name=pretrained_name, train_commit=run.git_commit,
        notes=[*run_notes(run.recipe_config, history), *run.notes], during_training=training_measure(run),
    )
    atomic_write_bytes(folder / CARD_NAME, str(card).encode())
    return folder / CARD_NAME


def write_run_card(
    run_dir: str | os.PathLike, *, latency: Mapping[str, float] | None = None, repo_id: str | None = None
) -> Path:
    """(Re)write ``RUN_DIR/model/README.md`` and its training curve from run.json and metrics.jsonl.

    The metrics are the last epoch's (:func:`metrics_from_history`); the rest
    comes from the weights' metadata, which must name the run's architecture.
    Returns the card's path.
    """
    run, history = read_run(run_dir)
    model_dir = RunDir(run_dir).model
    weights = model_dir / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{weights} not found: the run has not finished; resume it with zoo train --resume")
    meta = CheckpointMeta.from_metadata(read_metadata(weights), str(weights))
    if meta is None or meta.arch != run.arch:
        raise CheckpointError(f"{weights} does not hold the run's {run.arch!r} weights; re-save it from the run")
    metrics = {**(meta.data.metrics or {}), **metrics_from_history(history)}
    meta = dataclasses.replace(meta, data=dataclasses.replace(meta.data, metrics=metrics))
    atomic_write_bytes(model_dir / CURVE_NAME, history_png(history))
    card = build_card(
        meta,
        weights,
        curve=True,
        recipe_config=run.recipe_config,
        epochs=len(history),
        seed=run.seed,
        machine=run.machine,
        train_seconds=history[-1].get("train_seconds"),
        train_commit=run.git_commit,
        notes=[*run_notes(run.recipe_config, history), *run.notes],
        latency=latency,
        repo_id=repo_id,
    )
    atomic_write_bytes(model_dir / CARD_NAME, str(card).encode())
    return model_dir / CARD_NAME
