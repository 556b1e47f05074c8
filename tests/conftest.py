from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

import zoo
import zoo.models.registry

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
