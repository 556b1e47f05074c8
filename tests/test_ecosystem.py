"""zoo as timm and torchvision users expect it: configs, the timm model API, feature extraction, tracing,
preprocessing, predict, self-describing ONNX. Tested against the real libraries, not mocks."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import timm
import torch
import torchvision
from PIL import Image
from timm.data import create_transform, resolve_data_config
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

import zoo
import zoo.models.registry
from zoo.cli import main
from zoo.core.errors import ArgumentError, ZooInputError
from zoo.core.progress import progress_bar
from zoo.data.loading import DeviceLoader, synthetic
from zoo.inference.runtime import predict
from zoo.train.loop import evaluate

REPO = Path(__file__).resolve().parents[1]
FAMILIES = [("resnet18", "stem"), ("vgg11_bn", "head"), ("googlenet_res5x5", "stem")]
GOOGLENETS = zoo.list_models("googlenet*")


def random_bn(model: nn.Module, size: int = 64) -> nn.Module:
    """BatchNorm statistics of one random batch, so that outputs depend on the input and every weight
    (at init, GoogLeNet's std-0.01 convolutions make its logits a constant)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average: this batch's statistics
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, size, size, generator=torch.Generator().manual_seed(0)))
    return model.eval()


# ---------------------------------------------------------------------------- models know what they are


@pytest.mark.parametrize(("name", "kwargs", "mean", "size"), [
    ("resnet18", {}, (0.485, 0.456, 0.406), (3, 224, 224)),                      # the ImageNet configuration
    ("resnet18", {"num_classes": 10}, (0.4914, 0.4822, 0.4465), (3, 32, 32)),   # CIFAR-10 sized
    ("vgg11", {"head": "cifar"}, (0.4914, 0.4822, 0.4465), (3, 32, 32)),
    ("googlenet", {"in_chans": 1, "num_classes": 10}, (0.1307,), (1, 32, 32)),  # MNIST
    ("googlenet_res5x5.mnist_paper", {}, (0.1307,), (1, 32, 32)),               # a tag: its own
])
def test_pretrained_cfg_is_right_for_the_configuration_and_tag(name, kwargs, mean, size):
    for model in (zoo.create_model(name, **kwargs), timm.create_model(f"zoo_{name}", **kwargs)):
        cfg = resolve_data_config(model=model)
        assert cfg["mean"] == pytest.approx(mean) and cfg["input_size"] == size
        if size[1] == 32:  # no ImageNet crop on 32x32 data; MNIST's 28x28 digits padded to 32x32
            assert cfg["crop_pct"] == (32 / 28 if size[0] == 1 else 1.0) and cfg["interpolation"] == "bilinear"
    assert model.pretrained_cfg["num_classes"] == model.num_classes


@pytest.mark.slow  # the tag saved to a folder and both loaded through timm
def test_timm_transform_of_a_tag_and_of_a_local_dir_is_the_training_preprocessing(tmp_path):
    model = timm.create_model("zoo_googlenet_res5x5.cifar10_paper", pretrained=True)
    transform = create_transform(**resolve_data_config(model=model))
    image = Image.fromarray(np.full((32, 32, 3), 128, np.uint8))
    x = transform(image)
    expected = (torch.full((3, 32, 32), 128 / 255) - torch.tensor([0.4914, 0.4822, 0.4465]).view(3, 1, 1)) / torch.tensor(
        [0.2470, 0.2435, 0.2616]).view(3, 1, 1)
    torch.testing.assert_close(x, expected, atol=1e-4, rtol=0)
    folder = zoo.save_pretrained(zoo.create_model("resnet18", num_classes=10, in_chans=1, stem="cifar"), tmp_path / "m")
    local = timm.create_model(f"local-dir:{folder}", pretrained=True)
    assert tuple(resolve_data_config(model=local)["mean"]) == (0.1307,)


@pytest.mark.slow
def test_save_pretrained_needs_no_arch_for_models_zoo_or_timm_built(tmp_path):
    for i, model in enumerate([zoo.create_model("resnet18", num_classes=7, stem="cifar"),
                               timm.create_model("zoo_resnet18", num_classes=7, stem="cifar")]):
        loaded = zoo.load_model(zoo.save_pretrained(model, tmp_path / str(i)))
        assert loaded.num_classes == 7 and loaded.stem == "cifar"
    with pytest.raises(ArgumentError, match="takes a zoo model"):  # a module zoo did not build: nothing to record
        zoo.save_pretrained(torchvision.models.resnet18(), tmp_path / "tv")


def test_timm_overlay_file_keeps_the_trained_classifier(tmp_path):
    from safetensors.torch import save_file

    trained = zoo.create_model("resnet18", num_classes=10, stem="cifar")
    save_file(trained.state_dict(), tmp_path / "w.safetensors")
    model = timm.create_model("zoo_resnet18", pretrained=True, num_classes=10, stem="cifar",
                              pretrained_cfg_overlay=dict(file=str(tmp_path / "w.safetensors")))
    assert torch.equal(model.fc.weight, trained.fc.weight)


# ---------------------------------------------------------------------------- the timm model API


@pytest.mark.slow
@pytest.mark.parametrize(("name", "variant", "config"), [  # 1-4 s each: VGG's ImageNet head, the GoogLeNet at CIFAR size
    (name, variant, config) for config in ("imagenet", "cifar") for name, variant in FAMILIES])
def test_timm_model_api(name, variant, config):
    torch.manual_seed(0)
    model = random_bn(zoo.create_model(name, num_classes=10, **{variant: config}))
    x = torch.randn(2, 3, 64, 64)
    features = model.forward_features(x)
    pooled = model.forward_head(features, pre_logits=True)
    assert pooled.shape == (2, model.head_hidden_size) and model.get_classifier().in_features == model.head_hidden_size
    assert features.shape[1] == model.num_features
    torch.testing.assert_close(model.forward_head(features), model(x))
    model.reset_classifier(5)
    assert model(x).shape == (2, 5) and model.num_classes == 5
    model.reset_classifier(0)  # timm's convention: no classifier, the pooled features
    torch.testing.assert_close(model(x), pooled)
    headless = zoo.create_model(name, num_classes=0, **{variant: config}).eval()
    assert headless(x).shape == (2, headless.head_hidden_size)


@pytest.mark.parametrize("name", ["resnet18", pytest.param("vgg11", marks=pytest.mark.slow), *GOOGLENETS])  # vgg11: 1.4 s
def test_timm_features_only_gives_the_stages_feature_info_describes(name):
    model = timm.create_model(f"zoo_{name}", features_only=True, out_indices=(1, 2, 3), num_classes=10)
    outs = model(torch.randn(2, 3, 64, 64))
    assert [o.shape[1] for o in outs] == model.feature_info.channels()
    assert [64 // o.shape[-1] for o in outs] == model.feature_info.reduction() == [4, 8, 16]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "vgg11_bn", "googlenet", "googlenet_resall5x5"])
def test_traceable_by_fx_and_torchvision_feature_extraction_while_eager_errors_stay(name):
    model = random_bn(zoo.create_model(name, num_classes=10))
    x = torch.randn(2, 3, 64, 64)
    traced = torch.fx.symbolic_trace(model)
    torch.testing.assert_close(traced(x), model(x))
    nodes = get_graph_node_names(model)[1]
    extractor = create_feature_extractor(model, return_nodes={nodes[-1]: "logits"})
    torch.testing.assert_close(extractor(x)["logits"], model(x))
    with pytest.raises(ZooInputError, match="in_chans=3"):
        model(torch.randn(2, 1, 64, 64))


@pytest.mark.slow
def test_googlenet_transform_input_matches_torchvision():
    tv = torchvision.models.googlenet(weights=None, aux_logits=True, transform_input=True, init_weights=True)
    ours = zoo.create_model("googlenet", transform_input=True)
    ours.load_state_dict(random_bn(tv, 224).state_dict())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), tv.eval()(x))
        plain = zoo.create_model("googlenet")
        plain.load_state_dict(tv.state_dict())
        assert not torch.allclose(plain.eval()(x), tv(x), atol=1e-4)  # negative control: the option matters
        assert ours(x).std(0).max() > 1e-3  # and the outputs depend on the input
    with pytest.raises(ValueError, match="needs in_chans=3"):
        zoo.create_model("googlenet", transform_input=True, in_chans=1)


@pytest.mark.slow
def test_googlenet_transform_input_survives_save_and_load(tmp_path):
    """load_model builds on the meta device and fills the state_dict: transform_input must hold nothing outside it."""
    model = random_bn(zoo.create_model("googlenet", transform_input=True, num_classes=10), 96).eval()
    zoo.save_pretrained(model, tmp_path / "tv")
    loaded = zoo.load_model(tmp_path / "tv").eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
        assert loaded(x).std(0).max() > 1e-3


# ---------------------------------------------------------------------------- from an image to an answer


@pytest.fixture(scope="module")
def test_images(module_tmp):
    from conftest import real_data_dir

    data = real_data_dir()
    if data is None:
        pytest.skip("real MNIST / CIFAR-10 npz files not found (set ZOO_DATA_DIR)")
    out = module_tmp("images")
    paths = {}
    for name in ("mnist", "cifar10"):
        with np.load(data / f"{name}.npz") as npz:  # each npz[key] decompresses the whole array again
            x_test, y_test = npz["x_test"], npz["y_test"]
        picks = np.random.default_rng(0).choice(len(y_test), 20, replace=False)
        paths[name] = [(out / f"{name}_{i}.png", int(y_test[i])) for i in picks]
        for (path, _), i in zip(paths[name], picks):
            image = Image.fromarray(x_test[i])
            (image.resize((80, 80)) if name == "cifar10" else image).save(path)  # any size
    return paths


@pytest.mark.real_data
@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
@pytest.mark.slow
def test_predict_real_test_images_with_the_bundled_weights_torch_and_onnx(dataset, test_images, tag_onnx, capsys):
    tag = f"googlenet_res5x5.{dataset}_paper"
    paths, labels = zip(*test_images[dataset])
    names = zoo.get_pretrained_tag(tag).data.label_names
    results = predict(paths, tag, top_k=3)
    hits = sum(r["top"][0]["label"] == names[y] for r, y in zip(results, labels))
    assert hits >= (19 if dataset == "mnist" else 15), hits  # the tags' accuracy: 99.5% and 87.6%
    onnx_path = tag_onnx(tag)
    via_onnx = predict(paths, onnx_path, top_k=3)
    assert [r["top"][0]["label"] for r in via_onnx] == [r["top"][0]["label"] for r in results]
    assert all(abs(a["top"][0]["probability"] - b["top"][0]["probability"]) < 1e-4 for a, b in zip(results, via_onnx))
    assert main(["predict", str(paths[0]), "--model", tag, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["top"][0]["label"] == results[0]["top"][0]["label"]


@pytest.mark.slow
def test_exported_onnx_describes_itself(tag_onnx):
    proto = onnx.load(tag_onnx("googlenet_res5x5.cifar10_paper"))  # exported at the tag's 3x32x32
    props = {p.key: p.value for p in proto.metadata_props}
    config = json.loads(props["zoo.config"])
    assert props["zoo.arch"] == "googlenet_res5x5" and props["zoo.version"] == zoo.__version__
    assert props["zoo.weights_sha256"] == zoo.get_pretrained_tag("googlenet_res5x5.cifar10_paper").sha256
    data = config["data"]
    assert data["label_names"][0] == "airplane" and data["mean"][0] == 0.4914 and data["input_size"] == [3, 32, 32]
    assert "normalised" in proto.doc_string


def test_unreadable_image_is_refused(tmp_path):
    bad = tmp_path / "not.png"
    bad.write_text("text")
    with pytest.raises(ZooInputError, match="is not an image zoo can read"):
        predict([bad], "googlenet_res5x5.mnist_paper")


# ---------------------------------------------------------------------------- start-up and the command line


def test_version_help_and_hub_docs():
    out = subprocess.run([sys.executable, "-m", "zoo.cli", "--version"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"zoo {zoo.__version__}"
    help_text = subprocess.run([sys.executable, "-m", "zoo.cli", "--help"], capture_output=True, text=True).stdout
    assert "exit status" in help_text and "predict" in help_text
    hub = torch.hub.load(str(REPO), "googlenet_res5x5", source="local", pretrained=False, num_classes=10)
    assert hub.num_classes == 10
    import importlib.util

    spec = importlib.util.spec_from_file_location("hubconf_doc", REPO / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    doc = hubconf.googlenet_res5x5.__doc__
    assert all(word in doc for word in ("pretrained", "num_classes", "in_chans", "stem", "aux_logits", "mnist_paper"))


class Terminal(io.StringIO):
    """stderr as a terminal would be: progress bars draw only there."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("tty", "enabled", "drawn"), [(True, True, True), (True, False, False), (False, True, False)])
def test_progress_bars_draw_on_a_terminal_unless_quiet(tty, enabled, drawn, monkeypatch):
    err = Terminal() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    bar = progress_bar(enabled, 100, "eval")
    assert (bar is not None) == drawn
    if bar is not None:
        bar.update(100)
        bar.close()
    assert ("img/s" in err.getvalue()) == drawn


@pytest.mark.slow
def test_eval_and_export_show_progress_on_a_terminal(tmp_path, monkeypatch):
    err = Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    model = zoo.create_model("resnet18", num_classes=10, in_chans=1, stem="cifar")
    data = synthetic("mnist", 8, 64)
    loader = DeviceLoader(data.x_test, data.y_test, batch_size=16, mean=data.spec.mean, std=data.spec.std,
                          shuffle=False, drop_last=False)
    evaluate(model, loader, 10, progress=True)
    assert "eval:" in err.getvalue() and "/64.0 [" in err.getvalue() and "img/s" in err.getvalue()
    assert main(["export", "resnet18", "--out", str(tmp_path / "r.onnx"), "--input-size", "1", "32", "32",
                 "--num-classes", "10", "--model-arg", "stem=cifar"]) == 0
    assert "export resnet18" in err.getvalue() and "parity, batch" in err.getvalue()
    quiet = Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    evaluate(model, loader, 10, progress=False)
    assert main(["export", "resnet18", "--out", str(tmp_path / "q.onnx"), "--input-size", "1", "32", "32",
                 "--num-classes", "10", "--model-arg", "stem=cifar", "--quiet"]) == 0
    assert quiet.getvalue() == ""
