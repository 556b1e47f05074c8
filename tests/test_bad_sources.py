"""Issue 28's cases: special files, tensors predict cannot answer, environment variables, non-finite figures,
impossible weights, links out of an image folder, a reproduction that cannot start, and the small flaws.

A read that could block (a FIFO) runs under a watchdog that opens the FIFO's other end after a timeout, so a
regression fails the test instead of hanging the suite; the commands of the issue run in a subprocess with a timeout.
"""
from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo.cli import main
from zoo.core.errors import ArgumentError, CheckpointError, DataError, ZooInputError
from zoo.data.loading import load_dataset, scan_folder
from zoo.export.onnx import create_session
from zoo.export.report import compare
from zoo.hub.pretrained import load_model, load_weights, save_pretrained
from zoo.hub.rundir import RunDir, load_state
from zoo.hub.weights import CheckpointMeta, save_tensors, state_dict_of
from zoo.inference.runtime import predict
from zoo.paper import reproduce as R

from conftest import TINY, dead_pid

HANG_S = 60.0
"""Longer than any of these reads takes on a loaded machine; a read still blocked then is a hang."""


class Watchdog:
    """Unblocks a reader of ``fifo`` after HANG_S by opening the other end; ``fired`` says that it had to."""

    def __init__(self, fifo: Path) -> None:
        self.fifo, self.fired = fifo, False
        self.timer = threading.Timer(HANG_S, self._unblock)
        self.timer.start()

    def _unblock(self) -> None:
        try:
            os.close(os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK))
            self.fired = True
        except OSError:  # no reader: nothing was blocked
            pass


@pytest.fixture
def fifo(tmp_path):
    """A FIFO maker: each FIFO watched, so a read of one that blocks fails the test (``dog.fired``) after HANG_S."""
    dogs = []

    def make(path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
        dogs.append(Watchdog(path))
        return path

    yield make
    for dog in dogs:
        dog.timer.cancel()
        assert not dog.fired, f"a read of {dog.fifo} blocked until the watchdog opened it"


def picture(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(path)
    return path


def image_folder(root: Path) -> Path:
    for name in ("a", "b"):
        for i in range(2):
            picture(root / name / f"{i}.png")
    return root


@pytest.fixture
def model(tiny_family):
    """A small model to predict with, load into and save: the guide's tiny family (conftest.py) fed 32x32 images."""
    net = zoo.create_model(tiny_family, num_classes=3)
    net.pretrained_cfg = {**net.pretrained_cfg, "input_size": (3, 32, 32)}
    return net


# ---------------------------------------------------------------------------- 2. only regular files are read


def test_a_fifo_in_an_image_folder_is_named_before_anything_is_read(fifo, tmp_path):
    fifo(image_folder(tmp_path / "fold") / "a" / "f.png")
    with pytest.raises(DataError, match=r"f\.png is a FIFO, not a regular file"):
        scan_folder(tmp_path / "fold")
    (tmp_path / "fold" / "a" / "f.png").unlink()
    assert len(scan_folder(tmp_path / "fold")[1]) == 4  # the negative control: the same folder without it


def test_special_files_given_to_predict_are_named(fifo, tmp_path, model):
    with pytest.raises(ZooInputError, match=r"^\S+x\.png is a FIFO, not a regular file"):
        predict(fifo(tmp_path / "x.png"), model)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "s.png"))
    with pytest.raises(ZooInputError, match=r"s\.png is a socket"):
        predict(tmp_path / "s.png", model)
    server.close()
    with pytest.raises(ZooInputError, match="/dev/zero is a character device"):
        predict("/dev/zero", model)
    assert predict(picture(tmp_path / "ok.png"), model)[0]["image"].endswith("ok.png")


@pytest.mark.parametrize("name", ["model.safetensors", "config.json"])
def test_a_fifo_in_a_checkpoint_folder_is_named(name, fifo, tmp_path, model):
    save_pretrained(model, tmp_path / "saved")
    (tmp_path / "saved" / name).unlink()
    fifo(tmp_path / "saved" / name)
    with pytest.raises(CheckpointError, match=rf"{name} is a FIFO, not a regular file"):
        load_model(tmp_path / "saved")


def test_a_fifo_as_weights_npz_or_onnx_is_named(fifo, tmp_path, model):
    with pytest.raises(CheckpointError, match="w.safetensors is a FIFO"):
        load_weights(model, fifo(tmp_path / "w.safetensors"))
    with pytest.raises(DataError, match="mnist.npz is a FIFO"):
        load_dataset("mnist", fifo(tmp_path / "data" / "mnist.npz").parent)
    with pytest.raises(ArgumentError, match="m.onnx is a FIFO"):
        create_session(fifo(tmp_path / "m.onnx"))
    with pytest.raises(ArgumentError, match="m.onnx is a FIFO"):
        predict(picture(tmp_path / "ok.png"), tmp_path / "m.onnx")


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train", "predict"])
def test_the_issues_fifo_commands_end_in_one_line(command, tmp_path):
    os.mkfifo(tmp_path / "x.png")
    if command == "train":
        os.mkfifo(image_folder(tmp_path / "fold") / "a" / "f.png")
        args = ["train", "resnet18", "--dataset", f"folder:{tmp_path / 'fold'}", "--epochs", "1", "--device", "cpu",
                "--out", str(tmp_path / "run"), "--quiet"]
    else:
        saved = save_pretrained(zoo.create_model("resnet18", num_classes=3), tmp_path / "saved")  # a subprocess's model
        args = ["predict", str(tmp_path / "x.png"), "--model", str(saved)]
    try:
        done = subprocess.run([sys.executable, "-m", "zoo.cli", *args], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"zoo {command} with a FIFO did not return in 120 s")
    assert done.returncode == 2 and "is a FIFO, not a regular file" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------- 3. predict checks its tensors


@pytest.mark.parametrize(("tensor", "message"), [
    (torch.full((3, 8, 8), math.nan), "tensor 0 holds NaN or infinite values"),
    (torch.full((3, 8, 8), math.inf), "tensor 0 holds NaN or infinite values"),
    (torch.zeros(1, 3, 0, 32), r"tensor 0 has an empty dimension \(shape \(1, 3, 0, 32\)\)"),
    (torch.full((3, 8, 8), 300, dtype=torch.int64), r"tensor 0 holds integers outside 0..255 \(300 to 300\)"),
    (torch.full((3, 8, 8), -1, dtype=torch.int32), "tensor 0 holds integers outside 0..255"),
    (torch.ones(3, 8, 8, dtype=torch.bool), "tensor 0 is torch.bool, not an image's dtype"),
    (torch.ones(3, 8, 8, dtype=torch.complex64), "tensor 0 is torch.complex64"),
])
def test_predict_refuses_tensors_it_cannot_answer(tensor, message, model):
    with pytest.raises(ZooInputError, match=message):
        predict(tensor, model)


@pytest.mark.slow
def test_predict_takes_integer_and_float_images_in_range(model):
    ints = predict(torch.full((3, 8, 8), 255, dtype=torch.int64), model)
    floats = predict(torch.ones(3, 8, 8), model)
    assert ints[0]["top"] == floats[0]["top"]  # 255 is 1.0


# ---------------------------------------------------------------------------- 4. environment variables


@pytest.mark.parametrize(("env", "message"), [
    ({"WORLD_SIZE": "abc"}, "WORLD_SIZE='abc' is not a whole number from 1 up"),
    ({"WORLD_SIZE": "0"}, "WORLD_SIZE='0' is not a whole number"),
    ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK='2' is not a whole number from 0 to 1"),
    ({"LOCAL_RANK": "-1"}, "LOCAL_RANK='-1'"),
    ({"WORLD_SIZE": "2", "MASTER_PORT": "29500"}, "MASTER_ADDR='' is empty but WORLD_SIZE=2"),
    ({"WORLD_SIZE": "2", "MASTER_ADDR": "localhost"}, "MASTER_PORT='' is empty but WORLD_SIZE=2"),
    ({"MASTER_PORT": "99999"}, "MASTER_PORT='99999' is not a whole number from 1 to 65535"),
    ({"HF_ENDPOINT": "not a url"}, "HF_ENDPOINT='not a url' is not an http(s) URL"),
    ({"HF_ENDPOINT": "ftp://mirror"}, "HF_ENDPOINT='ftp://mirror'"),
    ({"HF_HUB_OFFLINE": "maybe"}, "HF_HUB_OFFLINE='maybe' is not one of"),
    ({"ZOO_DEBUG": "verbose"}, "ZOO_DEBUG='verbose' is not one of"),
    ({"ZOO_GIT_COMMIT": "not-a-commit"}, "ZOO_GIT_COMMIT='not-a-commit' is not a git commit"),
    ({"ZOO_DATA_DIR": "/dev/null"}, "ZOO_DATA_DIR='/dev/null' is not a directory"),
    ({"ZOO_HUB_DIR": "/dev/null"}, "ZOO_HUB_DIR='/dev/null' is not a directory"),
])
def test_bad_environment_variables_are_one_line_before_any_work(env, message, monkeypatch, capsys, tmp_path):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["train", "resnet18", *TINY, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_good_environment_variables_pass(monkeypatch, capsys):
    for name, value in {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0", "MASTER_PORT": "29500", "ZOO_DEBUG": "off",
                        "HF_ENDPOINT": "http://127.0.0.1:8080/", "HF_HUB_OFFLINE": "1", "ZOO_GIT_COMMIT": "abc1234"}.items():
        monkeypatch.setenv(name, value)
    assert main(["info", "resnet18"]) == 0


def test_the_hub_reads_a_checked_endpoint(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "not a url")
    with pytest.raises(ArgumentError, match="HF_ENDPOINT"):
        load_model("hf-hub:owner/name")


# ---------------------------------------------------------------------------- 5. --compare and non-finite figures


def test_compare_refuses_a_non_finite_figure_naming_it(tmp_path):
    def doc(median: float) -> dict:
        figs = {"1": {"median": 10.0, "ci95": [9.5, 10.5]}, "4": {"median": median, "ci95": [9.5, 10.5]}}
        return {"schema": "zoo.bench/3", "models": [{"name": "m", "threads": 2, "latency_ms": {"torch": figs},
                                                     "speedup": {}}]}

    old = tmp_path / "old.json"
    old.write_text(json.dumps(doc(math.nan)))
    said = compare(old, doc(10.0))
    assert "cannot compare" in said and "figure m / 2 / torch latency b4 is not finite" in said
    old.write_text(json.dumps(doc(10.0)))
    assert "no figure changed" in compare(old, doc(10.0))


# ---------------------------------------------------------------------------- 6. values checked on every load


def weights_file(path: Path, model, edit: str, value: float) -> Path:
    tensors = state_dict_of(model)
    tensors[edit] = tensors[edit].clone().fill_(value)
    meta = CheckpointMeta(arch="tinynet", model_kwargs={"num_classes": 3}, num_classes=3, in_chans=3,
                          data=model.data_config, zoo_version="test")
    save_tensors(path, tensors, meta.to_metadata())
    return path


@pytest.mark.parametrize(("edit", "value", "message"), [
    ("blocks.0.0.running_var", -1.0, "negative BatchNorm variance in blocks.0.0.running_var"),
    pytest.param("fc.weight", math.nan, "NaN or infinite values in fc.weight", marks=pytest.mark.slow),
    pytest.param("conv1.weight", math.inf, "NaN or infinite values in conv1.weight", marks=pytest.mark.slow),
])
def test_impossible_values_are_refused_without_a_digest(edit, value, message, tmp_path, model):
    path = weights_file(tmp_path / "w.safetensors", model, edit, value)
    with pytest.raises(CheckpointError, match=message):
        load_weights(model, path)
    load_weights(model, weights_file(tmp_path / "ok.safetensors", model, edit, 0.5))  # the negative control


def test_a_training_state_with_impossible_values_is_refused(tmp_path, model):
    tensors = {f"model/{k}": v for k, v in state_dict_of(model).items()}
    tensors["model/blocks.0.0.running_var"] = -tensors["model/blocks.0.0.running_var"]
    save_tensors(tmp_path / "state.safetensors", tensors, {"zoo_train_state": "{}"})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(CheckpointError, match="blocks.0.0.running_var"):
        load_state(tmp_path / "state.safetensors", model, optimizer, torch.device("cpu"))


# ---------------------------------------------------------------------------- 7. one link rule


def test_an_image_folder_refuses_links_out_of_it(tmp_path):
    root = image_folder(tmp_path / "fold")
    (root / "a" / "in.png").symlink_to(root / "b" / "0.png")  # inside: followed
    assert len(scan_folder(root)[1]) == 5
    (root / "a" / "out.png").symlink_to(picture(tmp_path / "secret.png"))
    with pytest.raises(DataError, match=r"out\.png links to .*secret\.png, outside .*fold; zoo does not follow links"):
        scan_folder(root)
    (root / "a" / "out.png").unlink()
    (root / "c").symlink_to(image_folder(tmp_path / "elsewhere") / "a")  # a class folder linked out
    with pytest.raises(DataError, match="outside"):
        scan_folder(root)


@pytest.mark.slow
def test_timm_local_dir_reaches_zoos_checks(tmp_path, model):
    timm = pytest.importorskip("timm")
    folder = save_pretrained(model, tmp_path / "saved")
    outside = tmp_path / "outside.safetensors"
    (folder / "model.safetensors").rename(outside)
    (folder / "model.safetensors").symlink_to(outside)
    with pytest.raises(CheckpointError, match="zoo does not follow links out of a checkpoint folder"):
        timm.create_model(f"local-dir:{folder}", pretrained=True)
    (folder / "model.safetensors").unlink()
    outside.rename(folder / "model.safetensors")
    five = timm.create_model(f"local-dir:{folder}", pretrained=True, num_classes=5)  # the negative control
    assert five.num_classes == 5 and torch.equal(five.conv1.weight, model.conv1.weight)


# ---------------------------------------------------------------------------- 8. reproduce checks before it starts


def test_reproduce_with_a_data_dir_without_data_starts_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="found no such file"):
        R.reproduce("aux", tmp_path / "out", data_dir=str(tmp_path / "empty"), device="cpu", jobs=2)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- 9. small flaws


def test_a_resumed_run_removes_what_a_killed_writer_left_at_once(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    stale = run.path / f".zoo{dead_pid()}.0badf00d.tmp"
    stale.write_bytes(b"x" * 1000)  # seconds old, not a minute: the age rule alone would keep it
    other = run.path / "notes.tmp"
    other.write_text("mine")
    with run.lock():
        assert not stale.exists() and other.exists()


def test_a_missing_init_path_is_called_missing(tmp_path, capsys):
    assert main(["train", "resnet18", *TINY, "--init", str(tmp_path / "g"), "--out", str(tmp_path / "run")]) == 2
    assert "g: no such file or folder" in capsys.readouterr().err


@pytest.mark.parametrize("content", ["object arrays", "not a zip"])
def test_an_npz_error_gives_no_pickle_advice(content, tmp_path):
    if content == "not a zip":  # numpy takes any file that is not a zip for a pickle
        (tmp_path / "mnist.npz").write_bytes(b"not a zip archive at all")
    else:
        np.savez(tmp_path / "mnist.npz", x_train=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match=r"mnist.npz is not a readable .npz archive \(pickled data, which zoo never") as caught:
        load_dataset("mnist", tmp_path)
    assert "allow_pickle" not in str(caught.value) and "pickle.load" not in str(caught.value)


def test_a_truncated_onnx_file_is_zoos_error(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"\x08\x07\x12\x05trunc")
    with pytest.raises(ArgumentError, match="onnxruntime cannot load .*m.onnx"):
        create_session(tmp_path / "m.onnx")
