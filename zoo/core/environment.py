"""What each environment variable zoo reads may hold, checked before any work (a leaf: no torch).

Every command calls :func:`check_environment` first, so a mistyped variable is one line naming it, not a
traceback minutes in. The readers use the parsed values from here: :func:`distributed` (torchrun's variables,
for ``zoo.train.loop``), :func:`hf_endpoint` (``zoo.hub.pretrained``) and :func:`smoke_enabled` (``ZOO_SMOKE``, zoo.core.console).
Variables that huggingface_hub reads for zoo (``HF_HUB_OFFLINE``, ``HF_HOME``, ``HF_HUB_CACHE``) are checked too;
the rest are read where they are used (``ZOO_DATA_DIR`` in zoo.data.loading, ``ZOO_HUB_DIR`` in zoo.hub.pretrained,
``ZOO_GIT_COMMIT`` in zoo.core.machine).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from zoo.core.errors import ArgumentError

__all__ = ["check_environment", "debug_enabled", "distributed", "hf_endpoint", "smoke_enabled"]

SWITCHES = ("", "0", "1", "false", "true", "no", "yes", "off", "on")
"""The values a yes/no variable (ZOO_DEBUG, HF_HUB_OFFLINE) may take, in any case."""


def _refused(name: str, problem: str, fix: str = "fix it or unset it") -> ArgumentError:
    return ArgumentError(f"environment variable {name}={os.environ.get(name, '')!r} {problem}; {fix}")


def _whole(name: str, default: int, low: int, high: int | None = None) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < low or (high is not None and int(text) > high):
        raise _refused(name, f"is not a whole number from {low}" + (f" to {high}" if high is not None else " up"))
    return int(text)


def distributed() -> tuple[int, int, int]:
    """(WORLD_SIZE, RANK, LOCAL_RANK) as torchrun sets them (1, 0, 0 outside it); with more than one process,
    MASTER_ADDR and MASTER_PORT must say where the rendezvous is."""
    world = _whole("WORLD_SIZE", 1, 1)
    rank = _whole("RANK", 0, 0, world - 1)
    local_rank = _whole("LOCAL_RANK", 0, 0, world - 1)
    port = _whole("MASTER_PORT", 0, 1, 65535)
    if world > 1 and not os.environ.get("MASTER_ADDR", "").strip():
        raise _refused("MASTER_ADDR", f"is empty but WORLD_SIZE={world}",
                       "launch with torchrun, or set MASTER_ADDR to the rank-0 host")
    if world > 1 and not port:
        raise _refused("MASTER_PORT", f"is empty but WORLD_SIZE={world}", "launch with torchrun, or set MASTER_PORT")
    if re.search(r"\s", os.environ.get("MASTER_ADDR", "")):
        raise _refused("MASTER_ADDR", "is not a host name or address")
    return world, rank, local_rank


def hf_endpoint() -> str | None:
    """``HF_ENDPOINT`` without its trailing slash (None when unset): an http(s) URL with a host. Read at each call,
    not only when huggingface_hub was imported (timm imports it with zoo), so a mirror set after ``import zoo``
    is used."""
    text = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/")
    if not text:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or re.search(r"\s", text):
        raise _refused("HF_ENDPOINT", "is not an http(s) URL like https://huggingface.co")
    return text


def debug_enabled() -> bool:
    """``ZOO_DEBUG``: show tracebacks (0, false, no, off or empty: not)."""
    return _switch("ZOO_DEBUG")


def smoke_enabled() -> bool:
    """``ZOO_SMOKE``: every command runs at smoke-test size (zoo.core.console.SMOKE_SIZE; 0, false, no, off or empty: not)."""
    return _switch("ZOO_SMOKE")


def _switch(name: str) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value not in SWITCHES:
        raise _refused(name, f"is not one of {', '.join(v for v in SWITCHES if v)}")
    return value not in ("", "0", "false", "no", "off")


def _folder(name: str) -> None:
    """A folder variable names a directory, or nothing yet (the command that reads it says what it looked for)."""
    value = os.environ.get(name, "")
    if value and Path(value).exists() and not Path(value).is_dir():
        raise _refused(name, "is not a directory")


def check_environment() -> None:
    """Every variable zoo reads, checked; the first bad one is an ArgumentError naming it."""
    distributed()
    hf_endpoint()
    debug_enabled()
    smoke_enabled()
    _switch("HF_HUB_OFFLINE")
    for name in ("ZOO_DATA_DIR", "ZOO_HUB_DIR", "HF_HOME", "HF_HUB_CACHE"):
        _folder(name)
    commit = os.environ.get("ZOO_GIT_COMMIT", "")
    if commit and not re.fullmatch(r"[0-9a-f]{7,40}", commit):
        raise _refused("ZOO_GIT_COMMIT", "is not a git commit (7 to 40 lowercase hex digits)")
