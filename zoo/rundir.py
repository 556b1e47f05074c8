"""The run directory of ``zoo train``: this module owns its layout; everything else goes through it.

    RUN_DIR/run.json           what was run: arch, kwargs, dataset and its sha256, recipe, seed, machine, commit
    RUN_DIR/metrics.jsonl      one JSON line per finished epoch
    RUN_DIR/state.safetensors  everything needed to resume (packed by zoo.train; no pickle)
    RUN_DIR/model/             the finished model, a zoo.hub.save_pretrained folder
    RUN_DIR/train.log          the output of a run started by ``zoo reproduce --jobs``
    RUN_DIR/.lock              the pid of the one process writing the directory, while it does
"""
from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from zoo.checkpoint import WEIGHTS_NAME, atomic_write_bytes
from zoo.errors import CheckpointError, TrainingError

__all__ = ["RunDir", "directory_lock"]


@contextmanager
def directory_lock(path: Path) -> Iterator[None]:
    """Hold ``path/.lock`` (the directory is created): one writer at a time.

    The lock is the kernel's (``flock``), so a killed holder releases it and nothing stale is left to take
    over; the file records the holder's pid, for the message a second writer gets at once.
    """
    path.mkdir(parents=True, exist_ok=True)
    lock = path / ".lock"
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise TrainingError(f"{path} is in use by process {holder}; wait for it to finish, or choose another directory") from None
        try:
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break  # the file we locked is still the lock (not one a finishing holder just removed)
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        try:
            lock.unlink(missing_ok=True)  # while still held: a waiter that opened it retries on the new file
        finally:
            os.close(fd)


@dataclass(frozen=True)
class RunDir:
    path: Path

    def __init__(self, path: str | os.PathLike) -> None:
        object.__setattr__(self, "path", Path(path))

    @property
    def run_json(self) -> Path:
        return self.path / "run.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def state(self) -> Path:
        return self.path / "state.safetensors"

    @property
    def model(self) -> Path:
        return self.path / "model"

    @property
    def log(self) -> Path:
        return self.path / "train.log"

    def lock(self):
        """One writer per run directory (:func:`directory_lock`)."""
        return directory_lock(self.path)

    def status(self) -> Literal["done", "resume", "new"]:
        """``done`` when the finished model is there, ``resume`` when only the training state is."""
        if (self.model / WEIGHTS_NAME).exists():
            return "done"
        return "resume" if self.state.exists() else "new"

    def write_run(self, run: Mapping[str, Any]) -> None:
        atomic_write_bytes(self.run_json, json.dumps(run, indent=2).encode())

    def write_history(self, rows: Iterable[Mapping[str, Any]]) -> None:
        atomic_write_bytes(self.metrics, "".join(json.dumps(r) + "\n" for r in rows).encode())

    def read_run(self) -> dict[str, Any]:
        try:
            return json.loads(self.run_json.read_text())
        except FileNotFoundError:
            raise CheckpointError(f"{self.run_json} not found: pass the run directory that zoo train wrote (--out)") from None
        except ValueError as e:
            raise CheckpointError(f"{self.run_json} is not valid JSON ({e})") from None

    def read_history(self) -> list[dict[str, Any]]:
        """The rows of metrics.jsonl; none when the run has not finished an epoch."""
        if not self.metrics.is_file():
            return []
        rows = []
        for number, line in enumerate(self.metrics.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as e:
                    raise CheckpointError(f"{self.metrics}:{number} is not a JSON line ({e})") from None
        return rows
