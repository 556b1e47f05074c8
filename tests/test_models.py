"""Every registered model: shapes, gradients, determinism, faithfulness to torchvision."""
from __future__ import annotations

import pytest
import torch
import torchvision

import zoo
import zoo.models.registry
from zoo.core.errors import ArgumentError
from zoo.models import GoogLeNetOutputs

from conftest import TWINS, code_path

ALL = zoo.list_models()
GOOGLENETS = zoo.list_models("googlenet*")


def slow_if(slow: bool, *values):
    """One parametrize case, in the slow tier when ``slow``: VGG's 4096-wide torchvision head (140M weights to
    initialise) and the deepest ResNets take 1-5 s a case on 2 cores; the others a few tenths."""
    return pytest.param(*values, marks=pytest.mark.slow if slow else ())


def config_kwargs(name: str, config: str) -> dict:
    """kwargs of a name's 'paper' config (torchvision stem/head) or its 'cifar' one."""
    if config == "paper":
        return {}
    return {zoo.models.registry.model_class(name).variant_arg: "cifar"}


def outputs_of(out):
    return list(out) if isinstance(out, tuple) else [out]


# Every model but the conftest.TWINS, which run another model's code (more blocks, or other kernels). VGG's
# torchvision head (25088 x 4096 x 4096, 3-5 s a case) is the same code with or without BN in the features: it runs
# here on vgg11, and at every depth in test_torchvision_state_dict_loads_and_matches.
@pytest.mark.slow
@pytest.mark.parametrize(("name", "config"), [
    (name, config) for name in ALL for config in ("paper", "cifar")
    if name not in TWINS and not (name == "vgg11_bn" and config == "paper")])
def test_forward_backward_mnist_and_cifar(name, config):
    torch.manual_seed(0)
    for in_chans in (1, 3):
        model = zoo.create_model(name, num_classes=10, in_chans=in_chans, **config_kwargs(name, config))
        x = torch.randn(2, in_chans, 32, 32)

        model.train()
        outs = outputs_of(model(x))
        expected_outs = 1 + len(model.aux_prefixes)  # GoogLeNet: logits and its two aux heads
        assert len(outs) == expected_outs
        assert all(o.shape == (2, 10) for o in outs)
        sum(o.sum() for o in outs).backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not missing, f"parameters without gradient: {missing[:5]}"

        model.eval()
        with torch.no_grad():
            y1, y2 = model(x), model(x)
        assert isinstance(y1, torch.Tensor) and y1.shape == (2, 10)
        assert torch.equal(y1, y2)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "vgg11_bn", "googlenet_res5x5", "googlenet_resall3x3"])
def test_forward_imagenet_shape(name):
    model = zoo.models.registry.meta_model(name)  # shapes only: on the meta device
    assert model(torch.empty(1, 3, 224, 224, device="meta")).shape == (1, 1000)


@pytest.mark.parametrize("name", GOOGLENETS)
def test_googlenet_aux_off_returns_tensor_in_train(name):
    model = zoo.create_model(name, num_classes=10, aux_logits=False).train()
    out = model(torch.randn(2, 3, 32, 32))
    assert isinstance(out, torch.Tensor) and not isinstance(out, GoogLeNetOutputs)
    assert model.aux1 is None and model.aux2 is None


TORCHVISION_PEERS = ["resnet18", "resnet34", "resnet50", "googlenet"] + [
    f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")
]


@pytest.mark.parametrize("name", [slow_if(name.startswith("vgg"), name) for name in TORCHVISION_PEERS])
def test_torchvision_state_dict_loads_and_matches(name):
    torch.manual_seed(0)
    kwargs = {"init_weights": True} if name == "googlenet" else {}
    ref = getattr(torchvision.models, name)(weights=None, num_classes=10, **kwargs).eval()
    with torch.device("meta"):  # skip our init: every tensor comes from the state_dict
        ours = zoo.create_model(name, num_classes=10).eval()
    # real batch-norm statistics, so a misplaced BN would show
    for m in ref.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    ours.load_state_dict(ref.state_dict(), strict=True, assign=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "params"),
    [("vgg19", 143_667_240), ("resnet18", 11_689_512), ("resnet50", 25_557_032), ("googlenet", 13_004_888)],
)
def test_param_counts_match_torchvision(name, params):
    assert zoo.model_info(name)["params"] == params


@pytest.mark.parametrize(("name", "twin"), TWINS.items())
def test_a_twin_runs_the_code_of_the_model_it_names(name, twin):
    """What lets the per-model tests of TorchScript, fx, features, cfgs and gradients run the model named only: the
    same code, whatever the depth and the kernel sizes. A deeper twin's depth, what it does change, is torchvision's
    (on the meta device: no memory, no init)."""
    assert code_path(name, kernel_sizes=False) == code_path(twin, kernel_sizes=False)
    params = {n: sum(p.numel() for p in zoo.models.registry.meta_model(n).parameters()) for n in (name, twin)}
    assert params[name] != params[twin]  # not the same model
    if code_path(name) == code_path(twin):  # more blocks, not other kernels
        with torch.device("meta"):
            reference = getattr(torchvision.models, name)()
        assert params[name] == sum(p.numel() for p in reference.parameters()) > params[twin]


def test_code_paths_tell_block_kinds_apart():
    """The negative control: the kinds of block of a family are different code paths, with or without kernel sizes;
    the kernel sizes tell the GoogLeNet twins apart."""
    kinds = ("resnet18", "resnet50", "vgg11", "vgg11_bn", "googlenet", "googlenet_res5x5", "googlenet_resall3x3")
    for kernel_sizes in (True, False):
        assert len({code_path(name, kernel_sizes) for name in kinds}) == len(kinds)
    assert code_path("googlenet_5x5") != code_path("googlenet")


def test_googlenet_without_aux_param_count():
    assert zoo.model_info("googlenet", aux_logits=False)["params"] == 6_624_904


def test_googlenet_5x5_differs_only_in_branch3_kernel():
    plain = zoo.create_model("googlenet").state_dict()
    five = zoo.create_model("googlenet_5x5").state_dict()
    assert plain.keys() == five.keys()
    differing = {k for k in plain if plain[k].shape != five[k].shape}
    assert differing == {f"inception{m}.branch3.1.conv.weight" for m in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")}
    for k in differing:
        assert plain[k].shape[2:] == (3, 3) and five[k].shape[2:] == (5, 5)


@pytest.mark.slow
@pytest.mark.parametrize(("res", "plain"), [("googlenet_res3x3", "googlenet"), ("googlenet_res5x5", "googlenet_5x5")])
def test_residual_variant_has_plain_twin_param_count(res, plain):
    assert zoo.model_info(res)["params"] == zoo.model_info(plain)["params"]
    model = zoo.create_model(res)
    residual = [n for n in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b") if getattr(model, f"inception{n}").residual]
    assert residual == ["4b", "4c", "5a"]


def test_residual_module_adds_its_input():
    from zoo.models.googlenet import INCEPTION_CFGS, Inception

    torch.manual_seed(0)
    plain = Inception(*INCEPTION_CFGS["inception4b"]).eval()
    res = Inception(*INCEPTION_CFGS["inception4b"], residual=True).eval()
    res.load_state_dict(plain.state_dict())
    x = torch.randn(2, 512, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(res(x) - plain(x), x)


def test_resall_projects_where_channels_differ():
    model = zoo.create_model("googlenet_resall5x5")
    projected = sorted(n for n, m in model.named_modules() if n.endswith("shortcut") and len(list(m.parameters())))
    assert projected == [f"inception{n}.shortcut" for n in ("3a", "3b", "4a", "4d", "4e", "5b")]


def test_model_info_macs():
    # torchvision's published figures: ResNet-18 1.81 GMACs, VGG-19 19.63 GMACs at 224x224
    assert zoo.model_info("resnet18")["macs"] == 1_814_073_344
    assert zoo.model_info("vgg19")["macs"] == 19_632_062_464
    cifar = zoo.model_info("resnet18", input_size=(3, 32, 32), num_classes=10, stem="cifar")
    assert cifar["input_size"] == [3, 32, 32] and cifar["flops"] == 2 * cifar["macs"]
    assert zoo.model_info("resnet18", stem="cifar")["input_size"] == [3, 32, 32]


def test_stem_and_head_choices_are_checked():
    with pytest.raises(ValueError, match="stem='mnist' is not one of 'imagenet', 'cifar'"):
        zoo.create_model("resnet18", stem="mnist")
    with pytest.raises(ValueError, match="head='tiny' is not one of 'imagenet', 'cifar'"):
        zoo.create_model("vgg11", head="tiny")
    for name in {zoo.models.registry.model_class(n): n for n in ALL}.values():  # one per family, its class built directly
        cls = zoo.models.registry.model_class(name)
        with pytest.raises(ArgumentError, match=f"{cls.__name__}: {cls.variant_arg}='mnist' is not one of .*; pass"):
            zoo.models.registry.factory(name)(**{cls.variant_arg: "mnist"})
