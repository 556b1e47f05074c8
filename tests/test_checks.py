"""Checks before work (issue 21): every input validated before anything is computed or written, one test per case.

Each refusal is asserted by zoo's error type (or exit status 2 and one line on stderr), a message fragment that
says what to pass, and the disk afterwards: nothing written.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path

import onnx
import pytest
import torch
from PIL import Image

import zoo
import zoo.data.loading
from zoo.cli import main
from zoo.core.errors import ArgumentError, CheckpointError, DataError, HubError, TrainingError, UnknownModelError
from zoo.export.__main__ import main as export_main
from zoo.export.onnx import MAX_OPSET, MIN_OPSET, check_parity, export_onnx
from zoo.export.report import compare
from zoo.hub.pretrained import load_weights, publishable_files, save_pretrained
from zoo.hub.rundir import LoopState, save_state
from zoo.hub.weights import load_tensors, read_metadata, save_tensors
from zoo.inference.runtime import predict
from zoo.models import registry

from conftest import REPO, SMALL, TINY


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (links as where they point), to compare before and after a refused command."""
    return {str(p.relative_to(root)): (str(p.readlink()).encode() if p.is_symlink() else p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file() or p.is_symlink()}


def one_line(capsys, fragment: str) -> str:
    """The refused command's stderr: one line of ours holding ``fragment``, no traceback."""
    err = capsys.readouterr().err
    assert fragment in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def saved_once(tiny_arch, module_tmp) -> Path:
    """A saved model of the guide's tiny family (conftest.py): what is checked here is the files, not the architecture."""
    model = zoo.create_model(tiny_arch, num_classes=7, in_chans=1, stem="cifar")
    return save_pretrained(model, module_tmp("saved") / "r18")


@pytest.fixture
def saved(saved_once, tmp_path) -> Path:
    """A saved tinynet folder of this test's own, to damage at will."""
    return Path(shutil.copytree(saved_once, tmp_path / "r18"))


def restamped(folder: Path, out: Path, data: dict | None = None, **changes: str) -> Path:
    """The folder's weights as a bare file (no config.json pins it) with metadata fields replaced (None: removed) and
    fields of its data record replaced by ``data``'s."""
    tensors, _ = load_tensors(folder / "model.safetensors")
    metadata = {**read_metadata(folder / "model.safetensors"), **changes}
    metadata["data"] = json.dumps({**json.loads(metadata["data"]), **(data or {})})
    save_tensors(out, tensors, {k: v for k, v in metadata.items() if v is not None})
    return out


# ---------------------------------------------------------------------------- metadata, on load


DATA_FIELDS = ("input_size", "mean", "std", "metrics", "crop_pct", "label_names")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("input_size", [1, 100000, 100000], "input_size (1, 100000, 100000) is too large: at most 4096 channels and 4096 pixels"),
    ("input_size", [3, 32, 32], "mean must be 3 finite number(s), one per channel"),
    ("input_size", [1, 32], "input_size must be 3 whole numbers > 0 (C, H, W)"),
    ("input_size", [1, 0, 32], "input_size must be 3 whole numbers > 0 (C, H, W)"),
    ("mean", [0.1, 0.2], "mean must be 1 finite number(s), one per channel"),
    ("std", [0.0], "std must be > 0 for every channel"),
    ("std", [float("nan")], "std must be 1 finite number(s), one per channel"),
    ("num_classes", 10**11, "num_classes=100000000000 must be a whole number >= 0 and <= 1,000,000"),
    ("num_classes", True, "num_classes=True must be a whole number"),
    ("num_classes", 8, "num_classes=8 but model_kwargs has num_classes=7; they must agree"),
    ("in_chans", 5000, "in_chans=5000 must be a whole number >= 1 and <= 4,096"),
    ("model_kwargs", [1, 2], "model_kwargs must be a mapping"),
    ("metrics", [1], "metrics must be a mapping"),
    ("crop_pct", 16, "crop_pct must be a number in [0.1, 10], got 16"),
    ("label_names", ["a"], "1 label names for num_classes=7"),
])
def test_weights_metadata_refused_on_load_naming_the_file(field, value, message, saved_once, tmp_path):
    change = {"data": {field: value}} if field in DATA_FIELDS else {field: json.dumps(value)}
    path = restamped(saved_once, tmp_path / "w.safetensors", **change)
    with pytest.raises(CheckpointError, match=re.escape(message)) as info:
        zoo.load_model(path)
    assert str(path) in str(info.value)


def test_weights_of_an_unknown_arch_are_refused_naming_the_file(saved_once, tmp_path):
    path = restamped(saved_once, tmp_path / "w.safetensors", arch="resnet9000")
    with pytest.raises(CheckpointError, match="holds weights for 'resnet9000', which this zoo version does not know"):
        zoo.load_model(path)


def test_a_huge_input_size_is_refused_before_predict_resizes_an_image(saved_once, tmp_path, monkeypatch):
    import zoo.inference.runtime as P

    image = tmp_path / "x.png"
    Image.new("L", (28, 28)).save(image)
    path = restamped(saved_once, tmp_path / "w.safetensors", data={"input_size": [1, 100000, 100000]})
    monkeypatch.setattr(P, "image_array", lambda *a: pytest.fail("an image was resized"))
    with pytest.raises(CheckpointError, match="too large"):
        predict([image], path)


@pytest.mark.parametrize("kwargs", [{}, {"num_classes": 3}])
def test_a_classifier_other_than_the_metadata_says_is_refused_not_replaced(kwargs, saved_once, tmp_path):
    """num_classes=10 recorded over a 7-row classifier: timm-style loading used to put a fresh head in silently."""
    path = restamped(saved_once, tmp_path / "w.safetensors", num_classes="10",
                     model_kwargs=json.dumps({"num_classes": 10, "in_chans": 1, "stem": "cifar"}))
    with pytest.raises(CheckpointError, match="holds a classifier of 7 classes but its metadata records num_classes=10"):
        zoo.load_model(path, **kwargs)


def test_a_first_convolution_other_than_the_metadata_says_is_refused(saved_once, tmp_path):
    path = restamped(saved_once, tmp_path / "w.safetensors", in_chans="3",
                     data={"input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.25] * 3},
                     model_kwargs=json.dumps({"num_classes": 7, "in_chans": 3, "stem": "cifar"}))
    with pytest.raises(CheckpointError, match="first convolution for 1 channels but its metadata records in_chans=3"):
        zoo.load_model(path)


def timm_folder(saved: Path, **config: object) -> Path:
    """``saved`` as timm's save_for_hf leaves it: weights without zoo metadata, config.json with ``config``."""
    tensors, _ = load_tensors(saved / "model.safetensors")
    save_tensors(saved / "model.safetensors", tensors, {"format": "pt"})
    (saved / "config.json").write_text(json.dumps({"architecture": "zoo_tinynet", "num_classes": 7, **config}))
    return saved


@pytest.mark.parametrize(("config", "message"), [
    ({"model_args": [1]}, "field model_args is [1], not a JSON object"),
    ({"model_args": {"num_classes": 7, "in_chans": 1}, "pretrained_cfg": "cifar"}, "field pretrained_cfg is 'cifar'"),
    ({"model_args": {"num_classes": 7, "in_chans": 1}, "pretrained_cfg": {"input_size": [1, 9999, 9999]}}, "too large"),
    ({"model_args": {"num_classes": 7, "in_chans": 1}, "pretrained_cfg": {"input_size": [1, 32, 32], "mean": [0.5],
                                                                            "std": [0]}}, "std must be > 0"),
])
def test_a_timm_config_with_malformed_fields_is_refused_naming_it(config, message, saved):
    folder = timm_folder(saved, **config)
    with pytest.raises(CheckpointError, match=re.escape(message)) as info:
        zoo.load_model(folder)
    assert str(folder / "config.json") in str(info.value)


# ---------------------------------------------------------------------------- metadata, on save


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"std": (0.0,)}, "std must be > 0 for every channel"),
    ({"mean": (0.5, 0.5), "std": (0.2, 0.2)}, "mean must be 1 finite number(s)"),
    ({"mean": 0.5, "std": (0.2,)}, "mean must be 1 finite number(s), one per channel, got 0.5"),
    ({"crop_pct": 100}, "crop_pct must be a number in [0.1, 10], got 100"),
    ({"input_size": (1, 32)}, "input_size must be 3 whole numbers > 0 (C, H, W)"),
    ({"label_names": ("a", 2)}, "label_names must be strings"),
])
def test_a_data_config_refuses_fields_that_would_not_load(kwargs, message):
    base = zoo.create_model("resnet18", num_classes=7, in_chans=1, stem="cifar").data_config
    with pytest.raises(DataError, match=re.escape(message)):
        dataclasses.replace(base, **kwargs)
    dataclasses.replace(base, crop_pct=32 / 28)  # the negative control: a valid change passes


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"input_size": (1, 100000, 100000)}, "is too large"),
    ({"input_size": (3, 32, 32), "mean": (0.5,) * 3, "std": (0.2,) * 3}, "has 3 channel(s) but in_chans=1"),
    ({"metrics": {"final_test_err": 120.0}}, "must be a percentage in [0, 100]"),
])
def test_save_pretrained_refuses_metadata_that_would_not_load(kwargs, message, tmp_path):
    model = zoo.create_model("resnet18", num_classes=7, in_chans=1, stem="cifar")
    with pytest.raises(CheckpointError, match=re.escape(message)) as info:
        save_pretrained(model, tmp_path / "out", data=dataclasses.replace(model.data_config, **kwargs))
    assert f"cannot save {tmp_path / 'out'}" in str(info.value)
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------- model arguments


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"num_classes": 10**11}, "num_classes=100000000000 must be >= 0 and <= 1,000,000"),
    ({"in_chans": 5000}, "in_chans=5000 must be >= 1 and <= 4,096"),
    ({"drop_rate": 1.0}, "resnet18: drop_rate=1.0 must be >= 0 and < 1"),
    ({"drop_path_rate": -0.1}, "resnet18: drop_path_rate=-0.1 must be >= 0 and < 1"),
])
def test_model_arguments_out_of_bounds_are_argument_errors_before_any_allocation(kwargs, message):
    with pytest.raises(ArgumentError, match=re.escape(message)):
        zoo.create_model("resnet18", **kwargs)


def test_num_classes_beyond_bounds_through_timm_is_the_same_argument_error():
    import timm

    with pytest.raises(ArgumentError, match=re.escape("num_classes=100000000000 must be >= 0 and <= 1,000,000")):
        timm.create_model("zoo_resnet18", num_classes=10**11)


def test_num_classes_beyond_bounds_on_the_command_line_is_one_line(capsys):
    assert main(["info", "resnet18", "--num-classes", str(10**11)]) == 2
    one_line(capsys, "num_classes=100000000000 must be >= 0 and <= 1,000,000")


@pytest.mark.parametrize(("size", "message"), [(["3", "100000", "100000"], "input_size (3, 100000, 100000) is too large"),
                                             (["3", "32", "-1"], "input_size must be 3 whole numbers > 0")])
def test_info_input_size_is_checked_before_counting(size, message, capsys):
    assert main(["info", "resnet18", "--input-size", *size]) == 2
    one_line(capsys, message)


def test_train_init_weights_with_bad_metadata_are_refused_before_the_data(saved_once, tmp_path, capsys, monkeypatch):
    import zoo.train.loop as T

    path = restamped(saved_once, tmp_path / "w.safetensors", data={"std": [0]})
    monkeypatch.setattr(T, "prepare_data", lambda *a, **k: pytest.fail("the data was loaded"))
    assert main(["train", "tinynet", *TINY, "--init", str(path), "--out", str(tmp_path / "run")]) == 2
    one_line(capsys, f"{path} has malformed zoo metadata (the data config: std must be > 0")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", [None, 5, ["resnet18"]])
def test_a_model_name_that_is_not_a_string_is_an_argument_error(name):
    with pytest.raises(ArgumentError, match="a model name is a string such as 'resnet18'"):
        zoo.create_model(name)


def test_an_empty_model_name_is_an_unknown_model():
    with pytest.raises(UnknownModelError, match="unknown model ''"):
        zoo.create_model("")


def test_torch_hub_passes_pretrained_as_a_string_and_is_refused():
    with pytest.raises(ArgumentError, match="pretrained must be True or False, got 'no'"):
        torch.hub.load(str(REPO), "resnet18", source="local", pretrained="no")


# ---------------------------------------------------------------------------- the package's tags file


@pytest.fixture
def damaged_tags(tmp_path, monkeypatch):
    """damage(edit): the registry reads a copy of pretrained.json that ``edit`` (entries -> JSON or text) wrote."""
    original = json.loads(registry.TAGS_FILE.read_text())

    def damage(edit) -> Path:
        changed = edit(json.loads(json.dumps(original)))
        path = tmp_path / "pretrained.json"
        path.write_text(changed if isinstance(changed, str) else json.dumps(changed))
        monkeypatch.setattr(registry, "TAGS_FILE", path)
        registry._tags.cache_clear()
        return path

    yield damage
    registry._tags.cache_clear()  # before monkeypatch restores TAGS_FILE: the next read is of the real file


def edited(entry: int, **fields):
    def edit(entries):
        entries[entry].update(fields)
        return entries
    return edit


def edited_data(entry: int, **fields):
    def edit(entries):
        entries[entry]["data"].update(fields)
        return entries
    return edit


def dropped(field: str):
    def edit(entries):
        del entries[0][field]
        return entries
    return edit


@pytest.mark.parametrize(("edit", "message"), [
    (lambda entries: "[{", "is damaged (JSONDecodeError"),
    (lambda entries: {"tags": entries}, "not a JSON list of tag entries"),
    (lambda entries: [5, *entries], "entry 0 is a JSON int, not an object"),
    (dropped("sha256"), "entry 0 (googlenet_res5x5.cifar10_paper) lacks sha256"),
    (edited(0, recipe=5), "entry 0 (googlenet_res5x5.cifar10_paper): recipe=5 must be a string"),
    (edited(0, model_kwargs=[1]), "model_kwargs=[1] must be a mapping"),
    (edited(0, wings=2), "takes no 'wings'"),
    (edited(1, sha256="abc"), "entry 1 (googlenet_res5x5.mnist_paper): sha256='abc' is not 64 lowercase hex digits"),
    (edited(0, sha256="A" * 64), "is not 64 lowercase hex digits"),
    (edited(0, revision="main"), "revision='main' is not a 40-hex commit"),
    (edited_data(0, input_size="32"), "input_size must be 3 whole numbers > 0"),
    (edited_data(0, input_size=[3, 100000, 100000]), "is too large"),
    (edited_data(0, std=[0, 0, 0]), "std must be > 0 for every channel"),
    (edited_data(0, label_names=["a"]), "data must name its dataset and 10 label names, one per class"),
    (edited_data(0, metrics={"final_test_err": "low"}), "data.metrics must be finite numbers"),
    (edited_data(0, mirror=True, colour="red"), "only the fields"),
    (lambda entries: [entries[0], entries[0]], "pins a tag twice"),
])
def test_a_damaged_tags_file_names_the_file_and_the_entry(edit, message, damaged_tags):
    path = damaged_tags(edit)
    with pytest.raises(CheckpointError, match=re.escape(message)) as info:
        zoo.list_models(pretrained=True)
    assert str(path) in str(info.value) and "restore it" in str(info.value)


def test_a_damaged_tags_file_leaves_help_version_and_list_working(damaged_tags, capsys):
    path = damaged_tags(dropped("sha256"))
    for flag in ("--help", "--version"):
        with pytest.raises(SystemExit) as exit_info:
            main([flag])
        assert exit_info.value.code == 0
    capsys.readouterr()
    assert main(["list"]) == 0
    assert "resnet18" in capsys.readouterr().out.split()
    assert main(["list", "--pretrained"]) == 2
    one_line(capsys, f"{path} is damaged (entry 0 (googlenet_res5x5.cifar10_paper) lacks sha256)")


# ---------------------------------------------------------------------------- a finished run: release, push, resume


@pytest.fixture(scope="module")
def trained(tiny_arch, module_tmp) -> Path:
    """A finished run of the guide's tiny family (conftest.py): release, push and resume check the run's files, not
    its architecture."""
    out = module_tmp("trained") / "run"
    assert main(["train", tiny_arch, *TINY, "--out", str(out)]) == 0
    return out


@pytest.fixture
def run(trained, tmp_path) -> Path:
    """A copy of the trained run for one test to damage. Its resume state is a hard link to the shared run's: a test
    may replace it (zoo writes a new file and renames it), never write into it."""
    def copy(src: str, dst: str) -> None:
        if Path(src).name == "state.safetensors":
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)

    return Path(shutil.copytree(trained, tmp_path / "run", copy_function=copy))


def release_args(run: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["release", str(run), "t1", "--out-root", str(tmp_path / "cards"), "--tags-file", str(tmp_path / "tags.json"),
            *extra]


def as_real_data(run: Path) -> None:
    """run.json says the run trained on the real dataset, so release goes past its synthetic-data check."""
    record = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**record, "dataset_source": "npz:mnist.npz"}))


@pytest.mark.parametrize(("damage", "message"), [
    ("tags_entry", "tags.json is damaged (entry 0 (resnet18.old): sha256='abc' is not 64 lowercase hex digits)"),
    ("tags_json", "tags.json is damaged (JSONDecodeError"),
    ("run_json", "run.json lacks arch, model_kwargs"),
    ("history", "metrics.jsonl:1 is not an epoch row zoo train wrote (test_err missing or not finite numbers)"),
    ("weights", "sha256 mismatch for"),
    ("device", "'bogus' is not a device: pass auto, cpu, cuda or cuda:N"),
])
def test_release_checks_every_input_before_writing_anything(damage, message, run, tmp_path, capsys):
    tags = tmp_path / "tags.json"
    entry = {**registry.get_pretrained_tag("googlenet_res5x5.mnist_paper").to_json(), "arch": "resnet18", "tag": "old",
             "sha256": "abc"}
    tags.write_text("[{" if damage == "tags_json" else json.dumps([entry] if damage == "tags_entry" else []))
    as_real_data(run)
    if damage == "run_json":
        (run / "run.json").write_text("{}")
    elif damage == "history":
        row = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
        (run / "metrics.jsonl").write_text(json.dumps({k: v for k, v in row.items() if k != "test_err"}) + "\n")
    elif damage == "weights":
        weights = run / "model" / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])
    before = snapshot(tmp_path)
    assert main(release_args(run, tmp_path, *(["--device", "bogus"] if damage == "device" else []))) == 2
    one_line(capsys, message)
    assert snapshot(tmp_path) == before and not (tmp_path / "cards").exists()


def test_push_dry_run_refuses_a_card_whose_yaml_does_not_parse(run, capsys):
    folder = run / "model"
    assert main(["push", str(folder), "acme/r18", "--dry-run"]) == 0  # the control: the folder as written is fine
    (folder / "README.md").write_text("---\nlicense: [mit\n---\n# a card\n")
    capsys.readouterr()
    assert main(["push", str(folder), "acme/r18", "--dry-run"]) == 2
    one_line(capsys, f"{folder / 'README.md'} has a malformed YAML front matter")


@pytest.mark.parametrize("front", ["---\n- a list\n---\n", "---\nmodel-index: 5\n---\n", "---\nlicense:\tmit\n---\n"])
def test_push_refuses_card_front_matter_that_is_not_a_card(front, run):
    (run / "model" / "README.md").write_text(front + "# a card\n")
    with pytest.raises(HubError, match="has a malformed YAML front matter .*rewrite the card with `zoo card RUN_DIR`"):
        publishable_files(run / "model")


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "README.md", "training_curves.png"])
def test_push_refuses_a_file_linked_outside_the_folder(name, run, tmp_path):
    folder = run / "model"
    outside = tmp_path / f"elsewhere-{name}"
    (folder / name).rename(outside)
    (folder / name).symlink_to(outside)
    with pytest.raises(CheckpointError, match=f"{re.escape(str(folder / name))} links to .*outside"):
        publishable_files(folder)


def test_push_follows_links_that_stay_inside_the_folder(run):
    folder = run / "model"
    (folder / "training_curves.png").rename(folder / "curve-v1.png")
    (folder / "training_curves.png").symlink_to("curve-v1.png")
    assert "training_curves.png" in publishable_files(folder)


@pytest.mark.parametrize("link", ["name", "owner"])
def test_a_mirror_folder_linked_outside_the_mirror_is_refused(link, saved, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    monkeypatch.setenv("ZOO_HUB_DIR", str(mirror))
    if link == "name":
        (mirror / "acme").mkdir()
        (mirror / "acme" / "r18").symlink_to(saved)
    else:
        (mirror / "acme").symlink_to(saved.parent)
    with pytest.raises(HubError, match=r"acme/r18 links to .*outside the mirror .*copy the repo into it"):
        load_weights(zoo.create_model("tinynet", num_classes=7, in_chans=1, stem="cifar"), "hf-hub:acme/r18")


def test_a_mirror_folder_linked_inside_the_mirror_loads(saved, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    shutil.copytree(saved, mirror / "store" / "r18")
    (mirror / "acme").mkdir()
    (mirror / "acme" / "r18").symlink_to(mirror / "store" / "r18")
    monkeypatch.setenv("ZOO_HUB_DIR", str(mirror))
    torch.manual_seed(1)  # a model initialised otherwise than the saved one: only the load can make them equal
    model = load_weights(zoo.create_model("tinynet", num_classes=7, in_chans=1, stem="cifar"), "hf-hub:acme/r18")
    saved_tensors, _ = load_tensors(saved / "model.safetensors")
    assert saved_tensors and all(torch.equal(model.state_dict()[k], v) for k, v in saved_tensors.items())


def test_resume_refuses_an_empty_run_record_in_one_line_and_writes_nothing(run, capsys):
    (run / "run.json").write_text("{}")
    before = snapshot(run)
    assert main(["train", "tinynet", *TINY, "--epochs", "2", "--resume", "--out", str(run)]) == 2
    one_line(capsys, f"{run / 'run.json'} lacks arch, model_kwargs")
    assert snapshot(run) == before


def test_resume_refuses_the_state_of_another_arch_in_one_line_and_writes_nothing(run, capsys):
    other = zoo.create_model("vgg11", num_classes=10, in_chans=1, head="cifar")
    save_state(run / "state.safetensors", other, torch.optim.SGD(other.parameters(), lr=0.1, momentum=0.9), LoopState(), {})
    before = snapshot(run)
    assert main(["train", "tinynet", *TINY, "--epochs", "2", "--resume", "--out", str(run)]) == 2
    one_line(capsys, f"{run / 'state.safetensors'} is not a training state of this run's model")
    assert snapshot(run) == before


# ---------------------------------------------------------------------------- outputs, before the work


def test_eval_out_under_a_file_is_refused_before_the_evaluation(saved, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    # the 7-class weights would fail on MNIST's 10 classes: the output's message shows it was checked first
    assert main(["eval", "tinynet", "--weights", str(saved), "--dataset", "mnist", "--out", str(blocker / "ev")]) == 2
    one_line(capsys, f"cannot write {blocker / 'ev' / 'eval.json'}: {blocker} is a file")


def test_bench_out_under_a_file_is_refused_before_the_benchmark(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["bench", "resnet18", "--out", str(blocker / "bench")]) == 2
    one_line(capsys, f"{blocker} is a file, not a directory")


@pytest.mark.parametrize(("out", "message"), [
    ("file/m.onnx", "is a file, not a directory"),
    ("dir", "is a directory"),
    ("m.txt", "does not end in .onnx, which zoo predict recognises an ONNX file by; pass"),
])
def test_export_out_is_checked_before_the_export(out, message, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    before = snapshot(tmp_path)
    assert export_main(["resnet18", "--out", str(tmp_path / out)]) == 2
    one_line(capsys, message)
    assert snapshot(tmp_path) == before


@pytest.fixture
def no_benchmark(monkeypatch):
    import zoo.export.bench as B

    monkeypatch.setattr(B, "run_bench", lambda *a, **k: pytest.fail("the benchmark ran"))


@pytest.mark.parametrize(("text", "message"), [
    (None, "No such file or directory"),
    ("{", "not JSON"),
    ('[{"schema": "zoo.bench/3"}]', "a JSON list, not a results object"),
    ('{"a": 1}', "schema None; this run reads"),
    ('{"schema": "zoo.bench/3", "models": [{"name": "m"}]}', "its figures do not read (KeyError"),
    ('{"schema": "zoo.bench/3", "models": [{"name": "m", "threads": 1, "latency_ms": {"torch": {"1": {"median": 1}}}, '
     '"speedup": {}}]}', "a figure lacks a number median or a ci95 of two numbers"),
    ('{"schema": "zoo.bench/3", "models": [{"name": "m", "threads": 1, "latency_ms": {"torch": {"1": {"median": 1, '
     '"ci95": [1]}}}, "speedup": {}}]}', "a figure lacks a number median or a ci95 of two numbers"),
])
def test_bench_compare_file_is_read_before_the_benchmark(text, message, tmp_path, capsys, no_benchmark):
    old = tmp_path / "old.json"
    if text is not None:
        old.write_text(text)
    assert main(["bench", "resnet18", "--out", str(tmp_path / "out"), "--compare", str(old)]) == 2
    one_line(capsys, f"cannot compare with {old}: {message}")
    assert not (tmp_path / "out").exists()


def test_compare_of_a_list_says_it_cannot_compare(tmp_path):
    (tmp_path / "old.json").write_text("[1]")
    assert "cannot compare with" in compare(tmp_path / "old.json", {"schema": "zoo.bench/3", "models": []})


# ---------------------------------------------------------------------------- export and bench arguments


@pytest.mark.parametrize("opset", ["9", str(MIN_OPSET - 1), str(MAX_OPSET + 1)])
def test_export_opset_outside_the_exporters_range_is_refused_before_export(opset, tmp_path, capsys, monkeypatch):
    import zoo.export.__main__ as E

    monkeypatch.setattr(E, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    assert export_main(["resnet18", "--out", str(tmp_path / "m.onnx"), "--opset", opset]) == 2
    one_line(capsys, f"--opset {opset} is not one torch's ONNX exporter writes here: pass {MIN_OPSET} to {MAX_OPSET}")
    assert not any(tmp_path.iterdir())


def test_export_onnx_refuses_an_opset_before_tracing(tmp_path):
    with pytest.raises(ArgumentError, match="--opset 9 is not one"):
        export_onnx(zoo.create_model("resnet18", num_classes=10, stem="cifar"), tmp_path / "m.onnx", input_size=(3, 32, 32),
                    opset=9)
    assert not any(tmp_path.iterdir())


def test_bench_opset_outside_the_exporters_range_is_refused_before_the_benchmark(tmp_path, capsys, no_benchmark):
    assert main(["bench", "resnet18", "--opset", "9", "--out", str(tmp_path / "out")]) == 2
    one_line(capsys, "--opset 9 is not one torch's ONNX exporter writes here")


@pytest.mark.parametrize("tolerance", ["nan", "inf", "-1"])
def test_export_tolerance_must_be_finite_and_not_negative(tolerance, tmp_path, capsys, monkeypatch):
    import zoo.export.__main__ as E

    monkeypatch.setattr(E, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    assert export_main(["resnet18", "--out", str(tmp_path / "m.onnx"), "--tolerance", tolerance]) == 2
    one_line(capsys, "must be a finite number >= 0, e.g. 1e-3")


def test_check_parity_refuses_a_nan_tolerance(tmp_path):
    with pytest.raises(ArgumentError, match="NaN or inf would turn the parity check off"):
        check_parity(zoo.create_model("resnet18"), tmp_path / "m.onnx", input_size=(3, 32, 32), tolerance=float("nan"))


@pytest.mark.parametrize(("args", "message"), [
    (["--model-arg", "in_chans=1", "--input-size", "3", "32", "32"],
     "--model-arg in_chans=1 contradicts --input-size (in_chans=3); pass one of them"),
    (["--model-arg", "num_classes=5", "--num-classes", "10"],
     "--model-arg num_classes=5 contradicts --num-classes (num_classes=10); pass one of them"),
    (["--input-size", "3", "100000", "100000"], "--input-size (3, 100000, 100000) is too large"),
    (["--input-size", "3", "0", "32"], "--input-size must be 3 whole numbers > 0"),
    (["--num-classes", str(10**11)], "num_classes=100000000000 must be >= 0 and <= 1,000,000"),
])
def test_export_model_arguments_that_contradict_are_refused(args, message, tmp_path, capsys):
    assert export_main(["resnet18", "--out", str(tmp_path / "m.onnx"), *args]) == 2
    one_line(capsys, message)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("args", "message"), [
    (["--model-arg", "in_chans=1"], "--model-arg in_chans=1 contradicts --input cifar10 (in_chans=3)"),
    (["--model-arg", "num_classes=5", "--num-classes", "10"], "--model-arg num_classes=5 contradicts --num-classes"),
])
def test_bench_model_arguments_that_contradict_are_refused(args, message, tmp_path, capsys, no_benchmark):
    assert main(["bench", "resnet18", "--out", str(tmp_path / "out"), *args]) == 2
    one_line(capsys, message)


@pytest.mark.slow
def test_an_upper_case_onnx_suffix_is_exported_and_predicted(tiny_family, tmp_path):
    out = tmp_path / "M.ONNX"
    assert export_main([tiny_family, "--num-classes", "10", "--model-arg", "stem=cifar", "--input-size", "3", "32", "32",
                        "--out", str(out), "--quiet"]) == 0
    image = tmp_path / "x.PNG"
    Image.new("RGB", (40, 30)).save(image)
    assert [r["image"] for r in predict([tmp_path], out)] == [str(image)]


def onnx_with_config(path: Path, config: dict) -> Path:
    model = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["input"], ["logits"])], "g",
        [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 3, 32, 32])],
        [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [1, 3, 32, 32])]))
    model.metadata_props.add(key="zoo.config", value=json.dumps(config))
    onnx.save(model, path)
    return path


@pytest.mark.parametrize(("config", "message"), [
    ({"input_size": [3, 100000, 100000], "mean": [0.5] * 3, "std": [0.5] * 3}, "is too large"),
    ({"input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.5, 0, 0.5]}, "std must be > 0 for every channel"),
    ({"input_size": [3, 32, 32], "mean": [0.5], "std": [0.5] * 3}, "mean must be 3 finite number(s)"),
])
def test_predict_refuses_an_onnx_config_before_resizing_an_image(config, message, tmp_path):
    image = tmp_path / "x.png"
    Image.new("RGB", (32, 32)).save(image)
    path = onnx_with_config(tmp_path / "m.onnx", config)
    with pytest.raises(ArgumentError, match=re.escape(message)) as info:
        predict([image], path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------------------- training arguments and devices


@pytest.mark.parametrize(("arg", "error", "message"), [
    ("num_classes=5", TrainingError, "num_classes=5 but MNIST has 10 classes; pass num_classes >= 10"),
    (f"num_classes={10**11}", ArgumentError, "num_classes=100000000000 must be >= 0 and <= 1,000,000"),
    ("drop_rate=1.5", ArgumentError, "drop_rate=1.5 must be >= 0 and < 1"),
])
def test_train_num_classes_must_fit_the_dataset_and_the_bounds(arg, error, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "resnet18", *TINY, "--model-arg", arg, "--out", str(out)]) == 2
    one_line(capsys, message)
    assert not out.exists()
    with pytest.raises(error):
        main(["--debug", "train", "resnet18", *TINY, "--model-arg", arg, "--out", str(out)])


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def device_commands(tmp_path: Path, saved: Path, trained: Path) -> dict[str, list[str]]:
    return {
        "train": ["train", "resnet18", *SMALL, "--out", str(tmp_path / "run")],
        "eval": ["eval", "tinynet", "--weights", str(saved), "--dataset", "mnist"],
        "reproduce": ["reproduce", "fig5", "--out", str(tmp_path / "repro")],
        "release": release_args(trained, tmp_path),
    }


@pytest.mark.parametrize("command", ["train", "eval", "reproduce", "release"])
@pytest.mark.parametrize(("device", "message"), [
    ("cuda", "no CUDA device: pass --device cpu"),
    ("cuda:3", "no CUDA device: pass --device cpu"),
    ("bogus", "--device 'bogus' is not a device: pass auto, cpu, cuda or cuda:N"),
    ("meta", "zoo runs on the CPU or CUDA: pass auto, cpu, cuda or cuda:N"),
])
def test_a_device_this_machine_lacks_is_one_line_before_any_work(command, device, message, saved_once, trained, tmp_path,
                                                                  capsys, no_cuda):
    argv = device_commands(tmp_path / "work", saved_once, trained)[command]
    before = snapshot(trained)
    assert main([*argv, "--device", device]) == 2
    one_line(capsys, message)
    assert not (tmp_path / "work").exists() and snapshot(trained) == before


def test_range_bounds_print_as_people_write_them():
    from zoo.core.arguments import Range

    assert str(Range(0, 10**6, open_high=False)) == ">= 0 and <= 1,000,000"
    assert str(Range(0, 1)) == ">= 0 and < 1" and str(Range(0, open_low=True)) == "> 0"
    assert Range(1, 4096, open_high=False).admits(4096) and not Range(0, 1).admits(1)


def test_a_failed_download_is_one_line(monkeypatch, capsys, tmp_path):
    """torchvision's offline error spans several lines (each mirror tried); ours stays one, naming --data-dir."""
    def offline(root, spec):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://a/, got:\n<urlopen error>\n")

    monkeypatch.delenv("ZOO_DATA_DIR", raising=False)
    monkeypatch.setattr(zoo.data.loading, "_from_torchvision", offline)
    assert main(["train", "resnet18", "--dataset", "mnist", "--epochs", "1", "--out", str(tmp_path / "r")]) == 2
    one_line(capsys, "Tried https://a/, got: <urlopen error>); pass --data-dir DIR holding mnist.npz")
