"""The paper's experiments as data, runnable, with a report beside the paper's numbers.

Each experiment is a list of runs; each run is trained with the paper's
recipe (the paper's configuration: torchvision stems and heads) and with our
``fast`` recipe (CIFAR stem/head). Runs live in ``OUT/runs/<run id>`` where the
id says everything that makes the run what it is, so experiments share runs
(fig7's plain GoogLeNet is aux's "with aux"), a finished run is skipped and an
interrupted one resumed.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.fx
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from zoo.core.errors import ArgumentError, RunStopped, TrainingError
from zoo.core.files import atomic_write_bytes, check_writable
from zoo.core.plots import curves_png
from zoo.data.datasets import get_spec
from zoo.data.loading import PAPER_CROP_SCALE, PAPER_JITTER, PAPER_ROTATION_DEG, find_npz
from zoo.hub.rundir import RunDir, RunRecord, directory_lock
from zoo.models.registry import build_model, meta_model, model_class, model_info
from zoo.paper import verdicts
from zoo.paper.verdicts import summarize
from zoo.train.loop import TrainConfig, prepare_data, resolve_device, train
from zoo.train.recipes import get_recipe

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
        """What makes the run what it is (``recipe_overrides``: those that differ from the recipe's defaults, so
        equal configurations of two experiments share one id); seed 0 under the paper's protocol keeps the plain
        id of the first runs."""
        parts = [self.dataset, recipe, self.arch]
        parts += [f"{k}={v}" for k, v in sorted({**(model_args or {}), **self.model_kwargs}.items())]
        parts += [f"{k}={v}" for k, v in sorted((recipe_overrides or {}).items())]
        parts += [f"val{val_split}"] * bool(val_split) + [f"seed{seed}"] * bool(seed) + ["quick"] * quick
        return "-".join(str(p).lower() for p in parts)


Side = str | tuple[str, ...]  # a run label, or several


@dataclass(frozen=True)
class Claim:
    """One of the paper's claims, declared here before the runs that test it, checked by zoo.paper.verdicts.

    ``kind``: "better" (run ``a``'s metric is below run ``b``'s), "similar" (``a`` and ``b`` within
    ``margin`` points of each other), "gap" (``a`` - ``b`` within ``margin`` of the paper's ``value``),
    "near" (``a`` within ``margin`` points of the paper's ``value``) or "at_most" (``a``'s metric is at most
    ``value``). ``metric`` is one of :data:`METRICS`. A side of several runs is read by ``combine``: "each"
    (the claim holds against every one of them: zoo.paper.verdicts.all_of) or "sum" (the per-seed sum of their values:
    a linear contrast, e.g. one effect against another). ``horizon``: "end" for a claim about the end of the
    paper's training (its best or final error), which a run shorter than the paper's recipe cannot test;
    "early" for one about the first epochs. ``effect``: the paper's effect in the metric's units where the
    paper states one that its runs' numbers do not give (the power plan's target).
    """

    text: str
    kind: str
    a: Side
    b: Side | None = None
    metric: str = "selected"
    value: float | None = None
    margin: float | None = None
    paper: str = ""
    horizon: str = "end"
    combine: str = "each"
    effect: float | None = None

    @property
    def sides(self) -> tuple[tuple[str, ...], ...]:
        return tuple(_labels(side) for side in (self.a, self.b) if side is not None)

    @property
    def labels(self) -> tuple[str, ...]:
        """Every run the claim reads, once, in order."""
        return tuple(dict.fromkeys(label for side in self.sides for label in side))

    def needed(self, value: float | None, name: str) -> float:
        """``value``, the field ``name`` of this claim, which its kind needs (the others leave it None)."""
        if value is None:
            raise ArgumentError(f"claim {self.text!r}: a {self.kind!r} claim needs its {name}; declare it")
        return value


def _labels(side: Side) -> tuple[str, ...]:
    return (side,) if isinstance(side, str) else side


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    runs: tuple[Run, ...]
    recipes: tuple[str, ...] = ("paper", "fast")
    paper_notes: tuple[str, ...] = ()
    claims: tuple[Claim, ...] = ()
    early_epochs: int = 5  # the "early" metric: mean validation error over epochs 1..early_epochs


RESIDUAL_3X3_EARLY = Claim("residuals converge faster (3x3)", "better", "3x3, residuals", "3x3, no residuals",
                           metric="early", paper="\"both variants with residuals converge much faster\"", horizon="early")
"""The paper's own contribution, tested in fig7 and, confirmatory and pre-registered, in fig7-early."""
GOOGLENET_3X3 = (
    Run("3x3, no residuals", "googlenet", "cifar10", paper_err=PAPER_FIG7["googlenet"]),
    Run("3x3, residuals", "googlenet_res3x3", "cifar10", paper_err=PAPER_FIG7["googlenet_res3x3"]),
)
FIG7_EARLY_DESIGN = dict(recipe="paper", seeds=10, epochs=5, val_split=5000, device="cpu")
"""fig7-early's design, fixed before its runs (reports/cpu-fig7-early/README.md): the paper recipe's first 5
epochs exactly (its step schedule holds lr 0.1 for 8), 10 seeds per side paired by seed, 5,000 held-out training
images per seed; the one claim is judged alone (a family of one), two-sided at alpha 0.05."""


@dataclass(frozen=True)
class Preregistration:
    """Claims and a design declared before the runs that test them: their verdicts are confirmatory on runs of
    that design (recipe, seeds 0..n-1, epochs, validation split), exploratory on any other."""

    design: dict[str, Any]
    claims: tuple[str, ...]
    record: str

    def matches(self, recipe: str, cfgs: list[TrainConfig], epochs_run: int) -> bool:
        d = self.design
        return (recipe == d["recipe"] and epochs_run == d["epochs"] and {c.seed for c in cfgs} == set(range(d["seeds"]))
                and all(c.val_split == d["val_split"] for c in cfgs))


PREREGISTERED = {
    "fig5": Preregistration(dict(recipe="paper", seeds=5, epochs=3, val_split=5000, device="cpu"),
                            ("ResNet18 converges faster than GoogLeNet", "ResNet18's test error after epoch 1 is about 1.82%",
                             "ResNet18 and GoogLeNet reach a similar final performance"),
                            "reports/cpu-fig5/README.md, commit f91c47a"),
    "fig7-early": Preregistration(FIG7_EARLY_DESIGN, (RESIDUAL_3X3_EARLY.text,), "reports/cpu-fig7-early/README.md, commit d1f6197"),
}


@dataclass(frozen=True)
class PooledSd:
    """One run's seed standard deviation of a metric, pooled over groups of runs that differ only in their seed."""

    sd: float
    df: int
    source: str


POOLED_SD = {
    **{("cifar10", m): PooledSd(sd, 10, "reports/h100/runs: 5 GoogLeNet variants x 3 seeds, fast recipe, 10 epochs")
       for m, sd in (("final", 1.639), ("selected", 1.639), ("best", 1.639), ("epoch1", 5.440), ("early", 3.261),
                     ("stable", 0.365))},
    **{("mnist", m): PooledSd(sd, df, "reports/cpu-fig5/runs: ResNet18 and GoogLeNet x 5 seeds, paper recipe, 3 epochs")
       for m, sd, df in (("final", 0.768, 8), ("selected", 0.229, 8), ("best", 0.229, 8), ("epoch1", 0.989, 8),
                         ("early", 0.300, 8), ("stable", 0.528, 7))},
}
"""The power plan's and the report's seed sds (tests/test_reproduce.py recomputes them from the records). Both
come from short runs: the seed sd at the end of the paper's training is likely smaller."""


def _three(dataset: str) -> tuple[Run, ...]:
    return (Run("VGG19", "vgg19", dataset), Run("ResNet18", "resnet18", dataset), Run("GoogLeNet", "googlenet", dataset))


def _fastest(paper: str) -> tuple[Claim, ...]:
    return tuple(
        Claim(f"ResNet18 converges faster than {other}", "better", "ResNet18", other, metric="early", paper=paper,
              horizon="early")
        for other in ("VGG19", "GoogLeNet")
    )


def _near_paper(runs: tuple[Run, ...], margin: float, metric: str = "best") -> tuple[Claim, ...]:
    """Each run's best error against the paper's table (the paper's metric: its best test error over epochs)."""
    return tuple(Claim(f"{r.label}: best error about {r.paper_err:.2f}%", "near", r.label, metric=metric,
                       value=r.paper_err, margin=margin, paper=f"{r.paper_err:.2f}% (table)") for r in runs)


SLOW_TO_STABLE = 10.0  # epochs: the margin of the paper's stabilisation epochs (9, 81, "after 70")
FIG7_RUNS = (
    GOOGLENET_3X3[0],
    Run("5x5, no residuals", "googlenet_5x5", "cifar10", paper_err=PAPER_FIG7["googlenet_5x5"]),
    GOOGLENET_3X3[1],
    Run("5x5, residuals", "googlenet_res5x5", "cifar10", paper_err=PAPER_FIG7["googlenet_res5x5"], paper_epoch=158),
)
AUX_RUNS = (
    Run("with aux", "googlenet", "cifar10", paper_err=PAPER_AUX["with aux"]),
    Run("without aux", "googlenet", "cifar10", {"aux_logits": False}, paper_err=PAPER_AUX["without aux"]),
    Run("3x3, residuals", "googlenet_res3x3", "cifar10", paper_err=PAPER_FIG7["googlenet_res3x3"]),
)
LOW_MOMENTUM = 0.5  # "Lowering the momentum made this effect more pronounced": the paper gives no value
PATIENCE_RUNS = tuple(
    Run(f"patience {p}", "vgg19", "cifar10", recipe_overrides={"plateau_patience": p}, paper_err=err, paper_epoch=ep)
    for p, (_, err, ep) in PAPER_PATIENCE.items()
) + tuple(
    Run(f"patience {p}, momentum {LOW_MOMENTUM}", "vgg19", "cifar10",
        recipe_overrides={"plateau_patience": p, "momentum": LOW_MOMENTUM}) for p in (0, 10)
)


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in [
        Experiment(
            "fig5", "Figure 5: VGG19, ResNet18 and GoogLeNet on MNIST", _three("mnist"),
            paper_notes=("\"ResNet achieves a test error of just 1.82% after the first epoch.\"",
                         "\"both networks [ResNet, GoogLeNet] achieve a similar final performance\""),
            claims=(
                Claim("ResNet18 converges faster than VGG19", "better", "ResNet18", "VGG19", metric="early",
                      horizon="early", paper="\"The difference in convergence speed between VGG and the other models\""),
                Claim("ResNet18 converges faster than GoogLeNet", "better", "ResNet18", "GoogLeNet", metric="early",
                      horizon="early", paper="\"residual nets are able to converge much faster\""),
                Claim("GoogLeNet converges faster than VGG19", "better", "GoogLeNet", "VGG19", metric="early",
                      horizon="early", paper="\"The difference in convergence speed between VGG and the other models\""),
                Claim("ResNet18's error is below VGG19's from the first epoch", "better", "ResNet18", "VGG19",
                      metric="epoch1", horizon="early", paper="figure 5: ResNet18 is lowest from the first epoch"),
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
                Claim("GoogLeNet beats ResNet18", "better", "GoogLeNet", "ResNet18", paper="a 10.73-point gap",
                      effect=10.73),
                Claim("ResNet18's error is about 10.73 points above GoogLeNet's", "gap", "ResNet18", "GoogLeNet",
                      value=10.73, margin=2.0, paper="\"a 10.73% gap in test error between the models\""),
                Claim("ResNet18 stabilises before GoogLeNet", "better", "ResNet18", "GoogLeNet", metric="stable",
                      paper="epoch 9 vs epoch 81", effect=72.0),
                Claim("ResNet18 stabilises before VGG19", "better", "ResNet18", "VGG19", metric="stable",
                      paper="epoch 9 vs after epoch 70", effect=61.0),
                Claim("VGG19 stabilises before GoogLeNet", "better", "VGG19", "GoogLeNet", metric="stable",
                      paper="after epoch 70 vs epoch 81", effect=11.0),
            ) + tuple(
                Claim(f"{label} stabilises at about epoch {epoch}", "near", label, metric="stable", value=float(epoch),
                      margin=SLOW_TO_STABLE, paper=quote)
                for label, epoch, quote in (("ResNet18", 9, "\"on it's 9th epoch\""), ("GoogLeNet", 81, "\"on it's 81st\""),
                                            ("VGG19", 70, "\"VGG stabilising after 70 epochs\""))
            ) + (
                Claim("GoogLeNet's train-test gap stays constant after it stabilises (within 1 point)", "near",
                      "GoogLeNet", metric="gap_growth", value=0.0, margin=1.0,
                      paper="\"the difference between the test and train error in GoogLeNet is constant after convergence\""),
                Claim("ResNet18's train-test gap grows more than GoogLeNet's after they stabilise", "better",
                      "GoogLeNet", "ResNet18", metric="gap_growth",
                      paper="\"in ResNet the train error continues to fall while the test error remains constant\""),
            ),
        ),
        Experiment(
            "fig6-vs-fig5", "All three take longer to converge on CIFAR-10 than on MNIST",
            tuple(dataclasses.replace(r, label=f"{r.label}, {name}")
                  for name, dataset in (("MNIST", "mnist"), ("CIFAR-10", "cifar10")) for r in _three(dataset)),
            claims=tuple(
                Claim(f"{m} stabilises later on CIFAR-10 than on MNIST", "better", f"{m}, MNIST", f"{m}, CIFAR-10",
                      metric="stable", paper="\"All three take longer to converge\"")
                for m in ("VGG19", "ResNet18", "GoogLeNet")
            ),
        ),
        Experiment(
            "fig7", "Figure 7: GoogLeNet 3x3 vs 5x5, plain vs residual, CIFAR-10", FIG7_RUNS,
            paper_notes=("\"both variants with residuals converge much faster\"",),
            claims=(
                Claim("true 5x5 beats 3x3 (no residuals)", "better", "5x5, no residuals", "3x3, no residuals", paper="14.33 vs 14.56"),
                Claim("true 5x5 beats 3x3 (residuals)", "better", "5x5, residuals", "3x3, residuals", paper="13.39 vs 13.73"),
                Claim("residuals beat plain (3x3)", "better", "3x3, residuals", "3x3, no residuals", paper="13.73 vs 14.56"),
                Claim("residuals beat plain (5x5)", "better", "5x5, residuals", "5x5, no residuals", paper="13.39 vs 14.33"),
                Claim("3x3 with residuals beats 5x5 without", "better", "3x3, residuals", "5x5, no residuals",
                      paper="13.73 vs 14.33: the residual 3x3 beats both plain variants"),
                RESIDUAL_3X3_EARLY,
                Claim("residuals converge faster (5x5)", "better", "5x5, residuals", "5x5, no residuals",
                      metric="early", paper="\"converge much faster\"", horizon="early"),
                Claim("5x5 (residuals) converges more slowly than the other variants", "better",
                      ("3x3, no residuals", "5x5, no residuals", "3x3, residuals"), "5x5, residuals", metric="early",
                      horizon="early", paper="\"taking significantly longer to converge than the other variants\""),
                Claim("5x5 with residuals is the best variant", "better", "5x5, residuals",
                      ("3x3, no residuals", "5x5, no residuals", "3x3, residuals"),
                      paper="13.39, the lowest of the table: \"the 5x5 variant with residuals is the best performing\""),
            ) + _near_paper(FIG7_RUNS, 1.0),
        ),
        Experiment(
            "fig7-early", "Residual Inception modules converge faster: GoogLeNet 3x3 plain vs residual, CIFAR-10, "
            "pre-registered (confirmatory)", GOOGLENET_3X3, recipes=("paper",),
            paper_notes=("\"both variants with residuals converge much faster\"",
                         "Design fixed before the runs: " + ", ".join(f"{k} {v}" for k, v in FIG7_EARLY_DESIGN.items())),
            claims=(RESIDUAL_3X3_EARLY,),
        ),
        Experiment(
            "aux", "GoogLeNet with and without auxiliary classifiers, CIFAR-10", AUX_RUNS,
            paper_notes=("\"There is scant difference between how well the networks converge during training\"",),
            claims=(
                Claim("aux heads make scant difference to convergence (within 1 point)", "similar", "with aux",
                      "without aux", metric="early", margin=1.0, horizon="early",
                      paper="\"scant difference between how well the networks converge during training\""),
                Claim("with and without aux heads reach a similar best error (within 1 point)", "similar", "with aux",
                      "without aux", margin=1.0, paper="14.56 vs 14.69: \"a difference of only 0.13%\""),
                Claim("identity mapping lowers the error more than aux heads do", "better",
                      ("3x3, residuals", "without aux"), ("with aux", "with aux"), combine="sum",
                      paper="13.73 vs 14.56 for residuals, 14.56 vs 14.69 for aux heads: \"a much larger impact on "
                            "convergence and performance than adding auxiliary classifiers\"", effect=0.70),
            ) + _near_paper(AUX_RUNS[:2], 1.0),
        ),
        Experiment(
            "vgg-patience", "VGG19 plateau patience sweep (the paper does not name the dataset; run on CIFAR-10)",
            PATIENCE_RUNS, recipes=("paper",),
            paper_notes=("\"a higher patience resulted in better overall performance\"",
                         f"\"Lowering the momentum made this effect more pronounced\" (the paper gives no value; "
                         f"{LOW_MOMENTUM} here)"),
            claims=tuple(
                Claim(f"patience {hi} beats patience {lo}", "better", f"patience {hi}", f"patience {lo}",
                      paper=f"{PAPER_PATIENCE[hi][1]} vs {PAPER_PATIENCE[lo][1]}")
                for lo, hi in ((0, 1), (1, 5), (5, 10))
            ) + (
                Claim("patience 15 and 10 are similar (within 0.5 points)", "similar", "patience 15", "patience 10",
                      margin=0.5, paper=f"{PAPER_PATIENCE[15][1]} vs {PAPER_PATIENCE[10][1]}: no gain past 10"),
                Claim(f"lowering the momentum to {LOW_MOMENTUM} enlarges patience 10's gain over patience 0", "better",
                      (f"patience 10, momentum {LOW_MOMENTUM}", "patience 0"),
                      (f"patience 0, momentum {LOW_MOMENTUM}", "patience 10"), combine="sum",
                      paper="\"Lowering the momentum made this effect more pronounced\""),
            ) + _near_paper(PATIENCE_RUNS[:5], 1.0) + tuple(
                Claim(f"patience {p}: best error at about epoch {ep}", "near", f"patience {p}", metric="best_epoch",
                      value=float(ep), margin=SLOW_TO_STABLE, paper=f"epoch {ep} (table)")
                for p, (_, _, ep) in PAPER_PATIENCE.items()
            ) + tuple(
                Claim(f"patience {p}: lr at the best epoch about {lr:g}", "near", f"patience {p}", metric="log_lr_at_best",
                      value=math.log10(lr), margin=0.5, paper=f"{lr:g} (table; compared as log10, within half a decade)")
                for p, (lr, _, _) in PAPER_PATIENCE.items()
            ),
        ),
    ]
}

# --------------------------------------------------------------------------- the paper's size and cost figures

Quantity = tuple[str, dict[str, Any], str]  # (arch, kwargs, one of MEASURES), at 3x224x224


@dataclass(frozen=True)
class Fact:
    """A number the paper states about a model's size or cost, computed from our model (at the ImageNet input
    the figures are for), never trained. ``relation``: "about" (within ``tolerance``, relative, of ``rhs``),
    "equal", "less" or "more" (than another quantity). With ``over``, the quantity is the ratio lhs / over."""

    text: str
    paper: str
    lhs: Quantity
    relation: str
    rhs: float | Quantity
    tolerance: float = 0.2
    over: Quantity | None = None


IMAGENET_INPUT = (3, 224, 224)


def _weight_layers(model: nn.Module) -> int:
    """Weight layers (convolutions and fully connected layers) on the longest path through the model: the count
    the paper's "19 / 22 / 18 weight layers" and "8x more weight layers" use (a parallel branch counts once)."""
    graph, modules = torch.fx.symbolic_trace(model).graph, dict(model.named_modules())
    depth: dict[torch.fx.Node, int] = {}
    for node in graph.nodes:
        weighted = node.op == "call_module" and isinstance(modules[node.target], (nn.Conv2d, nn.Linear))
        depth[node] = max((depth[n] for n in node.all_input_nodes), default=0) + weighted
    return max(depth.values())


def _training_macs(arch: str, kwargs: dict[str, Any]) -> int:
    """Multiply-adds of one training-mode forward pass (auxiliary heads included), on the meta device."""
    with torch.device("meta"):
        model = build_model(arch, **kwargs).train()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad(), torch.device("meta"):
        model(torch.empty(2, *IMAGENET_INPUT))  # batch 2: batch norm in training mode needs more than one value
    return counter.get_total_flops() // 4  # per image, MACs = FLOPs / 2


def _inception_5x5_macs(arch: str, kwargs: dict[str, Any], reduced: bool) -> int:
    """Multiply-adds of inception 3a's 5x5 branch per image, with its 1x1 reduction or as one 5x5 convolution on
    the module's whole input (the paper's "~120M to ~12M", Szegedy et al.'s example)."""
    model = meta_model(arch, **kwargs)
    shapes: dict[str, torch.Size] = {}
    with torch.device("meta"):
        hook = model.get_submodule("inception3a").register_forward_hook(lambda m, args, out: shapes.update(x=args[0].shape))
        try:
            model(torch.empty(1, *IMAGENET_INPUT))
        finally:
            hook.remove()
    _, channels, height, width = shapes["x"]
    reduce, conv = [m for m in model.get_submodule("inception3a.branch3").modules() if isinstance(m, nn.Conv2d)]
    taps = conv.kernel_size[0] * conv.kernel_size[1]
    if reduced:
        return height * width * (reduce.out_channels * channels + conv.out_channels * taps * reduce.out_channels)
    return height * width * conv.out_channels * taps * channels


MEASURES = {
    "params": lambda arch, kw: model_info(arch, input_size=IMAGENET_INPUT, **kw)["params"],
    "macs": lambda arch, kw: model_info(arch, input_size=IMAGENET_INPUT, **kw)["macs"],
    "flops": lambda arch, kw: model_info(arch, input_size=IMAGENET_INPUT, **kw)["flops"],
    "fp32_bytes": lambda arch, kw: 4 * model_info(arch, input_size=IMAGENET_INPUT, **kw)["params"],
    "training_macs": _training_macs,
    "weight_layers": lambda arch, kw: _weight_layers(meta_model(arch, **kw)),
    "inception_modules": lambda arch, kw: sum(type(m).__name__ == "Inception" for m in meta_model(arch, **kw).modules()),
    "5x5_branch_macs": lambda arch, kw: _inception_5x5_macs(arch, kw, reduced=True),
    "5x5_branch_macs_unreduced": lambda arch, kw: _inception_5x5_macs(arch, kw, reduced=False),
}
"""What a fact can measure: parameters, MACs (multiply-adds, FLOPs / 2: convolutions and matrix products, eval
mode, zoo.model_info), FLOPs, the weights' size in fp32, MACs of a training-mode pass, weight layers on the
longest path, Inception modules, and the 5x5 branch of inception 3a with and without its 1x1 reduction."""

NO_AUX = {"aux_logits": False}
FACTS = (
    Fact("VGG19 has 144M parameters", "\"VGG19 has 144M learnt parameters\"", ("vgg19", {}, "params"), "about", 144e6, 0.05),
    Fact("VGG19's weights take about 1 GB", "\"storing the weights requires ~1GB of disk space\"",
         ("vgg19", {}, "fp32_bytes"), "about", 1e9),
    Fact("VGG19 needs about 40 G-ops", "\"inference requires approximately 40 G-ops\"", ("vgg19", {}, "flops"), "about", 40e9),
    Fact("VGG19 has 19 weight layers", "\"VGG19 consists of 19 weight layers\"", ("vgg19", {}, "weight_layers"), "equal", 19.0),
    Fact("ResNet18 has about 11M parameters", "\"just ~11M parameters\"", ("resnet18", {}, "params"), "about", 11e6),
    Fact("ResNet18 has about 10x fewer parameters than VGG19", "\"~11M parameters, a 10x improvement\"",
         ("vgg19", {}, "params"), "about", 10.0, over=("resnet18", {}, "params")),
    Fact("ResNet18 needs about 3 G-ops", "\"requires just ~3 G-ops\"", ("resnet18", {}, "flops"), "about", 3e9),
    Fact("ResNet18 has 18 weight layers", "\"ResNet18 has 18 weight layers\"", ("resnet18", {}, "weight_layers"), "equal", 18.0),
    Fact("ResNet152 needs about 22 G-ops", "\"152 layer variant uses ~22 G-ops\"", ("resnet152", {}, "flops"), "about", 22e9),
    Fact("ResNet152 needs about 1.8x fewer ops than VGG19", "\"~22 G-ops – 1.8x fewer than VGG19\"",
         ("vgg19", {}, "flops"), "about", 1.8, over=("resnet152", {}, "flops")),
    Fact("ResNet152 has about 8x the weight layers of VGG19", "\"while having 8x more weight layers\"",
         ("resnet152", {}, "weight_layers"), "about", 8.0, over=("vgg19", {}, "weight_layers")),
    Fact("GoogLeNet (10 classes, aux heads) has about 10M parameters", "\"a total of ~10M parameters\"",
         ("googlenet", {"num_classes": 10}, "params"), "about", 10e6),
    Fact("GoogLeNet stays within 1.5 billion multiply-adds", "\"a computational budget of 1.5 billion multiply-adds\"",
         ("googlenet", {}, "macs"), "about", 1.5e9, 0.05),
    Fact("GoogLeNet needs about 26x fewer operations than VGG19", "\"1.5 billion multiply-adds (approximately a 26x "
         "decrease compared to VGG19)\"; compared like with like, multiply-adds to multiply-adds",
         ("vgg19", {}, "macs"), "about", 26.0, over=("googlenet", {}, "macs")),
    Fact("GoogLeNet has 22 weight layers", "\"GoogLeNet consists of 22 weight layers\"",
         ("googlenet", {}, "weight_layers"), "equal", 22.0),
    Fact("GoogLeNet has 7 Inception modules", "\"The main body has 7 Inception modules\"",
         ("googlenet", {}, "inception_modules"), "equal", 7.0),
    Fact("a 1x1 reduction cuts a 5x5 branch from about 120M multiply-adds", "\"from ~120M to ~12M\"",
         ("googlenet_5x5", {}, "5x5_branch_macs_unreduced"), "about", 120e6),
    Fact("... to about 12M", "\"from ~120M to ~12M\"", ("googlenet_5x5", {}, "5x5_branch_macs"), "about", 12e6),
    Fact("GoogLeNet has fewer parameters than ResNet18 (10 classes)", "\"GoogLeNet has slightly fewer parameters\"",
         ("googlenet", {"num_classes": 10}, "params"), "less", ("resnet18", {"num_classes": 10}, "params")),
    Fact("auxiliary heads add parameters", "\"auxiliary classifiers should be removed to reduce the computational cost "
         "during training\"", ("googlenet", {}, "params"), "more", ("googlenet", NO_AUX, "params")),
    Fact("auxiliary heads add training compute", "\"to reduce the computational cost during training\"",
         ("googlenet", {}, "training_macs"), "more", ("googlenet", NO_AUX, "training_macs")),
    Fact("identity shortcuts add no parameters", "\"Identity mapping, which requires no additional parameters\"",
         ("googlenet_res3x3", {}, "params"), "equal", ("googlenet", {}, "params")),
    Fact("true 5x5 branches cost more compute", "\"the additional computational cost\"",
         ("googlenet_5x5", {}, "macs"), "more", ("googlenet", {}, "macs")),
)

OUT_OF_SCOPE = {
    "AlexNet's numbers (top-5 error 15.3% against 26.2%, 60 million parameters, 8 weighted layers, ~2.5 G-ops, "
    "LRN's 2%, ReLU's 35 against fewer than 10 epochs)": "cited from Krizhevsky et al., not the paper's own "
    "measurements, and AlexNet is not among zoo's models",
    "VGG's and ResNet's results on ImageNet (deeper is better; 34 against 18 layers)": "cited from Simonyan et al. "
    "and He et al.; the paper trained neither on ImageNet",
}
"""What the paper states that zoo does not test, and why (the report lists these)."""


def _quantity(q: Quantity) -> float:
    arch, kwargs, what = q
    return _measure(arch, json.dumps(kwargs, sort_keys=True), what)


@functools.lru_cache(maxsize=128)
def _measure(arch: str, kwargs_json: str, what: str) -> float:
    return float(MEASURES[what](arch, json.loads(kwargs_json)))


def _shown(x: float) -> str:
    return f"{x / 1e9:.2f} G" if x >= 1e9 else f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x:.3g}"


def check_fact(fact: Fact) -> tuple[str, str]:
    """(ours, "holds" or "differs") for one of the paper's size or cost figures."""
    ours = _quantity(fact.lhs)
    shown = _shown(ours)
    if fact.over is not None:
        below = _quantity(fact.over)
        ours, shown = ours / below, f"{ours / below:.2f}x ({shown} / {_shown(below)})"
    other = fact.rhs if isinstance(fact.rhs, float) else _quantity(fact.rhs)
    holds = {"about": abs(ours - other) <= fact.tolerance * other, "equal": ours == other,
             "less": ours < other, "more": ours > other}[fact.relation]
    if not isinstance(fact.rhs, float):
        shown += f" vs {_shown(other)}"
    return shown, "holds" if holds else "differs"


def facts_section() -> str:
    lines = ["## The paper's size and cost figures, computed", "",
             "Computed from zoo's models at 3x224x224 (`zoo.model_info`: parameters; MACs = multiply-adds, FLOPs = 2 x "
             "MACs, counting convolutions and matrix products; \"G-ops\" read as FLOPs; weight layers on the longest "
             "path; weights in fp32), not trained. \"about\" allows 20% (5% for the two precise figures).", "",
             "| the paper's figure | the paper | ours | check |", "|---|---|---|---|"]
    for fact in FACTS:
        ours, verdict = check_fact(fact)
        lines.append(f"| {fact.text} | {fact.paper} | {ours} | {verdict} |")
    lines += ["", "Not tested, and why:", "", *(f"- {what}: {why}" for what, why in OUT_OF_SCOPE.items())]
    return "\n".join(lines) + "\n\n"


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

# --quick: the whole pipeline on a few synthetic images, on the CPU, each family built with its quick_kwargs
# (VGG's CIFAR head); it checks the machinery, not the numbers, and keeps each run's records only (run.json and
# metrics.jsonl, all a report reads): no resume state and no finished model, 120 MB a GoogLeNet run.
QUICK = dict(synthetic=4, test_subset=4, epochs=1, batch_size=4, device="cpu", records_only=True)
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
    if quick:
        model_kwargs.update(model_class(run.arch).quick_kwargs)
    if quick and val_split:
        val_split = QUICK_VAL_SPLIT
    default = get_recipe(recipe, run.arch, run.dataset)  # overrides equal to it change nothing: the same run
    overrides = {k: v for k, v in run.recipe_overrides.items() if getattr(default, k) != v}
    full = get_recipe(recipe, run.arch, run.dataset, **overrides)
    if compress and full.schedule == "step" and epochs and epochs < full.epochs and not quick:
        overrides["compress_from"] = full.epochs
    run_id = run.run_id(recipe, model_args, val_split=val_split, seed=seed, quick=quick, recipe_overrides=overrides)
    return TrainConfig(
        arch=run.arch, dataset=run.dataset, recipe=recipe, out=str(out / "runs" / run_id),
        model_kwargs=model_kwargs, recipe_overrides=overrides, data_dir=data_dir,
        seed=seed, val_split=val_split, progress=False, **extra,
    )


def _status(cfg: TrainConfig) -> str:
    """The run directory's status; a run whose records hold all its epochs is done even without its weights and
    state (reports keep only run.json and metrics.jsonl, so a reproduction spanning sessions goes on from them)."""
    run_dir = RunDir(cfg.out)
    status = run_dir.status()
    if status == "new" and cfg.epochs and run_dir.run_json.exists() and len(run_dir.read_history()) >= cfg.epochs:
        return "done"
    return status


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
    flags = {"--compile": cfg.compile, "--records-only": cfg.records_only, "--resume": _status(cfg) == "resume"}
    return args + [flag for flag, on in flags.items() if on]


def check_runs(configs: list[TrainConfig]) -> None:
    """Refuse, before the first run starts and creating nothing, a plan some of whose runs could not start: the
    data a run reads (its npz where --data-dir or $ZOO_DATA_DIR says) missing, or an output it could not write."""
    for cfg in (c for c in configs if _status(c) != "done"):
        if not cfg.synthetic:
            find_npz(get_spec(cfg.dataset), cfg.data_dir)
        check_writable(RunDir(cfg.out).run_json)


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
    queue = list(todo)
    running: list[tuple[subprocess.Popen[bytes], TrainConfig]] = []
    failed: list[str] = []
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


def _run_record(cfg: TrainConfig) -> RunRecord | None:
    run_dir = RunDir(cfg.out)
    return run_dir.read_run() if run_dir.run_json.exists() else None


# --------------------------------------------------------------------------- metrics, declared before the runs

METRICS = ("final", "selected", "best", "epoch1", "early", "stable", "best_epoch", "log_lr_at_best", "gap_growth")
STABLE_BAND = 1.0
"""The "stable" metric: the first epoch from which every later epoch's error stays within this many points of
the run's lowest (the paper's "stabilising after 70 epochs", made a rule)."""


def run_metrics(history: list[dict[str, Any]], early_epochs: int = 5) -> dict[str, float]:
    """A run's numbers: test errors (%) of the final weights, at the reported epoch, the best over epochs and
    after epoch 1; "early", the mean validation error over epochs 1..``early_epochs`` (how fast a run
    converges, judged without the test set; absent without a validation split or with fewer epochs);
    "stable", the epoch the watched error stabilises at (:data:`STABLE_BAND`; absent when it has not);
    "best_epoch" and "log_lr_at_best", the epoch of the best test error and log10 of its learning rate (the
    paper's patience table); "gap_growth", how much the test-train error gap grew from the stable epoch to the
    last (absent when the run has not stabilised).

    The reported ("selected") epoch is the one with the lowest validation error when the run held out a
    validation split; without one (the paper's protocol) it is the one with the lowest test error, the
    paper's own metric, which is optimistic.
    """
    watch = "val_err" if "val_err" in history[0] else "test_err"
    errors = [r[watch] for r in history]
    metrics = {
        "final": history[-1]["test_err"],
        "selected": min(history, key=lambda r: r[watch])["test_err"],
        "best": min(r["test_err"] for r in history),
        "epoch1": history[0]["test_err"],
    }
    best = min(history, key=lambda r: r["test_err"])
    metrics.update(best_epoch=float(best["epoch"]), log_lr_at_best=math.log10(best["lr"]) if best["lr"] > 0 else math.nan)
    stable = [e for e in range(1, len(errors) + 1) if max(errors[e - 1:]) <= min(errors) + STABLE_BAND]
    if stable:  # absent when the last epoch itself strays from the lowest: the run has not stabilised
        metrics["stable"] = float(stable[0])
        gap = [r["test_err"] - r["train_err"] for r in history]
        metrics["gap_growth"] = gap[-1] - gap[stable[0] - 1]
    if watch == "val_err" and len(history) >= early_epochs:
        metrics["early"] = sum(r["val_err"] for r in history[:early_epochs]) / early_epochs
    return metrics


Group = dict[str, list[TrainConfig]]  # run label -> its configs, one per seed
Seeds = dict[str, dict[str, dict[int, float]]]  # run label -> metric -> seed -> value


def _per_seed(group: Group, early_epochs: int) -> Seeds:
    out: Seeds = {}
    for label, cfgs in group.items():
        out[label] = {k: {} for k in METRICS}
        for cfg in cfgs:
            if history := _history(cfg):
                for k, v in run_metrics(history, early_epochs).items():
                    out[label][k][cfg.seed] = v
    return out


# --------------------------------------------------------------------------- scope and verdicts


def _paper_epochs(cfg: TrainConfig) -> int:
    return get_recipe("paper", cfg.arch, cfg.dataset, **cfg.recipe_overrides).epochs


def compressed(cfg: TrainConfig) -> str:
    """How ``--epochs`` changed the run's schedule, not only its length ("" when it did not): a step schedule
    compressed on request, or a one-cycle schedule, whose linear decay to zero always ends at the last epoch."""
    if squeezed := cfg.recipe_overrides.get("compress_from"):
        return f"its step schedule was compressed from {squeezed} epochs"
    full = get_recipe(cfg.recipe_name, cfg.arch, cfg.dataset, **cfg.recipe_overrides)
    if full.schedule == "onecycle" and cfg.epochs and cfg.epochs != full.epochs:
        return f"its one-cycle schedule (lr {full.lr:g} down to zero) was squeezed from {full.epochs} epochs into {cfg.epochs}"
    return ""


def scope_problem(claim: Claim, runs: list[tuple[TrainConfig, int]], early_epochs: int) -> str | None:
    """Why ``runs`` (each config with the epochs it ran) cannot test ``claim``, or None. A claim about the end of the
    paper's training needs every run as long as the paper's recipe for it; one about early epochs needs its first
    epochs, exactly, and a validation split."""
    epochs_run = min(epochs for _, epochs in runs)
    if claim.horizon == "end":
        short = [(epochs, paper) for epochs, paper in ((e, _paper_epochs(c)) for c, e in runs) if epochs < paper]
        if short:
            epochs, paper = max(short, key=lambda t: t[1])
            return f"not comparable at {epochs} epochs (the paper's claim is at the end of {paper})"
        return None
    cfgs = [c for c, _ in runs]
    if squeezed := next(filter(None, map(compressed, cfgs)), ""):
        return f"not comparable: {squeezed}, so its first epochs are not the recipe's"
    if claim.metric == "early" and not all(c.val_split for c in cfgs):
        return "not measured: the early metric is a validation error, and these runs held out no validation split"
    if claim.metric == "early" and epochs_run < early_epochs:
        return f"not comparable: the metric needs {early_epochs} epochs, {epochs_run} were run"
    return None


def _summed(seeds: Seeds, side: tuple[str, ...], metric: str) -> dict[int, float]:
    """A side's per-seed sum over its runs (a run named twice counts twice), on the seeds all of them ran."""
    common = set.intersection(*(set(seeds[label][metric]) for label in side))
    return {s: sum(seeds[label][metric][s] for label in side) for s in sorted(common)}


def _pair_verdict(claim: Claim, a: dict[int, float], b: dict[int, float]) -> verdicts.Verdict:
    paired = bool(a) and set(a) == set(b)
    if claim.kind == "similar":
        return verdicts.similar(a, b, claim.needed(claim.margin, "margin"), paired=paired)
    if claim.kind == "gap":
        return verdicts.gap(a, b, claim.needed(claim.value, "value"), claim.needed(claim.margin, "margin"), paired=paired)
    return verdicts.better(a, b, paired=paired)


def claim_verdict(claim: Claim, seeds: Seeds) -> verdicts.Verdict:
    """The claim's test on the per-seed values; two sides on the same seeds are paired by seed."""
    if claim.kind in ("near", "at_most"):
        (label,) = _labels(claim.a)  # one run, against the paper's value
        a, value = seeds[label][claim.metric], claim.needed(claim.value, "value")
        return verdicts.near(a, value, claim.needed(claim.margin, "margin")) if claim.kind == "near" else verdicts.at_most(a, value)
    side_a, side_b = claim.sides
    if claim.combine == "sum":
        return _pair_verdict(claim, _summed(seeds, side_a, claim.metric), _summed(seeds, side_b, claim.metric))
    pairs = [_pair_verdict(claim, seeds[x][claim.metric], seeds[y][claim.metric]) for x in side_a for y in side_b]
    return pairs[0] if len(pairs) == 1 else verdicts.all_of(pairs)


def sd_factor(claim: Claim) -> float:
    """The tested per-seed quantity's sd in units of one run's seed sd, for independent runs (no credit for
    pairing): 1 for a claim about one run, sqrt(2) for a difference, the root of the summed squared weights for a
    contrast of sums."""
    if claim.kind in ("near", "at_most"):
        return 1.0
    if claim.combine == "sum":
        weights = [side.count(label) for side in claim.sides for label in set(side)]
        return math.sqrt(sum(w * w for w in weights))
    return math.sqrt(2)


@dataclass
class Section:
    """One experiment under one recipe: its runs, their per-seed metrics, and each claim's scope and test."""

    exp: Experiment
    recipe: str
    group: Group
    seeds: Seeds
    epochs_run: int
    problems: list[str | None]
    raw: list[verdicts.Verdict | None]
    decided: list[verdicts.Verdict | None] = field(default_factory=list)


def _section(exp: Experiment, recipe: str, group: Group) -> Section:
    seeds = _per_seed(group, exp.early_epochs)
    lengths = [len(h) for cfgs in group.values() for h in map(_history, cfgs) if h]
    epochs_run = min(lengths, default=0)
    problems: list[str | None] = []
    raw: list[verdicts.Verdict | None] = []
    for claim in exp.claims:
        sides = claim.labels
        if any(s not in group for s in sides):
            problems.append("not run (left out)")
            raw.append(None)
            continue
        runs = [(c, len(_history(c))) for side in sides for c in group[side]]
        problems.append(scope_problem(claim, runs, exp.early_epochs))
        raw.append(claim_verdict(claim, seeds))
    return Section(exp, recipe, group, seeds, epochs_run, problems, raw)


def decide_report(sections: list[Section]) -> None:
    """Holm's correction across every claim of the report that its runs can test (one family)."""
    testable = [(sec, i, v) for sec in sections for i, v in enumerate(sec.raw) if v is not None and sec.problems[i] is None]
    decided = verdicts.decide([v for _, _, v in testable])
    for sec in sections:
        sec.decided = [None] * len(sec.raw)
    for (sec, i, _), v in zip(testable, decided):
        sec.decided[i] = v


# --------------------------------------------------------------------------- the report


def _stale(cfg: TrainConfig) -> str:
    """Recipe fields whose value has changed in zoo/train/recipes.py since the run was trained (epochs aside)."""
    run = _run_record(cfg)
    then = run.recipe_config if run else {}
    now = get_recipe(cfg.recipe_name, cfg.arch, cfg.dataset, batch_size=cfg.batch_size, lr=cfg.lr, **cfg.recipe_overrides).to_dict()
    changed = [f"{k} {then[k]} -> {now[k]}" for k in now if k in then and k != "epochs" and then[k] != now[k]]
    return f" **stale: the {cfg.recipe} recipe changed since ({', '.join(changed)})**" if changed else ""


def _setting(cfgs: list[TrainConfig], protocol: str) -> str:
    """Recipe, epochs run against the paper's, seeds, machine, precision and code of one recipe's runs."""
    first = cfgs[0]
    runs = [r for r in map(_run_record, cfgs) if r]
    machines = sorted({r.machine or "not recorded" for r in runs})
    commits = sorted({(r.git_commit or "not recorded") + (" (corrected by hand: see run.json)" if r.corrections else "")
                      for r in runs})
    epochs_run = sorted({len(h) for h in map(_history, cfgs) if h})
    paper_epochs = sorted({_paper_epochs(c) for c in cfgs})
    kinds = {"not recorded" if m == "not recorded" else "fp32 (CPU)" if m.startswith("CPU") else "bf16 autocast (CUDA)" for m in machines}
    kwargs = {k: v for k, v in first.model_kwargs.items() if k != "aux_logits"}
    compressed = first.recipe_overrides.get("compress_from")
    miniature = f", its step schedule compressed from {compressed} epochs into the epochs run" if compressed else ""
    return (
        f"`{first.recipe}` recipe, model args `{kwargs}`; {protocol}; epochs run {'/'.join(map(str, epochs_run)) or '-'} "
        f"(the paper's recipe runs {'/'.join(map(str, paper_epochs))}{miniature}); seeds {sorted({c.seed for c in cfgs})}; "
        f"machine: {'; '.join(machines) or 'not run'}; precision: {', '.join(sorted(kinds))}; commit: {', '.join(commits)}."
    )


def _protocol(val_split: int) -> str:
    if val_split:
        return (f"validation protocol: {val_split:,} training images held out per seed select the reported epoch "
                "and steer plateau schedules")
    return "the paper's protocol: the test set selects the reported epoch and steers plateau schedules (optimistic)"


COLUMN_TITLES = {"final": "final test error %", "selected": "test error at the val-selected epoch %",
                 "best": "best test error % (the paper's metric)", "epoch1": "epoch-1 test error %"}


def _run_rows(sec: Section, columns: list[str]) -> list[str]:
    header = ["run", "paper: best top-1 error %", *(COLUMN_TITLES[c] for c in columns), "per seed: final"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in sec.exp.runs:
        if run.label not in sec.group:
            lines.append("| " + " | ".join([run.label, "-", *["-"] * len(columns), "left out"]) + " |")
            continue
        values, cfgs = sec.seeds[run.label], sec.group[run.label]
        paper = "-" if run.paper_err is None else f"{run.paper_err:.2f}" + (f" (epoch {run.paper_epoch})" if run.paper_epoch else "")
        final = [values["final"][c.seed] for c in cfgs if c.seed in values["final"]]
        cells = [run.label + (_stale(cfgs[0]) if final else ""), paper,
                 *(str(summarize(list(values[c].values()))) for c in columns),
                 ", ".join(f"{v:.2f}" for v in final) or "not run"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _values(sec: Section, side: tuple[str, ...], metric: str, joiner: str) -> str:
    if any(label not in sec.seeds for label in side):
        return "left out"
    cells = [str(summarize(list(sec.seeds[label][metric].values()))) for label in side]
    return joiner.join("-" if c == "not run" else c for c in cells)


def _standing(sec: Section, claim: Claim) -> str:
    """How the verdict stands: confirmatory when the claim and the design of these runs were declared before them
    (:data:`PREREGISTERED`), exploratory otherwise."""
    reg = PREREGISTERED.get(sec.exp.name)
    cfgs = [c for label in claim.labels for c in sec.group.get(label, [])]
    if reg and claim.text in reg.claims and reg.matches(sec.recipe, cfgs, sec.epochs_run):
        return f"confirmatory (pre-registered: {reg.record})"
    return "exploratory (not pre-registered)"


def _pooled_mde(sec: Section, claim: Claim, raw: verdicts.Verdict | None) -> str:
    dataset = sec.group[claim.labels[0]][0].dataset
    if raw is None or (pooled := POOLED_SD.get((dataset, claim.metric))) is None or math.isnan(raw.p):
        return ""
    return f"; MDE at the pooled seed sd: {verdicts.mde(pooled.sd * sd_factor(claim), min(raw.n), raw.kind):.2f}"


def _claim_rows(sec: Section) -> list[str]:
    lines = ["| the paper's claim | metric | scope | ours (mean ± sd) | the paper | verdict |", "|---|---|---|---|---|---|"]
    scope = f"`{sec.recipe}`, {sec.epochs_run} epochs"
    for claim, problem, raw, decided in zip(sec.exp.claims, sec.problems, sec.raw, sec.decided):
        joiner = " + " if claim.combine == "sum" else ", "
        ours = " vs ".join(_values(sec, side, claim.metric, joiner) for side in claim.sides)
        if problem is None:
            verdict = f"{_standing(sec, claim)}: {decided}{_pooled_mde(sec, claim, raw)}"
        elif raw is None or math.isnan(raw.effect):
            verdict = problem
        else:  # the statistics at this length, never a verdict on the paper's claim
            ci = raw.interval() if math.isfinite(raw.ci[0]) else f"(n={min(raw.n)})"
            verdict = f"{problem}; exploratory, at {sec.epochs_run} epochs: {raw.test}, d = {raw.effect:.2f} {ci}"
        lines.append(f"| {claim.text} | {claim.metric} | {scope} | {ours} | {claim.paper} | {verdict} |")
    return lines


def write_section(sec: Section, out: Path, *, quick: bool, val_split: int) -> list[str]:
    """One recipe's part of an experiment: setting, runs table, claims table, curves (PNG beside the report)."""
    lines = [f"### {sec.recipe} recipe", ""]
    if not any(_history(c) for cfgs in sec.group.values() for c in cfgs):
        return lines + ["Not run.", ""]
    cfgs = [c for group in sec.group.values() for c in group]
    columns = ["final"] + ["selected"] * bool(val_split) + ["best", "epoch1"]  # without a val split, selected is best
    lines += [_setting(cfgs, _protocol(val_split)), "", *_run_rows(sec, columns), "", *_claim_rows(sec)]
    png = f"{sec.exp.name}-{sec.recipe}.png"
    curves = {label: [h for h in map(_history, group) if h] for label, group in sec.group.items()}
    atomic_write_bytes(out / png, curves_png(curves, f"{sec.exp.title} ({sec.recipe} recipe)"))
    return lines + ["", f"![{sec.exp.name} {sec.recipe}]({png})", ""]


def write_experiment(exp: Experiment, sections: list[Section], out: Path, *, quick: bool, val_split: int) -> str:
    lines = [f"## {exp.name}: {exp.title}", ""]
    if quick:
        lines += ["*--quick run: a few synthetic images on the CPU. It checks the machinery; the numbers mean nothing.*", ""]
    for sec in sections:
        lines += write_section(sec, out, quick=quick, val_split=val_split)
    if exp.paper_notes:
        lines += ["The paper says: " + " ".join(exp.paper_notes), ""]
    return "\n".join(lines)


def _early_epochs() -> str:
    return ", ".join(f"{name}: {exp.early_epochs}" for name, exp in EXPERIMENTS.items())


def _header() -> str:
    unstated = "\n".join(f"- {k}: {v}" for k, v in UNSTATED.items())
    return (
        "# Reproducing \"Deeper Networks for Image Classification\"\n\n"
        "Recipes: `paper` is the paper's section 2.2 table for each family in the paper's configuration (torchvision "
        "stems and heads at 32x32); `fast` is ours (warmup + linear decay, Nesterov, label smoothing on CIFAR-10, "
        "batch 512, pad-4 crop + flip, flip-averaged evaluation; CIFAR stem/head unless the model args say "
        "otherwise). See zoo/train/recipes.py. Errors are top-1 test errors in percent, mean ± sd over seeds. "
        "Each run's metrics.jsonl and run.json are in `runs/` beside this report.\n\n"
        f"Verdicts: {verdicts.RULE}\n\n"
        f"Scope: a claim about the end of the paper's training (its best or final error) is tested only by runs as "
        f"long as the paper's; shorter runs read \"not comparable\" with their statistics beside. A claim about "
        f"convergence uses the \"early\" metric, the mean validation error over the first epochs ({_early_epochs()}), "
        f"declared in zoo/paper/reproduce.py before the runs, and needs those epochs exactly (no compressed "
        f"schedule). \"stable\" is the first epoch from which the watched error stays within {STABLE_BAND:g} point "
        f"of the run's lowest.\n\n"
        f"Settings the paper does not state, and the values used:\n\n{unstated}\n\n"
    )


def plan_configs(
    names: list[str], out: Path, *, quick: bool = False, epochs: int | None = None, recipes: tuple[str, ...] | None = None,
    data_dir: str | None = None, device: str = "auto", seeds: tuple[int, ...] = (0,), val_split: int = DEFAULT_VAL_SPLIT,
    model_args: dict[str, Any] | None = None, skip: tuple[str, ...] = (), compress: bool = False,
    dataset: str | None = None,
) -> dict[str, dict[tuple[str, str, int], TrainConfig]]:
    """Experiment name -> (run label, recipe, seed) -> the run's TrainConfig; runs whose label or
    arch is in ``skip`` are left out (the report says so); ``dataset`` runs every experiment on another
    registered dataset (the paper's experiment, on new data)."""
    if dataset is not None:
        get_spec(dataset)  # an unknown name is refused before any work
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
            for run in (dataclasses.replace(r, dataset=dataset) if dataset else r for r in exp.runs)
            if not {run.label.lower(), run.arch} & set(skip) for r in chosen for seed in seeds
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
    dataset: str | None = None,
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
    if not (quick or report_only):  # quick runs on the CPU; a report trains nothing
        resolve_device(device)
    plan = plan_configs([names] if isinstance(names, str) else list(names), out, quick=quick, epochs=epochs,
                        recipes=recipes, data_dir=data_dir, device=device, seeds=seeds, val_split=val_split,
                        model_args=model_args, skip=skip, compress=compress, dataset=dataset)
    if not report_only:
        check_runs(unique_configs(plan))
        with directory_lock(out):  # one reproduction per --out at a time
            run_configs(unique_configs(plan), jobs=jobs)
    by_exp: dict[str, list[Section]] = {}
    for n, cfgs in plan.items():
        groups: dict[str, Group] = {}
        for (label, recipe, _), cfg in cfgs.items():
            groups.setdefault(recipe, {}).setdefault(label, []).append(cfg)
        by_exp[n] = [_section(EXPERIMENTS[n], recipe, group) for recipe, group in groups.items()]
    decide_report([sec for secs in by_exp.values() for sec in secs])
    text = "\n".join(write_experiment(EXPERIMENTS[n], secs, out, quick=quick, val_split=val_split)
                     for n, secs in by_exp.items())
    report = out / "report.md"
    atomic_write_bytes(report, (_header() + facts_section() + text).encode())
    return report
