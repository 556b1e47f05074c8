"""The model registry: names to factories, and the pretrained tags. The lowest layer but errors.

Every architecture and variant is a factory function decorated with
``@register_model``; its ``__name__`` is the registry name. Pretrained
weights are addressed as ``<arch>.<tag>`` (``googlenet_res5x5.cifar10_paper``)
and listed in ``zoo/pretrained.json``; only tags whose file was really trained
appear there. This module builds models without weights (:func:`build_model`);
``zoo.hub.factory.create_model`` adds the weights and the timm bridge. ``zoo.models`` registers the built-in
families: a module that looks models up imports it (``import zoo`` does on first use of its API).
"""
from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import functools
import inspect
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from zoo.core.arguments import Range, check_arguments
from zoo.core.errors import ArgumentError, CheckpointError, DataError, UnknownModelError, ZooError
from zoo.data.datasets import DataConfig, spec_for_model

if TYPE_CHECKING:  # the type the registry builds and describes; zoo.models imports this module, so only for types
    from zoo.models.layers import ZooModel

__all__ = [
    "BUNDLED_DIR",
    "HF_PREFIX",
    "TAGS_FILE",
    "PretrainedTag",
    "build_model",
    "check_model_kwargs",
    "default_data_config",
    "describe",
    "pretrained_cfg",
    "set_data_config",
    "get_pretrained_tag",
    "hub_model_id",
    "read_tags",
    "tag_from_json",
    "list_models",
    "meta_model",
    "model_args",
    "model_class",
    "model_info",
    "register_model",
    "split_model_name",
]

HF_PREFIX = "hf-hub:"
"""``hf-hub:owner/name[@revision]`` names weights on the Hugging Face Hub (timm's prefix)."""
TIMM_PREFIX = "zoo_"
"""Our models are registered in timm as ``zoo_<name>`` so they never shadow timm's own."""

_MODELS: dict[str, Callable[..., ZooModel]] = {}


TAGS_FILE = Path(__file__).parents[1] / "pretrained.json"
_PACKAGED = Path(__file__).resolve().parents[1] / "model_cards"
BUNDLED_DIR = _PACKAGED if _PACKAGED.is_dir() else Path(__file__).resolve().parents[2] / "model_cards"
"""The bundled tags, one Hub-layout folder ``<arch>.<tag>/`` each: ``zoo/model_cards`` in a wheel, the repository's
``model_cards/`` in a source checkout."""


@dataclass(frozen=True)
class PretrainedTag:
    """Everything needed to build, fetch and check one trained checkpoint.

    ``sha256`` pins the weights file whichever source serves it. ``data`` is the weights' data contract and
    provenance (dataset, metrics). ``hf_hub_id`` and ``revision`` (a 40-hex commit) are set once the folder is
    published.
    """

    arch: str
    tag: str
    sha256: str
    model_kwargs: dict[str, Any]
    data: DataConfig
    recipe: str
    hf_hub_id: str | None = None
    revision: str | None = None
    filename: str = "model.safetensors"

    @property
    def name(self) -> str:
        return f"{self.arch}.{self.tag}"

    @property
    def bundled(self) -> Path:
        """The folder this install bundles the tag in (it may not exist: a tag published on the Hub only)."""
        return BUNDLED_DIR / self.name


    @property
    def dataset(self) -> str:
        return str(self.data.dataset)

    def to_json(self) -> dict[str, Any]:
        """The entry as ``pretrained.json`` holds it (:func:`read_tags` reads it back)."""
        return {**dataclasses.asdict(self), "data": self.data.to_json()}


def read_tags(path: Path = TAGS_FILE) -> dict[str, PretrainedTag]:
    """The tags a ``pretrained.json`` pins, by ``arch.tag``; a damaged file or entry is refused, naming both."""
    if not path.exists():
        return {}
    try:
        entries = json.loads(path.read_text())
        if not isinstance(entries, list):
            raise TypeError("not a JSON list of tag entries")
        tags = [tag_from_json(e, f"entry {i}") for i, e in enumerate(entries)]
        found = {tag.name: tag for tag in tags}
        if len(found) < len(tags):
            raise CheckpointError("it pins a tag twice")
    except (OSError, ValueError, TypeError) as e:  # CheckpointError, a ValueError, from an entry included
        detail = str(e) if isinstance(e, CheckpointError) else f"{type(e).__name__}: {e}"
        raise CheckpointError(f"{path} is damaged ({detail}); restore it (git checkout {path.name}, or reinstall "
                              "zoo)") from None
    return found


SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
"""A hex sha256 as zoo writes and pins them: 64 lowercase hex digits."""
COMMIT_PATTERN = re.compile(r"[0-9a-f]{40}")
"""A git commit as a tag pins its Hub revision: 40 lowercase hex digits."""


def tag_from_json(entry: Any, where: str) -> PretrainedTag:
    """One entry of a tags file, every field checked: present, of its type, and in range (``where`` names it)."""
    if not isinstance(entry, dict):
        raise CheckpointError(f"{where} is a JSON {type(entry).__name__}, not an object")
    where = f"{where} ({entry.get('arch')}.{entry.get('tag')})"
    missing = [f.name for f in dataclasses.fields(PretrainedTag) if f.name not in entry and f.default is dataclasses.MISSING]
    if missing:
        raise CheckpointError(f"{where} lacks {', '.join(missing)}")
    check_arguments(where, {k: v for k, v in entry.items() if k != "data"}, PretrainedTag, exclude=("data",),
                    error=CheckpointError)
    try:
        data = DataConfig.from_json(entry["data"], f"{where}: data")
    except DataError as e:
        raise CheckpointError(str(e)) from None
    tag = PretrainedTag(**{**entry, "data": data})
    if not SHA256_PATTERN.fullmatch(tag.sha256):
        raise CheckpointError(f"{where}: sha256={tag.sha256!r} is not 64 lowercase hex digits")
    if tag.revision is not None and not COMMIT_PATTERN.fullmatch(tag.revision):
        raise CheckpointError(f"{where}: revision={tag.revision!r} is not a 40-hex commit")
    check_input_size(data.input_size, f"{where}: input_size", tag.model_kwargs.get("in_chans"), CheckpointError)
    classes = tag.model_kwargs.get("num_classes", len(data.label_names or ()))
    if data.dataset is None or data.label_names is None or len(data.label_names) != classes:
        raise CheckpointError(f"{where}: data must name its dataset and {classes} label names, one per class")
    if not data.metrics or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                   for v in data.metrics.values()):
        raise CheckpointError(f"{where}: data.metrics must be finite numbers, got {data.metrics!r}")
    return tag


@functools.cache
def _tags() -> dict[str, PretrainedTag]:
    """The package's tags, read once, when a command first needs one (a damaged file breaks no other command)."""
    return read_tags(TAGS_FILE)


def register_model(fn: Callable[..., ZooModel]) -> Callable[..., ZooModel]:
    """Register a model factory under its function name (a duplicate is an error)."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered by {_MODELS[name].__module__}; pick another name")
    _MODELS[name] = fn
    for hook in _ON_REGISTER:
        hook(name)
    return fn


_ON_REGISTER: list[Callable[[str], None]] = []
"""Called with each name registered from now on (zoo.hub.factory mirrors every model into timm)."""


def on_register(hook: Callable[[str], None]) -> None:
    """Call ``hook(name)`` for every model registered so far and every one registered later."""
    _ON_REGISTER.append(hook)
    for name in list(_MODELS):
        hook(name)


def factory(name: str) -> Callable[..., ZooModel]:
    """The registered factory function of arch ``name``."""
    if name not in _MODELS:
        raise _unknown_model(name)
    return _MODELS[name]


def split_model_name(name: str) -> tuple[str, str]:
    """``"resnet18.cifar10_paper"`` -> ``("resnet18", "cifar10_paper")``; no tag gives ``""``."""
    if not isinstance(name, str):
        raise ArgumentError(f"a model name is a string such as 'resnet18' or 'resnet18.cifar10_paper', got {name!r}; "
                            "zoo.list_models() lists them")
    arch, _, tag = name.partition(".")
    return arch, tag


def _unknown_model(arch: str) -> UnknownModelError:
    close = difflib.get_close_matches(arch, _MODELS, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
    return UnknownModelError(f"unknown model {arch!r}; {hint}zoo.list_models() lists them all")


def get_pretrained_tag(name: str) -> PretrainedTag:
    """The tag entry for ``arch.tag``, or the arch's first tag when ``name`` has none."""
    arch, tag = split_model_name(name)
    if arch not in _MODELS:
        raise _unknown_model(arch)
    tags = _tags()
    valid = [t for t in tags if split_model_name(t)[0] == arch]
    if not tag and valid:
        return tags[valid[0]]
    if f"{arch}.{tag}" in tags:
        return tags[f"{arch}.{tag}"]
    if valid:
        raise UnknownModelError(f"no pretrained weights {name!r}; valid tags for {arch}: {', '.join(valid)}")
    raise UnknownModelError(
        f"no pretrained weights for {arch!r} yet; zoo.list_models(pretrained=True) lists what is published, "
        "or pass pretrained=False and train it (zoo train)"
    )


def hub_model_id(source: str | None) -> str | None:
    """The Hugging Face model id weights came from, as a card's ``base_model:`` takes it: ``owner/name`` of an
    ``hf-hub:`` source or of a published tag; None for a local folder or a tag not yet on the Hub."""
    if not source:
        return None
    if source.startswith(HF_PREFIX):
        return source[len(HF_PREFIX):].partition("@")[0]
    return _tags()[source].hf_hub_id if source in _tags() else None


def build_model(name: str, *, num_classes: int | None = None, in_chans: int | None = None, **kwargs: Any) -> ZooModel:
    """Build a registered model with fresh (random) weights.

    ``name`` is ``arch`` or ``arch.tag``; a tag supplies the kwargs its checkpoint was trained with
    (num_classes, in_chans, stem, ...), explicit arguments win. Weights: ``zoo.create_model``.
    """
    arch, tag = split_model_name(name)
    if arch not in _MODELS:
        raise _unknown_model(arch)
    entry = get_pretrained_tag(name) if tag else None
    if entry:
        kwargs = {**entry.model_kwargs, **kwargs}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    if kwargs:
        check_model_kwargs(arch, kwargs)
    return describe(_MODELS[arch](**kwargs), arch, kwargs, entry)


def describe(model: ZooModel, arch: str, kwargs: dict[str, Any], tag: PretrainedTag | None = None) -> ZooModel:
    """Let ``model`` know what it is: its arch and kwargs (``_model_args``, timm's name: save_pretrained and timm's
    save_for_hf need no repeat of them) and its data contract (:func:`set_data_config`): its tag's, else the
    one its configuration is for (:func:`default_data_config`)."""
    model._zoo_arch, model._model_args = arch, dict(kwargs)
    if tag is None:
        return set_data_config(model, default_data_config(model))
    own = model.num_classes == tag.model_kwargs.get("num_classes")  # the tag's head: its labels and its name
    return set_data_config(model, tag.data.for_model(model.in_chans, model.num_classes), tag.tag if own else None)


def set_data_config(model: ZooModel, data: DataConfig, tag: str | None = None) -> ZooModel:
    """The one place a model gets its data contract: ``model.data_config`` (the record) and ``pretrained_cfg`` (its
    timm projection, :func:`pretrained_cfg`, which timm's ``resolve_data_config`` reads)."""
    model.data_config = data
    model.default_input_size = data.input_size
    model.pretrained_cfg = model.default_cfg = pretrained_cfg(model, data, tag)
    return model


def pretrained_cfg(model: ZooModel, data: DataConfig, tag: str | None = None) -> dict[str, Any]:
    """timm's pretrained_cfg of ``model`` holding weights of contract ``data`` (and ``tag``): the record's timm keys
    with the model's own timm facts."""
    cfg = {"architecture": TIMM_PREFIX + model._zoo_arch, "first_conv": model.first_conv,
           "classifier": model.classifier_names, "license": "mit", "paper_name": "Deeper Networks for Image Classification",
           "fixed_input_size": False, "num_classes": model.num_classes, **data.timm_cfg(),
           # forward_features' (h, w) at the input (head_hidden_size is the model's: timm's PretrainedCfg has none)
           "pool_size": model.pool_size(data.input_size)}
    return {**cfg, "tag": tag} if tag else cfg


IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
"""The statistics of the ImageNet-sized configuration (the datasets' own are in their zoo.data.datasets.DataSpec)."""
IMAGENET_CROP_PCT = 0.875


def default_data_config(model: ZooModel) -> DataConfig:
    """The data contract of a model without weights: that of the data its configuration is for
    (zoo.data.datasets.spec_for_model: a dataset with its channels and classes, or 32x32 data for a CIFAR stem or
    head), without provenance or labels; else ImageNet's."""
    spec = spec_for_model(model.in_chans, model.num_classes, getattr(model, model.variant_arg, "imagenet") == "cifar")
    if spec is not None:
        return dataclasses.replace(spec.data_config(), dataset=None, label_names=None)
    imagenet = DataConfig((3, *model.default_input_size[1:]), *IMAGENET_MEAN_STD, crop_pct=IMAGENET_CROP_PCT)
    return imagenet.for_model(model.in_chans, model.num_classes)


def check_model_kwargs(arch: str, kwargs: dict[str, Any]) -> None:
    """Refuse kwargs ``arch`` does not take, or takes with another type, choice or range, naming the valid ones."""
    if arch not in _MODELS:
        raise _unknown_model(arch)
    cls = model_class(arch)
    check_arguments(arch, kwargs, cls.__init__, exclude=cls.arch_args, ranges=MODEL_RANGES)


MAX_CLASSES = 1_000_000
MAX_CHANNELS = 4096
MAX_INPUT_SIDE = 4096
"""Bounds no real classifier reaches: beyond them a number is a typo that would ask for terabytes, refused first."""

MODEL_RANGES = {"num_classes": Range(0, MAX_CLASSES, open_high=False), "in_chans": Range(1, MAX_CHANNELS, open_high=False),
                "dropout": Range(0, 1), "dropout_aux": Range(0, 1), "drop_rate": Range(0, 1), "drop_path_rate": Range(0, 1)}
"""num_classes=0 is timm's "no classifier"; a model needs at least one input channel."""


def check_input_size(size: Any, what: str, in_chans: int | None = None, error: type[ZooError] = ArgumentError) -> None:
    """Refuse an input size (``what`` names it) that is not (C, H, W) of positive whole numbers within the bounds above,
    or whose C is not ``in_chans``, before anything is allocated for it."""
    if not isinstance(size, (list, tuple)) or len(size) != 3 or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        raise error(f"{what} must be 3 whole numbers > 0 (C, H, W), e.g. (3, 32, 32), got {size!r}")
    if size[0] > MAX_CHANNELS or max(size[1:]) > MAX_INPUT_SIDE:
        raise error(f"{what} {tuple(size)} is too large: at most {MAX_CHANNELS} channels and {MAX_INPUT_SIDE} pixels "
                    "a side")
    if in_chans is not None and size[0] != in_chans:
        raise error(f"{what} {tuple(size)} has {size[0]} channel(s) but in_chans={in_chans}; make them agree")


def meta_model(name: str, **kwargs: Any) -> ZooModel:
    """``build_model(name, **kwargs)`` on the meta device, in eval mode: structure and shapes, no memory.

    The instance is shared (cached: a build costs up to 0.3 s), so read it and never change it;
    ``kwargs`` must be JSON values, as a checkpoint records them.
    """
    return _meta_model(name, json.dumps(kwargs, sort_keys=True))


@functools.lru_cache(maxsize=256)
def _meta_model(name: str, kwargs_json: str) -> ZooModel:
    with torch.device("meta"):
        return build_model(name, **json.loads(kwargs_json)).eval()


def model_class(arch: str) -> type[ZooModel]:
    """The class arch ``arch`` builds (read its family facts: ``family``, ``variant_arg``, ``aux_prefixes``)."""
    return type(meta_model(arch))


def model_args(arch: str) -> tuple[str, ...]:
    """The kwargs users pass ``arch``: its class's ``__init__`` arguments, less those each arch fixes."""
    cls = model_class(arch)
    return tuple(n for n in inspect.signature(cls.__init__).parameters if n not in ("self", *cls.arch_args))


def list_models(pattern: str | Iterable[str] = "*", pretrained: bool = False) -> list[str]:
    """Registered names matching shell-style ``pattern`` (or any of several).

    With ``pretrained=True``, the ``arch.tag`` names that have published weights.
    """
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    names = _tags() if pretrained else _MODELS
    return sorted(n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns))


def param_count(name: str, **kwargs: Any) -> int:
    """Parameters of ``name`` built with ``kwargs`` (None values left out, as :func:`model_info` does), counted on
    the meta device: what a plan needs of a model without the cost of tracing a forward pass."""
    return sum(p.numel() for p in meta_model(name, **{k: v for k, v in kwargs.items() if v is not None}).parameters())


def model_info(name: str, input_size: tuple[int, int, int] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Parameter count and multiply-accumulates of one forward pass at batch 1.

    The model is built on the meta device (no memory, no weights) and run under
    ``torch.utils.flop_counter.FlopCounterMode``, which counts convolutions and
    matrix products; MACs = FLOPs / 2. ``input_size`` defaults to the model's
    own (``model.default_input_size``). Aux heads are not counted (eval mode).
    """
    if input_size is not None:
        check_input_size(input_size, "input_size")
    size = tuple(input_size) if input_size is not None else None
    return dict(_model_info(name, size, json.dumps({k: v for k, v in kwargs.items() if v is not None}, sort_keys=True)))


@functools.lru_cache(maxsize=256)
def _model_info(name: str, input_size: tuple[int, int, int] | None, kwargs_json: str) -> dict[str, Any]:
    from torch.utils.flop_counter import FlopCounterMode  # noqa: PLC0415 lazy: torch.utils.flop_counter is only for this count

    model = meta_model(name, **json.loads(kwargs_json))
    size = tuple(input_size or model.default_input_size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad(), torch.device("meta"):
        model(torch.empty(1, *size))
    flops = counter.get_total_flops()
    return {
        "name": name,
        "input_size": list(size),
        "params": sum(p.numel() for p in model.parameters()),
        "macs": flops // 2,
        "flops": flops,
    }
