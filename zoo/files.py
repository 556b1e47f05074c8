"""Every file zoo writes, written so that nothing is ever half-written or lost: atomic writes and staged folders.

A write goes to a temporary file in the same directory, is fsynced, then renamed over the target, so a crash
leaves either the old file or the new one, never half of either. A folder of files is built in a hidden
sibling directory and only then moved into place. Temporary files left by a killed writer are removed by a
later write to the same path.
"""
from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from zoo.errors import ArgumentError

__all__ = ["atomic_path", "atomic_write_bytes", "check_writable", "sha256_file", "staged_dir"]


def _temp_path(path: Path) -> Path:
    """``.<name>.<pid>.<random>.tmp`` beside ``path``: the pid tells a later writer whether its owner is alive."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


ORPHAN_AGE_S = 60.0
"""A temp file is orphaned when its writer's pid is gone and it has not changed for this long (the pid alone
misjudges a writer in another container sharing the directory)."""


def _remove_orphans(path: Path) -> None:
    """Temporary siblings of ``path`` left by writers that were killed."""
    pattern = re.compile(re.escape(f".{path.name}.") + r"(\d+)\.[0-9a-f]+\.tmp")
    for tmp in path.parent.iterdir() if path.parent.is_dir() else ():
        match = pattern.fullmatch(tmp.name)
        if not match or int(match.group(1)) == os.getpid() or _pid_alive(int(match.group(1))):
            continue
        try:
            if time.time() - tmp.lstat().st_mtime < ORPHAN_AGE_S:
                continue
        except FileNotFoundError:
            continue
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; on success it is fsynced and renamed over ``path``.

    Readers see the old file or the whole new one; on an exception the temporary file is removed, and one
    orphaned by a killed writer is removed by a later write to ``path``. The file is created with the
    permissions the user's umask gives.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)
    tmp = _temp_path(path)
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # the kernel applies the umask
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def check_writable(path: str | os.PathLike) -> None:
    """Refuse, before any work, an output ``path`` zoo could not write: every write goes to a temporary file
    beside it, renamed over it, so the directory that will hold it must be (or be creatable in) a writable
    directory. Nothing is created."""
    path = Path(path)
    probe = path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ArgumentError(f"cannot write {path}: {probe} is a file, not a directory; choose another output path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ArgumentError(f"cannot write {path}: {probe} is not writable; choose another output path")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _fsync_dir(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextmanager
def staged_dir(out_dir: str | os.PathLike, *, stale: tuple[str, ...] = ()) -> Iterator[Path]:
    """Build a folder in a hidden sibling directory; move it to ``out_dir`` only if the block succeeds.

    A new ``out_dir`` appears in one rename. In an existing one each written
    file replaces its old version in one rename, the ``stale`` names the block
    did not write are deleted and every other file is left alone, so
    ``out_dir`` never holds a half-written file. On an exception nothing under
    ``out_dir`` changes and the staging directory is removed.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(out_dir)
    staging = _temp_path(out_dir)
    staging.mkdir(0o777)  # the umask applies
    try:
        yield staging
        if not out_dir.exists():
            os.replace(staging, out_dir)
        else:
            written = sorted(item.name for item in staging.iterdir())
            for name in written:
                os.replace(staging / name, out_dir / name)
            for name in set(stale) - set(written):
                (out_dir / name).unlink(missing_ok=True)
            _fsync_dir(out_dir)
        _fsync_dir(out_dir.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
