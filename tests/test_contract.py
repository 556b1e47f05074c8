"""The contract every model family keeps, checked for every registered model: zoo's own, and timm's (what timm's
tests/test_models.py checks of a model: default cfgs, features, intermediates, fx, TorchScript, pretrained load, and
the parameter groups of its optimizer factory). The "add a family" guide (docs/extending.md) is proven on a toy family:
the rest of zoo (recipes, training, saving, loading, cards, ONNX export) needs no other edit, and timm's contract holds
for it too."""
from __future__ import annotations

import inspect
import io
import math
from collections.abc import Callable

import pytest
import timm
import torch
from timm.models import PretrainedCfg
from timm.models._manipulate import group_parameters
from timm.optim import create_optimizer_v2
from torch import Tensor, nn
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

import zoo
from zoo.models.layers import ZooModel
from zoo.models.registry import _MODELS, factory, meta_model, model_args, model_class
from zoo.train import recipes
from zoo.train.loop import TrainConfig, train

from conftest import TWINS, TinyNet
from test_export import check_exported, check_fold_rule, export_case, export_cases

TORCHSCRIPT_DEPRECATED = pytest.mark.filterwarnings("ignore:`torch.jit.:FutureWarning")
"""torch 2.14 deprecates TorchScript; timm's contract and its users still ask for it."""


def _params(cls: type) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters)


@pytest.mark.parametrize("name", zoo.list_models())
def test_every_registered_model_keeps_the_family_contract(name):
    cls = model_class(name)
    assert issubclass(cls, ZooModel) and cls.family in recipes.PAPER and cls.family in recipes.FAST
    assert {"num_classes", "in_chans", cls.variant_arg} <= _params(cls) and set(cls.arch_args) <= _params(cls)
    assert cls.takes_aux() == ("aux_logits" in _params(cls))  # aux heads exist exactly where aux_logits switches them
    for variant in ("imagenet", "cifar"):
        model = meta_model(name, **{cls.variant_arg: variant, "num_classes": 10, **cls.quick_kwargs})
        assert isinstance(model.get_submodule(model.first_conv), nn.Conv2d)
        assert model.get_classifier().out_features == 10 and len(model.stages()) == len(model.feature_info) == 5
        inference = meta_model(name, **{cls.variant_arg: variant, **model.inference_kwargs()})
        assert not any(k.startswith(cls.aux_prefixes) for k in inference.state_dict()) if cls.takes_aux() else True
        assert all(isinstance(note, str) and note for note in model.card_notes())


@pytest.mark.slow
@TORCHSCRIPT_DEPRECATED
def test_a_new_family_needs_only_its_model_file_and_two_recipe_rows(tiny_family, tmp_path):
    test_every_registered_model_keeps_the_family_contract(tiny_family)
    assert tiny_family in export_cases()  # tests/test_export.py exports it: see the next test
    test_default_cfg_says_what_the_model_is(tiny_family, "cifar")
    test_torchscript_gives_eager_outputs_in_eval_and_train(tiny_family, "cifar")
    test_timm_optimizer_factory_groups_layers_for_layer_decay(tiny_family, "cifar")
    summary = train(TrainConfig(arch=tiny_family, dataset="mnist", recipe="fast", synthetic=64, device="cpu",
                                progress=False, out=str(tmp_path / "run")))
    assert summary["epochs"] == 1
    loaded = zoo.load_model(tmp_path / "run" / "model")
    assert isinstance(loaded, TinyNet) and loaded.in_chans == 1 and loaded.stem == "cifar"
    assert "`tinynet`" in (tmp_path / "run" / "model" / "README.md").read_text()


@pytest.mark.slow  # an export, 3-10 s on 2 cores
def test_a_new_family_exports_with_parity_as_its_batchnorm_declaration_says(tiny_family, tmp_path, monkeypatch):
    """The guide's family in tests/test_export.py's export case: parity, the interface, and its declaration
    ``folds_batchnorm = False`` (pre-activation blocks), without which the export check fails."""
    exported = export_case(tiny_family, export_cases()[tiny_family], tmp_path)
    check_exported(exported)
    monkeypatch.setattr(TinyNet, "folds_batchnorm", True)  # a wrong declaration: its BatchNorms stay, and that is caught
    with pytest.raises(AssertionError, match="folds_batchnorm = False"):
        check_fold_rule(exported.model)


# ---------------------------------------------------------------------------- timm's model contract


def family_cases(both: bool = False) -> list:
    """(name, variant): each family's first registered name (its file registers its smallest model first) in both
    configurations, in the fast tier in its cheap one at 32x32 (the imagenet stem, VGG's cifar head: its
    ``quick_kwargs``) or in both (``both``); in the slow tier, the family's other models but the TWINS (conftest.py:
    they run another model's code) in the cheap configuration (the other one's stem or head is the first name's code)
    or in both (``both``). A new family is in both tiers."""
    zoo.list_models()  # registers the built-in families
    cheap: dict[str, str] = {}
    cases = []
    for name in [n for n in _MODELS if n not in TWINS]:
        family = factory(name).__module__  # one file per family
        first = family not in cheap
        if first:
            cls = model_class(name)
            cheap[family] = cls.quick_kwargs.get(cls.variant_arg, "imagenet")
        for variant in ("cifar", "imagenet"):
            if both or first or variant == cheap[family]:
                fast = first and (both or variant == cheap[family])
                cases.append(pytest.param(name, variant, marks=() if fast else pytest.mark.slow, id=f"{name}-{variant}"))
    return cases


def configured(name: str, variant: str, **kwargs) -> nn.Module:
    """``name`` in its "cifar" or "imagenet" configuration, 10 classes, on the current default device."""
    return zoo.create_model(name, num_classes=10, **{model_class(name).variant_arg: variant, **kwargs})


def on_meta(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return zoo.create_model(name, **kwargs).eval()


def calibrated(model: nn.Module, x: Tensor) -> nn.Module:
    """Batch-norm statistics of one batch (at init, GoogLeNet's std-0.01 convolutions give every input the same
    logits, and a parity check would compare constants), in eval mode."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # a cumulative average: this batch's statistics
    with torch.no_grad():
        model.train()(x)
    return model.eval()


def outputs(out: Tensor | tuple[Tensor, ...]) -> list[Tensor]:
    return list(out) if isinstance(out, tuple) else [out]  # GoogLeNetOutputs is a tuple


def check_default_cfg(model: nn.Module, rebuild: Callable[..., nn.Module]) -> None:
    """timm's test_model_default_cfgs, on the meta device: pretrained_cfg holds timm's keys only, and what they say of
    the model is true at its input size; ``rebuild(**kwargs)`` builds the same model with other kwargs."""
    cfg = model.pretrained_cfg
    PretrainedCfg(**cfg)  # a key timm does not know breaks timm's builder
    assert cfg["num_classes"] == model.num_classes and model.num_features > 0 and model.head_hidden_size > 0
    state = model.state_dict()
    assert f"{cfg['first_conv']}.weight" in state and isinstance(model.get_submodule(cfg["first_conv"]), nn.Conv2d)
    heads = (cfg["classifier"],) if isinstance(cfg["classifier"], str) else cfg["classifier"]
    assert model.get_classifier() is model.get_submodule(heads[0])
    assert all(f"{head}.weight" in state for head in heads) or not model.num_classes
    x = torch.empty(2, *cfg["input_size"], device="meta")
    features = model.forward_features(x)
    assert features.shape[1:] == (model.num_features, *cfg["pool_size"]), (features.shape, cfg["pool_size"])
    pre_logits = model.forward_head(features, pre_logits=True)
    assert pre_logits.shape == (2, model.head_hidden_size) == (2, model.get_classifier().in_features)
    assert model.forward_head(features).shape == (2, model.num_classes)
    model.reset_classifier(0)
    assert model(x).shape == pre_logits.shape
    model.reset_classifier(0, "")
    unpooled = (2, model.num_features, *cfg["pool_size"])
    assert model(x).shape == unpooled and rebuild(num_classes=0, global_pool="")(x).shape == unpooled


def check_torchscript(model: nn.Module, x: Tensor) -> None:
    """timm's test_model_forward_torchscript, and more: scripted, saved and loaded (so nothing was left to Python), the
    model gives eager's outputs in eval and in train mode (the same random draws: dropout, stochastic depth, aux)."""
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(model), buffer)
    scripted = torch.jit.load(io.BytesIO(buffer.getvalue()))
    for training in (False, True):
        model.train(training), scripted.train(training)
        with torch.no_grad():
            torch.manual_seed(0)
            expected = model(x)
            torch.manual_seed(0)
            got = scripted(x)
        assert type(got).__name__ == type(expected).__name__
        for a, b in zip(outputs(expected), outputs(got), strict=True):
            torch.testing.assert_close(b, a, rtol=0, atol=0)
    model.eval()


def check_layer_decay(model: nn.Module) -> None:
    """timm's optimizer factory with layer-wise lr decay reads group_matcher and no_weight_decay: the stem learns
    slowest, the rate rises stage by stage, the classifier and aux heads learn at the full rate; 1-D tensors (biases,
    norms) and no_weight_decay's names get no weight decay; every parameter is in exactly one group."""
    optimizer = create_optimizer_v2(model, "sgd", lr=0.1, weight_decay=1e-4, layer_decay=0.75)
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    params = dict(model.named_parameters())
    assert len(group_of) == len(params) == sum(len(g["params"]) for g in optimizer.param_groups)
    for name, p in params.items():
        no_decay = p.ndim <= 1 or name in model.no_weight_decay()
        assert group_of[id(p)]["weight_decay"] == (0.0 if no_decay else 1e-4), name
    names = {id(m): n for n, m in model.named_modules()}
    scales = [sorted({group_of[id(p)]["lr_scale"] for m in stage for p in m.parameters()}) for stage in model.stages()]
    scales = [s for s in scales if s]  # a stage of parameterless modules (the cifar stem's identities) has none
    assert all(a[-1] < b[0] for a, b in zip(scales, scales[1:])), scales  # rising stage by stage
    layers = len({g["lr_scale"] for g in optimizer.param_groups})
    assert scales[0][0] == pytest.approx(0.75 ** (layers - 1))  # the stem: the lowest
    trunk = {n for stage in model.stages() for m in stage for n, _ in m.named_parameters(names[id(m)])}
    assert all(group_of[id(p)]["lr_scale"] == 1.0 for n, p in params.items() if n not in trunk)  # heads: full rate
    coarse = group_parameters(model, model.group_matcher(coarse=True))
    assert len(coarse) == len(scales) + 1  # a group per stage with parameters, then the heads


@pytest.mark.slow
@pytest.mark.parametrize(("name", "variant"), family_cases(both=True))
def test_default_cfg_says_what_the_model_is(name, variant):
    """Both configurations: VGG's imagenet head has num_features 512 and head_hidden_size 4096, as timm's."""
    kwargs = {model_class(name).variant_arg: variant}
    check_default_cfg(on_meta(name, **kwargs), lambda **k: on_meta(name, **kwargs, **k))
    check_default_cfg(on_meta(name, num_classes=10, **kwargs), lambda **k: on_meta(name, **kwargs, **k))
    with torch.device("meta"):
        model = timm.create_model(f"zoo_{name}", num_classes=10, **kwargs).eval()
    check_default_cfg(model, lambda **k: on_meta(name, **kwargs, **k))


@pytest.mark.slow
@pytest.mark.parametrize("tag", zoo.list_models(pretrained=True))
@TORCHSCRIPT_DEPRECATED
def test_pretrained_tags_keep_the_contract_and_load_as_timm_loads_them(tag):
    check_default_cfg(on_meta(tag), lambda **k: on_meta(tag, **k))
    adapted = timm.create_model(f"zoo_{tag}", pretrained=True, in_chans=1, num_classes=5)  # timm's load test
    assert adapted.num_classes == 5 and adapted.in_chans == 1
    features = timm.create_model(f"zoo_{tag}", pretrained=True, features_only=True).eval()  # timm's features test
    model = zoo.create_model(tag, pretrained=True).eval()
    x = torch.randn(2, *model.pretrained_cfg["input_size"])
    with torch.no_grad():
        torch.testing.assert_close(features(x)[-1], model.forward_features(x), rtol=0, atol=0)  # the same weights
        assert model(x).std(0).max() > 1e-3  # trained weights: the outputs depend on the input
    check_torchscript(model, x)


@pytest.mark.parametrize(("name", "variant"), family_cases())
def test_features_and_intermediates_are_the_stages_feature_info_describes(name, variant):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    model = calibrated(configured(name, variant), x)
    size = [(f["num_chs"], math.ceil(32 / f["reduction"])) for f in model.feature_info]
    with torch.no_grad():
        final, stages = model.forward_intermediates(x)
        assert [(s.shape[1], s.shape[-1]) for s in stages] == size
        torch.testing.assert_close(final, model.forward_features(x), rtol=0, atol=0)
        assert model.forward_intermediates(x, indices=2, intermediates_only=True)[-1].shape == stages[-1].shape
        extractor = timm.create_model(f"zoo_{name}", features_only=True, **model._model_args)  # zoo's is the same
        extractor.load_state_dict({f"model.{k}": v for k, v in model.state_dict().items()})
        assert extractor.feature_info.channels() == [c for c, _ in size]
        for a, b in zip(extractor.eval()(x), stages, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    model.train()
    plain = model.forward_intermediates(x)[0]
    model.set_grad_checkpointing()
    torch.testing.assert_close(model.forward_intermediates(x)[0], plain)  # timm's: checkpointing changes nothing


@pytest.mark.slow
@pytest.mark.parametrize(("name", "variant"), family_cases())
@TORCHSCRIPT_DEPRECATED
def test_fx_traces_eval_and_train_and_torchscript_compiles_the_trace(name, variant):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    model = calibrated(configured(name, variant), x)
    for training in (False, True):
        traced = torch.fx.symbolic_trace(model.train(training))
        torch.manual_seed(0)
        expected = outputs(model(x))
        torch.manual_seed(0)
        got = outputs(traced(x))
        for a, b in zip(expected, got, strict=True):
            torch.testing.assert_close(b, a, rtol=0, atol=0)
    sum(o.sum() for o in got).backward()  # timm's test_model_backward_fx: every parameter gets a gradient
    assert all(p.grad is not None for p in traced.parameters())
    model.eval()
    extractor = create_feature_extractor(model, return_nodes=[get_graph_node_names(model)[1][-1]])
    with torch.no_grad():  # timm's test_model_forward_fx_torchscript
        got = next(iter(torch.jit.script(extractor)(x).values()))
        torch.testing.assert_close(got, model(x), rtol=0, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "variant"), family_cases())
@TORCHSCRIPT_DEPRECATED
def test_torchscript_gives_eager_outputs_in_eval_and_train(name, variant):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    stochastic = {k: 0.2 for k in ("drop_rate", "drop_path_rate") if k in model_args(name)}  # same draws too
    if name not in zoo.list_models(["resnet*", "googlenet_res*"]):  # no residual branches to drop
        stochastic.pop("drop_path_rate", None)
    model = calibrated(configured(name, variant, **stochastic), x)
    assert model(x).std(0).max() > 1e-5  # the outputs depend on the input: the parity below means something
    check_torchscript(model, x)
    with pytest.raises(zoo.ZooInputError, match="in_chans=3"):  # eager keeps its checks
        model(torch.randn(2, 1, 32, 32))


@pytest.mark.parametrize(("name", "variant"), family_cases())
def test_timm_optimizer_factory_groups_layers_for_layer_decay(name, variant):
    with torch.device("meta"):
        check_layer_decay(configured(name, variant))


@TORCHSCRIPT_DEPRECATED
def test_the_contract_checks_fail_where_the_contract_is_broken(monkeypatch):
    """Negative controls: each check catches the gap it is for."""
    vgg = on_meta("vgg11")
    vgg.num_features = 4096  # what VGG reported before: the MLP's width, not the last feature map's
    with pytest.raises(AssertionError):
        check_default_cfg(vgg, lambda **k: on_meta("vgg11", **k))
    resnet = on_meta("resnet18", num_classes=10)
    resnet.pretrained_cfg = {**resnet.pretrained_cfg, "pool_size": (7, 7)}  # 224's, but the input is 32x32
    with pytest.raises(AssertionError):
        check_default_cfg(resnet, lambda **k: on_meta("resnet18", **k))
    resnet.pretrained_cfg = {**meta_model("resnet18").pretrained_cfg, "head_hidden_size": 512}  # not timm's key
    with pytest.raises(TypeError, match="head_hidden_size"):
        check_default_cfg(resnet, lambda **k: on_meta("resnet18", **k))
    check_torchscript(TinyNet(num_classes=10), torch.randn(2, 3, 32, 32))
    with pytest.raises(RuntimeError, match="stages"):
        check_torchscript(StageLoop(num_classes=10), torch.randn(2, 3, 32, 32))
    tiny = TinyNet(num_classes=10)
    monkeypatch.setattr(TinyNet, "group_matcher", lambda self, coarse=False: {"blocks": r"^blocks\.(\d+)"})
    with pytest.raises(AssertionError):  # the stem left out: timm would give it the classifier's full rate
        check_layer_decay(tiny)


class StageLoop(TinyNet):
    def forward_layers(self, x: Tensor) -> Tensor:
        """zoo's forward before TorchScript: a list of modules built in Python, which TorchScript cannot compile."""
        for stage in self.stages():
            for module in stage:
                x = module(x)
        return x
