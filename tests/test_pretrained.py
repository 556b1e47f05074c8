"""The bundled pretrained tags: pinned, loadable every way users load, and as accurate as their cards say.

Each tag in zoo/pretrained.json is a folder in model_cards/ trained by zoo's own
trainer. With the real data present (CI has it), every tag's accuracy on the
full test set is measured again and must equal its card's within 0.1 point,
and its ONNX export (fp32 and int8) is checked on the same test set.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import timm
import torch
from huggingface_hub import ModelCard

import zoo
import zoo.models.registry
from zoo.cli import main
from zoo.core.errors import CheckpointError, HubError
from zoo.core.files import sha256_file
from zoo.data.loading import load_dataset
from zoo.export.bench import ort_predict, quantize_int8, top1
from zoo.export.onnx import check_parity, create_session
from zoo.hub.pretrained import publishable_files
from zoo.hub.rundir import RunDir
from zoo.hub.weights import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, load_tensors

REPO = Path(__file__).resolve().parents[1]
TAGS = zoo.list_models(pretrained=True)
MAX_BUNDLED_BYTES = 24 * 2**20


def entry(name: str) -> zoo.models.registry.PretrainedTag:
    return zoo.get_pretrained_tag(name)


def card_accuracy(name: str) -> float:
    results = ModelCard.load(entry(name).bundled / CARD_NAME).data.eval_results
    return next(r.metric_value for r in results if r.metric_type == "accuracy")


def test_the_zoo_ships_the_headline_weights_within_budget():
    assert {"googlenet_res5x5.cifar10_paper", "googlenet_res5x5.mnist_paper"} <= set(TAGS)
    assert sorted(p.name for p in (REPO / "model_cards").iterdir() if p.is_dir()) == TAGS  # no folder without a tag
    assert sum((entry(t).bundled / WEIGHTS_NAME).stat().st_size for t in TAGS) <= MAX_BUNDLED_BYTES


@pytest.mark.parametrize("name", TAGS)
def test_bundled_folder_is_pinned_fp16_and_push_ready(name):
    tag = entry(name)
    weights = tag.bundled / WEIGHTS_NAME
    assert sha256_file(weights) == tag.sha256 == json.loads((tag.bundled / CONFIG_NAME).read_text())["zoo"]["sha256"]
    tensors, _ = load_tensors(weights)
    assert {t.dtype for t in tensors.values() if t.is_floating_point()} == {torch.float16}
    assert not any(k.startswith(("aux1.", "aux2.")) for k in tensors)  # training-only heads are not shipped
    assert sorted(publishable_files(tag.bundled)) == sorted(p.name for p in tag.bundled.iterdir())


@pytest.mark.parametrize("name", TAGS)
def test_bundled_tag_ships_the_run_records_behind_its_card(name):
    folder = entry(name).bundled
    run, history = RunDir(folder).read_run(), RunDir(folder).read_history()
    assert run.arch == entry(name).arch and run.dataset == entry(name).dataset and len(history) == run.epochs
    assert "+dirty" not in (run.git_commit or "+dirty") or run.corrections  # the commit it ran, or the fix recorded
    card = (folder / CARD_NAME).read_text()
    assert f"| epochs | {run.epochs} |" in card and f"`{run.git_commit}`" in card
    assert (folder / "training_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_refreshing_a_card_refuses_weights_that_measure_otherwise(tmp_path, monkeypatch):
    import zoo.train.release as release

    name = "googlenet_res5x5.cifar10_paper"
    monkeypatch.setattr(release, "evaluate_model", lambda *a, **k: {"err": 50.0, "top5_err": 9.0, "images": 10000,
                                                                       "per_class_acc": {}})
    before = {p.name: p.read_bytes() for p in entry(name).bundled.iterdir()}
    with pytest.raises(CheckpointError, match="measures 50.0000% top-1 error on the test set, its weights' metadata"):
        release.release(entry(name).bundled, "cifar10_paper", card_only=True)
    assert {p.name: p.read_bytes() for p in entry(name).bundled.iterdir()} == before


@pytest.mark.slow
@pytest.mark.parametrize("name", TAGS)
def test_tag_loads_the_same_through_zoo_torch_hub_and_timm(name):
    tag = entry(name)
    x = torch.randn(2, *tag.data.input_size, generator=torch.Generator().manual_seed(0))
    ours = zoo.create_model(name, pretrained=True).eval()
    hub = torch.hub.load(str(REPO), tag.arch, source="local", pretrained=True, tag=tag.tag).eval()
    via_timm = timm.create_model(f"zoo_{name}", pretrained=True).eval()
    with torch.no_grad():
        expected = ours(x)
        assert torch.equal(hub(x), expected) and torch.equal(via_timm(x), expected)
    assert via_timm.pretrained_cfg["mean"] == tag.data.mean and via_timm.pretrained_cfg["num_classes"] == len(tag.data.label_names)
    untrained = zoo.create_model(name).eval()  # negative control: the tag's architecture without its weights
    with torch.no_grad():
        assert not torch.allclose(untrained(x), expected)


def test_tampered_bundled_copy_is_refused(tmp_path, monkeypatch):
    tag = entry(TAGS[0])
    copy = Path(shutil.copytree(tag.bundled, tmp_path / tag.name))
    data = bytearray((copy / WEIGHTS_NAME).read_bytes())
    data[-1] ^= 1  # one bit of the last tensor
    (copy / WEIGHTS_NAME).write_bytes(bytes(data))
    monkeypatch.setattr(zoo.models.registry, "BUNDLED_DIR", tmp_path)
    with pytest.raises(CheckpointError, match=f"sha256 mismatch .* tag {re.escape(tag.name)} expects {tag.sha256}"):
        zoo.create_model(tag.name, pretrained=True)
    shutil.rmtree(copy)
    with pytest.raises(HubError, match="not published on the Hub yet and this install has no bundled copy"):
        zoo.create_model(tag.name, pretrained=True)


@pytest.mark.parametrize("name", TAGS)
def test_card_usage_snippet_runs_when_copied(name, capsys):
    text = (entry(name).bundled / CARD_NAME).read_text()
    snippet = re.search(r"## Usage\n\n.*?```python\n(.*?)```", text, re.DOTALL).group(1)
    assert f"zoo.create_model({name!r}, pretrained=True)" in snippet
    exec(compile(snippet, f"{name} card", "exec"), {})
    label, probability = capsys.readouterr().out.split()
    assert label in entry(name).data.label_names and 0 < float(probability) <= 1


@pytest.mark.real_data
@pytest.mark.parametrize("name", TAGS)
@pytest.mark.slow
def test_zoo_eval_on_the_tag_alone_confirms_the_cards_accuracy(name, data_dir, tmp_path, capsys):
    assert main(["eval", name, "--data-dir", str(data_dir), "--device", "cpu", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["images"] == 10000 and result["dataset"] == entry(name).dataset
    assert 100 - result["err"] == pytest.approx(card_accuracy(name), abs=0.1)
    assert result["err"] == pytest.approx(entry(name).data.metrics["final_test_err"], abs=0.1)
    assert f"top-1 error {result['err']:.2f}%" in capsys.readouterr().out


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.parametrize("name", TAGS)
def test_onnx_export_matches_and_int8_loses_at_most_half_a_point(name, data_dir, tag_onnx, tmp_path):
    tag = entry(name)
    model = zoo.create_model(name, pretrained=True).eval()
    path = tag_onnx(name)
    check_parity(model, path, input_size=tag.data.input_size)
    data = load_dataset(tag.dataset, data_dir, download=False)
    fp32 = top1(ort_predict(create_session(path)), data, 10000, 500)
    int8_path = quantize_int8(path, tmp_path / "model.int8.onnx", data, 256)  # calibrated on training images
    int8 = top1(ort_predict(create_session(int8_path)), data, 10000, 500)
    assert 100 * fp32 == pytest.approx(card_accuracy(name), abs=0.1)
    assert 100 * (fp32 - int8) <= 0.5, f"int8 loses {100 * (fp32 - int8):.2f} points"


def test_the_mnist_reruns_output_hash_is_stored_beside_its_run_record():
    """The rerun's records say its output was bit-identical to the bundled file: the hash they store is that file's."""
    folder = REPO / "model_cards" / "googlenet_res5x5.mnist_paper"
    notes = " ".join(json.loads((folder / "run.json").read_text())["notes"])
    stored = re.search(r"Output hash: sha256 ([0-9a-f]{64})", notes).group(1)
    assert stored == sha256_file(folder / "model.safetensors")
    assert stored == entry("googlenet_res5x5.mnist_paper").sha256
    assert f"Output hash: sha256 {stored}" in (folder / "README.md").read_text()
