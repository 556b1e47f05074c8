"""`zoo reproduce`: every experiment's runs, curves and report, on the --quick machinery check."""
from __future__ import annotations

import re

import pytest

import zoo.reproduce as R
from zoo.errors import ZooError


@pytest.fixture(scope="module")
def quick_all(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    return out, R.reproduce("all", out, quick=True)


def test_report_has_every_experiment_with_the_papers_numbers(quick_all):
    out, report = quick_all
    text = report.read_text()
    for name, exp in R.EXPERIMENTS.items():
        section = text.split(f"## {name}: ")[1].split("\n## ")[0]
        rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| run ")]
        assert [r.split(" | ")[0][2:] for r in rows] == [run.label for run in exp.runs]
        for run, row in zip(exp.runs, rows):
            cells = row.strip("|").split(" | ")
            assert len(cells) == 2 + len(exp.recipes)
            if run.paper_err is not None:
                assert cells[1].strip().startswith(f"{run.paper_err:.2f}")
            assert all(re.match(r" ?\d+\.\d\d \(epoch 1/1, \d+ s\)", c) for c in cells[2:]), row
        for recipe in exp.recipes:
            png = out / f"{name}-{recipe}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert f"]({name}-{recipe}.png)" in section
    assert "--quick run" in text


def test_paper_numbers_are_quoted_from_the_paper():
    assert R.PAPER_FIG7 == {"googlenet": 14.56, "googlenet_5x5": 14.33, "googlenet_res3x3": 13.73, "googlenet_res5x5": 13.39}
    assert R.PAPER_AUX == {"with aux": 14.56, "without aux": 14.69}
    assert [v[1] for v in R.PAPER_PATIENCE.values()] == [14.05, 9.58, 6.73, 5.96, 6.12]


def test_shared_runs_are_trained_once(quick_all):
    out, _ = quick_all
    planned = [R._config(r, rec, out, quick=True, epochs=None, data_dir=None, device="cpu", val_split=R.DEFAULT_VAL_SPLIT).out
               for e in R.EXPERIMENTS.values() for r in e.runs for rec in e.recipes]
    # fig6's and fig7's GoogLeNet and aux's "with aux" are one run per recipe
    assert planned.count(str(out / "runs" / "cifar10-paper-googlenet-val4-quick")) == 3
    assert sorted(str(p) for p in (out / "runs").iterdir()) == sorted(set(planned))


def test_finished_runs_are_skipped(quick_all, monkeypatch):
    out, _ = quick_all

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(R, "train", no_training)
    assert R.reproduce(["fig7", "aux"], out, quick=True).is_file()


def test_report_only_trains_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(R, "run_configs", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
    text = R.reproduce("aux", tmp_path, report_only=True).read_text()
    assert "not run" in text


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
