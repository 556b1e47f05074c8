"""`zoo reproduce --plan`: what a reproduction costs on each machine, and whether it can decide its claims.

Time comes from the rates of recorded runs (:data:`RATES`), each named by its runs and the number of processes
that shared the machine when it was measured; power from a seed sd pooled over recorded runs
(:data:`zoo.paper.reproduce.POOLED_SD`) and the paper's effect for each claim. Nothing here trains.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.core.errors import DataError
from zoo.data.datasets import get_spec
from zoo.models.registry import model_class, param_count
from zoo.paper import verdicts
from zoo.paper.reproduce import EXPERIMENTS, POOLED_SD, Claim, Experiment, scope_problem, sd_factor
from zoo.train.loop import TrainConfig
from zoo.train.recipes import get_recipe

Plan = dict[str, dict[tuple[str, str, int], TrainConfig]]
MACHINES = {"cpu": "this 2-core CPU (AMD EPYC, fp32)", "h100": "one NVIDIA H100 (bf16)", "h200": "one NVIDIA H200 (bf16)"}


@dataclass(frozen=True)
class Rate:
    """Training images per second per process, as recorded runs measured it: their trained images over their
    ``train_seconds`` (every epoch, the first's warm-up included), with ``processes`` training at once on the
    machine. ``runs``: the run folders (a glob from the repository root); tests/test_plan.py recomputes each."""

    machine: str
    dataset: str
    recipe: str
    arch: str
    model_kwargs: tuple[tuple[str, Any], ...]
    img_s: float
    processes: int
    runs: str


def _rate(machine: str, dataset: str, recipe: str, arch: str, img_s: float, processes: int, runs: str,
          **model_kwargs: Any) -> Rate:
    return Rate(machine, dataset, recipe, arch, tuple(sorted(model_kwargs.items())), img_s, processes, runs)


_GOOGLENETS: tuple[tuple[str, dict[str, Any]], ...] = (("googlenet", {}), ("googlenet_5x5", {}), ("googlenet_res3x3", {}), ("googlenet_res5x5", {}),
               ("googlenet", {"aux_logits": False}))
RATES = (
    _rate("cpu", "mnist", "paper", "googlenet", 429, 1, "reports/cpu-fig5/runs/mnist-paper-googlenet-val5000*", stem="imagenet"),
    _rate("cpu", "mnist", "paper", "resnet18", 160, 1, "reports/cpu-fig5/runs/mnist-paper-resnet18-val5000*", stem="imagenet"),
    _rate("cpu", "mnist", "fast", "googlenet_res5x5", 577, 1, "model_cards/googlenet_res5x5.mnist_paper", stem="imagenet"),
    _rate("h100", "cifar10", "fast", "googlenet_res5x5", 19660, 1, "reports/h100/googlenet_res5x5-cifar10-110ep", stem="imagenet"),
    _rate("h100", "cifar10", "fast", "googlenet_res5x5", 14012, 5, "reports/h100/googlenet_res5x5-cifar10-50ep", stem="imagenet"),
    *(_rate("h100", "cifar10", "fast", arch, img_s, 5,
            f"reports/h100/runs/cifar10-fast-{arch}{''.join(f'-{k}={v}'.lower() for k, v in kw.items())}-stem=imagenet-val5000*",
            stem="imagenet", **kw)
      for (arch, kw), img_s in zip(_GOOGLENETS, (10350, 12327, 12874, 13602, 14272))),
    *(_rate("h200", "cifar10", "paper", arch, img_s, 5,
            f"reports/h200/runs/cifar10-paper-{arch}{''.join(f'-{k}={v}'.lower() for k, v in kw.items())}",
            stem="imagenet", **kw)
      for (arch, kw), img_s in zip(_GOOGLENETS, (7748, 7553, 7456, 7546, 8250))),
    _rate("h200", "cifar10", "fast", "resnet18", 40750, 1, "reports/h200/resnet18-cifar10-fast", stem="cifar"),
    _rate("h200", "mnist", "paper", "googlenet", 5447, 6, "reports/h200/runs/mnist-paper-googlenet", stem="imagenet"),
    _rate("h200", "mnist", "paper", "resnet18", 20203, 6, "reports/h200/runs/mnist-paper-resnet18", stem="imagenet"),
    _rate("h200", "mnist", "paper", "vgg19", 15056, 6, "reports/h200/runs/mnist-paper-vgg19", head="imagenet"),
    _rate("h200", "mnist", "fast", "googlenet", 4602, 6, "reports/h200/runs/mnist-fast-googlenet", stem="cifar"),
    _rate("h200", "mnist", "fast", "resnet18", 18941, 6, "reports/h200/runs/mnist-fast-resnet18", stem="cifar"),
    _rate("h200", "mnist", "fast", "vgg19", 24584, 6, "reports/h200/runs/mnist-fast-vgg19", head="cifar"),
)
STARTUP_S = 15.0  # per run: interpreter, data onto the device, cuDNN autotuning
BYTES_PER_PARAM = {"state": 8, "model": 4}
"""Disk per parameter: the resume state (fp32 weights and the SGD momentum) and the finished model (fp32)."""


def _kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """The model arguments that make a run's speed what it is: the recipe's and the run's, the variant (stem or
    head) always named; class count and channels left out (the first layer's share is small)."""
    cls = model_class(cfg.arch)
    recipe = get_recipe(cfg.recipe_name, cfg.arch, cfg.dataset, **cfg.recipe_overrides)
    kwargs = {cls.variant_arg: "imagenet", **recipe.model_kwargs, **cfg.model_kwargs}
    return {k: v for k, v in kwargs.items() if k not in ("num_classes", "in_chans")}


def measured_rate(cfg: TrainConfig, machine: str, jobs: int) -> tuple[Rate, str] | None:
    """The recorded rate nearest ``cfg`` on ``machine`` (same family and variant; fewest differences in dataset,
    recipe, arch and model arguments; then the concurrency nearest ``jobs``), with what differs; None if none."""
    kwargs, family = _kwargs(cfg), model_class(cfg.arch).family
    variant = model_class(cfg.arch).variant_arg
    wanted = {"dataset": cfg.dataset, "recipe": cfg.recipe, "arch": cfg.arch, "model args": tuple(sorted(kwargs.items()))}
    candidates = [r for r in RATES if r.machine == machine and model_class(r.arch).family == family
                  and dict(r.model_kwargs).get(variant) == kwargs.get(variant)]
    if not candidates:
        return None

    def differs(r: Rate) -> list[str]:
        have: dict[str, Any] = {"dataset": r.dataset, "recipe": r.recipe, "arch": r.arch, "model args": r.model_kwargs}
        return [f"{k} {dict(have[k]) if k == 'model args' else have[k]}" for k in wanted if have[k] != wanted[k]]

    best = min(candidates, key=lambda r: (len(differs(r)), abs(r.processes - jobs)))
    return best, ", ".join(differs(best))


def _source(rate: Rate, differs: str) -> str:
    shared = "alone" if rate.processes == 1 else f"{rate.processes} processes at once"
    return f"{rate.runs} ({shared})" + (f"; measured with {differs}" if differs else "")


def estimate(configs: list[TrainConfig], machine: str = "h200", jobs: int = 1, throughput: float | None = None) -> dict[str, Any]:
    """Runs, images, minutes on ``machine`` and disk of training ``configs`` with ``jobs`` processes at once.

    Each epoch trains on the training set less the validation split and evaluates the test and validation sets
    (twice with flip-averaging); an evaluated image costs a third of a trained one (forward only). A run's
    minutes: its images at its recorded rate per process, plus start-up. A rate measured with k processes sharing
    the machine is the machine's throughput divided by k, so ``jobs`` processes finish min(jobs, k) runs in the
    time of one: the total is the runs' minutes divided by min(jobs, k) run by run (more processes than were
    measured gain nothing; fewer than were measured make it an upper bound, as a process alone runs faster).
    ``throughput`` (img/s per process with ``jobs`` at once) overrides the records. A run with no recorded rate on
    the machine has no minutes (nan) and is counted in ``unmeasured``. Disk: every run keeps its resume state and
    its model; at peak, ``jobs`` states are being rewritten (each written beside the old one, then renamed).
    """
    rows, seconds, kept, states, unmeasured = [], 0.0, 0, [], 0
    for cfg in configs:
        spec = get_spec(cfg.dataset)
        if spec.splits is None:
            raise DataError(f"dataset {spec.name!r} states no split sizes (DataSpec.splits): --plan cannot count its images")
        recipe = get_recipe(cfg.recipe_name, cfg.arch, spec, epochs=cfg.epochs, **cfg.recipe_overrides)
        train_images, test_images = spec.splits[0] - cfg.val_split, spec.splits[1]
        eval_images = (test_images + cfg.val_split) * (2 if recipe.tta_flip else 1)
        images = recipe.epochs * (train_images + eval_images / 3)
        found = None if throughput else measured_rate(cfg, machine, jobs)
        if throughput:
            img_s, processes, source = throughput, jobs, "--throughput (img/s per process, --jobs at once)"
        elif found:
            img_s, processes, source = found[0].img_s, found[0].processes, _source(*found)
        else:
            img_s, processes, source = math.nan, 1, f"not measured on {machine}: pass --throughput"
            unmeasured += 1
        run_s = images / img_s + STARTUP_S
        if not math.isnan(run_s):
            seconds += run_s / min(jobs, processes, len(configs))
        params = param_count(cfg.arch, **{**recipe.model_kwargs, **cfg.model_kwargs, "num_classes": spec.num_classes,
                                          "in_chans": spec.input_size[0]})
        states.append(params * BYTES_PER_PARAM["state"])
        kept += params * sum(BYTES_PER_PARAM.values())
        rows.append({"run": Path(cfg.out).name, "epochs": recipe.epochs, "images": int(images), "img_s": img_s,
                     "source": source, "minutes": run_s / 60, "disk_gb": params * sum(BYTES_PER_PARAM.values()) / 1e9})
    peak = kept + sum(sorted(states, reverse=True)[:jobs])
    return {"runs": rows, "images": sum(r["images"] for r in rows), "jobs": jobs, "machine": machine,
            "minutes": seconds / 60, "unmeasured": unmeasured, "disk_gb": kept / 1e9, "peak_disk_gb": peak / 1e9}


def machines(device: str) -> list[str]:
    """The machines a plan for ``--device`` is estimated on: the CPU for "cpu", every GPU measured otherwise."""
    return ["cpu"] if device == "cpu" else ["h100", "h200"]


def _claims(plan: Plan):
    """(experiment, recipe, claim, its configs) for every claim whose runs the plan holds."""
    for name, cfgs in plan.items():
        exp = EXPERIMENTS[name]
        for recipe in sorted({r for _, r, _ in cfgs}):
            for claim in exp.claims:
                chosen = [c for (label, r, _), c in cfgs.items() if r == recipe and label in claim.labels]
                if {label for label, r, _ in cfgs if r == recipe} >= set(claim.labels):
                    yield exp, recipe, claim, chosen


def _epochs(cfg: TrainConfig) -> int:
    return get_recipe(cfg.recipe_name, cfg.arch, cfg.dataset, epochs=cfg.epochs, **cfg.recipe_overrides).epochs


def untestable(plan: Plan) -> list[str]:
    """The claims a plan's runs cannot test, and why (too short, a compressed schedule, no early epochs)."""
    return [f"{exp.name} ({recipe}): \"{claim.text}\": {problem}" for exp, recipe, claim, cfgs in _claims(plan)
            if (problem := scope_problem(claim, [(c, _epochs(c)) for c in cfgs], exp.early_epochs))]


def paper_effect(exp: Experiment, claim: Claim) -> float | None:
    """The effect the power plan targets, in the metric's units: for "better", how far below b the paper puts a
    (its stated ``effect``, or its table's errors for the smallest pair); for "similar", "near" and "gap", the
    distance inside the margin if the paper is right (the margin less the paper's difference). None where the paper
    gives no size."""
    errors = {r.label: r.paper_err for r in exp.runs if r.paper_err is not None}
    table = claim.metric in ("selected", "best", "final") and all(x in errors for x in claim.labels)
    if claim.kind == "better":
        if claim.effect is not None or not table or claim.combine == "sum":
            return claim.effect
        side_a, side_b = claim.sides
        return min(errors[y] - errors[x] for x in side_a for y in side_b)
    if claim.kind == "similar":
        margin = claim.needed(claim.margin, "margin")
        if not table:
            return margin
        (a,), (b,) = claim.sides  # the table's errors: one run a side
        return margin - abs(errors[a] - errors[b])
    return claim.margin if claim.kind in ("near", "gap") else None


def power_plan(plan: Plan, seeds: int) -> list[dict[str, Any]]:
    """Per claim of the plan: the paper's effect, the pooled seed sd, the seeds it needs at 80% power, the power and
    the MDE at ``seeds``, and whether the design can decide it (``decides``, with ``why`` when it cannot)."""
    rows = []
    for exp, recipe, claim, cfgs in _claims(plan):
        pooled = POOLED_SD.get((cfgs[0].dataset, claim.metric))
        effect = paper_effect(exp, claim)
        row = {"experiment": exp.name, "recipe": recipe, "claim": claim.text, "metric": claim.metric, "effect": effect,
               "seeds": seeds, "sd": None, "needed": None, "power": None, "mde": None, "source": ""}
        if pooled:
            sd = pooled.sd * sd_factor(claim)
            row.update(sd=sd, source=pooled.source, mde=verdicts.mde(sd, seeds, claim.kind))
            if effect is not None:
                row.update(needed=verdicts.seeds_needed(effect, sd, claim.kind),
                           power=verdicts.power(effect, sd, seeds, claim.kind) if effect > 0 else 0.0)
        problem = scope_problem(claim, [(c, _epochs(c)) for c in cfgs], exp.early_epochs)
        row["why"] = (problem or ("no recorded seed sd of this metric on this dataset" if not pooled else
                      "the paper gives no effect size: only the MDE" if effect is None else
                      f"needs {row['needed'] or 'over 1000'} seeds" if not row["needed"] or row["needed"] > seeds else ""))
        row["decides"] = not row["why"]
        rows.append(row)
    return rows
