"""Publish and fetch pretrained weights: save_pretrained, load_weights, load_pretrained, push_to_hub.

A published checkpoint is a folder (and a Hugging Face model repo of the same
files)::

    model.safetensors     tensors + CheckpointMeta (arch, kwargs, dataset, recipe, metrics, version, padding
                          rule, the weights a fine-tune started from)
    config.json           timm's format (architecture "zoo_<arch>", model_args, pretrained_cfg)
                          plus a "zoo" section: the sha256 of model.safetensors, the padding rule, what to install
    README.md             the model card (zoo.hub.cards)
    training_curves.png   the curve the card shows, when the training history is known
    run.json, metrics.jsonl   a bundled tag's run records (zoo.train.release), the source of its card's numbers

Where the weights come from (``load_weights``'s ``source``):

- a local ``.safetensors`` file or a folder like the one above;
- ``hf-hub:owner/name[@revision]``: from ``$ZOO_HUB_DIR/owner/name/`` when that
  local mirror exists (air-gapped machines; fill it with
  ``hf download owner/name --revision REV --local-dir $ZOO_HUB_DIR/owner/name``;
  a mirror holds one snapshot, so the revision is not checked there, the
  digests are), otherwise through ``huggingface_hub.hf_hub_download`` with its
  cache, ``HF_HUB_OFFLINE`` and ``HF_ENDPOINT``.

The sha256 of the weights file is checked on every load against every digest
known for it: the pretrained tag's pin (which guards against a replaced file)
and the one ``config.json`` records (which guards against corruption in a
cache, a mirror or a copy).

timm reads the same folder: after ``import zoo``,
``timm.create_model("hf-hub:owner/name", pretrained=True)`` (or
``"local-dir:path"``) builds ``zoo_<arch>`` with the recorded kwargs and loads
the weights with timm's own loader (safetensors, strict, head and input-conv
adaptation when asked), which does not check the digests.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import huggingface_hub
import torch
import yaml
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, HFValidationError
from torch import nn

import zoo.models  # noqa: F401  (registers the built-in families, which this module looks up)
from zoo.core.environment import hf_endpoint
from zoo.core.errors import ArgumentError, CheckpointError, HubError
from zoo.core.files import atomic_write_bytes, check_inside, check_readable, sha256_file, staged_dir
from zoo.core.machine import git_commit
from zoo.core.plots import history_png
from zoo.core.version import __version__
from zoo.data.datasets import DataConfig
from zoo.hub.cards import build_card, metrics_from_history
from zoo.hub.rundir import HISTORY_NAME, RUN_RECORD_NAME
from zoo.hub.weights import (
    CARD_NAME,
    CONFIG_NAME,
    CURVE_NAME,
    SHA256_PATTERN,
    WEIGHTS_NAME,
    CheckpointMeta,
    check_compatible,
    check_finite,
    check_recorded_sizes,
    fit_head_and_stem,
    load_into,
    read_checkpoint,
    read_metadata,
    save_tensors,
    state_dict_of,
    structure_difference,
    unwrap_model,
    unwrap_zoo_model,
)
from zoo.models.layers import ZooModel
from zoo.models.registry import (
    COMMIT_PATTERN,
    HF_PREFIX,
    TIMM_PREFIX,
    PretrainedTag,
    build_model,
    list_models,
    meta_model,
    model_args,
    pretrained_cfg,
    set_data_config,
)

__all__ = [
    "HF_PREFIX",
    "MIRROR_ENV",
    "PushResult",
    "load_model",
    "load_pretrained",
    "load_weights",
    "publishable_files",
    "read_meta",
    "push_to_hub",
    "save_pretrained",
    "timm_config",
]

M = TypeVar("M", bound=nn.Module)
"""The model a loader is given, and returns."""
MIRROR_ENV = "ZOO_HUB_DIR"

_REPO_PART = r"(?!.*\.\.)[A-Za-z0-9_](?:[\w.-]*[A-Za-z0-9_])?"
_REPO_ID = re.compile(rf"{_REPO_PART}/{_REPO_PART}")
"""owner/name as the Hub allows them: no '..', no leading or trailing '.' or '-', exactly one '/': never a path out."""


def save_pretrained(
    model: nn.Module,
    out_dir: str | os.PathLike,
    *,
    arch: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    data: DataConfig | None = None,
    tag: str | None = None,
    recipe: str | None = None,
    metrics: dict[str, float] | None = None,
    history: Sequence[dict[str, Any]] | None = None,
    notes: Sequence[str] = (),
) -> Path:
    """Write ``model`` as a publishable folder: weights, config.json, card (and curve with ``history``).

    ``model`` must be exactly ``zoo.create_model(arch, **model_kwargs)`` (any DDP / ``torch.compile`` wrapper is
    removed); a model built by zoo (or timm's ``zoo_*``) knows both, so they are needed only to override. ``data``
    is the weights' data contract and provenance (:class:`zoo.data.datasets.DataConfig`), by default the one the model
    carries (``model.data_config``: what it was trained or fine-tuned on, from what, and its metrics), so a
    loaded and re-saved model keeps it. ``metrics`` (errors in percent; the card reports ``final_test_err`` and
    ``final_test_top5_err``) replace the record's; without them, the last epoch of ``history``, the per-epoch
    dicts of the trainer's ``metrics.jsonl``, supplies them. The folder appears whole or not at all (an existing
    one keeps its old files on failure). Returns ``out_dir``.
    """
    base = unwrap_zoo_model(model, "save_pretrained")
    if arch is None or model_kwargs is None:
        if not hasattr(base, "_zoo_arch"):
            raise CheckpointError("this model was not built by zoo, so it does not know its arch: pass arch= and model_kwargs=")
        arch = arch or base._zoo_arch  # the kwargs as the model is now, after any reset_classifier
        model_kwargs = {**base._model_args, "num_classes": base.num_classes, "in_chans": base.in_chans} \
            if model_kwargs is None else model_kwargs
    _check_is(model, arch, model_kwargs)
    tensors = state_dict_of(model)
    check_finite(tensors, "the model given to save_pretrained")
    if metrics is None and history:
        metrics = metrics_from_history(history)
    if data is None:  # the model's own, fitted to it as it is now: a reset classifier has no label names
        data = (getattr(base, "data_config", None) or meta_model(arch, **model_kwargs).data_config).for_model(
            base.in_chans, base.num_classes)
    try:
        meta = CheckpointMeta(
            arch=arch, model_kwargs=dict(model_kwargs), num_classes=base.num_classes, in_chans=base.in_chans,
            data=data if metrics is None else dataclasses.replace(data, metrics=dict(metrics)),
            zoo_version=__version__, tag=tag if tag is not None else _tag(base), recipe=recipe, git_commit=git_commit(),
        )
    except CheckpointError as e:  # what the metadata would record does not hold
        raise CheckpointError(f"cannot save {out_dir}: {e}") from None

    out_dir = Path(out_dir)
    with staged_dir(out_dir, stale=(CURVE_NAME,)) as staging:
        save_tensors(staging / WEIGHTS_NAME, tensors, meta.to_metadata())
        config = timm_config(meta, sha256_file(staging / WEIGHTS_NAME))
        atomic_write_bytes(staging / CONFIG_NAME, (json.dumps(config, indent=2) + "\n").encode())
        if history:
            atomic_write_bytes(staging / CURVE_NAME, history_png(history))
        card = build_card(meta, staging / WEIGHTS_NAME, curve=bool(history), notes=notes)
        atomic_write_bytes(staging / CARD_NAME, str(card).encode())
    return out_dir


def _tag(model: nn.Module) -> str | None:
    """The tag whose weights ``model`` holds, unless its classifier was replaced since."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return cfg.get("tag") if cfg.get("num_classes") == model.num_classes else None


def _check_is(model: nn.Module, arch: str, model_kwargs: dict[str, Any]) -> None:
    """Refuse to save a model under an arch and kwargs that do not build it."""
    try:
        json.dumps(model_kwargs)
    except TypeError as e:
        raise CheckpointError(f"model_kwargs must be JSON values (numbers, strings, lists, dicts): {e}") from None
    detail = structure_difference(model, meta_model(arch, **model_kwargs), arch)
    if detail:
        raise CheckpointError(
            f"the model is not zoo.create_model({arch!r}, **{model_kwargs!r}) ({detail}); "
            "pass the arch and model_kwargs it was built with"
        )


def timm_config(meta: CheckpointMeta, sha256: str) -> dict[str, Any]:
    """config.json as timm's ``load_model_config_from_hf`` / ``_from_path`` read it, plus our digest.

    timm turns ``pretrained_cfg`` into its ``PretrainedCfg`` dataclass, which refuses unknown keys, so zoo's own
    fields (the whole data record, mirror symmetry and provenance included) live in the top-level ``zoo``
    section that timm ignores.
    """
    config: dict[str, Any] = {
        "architecture": TIMM_PREFIX + meta.arch,
        "num_classes": meta.num_classes,
        "model_args": meta.model_kwargs,
        "pretrained_cfg": json.loads(json.dumps(pretrained_cfg(meta_model(meta.arch, **meta.model_kwargs), meta.data,
                                                               meta.tag))),  # tuples as JSON lists
        "zoo": {"weights": WEIGHTS_NAME, "sha256": sha256, "data": meta.data.to_json(),
                "requires": "pip install deeper-zoo, then import zoo before timm.create_model"},
    }
    if meta.data.label_names is not None:
        config["label_names"] = list(meta.data.label_names)
    return config


def _reference(meta: CheckpointMeta, where: str, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """The model a checkpoint's metadata describes (with ``kwargs`` instead of its own), built on the meta device
    to check the weights against."""
    try:  # meta.arch is a registered one: CheckpointMeta checks it
        return meta_model(meta.arch, **(meta.model_kwargs if kwargs is None else kwargs))
    except ArgumentError as e:
        raise CheckpointError(f"{where}: field model_kwargs cannot build {meta.arch} ({e}); re-save it with zoo") from None


def _load(model: M, tensors: dict[str, torch.Tensor], meta: CheckpointMeta | None, found: Source,
          adapt: bool = False) -> M:
    """Check and load; with ``adapt``, timm's pretrained semantics first (:func:`fit_head_and_stem`): a model built
    for other classes or input channels keeps its fresh classifier or gets an adapted first convolution, and is
    otherwise checked against the file's architecture as strictly as ever."""
    where, base = found.where, unwrap_model(model)
    reference = None
    if meta is not None:
        sized = {**meta.model_kwargs, "num_classes": base.num_classes, "in_chans": base.in_chans} if adapt else meta.model_kwargs
        reference = _reference(meta, where, sized)
        check_recorded_sizes(reference, tensors, meta, where)  # the file against its own metadata: reads only names
    load_into(model, fit_head_and_stem(model, tensors) if adapt else tensors, meta, where, reference)
    # recorded by exports (ONNX metadata), on any module loaded (nn.Module types attributes as Tensor | Module)
    setattr(base, "_zoo_weights_sha256", found.sha256)  # noqa: B010
    if meta is not None:  # the model now knows what it was trained on: input, statistics, labels, tag, padding
        describe_weights(unwrap_zoo_model(model, "loading weights with zoo metadata"), meta)
    return model


def describe_weights(model: ZooModel, meta: CheckpointMeta) -> None:
    """What ``model`` is once ``meta``'s weights are in it: arch, kwargs and the weights' data contract, fitted to the
    model (an adapted first convolution's statistics, no labels for a fresh head, the tag only for its own head)."""
    model._zoo_arch = meta.arch
    model._model_args = {**meta.model_kwargs, "num_classes": model.num_classes, "in_chans": model.in_chans}
    set_data_config(model, meta.data.for_model(model.in_chans, model.num_classes),
                    meta.tag if model.num_classes == meta.num_classes else None)


def _read(source: str | os.PathLike, filename: str, sha256: str | None) -> tuple[dict[str, torch.Tensor], CheckpointMeta | None, Source]:
    """Resolve ``source``, check the file against every digest known for it, read it: (tensors, meta, source)."""
    found = _resolve(source, filename)
    return _read_checked(found, {**found.pins, **({"the sha256 argument": sha256} if sha256 is not None else {})})


def _read_checked(found: Source, pins: dict[str, str]) -> tuple[dict[str, torch.Tensor], CheckpointMeta | None, Source]:
    """Read ``found``'s file, checked against ``pins``; hashed once, its digest goes on with ``found``."""
    digest = sha256_file(found.path) if found.path.is_file() else None  # a missing file: read_checkpoint says so
    tensors, meta = read_checkpoint(found.path, sha256=pins, remedy=found.remedy, digest=digest)
    return tensors, meta, found._replace(sha256=digest)


def read_meta(source: str | os.PathLike) -> CheckpointMeta:
    """What the weights at ``source`` are (arch, kwargs, input, statistics, labels), read without their tensors."""
    found = _resolve(source, WEIGHTS_NAME)
    meta = CheckpointMeta.from_metadata(read_metadata(found.path), found.where) if found.path.is_file() else None
    meta = meta or _meta_from_config(found)
    if meta is None:
        raise CheckpointError(f"{found.where} has no zoo metadata (nor a timm config.json naming a zoo model); pass a "
                              "folder written by zoo.save_pretrained or timm's save_for_hf, or a tag")
    return meta


def load_weights(model: M, source: str | os.PathLike, *, sha256: str | None = None, adapt: bool = False) -> M:
    """Load checked weights into ``model`` from a file, a folder or ``hf-hub:owner/name[@revision]``.

    Strict: every key and shape must match (``module.`` / ``_orig_mod.``
    prefixes aside), every value be finite, and the architecture recorded in
    the file be the model's. ``sha256`` pins the file's digest, on top of the
    one in the folder's config.json. Errors are :class:`~zoo.core.errors.CheckpointError`
    (the file) or :class:`~zoo.core.errors.HubError` (fetching it); each says what to do. ``adapt``: timm's pretrained
    semantics, as :func:`load_model` has them (a model of other num_classes keeps its own classifier, of other
    in_chans gets an adapted first convolution).
    """
    tensors, meta, found = _read(source, WEIGHTS_NAME, sha256)
    meta = meta or (_meta_from_config(found) if adapt else None)
    return _load(model, tensors, meta, found, adapt=adapt and meta is not None)


def load_model(source: str | os.PathLike, arch: str | None = None, *, sha256: str | None = None,
               label_names: Sequence[str] | None = None, **kwargs: Any) -> ZooModel:
    """Build the model a checkpoint belongs to and load it.

    A zoo checkpoint records its arch and kwargs, so ``source`` alone suffices (``arch``, when given, must
    agree); so does a folder timm's ``save_for_hf`` wrote from a zoo model (its config.json names the arch and
    kwargs). For a bare safetensors file pass ``arch`` and the ``kwargs`` it was built with. With timm's
    semantics, ``num_classes`` or ``in_chans`` other than the file's give a fresh classifier (named by
    ``label_names``, else unnamed) or an adapted first convolution; any other kwarg must match the file's.
    """
    tensors, meta, found = _read(source, WEIGHTS_NAME, sha256)
    where = found.where
    meta = meta or _meta_from_config(found)
    if meta is not None and arch is not None and arch != meta.arch:
        raise CheckpointError(f"{where} holds {meta.arch!r} weights, not {arch!r}; pass {meta.arch!r} or other weights")
    name = meta.arch if meta is not None else arch
    if name is None:
        raise CheckpointError(f"{where} has no zoo metadata; pass the arch (and kwargs) the weights belong to")
    if meta is not None:
        fixed = {k: v for k, v in meta.model_kwargs.items() if k not in ADAPTABLE}
        conflicts = {k: v for k, v in kwargs.items() if k in fixed and fixed[k] != v}
        if conflicts:
            k, v = next(iter(conflicts.items()))
            raise CheckpointError(f"{where} was saved with {k}={fixed[k]!r}, but {k}={v!r} was asked for; "
                                  f"drop that option (the weights' own configuration is used) or pass {k}={fixed[k]!r}")
    model_kwargs = {**meta.model_kwargs, **kwargs} if meta else kwargs
    with torch.device("meta"):
        model = build_model(name, **model_kwargs)
    model = _load(_materialise(model, meta), tensors, meta, found, adapt=meta is not None)
    return name_labels(model, label_names)


def _materialise(model: ZooModel, meta: CheckpointMeta | None) -> ZooModel:
    """``model``, built on the meta device, in CPU memory. ``to_empty`` leaves every tensor uninitialised, which the
    strict load overwrites, except a classifier of another size than the file's (timm's semantics keep the model's
    own): that one is initialised here, from torch's seeded generator. Left as ``to_empty`` made it, it held whatever
    the memory held (values near 1e36, NaN), so a fine-tune from a folder diverged in some runs and not others."""
    model = model.to_empty(device="cpu")
    if meta is not None and model.num_classes != meta.num_classes:
        model.reset_classifier(model.num_classes)
    return model


def _meta_from_config(found: Source) -> CheckpointMeta | None:
    """What a folder timm's ``save_for_hf`` wrote from a zoo model says of it (its weights carry no zoo metadata):
    config.json's architecture ``zoo_<arch>``, ``model_args`` and ``pretrained_cfg``. None for other folders."""
    path = found.path.parent / CONFIG_NAME
    check_readable(path, CheckpointError)
    try:
        config = json.loads(path.read_text()) if path.is_file() else {}
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}); restore it from the published folder") from None
    name = config.get("architecture") if isinstance(config, dict) else None
    if not isinstance(name, str) or not name.startswith(TIMM_PREFIX) or name[len(TIMM_PREFIX):] not in list_models():
        return None
    arch, args, cfg = name[len(TIMM_PREFIX):], config.get("model_args") or {}, config.get("pretrained_cfg") or {}
    for field, value in (("model_args", args), ("pretrained_cfg", cfg)):
        if not isinstance(value, dict):
            raise CheckpointError(f"{path}: field {field} is {value!r}, not a JSON object; re-save the folder")
    try:
        kwargs = {k: v for k, v in args.items() if k in model_args(arch)}
        own = meta_model(arch, **kwargs).data_config
        data = config.get("zoo", {}).get("data") if isinstance(config.get("zoo"), dict) else None
        if data is None:  # timm's own save_for_hf: the timm keys over the configuration's contract
            labels = config.get("label_names") or cfg.get("label_names")
            keys = ("input_size", "mean", "std", "crop_pct", "interpolation", "crop_mode")
            data = {**own.to_json(), **{k: cfg[k] for k in keys if cfg.get(k) is not None}, "label_names": labels}
        data = DataConfig.from_json({k: v for k, v in data.items() if v is not None}, "its data config")
        return CheckpointMeta(
            arch=arch, model_kwargs=kwargs, num_classes=int(config.get("num_classes", kwargs.get("num_classes", 1000))),
            in_chans=data.input_size[0], data=data, zoo_version="unknown (a timm save_for_hf folder)", tag=cfg.get("tag"),
        )
    except (TypeError, ValueError, ArgumentError) as e:
        raise CheckpointError(f"{path} does not describe a {arch} ({e}); re-save the folder") from None


ADAPTABLE = ("num_classes", "in_chans")
"""Kwargs a model may take other than its weights' (timm's semantics: a fresh head, an adapted first convolution)."""


def name_labels(model: M, label_names: Sequence[str] | None) -> M:
    """Give ``model``'s classes the names ``label_names`` (one per class), e.g. after a fresh head; None: as it is."""
    if label_names is None:
        return model
    base = unwrap_zoo_model(model, "label_names")
    names = tuple(label_names)
    if len(names) != base.num_classes or not all(isinstance(n, str) for n in names):
        raise ArgumentError(f"label_names must be {base.num_classes} strings, one per class, got {len(names)}")
    set_data_config(base, dataclasses.replace(base.data_config, label_names=names), base.pretrained_cfg.get("tag"))
    return model


def load_pretrained(model: nn.Module, entry: PretrainedTag) -> nn.Module:
    """Load a pretrained tag's weights, checked against its pinned sha256 whatever serves them.

    Sources, in order: ``$ZOO_HUB_DIR/<hf_hub_id>/`` (a mirror), the folder a
    source checkout bundles (``model_cards/<arch>.<tag>/``), then the Hub at the
    tag's pinned commit.
    """
    if not SHA256_PATTERN.fullmatch(entry.sha256):
        raise HubError(f"tag {entry.name} pins sha256 {entry.sha256!r}; a tag must pin 64 lowercase hex digits")
    if entry.revision is not None and not COMMIT_PATTERN.fullmatch(entry.revision):
        raise HubError(f"tag {entry.name} pins revision {entry.revision!r}; a tag must pin a 40-hex commit")
    if entry.hf_hub_id and _mirror(entry.hf_hub_id):
        source: str | Path = f"{HF_PREFIX}{entry.hf_hub_id}"
    elif (entry.bundled / entry.filename).is_file():
        source = entry.bundled
    elif entry.hf_hub_id and entry.revision:
        source = f"{HF_PREFIX}{entry.hf_hub_id}@{entry.revision}"
    else:
        raise HubError(
            f"tag {entry.name} is not published on the Hub yet and this install has no bundled copy "
            f"(looked for {entry.bundled / entry.filename}); its weights ship in a source checkout: "
            "git clone the zoo repository and pip install -e it"
        )
    found = _resolve(source, entry.filename)
    tensors, meta, found = _read_checked(found, {f"tag {entry.name}": entry.sha256, **found.pins})
    if meta is None or meta.arch != entry.arch:
        held = f"{meta.arch!r} weights" if meta else "no zoo metadata"
        raise CheckpointError(f"{found.where} holds {held}, but tag {entry.name} is for {entry.arch!r}; fix the tag entry")
    return _load(model, tensors, meta, found, adapt=True)


class Source(NamedTuple):
    """A weights file to read, the digests known for it, a name for messages, how to mend a bad copy, and (once
    read) its own digest."""

    path: Path
    pins: dict[str, str]
    where: str
    remedy: str
    sha256: str | None = None  # the file's, once it has been read


def _resolve(source: str | os.PathLike, filename: str) -> Source:
    """Where the weights ``filename`` of ``source`` are, refusing any name that would leave its folder."""
    if not filename or Path(filename).name != filename or filename in (".", ".."):
        raise HubError(f"{filename!r} is not a file name; a weights file is addressed by its plain name in its folder")
    if isinstance(source, str) and source.startswith(HF_PREFIX):
        repo_id, _, revision = source[len(HF_PREFIX) :].partition("@")
        if not _REPO_ID.fullmatch(repo_id):
            raise HubError(f"{source!r} is not hf-hub:owner/name[@revision] (letters, digits, '_', '-', '.'; no '..')")
        mirror = _mirror(repo_id)
        if mirror:
            weights = _inside(mirror, filename)
            return Source(weights, _config_pins(weights.parent, filename), f"{source} (mirror {weights})",
                          f"restore {weights} from the published repo")
        return _download(repo_id, revision or "main", filename)
    path = Path(source)
    weights = _inside(path, filename) if path.is_dir() else path
    check_readable(weights, CheckpointError)
    if not weights.is_file():
        raise CheckpointError(
            f"no checkpoint at {weights}; pass a .safetensors file, a folder written by zoo.save_pretrained, "
            "or hf-hub:owner/name[@revision]"
        )
    return Source(weights, _config_pins(weights.parent, weights.name), str(weights), f"restore {weights} (copy it again)")


def _mirror(repo_id: str) -> Path | None:
    """``$ZOO_HUB_DIR/owner/name`` when the mirror holds that repo, refused when a link takes it out of the mirror."""
    root = os.environ.get(MIRROR_ENV)
    if not root:
        return None
    folder = Path(root) / repo_id
    if not folder.is_dir():
        return None
    if not folder.resolve().is_relative_to(Path(root).resolve()):
        raise HubError(f"{folder} links to {folder.resolve()}, outside the mirror {root}; zoo does not follow links out "
                       f"of {MIRROR_ENV}: copy the repo into it")
    return folder


def _inside(folder: Path, name: str) -> Path:
    """``folder/name``, refused when a link takes it out of ``folder`` (a checkpoint folder is read as it is)."""
    path = folder / name
    check_inside(path, folder, CheckpointError, "a checkpoint folder")
    return path


def _config_pins(folder: Path, filename: str, *, cache: bool = False) -> dict[str, str]:
    """The digest a save_pretrained config.json records for ``filename`` (none for other folders).

    In the Hugging Face cache (``cache``) a snapshot's files are links to its blobs, by design.
    """
    config_path = folder / CONFIG_NAME if cache else _inside(folder, CONFIG_NAME)
    check_readable(config_path, CheckpointError)
    if not config_path.is_file():
        return {}
    try:
        config = json.loads(config_path.read_text())
    except ValueError as e:
        raise CheckpointError(f"{config_path} is not valid JSON ({e}); restore it from the published folder") from None
    recorded = config.get("zoo") if isinstance(config, dict) else None
    if not isinstance(recorded, dict) or recorded.get("weights") != filename or "sha256" not in recorded:
        return {}
    if not isinstance(recorded["sha256"], str) or not SHA256_PATTERN.fullmatch(recorded["sha256"]):
        raise CheckpointError(f"{config_path}: field zoo.sha256 is {recorded['sha256']!r}, not 64 lowercase hex digits; "
                              "restore the file from the published folder")
    return {str(config_path): recorded["sha256"]}


def _download(repo_id: str, revision: str, filename: str) -> Source:
    """Fetch config.json and the weights through the Hugging Face cache (at :func:`~zoo.core.environment.hf_endpoint`)."""
    endpoint = hf_endpoint()
    where = f"{HF_PREFIX}{repo_id}@{revision}"
    try:
        config = huggingface_hub.hf_hub_download(repo_id, CONFIG_NAME, revision=revision, endpoint=endpoint)
        weights = huggingface_hub.hf_hub_download(repo_id, filename, revision=revision, endpoint=endpoint)
    except (EntryNotFoundError, HfHubHTTPError, HFValidationError, OSError) as e:
        raise HubError(
            f"cannot fetch {where} from {endpoint or huggingface_hub.constants.ENDPOINT} ({type(e).__name__}: {e}). "
            f"Check the repo id and revision; offline, either it is in the Hugging Face cache (HF_HUB_OFFLINE=1) "
            f"or {MIRROR_ENV} points to a mirror holding {repo_id}/"
        ) from None
    cached = os.path.realpath(weights)  # the blob in the Hugging Face cache: removing it makes the next load fetch again
    return Source(Path(weights), _config_pins(Path(config).parent, filename, cache=True), f"{where} ({weights})",
                  f"the cached copy is bad: delete {cached} and load again")


@dataclass(frozen=True)
class PushResult:
    """What push_to_hub uploaded (or, in a dry run, would upload)."""

    repo_id: str
    files: tuple[str, ...]
    commit_url: str | None


def publishable_files(folder: str | os.PathLike) -> tuple[str, ...]:
    """The files push_to_hub sends from ``folder``, after checking that they are worth publishing.

    model.safetensors, config.json and README.md, plus training_curves.png, run.json and metrics.jsonl when
    present (the card shows the curve; the run's records are the source of its numbers). Refused: a missing file, a file linked out of the folder, weights that fail
    any load check (digest, format, non-finite values, shapes against the
    recorded architecture), a config.json for another architecture, and a card
    whose YAML front matter does not parse or has no model-index metrics. Any other file in the folder is not sent.
    """
    folder = Path(folder)
    missing = [n for n in (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME) if not (folder / n).is_file()]
    if missing:
        raise CheckpointError(f"{folder} lacks {', '.join(missing)}; write it with zoo.save_pretrained")
    optional = (CURVE_NAME, RUN_RECORD_NAME, HISTORY_NAME)  # the curve the card shows; the records behind its numbers
    files = (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME) + tuple(n for n in optional if (folder / n).is_file())
    for name in files:  # what is sent obeys the rules loading does: no link out of the folder
        _inside(folder, name)
    weights = folder / WEIGHTS_NAME
    pins = _config_pins(folder, WEIGHTS_NAME)
    if not pins:
        raise CheckpointError(f"{folder / CONFIG_NAME} records no sha256 for {WEIGHTS_NAME}; re-save the folder")
    tensors, meta = read_checkpoint(weights, sha256=pins)
    if meta is None:
        raise CheckpointError(f"{weights} has no zoo metadata; re-save it with zoo.save_pretrained")
    architecture = json.loads((folder / CONFIG_NAME).read_text()).get("architecture")
    if architecture != TIMM_PREFIX + meta.arch:
        raise CheckpointError(
            f"{folder / CONFIG_NAME} says {architecture!r} but the weights are {meta.arch!r}; re-save the folder"
        )
    reference = _reference(meta, str(weights))
    check_compatible(reference, tensors, meta, str(weights), reference)
    if not _card_results(folder / CARD_NAME):
        raise HubError(
            f"refusing to push {folder}: {CARD_NAME} has no model-index metrics. "
            "Write the card from a finished run with `zoo card RUN_DIR`"
        )
    return files


def _card_results(path: Path) -> list[Any]:
    """The model-index results of the card at ``path``; a front matter that does not parse is refused, naming it."""
    try:
        return ModelCard.load(path).data.eval_results or []
    except (yaml.YAMLError, ValueError) as e:  # ValueError: not a mapping, a bad model-index, not UTF-8
        raise HubError(f"{path} has a malformed YAML front matter ({' '.join(str(e).split())[:200]}); rewrite the "
                       "card with `zoo card RUN_DIR`") from None


def push_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    dry_run: bool = False,
    commit_message: str | None = None,
) -> PushResult:
    """Upload a save_pretrained folder to a Hugging Face model repo (created if needed).

    The files are :func:`publishable_files`, checked before anything is sent;
    ``dry_run`` stops there. ``token`` defaults to huggingface_hub's (``HF_TOKEN``
    or ``hf auth login``); it never appears in an error: a failure is a
    :class:`~zoo.core.errors.HubError` whose text has the token masked.
    """
    if not _REPO_ID.fullmatch(repo_id):
        raise HubError(f"{repo_id!r} is not a repo id of the form owner/name")
    files = publishable_files(folder)
    if dry_run:
        return PushResult(repo_id, files, None)
    api = HfApi(endpoint=hf_endpoint(), token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=Path(folder),
            allow_patterns=list(files),
            commit_message=commit_message or f"Upload {', '.join(files)} with zoo",
        )
    except Exception as e:
        # Any failure's text may quote request details: it is re-raised masked, without its cause attached.
        secret = token or huggingface_hub.get_token()
        text = f"{type(e).__name__}: {e}"
        if secret:
            text = text.replace(secret, "***")
        raise HubError(
            f"push of {folder} to {repo_id} failed ({text}); check the repo id and that your token "
            "(HF_TOKEN or `hf auth login`) may write to it"
        ) from None
    return PushResult(repo_id, files, commit.commit_url)
