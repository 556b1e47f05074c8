"""zoo.hub.pretrained: save_pretrained -> load by path, by local mirror, through a real Hub server, and every refusal.

A model of the guide's tiny family (conftest.py: 1 channel, 10 classes, 32x32,
a few KB of weights) is trained two SGD steps on random images; its folder is then loaded every way a user can and must give
bit-identical outputs. The Hub is an ``olah`` server on 127.0.0.1 serving a
git repository of that folder (skipped when olah is not installed).
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import pickle
import re
import shutil
import socket
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub
import pytest
import timm
import torch
import torch.nn.functional as F
from huggingface_hub import constants
from huggingface_hub.utils import filter_repo_objects

import zoo
import zoo.models.registry
from zoo.core.errors import ArgumentError, CheckpointError, HubError
from zoo.core.files import sha256_file
from zoo.data.datasets import get_spec
from zoo.hub.pretrained import MIRROR_ENV, load_pretrained, load_weights, push_to_hub, save_pretrained
from zoo.hub.weights import CARD_NAME, CONFIG_NAME, CURVE_NAME, WEIGHTS_NAME, load_tensors, read_metadata, save_tensors
from zoo.models.registry import PretrainedTag

ARCH = "tinynet"
"""What is saved, loaded, served and pushed: the files are what is tested, not the architecture (conftest.py)."""
RESNET = "resnet18"
"""The refusals that compare two architectures (a ResNet's depth, its stem, another family) use a ResNet."""
KWARGS = {"num_classes": 10, "in_chans": 1}
REPO_ID = "acme/zoo-resnet18-test"
SECRET = "hf_zooTestSecretToken0123456789"


@dataclass(frozen=True)
class Trained:
    run_dir: Path
    folder: Path
    x: torch.Tensor
    logits: torch.Tensor
    sha256: str


def fresh(arch: str = ARCH, **kwargs) -> torch.nn.Module:
    return zoo.create_model(arch, **{**KWARGS, **kwargs}).eval()


@pytest.fixture(scope="module", autouse=True)
def tiny(tiny_arch) -> str:
    """ARCH registered for every test of this module."""
    return tiny_arch


@torch.no_grad()
def logits_of(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.eval()(x)


@pytest.fixture(scope="module")
def trained(module_tmp) -> Trained:
    """A run directory as the trainer writes it, for a model trained two SGD steps on 8 random images."""
    torch.manual_seed(0)
    model = zoo.create_model(ARCH, **KWARGS)
    x, y = torch.randn(8, 1, 32, 32), torch.randint(0, 10, (8,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    history = []
    for epoch in (1, 2):
        model.train()
        out = model(x)
        loss = F.cross_entropy(out, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        logits = logits_of(model, x)
        history.append({
            "epoch": epoch, "lr": 0.05, "train_loss": loss.item(),
            "train_err": 100.0 * (out.argmax(1) != y).float().mean().item(),
            "test_loss": F.cross_entropy(logits, y).item(),
            "test_err": 100.0 * (logits.argmax(1) != y).float().mean().item(),
            "test_top5_err": 100.0 * (~(logits.topk(5, 1).indices == y[:, None]).any(1)).float().mean().item(),
            "epoch_s": 1.0, "img_s": 8.0,
        })
    run_dir = module_tmp("run")
    run = {
        "arch": ARCH, "model_kwargs": KWARGS, "dataset": "mnist", "dataset_source": "npz:mnist.npz", "config": {},
        "world_size": 1, "dataset_sha256": "ab" * 32, "recipe": "paper",
        "recipe_config": {"lr": 0.05, "momentum": 0.9}, "seed": 0, "epochs": 2, "zoo_version": zoo.__version__,
        "git_commit": "", "input_size": [1, 32, 32], "mean": [0.1307], "std": [0.3081],
        "label_names": [str(i) for i in range(10)],
    }
    (run_dir / "run.json").write_text(json.dumps(run))
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    folder = save_pretrained(
        model, run_dir / "model", arch=ARCH, model_kwargs=KWARGS, tag="mnist_test",
        data=get_spec("mnist").data_config(dataset_sha256=run["dataset_sha256"]), recipe="paper",
        metrics={"final_test_err": history[-1]["test_err"], "best_epoch": 2}, history=history,
    )
    return Trained(run_dir, folder, x, logits_of(model, x), sha256_file(folder / WEIGHTS_NAME))


def assert_same_outputs(model: torch.nn.Module, trained: Trained) -> None:
    assert torch.equal(logits_of(model, trained.x), trained.logits)


@pytest.mark.slow
def test_trained_model_differs_from_a_fresh_one(trained):
    """The negative control of every round trip below: random weights give other outputs."""
    assert not torch.equal(logits_of(fresh(), trained.x), trained.logits)


def test_folder_holds_what_the_contract_says(trained):
    assert sorted(os.listdir(trained.folder)) == sorted([WEIGHTS_NAME, CONFIG_NAME, CARD_NAME, CURVE_NAME])
    meta = read_metadata(trained.folder / WEIGHTS_NAME)
    assert meta["arch"] == ARCH and meta["tag"] == "mnist_test" and json.loads(meta["model_kwargs"]) == KWARGS
    data = json.loads(meta["data"])
    assert (meta["num_classes"], meta["in_chans"], data["input_size"]) == ("10", "1", [1, 32, 32])
    assert data["dataset"] == "mnist" and data["dataset_sha256"] == "ab" * 32 and meta["recipe"] == "paper"
    assert data["mean"] == [0.1307] and len(data["label_names"]) == 10 and data["crop_pct"] == 32 / 28
    assert meta["zoo_version"] == zoo.__version__ and "final_test_err" in data["metrics"]
    if (Path(zoo.__file__).parents[1] / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", meta["git_commit"])
    config = json.loads((trained.folder / CONFIG_NAME).read_text())
    assert config["architecture"] == f"zoo_{ARCH}" and config["num_classes"] == 10
    assert config["model_args"] == KWARGS and config["pretrained_cfg"]["input_size"] == [1, 32, 32]
    assert config["zoo"]["sha256"] == trained.sha256
    # timm's own parser accepts it (PretrainedCfg refuses unknown keys)
    from timm.models._hub import load_model_config_from_path

    pretrained_cfg, name, model_args = load_model_config_from_path(trained.folder)
    assert name == f"zoo_{ARCH}" and model_args == KWARGS and pretrained_cfg["mean"] == [0.1307]


def test_load_by_folder_and_by_file_into_a_wrapped_model(trained):
    assert_same_outputs(load_weights(fresh(), trained.folder), trained)
    wrapped = torch.nn.DataParallel(fresh())
    assert load_weights(wrapped, str(trained.folder / WEIGHTS_NAME), sha256=trained.sha256) is wrapped
    assert_same_outputs(wrapped.module, trained)


def test_load_from_local_mirror_never_touches_the_network(trained, tmp_path, monkeypatch):
    (tmp_path / REPO_ID).parent.mkdir()
    shutil.copytree(trained.folder, tmp_path / REPO_ID)  # a mirror holds copies (a link out of it is refused)
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path))

    def no_network(*args, **kwargs):
        raise AssertionError("hf_hub_download called although the mirror holds the repo")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    assert_same_outputs(load_weights(fresh(), f"hf-hub:{REPO_ID}"), trained)
    assert_same_outputs(load_pretrained(fresh(), tag_for(trained)), trained)


# ---------------------------------------------------------------------------- faults


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # in the tensor data: safetensors itself cannot notice
    path.write_bytes(bytes(data))


def append_garbage(path: Path) -> None:
    with open(path, "ab") as f:
        f.write(b"trailing garbage")


class Payload:
    """Unpickling this creates the file ``marker``: proof that a loader executed a pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def pickle_payload(path: Path) -> None:
    path.write_bytes(pickle.dumps(Payload(path.parent / "PWNED")))


def test_pickle_payload_is_live(tmp_path):
    """Control for the pickle fault below: the same payload does create its marker when unpickled."""
    pickle_payload(tmp_path / "p.bin")
    pickle.loads((tmp_path / "p.bin").read_bytes()).close()
    assert (tmp_path / "PWNED").exists()


FAULTS = {"truncated": truncate, "flipped byte": flip_byte, "trailing garbage": append_garbage, "pickle": pickle_payload}


@pytest.mark.parametrize("with_digest", [True, False], ids=["config digest", "bare file"])
@pytest.mark.parametrize("fault", list(FAULTS))
def test_corrupt_files_refused_and_nothing_half_loaded(trained, tmp_path, fault, with_digest):
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(trained.folder / WEIGHTS_NAME, folder)
    if with_digest:
        shutil.copy(trained.folder / CONFIG_NAME, folder)
    FAULTS[fault](folder / WEIGHTS_NAME)
    model = fresh()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    if with_digest:
        message = "sha256 mismatch .*config.json expects " + trained.sha256
    elif fault == "flipped byte":  # a bit flip in tensor data is only visible to a digest: pin one
        message = "sha256 mismatch .* the sha256 argument expects"
    else:
        message = "not a valid safetensors file .* zoo never unpickles"
    pin = trained.sha256 if fault == "flipped byte" and not with_digest else None
    with pytest.raises(CheckpointError, match=message):
        load_weights(model, folder, sha256=pin)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not (folder / "PWNED").exists()


def write_weights(folder: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Replace a folder's weights, keeping its metadata and updating config.json's digest."""
    save_tensors(folder / WEIGHTS_NAME, tensors, read_metadata(folder / WEIGHTS_NAME))
    config = json.loads((folder / CONFIG_NAME).read_text())
    config["zoo"]["sha256"] = sha256_file(folder / WEIGHTS_NAME)
    (folder / CONFIG_NAME).write_text(json.dumps(config))


def nan_folder(trained: Trained, tmp_path: Path) -> Path:
    folder = Path(shutil.copytree(trained.folder, tmp_path / "nan"))
    tensors, _ = load_tensors(folder / WEIGHTS_NAME)
    tensors["blocks.1.2.weight"][0, 0, 0, 0] = float("nan")
    write_weights(folder, tensors)
    return folder


def test_nan_weights_refused(trained, tmp_path):
    with pytest.raises(CheckpointError, match="NaN or infinite values in blocks.1.2.weight"):
        load_weights(fresh(), nan_folder(trained, tmp_path))


@pytest.mark.parametrize(
    ("arch", "kwargs", "message"),
    [
        ("vgg11", {**KWARGS, "head": "cifar"}, "wrong architecture: .* 'resnet18' weights \\(ResNet\\), the model is a VGG"),
        ("resnet34", KWARGS, "missing layer1.2.*build it with zoo.create_model\\('resnet18', num_classes=10, in_chans=1\\)"),
        ("resnet18", {"num_classes": 100, "in_chans": 1}, "weights have num_classes=10; pass num_classes=10"),
        ("resnet18", {"num_classes": 10, "in_chans": 3}, "weights have in_chans=1; pass in_chans=1"),
        ("resnet18", {**KWARGS, "stem": "cifar"}, "conv1.weight \\(64, 1, 7, 7\\) vs model \\(64, 1, 3, 3\\)"),
    ],
)
def test_wrong_model_refused_with_the_fix(resnet_folder, arch, kwargs, message):
    with pytest.raises(CheckpointError, match=message):
        load_weights(zoo.create_model(arch, **kwargs), resnet_folder)


def test_missing_source_says_what_to_pass(tmp_path):
    with pytest.raises(CheckpointError, match="pass a .safetensors file, a folder written by zoo.save_pretrained"):
        load_weights(fresh(), tmp_path / "nothing")
    with pytest.raises(HubError, match="not hf-hub:owner/name"):
        load_weights(fresh(), "hf-hub:no-owner")


# ---------------------------------------------------------------------------- save_pretrained refusals


def save(model, out_dir, **overrides):
    return save_pretrained(model, out_dir, **{"arch": ARCH, "model_kwargs": KWARGS, "history": None, **overrides})


@pytest.fixture(scope="module")
def resnet_folder(module_tmp) -> Path:
    """A saved (untrained) resnet18, for the refusals that name a ResNet's layers, depth and stem."""
    return save(fresh(RESNET), module_tmp("resnet") / "model", arch=RESNET)


def test_save_failing_midway_leaves_nothing(trained, tmp_path, monkeypatch):
    import zoo.hub.cards

    def broken_card(*args, **kwargs):
        raise RuntimeError("card failed after the weights were written")

    monkeypatch.setattr(zoo.hub.pretrained, "build_card", broken_card)  # the card step inside save_pretrained
    with pytest.raises(RuntimeError, match="card failed"):
        save(fresh(), tmp_path / "new")
    assert os.listdir(tmp_path) == []

    existing = Path(shutil.copytree(trained.folder, tmp_path / "existing"))
    before = {p.name: p.read_bytes() for p in existing.iterdir()}
    with pytest.raises(RuntimeError, match="card failed"):
        save(fresh(), existing)
    assert {p.name: p.read_bytes() for p in existing.iterdir()} == before
    assert os.listdir(tmp_path) == ["existing"]


@pytest.mark.parametrize(
    ("diverged", "overrides", "message"),
    [
        (False, {"arch": "resnet34"},
         "the model is not zoo.create_model\\('resnet34', .*\\(layer1.2 is a BasicBlock in resnet34, nothing in the model"),
        (False, {"model_kwargs": {"num_classes": 10}}, "in_chans is 3 in resnet18, 1 in the model"),
        (False, {"arch": "vgg11"}, "vgg11 is a VGG, the model a ResNet"),
        (False, {"model_kwargs": {**KWARGS, "stem": "cifar"}}, "stem is 'cifar' in resnet18, 'imagenet' in the model"),
        (True, {}, "NaN or infinite values in fc.bias"),
        (False, {"metrics": {"final_test_err": 0.5, "final_test_top5_err": 250.0}}, "percentage in \\[0, 100\\]"),
        (False, {"data": get_spec("mnist").data_config(label_names=("a", "b"))}, "2 label names for num_classes=10"),
    ],
)
def test_save_refuses_bad_input_and_writes_nothing(tmp_path, diverged, overrides, message):
    model = fresh(RESNET)
    if diverged:
        with torch.no_grad():
            model.fc.bias[3] = float("inf")
    with pytest.raises(CheckpointError, match=message):
        save(model, tmp_path / "out", **{"arch": RESNET, **overrides})
    assert os.listdir(tmp_path) == []


def test_save_refuses_a_module_zoo_did_not_build(tmp_path):
    """The negative control is every save above: a zoo model saves."""
    with pytest.raises(ArgumentError, match="save_pretrained takes a zoo model .*, not a Linear"):
        save_pretrained(torch.nn.Linear(2, 2), tmp_path / "out", arch="resnet18", model_kwargs=KWARGS)
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------- timm


def test_timm_local_dir_builds_and_loads(trained):
    model = timm.create_model(f"local-dir:{trained.folder}", pretrained=True)
    assert type(model) is type(fresh())
    assert_same_outputs(model, trained)
    # timm's own adaptation works through config.json: a new 5-class head, the trunk kept
    five = timm.create_model(f"local-dir:{trained.folder}", pretrained=True, num_classes=5)
    assert five.fc.out_features == 5 and torch.equal(five.conv1.weight, model.conv1.weight)
    # and zoo's checked loader accepts a model timm built (timm's extra attributes are not architecture)
    assert_same_outputs(load_weights(timm.create_model(f"zoo_{ARCH}", **KWARGS), trained.folder), trained)


# ---------------------------------------------------------------------------- a real Hub server


@dataclass(frozen=True)
class Hub:
    endpoint: str
    commit: str
    cache: Path
    mirrors: Path  # olah serves every git repository under mirrors/models/<owner>/<name>


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=zoo", "-c", "user.email=zoo@localhost", "-c", "core.loosecompression=0", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    ).stdout.strip()


@pytest.fixture(scope="module")
def hub(trained, module_tmp):
    """olah serving a git repository of the trained folder on 127.0.0.1, and huggingface_hub pointed at it.

    huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE once, when it is
    imported (zoo imports it through timm), so its constants are patched beside
    the environment (which zoo reads at call time). The cache is shared by the
    tests of this module: olah serves a file in seconds, and what is
    tested after the first download is the cache path a user's second load takes.
    """
    if importlib.util.find_spec("olah") is None:
        pytest.skip("olah is not installed (pip install olah): the Hub download path is not tested")
    if shutil.which("git") is None:
        pytest.skip("git is not installed: olah serves git repositories")
    root = module_tmp("olah")
    repo = Path(shutil.copytree(trained.folder, root / "mirrors" / "models" / REPO_ID))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "zoo test checkpoint")
    commit = git(repo, "rev-parse", "HEAD")
    port = free_port()
    config = root / "olah.toml"
    config.write_text(
        f'[basic]\nhost = "127.0.0.1"\nport = {port}\nrepos-path = "{root / "cache"}"\n'
        f'mirror-netloc = "127.0.0.1:{port}"\nmirror-lfs-netloc = "127.0.0.1:{port}"\n'
        f'mirrors-path = ["{root / "mirrors"}"]\n[accessibility]\noffline = true\n'
    )
    endpoint = f"http://127.0.0.1:{port}"
    with open(root / "olah.out", "wb") as log, pytest.MonkeyPatch.context() as mp:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from olah.server import cli; cli()", "-c", str(config), "--log-path", str(root / "logs")],
            stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            deadline = time.monotonic() + 60
            while True:
                try:
                    opener.open(f"{endpoint}/api/models/{REPO_ID}/revision/main", timeout=5).close()
                    break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    if proc.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"olah did not start: {(root / 'olah.out').read_text()[-2000:]}")
                    time.sleep(0.2)
            cache = root / "hf_home" / "hub"
            mp.setenv("HF_ENDPOINT", endpoint)
            mp.setenv("HF_HOME", str(root / "hf_home"))
            mp.setenv("HF_HUB_OFFLINE", "0")
            mp.delenv(MIRROR_ENV, raising=False)
            mp.setattr(constants, "ENDPOINT", endpoint)
            mp.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
            mp.setattr(constants, "HF_HUB_CACHE", str(cache))
            mp.setattr(constants, "HF_HUB_OFFLINE", False)
            yield Hub(endpoint, commit, cache, root / "mirrors")
        finally:
            proc.kill()
            proc.wait()


def tag_for(trained: Trained, **overrides) -> PretrainedTag:
    fields = dict(
        arch=ARCH, tag="mnist_test", hf_hub_id=REPO_ID, revision="0" * 40, sha256=trained.sha256, model_kwargs=KWARGS,
        data=get_spec("mnist").data_config(metrics={"final_test_err": 50.0}), recipe="paper",
    )
    return PretrainedTag(**{**fields, **overrides})


@pytest.mark.slow
def test_round_trip_through_the_hub(trained, hub, monkeypatch):
    assert_same_outputs(load_weights(fresh(), f"hf-hub:{REPO_ID}"), trained)
    assert_same_outputs(load_weights(fresh(), f"hf-hub:{REPO_ID}@{hub.commit}"), trained)
    cached = huggingface_hub.try_to_load_from_cache(REPO_ID, WEIGHTS_NAME, revision=hub.commit)
    assert isinstance(cached, str) and Path(cached).is_relative_to(hub.cache)
    # offline: from the cache only, with the server out of reach
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert_same_outputs(load_weights(fresh(), f"hf-hub:{REPO_ID}@{hub.commit}"), trained)


def test_pretrained_tag_loads_through_the_hub(trained, hub, monkeypatch):
    tag = tag_for(trained, revision=hub.commit)
    assert_same_outputs(load_pretrained(fresh(), tag), trained)
    monkeypatch.setitem(zoo.models.registry._tags(), tag.name, tag)
    assert tag.name in zoo.list_models(pretrained=True)
    assert_same_outputs(zoo.create_model(f"{ARCH}.mnist_test", pretrained=True), trained)


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"sha256": "0" * 64}, CheckpointError, f"sha256 mismatch .* tag {ARCH}.mnist_test expects 0{{64}}"),
        ({"revision": "main"}, HubError, "pins revision 'main'; a tag must pin a 40-hex commit"),
        ({"arch": "resnet34"}, CheckpointError, f"holds '{ARCH}' weights, but tag resnet34.mnist_test is for 'resnet34'"),
        ({"hf_hub_id": "acme/missing"}, HubError, "cannot fetch hf-hub:acme/missing@"),
    ],
)
def test_bad_tag_refused(trained, hub, overrides, error, message):
    tag = tag_for(trained, **{"revision": hub.commit, **overrides})
    with pytest.raises(error, match=message):
        load_pretrained(zoo.create_model(tag.arch, **KWARGS), tag)


@pytest.mark.slow
def test_a_bundled_tag_served_by_the_hub_loads_the_same(hub, tmp_path, monkeypatch):
    """The real bundled MNIST checkpoint, published as a repo: fetched at its commit, checked against its pin."""
    import dataclasses

    tag = zoo.get_pretrained_tag("googlenet_res5x5.mnist_paper")
    repo = Path(shutil.copytree(tag.bundled, hub.mirrors / "models" / "zoo-models" / tag.name))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "publish the bundled tag")
    published = dataclasses.replace(tag, hf_hub_id=f"zoo-models/{tag.name}", revision=git(repo, "rev-parse", "HEAD"))
    expected = zoo.create_model(tag.name, pretrained=True).eval()
    monkeypatch.setattr(zoo.models.registry, "BUNDLED_DIR", tmp_path)  # as in a wheel install: no bundled copy
    model = load_pretrained(zoo.create_model(tag.name), published).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), expected(x))
    cached = huggingface_hub.try_to_load_from_cache(published.hf_hub_id, WEIGHTS_NAME, revision=published.revision)
    assert isinstance(cached, str) and Path(cached).is_relative_to(hub.cache)
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load_pretrained(zoo.create_model(tag.name), dataclasses.replace(published, sha256="0" * 64))


def test_corrupt_cache_entry_refused_and_the_fix_works(trained, hub):
    source = f"hf-hub:{REPO_ID}@{hub.commit}"
    load_weights(fresh(), source)  # in the cache
    blob = Path(huggingface_hub.try_to_load_from_cache(REPO_ID, WEIGHTS_NAME, revision=hub.commit)).resolve()
    assert blob.is_relative_to(hub.cache)
    original = blob.read_bytes()
    try:
        flip_byte(blob)
        with pytest.raises(CheckpointError, match=f"sha256 mismatch.*delete {blob} and load again"):
            load_weights(fresh(), source)
        blob.unlink()  # the fix the message gives: the next load downloads the file again
        plan = huggingface_hub.hf_hub_download(REPO_ID, WEIGHTS_NAME, revision=hub.commit, dry_run=True)
        assert plan.will_download
    finally:
        blob.write_bytes(original)  # the cache is shared by this module's tests


def test_offline_without_cache_says_what_to_do(hub, tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubError, match="cannot fetch .*HF_HUB_OFFLINE=1.*ZOO_HUB_DIR"):
        load_weights(fresh(), f"hf-hub:{REPO_ID}")


def test_timm_hf_hub_builds_and_loads(trained, hub):
    model = timm.create_model(f"hf-hub:{REPO_ID}@{hub.commit}", pretrained=True)
    assert type(model) is type(fresh())
    assert_same_outputs(model, trained)


# ---------------------------------------------------------------------------- push


def test_push_dry_run_lists_exactly_the_files_sent(trained, tmp_path):
    folder = Path(shutil.copytree(trained.folder, tmp_path / "model"))
    (folder / "notes.txt").write_text("not for the Hub")
    result = push_to_hub(folder, REPO_ID, token=SECRET, dry_run=True)
    assert result.files == (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME, CURVE_NAME) and result.commit_url is None
    (folder / CURVE_NAME).unlink()
    assert push_to_hub(folder, REPO_ID, dry_run=True).files == (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME)


def test_push_sends_exactly_the_listed_files(trained, tmp_path, monkeypatch):
    folder = Path(shutil.copytree(trained.folder, tmp_path / "model"))
    (folder / "notes.txt").write_text("not for the Hub")
    calls = {}

    class RecordingApi:
        def __init__(self, endpoint=None, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, **kwargs):
            calls["create_repo"] = (repo_id, kwargs)

        def upload_folder(self, **kwargs):
            calls["upload_folder"] = kwargs
            return huggingface_hub.CommitInfo(
                commit_url=f"https://huggingface.co/{REPO_ID}/commit/{'1' * 40}", commit_message="m",
                commit_description="", oid="1" * 40,
            )

    monkeypatch.setattr("zoo.hub.pretrained.HfApi", RecordingApi)
    result = push_to_hub(folder, REPO_ID, token=SECRET, private=True)
    assert calls["token"] == SECRET and calls["create_repo"] == (REPO_ID, {"private": True, "exist_ok": True})
    upload = calls["upload_folder"]
    on_disk = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    sent = sorted(filter_repo_objects(on_disk, allow_patterns=upload["allow_patterns"]))
    assert upload["repo_id"] == REPO_ID and Path(upload["folder_path"]) == folder
    assert "notes.txt" in on_disk and "notes.txt" not in sent  # the Hub's own filter leaves out what is not listed
    assert sent == sorted(result.files) == sorted([WEIGHTS_NAME, CONFIG_NAME, CARD_NAME, CURVE_NAME])


def test_push_refuses_non_finite_weights_and_cards_without_metrics(trained, tmp_path):
    with pytest.raises(CheckpointError, match="NaN or infinite values"):
        push_to_hub(nan_folder(trained, tmp_path), REPO_ID, dry_run=True)
    folder = Path(shutil.copytree(trained.folder, tmp_path / "no-metrics"))
    card = (folder / CARD_NAME).read_text()
    (folder / CARD_NAME).write_text(card[: card.index("model-index:")] + card[card.index("---\n", 4):])
    with pytest.raises(HubError, match="README.md has no model-index metrics.*zoo card RUN_DIR"):
        push_to_hub(folder, REPO_ID, dry_run=True)


def test_push_failure_never_shows_the_token(trained, hub, capsys, caplog):
    """olah accepts no uploads: the failure is real, and its text must not carry the token anywhere."""
    caplog.set_level(logging.DEBUG)
    with pytest.raises(HubError, match=f"push of .* to {REPO_ID} failed") as info:
        push_to_hub(trained.folder, REPO_ID, token=SECRET)
    shown = "".join(traceback.format_exception(info.value)) + repr(info.value)
    captured = capsys.readouterr()
    for text in (shown, captured.out, captured.err, caplog.text):
        assert SECRET not in text


def test_push_masks_a_token_that_the_failure_quotes(trained, monkeypatch):
    """A library error may echo request headers; the masking, not luck, keeps the token out."""

    class LeakyApi:
        def __init__(self, endpoint=None, token=None):
            self.token = token or huggingface_hub.get_token()  # what HfApi would send

        def create_repo(self, repo_id, **kwargs):
            raise ValueError(f"rejected header Authorization: Bearer {self.token}")

    monkeypatch.setattr("zoo.hub.pretrained.HfApi", LeakyApi)
    with pytest.raises(HubError, match="Bearer \\*\\*\\*") as info:
        push_to_hub(trained.folder, REPO_ID, token=SECRET)
    assert SECRET not in "".join(traceback.format_exception(info.value))
    monkeypatch.setenv("HF_TOKEN", SECRET)  # the token huggingface_hub finds by itself is masked too
    with pytest.raises(HubError, match="Bearer \\*\\*\\*"):
        push_to_hub(trained.folder, REPO_ID)


def test_cli_push_dry_run_prints_files_not_the_token(trained, monkeypatch, capsys):
    from zoo.cli import main

    monkeypatch.setenv("HF_TOKEN", SECRET)
    assert main(["push", str(trained.folder), REPO_ID, "--dry-run"]) == 0
    out = capsys.readouterr()
    assert [line.strip() for line in out.out.splitlines()[1:]] == [WEIGHTS_NAME, CONFIG_NAME, CARD_NAME, CURVE_NAME]
    assert SECRET not in out.out + out.err
    assert main(["push", str(trained.folder / "missing"), REPO_ID, "--dry-run"]) == 2
    assert "lacks model.safetensors" in capsys.readouterr().err
