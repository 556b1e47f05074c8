"""A user cache of the benchmark's ONNX files (fp32 exports, int8 copies), so that a repeat run skips the export.

Folder: ``$ZOO_CACHE_DIR/onnx``, else ``$XDG_CACHE_HOME/zoo/onnx``, else ``~/.cache/zoo/onnx``. An entry is a file
named by the sha256 of its key, everything that decides its bytes (for an export: the arch, its kwargs, the weights'
sha256, the input size, the opset, torch, onnx, onnxscript, zoo and the source of the exporter and the models), and
a record ``<digest>.json`` beside it holding the key and the file's sha256. Both are written atomically, the file
first, so a record always names a whole file. On read the record's key must be the key asked for and the file's
sha256 the recorded one, else the entry is made again: a changed key is a new entry, never a stale hit. Delete the
folder to empty the cache; nothing else removes entries.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.core.files import atomic_path, atomic_write_bytes, sha256_file

__all__ = ["cache_dir", "cached", "code_sha256", "is_cached", "state_sha256"]


def cache_dir() -> Path:
    """Where the entries live (see the module docstring)."""
    if os.environ.get("ZOO_CACHE_DIR"):
        return Path(os.environ["ZOO_CACHE_DIR"]) / "onnx"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "zoo" / "onnx"


def state_sha256(model: nn.Module) -> str:
    """sha256 over a model's state (names, dtypes, shapes, values): the weights actually exported, whatever file or
    seed they came from."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().contiguous().cpu()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def code_sha256(*paths: Path) -> str:
    """sha256 over source files: an edited exporter or model makes new entries (a release has its version too)."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _hit(path: Path, record: Path, key: dict[str, Any], *, verify: bool = True) -> bool:
    """The entry exists, was made for ``key`` and is the whole file recorded (its sha256 too, with ``verify``)."""
    try:
        saved = json.loads(record.read_text())
        return (saved["key"] == key and path.stat().st_size == saved["bytes"]
                and (not verify or sha256_file(path) == saved["sha256"]))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _entry(key: dict[str, Any], suffix: str) -> tuple[dict[str, Any], Path, Path]:
    """``key`` as its record reads back (tuples become lists), the entry's file and its record."""
    key = json.loads(json.dumps(key, default=str))
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    folder = cache_dir()
    return key, folder / f"{digest}{suffix}", folder / f"{digest}.json"


def is_cached(key: dict[str, Any], suffix: str = ".onnx") -> bool:
    """Whether the cache has an entry for ``key`` of the recorded size: what to make ahead of time. :func:`cached`
    still checks its sha256 when it reads it."""
    key, path, record = _entry(key, suffix)
    return _hit(path, record, key, verify=False)


def cached(key: dict[str, Any], make: Callable[[Path], Any], suffix: str = ".onnx") -> tuple[Path, bool]:
    """The cached file for ``key`` and True, or else the file ``make(path)`` writes, cached, and False."""
    key, path, record = _entry(key, suffix)
    if _hit(path, record, key):
        return path, True
    with atomic_path(path) as tmp:
        make(tmp)
    atomic_write_bytes(record, (json.dumps({"key": key, "bytes": path.stat().st_size, "sha256": sha256_file(path)},
                                           indent=1) + "\n").encode())
    return path, False
