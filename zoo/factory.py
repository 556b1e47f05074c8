"""``create_model``: a registered model with its published weights, and the same through timm.

The factory sits above the registry (names, tags, building without weights) and
the hub (fetching and checking weights), so that neither needs the other.

Every zoo model is also ``timm.create_model("zoo_<name>")``. Importing timm costs
about 1.7 s (it imports torchvision and torch._dynamo), so zoo does not import it:
the models are registered in timm the moment timm is imported, before or after zoo.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from collections.abc import Callable
from typing import Any

from torch import nn

from zoo import registry
from zoo.hub import load_pretrained
from zoo.registry import TIMM_PREFIX, build_model, data_config, get_pretrained_tag, meta_model, model_args, split_model_name

__all__ = ["TIMM_PREFIX", "create_model"]


def create_model(
    name: str,
    *,
    pretrained: bool = False,
    num_classes: int | None = None,
    in_chans: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model, optionally with its published weights.

    ``name`` is ``arch`` or ``arch.tag``. A tag supplies the kwargs its
    checkpoint was trained with (num_classes, in_chans, stem, ...); explicit
    arguments win. ``pretrained=True`` loads the tag's weights (the arch's
    first tag when the name has none), checked against its pinned sha256.
    """
    arch, tag = split_model_name(name)
    entry = get_pretrained_tag(name) if (tag or pretrained) else None
    model = build_model(entry.name if entry else arch, num_classes=num_classes, in_chans=in_chans, **kwargs)
    if pretrained:
        load_pretrained(model, entry)
    return model


def _timm_entry(name: str):
    """timm's entry point for ``zoo_<name>``: timm's builder (features_only, hf-hub: configs, head reset),
    with a pretrained_cfg right for the configuration, and a zoo tag's weights loaded and checked by zoo."""

    def entry(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        from timm.models import build_model_with_cfg  # lazy: timm is imported already, it is calling us

        cfg = kwargs.get("pretrained_cfg")
        tag = None
        overlay = kwargs.get("pretrained_cfg_overlay") or {}
        if isinstance(cfg, str) or (pretrained and cfg is None and not overlay):  # "zoo_<arch>.<tag>", or the first tag
            tag = get_pretrained_tag(f"{name}.{cfg}" if isinstance(cfg, str) else name)
            kwargs = {**tag.model_kwargs, **kwargs}
        model_kwargs = {k: v for k, v in kwargs.items() if k in model_args(name)}  # the rest are timm's
        ours = data_config(meta_model(name, **model_kwargs), tag)
        kwargs["pretrained_cfg"] = {**ours, **cfg} if isinstance(cfg, dict) else ours
        model = build_model_with_cfg(registry.factory(name), TIMM_PREFIX + name, pretrained and tag is None,
                                     feature_cfg={"feature_cls": "getter"}, **kwargs)
        if pretrained and tag is not None:
            load_pretrained(model, tag)
        if not kwargs.get("features_only"):
            model._zoo_arch, model._zoo_kwargs = name, model_kwargs
        return model

    entry.__name__ = entry.__qualname__ = TIMM_PREFIX + name
    entry.__module__ = __name__
    entry.__doc__ = f"zoo's {name} through timm; see zoo.create_model."
    return entry


def _register_in_timm(name: str) -> None:
    """Make ``timm.create_model("zoo_<name>")`` build our model, weights included; our names never shadow timm's."""
    from timm.models import register_model as timm_register_model  # lazy: only once timm is imported

    entry = _timm_entry(name)
    globals()[entry.__name__] = entry  # timm records the entry's module; the function must be reachable there
    timm_register_model(entry)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Run ``callback`` once, right after the module ``name`` is first imported (by anyone)."""

    def __init__(self, name: str, callback: Callable[[], None]) -> None:
        self.name, self.callback = name, callback

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            run = spec.loader.exec_module

            def exec_module(module: Any) -> None:
                run(module)
                self.callback()

            spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _mirror_into_timm() -> None:
    registry.on_register(_register_in_timm)


if "timm" in sys.modules:
    _mirror_into_timm()
else:
    sys.meta_path.insert(0, _AfterImport("timm", _mirror_into_timm))
