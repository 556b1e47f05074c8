"""The contract every model family keeps, checked for every registered model, and the README's "add a family"
guide proven on a toy family: the rest of zoo (recipes, training, saving, loading, cards) needs no other edit."""
from __future__ import annotations

import inspect

import pytest
import torch
from torch import Tensor, nn

import zoo
from zoo import recipes
from zoo.models.layers import ZooModel, classifier, feature_info
from zoo.registry import _MODELS, meta_model, model_class, register_model
from zoo.train import TrainConfig, train


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


class TinyNet(ZooModel):
    """The README's example family: a first conv and four conv blocks, the five stages the contract asks for."""

    family = "tiny"
    variant_arg = "stem"
    first_conv = "conv1"
    classifier_names = "fc"

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, stem: str = "cifar") -> None:
        super().__init__()
        self.num_classes, self.in_chans, self.stem = num_classes, in_chans, stem
        self.default_input_size, self.min_input_size = (in_chans, 32, 32), 1
        self.conv1 = nn.Conv2d(in_chans, 8, 3, stride=2 if stem == "imagenet" else 1, padding=1)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()) for _ in range(4))
        self.feature_info = feature_info([8] * 5, [1] * 5, ["conv1", *(f"blocks.{i}" for i in range(4))])
        self.set_global_pool("avg", num_classes)  # avgpool, num_features, head_hidden_size
        self.fc = classifier(self.head_hidden_size, num_classes)

    def stages(self) -> list[list[nn.Module]]:
        return [[self.conv1], *([b] for b in self.blocks)]

    def forward_layers(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        for block in self.blocks:
            x = block(x)
        return x

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.pool_features(x)
        return x if pre_logits else self.fc(x)


def tinynet(**kwargs) -> TinyNet:
    return TinyNet(**kwargs)


@pytest.fixture
def tiny_family(monkeypatch):
    """The guide's steps: a ZooModel subclass, a registered factory, a row in each recipe table."""
    register_model(tinynet)
    monkeypatch.setitem(recipes.PAPER, "tiny", dict(lr=0.05, batch_size=16, epochs=1))
    monkeypatch.setitem(recipes.FAST, "tiny", dict(lr=0.1, batch_size=16, epochs=1))
    yield "tinynet"
    del _MODELS["tinynet"]


def test_a_new_family_needs_only_its_model_file_and_two_recipe_rows(tiny_family, tmp_path):
    test_every_registered_model_keeps_the_family_contract(tiny_family)
    summary = train(TrainConfig(arch=tiny_family, dataset="mnist", recipe="fast", synthetic=64, device="cpu",
                                progress=False, out=str(tmp_path / "run")))
    assert summary["epochs"] == 1
    loaded = zoo.load_model(tmp_path / "run" / "model")
    assert isinstance(loaded, TinyNet) and loaded.in_chans == 1 and loaded.stem == "cifar"
    assert "`tinynet`" in (tmp_path / "run" / "model" / "README.md").read_text()
