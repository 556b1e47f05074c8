"""zoo.hub.cards and `zoo card RUN_DIR`: every number on a card recomputed from the checkpoint and the run."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import struct
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

import zoo
from zoo.cli import main
from zoo.core.errors import CheckpointError
from zoo.core.files import sha256_file
from zoo.data.datasets import get_spec
from zoo.hub.cards import build_card, metrics_from_history, write_run_card
from zoo.hub.pretrained import save_pretrained
from zoo.hub.weights import CARD_NAME, CONFIG_NAME, CURVE_NAME, WEIGHTS_NAME, CheckpointMeta

ARCH = "resnet18"
KWARGS = {"num_classes": 10, "in_chans": 1}


def epoch_row(epoch: int, test_err: float) -> dict:
    return {
        "epoch": epoch, "lr": 0.1 / epoch, "train_loss": 2.0 / epoch, "train_err": test_err - 1, "test_loss": 2.1 / epoch,
        "test_err": test_err, "test_top5_err": test_err / 4, "epoch_s": 3.0, "img_s": 20000.0,
    }


@pytest.fixture(scope="module")
def run_dir(module_tmp) -> Path:
    """A finished run as the trainer leaves it (weights untrained: a card only describes them)."""
    torch.manual_seed(0)
    run_dir = module_tmp("run")
    history = [epoch_row(1, 40.0), epoch_row(2, 20.0)]
    run = {
        "arch": ARCH, "model_kwargs": KWARGS, "dataset": "mnist", "dataset_source": "npz:mnist.npz", "config": {},
        "world_size": 1, "dataset_sha256": "cd" * 32, "recipe": "paper",
        "recipe_config": {"lr": 0.01, "momentum": 0.9, "batch_size": 256}, "seed": 0, "epochs": 2,
        "zoo_version": zoo.__version__, "git_commit": "", "input_size": [1, 32, 32], "mean": [0.1307],
        "std": [0.3081], "label_names": [str(i) for i in range(10)],
    }
    (run_dir / "run.json").write_text(json.dumps(run))
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    save_pretrained(
        zoo.create_model(ARCH, **KWARGS), run_dir / "model", arch=ARCH, model_kwargs=KWARGS, tag="mnist_paper",
        data=get_spec("mnist").data_config(dataset_sha256=run["dataset_sha256"]), recipe="paper",
        metrics={"final_test_err": 20.0, "final_test_top5_err": 5.0, "best_epoch": 2}, history=history,
    )
    return run_dir


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def table_value(card: str, row: str) -> str:
    match = re.search(rf"^\| {re.escape(row)} \| (.+) \|$", card, re.MULTILINE)
    assert match, f"no '{row}' row in the card"
    return match.group(1)


@pytest.mark.slow
def test_card_numbers_match_the_checkpoint(run_dir):
    folder = run_dir / "model"
    card = ModelCard.load(folder / CARD_NAME)
    results = {r.metric_name: r for r in card.data.eval_results}
    assert results["Top-1 accuracy (%)"].metric_value == 80.0 and results["Top-1 error (%)"].metric_value == 20.0
    assert results["Top-5 accuracy (%)"].metric_value == 95.0
    assert {(r.dataset_type, r.dataset_split, r.task_type) for r in results.values()} == {
        ("ylecun/mnist", "test", "image-classification")
    }
    assert card.data.model_name == "resnet18.mnist_paper"

    text = card.text
    model = zoo.create_model(ARCH, **KWARGS)
    info = zoo.model_info(ARCH, input_size=(1, 32, 32), **KWARGS)
    params = int(table_value(text, "parameters").replace(",", ""))
    assert params == sum(p.numel() for p in model.parameters()) == info["params"]
    assert table_value(text, "MACs").startswith(f"{info['macs']:,} at 1x32x32")
    size, digest = re.fullmatch(r"`model.safetensors`, ([\d,]+) bytes, sha256 `([0-9a-f]{64})`, float32", table_value(text, "weights")).groups()
    assert int(size.replace(",", "")) == (folder / WEIGHTS_NAME).stat().st_size
    assert digest == sha256_file(folder / WEIGHTS_NAME) == json.loads((folder / CONFIG_NAME).read_text())["zoo"]["sha256"]
    assert "| MNIST | test (last epoch) | 80.00% | 20.00% | 5.00% |" in text
    assert f"![training curves]({CURVE_NAME})" in text and png_size(folder / CURVE_NAME) == (1200, 360)
    assert "optimistic" not in text  # no run history said the test set steered anything
    assert "pytorch/vision/issues/906" not in text  # the GoogLeNet note is for GoogLeNet only


@pytest.mark.slow
def test_zoo_card_rewrites_card_and_curve_from_the_run(run_dir, tmp_path, capsys):
    folder = run_dir / "model"
    kept = {name: (folder / name).read_bytes() for name in (WEIGHTS_NAME, CONFIG_NAME)}
    old_curve = (folder / CURVE_NAME).read_bytes()
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps(epoch_row(3, 12.5)) + "\n")
    latency = tmp_path / "latency.json"
    latency.write_text(json.dumps({"onnxruntime CPU, 2 threads, batch 1": 0.8123, "torch eager, batch 1": 2.5}))

    assert main(["card", str(run_dir), "--latency", str(latency), "--repo-id", "acme/resnet18-mnist"]) == 0
    assert capsys.readouterr().out.strip() == str(folder / CARD_NAME)
    card = ModelCard.load(folder / CARD_NAME)
    assert {r.metric_name: r.metric_value for r in card.data.eval_results}["Top-1 error (%)"] == 12.5
    text = card.text
    assert "| MNIST | test (last epoch) | 87.50% | 12.50% | 3.12% |" in text
    assert "`best_epoch` 2" in text  # the trainer's other numbers are kept
    assert "| onnxruntime CPU, 2 threads, batch 1 | 0.812 |" in text and "## ONNX latency" in text
    assert table_value(text, "epochs") == "3" and table_value(text, "seed") == "0"
    assert table_value(text, "`momentum`") == "`0.9`"
    assert "model = zoo.load_model('hf-hub:acme/resnet18-mnist')" in text
    assert "timm.create_model('hf-hub:acme/resnet18-mnist', pretrained=True)" in text
    assert (folder / CURVE_NAME).read_bytes() != old_curve
    assert {name: (folder / name).read_bytes() for name in kept} == kept
    assert sorted(os.listdir(folder)) == sorted([WEIGHTS_NAME, CONFIG_NAME, CARD_NAME, CURVE_NAME])


def meta_for(arch: str, **changes) -> CheckpointMeta:
    base = CheckpointMeta(
        arch=arch, model_kwargs={"num_classes": 10, "stem": "cifar"}, num_classes=10, in_chans=3,
        data=get_spec("cifar10").data_config(metrics={"final_test_err": 6.0}), zoo_version=zoo.__version__, recipe="fast",
    )
    return dataclasses.replace(base, **changes)


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "kernel"), [("googlenet_res3x3", "3x3"), ("googlenet_5x5", "5x5")])
def test_googlenet_cards_carry_the_906_provenance_note(arch, kernel, tmp_path):
    weights = tmp_path / WEIGHTS_NAME
    weights.write_bytes(b"stand-in: a card only reports the file's size and digest")
    text = build_card(meta_for(arch), weights).text
    assert "https://github.com/pytorch/vision/issues/906" in text
    assert f"this model has {kernel} convolutions in that branch" in text
    assert "auxiliary classifiers; they are used only in training mode" in text
    no_aux = build_card(meta_for(arch, model_kwargs={"num_classes": 10, "stem": "cifar", "aux_logits": False}), weights)
    assert "auxiliary classifiers" not in no_aux.text


def test_card_without_metrics_has_no_model_index(tmp_path):
    weights = tmp_path / WEIGHTS_NAME
    weights.write_bytes(b"x")
    card = build_card(meta_for("resnet18", data=get_spec("cifar10").data_config()), weights)
    assert not card.data.eval_results and "model-index" not in str(card)
    assert "No test metrics recorded." in card.text


def test_card_metrics_are_the_last_epoch_not_the_best():
    history = [epoch_row(1, 30.0), epoch_row(2, 10.0), epoch_row(3, 11.0)]
    assert metrics_from_history(history) == {"final_test_err": 11.0, "final_test_top5_err": 2.75}
    with pytest.raises(CheckpointError, match="at least one finished epoch"):
        metrics_from_history([])


def test_run_dir_problems_say_what_to_pass(run_dir, tmp_path, capsys):
    with pytest.raises(CheckpointError, match="run.json not found: pass the run directory that zoo train wrote"):
        write_run_card(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"arch": ARCH}))
    with pytest.raises(CheckpointError, match="run.json lacks model_kwargs, dataset, .*not a run record zoo train wrote"):
        write_run_card(tmp_path)
    run = json.loads((run_dir / "run.json").read_text())
    (tmp_path / "run.json").write_text(json.dumps(run))
    (tmp_path / "metrics.jsonl").write_text(json.dumps(epoch_row(1, 50.0)) + "\n{truncated")
    with pytest.raises(CheckpointError, match="metrics.jsonl:2 is not a JSON line"):
        write_run_card(tmp_path)
    (tmp_path / "metrics.jsonl").write_text(json.dumps(epoch_row(1, 50.0)) + "\n")
    with pytest.raises(CheckpointError, match="the run has not finished"):
        write_run_card(tmp_path)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / WEIGHTS_NAME).symlink_to(run_dir / "model" / WEIGHTS_NAME)
    (tmp_path / "run.json").write_text(json.dumps({**run, "arch": "vgg11"}))
    assert main(["card", str(tmp_path)]) == 2
    assert "does not hold the run's 'vgg11' weights" in capsys.readouterr().err


def test_the_test_steering_note_follows_what_the_run_did():
    from zoo.hub.cards import run_notes

    dropped = [{"epoch": 1, "lr": 0.1, "test_err": 30.0}, {"epoch": 2, "lr": 0.01, "test_err": 29.0}]
    assert "optimistic" in run_notes({"schedule": "plateau"}, dropped)[0]
    assert run_notes({"schedule": "step"}, dropped) == []  # GoogLeNet's step schedule watches nothing
    assert run_notes({"schedule": "plateau"}, [dict(r, lr=0.1) for r in dropped]) == []  # the LR never dropped
    assert run_notes({"schedule": "plateau"}, [dict(r, val_err=30.0) for r in dropped]) == []  # a val split steered


def test_runs_of_different_models_get_different_card_names():
    from zoo.train.loop import run_tag
    from zoo.train.recipes import get_recipe

    paper = get_recipe("paper", "googlenet", "cifar10")
    assert run_tag("cifar10", paper, {}) == "cifar10_paper"
    assert run_tag("cifar10", paper, {"aux_logits": False}) == "cifar10_paper_aux_logits-false"
    fast = get_recipe("fast", "googlenet", "cifar10")
    assert run_tag("cifar10", fast, {"stem": "cifar"}) == "cifar10_fast"  # the recipe's own stem adds nothing
    assert run_tag("cifar10", fast, {"stem": "imagenet"}) == "cifar10_fast_stem-imagenet"
