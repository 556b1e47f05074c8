"""Reusing the bundled weights as a timm or torchvision user would: fine-tune to other classes or channels,
extract features, re-save and re-share, discover them in timm, predict on any input, fine-tune on an image
folder from the command line, and all of it from an installed wheel. Against the real libraries, no mocks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import timm
import torch
from PIL import Image

import zoo
from zoo.cli import main
from zoo.core.errors import ArgumentError, CheckpointError, ZooInputError
from zoo.hub.weights import state_dict_of

from conftest import REPO, real_data_dir

TAG = "googlenet_res5x5.cifar10_paper"
MNIST_TAG = "googlenet_res5x5.mnist_paper"


@pytest.fixture(scope="module")
def tag_state() -> dict[str, torch.Tensor]:
    return state_dict_of(zoo.create_model(TAG, pretrained=True))


def _same_backbone(model: torch.nn.Module, reference: dict[str, torch.Tensor], skip: tuple[str, ...]) -> bool:
    state = state_dict_of(model)
    return all(torch.equal(state[k], v.to(state[k].dtype)) for k, v in reference.items() if not k.startswith(skip))


@pytest.mark.parametrize("build", ["zoo", "timm", "hub"])
@pytest.mark.parametrize("kwargs", [{"num_classes": 5}, {"num_classes": 0}, {"in_chans": 1}])
def test_pretrained_with_other_classes_or_channels_keeps_the_trained_backbone(build, kwargs, tag_state):
    if build == "zoo":
        model = zoo.create_model(TAG, pretrained=True, **kwargs)
    elif build == "timm":
        model = timm.create_model(f"zoo_{TAG}", pretrained=True, **kwargs)
    else:
        model = torch.hub.load(str(REPO), "googlenet_res5x5", source="local", pretrained=True, tag="cifar10_paper", **kwargs)
    classes, chans = kwargs.get("num_classes", 10), kwargs.get("in_chans", 3)
    assert (model.num_classes, model.in_chans) == (classes, chans)
    assert _same_backbone(model, tag_state, ("fc.", "conv1."))  # every other tensor is the tag's
    if classes == 10:
        assert torch.equal(model.fc.weight, tag_state["fc.weight"].float())
        assert model.pretrained_cfg["label_names"][0] == "airplane"
    else:
        assert "label_names" not in model.pretrained_cfg  # a fresh head has no class names
    if 0 < classes != 10:  # a fresh head: none of its rows is one of the tag's trained classifier rows
        tag_rows = tag_state["fc.weight"].float()
        assert not (model.fc.weight[:, None] == tag_rows[None]).all(-1).any()
        assert not torch.isin(model.fc.bias, tag_state["fc.bias"].float()).any()
    if chans == 1:  # timm's adapt_input_conv: a grey image gives what its RGB copy gave
        assert torch.allclose(model.conv1.conv.weight, tag_state["conv1.conv.weight"].float().sum(1, keepdim=True), rtol=1e-3)
        assert len(model.pretrained_cfg["mean"]) == 1
    x = torch.rand(2, chans, 32, 32)
    assert model.eval()(x).shape == ((2, classes) if classes else (2, 1024))


def test_adapt_input_conv_matches_timm():
    from timm.models import adapt_input_conv as timm_adapt

    from zoo.hub.weights import adapt_input_conv

    w = torch.randn(8, 3, 3, 3)
    for chans in (1, 2, 3, 4, 7):
        assert torch.allclose(adapt_input_conv(chans, w), timm_adapt(chans, w)), chans


@pytest.mark.slow
def test_new_head_can_be_named_and_other_architectures_are_still_refused(tmp_path):
    model = zoo.create_model(TAG, pretrained=True, num_classes=2, label_names=["cat", "dog"])
    assert model.pretrained_cfg["label_names"] == ("cat", "dog")
    with pytest.raises(ArgumentError, match="label_names must be 2 strings"):
        zoo.create_model(TAG, pretrained=True, num_classes=2, label_names=["cat"])
    folder = zoo.save_pretrained(zoo.create_model(TAG, pretrained=True), tmp_path / "m")
    with pytest.raises(CheckpointError, match="saved with residual|was saved with"):
        zoo.load_model(folder, stem="cifar")  # a kwarg that changes the architecture is never adapted
    wrong = zoo.create_model("googlenet_5x5", num_classes=10, aux_logits=False)
    with pytest.raises(CheckpointError, match="wrong architecture"):
        zoo.load_weights(wrong, folder)


@pytest.mark.slow
@pytest.mark.parametrize("build", [zoo.create_model, lambda name, **kw: timm.create_model(f"zoo_{name}", **kw)],
                         ids=["zoo", "timm"])
def test_features_only_with_pretrained_gives_the_trained_maps(build, tag_state):
    features = build(TAG, pretrained=True, features_only=True, out_indices=(2, 4)).eval()
    assert _same_backbone(features.model, tag_state, ())
    model = zoo.create_model(TAG, pretrained=True).eval()
    x = torch.rand(2, 3, 32, 32)
    expected = model.forward_intermediates(x, indices=[2, 4], intermediates_only=True)
    assert all(torch.equal(a, b) for a, b in zip(features(x), expected))
    assert features.feature_info.channels() == [480, 1024]
    with pytest.raises(AssertionError, match="out of range"):
        timm.create_model(f"zoo_{TAG}", pretrained=True, features_only=True, out_indices=(7,))


def _roundtrip(model: torch.nn.Module, folder: Path) -> torch.nn.Module:
    loaded = zoo.load_model(folder)
    assert all(torch.equal(a, b) for a, b in zip(state_dict_of(model).values(), state_dict_of(loaded).values()))
    labels = model.pretrained_cfg.get("label_names")  # names of the classes the head has, none after a reset
    assert loaded.pretrained_cfg.get("label_names") == (labels if labels and len(labels) == model.num_classes else None)
    return loaded


@pytest.mark.slow
@pytest.mark.parametrize("change", ["as loaded", "reset_classifier", "fine-tuned"])
def test_save_pretrained_round_trips_any_zoo_model_through_zoo_and_timm(change, tmp_path):
    model = zoo.create_model(TAG, pretrained=True)
    if change == "reset_classifier":
        model.reset_classifier(3)
    elif change == "fine-tuned":
        loss = model.train()(torch.rand(4, 3, 32, 32)).logsumexp(1).mean()
        loss.backward()
        torch.optim.SGD(model.parameters(), lr=0.1).step()
        model.eval()
    folder = zoo.save_pretrained(model, tmp_path / "zoo")
    loaded = _roundtrip(model, folder)
    assert loaded.num_classes == model.num_classes and loaded.stem == "imagenet" and loaded.data_config.pad == 0
    local = timm.create_model(f"local-dir:{folder}", pretrained=True)
    assert all(torch.equal(a, b) for a, b in zip(state_dict_of(model).values(), state_dict_of(local).values()))
    timm.models.save_for_hf(model, tmp_path / "timm", safe_serialization=True)  # timm's own layout, its own writer
    via_timm = _roundtrip(model, tmp_path / "timm")
    assert via_timm.stem == "imagenet" and via_timm.aux_logits is False  # what timm's writer once lost


def test_mnist_padding_rule_travels_with_the_weights(tmp_path):
    model = zoo.create_model(MNIST_TAG, pretrained=True)
    assert model.data_config.pad == 2
    folder = zoo.save_pretrained(model, tmp_path / "m")
    assert json.loads((folder / "config.json").read_text())["pretrained_cfg"]["input_size"] == [1, 32, 32]
    assert zoo.load_model(folder).data_config.pad == 2
    assert "28x28 images zero-padded by 2 pixels" in (folder / "README.md").read_text()


@pytest.mark.slow
def test_timm_discovers_the_tags_and_a_probe_does_not_switch_the_bridge_off():
    assert {f"zoo_{TAG}", f"zoo_{MNIST_TAG}"} <= set(timm.list_pretrained("zoo_*"))
    assert timm.is_model_pretrained(f"zoo_{TAG}") and not timm.is_model_pretrained("zoo_vgg11")
    code = (f"import importlib.util, torch; torch.hub.load({str(REPO)!r}, 'resnet18', source='local'); "
            "importlib.util.find_spec('timm'); import timm; print(len(timm.list_models('zoo_*')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert int(out.split()[-1]) == len(zoo.list_models())


@pytest.mark.slow
def test_predict_takes_paths_folders_pil_images_and_tensors_in_bounded_batches(tmp_path):
    images = [Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 40, 3), np.uint8)) for i in range(5)]
    (tmp_path / "dir" / "sub").mkdir(parents=True)
    for i, image in enumerate(images):
        image.save(tmp_path / "dir" / ("sub" if i % 2 else "") / f"{i}.png")
    from_files = zoo.predict(tmp_path / "dir", TAG, top_k=2, batch_size=2)
    assert len(from_files) == 5 and all(r["image"].endswith(".png") for r in from_files)
    from_pil = zoo.predict(images[0], TAG, top_k=1)
    tensor = torch.from_numpy(np.asarray(images[0])).permute(2, 0, 1)  # uint8 CHW, as torchvision reads it
    from_tensor = zoo.predict(tensor, TAG, top_k=1)
    assert from_pil[0]["top"][0] == from_tensor[0]["top"][0]
    assert zoo.predict(tensor.float() / 255, TAG, top_k=1)[0]["top"][0]["index"] == from_pil[0]["top"][0]["index"]
    reset = zoo.create_model(TAG, pretrained=True, num_classes=3)
    assert {t["label"] for t in zoo.predict(images[0], reset, top_k=3)[0]["top"]} == {"0", "1", "2"}  # no CIFAR names


def test_predict_refuses_decompression_bombs_and_applies_exif_orientation(tmp_path, monkeypatch):
    data = real_data_dir()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(ZooInputError, match="larger than Pillow's limit of 1,000 pixels"):
        zoo.predict(tmp_path / "big.png", MNIST_TAG)
    monkeypatch.undo()
    if data is None:
        pytest.skip("real MNIST not found: the EXIF half of this test needs a real digit")
    with np.load(data / "mnist.npz") as mnist:
        x_test, y_test = mnist["x_test"], mnist["y_test"]
    seven = x_test[np.flatnonzero(y_test == 7)[0]]
    exif = Image.Exif()
    exif[0x0112] = 8  # orientation: the stored pixels are the upright image turned 90 degrees clockwise
    Image.fromarray(np.rot90(seven, -1).copy()).save(tmp_path / "seven.png", exif=exif)
    assert zoo.predict(tmp_path / "seven.png", MNIST_TAG, top_k=1)[0]["top"][0]["label"] == "7"


def _cifar_folder(root: Path, classes: dict[int, str], per_class: int, data: Path) -> Path:
    with np.load(data / "cifar10.npz") as npz:  # each npz[key] decompresses the whole array again
        x_test, y_test = npz["x_test"], npz["y_test"]
    for label, name in classes.items():
        (root / name).mkdir(parents=True)
        for i, index in enumerate(np.flatnonzero(y_test == label)[:per_class]):
            Image.fromarray(x_test[index]).save(root / name / f"{i}.png")
    return root


@pytest.mark.slow
@pytest.mark.real_data
def test_fine_tune_the_cifar_tag_on_an_image_folder_from_the_command_line(data_dir, tmp_path, capsys):
    folder = _cifar_folder(tmp_path / "three", {0: "airplane", 1: "automobile", 8: "ship"}, 100, data_dir)
    common = ["--dataset", f"folder:{folder}", "--epochs", "3", "--batch-size", "32", "--device", "cpu", "--quiet"]
    assert main(["train", "googlenet_res5x5", "--init", TAG, "--out", str(tmp_path / "tuned"), *common]) == 0
    tuned = json.loads(capsys.readouterr().out)
    assert main(["train", "googlenet_res5x5", "--recipe", "finetune", "--model-arg", "stem=imagenet",
                 "--out", str(tmp_path / "scratch"), *common]) == 0  # the negative control: no trained weights
    scratch = json.loads(capsys.readouterr().out)
    assert tuned["final_test_err"] < 25 < scratch["final_test_err"], (tuned, scratch)  # chance is 66.7% error
    run = json.loads((tmp_path / "tuned" / "run.json").read_text())
    assert run["init"] == TAG and run["label_names"] == ["airplane", "automobile", "ship"]
    assert main(["predict", str(folder / "ship" / "0.png"), "--model", str(tmp_path / "tuned" / "model"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["top"][0]["label"] in {"airplane", "automobile", "ship"}
    assert main(["export", "googlenet_res5x5", "--weights", str(tmp_path / "tuned" / "model"),
                 "--out", str(tmp_path / "t.onnx")]) == 0
    props = {p.key: p.value for p in onnx.load(tmp_path / "t.onnx").metadata_props}
    assert json.loads(props["zoo.config"])["data"]["label_names"] == ["airplane", "automobile", "ship"]
    card = (tmp_path / "tuned" / "model" / "README.md").read_text()
    assert f"fine-tuned from {TAG} on the image folder 'three'" in card


@pytest.mark.parametrize("layout, message", [
    ("empty", "has 0 class folder(s)"),
    ("one class", "has 1 class folder(s)"),
    ("loose image", "holds images beside its class folders"),
    ("nested", "holds a folder (deeper): class folders hold images, one level deep"),
    ("unreadable", "is not an image zoo can read"),
])
def test_bad_image_folders_are_refused_before_any_training_and_nothing_is_written(layout, message, tmp_path, capsys):
    root = tmp_path / "folder"
    root.mkdir()
    picture = Image.fromarray(np.zeros((8, 8, 3), np.uint8))
    for name in ("a", "b")[: 0 if layout == "empty" else 1 if layout == "one class" else 2]:
        (root / name).mkdir()
        for i in range(2):
            picture.save(root / name / f"{i}.png")
    if layout == "loose image":
        picture.save(root / "stray.png")
    elif layout == "nested":
        (root / "a" / "deeper").mkdir()
    elif layout == "unreadable":
        (root / "b" / "1.png").write_bytes(b"not a png")
    out = tmp_path / "run"
    assert main(["train", "googlenet_res5x5", "--dataset", f"folder:{root}", "--init", TAG, "--epochs", "1",
                 "--out", str(out)]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_zoo_help_and_version_do_not_load_torch():
    out = subprocess.run([sys.executable, "-m", "zoo.cli", "--version"], capture_output=True, text=True)
    probe = ("import sys, contextlib, io\nfrom zoo.cli import main\nfor argv in (['--version'], ['--help']):\n"
             "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n        main(argv)\n"
             "print('torch' in sys.modules)")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()[-1]
    assert out.stdout.startswith("zoo ") and loaded == "False"


@pytest.mark.slow
def test_the_wheel_carries_the_tags_and_works_without_the_checkout(tmp_path):
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(REPO)], check=True, capture_output=True)
    wheel = next(wheels.glob("deeper_zoo-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    assert not (site / "export").exists() and (site / "zoo" / "export" / "bench.py").is_file()
    code = (
        "import sys, torch, zoo, timm\n"
        f"assert zoo.__file__.startswith({str(site)!r}), zoo.__file__\n"
        f"m = zoo.create_model({TAG!r}, pretrained=True).eval()\n"
        "assert m(torch.rand(1, 3, 32, 32)).shape == (1, 10)\n"
        f"f = timm.create_model('zoo_{TAG}', pretrained=True, num_classes=4)\n"
        "print(zoo.model_info('resnet18')['params'])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    cli = subprocess.run([sys.executable, "-m", "zoo.cli", "export", "--help"], capture_output=True, text=True,
                         cwd=tmp_path, env=env)
    assert cli.returncode == 0 and "usage: zoo export" in cli.stdout


@pytest.mark.slow
def test_plain_timm_on_a_saved_folder_fails_and_the_folder_says_what_to_install(tmp_path):
    """timm's own error cannot be changed from outside timm; the card and config.json name the package and the import."""
    folder = zoo.save_pretrained(zoo.create_model(TAG, pretrained=True), tmp_path / "m")
    code = f"import timm; timm.create_model('local-dir:{folder}', pretrained=True)"
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert plain.returncode != 0 and "Unknown model (zoo_googlenet_res5x5)" in plain.stderr
    assert "pip install deeper-zoo" in (folder / "README.md").read_text()
    assert "import zoo" in json.loads((folder / "config.json").read_text())["zoo"]["requires"]
    with_zoo = subprocess.run([sys.executable, "-c", "import zoo; " + code], capture_output=True, text=True, cwd=tmp_path)
    assert with_zoo.returncode == 0, with_zoo.stderr[-2000:]
