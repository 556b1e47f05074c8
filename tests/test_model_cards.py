"""The cards of past runs (reports/*/cards/) agree with their architecture and with the runs that produced them."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

import zoo

REPO = Path(__file__).resolve().parents[1]
CARDS = sorted((REPO / "reports").glob("*/cards/*/README.md"))
RUNS = {p.parent.name: p.parent for p in (REPO / "reports").glob("*/runs/*/metrics.jsonl")}
RUNS |= {"cifar10-fast-resnet18": REPO / "reports" / "h200" / "resnet18-cifar10-fast"}


def table_value(text: str, key: str) -> str:
    return re.search(rf"^\| {key} \| (.+) \|$", text, re.MULTILINE).group(1)


def test_there_are_cards():
    assert len(CARDS) >= 12


@pytest.mark.parametrize("card", CARDS, ids=[c.parent.name for c in CARDS])
def test_card_params_macs_and_file_size_match_the_architecture(card):
    config = json.loads((card.parent / "config.json").read_text())
    arch = config["architecture"].removeprefix("zoo_")
    kwargs = config["model_args"]
    text = card.read_text()
    info = zoo.model_info(arch, input_size=tuple(config["pretrained_cfg"]["input_size"]), **kwargs)
    assert int(table_value(text, "parameters").replace(",", "")) == info["params"]
    assert table_value(text, "MACs").startswith(f"{info['macs']:,} at ")
    size = int(re.match(r"`model.safetensors`, ([\d,]+) bytes", table_value(text, "weights")).group(1).replace(",", ""))
    with torch.device("meta"):
        tensor_bytes = sum(t.numel() * t.element_size() for t in zoo.create_model(arch, **kwargs).state_dict().values())
    assert tensor_bytes < size < tensor_bytes + 64 * 1024  # safetensors: a JSON header, then the raw tensors


@pytest.mark.parametrize("card", CARDS, ids=[c.parent.name for c in CARDS])
def test_card_metrics_are_the_runs_last_epoch(card):
    run = RUNS[card.parent.name]
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    results = {r.metric_type: r.metric_value for r in ModelCard.load(card).data.eval_results}
    assert results["error"] == pytest.approx(last["test_err"], abs=0.005)
    assert results["accuracy"] == pytest.approx(100 - last["test_err"], abs=0.005)
    assert json.loads((run / "run.json").read_text())["arch"] == json.loads((card.parent / "config.json").read_text())["architecture"].removeprefix("zoo_")
