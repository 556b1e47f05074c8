"""The run directory of ``zoo train``: this module owns its layout and its files' formats; everything else goes
through it.

    RUN_DIR/run.json           what was run (:class:`RunRecord`): arch, kwargs, dataset and its sha256, recipe,
                               seed, machine, commit, and any correction made by hand since
    RUN_DIR/metrics.jsonl      one JSON line per finished epoch
    RUN_DIR/state.safetensors  everything needed to resume (:func:`save_state`: model, optimizer, RNG, LoopState;
                               no pickle)
    RUN_DIR/model/             the finished model, a zoo.save_pretrained folder
    RUN_DIR/train.log          the output of a run started by ``zoo reproduce --jobs``
    RUN_DIR/.lock              the pid of the one process writing the directory, while it does
"""
from __future__ import annotations

import dataclasses
import fcntl
import json
import math
import os
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from zoo.core.errors import CheckpointError, TrainingError
from zoo.core.files import atomic_write_bytes, check_readable, remove_stale_temps
from zoo.hub.weights import WEIGHTS_NAME, check_finite, load_tensors, save_tensors, unwrap_model

__all__ = ["HISTORY_NAME", "RUN_RECORD_NAME", "LoopState", "RunDir", "RunRecord", "directory_lock", "load_state", "save_state"]


RUN_RECORD_NAME = "run.json"
HISTORY_NAME = "metrics.jsonl"
"""The run's records; a bundled tag's folder carries them too (zoo.train.release)."""


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
        remove_stale_temps(path)  # what a killed writer left: nobody else writes here while the lock is held
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
        return self.path / RUN_RECORD_NAME

    @property
    def metrics(self) -> Path:
        return self.path / HISTORY_NAME

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

    def write_run(self, run: RunRecord) -> None:
        atomic_write_bytes(self.run_json, (json.dumps(run.to_json(), indent=2) + "\n").encode())

    def write_history(self, rows: Iterable[Mapping[str, Any]]) -> None:
        atomic_write_bytes(self.metrics, "".join(json.dumps(r) + "\n" for r in rows).encode())

    def read_run(self) -> RunRecord:
        """run.json, checked field by field (a damaged or foreign file is refused, naming the field)."""
        check_readable(self.run_json, CheckpointError)
        try:
            data = json.loads(self.run_json.read_text())
        except FileNotFoundError:
            raise CheckpointError(f"{self.run_json} not found: pass the run directory that zoo train wrote (--out)") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{self.run_json} is not valid JSON ({e}); restore it or start a new --out") from None
        return RunRecord.from_json(data, str(self.run_json))

    def read_history(self) -> list[dict[str, Any]]:
        """The rows of metrics.jsonl; none when the run has not finished an epoch."""
        if not self.metrics.is_file():
            return []
        rows = []
        for number, line in enumerate(self.metrics.read_text().splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError as e:
                    raise CheckpointError(f"{self.metrics}:{number} is not a JSON line ({e})") from None
                rows.append(_check_row(row, f"{self.metrics}:{number}"))
        return rows


HISTORY_FIELDS = ("epoch", "lr", "train_loss", "train_err", "test_loss", "test_err")
"""What every metrics.jsonl row holds: the card, its curve, the release and the reports read them."""


def _check_row(row: Any, where: str) -> dict[str, Any]:
    """One epoch's row, refused (naming the line) unless it is an object with every HISTORY_FIELDS number finite."""
    bad = [k for k in HISTORY_FIELDS if not isinstance(row, dict) or not _fits(row.get(k), float)]
    if bad:
        raise CheckpointError(f"{where} is not an epoch row zoo train wrote ({', '.join(bad)} missing or not finite "
                              "numbers); restore the file or remove the line")
    return row


@dataclass(frozen=True)
class RunRecord:
    """run.json: what a run is, enough to rebuild its model, refuse a mismatched ``--resume`` and describe it.

    ``data``: per split, the images trained and evaluated on and their sha256 (after subsets and the
    validation split). ``pad``: the images' zero padding to ``input_size``. ``init``: the weights a
    fine-tuning run started from. ``mirror``: whether the images were taken as mirror-symmetric (flips allowed;
    None in runs recorded before it was). ``corrections``: changes made by hand after the run, each
    ``{"field", "recorded", "corrected", "why"}``, so a corrected file says so. ``notes``: what a reader of
    the run's card must know about how the run came to be: by the trainer (a batch lowered to fit the data) or by
    hand (e.g. how its length was chosen).
    """

    arch: str
    model_kwargs: dict[str, Any]
    dataset: str
    dataset_sha256: str
    dataset_source: str
    recipe: str
    recipe_config: dict[str, Any]
    config: dict[str, Any]
    seed: int
    epochs: int
    world_size: int
    input_size: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    label_names: tuple[str, ...]
    zoo_version: str
    git_commit: str | None = None
    machine: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    pad: int = 0
    init: str | None = None
    mirror: bool | None = None
    corrections: tuple[dict[str, Any], ...] = ()
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_json(cls, data: Any, where: str) -> RunRecord:
        """Check every field's type before use: a run.json of ``{}``, or with a field of the wrong kind, is refused."""
        if not isinstance(data, dict):
            raise CheckpointError(f"{where} is not a run record (a JSON object); restore it or start a new --out")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise CheckpointError(f"{where} lacks {', '.join(missing)}: not a run record zoo train wrote; restore it or "
                                  "start a new --out")
        values: dict[str, Any] = {}
        for name in fields.keys() & data.keys():
            if not _fits(data[name], hints[name]):
                raise CheckpointError(f"{where}: field {name} is {data[name]!r}, not {_kind(hints[name])}; restore the file")
            values[name] = tuple(data[name]) if isinstance(data[name], list) else data[name]
        return cls(**values)


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a RunRecord annotation (numbers finite, tuples from lists, None where optional)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is tuple:
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return hint is Any or isinstance(value, hint)


def _kind(hint: Any) -> str:
    return str(hint).replace("typing.", "")


# ---------------------------------------------------------------------------- the resume state


@dataclass
class LoopState:
    """Where the training loop is. Saved with every state, so a resumed run continues exactly here."""

    epoch: int = 0  # epochs finished
    step: int = 0  # steps finished in the current epoch
    global_step: int = 0
    plateau_scale: float = 1.0  # the product of the plateau schedule's drops so far
    plateau_best: float = math.inf
    plateau_bad: int = 0
    train_seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


def save_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: LoopState,
               sums: dict[str, Tensor]) -> None:
    """Model, optimizer, RNG and loop state as one safetensors file, written atomically."""
    tensors = {f"model/{k}": v for k, v in unwrap_model(model).state_dict().items()}
    opt = optimizer.state_dict()
    scalars: dict[str, Any] = {}
    for idx, entry in opt["state"].items():
        for key, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"optim/{idx}/{key}"] = value
            else:
                scalars[f"{idx}/{key}"] = value
    tensors["rng/cpu"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng/cuda"] = torch.cuda.get_rng_state()
    tensors.update({f"sums/{k}": v for k, v in sums.items()})
    meta = {**dataclasses.asdict(state), "optim_param_groups": opt["param_groups"], "optim_scalars": scalars}
    save_tensors(path, tensors, {"zoo_train_state": json.dumps(meta)})


def load_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
               device: torch.device) -> tuple[LoopState, dict[str, Tensor]]:
    """Restore what :func:`save_state` wrote into ``model`` and ``optimizer``; refused, naming the file, when it is
    not a zoo training state or does not fit the model."""
    tensors, metadata = load_tensors(path)
    check_finite(tensors, str(path))
    try:
        meta = json.loads(metadata["zoo_train_state"])
        weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model/")}
        unwrap_model(model).load_state_dict(weights, strict=True)
        opt_state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith("optim/"):
                _, idx, name = key.split("/", 2)
                opt_state.setdefault(int(idx), {})[name] = value.to(device)
        for key, value in meta.pop("optim_scalars").items():
            idx, name = key.split("/", 1)
            opt_state.setdefault(int(idx), {})[name] = value
        optimizer.load_state_dict({"state": opt_state, "param_groups": meta.pop("optim_param_groups")})
        state, rng = LoopState(**meta), tensors["rng/cpu"]
    except (KeyError, ValueError, TypeError, RuntimeError) as e:  # RuntimeError: load_state_dict's size mismatch
        raise TrainingError(f"{path} is not a training state of this run's model ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:300]}); resume the run that wrote it, or start a new --out") from None
    torch.set_rng_state(rng)
    if "rng/cuda" in tensors and device.type == "cuda":
        torch.cuda.set_rng_state(tensors["rng/cuda"])
    return state, {k[5:]: v.to(device) for k, v in tensors.items() if k.startswith("sums/")}
