"""A model's data contract (zoo.data.datasets.DataConfig): one record that timm's transforms, zoo.predict, image folders,
fine-tuning, saved files and cards all read, so they agree."""
from __future__ import annotations

import ast
import dataclasses
import importlib.metadata
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch
from huggingface_hub import ModelCard
from PIL import Image
from timm.data import create_transform, resolve_data_config

import zoo
from zoo.cli import main
from zoo.data.loading import SAMPLE_FILE
from zoo.inference.runtime import predictor
from zoo.models.registry import meta_model

from conftest import REPO

SIZES = [None, (20, 20), (56, 56), (45, 30)]
"""(W, H) an image is resized to before it is given to a model: its own size (None), smaller, larger, not square."""
FRESH = [{}, {"num_classes": 10}, {"in_chans": 1, "num_classes": 10}]
"""A fresh model's configurations: ImageNet's (224x224, crop 0.875), CIFAR-10's and MNIST's (32x32, crop 32/28)."""


def sample_images(channels: int) -> list[Image.Image]:
    """Real test digits (mode L) for 1-channel models, real CIFAR-10 photos (RGB) for 3-channel ones, at every size."""
    with np.load(SAMPLE_FILE) as npz:
        x = npz["mnist_x_test"][:3] if channels == 1 else npz["cifar10_x_test"][:3]
    images = [Image.fromarray(a) for a in x]
    return [im if size is None else im.resize(size, Image.BICUBIC) for im in images for size in SIZES]


def assert_timm_transform_is_zoo_preprocessing(model: torch.nn.Module) -> None:
    transform = create_transform(**resolve_data_config(model=model))
    images = sample_images(model.in_chans)
    ours = predictor(model).prepare(images)
    theirs = torch.stack([transform(im) for im in images])
    assert theirs.shape == ours.shape == (len(images), *model.data_config.input_size)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", zoo.list_models(pretrained=True))
def test_timm_transform_of_every_tag_is_zoo_preprocessing(name):
    assert_timm_transform_is_zoo_preprocessing(meta_model(name))
    assert_timm_transform_is_zoo_preprocessing(zoo.create_model(name, pretrained=True))  # the record its file carries


@pytest.mark.parametrize("kwargs", FRESH, ids=["imagenet", "cifar10", "mnist"])
@pytest.mark.parametrize("arch", zoo.list_models())
def test_timm_transform_of_every_fresh_model_is_zoo_preprocessing(arch, kwargs):
    assert_timm_transform_is_zoo_preprocessing(meta_model(arch, **kwargs))


def test_the_mnist_pad_rule_is_timms_crop_pct_and_losing_it_changes_the_input():
    """The negative control of the parity above: without the rule (crop_pct 1), a 28x28 digit is stretched to 32x32
    instead of padded, and the input differs."""
    model = meta_model("googlenet_res5x5.mnist_paper")
    data = model.data_config
    assert (data.crop_pct, data.scale_size, data.pad, data.mirror) == (32 / 28, (28, 28), 2, False)
    digit = sample_images(1)[:1]
    padded = predictor(model).prepare(digit)
    torch.testing.assert_close(padded[0, :, :2], torch.full_like(padded[0, :, :2], -0.1307 / 0.3081))  # zero border
    stretched = dataclasses.replace(predictor(model), data=dataclasses.replace(data, crop_pct=1.0)).prepare(digit)
    assert (padded - stretched).abs().max() > 1


def test_model_info_and_zoo_info_take_tags_at_their_own_input(capsys):
    info = zoo.model_info("googlenet_res5x5.cifar10_paper")
    assert info["input_size"] == [3, 32, 32] and 30e6 < info["macs"] < 35e6  # not 1.58 G at 224x224
    assert main(["info", "*.mnist_paper"]) == 0
    assert re.search(r"\| googlenet_res5x5\.mnist_paper \| 1x32x32 \| 5\.98 \| 0\.031 \|", capsys.readouterr().out)


# ---------------------------------------------------------------------------- image folders state their assumptions


def write_folder(root: Path, mode: str, per_class: int = 6, classes: int = 3) -> Path:
    """A folder of real digits (mode L) or of the same digits as RGB PNGs, one subfolder per class."""
    with np.load(SAMPLE_FILE) as npz:
        x, y = npz["mnist_x_test"], npz["mnist_y_test"]
    for k in range(classes):
        (root / str(k)).mkdir(parents=True)
        for i, a in enumerate(x[y == k][:per_class]):
            Image.fromarray(a).convert(mode).save(root / str(k) / f"{i}.png")
    return root


def train_folder(folder: Path, out: Path, *args: str) -> dict:
    """A run of the guide's tiny family (conftest.py; the fixture tiny_family registers it) on ``folder``: what is
    checked is the data's record, not the architecture."""
    assert main(["train", "tinynet", "--dataset", f"folder:{folder}", "--recipe", "fast", "--epochs", "1",
                 "--device", "cpu", "--quiet", "--out", str(out), *args]) == 0
    return json.loads((out / "run.json").read_text())


@pytest.mark.slow
def test_a_folder_is_not_mirrored_unless_asked_and_run_json_and_card_say_so(tiny_family, tmp_path):
    folder = write_folder(tmp_path / "digits", "L")
    run = train_folder(folder, tmp_path / "plain")
    assert run["mirror"] is False and not run["recipe_config"]["flip"] and not run["recipe_config"]["tta_flip"]
    card = (tmp_path / "plain" / "model" / "README.md").read_text()
    assert "| mirror-symmetric | no: never flipped |" in card
    run = train_folder(folder, tmp_path / "mirrored", "--mirror")
    assert run["mirror"] is True and run["recipe_config"]["flip"] and run["recipe_config"]["tta_flip"]
    assert zoo.load_model(tmp_path / "mirrored" / "model").data_config.mirror is True


@pytest.mark.slow
def test_a_small_greyscale_folder_trains_a_one_channel_model_with_the_defaults(tiny_family, tmp_path):
    """12 training images: the recipe's batch (the tiny family's fast row: 16) is lowered to them, and run.json and the
    card say so."""
    run = train_folder(write_folder(tmp_path / "digits", "L", per_class=5), tmp_path / "run")
    assert run["input_size"] == [1, 32, 32] and run["model_kwargs"]["in_chans"] == 1
    assert run["recipe_config"]["batch_size"] == 12
    assert run["notes"] == ["The batch was lowered from the fast recipe's 16 to 12: the dataset has 12 training images."]
    assert run["notes"][0] in (tmp_path / "run" / "model" / "README.md").read_text()
    rgb = train_folder(write_folder(tmp_path / "rgb", "RGB", per_class=5), tmp_path / "rgb-run", "--batch-size", "4")
    assert rgb["input_size"] == [3, 32, 32] and rgb["notes"] == []  # an RGB folder, an explicit batch: kept


def test_init_adapts_a_tag_to_the_channels_asked_for(tmp_path):
    from zoo.train.loop import TrainConfig, _init_and_spec

    folder = write_folder(tmp_path / "digits", "L", per_class=2)
    cfg = TrainConfig(arch="googlenet_res5x5", dataset=f"folder:{folder}", init="googlenet_res5x5.cifar10_paper",
                      model_kwargs={"in_chans": 1})
    _, spec = _init_and_spec(cfg)
    cifar = zoo.get_pretrained_tag("googlenet_res5x5.cifar10_paper").data
    assert spec.input_size == (1, 32, 32) and spec.mean == pytest.approx((sum(cifar.mean) / 3,))
    _, own = _init_and_spec(dataclasses.replace(cfg, model_kwargs={}))
    assert own.input_size == (3, 32, 32) and own.mean == cifar.mean  # without in_chans: the tag's own input


# ---------------------------------------------------------------------------- provenance survives save -> load -> save


@pytest.mark.slow
def test_provenance_survives_save_load_save_and_the_card_front_matter_is_the_hubs(tiny_family, tmp_path):
    model = zoo.create_model("googlenet_res5x5.mnist_paper", num_classes=3, label_names=["a", "b", "c"])
    record = dataclasses.replace(model.data_config, dataset="folder:scans", images=(30, 9), dataset_sha256="c" * 64,
                                 base_model="hf-hub:acme/digits@" + "0" * 40, metrics={"final_test_err": 4.5})
    first = zoo.save_pretrained(model, tmp_path / "first", data=record, recipe="finetune")
    again = zoo.save_pretrained(zoo.load_model(first), tmp_path / "again")
    assert zoo.load_model(again).data_config == record
    card = ModelCard.load(again / "README.md")
    assert card.data.base_model == "acme/digits" and card.data.library_name == "timm"
    assert card.data.datasets is None  # a local folder is no Hub dataset
    assert card.data.eval_results[0].dataset_name == "the image folder 'scans' (3 classes, 30 training and 9 test images)"
    assert "fine-tuned from hf-hub:acme/digits@" in card.text and "pip install deeper-zoo" in card.text
    config = json.loads((again / "config.json").read_text())
    assert config["zoo"]["data"] == record.to_json() and config["pretrained_cfg"]["crop_pct"] == 32 / 28
    fresh = zoo.save_pretrained(zoo.create_model(tiny_family, num_classes=3), tmp_path / "fresh")
    assert "trained from scratch" in (fresh / "README.md").read_text()  # the negative control


# ---------------------------------------------------------------------------- packaging


def _third_party_imports() -> set[str]:
    names = set()
    for path in [*(REPO / "zoo").rglob("*.py"), *(REPO / "export").rglob("*.py"), REPO / "hubconf.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("zoo", "export", "tests")}


def _normal(name: str) -> str:
    """A distribution name as the package index compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.slow
def test_every_third_party_package_zoo_imports_is_a_declared_dependency():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"], *(d for extra in project["optional-dependencies"].values() for d in extra)]
    declared = {_normal(re.split(r"[<>=!~\[; ]", d)[0]) for d in requirements}
    owners = importlib.metadata.packages_distributions()
    missing = {name: owners.get(name, [name]) for name in _third_party_imports()
               if not {_normal(d) for d in owners.get(name, [name])} & declared}
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
    assert "pillow" in declared and (REPO / "LICENSE").is_file() and project.get("urls")


@pytest.mark.slow
@pytest.mark.real_data
def test_the_mnist_tag_fine_tuned_on_real_digits_keeps_its_accuracy_with_the_defaults(data_dir, tmp_path):
    """Real greyscale digits as a folder (PNG, from the MNIST test set): with the defaults (no mirror flips for a
    folder) the fine-tune trains exactly as with flips off, and keeps the tag's accuracy."""
    with np.load(data_dir / "mnist.npz") as npz:
        x, y = npz["x_test"][:200], npz["y_test"][:200]
    for i, (a, k) in enumerate(zip(x, y)):
        (tmp_path / "digits" / str(k)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(tmp_path / "digits" / str(k) / f"{i}.png")
    runs = {}
    for name, extra in (("defaults", []), ("no-mirror", ["--no-mirror"])):
        out = tmp_path / name
        assert main(["train", "googlenet_res5x5", "--init", "googlenet_res5x5.mnist_paper", "--dataset",
                     f"folder:{tmp_path / 'digits'}", "--epochs", "2", "--device", "cpu", "--quiet", "--out", str(out),
                     *extra]) == 0
        runs[name] = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert runs["defaults"] == [{**r, "epoch_s": d["epoch_s"], "img_s": d["img_s"], "train_seconds": d["train_seconds"]}
                                for r, d in zip(runs["no-mirror"], runs["defaults"])]
    assert runs["defaults"][-1]["test_err"] <= 3.0
