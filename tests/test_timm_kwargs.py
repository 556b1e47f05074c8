"""timm's usual model kwargs on every family (drop_rate, drop_path_rate, global_pool), gradient checkpointing
that gives the gradients of a plain backward, and timm's checks of feature indices."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

import zoo
import zoo.models.layers
from zoo.core.errors import ArgumentError
from zoo.models.layers import DropPath, ZooModel

from conftest import ONE_PER_BLOCK_KIND, TWINS

ALL = zoo.list_models()
GOOGLENETS = zoo.list_models("googlenet*")
RESIDUAL = zoo.list_models(["resnet*", "googlenet_res*"])  # the models with residual branches to drop
POOLS = ["avg", "max", "avgmax", "catavgmax"]


def variant(name: str, config: str) -> dict[str, str]:
    """The kwarg choosing the paper's ImageNet-sized layers or the CIFAR ones (the class's variant_arg)."""
    return {"head" if name.startswith("vgg") else "stem": config}


def outputs(out: torch.Tensor | tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    return list(out) if isinstance(out, tuple) else [out]  # GoogLeNetOutputs is a tuple


def meta(name: str, **kwargs) -> nn.Module:
    """A model to read the structure of, or to run for shapes: on the meta device, no memory, no init."""
    with torch.device("meta"):
        return zoo.create_model(name, **kwargs)


@pytest.fixture(scope="module")
def timm():
    return pytest.importorskip("timm")  # imported only by the tests that use it (1.7 s)


# ---------------------------------------------------------------------------- gradient checkpointing

# The fast tier checkpoints one model of each block kind in both configurations, the full suite every model but the
# conftest.TWINS. Checkpointing covers the stages of forward_features; the head runs plain. VGG's configurations
# differ in the head only, so VGG runs with its CIFAR head (its dropout draws too): the imagenet head's 25088 x 4096
# weights and their gradients, twice, took 3-8 s a case and checked no other code.
def checkpointing_cases() -> list:
    cases = []
    for name in (n for n in ALL if n not in TWINS):
        for config in ("cifar",) if name.startswith("vgg") else ("imagenet", "cifar"):
            slow = pytest.mark.slow if name not in ONE_PER_BLOCK_KIND else ()
            for aux in (True, False) if name in GOOGLENETS else (None,):
                kwargs = {**variant(name, config), **({} if aux is None else {"aux_logits": aux})}
                case_id = f"{name}-{config}" + ("" if aux is None else f"-aux{int(aux)}")
                cases.append(pytest.param(name, kwargs, marks=slow, id=case_id))
    return cases


def gradients(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every parameter's gradient of the outputs' sum, dropout and stochastic depth drawn from seed 1."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    sum(o.sum() for o in outputs(model(x))).backward()
    return {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.slow
@pytest.mark.parametrize(("name", "kwargs"), checkpointing_cases())
def test_gradient_checkpointing_gives_the_same_gradients(name, kwargs, monkeypatch):
    """Checkpointed stages recompute their activations in backward, dropout and stochastic depth included."""
    in_chans = 3 if "cifar" in kwargs.values() else 1
    stochastic = {"drop_rate": 0.2, "drop_path_rate": 0.2 if name in RESIDUAL else 0.0}
    torch.manual_seed(0)
    model = zoo.create_model(name, num_classes=10, in_chans=in_chans, **kwargs, **stochastic).train()
    size = 2 * model.feature_info[-1]["reduction"]  # small, but 2 x 2 at the last stage: batch norm of 8 values, not 2
    x = torch.randn(2, in_chans, size, size)
    plain = gradients(model, x)
    regions = []
    monkeypatch.setattr(zoo.models.layers, "checkpoint", lambda *a, **k: regions.append(1) or checkpoint(*a, **k))
    model.set_grad_checkpointing()
    checkpointed = gradients(model, x)
    assert len(regions) == (7 if kwargs.get("aux_logits", True) and name in GOOGLENETS else 5)  # aux heads: 4 in 3 parts
    assert plain.keys() == checkpointed.keys() and all(g is not None for g in plain.values())
    for n, g in plain.items():
        torch.testing.assert_close(checkpointed[n], g, rtol=1e-6, atol=1e-9, msg=n)


@pytest.mark.parametrize(("name", "config"), [("resnet18", "imagenet"), ("vgg11_bn", "cifar")])
def test_checkpointing_each_module_alone_breaks_backward(name, config, monkeypatch):
    """The negative control: a region per module, as timm's checkpoint_seq(every=1) makes; an in-place ReLU then
    modifies its region's input, which checkpointing keeps for the recomputation."""

    def per_module(self, modules, x):
        for module in modules:
            x = checkpoint(module, x, use_reentrant=False)
        return x

    monkeypatch.setattr(ZooModel, "run", per_module)
    model = zoo.create_model(name, num_classes=10, **variant(name, config)).train()
    model.set_grad_checkpointing()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        model(torch.randn(2, 3, 32, 32)).sum().backward()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "vgg11_bn", "googlenet", "googlenet_resall5x5"])
def test_checkpointing_model_traces_and_gives_the_stages(name):
    model = meta(name, num_classes=10, drop_path_rate=0.1 if name in RESIDUAL else 0.0).train()
    model.set_grad_checkpointing()
    x = torch.empty(2, 3, 64, 64, device="meta")
    with torch.enable_grad():
        stages = model.forward_intermediates(x, intermediates_only=True)
        described = [(f["num_chs"], f["reduction"]) for f in model.feature_info]
        assert [(s.shape[1], 64 // s.shape[-1]) for s in stages] == described
        nodes = get_graph_node_names(model)[0]  # traced in train mode: what is recorded is the plain forward
        logits = outputs(create_feature_extractor(model, return_nodes={nodes[-1]: "out"})(x)["out"])[0]
    assert logits.shape == (2, 10)


# ---------------------------------------------------------------------------- drop_rate


@pytest.mark.parametrize(("name", "kwargs", "rates"), [
    ("resnet18", {}, [0.0]),
    ("resnet18", {"drop_rate": 0.1}, [0.1]),
    ("vgg11", {}, [0.5, 0.5]),  # torchvision's, after each 4096-wide layer
    ("vgg11", {"drop_rate": 0.1}, [0.1, 0.1]),
    ("vgg11", {"dropout": 0.1, "drop_rate": 0.1}, [0.1, 0.1]),
    ("vgg11", {"head": "cifar"}, [0.0]),  # before the cifar head's linear layer
    ("vgg11", {"head": "cifar", "dropout": 0.3}, [0.3]),
    ("googlenet", {}, [0.2]),  # torchvision's; the aux heads keep dropout_aux
    ("googlenet", {"drop_rate": 0.1, "aux_logits": False}, [0.1]),
])
def test_drop_rate_is_timms_name_for_the_dropout_before_the_classifier(name, kwargs, rates):
    model = meta(name, **kwargs)
    heads = [m for n, m in model.named_modules() if isinstance(m, nn.Dropout) and not n.startswith("aux")]
    assert [m.p for m in heads] == rates


def test_drop_rate_drops_before_the_classifier_in_training_only():
    torch.manual_seed(0)
    model = zoo.create_model("resnet18", num_classes=10, drop_rate=0.5)
    features = torch.randn(64, 512, 2, 2)
    pooled = features.mean((2, 3))
    torch.testing.assert_close(model.eval().forward_head(features, pre_logits=True), pooled)
    dropped = model.train().forward_head(features, pre_logits=True)
    assert 0.3 < (dropped == 0).float().mean() < 0.7
    torch.testing.assert_close(dropped[dropped != 0], 2 * pooled[dropped != 0])


def test_drop_rate_and_dropout_refused_together_or_out_of_range():
    with pytest.raises(ArgumentError, match="dropout=0.5 and drop_rate=0.1 are torchvision's and timm's names"):
        meta("googlenet", dropout=0.5, drop_rate=0.1)
    with pytest.raises(ArgumentError, match=r"drop_rate=1.5 must be >= 0 and < 1"):
        meta("resnet18", drop_rate=1.5)
    with pytest.raises(ArgumentError, match=r"dropout=1.0 must be >= 0 and < 1"):
        meta("vgg11", dropout=1.0)


# ---------------------------------------------------------------------------- drop_path_rate


def test_drop_path_rate_rises_block_by_block_where_there_are_residual_branches():
    resnet = meta("resnet34", drop_path_rate=0.3)
    blocks = [block.drop_path.p for layer in (resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4)
              for block in layer]
    assert blocks == pytest.approx([0.3 * i / 15 for i in range(16)])
    res = meta("googlenet_res3x3", drop_path_rate=0.4)
    modules = [getattr(res, f"inception{n}") for n in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")]
    assert [m.drop_path.p for m in modules] == pytest.approx([0, 0, 0, 0.15, 0.2, 0, 0, 0.35, 0])  # 4b, 4c, 5a
    assert all(m.p == 0 for m in meta("googlenet_res3x3").modules() if isinstance(m, DropPath))


@pytest.mark.parametrize(("name", "match"), [
    ("vgg11", "VGG has no residual branches to drop: drop_path_rate must be 0"),
    ("googlenet_5x5", "residual='none' has no residual branches to drop"),
])
def test_drop_path_rate_refused_without_residual_branches(name, match):
    meta(name, drop_path_rate=0.0)
    with pytest.raises(ArgumentError, match=match):
        meta(name, drop_path_rate=0.1)


def test_drop_path_drops_whole_residual_branches_in_training_only():
    torch.manual_seed(0)
    x = torch.randn(32, 8, 3, 3)
    dropped = DropPath(0.5).train()(x)
    kept = dropped.flatten(1).ne(0).all(1)
    assert 8 < kept.sum() < 24 and not dropped[~kept].any()
    torch.testing.assert_close(dropped[kept], 2 * x[kept])
    assert DropPath(0.5).eval()(x) is x
    model = zoo.create_model("resnet18", num_classes=10, drop_path_rate=0.2)
    plain = zoo.create_model("resnet18", num_classes=10)
    plain.load_state_dict(model.state_dict())
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(image), plain.eval()(image))


# ---------------------------------------------------------------------------- global_pool


@pytest.mark.parametrize(("name", "config"), [("resnet18", "cifar"), ("vgg11", "cifar"), ("googlenet", "imagenet")])
def test_global_pool_choices_and_reset_classifier(name, config):
    torch.manual_seed(0)
    model = zoo.create_model(name, num_classes=10, **variant(name, config)).eval()
    channels = model.feature_info[-1]["num_chs"]
    features = torch.randn(2, channels, 3, 3)
    avg, top = features.mean((2, 3)), features.amax((2, 3))
    expected = {"avg": avg, "max": top, "avgmax": (avg + top) / 2, "catavgmax": torch.cat([avg, top], 1)}
    for pool in POOLS:
        built = meta(name, num_classes=10, global_pool=pool, **variant(name, config))
        model.reset_classifier(5, global_pool=pool)
        for m in (built, model):
            assert m.head_hidden_size == expected[pool].shape[1] == m.get_classifier().in_features
            assert m.num_features == channels  # timm's: the last feature map's, whatever the pool
        torch.testing.assert_close(model.forward_head(features, pre_logits=True), expected[pool])
        assert model.forward_head(features).shape == (2, 5)
    model.reset_classifier(0, global_pool="")  # timm's way to the unpooled feature maps
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x), model.forward_features(x))
    with pytest.raises(ArgumentError, match="pass num_classes=0 too"):
        model.reset_classifier(10)
    with pytest.raises(ArgumentError, match="pass num_classes=0 too"):
        meta(name, global_pool="", **variant(name, config))


def test_googlenet_aux_heads_keep_their_width_whatever_the_pool():
    model = meta("googlenet", num_classes=10, global_pool="catavgmax")
    model.reset_classifier(0)
    model.reset_classifier(7)
    assert [model.get_submodule(n).in_features for n in model.classifier_names] == [2048, 1024, 1024]


def test_global_pool_refused_where_it_means_nothing():
    meta("vgg11", global_pool="avg")
    with pytest.raises(ArgumentError, match=r"VGG with head='imagenet' supports global_pool='avg' \(or '', with num_"):
        meta("vgg11", global_pool="max")
    with pytest.raises(ArgumentError, match="pass num_classes=0 too"):
        meta("vgg11").reset_classifier(10, global_pool="")
    vgg = meta("vgg11")
    vgg.reset_classifier(0, global_pool="")  # timm's way to the unpooled feature maps: the MLP head is passed by
    assert vgg(torch.empty(2, 3, 64, 64, device="meta")).shape == (2, 512, 2, 2)
    with pytest.raises(ArgumentError, match="global_pool='fast' is not one of 'avg', 'max', 'avgmax', 'catavgmax', ''"):
        meta("resnet18", global_pool="fast")
    with pytest.raises(ArgumentError, match="global_pool='fast' is not one of"):
        meta("resnet18").reset_classifier(10, global_pool="fast")


# ---------------------------------------------------------------------------- through timm


def test_timm_passes_its_kwargs_through(timm):
    model = timm.create_model("zoo_resnet18", drop_rate=0.1, drop_path_rate=0.1, global_pool="avg", num_classes=10)
    assert model.dropout.p == 0.1 and model.layer4[-1].drop_path.p == pytest.approx(0.1)
    assert model.train()(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with torch.device("meta"):
        assert timm.create_model("zoo_vgg11", drop_rate=0.0).classifier[2].p == 0.0  # timm's train.py passes drop_rate
        assert timm.create_model("zoo_googlenet_res5x5", drop_rate=0.0).dropout.p == 0.0
        assert timm.create_model("zoo_resnet50", global_pool="catavgmax").fc.in_features == 4096
        with pytest.raises(ArgumentError, match="supports global_pool='avg'"):
            timm.create_model("zoo_vgg11", global_pool="max")
        with pytest.raises(ArgumentError, match="no residual branches"):
            timm.create_model("zoo_googlenet", drop_path_rate=0.1)


def test_feature_indices_out_of_range_raise_as_in_timm(timm):
    with torch.device("meta"):
        with pytest.raises(AssertionError, match=r"feature index 5 is out of range \(0 to 4\)"):
            timm.create_model("zoo_resnet18", features_only=True, out_indices=(5,))
        features = timm.create_model("zoo_vgg11", features_only=True, out_indices=(-1, -3))
    assert features.feature_info.reduction() == [8, 32]
    assert [o.shape[1] for o in features(torch.empty(1, 3, 64, 64, device="meta"))] == [256, 512]
    model = meta("resnet18")
    x = torch.empty(1, 3, 64, 64, device="meta")
    with pytest.raises(AssertionError, match=r"feature index 7 is out of range \(0 to 4\)"):
        model.forward_intermediates(x, indices=[7])
    with pytest.raises(AssertionError, match=r"last-n \(6\) is out of range \(1 to 5\)"):
        model.forward_intermediates(x, indices=6)
    stages = model.forward_intermediates(x, indices=[-1, 0], intermediates_only=True)
    assert [s.shape[1] for s in stages] == [64, 512]  # in stage order, as timm's
