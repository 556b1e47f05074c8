"""`zoo reproduce --plan`: time per machine from recorded rates, and each claim's power. Nothing here trains."""
from __future__ import annotations

import json
import math
import re
import statistics
from argparse import Namespace
from pathlib import Path

import pytest

import zoo.paper.plan as P
import zoo.paper.reproduce as R
from zoo.cli.commands import print_plan
from zoo.data.datasets import list_datasets

REPO = Path(__file__).resolve().parents[1]
CPU_FIG5 = dict(recipes=("paper",), seeds=tuple(range(5)), epochs=3, skip=("vgg19",), val_split=5000, device="cpu")


def _history(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("dataset", [None, *list_datasets()])
@pytest.mark.parametrize("name", [*R.EXPERIMENTS, "all"])
def test_plan_runs_for_every_experiment_and_dataset(name, dataset, tmp_path, capsys):
    """The crash of issue 29 ("VGG was built with in_chans=3 but the input has 1 channels") was fig5's VGG19."""
    args = Namespace(device="auto", jobs=1, throughput=None, seeds=[3])
    print_plan(R.plan_configs([name], tmp_path, seeds=(0, 1, 2), dataset=dataset), args)
    out = capsys.readouterr().out
    assert "GPU minutes" in out and "CPU minutes" not in out and "## Power at 3 seeds" in out


def test_the_cpu_fig5_command_is_estimated_within_2x_of_what_it_took(tmp_path, capsys):
    took = sum(_history(d)[-1]["train_seconds"] for d in (REPO / "reports/cpu-fig5/runs").iterdir()) / 60
    assert took == pytest.approx(117, abs=1)  # the README's 117 minutes
    plan = R.plan_configs(["fig5"], tmp_path, **CPU_FIG5)
    est = P.estimate(R.unique_configs(plan), "cpu")
    assert took / 2 < est["minutes"] < 2 * took and est["unmeasured"] == 0
    assert all(r["source"].startswith("reports/cpu-fig5/runs/") for r in est["runs"])
    print_plan(plan, Namespace(device="cpu", jobs=1, throughput=None, seeds=[5]))
    out = capsys.readouterr().out
    assert "CPU minutes" in out and "GPU" not in out  # only GPUs have GPU minutes


def test_rates_are_the_recorded_runs_own():
    """Each rate is its runs' trained images over their train_seconds, on the machine their run.json names."""
    for rate in P.RATES:
        folders = sorted(REPO.glob(rate.runs))
        assert folders, rate.runs
        seen = secs = 0.0
        for folder in folders:
            record = json.loads((folder / "run.json").read_text())
            kwargs = {k: v for k, v in record["model_kwargs"].items() if k not in ("num_classes", "in_chans")}
            assert (record["arch"], record["dataset"], record["recipe"]) == (rate.arch, rate.dataset, rate.recipe)
            assert {**dict(rate.model_kwargs), **kwargs} == dict(rate.model_kwargs), folder
            assert rate.machine in (record.get("machine") or rate.runs).lower()  # the older H200 runs: their folder
            for row in _history(folder):
                seen, secs = seen + row["img_s"] * row["epoch_s"], secs + row["epoch_s"]
        assert rate.img_s == pytest.approx(seen / secs, rel=0.005), rate.runs


def test_a_rate_shared_by_5_processes_is_not_divided_again_by_jobs(tmp_path):
    plan = R.plan_configs(["fig7"], tmp_path, recipes=("fast",), epochs=10, seeds=(0, 1, 2), model_args={"stem": "imagenet"})
    configs = R.unique_configs(plan)
    one, four, eight = (P.estimate(configs, "h100", jobs=j) for j in (1, 4, 8))
    assert all("(5 processes at once)" in r["source"] for r in four["runs"] + eight["runs"])
    assert four["minutes"] * 4 == pytest.approx(eight["minutes"] * 5)  # 8 jobs gain nothing over the 5 measured
    # alone, the residual 5x5 takes the rate its 110-epoch run measured alone, not a shared one
    alone = [r for r in one["runs"] if "googlenet_res5x5" in r["run"]]
    assert all("110ep (alone)" in r["source"] for r in alone) and alone[0]["img_s"] > four["runs"][-1]["img_s"]
    # the negative control: the CPU rate was measured alone, so a second job gains nothing
    cpu = R.unique_configs(R.plan_configs(["fig5"], tmp_path, **CPU_FIG5))
    assert P.estimate(cpu, "cpu", jobs=2)["minutes"] == pytest.approx(P.estimate(cpu, "cpu", jobs=1)["minutes"])


def test_a_rate_from_another_dataset_or_machine_says_so(tmp_path):
    plan = R.plan_configs(["fig7-early"], tmp_path, recipes=("paper",), epochs=5, val_split=5000, device="cpu")
    rows = P.estimate(R.unique_configs(plan), "cpu")["runs"]
    assert all("measured with dataset mnist" in r["source"] for r in rows)
    exact = P.estimate(R.unique_configs(plan), "h200")["runs"]
    assert all("measured with" not in r["source"] for r in exact)  # the H200 ran these very configurations
    vgg = R.unique_configs(R.plan_configs(["fig6"], tmp_path, recipes=("paper",), skip=("googlenet", "resnet18")))
    est = P.estimate(vgg, "h100")
    assert est["unmeasured"] == 1 and math.isnan(est["runs"][0]["minutes"]) and "--throughput" in est["runs"][0]["source"]


def test_plan_arithmetic(tmp_path):
    plan = R.plan_configs(["aux"], tmp_path, recipes=("fast",), epochs=10, model_args={"stem": "imagenet"})
    configs = R.unique_configs(plan)
    est = P.estimate(configs, jobs=2, throughput=11000)
    # 10 epochs x (45,000 trained + (10,000 test + 5,000 val) x 2 flips / 3) images, at 11,000 img/s + 15 s start-up
    assert [r["images"] for r in est["runs"]] == [550_000] * 3
    assert est["minutes"] == pytest.approx(3 * (50 + 15) / 2 / 60)


def test_plan_merges_equal_configurations_counts_disk_and_names_what_it_cannot_test(tmp_path):
    plan = R.plan_configs(["fig6", "vgg-patience"], tmp_path, recipes=("paper",), epochs=30)
    configs = R.unique_configs(plan)
    assert len(configs) == 3 + 7 - 1  # fig6's VGG19 is patience 5, the paper's own: one run
    est = P.estimate(configs)
    vgg = next(r for r in est["runs"] if r["run"] == "cifar10-paper-vgg19-val5000")
    assert vgg["disk_gb"] == pytest.approx(139.6e6 * 12 / 1e9, rel=0.01)  # VGG19's 1.1 GB state and its model
    assert est["peak_disk_gb"] > est["disk_gb"]
    lines = P.untestable(plan)
    assert any("patience 10 beats patience 5" in line and "not comparable at 30 epochs" in line for line in lines)
    assert not any("converges faster" in line for line in lines)  # the first 30 epochs, exactly: early claims hold
    compressed = P.untestable(R.plan_configs(["fig6"], tmp_path, recipes=("paper",), epochs=30, compress=True))
    assert any("converges faster than GoogLeNet" in line and "compressed" in line for line in compressed)


def test_pooled_seed_sds_are_the_records_own():
    for (dataset, metric), pooled in R.POOLED_SD.items():
        folder = REPO / pooled.source.split(":")[0]
        groups: dict[str, list[float]] = {}
        for run in folder.iterdir():
            early = R.EXPERIMENTS["fig5" if dataset == "mnist" else "fig7"].early_epochs
            value = R.run_metrics(_history(run), early).get(metric)
            if value is not None:
                groups.setdefault(re.sub(r"-seed\d+$", "", run.name), []).append(value)
        df = sum(len(v) - 1 for v in groups.values() if len(v) > 1)
        ss = sum(statistics.variance(v) * (len(v) - 1) for v in groups.values() if len(v) > 1)
        assert (pooled.df, pooled.sd) == (df, pytest.approx(math.sqrt(ss / df), abs=0.001)), (dataset, metric)


def test_power_plan_flags_what_a_design_cannot_decide(tmp_path):
    plan = R.plan_configs(["fig7", "aux"], tmp_path, recipes=("paper",), seeds=(0, 1, 2))
    rows = {r["claim"]: r for r in P.power_plan(plan, 3)}
    small = rows["true 5x5 beats 3x3 (residuals)"]  # 13.39 vs 13.73: 0.34 points
    assert small["effect"] == pytest.approx(0.34) and small["needed"] > 3 and not small["decides"]
    assert small["why"] == f"needs {small['needed']} seeds" and small["power"] < 0.8
    assert rows["5x5 with residuals is the best variant"]["effect"] == pytest.approx(0.34)  # its closest pair
    assert rows["identity mapping lowers the error more than aux heads do"]["sd"] == pytest.approx(1.639 * math.sqrt(6))
    assert "no effect size" in rows["residuals converge faster (3x3)"]["why"]
    assert rows["residuals converge faster (3x3)"]["mde"] == pytest.approx(
        R.verdicts.mde(3.261 * math.sqrt(2), 3, "better"))
    # the negative control: enough seeds for a large effect decide it
    full = R.plan_configs(["fig6"], tmp_path, recipes=("paper",), seeds=tuple(range(10)))
    gap = next(r for r in P.power_plan(full, 10) if r["claim"] == "GoogLeNet beats ResNet18")
    assert gap["needed"] <= 10 and gap["power"] > 0.8 and gap["decides"] and gap["why"] == ""
    short = R.plan_configs(["fig6"], tmp_path, recipes=("paper",), seeds=tuple(range(10)), epochs=30)
    cut = next(r for r in P.power_plan(short, 10) if r["claim"] == "GoogLeNet beats ResNet18")
    assert not cut["decides"] and cut["why"].startswith("not comparable at 30 epochs")  # power cannot fix scope
