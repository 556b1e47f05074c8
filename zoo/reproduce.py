"""The paper's experiments as data, runnable, with a report beside the paper's numbers.

Each experiment is a list of runs; each run is trained with the paper's
recipe (the paper's configuration: torchvision stems and heads) and with our
``fast`` recipe (CIFAR stem/head). Runs live in ``OUT/runs/<run id>`` where the
id says everything that makes the run what it is, so experiments share runs
(fig7's plain GoogLeNet is aux's "with aux"), a finished run is skipped and an
interrupted one resumed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo import verdicts
from zoo.checkpoint import atomic_write_bytes, check_writable
from zoo.data import PAPER_CROP_SCALE, PAPER_JITTER, PAPER_ROTATION_DEG
from zoo.errors import ArgumentError, RunStopped, TrainingError
from zoo.plots import curves_png
from zoo.recipes import get_recipe
from zoo.registry import model_class
from zoo.rundir import RunDir, directory_lock
from zoo.train import TrainConfig, prepare_data, train
from zoo.verdicts import Summary, summarize

# --------------------------------------------------------------------------- the paper's numbers
# Quoted from "Deeper Networks for Image Classification" (shared/paper/): best top-1 test error in %,
# and the epoch it was reached at where the paper says.

PAPER_FIG7 = {  # section 3.2.3 table, CIFAR-10
    "googlenet": 14.56,
    "googlenet_5x5": 14.33,
    "googlenet_res3x3": 13.73,
    "googlenet_res5x5": 13.39,  # "achieved this score on its 158th epoch"
}
PAPER_AUX = {"with aux": 14.56, "without aux": 14.69}  # section 3.2.4
PAPER_PATIENCE = {  # section 2.2.1 table: patience -> (LR at best, best error %, epoch)
    0: (1.0e-8, 14.05, 26),
    1: (1.0e-7, 9.58, 44),
    5: (1.0e-5, 6.73, 88),
    10: (1.0e-3, 5.96, 97),
    15: (1.0e-3, 6.12, 99),
}


@dataclass(frozen=True)
class Run:
    label: str
    arch: str
    dataset: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    recipe_overrides: dict[str, Any] = field(default_factory=dict)
    paper_err: float | None = None
    paper_epoch: int | None = None

    def run_id(self, recipe: str, model_args: dict[str, Any] | None = None, *, val_split: int = 0, seed: int = 0,
               quick: bool = False, recipe_overrides: dict[str, Any] | None = None) -> str:
        """What makes the run what it is; seed 0 under the paper's protocol keeps the plain id of the first runs."""
        parts = [self.dataset, recipe, self.arch]
        parts += [f"{k}={v}" for k, v in sorted({**(model_args or {}), **self.model_kwargs}.items())]
        parts += [f"{k}={v}" for k, v in sorted({**self.recipe_overrides, **(recipe_overrides or {})}.items())]
        parts += [f"val{val_split}"] * bool(val_split) + [f"seed{seed}"] * bool(seed) + ["quick"] * quick
        return "-".join(str(p).lower() for p in parts)


@dataclass(frozen=True)
class Claim:
    """One of the paper's claims, declared here before the runs that test it, checked by zoo.verdicts.

    ``kind``: "better" (run ``a``'s metric is below run ``b``'s), "similar" (``a`` and ``b`` within
    ``margin`` points of each other), "near" (``a`` within ``margin`` points of the paper's ``value``)
    or "at_most" (``a``'s metric is at most ``value``). ``metric`` is one of :data:`METRICS`.
    ``horizon``: "end" for a claim about the end of the paper's training (its best or final error),
    which a run shorter than the paper's recipe cannot test; "early" for one about the first epochs.
    """

    text: str
    kind: str
    a: str
    b: str | None = None
    metric: str = "selected"
    value: float | None = None
    margin: float | None = None
    paper: str = ""
    horizon: str = "end"


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    runs: tuple[Run, ...]
    recipes: tuple[str, ...] = ("paper", "fast")
    paper_notes: tuple[str, ...] = ()
    claims: tuple[Claim, ...] = ()
    early_epochs: int = 5  # the "early" metric: mean validation error over epochs 1..early_epochs


def _three(dataset: str) -> tuple[Run, ...]:
    return (Run("VGG19", "vgg19", dataset), Run("ResNet18", "resnet18", dataset), Run("GoogLeNet", "googlenet", dataset))


def _fastest(paper: str) -> tuple[Claim, ...]:
    return tuple(
        Claim(f"ResNet18 converges faster than {other}", "better", "ResNet18", other, metric="early", paper=paper,
              horizon="early")
        for other in ("VGG19", "GoogLeNet")
    )


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in [
        Experiment(
            "fig5", "Figure 5: VGG19, ResNet18 and GoogLeNet on MNIST", _three("mnist"),
            paper_notes=("\"ResNet achieves a test error of just 1.82% after the first epoch.\"",
                         "\"both networks [ResNet, GoogLeNet] achieve a similar final performance\""),
            claims=_fastest("figure 5: ResNet18 is lowest from the first epoch") + (
                Claim("ResNet18's test error after epoch 1 is about 1.82%", "near", "ResNet18", metric="epoch1",
                      value=1.82, margin=0.5, paper="1.82% after the first epoch", horizon="early"),
                Claim("ResNet18 and GoogLeNet reach a similar final performance", "similar", "ResNet18", "GoogLeNet",
                      margin=0.3, paper="\"a similar final performance\""),
            ),
            early_epochs=3,
        ),
        Experiment(
            "fig6", "Figure 6: VGG19, ResNet18 and GoogLeNet on CIFAR-10", _three("cifar10"),
            paper_notes=("\"VGG stabilising after 70 epochs, GoogLeNet on it's 81st and ResNet [...] on it's 9th epoch\"",
                         "\"a 10.73% gap in test error between the models\" (GoogLeNet better than ResNet18)"),
            claims=_fastest("ResNet18 stabilises on its 9th epoch, GoogLeNet on its 81st, VGG19 after 70") + (
                Claim("GoogLeNet beats ResNet18", "better", "GoogLeNet", "ResNet18", paper="a 10.73-point gap"),
            ),
        ),
        Experiment(
            "fig7", "Figure 7: GoogLeNet 3x3 vs 5x5, plain vs residual, CIFAR-10",
            (
                Run("3x3, no residuals", "googlenet", "cifar10", paper_err=PAPER_FIG7["googlenet"]),
                Run("5x5, no residuals", "googlenet_5x5", "cifar10", paper_err=PAPER_FIG7["googlenet_5x5"]),
                Run("3x3, residuals", "googlenet_res3x3", "cifar10", paper_err=PAPER_FIG7["googlenet_res3x3"]),
                Run("5x5, residuals", "googlenet_res5x5", "cifar10", paper_err=PAPER_FIG7["googlenet_res5x5"], paper_epoch=158),
            ),
            paper_notes=("\"both variants with residuals converge much faster\"",),
            claims=(
                Claim("true 5x5 beats 3x3 (no residuals)", "better", "5x5, no residuals", "3x3, no residuals", paper="14.33 vs 14.56"),
                Claim("true 5x5 beats 3x3 (residuals)", "better", "5x5, residuals", "3x3, residuals", paper="13.39 vs 13.73"),
                Claim("residuals beat plain (3x3)", "better", "3x3, residuals", "3x3, no residuals", paper="13.73 vs 14.56"),
                Claim("residuals beat plain (5x5)", "better", "5x5, residuals", "5x5, no residuals", paper="13.39 vs 14.33"),
                Claim("residuals converge faster (3x3)", "better", "3x3, residuals", "3x3, no residuals",
                      metric="early", paper="\"converge much faster\"", horizon="early"),
                Claim("residuals converge faster (5x5)", "better", "5x5, residuals", "5x5, no residuals",
                      metric="early", paper="\"converge much faster\"", horizon="early"),
            ),
        ),
        Experiment(
            "aux", "GoogLeNet with and without auxiliary classifiers, CIFAR-10",
            (
                Run("with aux", "googlenet", "cifar10", paper_err=PAPER_AUX["with aux"]),
                Run("without aux", "googlenet", "cifar10", {"aux_logits": False}, paper_err=PAPER_AUX["without aux"]),
            ),
            paper_notes=("\"There is scant difference between how well the networks converge during training\"",),
            claims=(
                Claim("aux heads make scant difference (within 1 point)", "similar", "with aux", "without aux", margin=1.0,
                      paper="14.56 vs 14.69"),
            ),
        ),
        Experiment(
            "vgg-patience", "VGG19 plateau patience sweep (the paper does not name the dataset; run on CIFAR-10)",
            tuple(
                Run(f"patience {p}", "vgg19", "cifar10", recipe_overrides={"plateau_patience": p}, paper_err=err, paper_epoch=ep)
                for p, (_, err, ep) in PAPER_PATIENCE.items()
            ),
            recipes=("paper",),
            paper_notes=("\"a higher patience resulted in better overall performance\"",),
            claims=tuple(
                Claim(f"patience {hi} beats patience {lo}", "better", f"patience {hi}", f"patience {lo}",
                      paper=f"{PAPER_PATIENCE[hi][1]} vs {PAPER_PATIENCE[lo][1]}")
                for lo, hi in ((0, 1), (1, 5), (5, 10))
            ),
        ),
    ]
}

# --quick: the whole pipeline on a few synthetic images, on the CPU; checks the machinery, not the numbers.
# VGG's ImageNet head (120M FC parameters, a 1.1 GB resume state per epoch) is swapped for its CIFAR head.
# What the paper leaves open, with the value zoo uses (the report lists these once).
UNSTATED = {
    "ResNet momentum and weight decay": "0.9 and 1e-4 (He et al.)",
    "GoogLeNet weight decay": "2e-4 (Szegedy et al. give none)",
    "CIFAR-10 augmentation parameters": f"rotation ±{PAPER_ROTATION_DEG:g}°, colour jitter ±{PAPER_JITTER:g} (brightness, "
                                        f"contrast, saturation), random resized crop scale {PAPER_CROP_SCALE}, horizontal flip",
    "GoogLeNet auxiliary loss weight": "0.3 (Szegedy et al.)",
    "the VGG patience sweep's dataset": "CIFAR-10",
    "validation split": "5,000 training images (`--val-split`), drawn per seed",
    "precision": "bf16 autocast on CUDA, fp32 on the CPU",
}

QUICK = dict(synthetic=4, test_subset=4, epochs=1, batch_size=4, device="cpu")
QUICK_VGG_KWARGS = {"head": "cifar"}
QUICK_VAL_SPLIT = 4
DEFAULT_VAL_SPLIT = 5000  # training images held out to select epochs and steer plateaus; 0 is the paper's protocol


def _config(run: Run, recipe: str, out: Path, *, quick: bool, epochs: int | None, data_dir: str | None, device: str,
            seed: int = 0, val_split: int = 0, model_args: dict[str, Any] | None = None,
            compress: bool = False) -> TrainConfig:
    """One run's config. Cut short by ``epochs``, a run trains the first epochs of its recipe exactly
    (what claims about early training need); with ``compress`` a step schedule is squeezed into the
    epochs run instead (a miniature of the whole schedule, whose early epochs are not the paper's)."""
    extra: dict[str, Any] = dict(QUICK) if quick else {"epochs": epochs, "device": device}
    model_kwargs = {**(model_args or {}), **run.model_kwargs}
    if quick and model_class(run.arch).family == "vgg":
        model_kwargs.update(QUICK_VGG_KWARGS)
    if quick and val_split:
        val_split = QUICK_VAL_SPLIT
    overrides = dict(run.recipe_overrides)
    full = get_recipe(recipe, run.arch, run.dataset, **overrides)
    if compress and full.schedule == "step" and epochs and epochs < full.epochs and not quick:
        overrides["compress_from"] = full.epochs
    run_id = run.run_id(recipe, model_args, val_split=val_split, seed=seed, quick=quick,
                        recipe_overrides={k: v for k, v in overrides.items() if k not in run.recipe_overrides})
    return TrainConfig(
        arch=run.arch, dataset=run.dataset, recipe=recipe, out=str(out / "runs" / run_id),
        model_kwargs=model_kwargs, recipe_overrides=overrides, data_dir=data_dir,
        seed=seed, val_split=val_split, progress=False, **extra,
    )


def _status(cfg: TrainConfig) -> str:
    return RunDir(cfg.out).status()


def _cli_args(cfg: TrainConfig) -> list[str]:
    """The ``zoo train`` command line of ``cfg`` (fields left at their defaults are omitted)."""
    args = ["train", cfg.arch, "--quiet"]
    for name in ("dataset", "recipe", "out", "epochs", "batch_size", "lr", "data_dir", "synthetic", "val_split",
                 "train_subset", "test_subset", "seed", "device"):
        value = getattr(cfg, name)
        if value not in (None, 0, ""):
            args += ["--" + name.replace("_", "-"), str(value)]
    args += [a for k, v in cfg.model_kwargs.items() for a in ("--model-arg", f"{k}={json.dumps(v)}")]
    args += [a for k, v in cfg.recipe_overrides.items() for a in ("--recipe-arg", f"{k}={json.dumps(v)}")]
    return args + (["--compile"] if cfg.compile else []) + (["--resume"] if _status(cfg) == "resume" else [])


def run_configs(configs: list[TrainConfig], jobs: int = 1) -> None:
    """Train every config not yet done: in this process one after another, sharing loaded
    datasets, or as ``jobs`` concurrent ``zoo train`` processes (launch-bound models share a GPU well)."""
    todo = [c for c in configs if _status(c) != "done"]
    if jobs <= 1:
        datasets: dict[tuple, Any] = {}
        for cfg in todo:
            key = (cfg.dataset, cfg.data_dir, cfg.synthetic, cfg.val_split, cfg.seed)
            if key not in datasets:
                datasets[key] = prepare_data(cfg)
            print(f"[reproduce] {Path(cfg.out).name}", flush=True)
            summary = train(TrainConfig(**{**cfg.__dict__, "resume": _status(cfg) == "resume"}), data=datasets[key])
            if summary.get("stopped"):
                raise RunStopped(f"{Path(cfg.out).name} {summary['message']}; rerun zoo reproduce to go on")
        return
    queue, running, failed = list(todo), [], []
    while queue or running:
        while queue and len(running) < jobs:
            cfg = queue.pop(0)
            Path(cfg.out).mkdir(parents=True, exist_ok=True)
            print(f"[reproduce] {Path(cfg.out).name}", flush=True)
            with open(RunDir(cfg.out).log, "ab") as log:
                proc = subprocess.Popen([sys.executable, "-m", "zoo.cli", *_cli_args(cfg)], stdout=log, stderr=log)
            running.append((proc, cfg))
        time.sleep(0.5)
        for proc, cfg in [(p, c) for p, c in running if p.poll() is not None]:
            running.remove((proc, cfg))
            if proc.returncode:
                failed.append(f"{Path(cfg.out).name} (exit {proc.returncode}, see {cfg.out}/train.log)")
    if failed:
        raise TrainingError(f"runs failed: {'; '.join(failed)}")


def _history(cfg: TrainConfig) -> list[dict[str, Any]]:
    return RunDir(cfg.out).read_history()


def _run_json(cfg: TrainConfig) -> dict[str, Any]:
    run_dir = RunDir(cfg.out)
    return run_dir.read_run() if run_dir.run_json.exists() else {}


METRICS = ("final", "selected", "best", "epoch1", "early")


def run_metrics(history: list[dict[str, Any]], early_epochs: int = 5) -> dict[str, float]:
    """A run's errors (%): the test error of the final weights, at the reported epoch, the best over
    epochs and after epoch 1; and "early", the mean validation error over epochs 1..``early_epochs``
    (how fast a run converges, judged without the test set; absent for runs without a validation
    split or shorter than ``early_epochs``).

    The reported ("selected") epoch is the one with the lowest validation error when the run held out a
    validation split; without one (the paper's protocol) it is the one with the lowest test error, the
    paper's own metric, which is optimistic.
    """
    watch = "val_err" if "val_err" in history[0] else "test_err"
    metrics = {
        "final": history[-1]["test_err"],
        "selected": min(history, key=lambda r: r[watch])["test_err"],
        "best": min(r["test_err"] for r in history),
        "epoch1": history[0]["test_err"],
    }
    if watch == "val_err" and len(history) >= early_epochs:
        metrics["early"] = sum(r["val_err"] for r in history[:early_epochs]) / early_epochs
    return metrics


Group = dict[str, list[TrainConfig]]  # run label -> its configs, one per seed


def _summaries(group: Group, early_epochs: int) -> dict[str, dict[str, Summary]]:
    out = {}
    for label, cfgs in group.items():
        rows = [run_metrics(h, early_epochs) for h in map(_history, cfgs) if h]
        out[label] = {k: summarize([r[k] for r in rows if k in r]) for k in METRICS}
    return out


def _verdict(claim: Claim, stats: dict[str, dict[str, Summary]]) -> str:
    if claim.a not in stats or (claim.b and claim.b not in stats):
        return "not run"
    a = stats[claim.a][claim.metric]
    if claim.kind == "at_most":
        return verdicts.at_most(a, claim.value)
    if claim.kind == "near":
        return verdicts.similar(a, summarize([claim.value] * a.n), claim.margin)
    b = stats[claim.b][claim.metric]
    return verdicts.similar(a, b, claim.margin) if claim.kind == "similar" else verdicts.better(a, b)


def _stale(cfg: TrainConfig) -> str:
    """Recipe fields whose value has changed in zoo/recipes.py since the run was trained (epochs aside)."""
    then = _run_json(cfg).get("recipe_config") or {}
    now = get_recipe(cfg.recipe, cfg.arch, cfg.dataset, batch_size=cfg.batch_size, lr=cfg.lr, **cfg.recipe_overrides).to_dict()
    changed = [f"{k} {then[k]} -> {now[k]}" for k in now if k in then and k != "epochs" and then[k] != now[k]]
    return f" **stale: the {cfg.recipe} recipe changed since ({', '.join(changed)})**" if changed else ""


def _setting(cfgs: list[TrainConfig], protocol: str) -> str:
    """Recipe, epochs run against the paper's, seeds, machine and precision of one recipe's runs."""
    first = cfgs[0]
    runs = [_run_json(c) for c in cfgs]
    machines = sorted({r.get("machine", "not recorded") for r in runs if r})
    epochs_run = sorted({len(h) for h in map(_history, cfgs) if h})
    paper_epochs = get_recipe("paper", first.arch, first.dataset).epochs
    kinds = {"not recorded" if m == "not recorded" else "fp32 (CPU)" if m.startswith("CPU") else "bf16 autocast (CUDA)" for m in machines}
    precision = ", ".join(sorted(kinds))
    kwargs = {k: v for k, v in first.model_kwargs.items() if k != "aux_logits"}
    compressed = first.recipe_overrides.get("compress_from")
    miniature = f", its step schedule compressed from {compressed} epochs into the epochs run" if compressed else ""
    return (
        f"`{first.recipe}` recipe, model args `{kwargs}`; {protocol}; epochs run {'/'.join(map(str, epochs_run)) or '-'} "
        f"(the paper's recipe runs {paper_epochs}{miniature}); seeds {sorted({c.seed for c in cfgs})}; machine: "
        f"{'; '.join(machines) or 'not run'}; precision: {precision}."
    )


def _protocol(val_split: int) -> str:
    if val_split:
        return (f"validation protocol: {val_split:,} training images held out per seed select the reported epoch "
                "and steer plateau schedules")
    return "the paper's protocol: the test set selects the reported epoch and steers plateau schedules (optimistic)"


def write_report(exp: Experiment, groups: dict[str, Group], out: Path, *, quick: bool, val_split: int) -> str:
    """The experiment's markdown section, one table and one set of claims per recipe; curves beside it as PNGs."""
    lines = [f"## {exp.name}: {exp.title}", ""]
    if quick:
        lines += ["*--quick run: a few synthetic images on the CPU. It checks the machinery; the numbers mean nothing.*", ""]
    columns = ["final"] + ["selected"] * bool(val_split) + ["best", "epoch1"]  # without a val split, selected is best
    titles = {"final": "final test error %", "selected": "test error at the val-selected epoch %",
              "best": "best test error % (the paper's metric)", "epoch1": "epoch-1 test error %"}
    for recipe, group in groups.items():
        if not any(_history(c) for cfgs in group.values() for c in cfgs):
            lines += [f"### {recipe} recipe", "", "Not run.", ""]
            continue
        stats = _summaries(group, exp.early_epochs)
        lines += [f"### {recipe} recipe", "", _setting([c for cfgs in group.values() for c in cfgs], _protocol(val_split)), ""]
        header = ["run", "paper: best top-1 error %", *(titles[c] for c in columns), "per seed: final"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for run in exp.runs:
            if run.label not in group:
                lines.append("| " + " | ".join([run.label, "-", *["-"] * len(columns), "left out"]) + " |")
                continue
            st, cfgs = stats[run.label], group[run.label]
            paper = "-" if run.paper_err is None else f"{run.paper_err:.2f}" + (f" (epoch {run.paper_epoch})" if run.paper_epoch else "")
            seeds = ", ".join(f"{v:.2f}" for v in st["final"].values) or "not run"
            cells = [run.label + (_stale(cfgs[0]) if st["final"].n else ""), paper, *(str(st[c]) for c in columns), seeds]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "| the paper's claim | metric | ours | the paper | verdict |", "|---|---|---|---|---|"]
        for claim in exp.claims:
            sides = [claim.a] + [claim.b] * bool(claim.b)
            ours = " vs ".join(str(stats[s][claim.metric]) if s in stats else "left out" for s in sides)
            lines.append(f"| {claim.text} | {claim.metric} | {ours} | {claim.paper} | {_verdict(claim, stats)} |")
        png = f"{exp.name}-{recipe}.png"
        curves = {label: [h for h in map(_history, cfgs) if h] for label, cfgs in group.items()}
        if any(curves.values()):
            atomic_write_bytes(out / png, curves_png(curves, f"{exp.title} ({recipe} recipe)"))
            lines += ["", f"![{exp.name} {recipe}]({png})"]
        lines.append("")
    if exp.paper_notes:
        lines += ["The paper says: " + " ".join(exp.paper_notes), ""]
    return "\n".join(lines)


def _header() -> str:
    unstated = "\n".join(f"- {k}: {v}" for k, v in UNSTATED.items())
    return (
        "# Reproducing \"Deeper Networks for Image Classification\"\n\n"
        "Recipes: `paper` is the paper's section 2.2 table for each family in the paper's configuration (torchvision "
        "stems and heads at 32x32); `fast` is ours (warmup + linear decay, Nesterov, label smoothing on CIFAR-10, "
        "batch 512, pad-4 crop + flip, flip-averaged evaluation; CIFAR stem/head unless the model args say "
        "otherwise). See zoo/recipes.py. Errors are top-1 test errors in percent, mean ± sd over seeds. "
        "Each run's metrics.jsonl and run.json are in `runs/` beside this report.\n\n"
        f"Verdicts: {verdicts.RULE}\n\nSettings the paper does not state, and the values used:\n\n{unstated}\n\n"
    )


# Measured training throughput, images per second per process, with the concurrency it was measured at;
# (family, stem or head, recipe) -> (img/s, where). `zoo reproduce --plan` turns them into GPU minutes.
THROUGHPUT: dict[tuple[str, str, str], tuple[float, str]] = {
    ("googlenet", "imagenet", "fast"): (16000, "H100, 5 processes at once (reports/h100)"),
    ("googlenet", "imagenet", "paper"): (8000, "H200, 5 processes at once (reports/h200)"),
    ("googlenet", "cifar", "fast"): (8800, "H200, alone, batch 512 (reports/h200/throughput)"),
    ("resnet", "imagenet", "paper"): (24700, "H200, 6 processes at once, MNIST (reports/h200)"),
    ("resnet", "cifar", "fast"): (42400, "H200, alone (reports/h200)"),
    ("vgg", "imagenet", "paper"): (19100, "H200, 6 processes at once, MNIST (reports/h200)"),
    ("vgg", "cifar", "fast"): (29600, "H200, 6 processes at once, MNIST (reports/h200)"),
}
UNMEASURED = (10000.0, "not measured: a guess")
STARTUP_S = 15.0  # per run: interpreter, data onto the GPU, cuDNN autotuning
TRAIN_IMAGES = {"mnist": 60000, "cifar10": 50000}
TEST_IMAGES = 10000


def _throughput(cfg: TrainConfig) -> tuple[float, str]:
    recipe = get_recipe(cfg.recipe, cfg.arch, cfg.dataset, **cfg.recipe_overrides)
    kwargs = {**recipe.model_kwargs, **cfg.model_kwargs}
    cls = model_class(cfg.arch)
    return THROUGHPUT.get((cls.family, kwargs.get(cls.variant_arg, "imagenet"), cfg.recipe), UNMEASURED)


def estimate(configs: list[TrainConfig], jobs: int = 1, throughput: float | None = None) -> dict[str, Any]:
    """Runs, images and GPU minutes of training ``configs`` with ``jobs`` processes at once.

    Each epoch trains on the training set less the validation split and evaluates the test and
    validation sets (twice with flip-averaging); an evaluated image costs a third of a trained one
    (forward only). Minutes = the runs' seconds (images / measured img/s per process, plus start-up)
    shared among ``jobs`` processes. ``throughput`` (img/s per process) overrides the measurements.
    """
    rows, seconds = [], 0.0
    for cfg in configs:
        recipe = get_recipe(cfg.recipe, cfg.arch, cfg.dataset, epochs=cfg.epochs, **cfg.recipe_overrides)
        train_images = TRAIN_IMAGES[cfg.dataset] - cfg.val_split
        eval_images = (TEST_IMAGES + cfg.val_split) * (2 if recipe.tta_flip else 1)
        images = recipe.epochs * (train_images + eval_images / 3)
        img_s, source = (throughput, "--throughput") if throughput else _throughput(cfg)
        run_s = images / img_s + STARTUP_S
        seconds += run_s
        rows.append({"run": Path(cfg.out).name, "epochs": recipe.epochs, "images": int(images), "img_s": img_s,
                     "source": source, "minutes": run_s / 60})
    minutes = seconds / max(1, min(jobs, len(configs))) / 60
    return {"runs": rows, "images": sum(r["images"] for r in rows), "jobs": jobs, "minutes": minutes}


def plan_configs(
    names: list[str], out: Path, *, quick: bool = False, epochs: int | None = None, recipes: tuple[str, ...] | None = None,
    data_dir: str | None = None, device: str = "auto", seeds: tuple[int, ...] = (0,), val_split: int = DEFAULT_VAL_SPLIT,
    model_args: dict[str, Any] | None = None, skip: tuple[str, ...] = (), compress: bool = False,
) -> dict[str, dict[tuple[str, str, int], TrainConfig]]:
    """Experiment name -> (run label, recipe, seed) -> the run's TrainConfig; runs whose label or
    arch is in ``skip`` are left out (the report says so)."""
    names = list(EXPERIMENTS) if "all" in names else names
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise ArgumentError(f"unknown experiment {unknown[0]!r}; choose one of {', '.join(EXPERIMENTS)} or all")
    skip = tuple(k.lower() for k in skip)
    known = {key for n in names for run in EXPERIMENTS[n].runs for key in (run.label.lower(), run.arch)}
    if bad := [k for k in skip if k not in known]:
        raise ArgumentError(f"--skip {bad[0]!r} names no run of {', '.join(names)}; use a run label or arch: "
                            f"{', '.join(sorted(known))}")
    plan = {}
    for n in names:
        exp = EXPERIMENTS[n]
        chosen = [r for r in exp.recipes if recipes is None or r in recipes]
        plan[n] = {
            (run.label, r, seed): _config(run, r, out, quick=quick, epochs=epochs, data_dir=data_dir, device=device,
                                          seed=seed, val_split=val_split, model_args=model_args, compress=compress)
            for run in exp.runs if not {run.label.lower(), run.arch} & set(skip) for r in chosen for seed in seeds
        }
    return plan


def unique_configs(plan: dict[str, dict[tuple[str, str, int], TrainConfig]]) -> list[TrainConfig]:
    """Every run once (experiments share runs), in plan order."""
    return list({c.out: c for cfgs in plan.values() for c in cfgs.values()}.values())


def reproduce(
    names: str | list[str],
    out: str | os.PathLike = "reproduce",
    *,
    quick: bool = False,
    epochs: int | None = None,
    recipes: tuple[str, ...] | None = None,
    data_dir: str | None = None,
    device: str = "auto",
    jobs: int = 1,
    report_only: bool = False,
    seeds: tuple[int, ...] = (0,),
    val_split: int = DEFAULT_VAL_SPLIT,
    model_args: dict[str, Any] | None = None,
    skip: tuple[str, ...] = (),
    compress: bool = False,
) -> Path:
    """Run the experiments ``names`` ("all" for every one) and write ``OUT/report.md``; returns its path.

    Runs shared between experiments are trained once, and all of them go through one queue,
    so ``jobs`` concurrent processes stay busy across experiments. ``report_only`` trains
    nothing: it writes the report from the runs already in ``OUT/runs``. Each run is trained once
    per seed in ``seeds``; ``val_split`` images of the training set (0: the paper's protocol, which
    selects and steers on the test set) select the reported epoch and drive plateau schedules.
    ``model_args`` apply to every run (e.g. ``stem="imagenet"`` to run the fast recipe in the
    paper's configuration).
    """
    out = Path(out)
    check_writable(out / "report.md")
    plan = plan_configs([names] if isinstance(names, str) else list(names), out, quick=quick, epochs=epochs,
                        recipes=recipes, data_dir=data_dir, device=device, seeds=seeds, val_split=val_split,
                        model_args=model_args, skip=skip, compress=compress)
    if not report_only:
        with directory_lock(out):  # one reproduction per --out at a time
            run_configs(unique_configs(plan), jobs=jobs)
    sections = []
    for n, cfgs in plan.items():
        exp = EXPERIMENTS[n]
        groups: dict[str, Group] = {}
        for (label, recipe, _), cfg in cfgs.items():
            groups.setdefault(recipe, {}).setdefault(label, []).append(cfg)
        sections.append(write_report(exp, groups, out, quick=quick, val_split=val_split))
    report = out / "report.md"
    atomic_write_bytes(report, (_header() + "\n".join(sections)).encode())
    return report
