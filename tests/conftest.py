from __future__ import annotations

import collections
import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import zoo
import zoo.hub.factory
import zoo.models.registry
from zoo.models.layers import Variant, ZooModel, classifier, feature_info
from zoo.models.registry import _MODELS, TIMM_PREFIX, register_model
from zoo.train import recipes

REPO = Path(__file__).resolve().parents[1]
ONE_PER_BLOCK_KIND = {"resnet18", "resnet50", "vgg11_bn", "googlenet_res5x5"}
"""The models the fast tier builds where a test covers every model: one per kind of block (BasicBlock,
Bottleneck, VGG with BN, residual Inception); the full suite builds every model but the TWINS."""
TWINS = {
    "resnet34": "resnet18", "resnet101": "resnet50", "resnet152": "resnet50",
    **{f"vgg{depth}{bn}": f"vgg11{bn}" for depth in (13, 16, 19) for bn in ("", "_bn")},
    "googlenet_5x5": "googlenet", "googlenet_res3x3": "googlenet_res5x5", "googlenet_resall5x5": "googlenet_resall3x3",
}
"""Models whose forward runs the code of the model named: the deeper ResNets and VGGs (more blocks of the same
kinds), and the GoogLeNets that differ from another in the kernel size of their third branch only (the same class and
kinds of module: tests/test_models.py checks it). The full suite's per-model tests of what neither changes
(TorchScript, fx, features, default cfgs, gradient checkpointing, forward and backward) run the model named only; the
cheap per-model tests, every code path's export (tests/test_export.py) and the comparisons with torchvision's
weights run them all. A new family, depth or variant is tested in full until it is added here."""
SMALL = ["--dataset", "mnist", "--synthetic", "64", "--batch-size", "32", "--epochs", "1", "--quiet"]
TINY = [*SMALL, "--device", "cpu"]
"""`zoo train` arguments of a run of seconds: 64 synthetic MNIST images, one epoch (TINY: on the CPU)."""


def code_path(name: str, kernel_sizes: bool = True) -> tuple[str, frozenset]:
    """What ``name``'s forward runs, whatever its depth: its class, and the kinds of module it is built of (type,
    kernel size unless ``kernel_sizes`` is false, residual or not), at its defaults on the meta device (as
    tests/test_export.py's cases count them)."""
    model = zoo.models.registry.meta_model(name)
    kinds = {(type(m).__name__, getattr(m, "kernel_size", None) if kernel_sizes else None, getattr(m, "residual", None))
             for m in model.modules()}
    return type(model).__name__, frozenset(kinds)


def pytest_configure(config):
    """Under pytest-xdist (``-n 2``), each worker takes its share of the cores: two workers of two threads each on
    2 cores run slower than one process, because torch's threads wait on each other. Subprocesses inherit it."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, len(os.sched_getaffinity(0)) // workers)
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


def pytest_collection_modifyitems(config, items):
    """Files with the most slow tests first (pyproject passes --no-loadscope-reorder, so pytest-xdist hands out files
    in this order): a big file started last leaves the other cores idle at the end. Order within a file is kept."""
    slow = collections.Counter(item.path for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow[item.path])  # stable


@pytest.fixture(scope="session", autouse=True)
def zoo_cache_dir(tmp_path_factory) -> Iterator[Path]:
    """zoo's ONNX cache (``$ZOO_CACHE_DIR``, export.cache) in the session's temp folder, never the user's home;
    subprocesses inherit it (test_bench.py gives its module a fresh one)."""
    folder = tmp_path_factory.mktemp("zoo_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZOO_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def module_tmp(request, tmp_path_factory) -> Iterator[Callable[[str], Path]]:
    """``module_tmp(name)``: a fresh folder for a module-scoped fixture's artefacts (trained runs, exports), removed
    when the module's tests are done, unless one failed (pyproject keeps the temp folders of failed tests only).
    tmp_path_factory's own folders stay to the end of the session: a full run would hold every module's at once."""
    made: list[Path] = []
    failed = request.session.testsfailed

    def mktemp(name: str) -> Path:
        made.append(tmp_path_factory.mktemp(name))
        return made[-1]

    yield mktemp
    if request.session.testsfailed == failed:
        for folder in made:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def tag_onnx(tmp_path_factory) -> Callable[[str], Path]:
    """``tag_onnx(tag)``: a bundled tag's ONNX export at its input size, made once per process (3-10 s an export) for
    the tests that read it; one that would change the file copies it first."""
    from zoo.export.onnx import export_onnx

    made: dict[str, Path] = {}

    def export(tag: str) -> Path:
        if tag not in made:
            size = zoo.get_pretrained_tag(tag).data.input_size
            made[tag] = export_onnx(zoo.create_model(tag, pretrained=True), tmp_path_factory.mktemp("tag") / "m.onnx",
                                    input_size=size)
        return made[tag]

    return export


class TinyNet(ZooModel):
    """The guide's example family (docs/extending.md): a first conv and four pre-activation blocks (BatchNorm, ReLU,
    conv: no BatchNorm follows a conv, so it declares ``folds_batchnorm = False``), the five stages the contract asks
    for."""

    family = "tiny"
    variant_arg = "stem"
    first_conv = "conv1"
    classifier_names = "fc"
    folds_batchnorm = False

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, stem: Variant = "cifar", global_pool: str = "avg") -> None:
        super().__init__()
        self.check_variant(stem)
        self.num_classes, self.in_chans, self.stem = num_classes, in_chans, stem
        self.default_input_size, self.min_input_size = (in_chans, 32, 32), 1
        self.conv1 = nn.Conv2d(in_chans, 8, 3, stride=2 if stem == "imagenet" else 1, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1)) for _ in range(4)
        )
        self.feature_info = feature_info([8] * 5, [1] * 5, ["conv1", *(f"blocks.{i}" for i in range(4))])
        self.set_global_pool(global_pool, num_classes)  # avgpool, num_features, head_hidden_size
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
    """The guide's family's one model: a few KB of weights, where a test of machinery (saving, loading, releasing,
    resuming, refusing) needs a zoo model but not a particular architecture."""
    return TinyNet(**kwargs)


@contextlib.contextmanager
def tiny_registered() -> Iterator[str]:
    """The guide's steps (a ZooModel subclass, a registered factory, a row in each recipe table) for as long as the
    block runs; then nothing of it is left registered, in zoo or in timm (which zoo mirrors every model into). Never at
    import: tests parametrized over the registry are collected before any fixture runs. Within a registration, a
    nested one does nothing."""
    if "tinynet" in _MODELS:
        yield "tinynet"
        return
    register_model(tinynet)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setitem(recipes.PAPER, "tiny", dict(lr=0.05, batch_size=16, epochs=1))
            patch.setitem(recipes.FAST, "tiny", dict(lr=0.1, batch_size=16, epochs=1))
            yield "tinynet"
    finally:
        del _MODELS["tinynet"]
        _unregister_from_timm(TIMM_PREFIX + "tinynet")


def _unregister_from_timm(name: str) -> None:
    """Undo zoo.hub.factory's mirror of ``name`` into timm, if timm was imported while it was registered: timm's own
    undo of a registration (which it runs before overwriting one), and the entry point zoo.hub.factory keeps for it."""
    timm_registry = sys.modules.get("timm.models._registry")
    if timm_registry is None or name not in timm_registry._model_entrypoints:
        return
    timm_registry._clear_model_entries(name)
    del timm_registry._model_entrypoints[name]
    zoo.hub.factory.default_cfgs.pop(name, None)
    zoo.hub.factory.__all__.remove(name)
    delattr(zoo.hub.factory, name)


@pytest.fixture
def tiny_family() -> Iterator[str]:
    """``"tinynet"``, registered for this test (:func:`tiny_registered`)."""
    with tiny_registered() as name:
        yield name


@pytest.fixture(scope="module")
def tiny_arch() -> Iterator[str]:
    """``"tinynet"``, registered for a module's tests (:func:`tiny_registered`): for the module-scoped fixtures that
    save or train one model that many tests read."""
    with tiny_registered() as name:
        yield name


def dead_pid() -> int:
    """The pid of a process that has exited: a lock or temp file's owner that is gone."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def real_data_dir() -> Path | None:
    """``$ZOO_DATA_DIR`` or ``../shared/data`` beside the checkout, when it holds the npz files."""
    for candidate in (os.environ.get("ZOO_DATA_DIR"), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "mnist.npz").is_file():
            return Path(candidate)
    return None


@pytest.fixture
def data_dir() -> Path:
    found = real_data_dir()
    if found is None:
        pytest.skip("real MNIST / CIFAR-10 npz files not found (set ZOO_DATA_DIR)")
    return found
