"""`zoo reproduce`: every experiment's runs, curves and report, on the --quick machinery check."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import zoo.reproduce as R
from zoo.errors import ZooError
from zoo.rundir import RunDir, RunRecord


@pytest.fixture(scope="module")
def quick_all(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    return out, R.reproduce("all", out, quick=True)


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
                verdict = row.rstrip(" |").rsplit(" | ", 1)[1]
                assert verdict.startswith("not comparable" if claim.horizon == "end" or claim.metric == "early"
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
    # fig6's, fig7's and fig7-early's GoogLeNet and aux's "with aux" are one run per recipe
    assert planned.count(str(out / "runs" / "cifar10-paper-googlenet-val4-quick")) == 4
    assert sorted(str(p) for p in (out / "runs").iterdir()) == sorted(set(planned))


@pytest.mark.slow
def test_finished_runs_are_skipped(quick_all, monkeypatch):
    out, _ = quick_all

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(R, "train", no_training)
    assert R.reproduce(["fig7", "aux"], out, quick=True).is_file()


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
    assert R.run_metrics(history) == {"final": 22.0, "selected": 22.0, "best": 20.0, "epoch1": 30.0, "stable": 3.0}
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


def test_report_aggregates_seeds_and_derives_verdicts_by_the_stated_rule(tmp_path):
    text = fig7_report(tmp_path, epochs=160)  # as long as the paper's: every claim comparable
    assert "| 3x3, residuals | 13.73 | 17.60 ± 0.26 | 17.60 ± 0.26 | 17.60 ± 0.26 | 50.70 ± 0.70 | 17.50, 17.40, 17.90 |" in text
    claims = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| ") and "`fast`, 160 epochs" in line}
    # paired by seed: 5x5 vs 3x3 residual differ by 1.8, 1.3, 0.6 (p = 0.07): no verdict, however the means look
    assert "| inconclusive (paired t, n = 3/3, d = 1.23" in claims["true 5x5 beats 3x3 (residuals)"]
    assert "| inconclusive (paired t" in claims["residuals beat plain (3x3)"]  # plain 3x3's seeds disagree by 6.6
    assert "| supported (paired t" in claims["residuals converge faster (3x3)"]  # 10 points in every seed
    assert all("Holm p" in line for line in claims.values())
    assert "Welch" not in "".join(claims.values())  # the runs share seeds: every test is paired
    assert "validation protocol: 5,000 training images" in text and "seeds [0, 1, 2]" in text
    assert "precision: bf16 autocast (CUDA)" in text and "Holm" in text.split("## ")[0]
    assert (tmp_path / "fig7-fast.png").read_bytes()[:4] == b"\x89PNG"


def test_a_short_run_never_contradicts_a_claim_about_the_papers_end(tmp_path):
    text = fig7_report(tmp_path, epochs=10)
    claim = next(line for line in text.splitlines() if line.startswith("| true 5x5 beats 3x3 (residuals) |"))
    assert "not comparable at 10 epochs (the paper's claim is at the end of 160)" in claim and "contradicted" not in claim
    early = next(line for line in text.splitlines() if line.startswith("| residuals converge faster (5x5) |"))
    assert "| supported (paired t" in early  # an early claim is tested on the first epochs, exactly


def test_holm_adjusts_across_the_whole_report():
    raw = [R.verdicts.better([10.0, 11.0, 12.0], [11.0, 12.1, 12.9], paired=True)] * 2
    secs = [R.Section(R.EXPERIMENTS["aux"], recipe, {}, {}, 100, [None, None], raw) for recipe in ("paper", "fast")]
    R.decide_report(secs)
    decided = [v for sec in secs for v in sec.decided]
    assert all(v.p_holm == pytest.approx(min(1.0, 4 * decided[0].p)) for v in decided)  # four equal p-values


def test_a_run_from_a_recipe_that_changed_is_marked_stale(tmp_path):
    plan = R.plan_configs(["aux"], tmp_path, recipes=("paper",), val_split=0)
    for (label, _, _), cfg in plan["aux"].items():
        write_run(cfg, rows([30.0, 25.0]), recipe_config={"lr": 0.05 if label == "with aux" else 0.1})
    text = R.reproduce("aux", tmp_path, recipes=("paper",), val_split=0, report_only=True).read_text()
    assert "| with aux **stale: the paper recipe changed since (lr 0.05 -> 0.1)** |" in text
    assert "| without aux |" in text
    assert "the paper's protocol: the test set selects" in text and "val-selected" not in text


def test_plan_arithmetic(tmp_path):
    plan = R.plan_configs(["aux"], tmp_path, recipes=("fast",), epochs=10, model_args={"stem": "imagenet"})
    configs = R.unique_configs(plan)
    est = R.estimate(configs, jobs=2, throughput=11000)
    # 10 epochs x (45,000 trained + (10,000 test + 5,000 val) x 2 flips / 3) images, at 11,000 img/s + 15 s start-up
    assert [r["images"] for r in est["runs"]] == [550_000, 550_000]
    assert est["minutes"] == pytest.approx(2 * (50 + 15) / 2 / 60)
    measured = R.estimate(configs, jobs=1)
    assert measured["runs"][0]["source"].startswith("H100") and measured["minutes"] == pytest.approx(2 * (550_000 / 16000 + 15) / 60)


def test_plan_merges_equal_configurations_counts_disk_and_names_what_it_cannot_test(tmp_path):
    plan = R.plan_configs(["fig6", "vgg-patience"], tmp_path, recipes=("paper",), epochs=30)
    configs = R.unique_configs(plan)
    assert len(configs) == 3 + 5 - 1  # fig6's VGG19 is patience 5, the paper's own: one run
    est = R.estimate(configs)
    vgg = next(r for r in est["runs"] if r["run"] == "cifar10-paper-vgg19-val5000")
    assert vgg["disk_gb"] == pytest.approx(139.6e6 * 12 / 1e9, rel=0.01)  # VGG19's 1.1 GB state and its model
    assert est["peak_disk_gb"] > est["disk_gb"]
    lines = R.untestable(plan)
    assert any("patience 10 beats patience 5" in line and "not comparable at 30 epochs" in line for line in lines)
    assert not any("converges faster" in line for line in lines)  # the first 30 epochs, exactly: early claims hold
    compressed = R.untestable(R.plan_configs(["fig6"], tmp_path, recipes=("paper",), epochs=30, compress=True))
    assert any("converges faster than GoogLeNet" in line and "compressed" in line for line in compressed)


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
