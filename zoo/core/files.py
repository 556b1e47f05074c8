"""Every file zoo writes, written so that nothing is ever half-written or lost: atomic writes and staged folders.

A write goes to a temporary file in the same directory, is fsynced, then renamed over the target, so a crash,
a kill or a full disk leaves either the old file or the new one, never half of either. A folder of files is
built in a hidden sibling directory and only then moved into place. Temporary files and folders are named
``.zoo<pid>.<random>.tmp``, short whatever the target's name; one left by a killed writer is removed by a
later write into the same directory. Files and folders follow the user's umask.

What an output may be: a regular file or a free name (a folder for :func:`staged_dir`). zoo never replaces a
directory, a device, a FIFO or a socket: that is an ArgumentError before anything is written. A symbolic link
given as the output is written through: the temporary file is made beside the file the link leads to and
renamed over it, so the link stays and its target changes atomically; a dangling link, a loop or a link to
anything else is refused. Inside a folder that :func:`staged_dir` updates, links and special files are
refused, not followed.

A storage fault (a full disk, no inodes left, the file-size limit, a read-only file system) is an OSError
naming the path asked for, never a temporary file, and leaves the old file as it was and no temporary file
behind. CPython ignores SIGXFSZ, so a write past RLIMIT_FSIZE fails with EFBIG instead of killing zoo.
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from zoo.core.errors import ArgumentError

__all__ = ["atomic_path", "atomic_write_bytes", "check_inside", "check_readable", "check_writable", "naming_os_errors",
           "remove_stale_temps", "sha256_file", "staged_dir"]


_TEMP_NAME = re.compile(r"\.zoo(\d+)\.[0-9a-f]+\.tmp")
"""zoo's temporary files and staging folders: ``.zoo<pid>.<random>.tmp``. Short, so that a target name of the
filesystem's 255 bytes can still be written; the pid tells a later writer whether its owner is alive."""


def _temp_path(path: Path) -> Path:
    """A fresh temporary name beside ``path``."""
    return path.with_name(f".zoo{os.getpid()}.{secrets.token_hex(4)}.tmp")


ORPHAN_AGE_S = 60.0
"""A temp file is orphaned when its writer's pid is gone and it has not changed for this long (the pid alone
misjudges a writer in another container sharing the directory)."""


def _remove_orphans(path: Path) -> None:
    """Temporary files and folders beside ``path`` left by killed writers: zoo's, and ``.<name>.<pid>.<random>.tmp``
    of ``path`` itself, the name zoo 0.1 gave them. Best effort: a write never fails for the sake of cleaning."""
    legacy = re.compile(re.escape(f".{path.name}.") + r"(\d+)\.[0-9a-f]+\.tmp")
    _remove_temps(path.parent, lambda name: _TEMP_NAME.fullmatch(name) or legacy.fullmatch(name), _orphaned)


def remove_stale_temps(folder: Path) -> None:
    """Remove every zoo temporary file and folder in ``folder`` that another process made, whatever its age: for a
    caller that holds ``folder``'s lock (zoo.hub.rundir.directory_lock), under which no other zoo process writes there,
    so a resumed run clears what a kill -9 of the last one left at once, not a minute later."""
    _remove_temps(folder, _TEMP_NAME.fullmatch, lambda tmp, pid: pid != os.getpid())


def _remove_temps(folder: Path, match_name: Callable[[str], re.Match | None], stale: Callable[[Path, int], bool]) -> None:
    """Remove the entries of ``folder`` whose name matches (group 1: the writer's pid) and that ``stale`` judges so."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    for tmp in entries:
        match = match_name(tmp.name)
        if match and stale(tmp, int(match.group(1))):
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() and not tmp.is_symlink() else _unlink_quietly(tmp)


def _orphaned(tmp: Path, pid: int) -> bool:
    if pid == os.getpid() or _pid_alive(pid):
        return False
    try:
        return time.time() - tmp.lstat().st_mtime >= ORPHAN_AGE_S
    except OSError:
        return False


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass  # another user's file in a shared directory, a read-only file system: left for its owner


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (another user's counts)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or a number no pid can be
        return False
    except PermissionError:
        return True
    return True


_KINDS = {stat.S_IFREG: "a regular file", stat.S_IFDIR: "a directory", stat.S_IFLNK: "a symbolic link",
          stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFIFO: "a FIFO",
          stat.S_IFSOCK: "a socket"}


def _what(path: Path, *, follow: bool = True) -> str | None:
    """What is at ``path`` ("a regular file", "a FIFO", ...); None when nothing is (or a link leads nowhere)."""
    try:
        mode = (path.stat() if follow else path.lstat()).st_mode
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return None
        raise
    return _KINDS.get(stat.S_IFMT(mode), "a special file")


def _resolve(path: Path, want: str) -> Path:
    """Where a write to ``path`` lands: ``path`` itself when it is ``want`` ("a regular file" or "a directory") or
    free, or what a symbolic link at ``path`` leads to when that is ``want`` (written through, the link kept).
    Anything else is refused: zoo never replaces it."""
    link = path.is_symlink()
    target = Path(os.path.realpath(path)) if link else path
    what = _what(target)
    if what == want or (what is None and not link):
        return target
    if link:
        raise ArgumentError(f"cannot write {path}: it is a symbolic link to {target}, which is "
                            f"{what or 'missing (dangling, or a loop)'}, not {want}; choose another output path")
    raise ArgumentError(f"cannot write {path}: it is {what}, not {want}; choose another output path")


@contextmanager
def naming_os_errors(path: str | os.PathLike, temp: Path | None = None) -> Iterator[None]:
    """Make an OSError raised inside name ``path``, the file the user asked for, when it names no file (a failed
    write() or a library that drops the name) or ``temp`` (or a file in it): the one line the CLI prints then
    says which output or input failed. Its errno, hence its class (PermissionError, ...), is kept."""
    try:
        yield
    except OSError as e:
        name = os.fsdecode(e.filename) if isinstance(e.filename, (str, bytes, os.PathLike)) else None
        if name is not None and not (temp and (name == str(temp) or name.startswith(f"{temp}{os.sep}"))):
            raise
        where = str(path) + (name[len(str(temp)):] if name else "")
        raise OSError(e.errno, e.strerror or str(e), where) from e


@contextmanager
def _beside(path: Path, want: str) -> Iterator[tuple[Path, Path]]:
    """The write's target (``path``, or what its link leads to: :func:`_resolve`) and a free temporary name
    beside it, its folder created and old orphans removed; an OSError inside names ``path``."""
    target = _resolve(path, want)
    tmp = _temp_path(target)
    with naming_os_errors(path, tmp):
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_orphans(target)
        yield target, tmp


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; on success it is fsynced and renamed over ``path``.

    Readers see the old file or the whole new one. ``path`` is a regular file, a free name or a link to a regular
    file, written through (see the module's docstring); anything else is an ArgumentError. On an exception the
    temporary file is removed and the old file is untouched; an OSError names ``path``, not the temporary file.
    The file is created with the permissions the user's umask gives, not the old file's.
    """
    path = Path(path)
    with _beside(path, "a regular file") as (target, tmp):
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # the kernel applies the umask
        try:
            yield tmp
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            _resolve(path, "a regular file")  # again: the block may have run for minutes
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)


def check_writable(path: str | os.PathLike, *, folder: bool = False) -> None:
    """Refuse, before any work, an output ``path`` zoo could not write (a folder for :func:`staged_dir` when
    ``folder``). Nothing is created.

    A path under a file, or at something :func:`atomic_path` would refuse, is an ArgumentError. A directory the
    system does not let zoo write is the OSError the write would raise (EACCES, EROFS): it is the system's
    refusal, not the argument's, and exits 1 like a full disk.
    """
    target = _resolve(Path(path), "a directory" if folder else "a regular file")
    probe = target.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ArgumentError(f"cannot write {path}: {probe} is a file, not a directory; choose another output path")
    for directory in (probe, target) if folder and target.is_dir() else (probe,):
        if not os.access(directory, os.W_OK | os.X_OK):  # root passes whatever the mode bits: the kernel lets it write
            code = errno.EROFS if os.statvfs(directory).f_flag & os.ST_RDONLY else errno.EACCES
            raise OSError(code, f"{os.strerror(code)} ({directory} is not writable; choose another output path)",
                          str(path))


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
    ``out_dir`` changes and the staging directory is removed. A link given as
    ``out_dir`` is written through to its folder; a link or special file among
    the names replaced is an ArgumentError before anything is moved.
    """
    out_dir = Path(out_dir)
    with _beside(out_dir, "a directory") as (target, staging):
        staging.mkdir(0o777)  # the umask applies
        try:
            yield staging
            _publish(staging, target, stale)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _publish(staging: Path, out_dir: Path, stale: tuple[str, ...]) -> None:
    """Move what ``staging`` holds to ``out_dir``, as :func:`staged_dir` says."""
    if not out_dir.exists():
        os.replace(staging, out_dir)
    else:
        written = sorted(item.name for item in staging.iterdir())
        removed = sorted(set(stale) - set(written))
        for name in written + removed:
            what = _what(out_dir / name, follow=False)
            if what not in (None, "a regular file"):
                raise ArgumentError(f"cannot write {out_dir / name}: it is {what}, not a regular file; zoo replaces "
                                    "the files of a folder it writes and follows no link there; move it away")
        for name in written:
            os.replace(staging / name, out_dir / name)
        for name in removed:
            (out_dir / name).unlink(missing_ok=True)
        _fsync_dir(out_dir)
    _fsync_dir(out_dir.parent)


def check_readable(path: str | os.PathLike, error: type[Exception]) -> None:
    """Refuse, as ``error`` naming ``path``, an input that is there but is not a regular file (a link to one counts):
    reading a FIFO blocks until a writer comes, a device never ends, a socket cannot be opened. Call it before any
    ``open``; a missing path passes, for the caller to say what it looked for."""
    what = _what(Path(path))
    if what not in (None, "a regular file", "a directory"):
        raise error(f"{path} is {what}, not a regular file; zoo reads only regular files: pass a file")


def check_inside(path: Path, folder: Path, error: type[Exception], what: str) -> None:
    """The one link rule of zoo's input folders (a checkpoint folder, an image folder): refuse ``path`` when a
    symbolic link, its own or a folder's on the way, takes it out of ``folder``; ``what`` names the folder."""
    if not path.resolve().is_relative_to(folder.resolve()):
        raise error(f"{path} links to {path.resolve()}, outside {folder}; zoo does not follow links out of {what}: "
                    "copy the file into it")


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
