"""The training loop: GPU-resident data, exact resume, DDP under torchrun.

Read top to bottom: :func:`setup` builds the recipe, data, model and optimizer,
:func:`start` (under the run directory's lock) restores the state or records
the run, :func:`train` runs :func:`run_epoch` until
the recipe's epochs are done, each step is :func:`train_step`, each epoch ends
in :func:`end_epoch` (evaluate, plateau, checkpoint) and the run in
:func:`finish` (the model folder). The learning rate is a pure function of the
step (and, for the plateau schedule, of the drops so far, which the state
keeps), and the batches a pure function of (seed, epoch), so a resumed run
continues exactly where it left off. The run directory's layout is
``zoo.hub.rundir``'s.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.core.arguments import Range, check_arguments
from zoo.core.environment import distributed
from zoo.core.errors import ArgumentError, TrainingError
from zoo.core.files import atomic_write_bytes, check_writable
from zoo.core.machine import cpu_name, git_commit
from zoo.core.plots import confusion_png
from zoo.core.progress import progress_bar
from zoo.core.version import __version__
from zoo.data.datasets import DEFAULT_DATASET, FOLDER_PREFIX, DataConfig, DataSpec, get_spec, list_datasets
from zoo.data.loading import (
    Dataset,
    DeviceLoader,
    arrays_sha256,
    get_dataset_spec,
    load_dataset,
    split_validation,
    subset,
    synthetic,
)
from zoo.hub.cards import run_notes
from zoo.hub.factory import create_model, init_config, load_any
from zoo.hub.pretrained import load_model, save_pretrained
from zoo.hub.rundir import LoopState, RunDir, RunRecord, load_state, save_state
from zoo.hub.weights import unwrap_zoo_model
from zoo.models.registry import check_model_kwargs, get_pretrained_tag
from zoo.train.recipes import Recipe, get_recipe


@dataclass
class TrainConfig:
    arch: str
    dataset: str = DEFAULT_DATASET
    recipe: str | None = None  # default: "finetune" with init, else "paper"
    out: str = "runs/run"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    recipe_overrides: dict[str, Any] = field(default_factory=dict)  # any other Recipe field, e.g. plateau_patience
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    data_dir: str | None = None
    synthetic: int = 0  # > 0: train on that many synthetic images instead of the real dataset
    val_split: int = 0  # > 0: hold out that many training images; the plateau then watches them
    train_subset: int = 0  # > 0: train on a seeded random subset (quick runs)
    test_subset: int = 0
    seed: int = 0
    device: str = "auto"
    compile: bool = False
    resume: bool = False
    progress: bool = True
    eval_batch_size: int = 1024
    init: str | None = None  # fine-tune: a tag, a saved folder or hf-hub:owner/name whose weights the model starts from
    mirror: bool | None = None  # the images are mirror-symmetric (flips allowed); None: the dataset's own (a folder's: no)
    records_only: bool = False  # write run.json and metrics.jsonl only: no resume state, no finished model

    def __post_init__(self) -> None:
        check_arguments("zoo train", dataclasses.asdict(self), TrainConfig, ranges=CONFIG_RANGES, error=TrainingError)
        self.recipe = self.recipe_name
        if not self.dataset.startswith(FOLDER_PREFIX):
            get_spec(self.dataset)  # an unknown name is refused here; a folder is checked when it is scanned
        own = [k for k in OWN_OPTIONS if k in self.recipe_overrides]
        if own:
            raise TrainingError(f"zoo train: set {own[0]} with --{own[0].replace('_', '-')}, not as a recipe override")

    @property
    def recipe_name(self) -> str:
        """The recipe the run trains with: ``recipe``, by default "finetune" with ``init``, else "paper"."""
        return self.recipe or ("finetune" if self.init else "paper")


OWN_OPTIONS = ("epochs", "batch_size", "lr")
"""Recipe fields zoo train sets with options of their own (a recipe override of them is refused, not merged)."""


CONFIG_RANGES = {
    "epochs": Range(1), "batch_size": Range(1), "lr": Range(0, open_low=True), "synthetic": Range(0),
    "val_split": Range(0), "train_subset": Range(0), "test_subset": Range(0), "eval_batch_size": Range(1),
}


# ---------------------------------------------------------------------------- setup


def resolve_device(device: str) -> torch.device:
    """``"auto"`` is CUDA when available, else the CPU; any other name must be a CPU or a CUDA device this machine
    has, refused before any work otherwise."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ArgumentError(f"--device {device!r} is not a device: pass auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ArgumentError(f"--device {device!r}: zoo runs on the CPU or CUDA: pass auto, cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ArgumentError("no CUDA device: pass --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ArgumentError(f"no CUDA device {dev.index}: this machine has {torch.cuda.device_count()}; pass --device "
                            f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return dev


def describe_device(device: torch.device) -> str:
    """What trained the run, for its card: the GPU's name, or the CPU's model and thread count."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"CPU {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def setup_distributed(device: str) -> tuple[torch.device, int, int]:
    """(device, rank, world size); initialises the process group when launched by torchrun."""
    world, rank, local_rank = distributed()
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest conv algorithms once
        if world > 1:
            dev = torch.device("cuda", local_rank)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return dev, rank, world


def prepare_data(cfg: TrainConfig, spec: DataSpec | None = None) -> Dataset:
    """The run's data: ``spec`` (default: the config's dataset's), or synthetic images of its shape."""
    spec = spec or get_dataset_spec(cfg.dataset)
    if cfg.synthetic:  # N training images; a validation split is drawn on top of them
        data = synthetic(spec, n_train=cfg.synthetic + cfg.val_split, n_test=max(cfg.synthetic // 4, 64), seed=cfg.seed)
        return split_validation(data, cfg.val_split, cfg.seed) if cfg.val_split else data
    return load_dataset(spec, cfg.data_dir, val_split=cfg.val_split, seed=cfg.seed, progress=cfg.progress)


# ---------------------------------------------------------------------------- loss and evaluation


def compute_loss(out: Tensor | tuple[Tensor, ...], y: Tensor, recipe: Recipe) -> tuple[Tensor, Tensor]:
    """(loss, main logits). GoogLeNet's aux heads add ``aux_weight`` x their losses, as in Szegedy et al."""
    if isinstance(out, tuple):
        logits, *aux = out
        loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
        loss = loss + recipe.aux_weight * sum(F.cross_entropy(a, y, label_smoothing=recipe.label_smoothing) for a in aux)
        return loss, logits
    return F.cross_entropy(out, y, label_smoothing=recipe.label_smoothing), out


def autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


@torch.no_grad()
def evaluate(model: nn.Module, loader: DeviceLoader, num_classes: int, tta_flip: bool = False, bf16: bool = True,
             progress: bool = False) -> dict[str, Any]:
    """Loss, top-1 / top-5 error (%) and the confusion matrix (rows: true class) over ``loader``.

    On CUDA it runs under bf16 autocast, as training does, unless ``bf16`` is False. ``progress``: a bar on a terminal."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=loader.device)
    top5 = torch.zeros((), device=loader.device)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.long, device=loader.device)
    bar = progress_bar(progress, len(loader.y), "eval")
    for x, y in loader.batches(0):
        with autocast(loader.device) if bf16 else nullcontext():
            logits = model(x).float()
            if tta_flip:
                logits = (logits + model(x.flip(3)).float()) / 2
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        k = min(5, num_classes)
        top5 += (logits.topk(k, 1).indices == y[:, None]).any(1).sum()
        confusion += torch.bincount(y * num_classes + logits.argmax(1), minlength=num_classes * num_classes)
        if bar is not None:
            bar.update(len(y))
    if bar is not None:
        bar.close()
    model.train(was_training)
    n = len(loader.y)
    confusion = confusion.view(num_classes, num_classes).cpu()
    return {
        "loss": loss_sum.item() / n,
        "err": 100.0 * (1 - confusion.diag().sum().item() / n),
        "top5_err": 100.0 * (1 - top5.item() / n),
        "confusion": confusion,
    }


def evaluate_model(
    model: nn.Module, dataset: str, data_dir: str | None = None, *, device: str = "auto", tta_flip: bool = False,
    bf16: bool = True, download: bool = True, progress: bool = False, test_subset: int = 0,
) -> dict[str, Any]:
    """Loss, top-1 / top-5 error, per-class accuracy (%) and confusion matrix of ``model`` on ``dataset``'s full test set
    (``test_subset`` > 0: on a seeded random subset of that many test images, as ``zoo train --test-subset``)."""
    base, dev = unwrap_zoo_model(model, "evaluate_model"), resolve_device(device)
    spec = get_dataset_spec(dataset, data=getattr(base, "data_config", None))
    if base.in_chans != spec.in_chans or base.num_classes < spec.num_classes:  # a larger head trains, so it evaluates
        raise TrainingError(
            f"the weights are for {base.in_chans}-channel input and {base.num_classes} classes, "
            f"{dataset} has {spec.in_chans} and {spec.num_classes}; pick the dataset they were trained on"
        )
    data = load_dataset(spec, data_dir, download=download, progress=progress)
    x_test, y_test = subset(data.x_test, data.y_test, test_subset)
    loader = DeviceLoader(x_test, y_test, batch_size=1024, mean=data.spec.mean, std=data.spec.std,
                          shuffle=False, drop_last=False, device=dev, channels_last=dev.type == "cuda")
    result = evaluate(model.to(dev), loader, base.num_classes, tta_flip, bf16, progress)
    confusion = result["confusion"]
    per_class = (confusion.diag().float() / confusion.sum(1).clamp(min=1).float() * 100).tolist()
    labels = [*spec.label_names, *map(str, range(spec.num_classes, base.num_classes))]  # a larger head's spare outputs
    result.update(dataset=dataset, tta_flip=tta_flip, images=len(y_test), confusion=confusion.tolist(),
                  labels=labels, per_class_acc=dict(zip(spec.label_names, per_class)))
    return result


def evaluate_checkpoint(
    arch: str,
    weights: str | os.PathLike | None = None,
    dataset: str | None = None,
    *,
    data_dir: str | None = None,
    device: str = "auto",
    out: str | os.PathLike | None = None,
    tta_flip: bool = False,
    progress: bool = False,
    test_subset: int = 0,
) -> dict[str, Any]:
    """:func:`evaluate_model` of a checkpoint; with ``out``, also ``eval.json`` and ``confusion.png`` there.

    Without ``weights``, ``arch`` names a pretrained tag (``googlenet_res5x5.cifar10_paper``, or an
    arch whose first tag is meant), whose weights and dataset are used. The device and ``out`` are checked first.
    """
    resolve_device(device)
    if out is not None:
        check_writable(Path(out) / "eval.json")
    if weights is None:
        tag = get_pretrained_tag(arch)
        model, dataset = create_model(tag.name, pretrained=True), dataset or tag.dataset
    else:
        model = load_model(weights, arch)
    if dataset is None:
        raise TrainingError(f"which test set? pass the dataset the weights of {arch} were trained on "
                            f"({', '.join(list_datasets())} or {FOLDER_PREFIX}PATH)")
    result = {"arch": arch, "weights": str(weights or f"pretrained tag {arch}"),
              **evaluate_model(model, dataset, data_dir, device=device, tta_flip=tta_flip, progress=progress,
                                 test_subset=test_subset)}
    if out is not None:
        out = Path(out)
        atomic_write_bytes(out / "eval.json", json.dumps(result, indent=2).encode())
        title = f"{arch} on {dataset}: top-1 error {result['err']:.2f}%"
        atomic_write_bytes(out / "confusion.png", confusion_png(result["confusion"], result["labels"], title))
    return result


# ---------------------------------------------------------------------------- resume state


@dataclass
class StopFlag:
    requested: bool = False


@contextmanager
def stop_requests() -> Iterator[StopFlag]:
    """SIGINT / SIGTERM set a flag instead of killing: the loop checks it at each step boundary, saves and returns."""
    flag = StopFlag()

    def handler(signum: int, frame: Any) -> None:
        flag.requested = True

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


# ---------------------------------------------------------------------------- setup of one run


@dataclass
class Trainer:
    """Everything one run needs, built by :func:`setup`; the loop's functions take it."""

    cfg: TrainConfig
    recipe: Recipe
    device: torch.device
    rank: int
    world: int
    data: Dataset
    run_dir: RunDir
    train_loader: DeviceLoader
    eval_loaders: dict[str, DeviceLoader]
    model: nn.Module  # the plain model: evaluated and saved
    net: nn.Module  # what steps: the model in DDP and / or torch.compile
    optimizer: torch.optim.Optimizer
    model_kwargs: dict[str, Any]
    state: LoopState = field(default_factory=LoopState)
    sums: dict[str, Tensor] = field(default_factory=dict)
    run: RunRecord | None = None  # run.json

    @property
    def watch(self) -> str:
        """The split that selects epochs and steers plateaus: validation when held out, else test (the paper's way)."""
        return "val" if "val" in self.eval_loaders else "test"

    def lr(self, step: int) -> float:
        """The learning rate at global step ``step``: the one place it is computed."""
        return self.recipe.lr_at(step, len(self.train_loader), self.state.plateau_scale)


def _loaders(cfg: TrainConfig, recipe: Recipe, data: Dataset, device: torch.device, rank: int, world: int):
    x_train, y_train = subset(data.x_train, data.y_train, cfg.train_subset, cfg.seed)
    x_test, y_test = subset(data.x_test, data.y_test, cfg.test_subset, cfg.seed)
    common: dict[str, Any] = dict(mean=data.spec.mean, std=data.spec.std, device=device, channels_last=device.type == "cuda")
    train_loader = DeviceLoader(
        x_train, y_train, batch_size=recipe.batch_size, augment=recipe.augment, flip=recipe.flip,
        seed=cfg.seed, rank=rank, world_size=world, **common,
    )
    if len(train_loader) == 0:
        raise TrainingError(f"{len(y_train)} training images make no full batch of {recipe.batch_size}; lower --batch-size")
    eval_sets = {"test": (x_test, y_test)} | (
        {"val": (data.x_val, data.y_val)} if data.x_val is not None and data.y_val is not None else {})
    eval_loaders = {
        k: DeviceLoader(x, y, batch_size=cfg.eval_batch_size, shuffle=False, drop_last=False, **common)
        for k, (x, y) in eval_sets.items()
    }
    seen = {"train": (x_train, y_train), **eval_sets}  # what this run trains and evaluates on, after subsets and split
    identity = {f"{k}_{what}": f(x, y) for k, (x, y) in seen.items()
                for what, f in (("images", lambda x, y: len(y)), ("sha256", arrays_sha256))}
    return train_loader, eval_loaders, identity


def _run_record(t: Trainer, data_identity: dict[str, Any]) -> RunRecord:
    """run.json: what is being run, enough to rebuild the model and to refuse a mismatched --resume."""
    spec = t.data.spec
    return RunRecord(
        arch=t.cfg.arch, model_kwargs=t.model_kwargs, dataset=spec.name, dataset_sha256=t.data.sha256,
        dataset_source=t.data.source, recipe=t.recipe.name, recipe_config=t.recipe.to_dict(),
        config=dataclasses.asdict(t.cfg), seed=t.cfg.seed, epochs=t.recipe.epochs, world_size=t.world,
        machine=describe_device(t.device), input_size=spec.input_size, mean=spec.mean, std=spec.std,
        label_names=spec.label_names, zoo_version=__version__, git_commit=git_commit(), data=data_identity,
        pad=spec.pad, init=t.cfg.init, mirror=spec.mirror,
    )


def _init_and_spec(cfg: TrainConfig, given: DataSpec | None = None) -> tuple[dict[str, Any], DataSpec]:
    """What a fine-tuned model (``--init``, read without its weights) passes on, and the dataset's spec (``given``,
    or found: an image folder takes the fine-tuned model's data contract, fitted to an ``in_chans`` asked for)."""
    inherited: dict[str, Any] = {}
    data: DataConfig | None = None
    if cfg.init is not None:
        arch, inherited, data = init_config(cfg.init)
        if arch != cfg.arch:
            raise TrainingError(f"--init {cfg.init} holds {arch!r} weights, not {cfg.arch!r}; train {arch} or pick "
                                f"{cfg.arch} weights")
    spec = given or get_dataset_spec(cfg.dataset, data=data, in_chans=cfg.model_kwargs.get("in_chans"))
    if cfg.mirror is not None:  # --mirror / --no-mirror over the dataset's own (a folder's: no)
        spec = dataclasses.replace(spec, mirror=cfg.mirror)
    return {k: v for k, v in inherited.items() if k not in ("num_classes", "in_chans")}, spec


def _build(cfg: TrainConfig, model_kwargs: dict[str, Any]) -> nn.Module:
    """The model to train: fresh (seeded), or the fine-tuned one, its head fitted to the dataset (seeded too)."""
    torch.manual_seed(cfg.seed)
    if cfg.init is None:
        return create_model(cfg.arch, **model_kwargs)
    return load_any(cfg.init, **model_kwargs)


def setup(cfg: TrainConfig, data: Dataset | None = None) -> Trainer:
    """Recipe, data, loaders, model and optimizer of ``cfg``; resumed from the run directory with ``cfg.resume``.
    Everything that can be refused is checked before the data is loaded."""
    device, rank, world = setup_distributed(cfg.device)
    inherited, spec = _init_and_spec(cfg, data.spec if data is not None else None)
    recipe = get_recipe(cfg.recipe_name, cfg.arch, spec, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                        **cfg.recipe_overrides)
    model_kwargs = {"num_classes": spec.num_classes, "in_chans": spec.in_chans, **recipe.model_kwargs, **inherited,
                    **cfg.model_kwargs}
    _check_fits(cfg, spec, model_kwargs)
    run_dir = RunDir(cfg.out)
    _check_run_dir(cfg, run_dir)
    if cfg.resume:
        run_dir.read_run()  # a damaged or foreign run.json is refused before the data is loaded
    check_writable(run_dir.run_json)
    data = data or prepare_data(cfg, spec)
    recipe, notes = fit_batch(cfg, recipe, len(subset(data.x_train, data.y_train, cfg.train_subset)[1]), world)
    train_loader, eval_loaders, data_identity = _loaders(cfg, recipe, data, device, rank, world)
    model = _build(cfg, model_kwargs).to(device)
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
        weight_decay=recipe.weight_decay, fused=cuda or None,
    )
    net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None) if world > 1 else model
    # torch.compile of a module returns one (an OptimizedModule); its stub says only Callable, hence the ignore
    t = Trainer(cfg, recipe, device, rank, world, data, run_dir, train_loader, eval_loaders, model,
                torch.compile(net) if cfg.compile else net, optimizer, model_kwargs)  # type: ignore[arg-type]
    t.sums = {k: torch.zeros((), device=device) for k in ("loss", "correct", "seen")}
    t.run = dataclasses.replace(_run_record(t, data_identity), notes=notes)
    return t


def fit_batch(cfg: TrainConfig, recipe: Recipe, n_train: int, world: int) -> tuple[Recipe, tuple[str, ...]]:
    """The recipe with a batch that fits a small dataset: a recipe's batch (no --batch-size given) larger than each
    process's share of the training images becomes that share; the note says so, for run.json and the card."""
    share = n_train // world
    if cfg.batch_size is not None or recipe.batch_size <= share or share < 1:
        return recipe, ()
    note = (f"The batch was lowered from the {recipe.name} recipe's {recipe.batch_size} to {share}: the dataset has "
            f"{n_train} training images" + (f" for {world} processes" if world > 1 else "") + ".")
    return dataclasses.replace(recipe, batch_size=share), (note,)


def _check_fits(cfg: TrainConfig, spec: DataSpec, model_kwargs: dict[str, Any]) -> None:
    """Refuse, before the data is loaded, a model the dataset cannot train: kwargs it does not take, fewer
    classes than the dataset has, or other input channels."""
    check_model_kwargs(cfg.arch, model_kwargs)
    if model_kwargs["num_classes"] < spec.num_classes:
        raise TrainingError(f"num_classes={model_kwargs['num_classes']} but {spec.title} has {spec.num_classes} classes; "
                            f"pass num_classes >= {spec.num_classes} (or leave it out)")
    if model_kwargs["in_chans"] != spec.in_chans:
        raise TrainingError(f"in_chans={model_kwargs['in_chans']} but {spec.title} has {spec.in_chans}-channel images; "
                            "leave in_chans out")


def _check_run_dir(cfg: TrainConfig, run_dir: RunDir) -> None:
    if run_dir.state.exists() and not cfg.resume:
        raise TrainingError(f"{run_dir.path} already holds a run; pass --resume to continue it or choose another --out")
    if cfg.resume and not run_dir.state.exists():
        raise TrainingError(f"nothing to resume: {run_dir.state} does not exist")


def start(t: Trainer) -> None:
    """Under the run directory's lock: restore the state to resume, or record the new run in run.json."""
    _check_run_dir(t.cfg, t.run_dir)  # again: another process may have written it since setup looked
    if t.run is None:
        raise TrainingError("this Trainer has no run record (run.json) to start from; build it with zoo.train.loop.setup")
    if t.cfg.resume:
        _check_same_run(t.run_dir.read_run(), t.run, t.run_dir.run_json)
        t.state, t.sums = load_state(t.run_dir.state, t.model, t.optimizer, t.device)
        if t.rank != 0:  # only rank 0's partial-epoch sums were saved
            t.sums = {k: torch.zeros_like(v) for k, v in t.sums.items()}
    elif t.rank == 0:
        t.run_dir.write_run(t.run)


# ---------------------------------------------------------------------------- the loop


def train(cfg: TrainConfig, data: Dataset | None = None) -> dict[str, Any]:
    """Train ``cfg.arch`` per ``cfg.recipe``; returns the run summary. ``data`` skips reloading.

    A SIGINT / SIGTERM ends the run at the next step boundary, its state saved: the summary then
    has ``stopped`` set and says how to resume.
    """
    t = setup(cfg, data)
    with t.run_dir.lock() if t.rank == 0 else nullcontext(), stop_requests() as stop:
        start(t)
        while t.state.epoch < t.recipe.epochs:
            if not run_epoch(t, stop):
                kept = "records only, no state kept: a rerun starts it again" if cfg.records_only else \
                    f"state saved in {t.run_dir.state}; --resume continues"
                return {"stopped": True, "message": f"stopped at epoch {t.state.epoch + 1} step {t.state.step}; {kept}"}
        return finish(t)


def train_step(net: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor, recipe: Recipe, lr: float) -> tuple[Tensor, Tensor]:
    """One SGD step at ``lr`` under bf16 autocast on CUDA; returns the (detached) loss and the main logits."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast(x.device):
        loss, logits = compute_loss(net(x), y, recipe)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), logits


def run_epoch(t: Trainer, stop: StopFlag) -> bool:
    """Step through the rest of the current epoch, then evaluate and checkpoint; False when stopped early."""
    t.net.train()
    epoch, steps = t.state.epoch, len(t.train_loader)
    bar = progress_bar(t.cfg.progress and t.rank == 0, steps * t.recipe.batch_size, f"epoch {epoch + 1}/{t.recipe.epochs}",
                       initial=t.state.step * t.recipe.batch_size)
    start = time.perf_counter()
    for step, (x, y) in enumerate(t.train_loader.batches(epoch, t.state.step), start=t.state.step):
        lr = t.lr(t.state.global_step)
        loss, logits = train_step(t.net, t.optimizer, x, y, t.recipe, lr)
        t.sums["loss"] += loss.float() * len(y)
        t.sums["correct"] += (logits.argmax(1) == y).sum()
        t.sums["seen"] += len(y)
        t.state.step, t.state.global_step = step + 1, t.state.global_step + 1
        if step % 20 == 0:  # one host sync every 20 steps
            _check_finite(t, epoch, step, lr)
            if bar is not None:
                bar.set_postfix(loss=f"{t.sums['loss'].item() / max(1, t.sums['seen'].item()):.3f}", lr=f"{lr:.3g}")
        if bar is not None:
            bar.update(t.recipe.batch_size)
        if stop.requested:
            _check_finite(t, epoch, step, lr)
            t.state.train_seconds += time.perf_counter() - start
            checkpoint(t)
            return False
    if t.device.type == "cuda":
        torch.cuda.synchronize()
    if bar is not None:
        bar.close()
    end_epoch(t, time.perf_counter() - start)
    return True


def end_epoch(t: Trainer, epoch_s: float) -> None:
    """The epoch's row (train sums, evaluation), the plateau schedule, then checkpoint and metrics.jsonl."""
    lr = t.lr(t.state.global_step - 1)  # the last step's
    _check_finite(t, t.state.epoch, len(t.train_loader), lr)
    if t.world > 1:
        for v in t.sums.values():
            dist.all_reduce(v)
    seen = t.sums["seen"].item()
    row: dict[str, Any] = {"epoch": t.state.epoch + 1, "lr": lr, "train_loss": t.sums["loss"].item() / seen,
                           "train_err": 100.0 * (1 - t.sums["correct"].item() / seen)}
    for name, loader in t.eval_loaders.items():
        result = evaluate(t.model, loader, t.model_kwargs["num_classes"], t.recipe.tta_flip)
        row.update({f"{name}_loss": result["loss"], f"{name}_err": result["err"], f"{name}_top5_err": result["top5_err"]})
    t.state.train_seconds += epoch_s
    row.update(epoch_s=epoch_s, img_s=seen / epoch_s, train_seconds=t.state.train_seconds)
    _plateau(t.state, t.recipe, row[f"{t.watch}_err"])
    t.state.history.append(row)
    t.state.epoch, t.state.step = t.state.epoch + 1, 0
    t.sums = {k: torch.zeros_like(v) for k, v in t.sums.items()}
    checkpoint(t)
    if t.rank == 0:
        t.run_dir.write_history(t.state.history)
        if t.cfg.progress:
            print(_epoch_line(row, t.watch), flush=True)


def checkpoint(t: Trainer) -> None:
    if t.rank == 0 and not t.cfg.records_only:
        save_state(t.run_dir.state, t.model, t.optimizer, t.state, t.sums)


def finish(t: Trainer) -> dict[str, Any]:
    """The run's summary; rank 0 writes the finished model (``RUN_DIR/model``) with its card."""
    history = t.state.history
    summary = summarize(history, t.watch)
    spec, seen = t.data.spec, t.run.data if t.run else {}
    data = spec.data_config(dataset_sha256=t.data.sha256, base_model=t.cfg.init,
                            images=(seen["train_images"], seen["test_images"]) if seen else None)
    if t.data.source.startswith("synthetic"):
        data = dataclasses.replace(data, dataset=f"synthetic-{data.dataset}")
    if t.rank == 0 and not t.cfg.records_only:
        save_pretrained(
            t.model, t.run_dir.model, arch=t.cfg.arch, model_kwargs=t.model_kwargs, data=data,
            tag=run_tag(FOLDER_PREFIX.rstrip(":") if spec.root else str(data.dataset), t.recipe, t.cfg.model_kwargs),
            recipe=t.recipe.name, metrics=summary, history=history, notes=[*run_notes(t.recipe.to_dict(), history), *(t.run.notes if t.run else ())],
        )
    if t.world > 1:
        dist.barrier()
    return summary


def run_tag(dataset: str, recipe: Recipe, model_args: dict[str, Any]) -> str:
    """``<dataset>_<recipe>``, plus the model args that differ from the recipe's (``cifar10_paper_aux_logits-false``),
    so runs of different models never share a card name."""
    extra = [f"{k}-{v}".lower() for k, v in sorted(model_args.items()) if recipe.model_kwargs.get(k) != v]
    return "_".join([f"{dataset}_{recipe.name}", *extra])


def _check_same_run(saved: RunRecord, now: RunRecord, where: Path) -> None:
    """Refuse to resume into a different run; only the number of epochs may grow."""
    keys = ("arch", "model_kwargs", "dataset", "dataset_sha256", "seed", "world_size", "init")
    diffs = [k for k in keys if getattr(saved, k) != getattr(now, k)]
    if saved.data:  # the images trained and evaluated on: subsets, validation split, synthetic size
        diffs += [f"data.{k}" for k in now.data if saved.data.get(k) != now.data[k]]
    defaults = {f.name: f.default for f in dataclasses.fields(Recipe)}  # fields added since the run started
    recipe_then = {**defaults, **{k: v for k, v in saved.recipe_config.items() if k != "epochs"}}
    recipe_now = {k: v for k, v in now.recipe_config.items() if k != "epochs"}
    diffs += [f"recipe.{k}" for k in recipe_now if recipe_then.get(k) != recipe_now[k]]
    if diffs:
        raise TrainingError(
            f"--resume with different settings than the run recorded in {where} ({', '.join(diffs)}); "
            "pass the same arguments as the original run (only --epochs may change) or start a new --out"
        )


def summarize(history: list[dict[str, Any]], watch: str = "test") -> dict[str, Any]:
    best = min(history, key=lambda r: r[f"{watch}_err"])
    last = history[-1]
    return {
        "best_test_err": min(r["test_err"] for r in history),
        f"best_{watch}_err": best[f"{watch}_err"],
        "best_epoch": best["epoch"],
        "test_err_at_best": best["test_err"],
        "final_test_err": last["test_err"],
        "final_test_top5_err": last["test_top5_err"],
        "epochs": last["epoch"],
        "train_seconds": last["train_seconds"],
    }


PLATEAU_EPS = 1e-8  # torch's ReduceLROnPlateau eps: a drop smaller than this is not made


def _plateau(state: LoopState, recipe: Recipe, err: float) -> None:
    """torch's ReduceLROnPlateau (mode min, relative threshold 1e-4, eps 1e-8), kept in the loop state for resume."""
    if recipe.schedule != "plateau":
        return
    if err < state.plateau_best * (1 - 1e-4):
        state.plateau_best, state.plateau_bad = err, 0
    else:
        state.plateau_bad += 1
    if state.plateau_bad > recipe.plateau_patience:
        lr = recipe.lr * state.plateau_scale
        if lr - lr * recipe.plateau_factor > PLATEAU_EPS:
            state.plateau_scale *= recipe.plateau_factor
        state.plateau_bad = 0


def _check_finite(t: Trainer, epoch: int, step: int, lr: float) -> None:
    """Refuse a non-finite loss sum, naming what the run started from: a fine-tune's source weights are the first
    suspect (loading refuses non-finite ones, not ones whose outputs overflow), then the rate, then the data."""
    if not torch.isfinite(t.sums["loss"]):
        fix = (f"The --init weights {t.cfg.init} may not be fine-tunable: try other weights, a lower --lr, or check "
               "the data for NaNs" if t.cfg.init else "Lower --lr, or check the data for NaNs")
        raise TrainingError(f"the training loss became non-finite in epoch {epoch + 1} by step {step + 1} (lr {lr:.3g}); "
                            f"the last good state in {t.run_dir.path} is kept. {fix}")


def _epoch_line(row: dict[str, Any], watch: str) -> str:
    extra = f" val_err {row['val_err']:.2f}%" if watch == "val" else ""
    return (
        f"epoch {row['epoch']:3d}  lr {row['lr']:.3g}  train_loss {row['train_loss']:.4f}  train_err {row['train_err']:.2f}%  "
        f"test_err {row['test_err']:.2f}%{extra}  {row['epoch_s']:.1f}s  {row['img_s']:.0f} img/s"
    )
