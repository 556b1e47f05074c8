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

from zoo.checkpoint import atomic_write_bytes
from zoo.errors import ZooError
from zoo.plots import curves_png
from zoo.train import STATE_FILE, TrainConfig, prepare_data, train

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
               quick: bool = False) -> str:
        """What makes the run what it is; seed 0 under the paper's protocol keeps the plain id of the first runs."""
        parts = [self.dataset, recipe, self.arch]
        parts += [f"{k}={v}" for k, v in sorted({**(model_args or {}), **self.model_kwargs}.items())]
        parts += [f"{k}={v}" for k, v in sorted(self.recipe_overrides.items())]
        parts += [f"val{val_split}"] * bool(val_split) + [f"seed{seed}"] * bool(seed) + ["quick"] * quick
        return "-".join(str(p).lower() for p in parts)


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    runs: tuple[Run, ...]
    recipes: tuple[str, ...] = ("paper", "fast")
    paper_notes: tuple[str, ...] = ()


def _three(dataset: str) -> tuple[Run, ...]:
    return (Run("VGG19", "vgg19", dataset), Run("ResNet18", "resnet18", dataset), Run("GoogLeNet", "googlenet", dataset))


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in [
        Experiment(
            "fig5", "Figure 5: VGG19, ResNet18 and GoogLeNet on MNIST", _three("mnist"),
            paper_notes=("\"ResNet achieves a test error of just 1.82% after the first epoch.\"",
                         "\"both networks [ResNet, GoogLeNet] achieve a similar final performance\""),
        ),
        Experiment(
            "fig6", "Figure 6: VGG19, ResNet18 and GoogLeNet on CIFAR-10", _three("cifar10"),
            paper_notes=("\"VGG stabilising after 70 epochs, GoogLeNet on it's 81st and ResNet [...] on it's 9th epoch\"",
                         "\"a 10.73% gap in test error between the models\" (GoogLeNet better than ResNet18)"),
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
        ),
        Experiment(
            "aux", "GoogLeNet with and without auxiliary classifiers, CIFAR-10",
            (
                Run("with aux", "googlenet", "cifar10", paper_err=PAPER_AUX["with aux"]),
                Run("without aux", "googlenet", "cifar10", {"aux_logits": False}, paper_err=PAPER_AUX["without aux"]),
            ),
            paper_notes=("\"There is scant difference between how well the networks converge during training\"",),
        ),
        Experiment(
            "vgg-patience", "VGG19 plateau patience sweep (the paper does not name the dataset; run on CIFAR-10)",
            tuple(
                Run(f"patience {p}", "vgg19", "cifar10", recipe_overrides={"plateau_patience": p}, paper_err=err, paper_epoch=ep)
                for p, (_, err, ep) in PAPER_PATIENCE.items()
            ),
            recipes=("paper",),
            paper_notes=("\"a higher patience resulted in better overall performance\"",),
        ),
    ]
}

# --quick: the whole pipeline on a few synthetic images, on the CPU; checks the machinery, not the numbers.
# VGG's ImageNet head (120M FC parameters, a 1.1 GB resume state per epoch) is swapped for its CIFAR head.
QUICK = dict(synthetic=4, test_subset=4, epochs=1, batch_size=4, device="cpu")
QUICK_VGG_KWARGS = {"head": "cifar"}
QUICK_VAL_SPLIT = 4
DEFAULT_VAL_SPLIT = 5000  # training images held out to select epochs and steer plateaus; 0 is the paper's protocol


def _config(run: Run, recipe: str, out: Path, *, quick: bool, epochs: int | None, data_dir: str | None, device: str,
            seed: int = 0, val_split: int = 0, model_args: dict[str, Any] | None = None) -> TrainConfig:
    extra: dict[str, Any] = dict(QUICK) if quick else {"epochs": epochs, "device": device}
    model_kwargs = {**(model_args or {}), **run.model_kwargs}
    if quick and run.arch.startswith("vgg"):
        model_kwargs.update(QUICK_VGG_KWARGS)
    if quick and val_split:
        val_split = QUICK_VAL_SPLIT
    run_id = run.run_id(recipe, model_args, val_split=val_split, seed=seed, quick=quick)
    return TrainConfig(
        arch=run.arch, dataset=run.dataset, recipe=recipe, out=str(out / "runs" / run_id),
        model_kwargs=model_kwargs, recipe_overrides=dict(run.recipe_overrides), data_dir=data_dir,
        seed=seed, val_split=val_split, progress=False, **extra,
    )


def _status(cfg: TrainConfig) -> str:
    out = Path(cfg.out)
    if (out / "model" / "model.safetensors").exists():
        return "done"
    return "resume" if (out / STATE_FILE).exists() else "new"


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
            train(TrainConfig(**{**cfg.__dict__, "resume": _status(cfg) == "resume"}), data=datasets[key])
        return
    queue, running, failed = list(todo), [], []
    while queue or running:
        while queue and len(running) < jobs:
            cfg = queue.pop(0)
            Path(cfg.out).mkdir(parents=True, exist_ok=True)
            print(f"[reproduce] {Path(cfg.out).name}", flush=True)
            with open(Path(cfg.out) / "train.log", "ab") as log:
                proc = subprocess.Popen([sys.executable, "-m", "zoo.cli", *_cli_args(cfg)], stdout=log, stderr=log)
            running.append((proc, cfg))
        time.sleep(0.5)
        for proc, cfg in [(p, c) for p, c in running if p.poll() is not None]:
            running.remove((proc, cfg))
            if proc.returncode:
                failed.append(f"{Path(cfg.out).name} (exit {proc.returncode}, see {cfg.out}/train.log)")
    if failed:
        raise ZooError(f"runs failed: {'; '.join(failed)}")


def _history(cfg: TrainConfig) -> list[dict[str, Any]]:
    path = Path(cfg.out) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _cell(history: list[dict[str, Any]]) -> str:
    if not history:
        return "not run"
    best = min(history, key=lambda r: r["test_err"])
    return f"{best['test_err']:.2f} (epoch {best['epoch']}/{history[-1]['epoch']}, {history[-1]['train_seconds']:.0f} s)"


def _first(configs: dict[tuple[str, str, int], TrainConfig], label: str, recipe: str) -> TrainConfig:
    return next(c for (lab, rec, _), c in configs.items() if (lab, rec) == (label, recipe))


def write_report(exp: Experiment, configs: dict[tuple[str, str, int], TrainConfig], out: Path, quick: bool) -> str:
    """The experiment's markdown section; curves go beside it as PNGs."""
    lines = [f"## {exp.name}: {exp.title}", ""]
    if quick:
        lines += ["*--quick run: a few synthetic images on the CPU. It checks the machinery; the numbers mean nothing.*", ""]
    header = ["run", "paper: best top-1 error %"] + [f"ours, {r} recipe: best error % (epoch, train time)" for r in exp.recipes]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in exp.runs:
        paper = "-" if run.paper_err is None else f"{run.paper_err:.2f}" + (f" (epoch {run.paper_epoch})" if run.paper_epoch else "")
        cells = [_cell(_history(_first(configs, run.label, r))) for r in exp.recipes]
        lines.append("| " + " | ".join([run.label, paper, *cells]) + " |")
    lines.append("")
    for recipe in exp.recipes:
        png = f"{exp.name}-{recipe}.png"
        curves = {run.label: _history(_first(configs, run.label, recipe)) for run in exp.runs}
        if not any(curves.values()):
            continue
        atomic_write_bytes(out / png, curves_png(curves, f"{exp.title} ({recipe} recipe)"))
        lines.append(f"![{exp.name} {recipe}]({png})")
    lines.append("")
    lines.append(
        "Recipes: `paper` is the paper's section 2.2 table for each family with the paper's configuration "
        "(torchvision stems and heads at 32x32); `fast` is ours (CIFAR stem/head, warmup + linear decay, "
        "Nesterov, label smoothing, batch 512, flip-averaged evaluation). See zoo/recipes.py. "
        "Each run's metrics.jsonl, run.json and card are in `runs/` beside this report."
    )
    if exp.paper_notes:
        lines += ["", "The paper says: " + " ".join(exp.paper_notes)]
    return "\n".join(lines) + "\n"


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
    names = [names] if isinstance(names, str) else list(names)
    names = list(EXPERIMENTS) if "all" in names else names
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise ZooError(f"unknown experiment {unknown[0]!r}; choose one of {', '.join(EXPERIMENTS)} or all")
    out = Path(out)
    plan: dict[str, dict[tuple[str, str], TrainConfig]] = {}
    for n in names:
        exp = EXPERIMENTS[n]
        chosen = [r for r in exp.recipes if recipes is None or r in recipes]
        plan[n] = {
            (run.label, r, seed): _config(run, r, out, quick=quick, epochs=epochs, data_dir=data_dir, device=device,
                                          seed=seed, val_split=val_split, model_args=model_args)
            for run in exp.runs for r in chosen for seed in seeds
        }
    if not report_only:
        unique = {c.out: c for cfgs in plan.values() for c in cfgs.values()}
        run_configs(list(unique.values()), jobs=jobs)
    sections = []
    for n, cfgs in plan.items():
        exp = EXPERIMENTS[n]
        shown = Experiment(exp.name, exp.title, exp.runs, tuple(r for r in exp.recipes if recipes is None or r in recipes), exp.paper_notes)
        sections.append(write_report(shown, cfgs, out, quick))
    report = out / "report.md"
    atomic_write_bytes(report, ("# Reproducing \"Deeper Networks for Image Classification\"\n\n" + "\n".join(sections)).encode())
    return report
