"""``create_model``: a registered model with its published weights, and the same through timm.

The factory sits above the registry (names, tags, building without weights) and
the hub (fetching and checking weights), so that neither needs the other.

Every zoo model is also ``timm.create_model("zoo_<name>")``, with its tags known to
``timm.list_pretrained``; zoo.bridge calls :func:`mirror_into_timm` when timm is imported.
"""
from __future__ import annotations

import os
import warnings
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from zoo.core.errors import ArgumentError, CheckpointError
from zoo.data.datasets import DataConfig
from zoo.hub.pretrained import HF_PREFIX, load_model, load_pretrained, load_weights, name_labels, read_meta
from zoo.hub.weights import unwrap_zoo_model
from zoo.models import registry
from zoo.models.registry import (
    TIMM_PREFIX,
    build_model,
    get_pretrained_tag,
    meta_model,
    model_args,
    pretrained_cfg,
    split_model_name,
)

__all__ = ["TIMM_PREFIX", "create_model", "init_config", "load_any", "mirror_into_timm"]


def create_model(
    name: str,
    *,
    pretrained: bool = False,
    num_classes: int | None = None,
    in_chans: int | None = None,
    label_names: Sequence[str] | None = None,
    features_only: bool = False,
    out_indices: int | Sequence[int] = (0, 1, 2, 3, 4),
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model, optionally with its published weights.

    ``name`` is ``arch`` or ``arch.tag``. A tag supplies the kwargs its checkpoint was trained with
    (num_classes, in_chans, stem, ...); explicit arguments win. ``pretrained=True`` loads the tag's weights
    (the arch's first tag when the name has none), checked against its pinned sha256, with timm's
    semantics: another ``num_classes`` gives a fresh classifier (0: none, the model returns pooled
    features) whose classes ``label_names`` may name, another ``in_chans`` an adapted first convolution;
    every other tensor is loaded and checked as strictly as ever. ``features_only`` returns timm's feature
    extractor around the model (its stages ``out_indices``' maps, ``feature_info`` describing them).
    """
    if not isinstance(pretrained, bool):
        raise ArgumentError(f"pretrained must be True or False, got {pretrained!r}")
    arch, tag = split_model_name(name)
    entry = get_pretrained_tag(name) if (tag or pretrained) else None
    model = build_model(entry.name if entry else arch, num_classes=num_classes, in_chans=in_chans, **kwargs)
    if pretrained and entry:
        load_pretrained(model, entry)
    model = name_labels(model, label_names)
    return _features(model, out_indices) if features_only else model


def _features(model: nn.Module, out_indices: int | Sequence[int]) -> nn.Module:
    """timm's feature extractor around ``model``, as ``timm.create_model(..., features_only=True)`` builds it."""
    from timm.models._features import FeatureGetterNet  # noqa: PLC0415 lazy: timm costs 1.7 s to import, and only this option needs it

    return FeatureGetterNet(model, out_indices=out_indices if isinstance(out_indices, int) else tuple(out_indices))


def load_any(source: str | os.PathLike, **kwargs: Any) -> nn.Module:
    """A model with trained weights from a tag (``arch.tag``), a saved folder or file, or ``hf-hub:owner/name``,
    with :func:`create_model`'s semantics for ``kwargs`` (another num_classes or in_chans adapt)."""
    if _is_tag(source):
        return create_model(str(source), pretrained=True, **kwargs)
    return load_model(source, **kwargs)


def init_config(source: str | os.PathLike) -> tuple[str, dict[str, Any], DataConfig]:
    """(arch, kwargs, data contract) of the weights :func:`load_any` would load, read without loading them."""
    if _is_tag(source):
        entry = get_pretrained_tag(str(source))
        return entry.arch, dict(entry.model_kwargs), entry.data
    meta = read_meta(source)
    return meta.arch, dict(meta.model_kwargs), meta.data


def _is_tag(source: str | os.PathLike) -> bool:
    """A source names a tag unless it is ``hf-hub:...`` or a path that exists (as zoo predict reads it); a source
    that is neither, nor a model zoo knows, is a missing path (a CheckpointError saying so)."""
    if str(source).startswith(HF_PREFIX) or Path(source).exists():
        return False
    if split_model_name(str(source))[0] not in registry.list_models():
        raise CheckpointError(f"{source}: no such file or folder, nor a model zoo knows; pass a save_pretrained "
                              "folder, a .safetensors file, a tag (zoo list --pretrained) or hf-hub:owner/name")
    return True


def _timm_entry(name: str):
    """timm's entry point for ``zoo_<name>``: timm's builder (features_only, hf-hub: configs, head reset),
    with a pretrained_cfg right for the configuration, and a zoo tag's weights loaded and checked by zoo
    (into the backbone a features_only wrapper holds)."""

    def entry(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        from timm.models import build_model_with_cfg  # noqa: PLC0415 lazy: timm is imported already, it is calling us

        cfg = kwargs.get("pretrained_cfg")
        tag = None
        overlay = kwargs.get("pretrained_cfg_overlay") or {}
        if isinstance(cfg, str) or (pretrained and cfg is None and not overlay):  # "zoo_<arch>.<tag>", or the first tag
            tag = get_pretrained_tag(f"{name}.{cfg}" if isinstance(cfg, str) else name)
            kwargs = {**tag.model_kwargs, **kwargs}
        model_kwargs = {k: v for k, v in kwargs.items() if k in model_args(name)}  # the rest are timm's
        built = meta_model(name, **model_kwargs)
        ours = pretrained_cfg(built, tag.data, tag.tag) if tag else built.pretrained_cfg
        kwargs["pretrained_cfg"] = {**ours, **cfg} if isinstance(cfg, dict) else ours
        source = _zoo_source(cfg) if pretrained and tag is None else None
        model = build_model_with_cfg(registry.factory(name), TIMM_PREFIX + name, pretrained and tag is None and not source,
                                     feature_cfg={"feature_cls": "getter"}, **kwargs)
        backbone = unwrap_zoo_model(model.get_submodule("model") if kwargs.get("features_only") else model,
                                    f"timm.create_model('{TIMM_PREFIX}{name}')")
        backbone._zoo_arch, backbone._model_args = name, model_kwargs
        if pretrained and tag is not None:
            load_pretrained(backbone, tag)
        if source:
            load_weights(backbone, source, adapt=True)
        return model

    entry.__name__ = entry.__qualname__ = TIMM_PREFIX + name
    entry.__module__ = __name__
    entry.__doc__ = f"zoo's {name} through timm; see zoo.create_model."
    return entry


def _zoo_source(cfg: Any) -> str | None:
    """zoo's name for the weights timm was asked for (``local-dir:PATH``, ``hf-hub:owner/name``), so that zoo's checked
    loader reads them (links, special files, digests, values); None for weights timm names otherwise."""
    source = cfg.get("source") if isinstance(cfg, dict) else None
    if source == "local-dir" and cfg.get("file"):
        return str(cfg["file"])
    return f"{HF_PREFIX}{cfg['hf_hub_id']}" if source == "hf-hub" and cfg.get("hf_hub_id") else None


default_cfgs: dict[str, Any] = {}
"""timm reads a registering module's ``default_cfgs``: each zoo_<arch>'s tags, so timm.list_pretrained knows them."""


def _timm_tags(name: str) -> Any:
    """timm's DefaultCfg of ``zoo_<name>``: one PretrainedCfg per tag, with the weights' file where one is bundled."""
    from timm.models import DefaultCfg, PretrainedCfg  # noqa: PLC0415 lazy: only once timm is imported

    tags = registry.list_models(f"{name}.*", pretrained=True)
    cfgs = {"": PretrainedCfg(**meta_model(name).pretrained_cfg)}
    for full in tags:
        entry = get_pretrained_tag(full)
        local = entry.bundled / entry.filename
        cfgs[entry.tag] = PretrainedCfg(**{**meta_model(full).pretrained_cfg, "file": str(local) if local.is_file() else None,
                                          "hf_hub_id": entry.hf_hub_id})
    order = [*list(cfgs)[1:], ""]  # the tags in the order listed, then the untrained configuration
    return DefaultCfg(tags=deque(order), cfgs=cfgs)


def _register_in_timm(name: str) -> None:
    """Make ``timm.create_model("zoo_<name>")`` build our model, weights included; our names never shadow timm's."""
    from timm.models import register_model as timm_register_model  # noqa: PLC0415 lazy: only once timm is imported

    entry = _timm_entry(name)
    globals()[entry.__name__] = entry  # timm records the entry's module; the function must be reachable there
    try:
        default_cfgs[entry.__name__] = _timm_tags(name)
    except CheckpointError as e:  # a damaged pretrained.json must not break `import timm`: the models still register
        warnings.warn(f"zoo: {e}; zoo's models are registered in timm without their tags", stacklevel=2)
    timm_register_model(entry)


def mirror_into_timm() -> None:
    """Register every zoo model in timm as ``zoo_<name>``, now and as later ones register (zoo.bridge calls this once
    timm is imported)."""
    registry.on_register(_register_in_timm)
