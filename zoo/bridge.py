"""zoo's models in timm, the moment timm is imported, before or after zoo, without zoo importing timm.

Importing timm costs about 1.7 s (torchvision, torch._dynamo), and zoo itself starts without torch, so the
registration waits for timm: an import hook calls ``zoo.hub.factory.mirror_into_timm`` right after timm's module
has run. A mere probe (``importlib.util.find_spec("timm")``, as torch.hub's dependency check makes) imports
nothing, so the hook stays in place until timm really loads.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["install"]


class AfterImport(importlib.abc.MetaPathFinder):
    """Run ``callback`` once, right after the module ``name`` is first executed (by anyone).

    While it asks the other finders for the spec it answers nothing itself."""

    def __init__(self, name: str, callback: Callable[[], None]) -> None:
        self.name, self.callback, self.busy = name, callback, False

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != self.name or self.busy:
            return None
        self.busy = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self.busy = False
        if spec is not None and spec.loader is not None:
            run = spec.loader.exec_module

            def exec_module(module: Any) -> None:
                run(module)
                if self in sys.meta_path:
                    sys.meta_path.remove(self)
                    self.callback()

            spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _mirror() -> None:
    importlib.import_module("zoo.models")  # every architecture, registered before timm is told of them
    importlib.import_module("zoo.hub.factory").mirror_into_timm()  # loaded now: timm has loaded torch already


def install() -> None:
    """Mirror zoo's models into timm now if timm is loaded, else as soon as it is (once)."""
    if "timm" in sys.modules:
        _mirror()
    elif not any(isinstance(f, AfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, AfterImport("timm", _mirror))
