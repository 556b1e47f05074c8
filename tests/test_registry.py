"""The registry, its errors, and the torch.hub and timm entry points."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

import zoo
import zoo.models.registry
from zoo.core.errors import UnknownModelError, ZooInputError
from zoo.models.registry import TIMM_PREFIX, register_model

REPO = Path(__file__).resolve().parents[1]


def test_list_models_wildcards():
    assert zoo.list_models("googlenet*") == [
        "googlenet",
        "googlenet_5x5",
        "googlenet_res3x3",
        "googlenet_res5x5",
        "googlenet_resall3x3",
        "googlenet_resall5x5",
    ]
    assert zoo.list_models("vgg19*") == ["vgg19", "vgg19_bn"]
    assert zoo.list_models(["resnet1*", "vgg11"]) == ["resnet101", "resnet152", "resnet18", "vgg11"]
    assert zoo.list_models("nothing*") == []


def test_duplicate_registration_is_an_error():
    def resnet18(**kwargs):
        raise AssertionError("never built")

    with pytest.raises(ValueError, match="already registered"):
        register_model(resnet18)


def test_unknown_model_suggests_close_matches():
    with pytest.raises(UnknownModelError, match="did you mean 'googlenet_res5x5'"):
        zoo.create_model("googlenet_res5x")
    with pytest.raises(UnknownModelError, match="list_models"):
        zoo.create_model("alexnet")


def test_unknown_pretrained_tag_says_what_exists():
    with pytest.raises(UnknownModelError, match="resnet18"):
        zoo.create_model("resnet18.imagenet_made_up", pretrained=True)


def test_kwargs_reach_the_model():
    model = zoo.create_model("resnet18", num_classes=7, in_chans=1, stem="cifar")
    assert model.fc.out_features == 7 and model.conv1.in_channels == 1 and model.conv1.kernel_size == (3, 3)


BAD_INPUTS = [
    ("channels", torch.randn(2, 1, 32, 32), "in_chans=1"),
    ("three_d", torch.randn(3, 32, 32), "unsqueeze(0)"),
    ("integer", torch.zeros(2, 3, 32, 32, dtype=torch.uint8), "floating-point"),
]


@pytest.mark.parametrize("name", zoo.list_models())
@pytest.mark.parametrize(("case", "x", "fix"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_refused_before_first_conv(name, case, x, fix):
    # on the meta device: the check runs before the first conv; without it the forward would fail differently
    model = zoo.models.registry.meta_model(name, num_classes=10)
    with pytest.raises(ZooInputError, match=fix.replace("(", r"\(").replace(")", r"\)")):
        model(x)


@pytest.mark.parametrize(
    ("name", "kwargs", "min_size"),
    [("vgg11", {"head": "cifar"}, 32), ("googlenet", {}, 15), ("googlenet_res5x5", {"stem": "cifar"}, 2)],
)
def test_too_small_input_refused_at_exactly_the_limit(name, kwargs, min_size):
    """VGG's limit is its five pools', whichever head follows (the CIFAR one builds in milliseconds)."""
    model = zoo.create_model(name, num_classes=10, **kwargs).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, min_size, min_size)).shape == (1, 10)
        with pytest.raises(ZooInputError, match=f"at least {min_size}x{min_size}"):
            model(torch.randn(1, 3, min_size - 1, min_size))


def test_torch_hub_lists_exactly_the_registry():
    # torch.hub.list only reads GitHub; this is its rule (public callables of hubconf) on our file
    import importlib.util

    spec = importlib.util.spec_from_file_location("hubconf", REPO / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    entries = [f for f in dir(hubconf) if callable(getattr(hubconf, f)) and not f.startswith("_")]
    assert sorted(entries) == zoo.list_models()


def test_torch_hub_load_local_builds_our_model():
    model = torch.hub.load(str(REPO), "googlenet_res5x5", source="local", num_classes=10, aux_logits=False)
    assert isinstance(model, zoo.models.GoogLeNet)
    assert model.inception4b.residual and model.inception4b.branch3[1].conv.kernel_size == (5, 5)


@pytest.mark.parametrize("name", zoo.list_models())
def test_timm_builds_every_zoo_model(name):
    with torch.device("meta"):
        ours = zoo.create_model(name, num_classes=10, in_chans=1)
        via_timm = timm.create_model(TIMM_PREFIX + name, num_classes=10, in_chans=1)
    assert type(via_timm) is type(ours)
    assert {k: v.shape for k, v in via_timm.state_dict().items()} == {k: v.shape for k, v in ours.state_dict().items()}


@pytest.mark.slow
def test_timm_own_models_untouched():
    assert type(timm.create_model("resnet18")).__module__ == "timm.models.resnet"
    assert type(timm.create_model("vgg11")).__module__ == "timm.models.vgg"
    assert all(n.startswith(TIMM_PREFIX) for n in timm.list_models(TIMM_PREFIX + "*"))
    assert {TIMM_PREFIX + n for n in zoo.list_models()} <= set(timm.list_models(TIMM_PREFIX + "*"))


@pytest.mark.slow
def test_zoo_does_not_import_timm_but_timm_sees_zoo_models_either_order():
    """timm costs ~1.7 s at import (torchvision, torch._dynamo): zoo registers its models the moment timm arrives."""
    zoo_first = "import sys, zoo; assert 'timm' not in sys.modules; import timm; print(len(timm.list_models('zoo_*')))"
    timm_first = "import timm, zoo; print(type(timm.create_model('zoo_resnet18', num_classes=3)).__name__)"
    outs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
            for code in (zoo_first, timm_first)]
    assert outs == [str(len(zoo.list_models())), "ResNet"]


@pytest.mark.slow  # a fresh interpreter
def test_a_meta_build_skips_the_init_and_a_real_build_keeps_it():
    """Reading a model's structure (plans, cards, sizes) builds it on the meta device, where the init's kernels
    would import torch._dynamo (3 s) to set no values; a real build still gets each family's init."""
    code = (
        "import sys, zoo.models.registry as r\n"
        "for name in ('vgg11', 'resnet18', 'googlenet'): r.meta_model(name)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
    torch.manual_seed(0)
    conv = zoo.create_model("resnet18").conv1.weight  # kaiming normal, fan_out: std sqrt(2 / (64 * 7 * 7)) = 0.0255
    assert conv.std().item() == pytest.approx((2 / (64 * 7 * 7)) ** 0.5, rel=0.05)  # torch's default init: 0.048
