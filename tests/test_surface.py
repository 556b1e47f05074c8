"""The public surface, pinned: what users import and run stays put when files move inside zoo/.

zoo's top-level API, hubconf's entry points, zoo's names in timm, the console script and the ``zoo.commands``
plugins in pyproject.toml, every module path the README and docs/ name, and the folders the wheel packs.
"""
from __future__ import annotations

import importlib.util
import pkgutil
import re
from pathlib import Path

import pytest
import tomllib

import zoo

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())

ZOO_API = [
    "CheckpointError", "DataError", "ExportError", "HubError", "TrainingError", "UnknownModelError", "ZooError",
    "ZooInputError", "__version__", "create_model", "get_pretrained_tag", "list_models", "load_model", "load_weights",
    "model_info", "predict", "push_to_hub", "register_model", "save_pretrained",
]
"""``zoo.*``: the names ``from zoo import *`` gives and the README's examples use."""

PUBLISHED_MODELS = [
    "googlenet", "googlenet_5x5", "googlenet_res3x3", "googlenet_res5x5", "googlenet_resall3x3", "googlenet_resall5x5",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
]
"""Model names users have been given: each stays a zoo name, a torch.hub entry point and a timm name (zoo_<name>).
A new family adds names without touching this list."""

ENTRY_POINTS = {
    "scripts": {"zoo": "zoo.cli:main"},
    "zoo.commands": {"export": "zoo.export.__main__:build_parser", "bench": "zoo.export.bench:build_parser"},
}
"""The console script ``zoo`` and the plugins that add ``zoo export`` and ``zoo bench``."""

DOCUMENTED = [
    "zoo.data.datasets.register_dataset", "zoo.data.datasets.DataSpec", "zoo.data.datasets.DataConfig",
    "zoo.models.layers.ZooModel", "zoo.models.registry.register_model", "zoo.export.bench.Engine",
    "zoo.export.bench.ENGINES", "zoo.export.timing.Worker", "zoo.export.onnx.create_session",
]
"""The paths the extension guides tell users to import (a family, a dataset, an engine)."""

NOT_MODULES = {"zoo.config", "zoo.arch", "zoo.version", "zoo.weights_sha256", "zoo.commands"}
"""``zoo.``-names in the docs that are not import paths: ONNX metadata keys and the entry-point group."""


def resolve(path: str) -> object:
    """The object ``pkg.module.name`` (or ``pkg.module:name``) names; ImportError or AttributeError if none."""
    return pkgutil.resolve_name(path)


def test_zoo_top_level_api():
    assert sorted(zoo.__all__) == sorted(ZOO_API)
    assert all(callable(getattr(zoo, name)) for name in ZOO_API if name != "__version__")
    assert isinstance(zoo.__version__, str)
    with pytest.raises(AttributeError, match="no attribute 'make_model'"):  # negative control: not a public name
        zoo.make_model  # noqa: B018


def test_hubconf_entry_points_are_the_registry_names():
    spec = importlib.util.spec_from_file_location("hubconf_surface", REPO / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    entries = {name for name, value in vars(hubconf).items() if callable(value) and not name.startswith("_")}
    assert entries == set(zoo.list_models()) and set(PUBLISHED_MODELS) <= entries
    assert hubconf.dependencies[0] == "torch" and hubconf.resnet18.__name__ == "resnet18"


def test_timm_names():
    import timm

    in_timm = set(timm.list_models("zoo_*"))
    assert {f"zoo_{name}" for name in PUBLISHED_MODELS} <= in_timm
    assert "zoo_resnet17" not in in_timm  # negative control


def test_console_script_and_plugins_resolve():
    project = PYPROJECT["project"]
    assert {"scripts": project["scripts"], "zoo.commands": project["entry-points"]["zoo.commands"]} == ENTRY_POINTS
    for group in ENTRY_POINTS.values():
        for target in group.values():
            assert callable(resolve(target)), target
    with pytest.raises((ImportError, AttributeError)):  # negative control: a path that moved away
        resolve("zoo.cliutil.COMMANDS")


@pytest.mark.parametrize("path", DOCUMENTED)
def test_documented_paths_resolve(path):
    assert resolve(path) is not None


def test_every_module_path_the_docs_name_resolves():
    """Every ``zoo.x.y`` in README.md and docs/ is importable: a moved module must not leave a stale path there."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    named = {m for page in pages for m in re.findall(r"(?<![\w/.~-])zoo(?:\.[A-Za-z_]\w*)+", page.read_text())}
    assert {"zoo.models.layers.ZooModel", "zoo.create_model"} <= named  # the scan sees the guide and the quickstart
    stale = []
    for path in sorted(named - NOT_MODULES):
        try:
            resolve(path)
        except (ImportError, AttributeError):
            stale.append(path)
    assert not stale, f"README/docs name paths that do not import: {stale}"
    with pytest.raises((ImportError, AttributeError)):  # negative control: the dataset guide's path before the move
        resolve("zoo.datasets.register_dataset")


def test_the_wheel_packs_every_folder_and_the_package_data():
    """pyproject lists packages by hand (export/ and model_cards/ install inside zoo): every folder of zoo/ with
    modules is among them, and the data files they read are where package-data takes them from."""
    setuptools = PYPROJECT["tool"]["setuptools"]
    folders = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "zoo").rglob("*.py")}
    assert folders <= set(setuptools["packages"]), folders - set(setuptools["packages"])
    assert {"zoo.export", "zoo.model_cards"} <= set(setuptools["packages"])
    data = PYPROJECT["tool"]["setuptools"]["package-data"]["zoo"]
    assert all((REPO / "zoo" / name).is_file() for name in data) and {"pretrained.json", "eval_sample.npz"} <= set(data)
    assert resolve("zoo.models.registry.TAGS_FILE") == REPO / "zoo" / "pretrained.json"
    assert resolve("zoo.data.loading.SAMPLE_FILE") == REPO / "zoo" / "eval_sample.npz"
