"""`zoo reproduce`: every experiment's runs, curves and report, on the --quick machinery check."""
from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path

import pytest

import zoo.paper.reproduce as R
from zoo.core.errors import ZooError
from zoo.hub.rundir import RunDir, RunRecord


@pytest.fixture(scope="module")
def quick_all(module_tmp):
    """Every experiment's --quick runs and report."""
    out = module_tmp("reproduce")
    return out, R.reproduce("all", out, quick=True)


@pytest.mark.slow
def test_a_quick_run_keeps_its_records_only(quick_all):
    """A quick run (a machinery check) writes run.json and metrics.jsonl, all a report reads, and neither the resume
    state nor the finished model (2.8 and 1.4 GB for the 26 full-size models); each counts as done from them."""
    out, _ = quick_all
    runs = sorted((out / "runs").iterdir())
    assert len(runs) > 20 and all(sorted(p.name for p in run.iterdir()) == ["metrics.jsonl", "run.json"] for run in runs)
    assert all(R._status(cfg) == "done" for cfg in R.unique_configs(R.plan_configs(["all"], out, quick=True)))


@pytest.mark.slow
def test_report_has_every_experiment_with_the_papers_numbers(quick_all):
    out, report = quick_all
    text = report.read_text()
    for name, exp in R.EXPERIMENTS.items():
        section = text.split(f"## {name}: ")[1].split("\n## ")[0]
        for recipe in exp.recipes:
            part = section.split(f"### {recipe} recipe")[1].split("\n### ")[0]
            table = [line for line in part.splitlines() if line.startswith("| ") and " | paper: " not in line]
            runs, claims = table[: len(exp.runs)], table[len(exp.runs) + 1:]
            assert [r.split(" | ")[0][2:] for r in runs] == [run.label for run in exp.runs]
            for run, row in zip(exp.runs, runs):
                cells = row.strip("|").split(" | ")
                if run.paper_err is not None:
                    assert cells[1].strip().startswith(f"{run.paper_err:.2f}")
                assert all(re.fullmatch(r" ?\d+\.\d\d ?", c) for c in cells[2:]), row  # one seed: plain numbers
            assert [c.split(" | ")[0][2:] for c in claims] == [c.text for c in exp.claims]
            for row, claim in zip(claims, exp.claims):  # one epoch, one seed: never a verdict on the paper
                verdict = re.sub(r"^(exploratory|confirmatory) \([^)]*\): ", "", row.rstrip(" |").rsplit(" | ", 1)[1])
                squeezed = recipe == "fast"  # its one-cycle schedule cut to one epoch: no claim's epochs are the recipe's
                assert verdict.startswith("not comparable" if claim.horizon == "end" or claim.metric == "early" or squeezed
                                          else "inconclusive (n=1"), row
            assert (out / f"{name}-{recipe}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert f"]({name}-{recipe}.png)" in part
    assert "--quick run" in text and "Verdicts: " in text and "Settings the paper does not state" in text
    facts = text.split("## The paper's size and cost figures, computed")[1].split("\n## ")[0]
    assert all(f"| {fact.text} | {fact.paper} |" in facts for fact in R.FACTS)


def test_paper_numbers_are_quoted_from_the_paper():
    assert R.PAPER_FIG7 == {"googlenet": 14.56, "googlenet_5x5": 14.33, "googlenet_res3x3": 13.73, "googlenet_res5x5": 13.39}
    assert R.PAPER_AUX == {"with aux": 14.56, "without aux": 14.69}
    assert [v[1] for v in R.PAPER_PATIENCE.values()] == [14.05, 9.58, 6.73, 5.96, 6.12]


@pytest.mark.slow
def test_shared_runs_are_trained_once(quick_all):
    out, _ = quick_all
    planned = [R._config(r, rec, out, quick=True, epochs=None, data_dir=None, device="cpu", val_split=R.DEFAULT_VAL_SPLIT).out
               for e in R.EXPERIMENTS.values() for r in e.runs for rec in e.recipes]
    # fig6's, fig6-vs-fig5's, fig7's and fig7-early's GoogLeNet and aux's "with aux" are one run per recipe
    assert planned.count(str(out / "runs" / "cifar10-paper-googlenet-val4-quick")) == 5
    assert sorted(str(p) for p in (out / "runs").iterdir()) == sorted(set(planned))


@pytest.mark.slow
def test_finished_runs_are_skipped(quick_all, monkeypatch):
    out, _ = quick_all

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(R, "train", no_training)
    assert R.reproduce(["fig7", "aux"], out, quick=True).is_file()


@pytest.mark.slow  # the report's facts trace every model at 224x224: 3.5 s
def test_report_only_trains_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(R, "run_configs", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
    text = R.reproduce("aux", tmp_path, report_only=True).read_text()
    assert text.count("Not run.") == 2  # both recipes of aux


def test_unknown_experiment_names_the_valid_ones(tmp_path):
    with pytest.raises(ZooError, match="fig7"):
        R.reproduce("fig9", tmp_path)


def test_quick_runs_and_seeds_and_protocols_have_their_own_identity(tmp_path):
    run = R.EXPERIMENTS["fig7"].runs[0]
    ids = {
        R._config(run, "paper", tmp_path, quick=quick, epochs=None, data_dir=None, device="cpu", seed=seed, val_split=val).out
        for quick in (False, True) for seed in (0, 1) for val in (0, 5000)
    }
    assert len(ids) == 8
    # seed 0 under the paper's protocol keeps the id of the runs in reports/h200
    plain = R._config(run, "paper", tmp_path, quick=False, epochs=None, data_dir=None, device="cpu")
    assert plain.out == str(tmp_path / "runs" / "cifar10-paper-googlenet")


def rows(test_errs, val_errs=None):
    out = []
    for i, t in enumerate(test_errs):
        row = {"epoch": i + 1, "lr": 0.1, "train_loss": 1.0, "test_loss": 1.0, "test_err": t, "train_err": t + 1}
        if val_errs is not None:
            row["val_err"] = val_errs[i]
        out.append(row)
    return out


def test_protocol_selects_the_epoch_on_validation_not_test():
    history = rows([30.0, 20.0, 22.0], val_errs=[31.0, 23.0, 21.0])
    assert R.run_metrics(history) == {"final": 22.0, "selected": 22.0, "best": 20.0, "epoch1": 30.0, "stable": 3.0,
                                      "best_epoch": 2.0, "log_lr_at_best": -1.0, "gap_growth": 0.0}
    # "early", declared before the runs: the mean validation error over the first epochs, when there are enough
    assert R.run_metrics(history, early_epochs=2)["early"] == 27.0
    # the paper's protocol (no validation split): the best test error, the paper's own metric
    assert R.run_metrics(rows([30.0, 20.0, 22.0]))["selected"] == 20.0


def write_run(cfg, history, recipe_config=None):
    out = Path(cfg.out)
    out.mkdir(parents=True)
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    run = RunRecord(arch=cfg.arch, model_kwargs=cfg.model_kwargs, dataset=cfg.dataset, dataset_sha256="ab" * 32,
                    dataset_source="npz", recipe=cfg.recipe, recipe_config=recipe_config or {}, config={}, seed=cfg.seed,
                    epochs=len(history), world_size=1, input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.25,) * 3,
                    label_names=tuple("abcdefghij"), zoo_version="0", git_commit="f" * 40, machine="NVIDIA H100 80GB HBM3")
    RunDir(out).write_run(run)


FINALS = {"3x3, no residuals": [24.7, 20.9, 18.1], "5x5, no residuals": [21.0, 19.8, 18.9],
          "3x3, residuals": [17.5, 17.4, 17.9], "5x5, residuals": [19.3, 18.7, 18.5]}
EARLY = {"3x3, no residuals": (60.0, 1.3), "5x5, no residuals": (62.0, 0.4), "3x3, residuals": (50.0, 0.7),
         "5x5, residuals": (55.0, 1.0)}  # epoch-1 error of seed 0, and its growth per seed


def fig7_report(tmp_path, epochs: int) -> str:
    """fig7 with three seeds whose runs last ``epochs`` epochs: the early epochs and the final errors as given."""
    kw = dict(recipes=("fast",), seeds=(0, 1, 2), model_args={"stem": "imagenet"})
    for (label, _, seed), cfg in R.plan_configs(["fig7"], tmp_path, **kw)["fig7"].items():
        final = FINALS[label][seed]
        start, step = EARLY[label]
        early = [start + seed * step + e for e in range(5)]
        tests = early + [final + 0.01 * (epochs - e) for e in range(6, epochs + 1)]
        write_run(cfg, rows(tests, val_errs=[t - 0.5 for t in tests]))
    return R.reproduce("fig7", tmp_path, report_only=True, **kw).read_text()


@pytest.mark.slow
def test_report_aggregates_seeds_and_derives_verdicts_by_the_stated_rule(tmp_path):
    text = fig7_report(tmp_path, epochs=160)  # as long as the paper's: every claim comparable
    assert "| 3x3, residuals | 13.73 | 17.60 ± 0.26 | 17.60 ± 0.26 | 17.60 ± 0.26 | 50.70 ± 0.70 | 17.50, 17.40, 17.90 |" in text
    claims = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| ") and "`fast`, 160 epochs" in line}
    # paired by seed: 5x5 vs 3x3 residual differ by 1.8, 1.3, 0.6 (p = 0.07): no verdict, however the means look
    assert "| exploratory (not pre-registered): inconclusive (paired t, n = 3/3, d = 1.23" in claims["true 5x5 beats 3x3 (residuals)"]
    assert ": inconclusive (paired t" in claims["residuals beat plain (3x3)"]  # plain 3x3's seeds disagree by 6.6
    assert "| exploratory (not pre-registered): supported (paired t" in claims["residuals converge faster (3x3)"]
    assert all("Holm p" in line for line in claims.values())
    assert "Welch" not in "".join(claims.values())  # the runs share seeds: every test is paired
    assert "validation protocol: 5,000 training images" in text and "seeds [0, 1, 2]" in text
    assert "precision: bf16 autocast (CUDA)" in text and "Holm" in text.split("## ")[0]
    assert (tmp_path / "fig7-fast.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow  # a report: its facts trace every model at 224x224
def test_a_short_run_never_contradicts_a_claim_about_the_papers_end(tmp_path):
    text = fig7_report(tmp_path, epochs=10)
    claim = next(line for line in text.splitlines() if line.startswith("| true 5x5 beats 3x3 (residuals) |"))
    assert "not comparable at 10 epochs (the paper's claim is at the end of 160)" in claim and "contradicted" not in claim
    early = next(line for line in text.splitlines() if line.startswith("| residuals converge faster (5x5) |"))
    assert "| exploratory (not pre-registered): supported (paired t" in early  # the first epochs, exactly


def test_holm_adjusts_across_the_whole_report():
    raw = [R.verdicts.better([10.0, 11.0, 12.0], [11.0, 12.1, 12.9], paired=True)] * 2
    secs = [R.Section(R.EXPERIMENTS["aux"], recipe, {}, {}, 100, [None, None], raw) for recipe in ("paper", "fast")]
    R.decide_report(secs)
    decided = [v for sec in secs for v in sec.decided]
    assert all(v.p_holm == pytest.approx(min(1.0, 4 * decided[0].p)) for v in decided)  # four equal p-values


@pytest.mark.slow  # a report: its facts trace every model at 224x224
def test_a_run_from_a_recipe_that_changed_is_marked_stale(tmp_path):
    plan = R.plan_configs(["aux"], tmp_path, recipes=("paper",), val_split=0)
    for (label, _, _), cfg in plan["aux"].items():
        write_run(cfg, rows([30.0, 25.0]), recipe_config={"lr": 0.05 if label == "with aux" else 0.1})
    text = R.reproduce("aux", tmp_path, recipes=("paper",), val_split=0, report_only=True).read_text()
    assert "| with aux **stale: the paper recipe changed since (lr 0.05 -> 0.1)** |" in text
    assert "| without aux |" in text
    assert "the paper's protocol: the test set selects" in text and "val-selected" not in text


def test_shortened_paper_step_schedules_are_compressed_on_request_and_say_so(tmp_path):
    plan = R.plan_configs(["fig7"], tmp_path, recipes=("paper",), epochs=30, compress=True)
    cfg = next(iter(plan["fig7"].values()))
    assert cfg.recipe_overrides == {"compress_from": 160} and "compress_from=160" in cfg.out
    exact = R.plan_configs(["fig7"], tmp_path, recipes=("paper",), epochs=30)  # the first 30 epochs, exactly
    assert next(iter(exact["fig7"].values())).recipe_overrides == {}
    full = R.plan_configs(["fig7"], tmp_path, recipes=("paper",))  # the paper's own length: nothing to compress
    assert next(iter(full["fig7"].values())).recipe_overrides == {}


def test_fig7_early_is_the_preregistered_design(tmp_path):
    """The confirmatory CPU experiment runs exactly what was declared before its runs: the two 3x3 GoogLeNets,
    the paper recipe's first 5 epochs uncompressed, 5 seeds with their own 5,000-image validation splits, and
    its one claim on the early metric, testable at 5 epochs and not at 4 (the negative control)."""
    d = R.FIG7_EARLY_DESIGN
    exp = R.EXPERIMENTS["fig7-early"]
    assert exp.claims == (R.RESIDUAL_3X3_EARLY,) and R.RESIDUAL_3X3_EARLY in R.EXPERIMENTS["fig7"].claims
    claim = exp.claims[0]
    assert (claim.kind, claim.metric, claim.horizon, exp.early_epochs) == ("better", "early", "early", d["epochs"])
    plan = R.plan_configs(["fig7-early"], tmp_path, recipes=(d["recipe"],), epochs=d["epochs"],
                          seeds=tuple(range(d["seeds"])), val_split=d["val_split"], device=d["device"])["fig7-early"]
    assert sorted({c.arch for c in plan.values()}) == ["googlenet", "googlenet_res3x3"]
    assert len(plan) == 2 * d["seeds"] and {c.seed for c in plan.values()} == set(range(d["seeds"]))
    assert all(c.recipe_overrides == {} and c.val_split == 5000 and c.epochs == 5 for c in plan.values())
    runs = [(c, c.epochs) for c in plan.values()]
    assert R.scope_problem(claim, runs, exp.early_epochs) is None
    assert "needs 5 epochs, 4 were run" in R.scope_problem(claim, [(c, 4) for c, _ in runs], exp.early_epochs)
    # the metric: the mean validation error over epochs 1..5, whatever the test error or the later epochs
    history = rows([90.0] * 6, val_errs=[50.0, 40.0, 30.0, 20.0, 10.0, 0.0])
    assert R.run_metrics(history, exp.early_epochs)["early"] == 30.0


def test_a_squeezed_one_cycle_schedule_is_not_comparable_for_early_claims(tmp_path):
    """reports/h100: the fast recipe's one-cycle schedule (lr 0.2 to zero over 30 epochs) run with --epochs 10 decays
    to zero by epoch 10, so its first epochs are not the recipe's; run at its own length it is comparable."""
    kw = dict(recipes=("fast",), seeds=(0, 1, 2), model_args={"stem": "imagenet"})
    squeezed = R.plan_configs(["fig7"], tmp_path, epochs=10, **kw)["fig7"]
    cfg = next(iter(squeezed.values()))
    assert "squeezed from 30 epochs into 10" in R.compressed(cfg)
    claim = R.RESIDUAL_3X3_EARLY
    assert "not comparable: its one-cycle schedule" in R.scope_problem(claim, [(c, 10) for c in squeezed.values()], 5)
    full = R.plan_configs(["fig7"], tmp_path, **kw)["fig7"]
    assert R.compressed(next(iter(full.values()))) == ""
    assert R.scope_problem(claim, [(c, 30) for c in full.values()], 5) is None
    paper = R.plan_configs(["fig7"], tmp_path, recipes=("paper",), epochs=5)["fig7"]  # a step schedule, cut: exact
    assert R.compressed(next(iter(paper.values()))) == ""


@pytest.mark.slow
def test_every_verdict_row_says_whether_it_was_pre_registered(tmp_path):
    """fig7-early's own design is confirmatory; the same claim on other runs is exploratory."""
    d = R.FIG7_EARLY_DESIGN
    kw = dict(recipes=(d["recipe"],), epochs=d["epochs"], seeds=tuple(range(d["seeds"])), val_split=d["val_split"])
    for (label, _, seed), cfg in R.plan_configs(["fig7-early"], tmp_path, **kw)["fig7-early"].items():
        start = 50.0 if label == "3x3, residuals" else 55.0 + 0.3 * seed
        write_run(cfg, rows([start + e for e in range(5)], val_errs=[start + e for e in range(5)]))
    text = R.reproduce("fig7-early", tmp_path, report_only=True, **kw).read_text()
    row = next(line for line in text.splitlines() if line.startswith("| residuals converge faster (3x3) |"))
    assert "| confirmatory (pre-registered: reports/cpu-fig7-early/README.md" in row and "supported" in row
    assert "MDE at the pooled seed sd: " in row
    fewer = dict(kw, seeds=tuple(range(9)))  # not the declared design: exploratory
    text = R.reproduce("fig7-early", tmp_path, report_only=True, **fewer).read_text()
    row = next(line for line in text.splitlines() if line.startswith("| residuals converge faster (3x3) |"))
    assert "| exploratory (not pre-registered): supported" in row


def test_claims_on_several_runs(tmp_path):
    """"slower than the other variants" is tested against all three; a contrast of sums compares two effects."""
    claim = next(c for c in R.EXPERIMENTS["fig7"].claims if c.text.startswith("5x5 (residuals) converges more slowly"))
    assert claim.sides == (("3x3, no residuals", "5x5, no residuals", "3x3, residuals"), ("5x5, residuals",))
    seeds = {label: {"early": dict(enumerate(values))} for label, values in
             (("3x3, no residuals", (40.0, 41.3, 41.7)), ("5x5, no residuals", (41.0, 42.4, 42.8)),
              ("3x3, residuals", (39.0, 40.6, 40.9)), ("5x5, residuals", (45.0, 46.0, 47.0)))}
    assert R.claim_verdict(claim, seeds).outcome == "supported" and "3 pairs" in R.claim_verdict(claim, seeds).test
    seeds["5x5, no residuals"]["early"] = {0: 46.0, 1: 47.2, 2: 47.9}  # one variant slower still: not all three
    assert R.claim_verdict(claim, seeds).outcome != "supported"
    contrast = next(c for c in R.EXPERIMENTS["aux"].claims if c.combine == "sum")
    assert R.sd_factor(contrast) == pytest.approx(math.sqrt(6))  # residual + no-aux - 2 x plain
    values = {"3x3, residuals": [13.7, 13.9, 13.6], "without aux": [14.7, 14.6, 14.9], "with aux": [14.5, 14.6, 14.6]}
    seeds = {k: {"selected": dict(enumerate(v))} for k, v in values.items()}
    v = R.claim_verdict(contrast, seeds)
    assert v.effect == pytest.approx(statistics.fmean(
        r + n - 2 * w for r, n, w in zip(*values.values())))


def test_every_claim_of_the_issue_is_encoded():
    texts = {c.text for e in R.EXPERIMENTS.values() for c in e.claims}
    for expected in ("GoogLeNet converges faster than VGG19", "ResNet18's error is about 10.73 points above GoogLeNet's",
                     "VGG19 stabilises before GoogLeNet", "ResNet18 stabilises at about epoch 9",
                     "GoogLeNet stabilises at about epoch 81", "VGG19 stabilises at about epoch 70",
                     "VGG19 stabilises later on CIFAR-10 than on MNIST",
                     "GoogLeNet's train-test gap stays constant after it stabilises (within 1 point)",
                     "5x5 with residuals is the best variant", "5x5, residuals: best error about 13.39%",
                     "without aux: best error about 14.69%", "identity mapping lowers the error more than aux heads do",
                     "patience 5: best error at about epoch 88", "patience 0: lr at the best epoch about 1e-08",
                     "lowering the momentum to 0.5 enlarges patience 10's gain over patience 0"):
        assert expected in texts, expected
    aux = next(c for c in R.EXPERIMENTS["aux"].claims if "converge" in c.text)
    assert (aux.metric, aux.horizon) == ("early", "early")  # the paper's "converge", not the final error
    vgg = next(c for c in R.EXPERIMENTS["fig5"].claims if "from the first epoch" in c.paper)
    assert vgg.metric == "epoch1"
    for exp in R.EXPERIMENTS.values():
        for c in exp.claims:
            assert set(c.labels) <= {r.label for r in exp.runs} and c.metric in R.METRICS, c.text


def test_facts_include_the_papers_counts_and_its_mistake():
    checked = {f.text: R.check_fact(f) for f in R.FACTS}
    assert checked["GoogLeNet has 7 Inception modules"] == ("9", "differs")  # the paper is wrong: GoogLeNet has 9
    for text in ("VGG19 has 19 weight layers", "ResNet18 has 18 weight layers", "GoogLeNet has 22 weight layers"):
        assert checked[text][1] == "holds", text
    assert checked["ResNet152 has about 8x the weight layers of VGG19"] == ("8.00x (152 / 19)", "holds")
    assert checked["GoogLeNet needs about 26x fewer operations than VGG19"][1] == "differs"  # 13x, like with like
    assert checked["a 1x1 reduction cuts a 5x5 branch from about 120M multiply-adds"][1] == "holds"
    assert checked["auxiliary heads add training compute"][1] == "holds"
    assert any("AlexNet" in what for what in R.OUT_OF_SCOPE)


@pytest.mark.slow
def test_a_run_whose_records_hold_all_its_epochs_is_done_without_its_weights(tmp_path):
    """reports/ keep run.json and metrics.jsonl only: a reproduction spanning sessions goes on from them instead of
    training the finished runs again; a run with fewer epochs recorded (and no state to resume) starts anew."""
    plan = R.plan_configs(["fig7-early"], tmp_path, recipes=("paper",), epochs=2, seeds=(0, 1), val_split=5000)
    full, short, untouched = list(plan["fig7-early"].values())[:3]
    write_run(full, rows([60.0, 50.0], val_errs=[61.0, 51.0]))
    write_run(short, rows([60.0], val_errs=[61.0]))
    assert [R._status(c) for c in (full, short, untouched)] == ["done", "new", "new"]
