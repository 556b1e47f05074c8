"""Every output path, one atomic writer, storage faults: one named test per case of issue 21.

Each case asserts zoo's error type (or exit status), a message fragment, and what is on disk afterwards: what
exists, the old content intact, no temporary file left (zoo's ``.zoo<pid>.<random>.tmp`` or anyone else's).
"""
from __future__ import annotations

import errno
import os
import re
import resource
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import zoo.core.files
from zoo.cli import main
from zoo.core.errors import ArgumentError, ExportError
from zoo.core.files import atomic_write_bytes, check_writable, staged_dir
from zoo.export.__main__ import main as export_main
from zoo.hub.weights import load_tensors, save_tensors

from conftest import TINY, dead_pid

REFUSED = "not a regular file; choose another output path"
TENSORS = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and ": error: " in lines[0] and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def tmpfs(tmp_path):
    """``mount(*options)``: a 512 KiB tmpfs of the test's own (real ENOSPC, EROFS), unmounted afterwards; the
    test is skipped where mounting is not permitted (not root, no CAP_SYS_ADMIN)."""
    mounted = []

    def mount(*options: str) -> Path:
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        if os.geteuid() != 0 or _mount_cmd("-t", "tmpfs", "-o", ",".join(("size=512k", *options)), "tmpfs", where):
            pytest.skip("mounting a tmpfs needs root with CAP_SYS_ADMIN")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        _mount_cmd("-l", where, cmd="umount")


def _mount_cmd(*args, cmd: str = "mount") -> int:
    try:
        return subprocess.run([cmd, *map(str, args)], capture_output=True).returncode
    except FileNotFoundError:
        return 127


def read_only_dir(tmp_path: Path, tmpfs) -> Path:
    """A directory holding ``old.onnx`` that no one may write: chmod 0555, or as root (whom mode bits do not stop) a
    tmpfs remounted read-only."""
    if os.geteuid() != 0:
        where = tmp_path / "ro"
        where.mkdir()
        (where / "old.onnx").write_bytes(b"old")
        where.chmod(0o555)
        return where
    where = tmpfs()
    (where / "old.onnx").write_bytes(b"old")
    if _mount_cmd("-o", "remount,ro", where):
        pytest.skip("remounting the tmpfs read-only is not permitted")
    return where


# ---------------------------------------------------------------------------- what an output path may be


def test_a_fifo_is_refused_before_the_work_and_by_the_writer(tmp_path):
    fifo = tmp_path / "out.onnx"
    os.mkfifo(fifo)
    with pytest.raises(ArgumentError, match=f"cannot write {fifo}: it is a FIFO, {REFUSED}"):
        check_writable(fifo)
    with pytest.raises(ArgumentError, match="it is a FIFO"):
        atomic_write_bytes(fifo, b"x")
    with pytest.raises(ArgumentError, match="it is a FIFO"):
        save_tensors(fifo, TENSORS, {})
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and os.listdir(tmp_path) == ["out.onnx"]


def test_export_refuses_a_fifo_in_one_line_with_status_2_before_loading_anything(tmp_path, capsys):
    fifo = tmp_path / "out.onnx"
    os.mkfifo(fifo)
    assert export_main(["no_such_model", "--out", str(fifo), "--quiet"]) == 2  # the model is never looked up
    assert "it is a FIFO, not a regular file" in one_error_line(capsys.readouterr().err)
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and os.listdir(tmp_path) == ["out.onnx"]


def test_a_character_device_is_refused_not_turned_into_a_file(tmp_path):
    try:
        os.mknod(tmp_path / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a private /dev/null: a bug hurts only it
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD")
    with pytest.raises(ArgumentError, match=f"it is a character device, {REFUSED}"):
        atomic_write_bytes(tmp_path / "null", b"x")
    with pytest.raises(ArgumentError, match="it is a character device"):
        save_tensors(tmp_path / "null", TENSORS, {})
    assert stat.S_ISCHR((tmp_path / "null").lstat().st_mode) and os.listdir(tmp_path) == ["null"]


def test_dev_null_is_refused_before_the_work():
    with pytest.raises(ArgumentError, match=f"cannot write /dev/null: it is a character device, {REFUSED}"):
        check_writable("/dev/null")  # creates nothing: safe on the real /dev/null
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)


def test_a_directory_is_refused_as_a_file_and_a_file_as_a_folder(tmp_path):
    (tmp_path / "out.json").mkdir()
    (tmp_path / "folder").write_bytes(b"old")
    with pytest.raises(ArgumentError, match=f"it is a directory, {REFUSED}"):
        check_writable(tmp_path / "out.json")
    with pytest.raises(ArgumentError, match="it is a directory, not a regular file"):
        atomic_write_bytes(tmp_path / "out.json", b"{}")
    with pytest.raises(ArgumentError, match="it is a regular file, not a directory"):
        check_writable(tmp_path / "folder", folder=True)
    with pytest.raises(ArgumentError, match="it is a regular file, not a directory"):
        with staged_dir(tmp_path / "folder") as staging:
            (staging / "x").write_bytes(b"x")
    check_writable(tmp_path / "out.json", folder=True)  # an existing folder is what a folder write fills
    assert sorted(os.listdir(tmp_path)) == ["folder", "out.json"]
    assert os.listdir(tmp_path / "out.json") == [] and (tmp_path / "folder").read_bytes() == b"old"


def test_a_socket_is_refused(tmp_path):
    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        with pytest.raises(ArgumentError, match=f"it is a socket, {REFUSED}"):
            atomic_write_bytes(path, b"x")
        assert stat.S_ISSOCK(path.lstat().st_mode) and os.listdir(tmp_path) == ["s"]


def test_a_link_to_a_regular_file_is_written_through_and_kept(tmp_path, monkeypatch):
    (tmp_path / "real").mkdir()
    target, link = tmp_path / "real" / "model.safetensors", tmp_path / "link.safetensors"
    target.write_bytes(b"old")
    link.symlink_to(Path("real") / "model.safetensors")  # relative, as users make them
    renames = []
    replace = os.replace
    monkeypatch.setattr(zoo.core.files.os, "replace", lambda src, dst: (renames.append((Path(src), Path(dst))), replace(src, dst)))
    check_writable(link)
    save_tensors(link, TENSORS, {"k": "v"})
    assert link.is_symlink() and os.readlink(link) == str(Path("real") / "model.safetensors")
    assert torch.equal(load_tensors(target)[0]["w"], TENSORS["w"])
    [(src, dst)] = renames
    assert src.parent == dst.parent == target.parent.resolve() and dst.name == "model.safetensors"  # temp beside target
    assert sorted(os.listdir(tmp_path)) == ["link.safetensors", "real"] and os.listdir(target.parent) == [target.name]


@pytest.mark.parametrize(("make", "what"), [
    (lambda d: (d / "out").symlink_to(d / "missing"), "missing (dangling, or a loop)"),
    (lambda d: ((d / "out").symlink_to(d / "loop"), (d / "loop").symlink_to(d / "out")), "missing (dangling, or a loop)"),
    (lambda d: ((d / "dir").mkdir(), (d / "out").symlink_to(d / "dir")), "a directory"),
    (lambda d: (os.mkfifo(d / "fifo"), (d / "out").symlink_to(d / "fifo")), "a FIFO"),
], ids=["dangling", "loop", "to-a-directory", "to-a-fifo"])
def test_a_link_that_leads_to_no_regular_file_is_refused_and_kept(make, what, tmp_path):
    make(tmp_path)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(ArgumentError, match=rf"cannot write {tmp_path / 'out'}: it is a symbolic link to .*, which is "
                                            rf"{re.escape(what)}, not a regular file"):
        check_writable(tmp_path / "out")
    with pytest.raises(ArgumentError, match="symbolic link"):
        atomic_write_bytes(tmp_path / "out", b"x")
    assert (tmp_path / "out").is_symlink() and sorted(os.listdir(tmp_path)) == before


def test_a_link_given_as_a_folder_is_written_through(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "old.txt").write_bytes(b"old")
    (tmp_path / "model").symlink_to(tmp_path / "real")
    check_writable(tmp_path / "model", folder=True)
    with staged_dir(tmp_path / "model") as staging:
        (staging / "config.json").write_bytes(b"{}")
    assert (tmp_path / "model").is_symlink() and sorted(os.listdir(tmp_path)) == ["model", "real"]
    assert sorted(os.listdir(tmp_path / "real")) == ["config.json", "old.txt"]


def test_a_link_inside_a_folder_being_replaced_is_refused_and_nothing_moves(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "README.md").write_bytes(b"old card")
    (tmp_path / "elsewhere.json").write_bytes(b"old config")
    (out / "config.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(ArgumentError, match=f"cannot write {out / 'config.json'}: it is a symbolic link, not a regular "
                                            "file; zoo replaces the files of a folder it writes and follows no link"):
        with staged_dir(out) as staging:
            (staging / "README.md").write_bytes(b"new card")
            (staging / "config.json").write_bytes(b"{}")
    assert (out / "README.md").read_bytes() == b"old card" and (out / "config.json").is_symlink()
    assert (tmp_path / "elsewhere.json").read_bytes() == b"old config"
    assert sorted(os.listdir(tmp_path)) == ["elsewhere.json", "model"]


@pytest.mark.parametrize("length", [250, 255])
def test_a_name_as_long_as_the_filesystem_takes_can_be_written(length, tmp_path):
    name = "n" * (length - len(".safetensors")) + ".safetensors"
    save_tensors(tmp_path / name, TENSORS, {})
    atomic_write_bytes(tmp_path / name, b"replaced")
    with staged_dir(tmp_path / ("d" * length)) as staging:
        atomic_write_bytes(staging / name, b"in a folder")
    assert (tmp_path / name).read_bytes() == b"replaced"
    assert (tmp_path / ("d" * length) / name).read_bytes() == b"in a folder"
    assert sorted(os.listdir(tmp_path)) == sorted([name, "d" * length])


def test_temps_of_dead_writers_are_removed_and_those_of_live_or_recent_ones_kept(tmp_path):
    dead = dead_pid()
    orphan = tmp_path / f".zoo{dead}.abcd1234.tmp"
    orphan_dir = tmp_path / f".zoo{dead}.0a0a0a0a.tmp"  # a staged folder's
    fresh = tmp_path / f".zoo{dead}.0f0f0f0f.tmp"  # a dead pid but just written: perhaps another container's
    live = tmp_path / f".zoo{os.getppid()}.efef0101.tmp"  # another writer, still running
    foreign = tmp_path / f".tmp{dead}abc"  # not zoo's name: never touched
    orphan_dir.mkdir()
    (orphan_dir / "model.safetensors").write_bytes(b"partial")
    for path in (orphan, fresh, live, foreign):
        path.write_bytes(b"partial")
    old = time.time() - zoo.core.files.ORPHAN_AGE_S - 60
    for path in (orphan, orphan_dir, live, foreign):
        os.utime(path, (old, old))
    atomic_write_bytes(tmp_path / "other.json", b"{}")  # any write into the directory cleans it
    assert sorted(os.listdir(tmp_path)) == sorted([fresh.name, live.name, foreign.name, "other.json"])


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_safetensors_files_follow_the_umask(umask, mode, tmp_path):
    old = os.umask(umask)
    try:
        save_tensors(tmp_path / "model.safetensors", TENSORS, {})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "model.safetensors").stat().st_mode) == mode
    assert os.listdir(tmp_path) == ["model.safetensors"]


# ---------------------------------------------------------------------------- storage faults


def test_a_failure_mid_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "state.safetensors"
    target.write_bytes(b"old")

    def half_then_full(self, data):
        with open(self, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")  # what write() raises: no file name

    monkeypatch.setattr(Path, "write_bytes", half_then_full)
    for write in (lambda: save_tensors(target, TENSORS, {}), lambda: atomic_write_bytes(target, b"new" * 100)):
        with pytest.raises(OSError, match="No space left on device") as info:
            write()
        assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)  # the file asked for
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["state.safetensors"]


def test_a_full_disk_is_an_os_error_naming_the_file_with_the_old_one_intact(tmpfs):
    disk = tmpfs()
    (disk / "model.safetensors").write_bytes(b"old")
    big = {"w": torch.zeros(256, 1024)}  # 1 MiB on a 512 KiB file system
    with pytest.raises(OSError, match="No space left on device") as info:
        save_tensors(disk / "model.safetensors", big, {})
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(disk / "model.safetensors")
    with pytest.raises(OSError, match="No space left on device"):
        atomic_write_bytes(disk / "model.safetensors", bytes(1 << 20))
    assert (disk / "model.safetensors").read_bytes() == b"old" and os.listdir(disk) == ["model.safetensors"]


def test_no_inodes_left_is_an_os_error_with_the_old_file_intact(tmpfs):
    disk = tmpfs("nr_inodes=2")  # the root and one file
    (disk / "run.json").write_bytes(b"old")
    with pytest.raises(OSError, match="No space left on device") as info:
        atomic_write_bytes(disk / "run.json", b"new")
    assert info.value.filename == str(disk / "run.json")
    assert (disk / "run.json").read_bytes() == b"old" and os.listdir(disk) == ["run.json"]


@pytest.mark.slow  # a resnet18 run until its disk is full
def test_a_full_disk_during_training_is_one_line_and_status_1(tmpfs, capsys):
    disk = tmpfs()
    assert main(["train", "resnet18", *TINY, "--out", str(disk / "run")]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert f"No space left on device: {disk / 'run'}" in line and "SafetensorError" not in line
    assert not [name for name in os.listdir(disk / "run") if name.startswith((".zoo", ".tmp"))]


def test_a_read_only_directory_is_refused_with_status_1_and_the_old_file_intact(tmp_path, tmpfs, capsys):
    where = read_only_dir(tmp_path, tmpfs)
    code = errno.EROFS if os.geteuid() == 0 else errno.EACCES
    with pytest.raises(OSError, match=f"{where} is not writable; choose another output path") as info:
        check_writable(where / "old.onnx")
    assert info.value.errno == code and info.value.filename == str(where / "old.onnx")
    with pytest.raises(OSError) as info:
        atomic_write_bytes(where / "old.onnx", b"new")
    assert info.value.errno == code and info.value.filename == str(where / "old.onnx")
    assert export_main(["no_such_model", "--out", str(where / "old.onnx"), "--quiet"]) == 1  # refused before any work
    assert f"is not writable; choose another output path): {where / 'old.onnx'}" in one_error_line(capsys.readouterr().err)
    assert (where / "old.onnx").read_bytes() == b"old" and os.listdir(where) == ["old.onnx"]


@pytest.mark.slow
def test_the_file_size_limit_is_one_line_and_status_1_in_a_real_run(tmp_path):
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "model.safetensors").write_bytes(b"older weights")
    limit = 1 << 20  # run.json fits, the 90 MB training state does not

    def fsize_limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run([sys.executable, "-m", "zoo.cli", "train", "resnet18", *TINY, "--out", str(run)],
                          preexec_fn=fsize_limit, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 1, proc.stderr  # not killed by SIGXFSZ: CPython ignores it, the write fails with EFBIG
    assert f"File too large: {run / 'state.safetensors'}" in one_error_line(proc.stderr)
    assert (run / "model" / "model.safetensors").read_bytes() == b"older weights"
    assert sorted(os.listdir(run)) == ["model", "run.json"] and os.listdir(run / "model") == ["model.safetensors"]


def test_safetensors_read_errors_name_the_file(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    save_tensors(path, TENSORS, {})

    def failing_open(*args, **kwargs):
        raise OSError("No such device (os error 19)")  # safetensors' OSErrors carry neither errno nor file name

    monkeypatch.setattr("zoo.hub.weights.safe_open", failing_open)
    with pytest.raises(OSError, match="No such device") as info:
        load_tensors(path)
    assert info.value.filename == str(path)


class _Tiny(nn.Module):
    in_chans, min_input_size, num_classes = 1, 1, 2

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


@pytest.mark.slow
def test_an_onnx_model_too_large_for_one_file_is_refused_and_nothing_written(tmp_path, monkeypatch):
    import zoo.export.onnx as E

    monkeypatch.setattr(E, "_ONNX_FILE_LIMIT", 16)  # the 40 bytes of _Tiny's weights stand for more than 2 GiB
    with pytest.raises(ExportError, match="_Tiny has 0.0 GiB of weights, more than one ONNX file holds"):
        E.export_onnx(_Tiny(), tmp_path / "m.onnx", input_size=(1, 2, 2))
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_an_onnx_export_through_a_link_replaces_its_target_and_keeps_the_link(tmp_path):
    import onnx

    from zoo.export.onnx import export_onnx

    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "v1.onnx").write_bytes(b"the previous export")
    (tmp_path / "current.onnx").symlink_to(Path("exports") / "v1.onnx")
    export_onnx(_Tiny(), tmp_path / "current.onnx", input_size=(1, 2, 2))
    assert (tmp_path / "current.onnx").is_symlink()
    assert [v.name for v in onnx.load(tmp_path / "exports" / "v1.onnx").graph.output] == ["logits"]
    assert sorted(os.listdir(tmp_path)) == ["current.onnx", "exports"] and os.listdir(tmp_path / "exports") == ["v1.onnx"]
