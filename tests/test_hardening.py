"""Every bad input a clear error of ours, nothing lost: one test (or table row) per case of the hardening issue.

Each refusal is asserted by our error type (or exit status) and a message substring we control, and, where
the case writes, by what is (still) on disk afterwards.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

import zoo
from zoo.cli import main
from zoo.core.console import EXIT_STOPPED, key_value, run_command
from zoo.core.errors import (
    ArgumentError,
    CheckpointError,
    DataError,
    HubError,
    RunStopped,
    TrainingError,
    ZooInputError,
)
from zoo.core.files import atomic_write_bytes, staged_dir
from zoo.data.loading import load_dataset
from zoo.export.__main__ import main as export_main
from zoo.hub.pretrained import load_weights, save_pretrained
from zoo.hub.rundir import RunDir
from zoo.hub.weights import load_tensors, save_tensors
from zoo.inference.runtime import predict
from zoo.train.loop import TrainConfig, train
from zoo.train.release import release

from conftest import TINY, dead_pid

# ---------------------------------------------------------------------------- silent wrong results


@pytest.mark.parametrize(("text", "value"), [("aux_logits=False", False), ("aux_logits=false", False),
                                             ("stem=cifar", "cifar"), ("lr=0.05", 0.05), ("n=None", None)])
def test_key_values_parse_as_python_literals_then_json(text, value):
    assert key_value(text) == (text.split("=")[0], value)


@pytest.mark.slow
def test_aux_logits_false_on_the_command_line_trains_without_aux_heads(tmp_path):
    assert main(["train", "googlenet", *TINY, "--model-arg", "aux_logits=False", "--out", str(tmp_path / "run")]) == 0
    tensors, _ = load_tensors(tmp_path / "run" / "model" / "model.safetensors")
    assert tensors and not any(k.startswith(("aux1.", "aux2.")) for k in tensors)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model-arg", "stem=bogus"], "stem='bogus' is not one of 'imagenet', 'cifar'"),
        (["--model-arg", "foo=1"], "googlenet takes no 'foo'; it takes num_classes, in_chans, aux_logits, stem"),
        (["--model-arg", "aux_logits=maybe"], "aux_logits='maybe' must be true or false"),
        (["--model-arg", "in_chans=0"], "in_chans=0 must be >= 1"),
        (["--recipe-arg", "schedule=bogus"], "schedule='bogus' is not one of 'plateau', 'step', 'onecycle'"),
        (["--recipe-arg", "plateau_patience=ten"], "plateau_patience='ten' must be a whole number"),
        (["--recipe-arg", "bogus=1"], "the paper recipe takes no 'bogus'"),
        (["--epochs", "0"], "epochs=0 must be >= 1"),
        (["--batch-size", "0"], "batch_size=0 must be >= 1"),
        (["--train-subset", "-5"], "train_subset=-5 must be >= 0"),
        (["--lr", "-0.1"], "lr=-0.1 must be > 0"),
    ],
)
def test_bad_training_arguments_refused_before_any_work(args, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "googlenet", *TINY, *args, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()  # nothing written, not even the directory


def test_negative_classes_refused_and_zero_means_no_classifier():
    with pytest.raises(ArgumentError, match="num_classes=-1 must be >= 0"):
        zoo.create_model("resnet18", num_classes=-1)
    headless = zoo.create_model("resnet18", num_classes=0).eval()
    assert isinstance(headless.fc, torch.nn.Identity) and headless(torch.randn(1, 3, 64, 64)).shape == (1, 512)


@pytest.fixture
def saved_tiny(tiny_family, tmp_path) -> Path:
    """A saved model of the guide's tiny family (conftest.py: 8 channels, a few KB), for checks of the files."""
    model = zoo.create_model(tiny_family, num_classes=7, in_chans=1, stem="cifar")
    return save_pretrained(model, tmp_path / "r18", arch=tiny_family, model_kwargs={"num_classes": 7, "in_chans": 1, "stem": "cifar"})


@pytest.mark.slow
def test_export_of_saved_weights_uses_their_configuration_and_opset(saved_tiny, tmp_path, capsys):
    out = tmp_path / "r.onnx"
    assert export_main(["tinynet", "--weights", str(saved_tiny), "--out", str(out), "--opset", "18"]) == 0
    model = onnx.load(out)
    assert model.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 7  # the saved num_classes, not 1000
    assert model.graph.input[0].type.tensor_type.shape.dim[1].dim_value == 1  # and its 1x32x32 input
    assert {o.domain: o.version for o in model.opset_import}[""] == 18  # --opset is honoured
    # timm's semantics: another head size is a fresh head (0: the pooled features), the rest is the weights' own
    assert export_main(["tinynet", "--weights", str(saved_tiny), "--out", str(tmp_path / "f.onnx"), "--num-classes", "0"]) == 0
    assert onnx.load(tmp_path / "f.onnx").graph.output[0].type.tensor_type.shape.dim[1].dim_value == 8  # TinyNet's width
    assert export_main(["tinynet", "--weights", str(saved_tiny), "--out", str(tmp_path / "x.onnx"),
                        "--model-arg", "stem=imagenet"]) == 2
    assert "was saved with stem='cifar', but stem='imagenet' was asked for" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.slow
def test_resume_refuses_a_change_of_the_data_seen(tiny_family, tmp_path):
    base = dict(arch=tiny_family, dataset="mnist", recipe="paper", batch_size=32, epochs=1, device="cpu", progress=False,
                out=str(tmp_path / "run"))
    train(TrainConfig(synthetic=64, **base))
    for change, field in ((dict(synthetic=96), "data.train_images"), (dict(synthetic=64, test_subset=32), "data.test_images")):
        with pytest.raises(TrainingError, match=f"--resume with different settings.*{field}"):
            train(TrainConfig(resume=True, **{**base, "epochs": 2, **change}))
    assert len(RunDir(tmp_path / "run").read_history()) == 1  # the run was left as it was


@pytest.mark.parametrize(("stored", "model_dtype", "message"), [
    (torch.float64, torch.float32, "stores conv1.weight as torch.float64, the model holds torch.float32"),
    (torch.float32, torch.float64, "stores conv1.weight as torch.float32, the model holds torch.float64"),
])
def test_weights_of_another_precision_are_not_cast_silently(stored, model_dtype, message, tiny_family, tmp_path):
    model = zoo.create_model(tiny_family, num_classes=10, stem="cifar")
    tensors = {k: v.to(stored) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    save_tensors(tmp_path / "w.safetensors", tensors, {"format": "pt"})
    with pytest.raises(CheckpointError, match=message):
        load_weights(zoo.create_model(tiny_family, num_classes=10, stem="cifar").to(model_dtype), tmp_path / "w.safetensors")


@pytest.mark.slow
def test_half_precision_weights_load_only_while_they_stay_finite(tiny_family, tmp_path):
    model = zoo.create_model(tiny_family, num_classes=10, stem="cifar")
    save_tensors(tmp_path / "h.safetensors", {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()},
                 {"format": "pt"})
    load_weights(zoo.create_model(tiny_family, num_classes=10, stem="cifar"), tmp_path / "h.safetensors")  # fp16 -> fp32: fine
    big = dict(model.state_dict(), **{"fc.weight": torch.full_like(model.fc.weight, 1e6)})
    save_tensors(tmp_path / "big.safetensors", big, {"format": "pt"})
    with pytest.raises(CheckpointError, match="fc.weight does not fit in torch.float16"):
        load_weights(zoo.create_model(tiny_family, num_classes=10, stem="cifar").half(), tmp_path / "big.safetensors")


# ---------------------------------------------------------------------------- run directories and files


@pytest.mark.slow
def test_a_run_directory_has_one_writer_and_a_killed_holder_leaves_no_lock(tiny_family, tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from zoo.hub.rundir import directory_lock\n"
        f"with directory_lock(Path({str(out)!r})):\n    print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["train", tiny_family, *TINY, "--out", str(out)]) == 2
        assert f"is in use by process {holder.pid}" in capsys.readouterr().err
        assert sorted(os.listdir(out)) == [".lock"]  # the refused run wrote nothing
    finally:
        holder.kill()  # killed while holding: the kernel releases the lock
        holder.wait()
    assert main(["train", tiny_family, *TINY, "--out", str(out)]) == 0
    assert not (out / ".lock").exists() and (out / "model" / "model.safetensors").is_file()


@pytest.mark.slow
def test_failed_export_parity_leaves_no_onnx_and_the_old_file_alone(tiny_family, tmp_path, monkeypatch, capsys):
    import zoo.export.__main__ as E
    from zoo.core.errors import ExportError

    out = tmp_path / "m.onnx"
    out.write_bytes(b"the previous export")

    def failing(*args, **kwargs):
        raise ExportError("parity failed (injected)")

    monkeypatch.setattr(E, "check_parity", failing)
    assert export_main([tiny_family, "--num-classes", "10", "--model-arg", "stem=cifar", "--out", str(out)]) == 2
    assert "parity failed (injected)" in capsys.readouterr().err
    assert out.read_bytes() == b"the previous export" and sorted(os.listdir(tmp_path)) == ["m.onnx"]


@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_written_files_follow_the_umask(umask, file_mode, dir_mode, tmp_path):
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "f", b"x")
        with staged_dir(tmp_path / "d") as staging:
            (staging / "g").write_bytes(b"y")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == dir_mode


def test_a_temp_file_orphaned_by_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    dead = dead_pid()
    orphan = tmp_path / f".out.json.{dead}.abcd1234.tmp"
    fresh = tmp_path / f".out.json.{dead}.0f0f0f0f.tmp"  # a dead pid but just written: perhaps another container's
    live = tmp_path / f".out.json.{os.getppid()}.efef0101.tmp"  # another writer, still running
    other = tmp_path / f".out.json.5.{dead}.aaaa0000.tmp"  # out.json.5's temp file, not out.json's
    for path in (orphan, fresh, live, other):
        path.write_bytes(b"partial")
    old = time.time() - 3600
    for path in (orphan, live, other):
        os.utime(path, (old, old))
    atomic_write_bytes(tmp_path / "out.json", b"{}")
    assert sorted(os.listdir(tmp_path)) == sorted([fresh.name, live.name, other.name, "out.json"])


def test_a_mistyped_data_dir_creates_nothing_and_says_where_it_looked(tmp_path):
    missing = tmp_path / "no" / "such"
    with pytest.raises(DataError, match=f"looked for {missing / 'cifar10.npz'}"):
        load_dataset("cifar10", missing)
    assert not (tmp_path / "no").exists()


# ---------------------------------------------------------------------------- paths and the hub


@pytest.mark.parametrize("source", ["hf-hub:../..", "hf-hub:a/../b", "hf-hub:a/b/c", "hf-hub:/etc/passwd", "hf-hub:.a/b",
                                    "hf-hub:a/b.."])
def test_repo_ids_that_could_leave_the_mirror_are_refused(source, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_HUB_DIR", str(tmp_path))
    with pytest.raises(HubError, match="is not hf-hub:owner/name"):
        load_weights(zoo.create_model("resnet18"), source)


def test_a_tag_file_name_cannot_leave_its_folder(monkeypatch):
    import dataclasses

    from zoo.hub.pretrained import load_pretrained

    tag = dataclasses.replace(zoo.get_pretrained_tag("googlenet_res5x5.mnist_paper"), filename="../../zoo/pretrained.json")
    with pytest.raises(HubError, match="is not a file name"):
        load_pretrained(zoo.create_model("googlenet_res5x5", num_classes=10, in_chans=1, aux_logits=False), tag)


def test_links_out_of_a_checkpoint_folder_are_not_followed(saved_tiny, tmp_path):
    outside = tmp_path / "elsewhere.safetensors"
    (saved_tiny / "model.safetensors").rename(outside)
    (saved_tiny / "model.safetensors").symlink_to(outside)
    with pytest.raises(CheckpointError, match="outside .*does not follow links out of a checkpoint folder"):
        zoo.load_model(saved_tiny)


def test_a_corrupt_copy_is_mended_inside_its_folder(saved_tiny):
    data = bytearray((saved_tiny / "model.safetensors").read_bytes())
    data[len(data) // 2] ^= 1
    (saved_tiny / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"restore {saved_tiny / 'model.safetensors'}") as info:
        zoo.load_model(saved_tiny)
    assert "delete" not in str(info.value)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda cfg: cfg["zoo"].update(sha256=5), "field zoo.sha256 is 5"),
    (lambda cfg: cfg["zoo"].update(sha256="ABC"), "field zoo.sha256 is 'ABC'"),
])
def test_malformed_config_json_names_the_field(edit, message, saved_tiny):
    config = json.loads((saved_tiny / "config.json").read_text())
    edit(config)
    (saved_tiny / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=message):
        zoo.load_model(saved_tiny)


def test_metadata_with_unknown_model_kwargs_names_the_field(tiny_family, tmp_path):
    model = zoo.create_model(tiny_family, num_classes=10)
    path = tmp_path / "m.safetensors"
    metadata = {"format": "pt", "zoo_format": "2", "arch": tiny_family, "model_kwargs": json.dumps({"num_classes": 10, "wings": 2}),
                "num_classes": "10", "in_chans": "3", "data": json.dumps(model.data_config.to_json()),
                "zoo_version": zoo.__version__}
    save_tensors(path, model.state_dict(), metadata)
    with pytest.raises(CheckpointError, match="field model_kwargs cannot build tinynet .*takes no 'wings'"):
        load_weights(zoo.create_model(tiny_family, num_classes=10), path)


# ---------------------------------------------------------------------------- datasets


def write_npz(path: Path, **overrides) -> Path:
    arrays = {"x_train": np.zeros((4, 28, 28), np.uint8), "y_train": np.array([0, 1, 2, 3], np.uint8),
              "x_test": np.zeros((2, 28, 28), np.uint8), "y_test": np.array([4, 5], np.uint8), **overrides}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


@pytest.mark.parametrize(("damage", "message"), [
    ("truncated", "is not a readable .npz archive"),
    ("not_zip", "is not a readable .npz archive"),
    ("missing_key", "lacks x_test/y_test"),
    ("float_images", "x_train is float64"),
    ("labels_out_of_range", "y_train holds labels outside 0..9"),
    ("float_labels", "labels must be a 1-D array of integers"),
    ("length_mismatch", "y_train has 3 labels"),
])
def test_damaged_datasets_refused_naming_the_file(damage, message, tmp_path):
    path = tmp_path / "mnist.npz"
    if damage in ("truncated", "not_zip"):
        write_npz(path)
        path.write_bytes(path.read_bytes()[:200] if damage == "truncated" else b"not a zip archive at all")
    else:
        write_npz(path, **{
            "missing_key": {"y_test": None},
            "float_images": {"x_train": np.zeros((4, 28, 28))},
            "labels_out_of_range": {"y_train": np.array([0, 1, 2, 12], np.uint8)},
            "float_labels": {"y_train": np.array([0.0, 1.0, 2.0, 3.0])},
            "length_mismatch": {"y_train": np.array([0, 1, 2], np.uint8)},
        }[damage])
    with pytest.raises(DataError, match=message) as info:
        load_dataset("mnist", tmp_path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------------------- outputs and the command line


def test_an_output_path_under_a_file_is_refused_before_the_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["train", "resnet18", *TINY, "--out", str(blocker / "run")]) == 2
    assert f"cannot write {blocker / 'run' / 'run.json'}: {blocker} is a file" in capsys.readouterr().err
    assert main(["bench", "resnet18", "--out", str(blocker / "bench")]) == 2


@pytest.mark.slow
def test_system_errors_are_one_line_with_status_1_and_debug_shows_the_traceback(tiny_family, tmp_path, capsys,
                                                                               monkeypatch):
    run = tmp_path / "run"
    assert main(["train", tiny_family, *TINY, "--out", str(run)]) == 0
    (run / "model" / "README.md").unlink()
    (run / "model" / "README.md").mkdir()  # a directory where the card goes: refused, never replaced
    capsys.readouterr()
    assert main(["card", str(run)]) == 2
    assert "README.md: it is a directory, not a regular file" in capsys.readouterr().err
    (run / "model" / "README.md").rmdir()

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)  # the system failing mid-write (tests/test_files.py has real ones)
    assert main(["card", str(run)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"zoo: error: No space left on device: {run / 'model'}")  # the file asked for, no temp
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and not (run / "model" / "README.md").exists()
    with pytest.raises(OSError):
        main(["--debug", "card", str(run)])


@pytest.mark.parametrize(("value", "raises"), [("0", False), ("", False), ("false", False), ("1", True)])
def test_zoo_debug_zero_means_off(value, raises, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ZOO_DEBUG", value)
    if raises:
        with pytest.raises(CheckpointError):
            main(["card", str(tmp_path / "missing")])
    else:
        assert main(["card", str(tmp_path / "missing")]) == 2
        assert "Traceback" not in capsys.readouterr().err


def test_a_stopped_run_exits_130_in_one_line(capsys):
    parser = argparse.ArgumentParser(prog="zoo")
    parser.set_defaults(func=lambda args: (_ for _ in ()).throw(RunStopped("fig7 stopped at epoch 3; rerun to go on")))
    assert run_command(parser, []) == EXIT_STOPPED == 130
    assert capsys.readouterr().err == "zoo: fig7 stopped at epoch 3; rerun to go on\n"


@pytest.mark.parametrize(("text", "message"), [("{", "is not JSON"), ('["a"]', "must map each setting to milliseconds"),
                                               ('{"cpu": "fast"}', "must map each setting to milliseconds")])
def test_a_bad_latency_file_for_a_card_is_refused(text, message, tmp_path, capsys):
    (tmp_path / "latency.json").write_text(text)
    assert main(["card", str(tmp_path), "--latency", str(tmp_path / "latency.json")]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("tag", ["../escape", "Cifar10", "a.b", "", "_x"])
def test_a_release_tag_must_be_a_plain_name(tag, tmp_path):
    with pytest.raises(ArgumentError, match="must be lowercase letters, digits and underscores"):
        release(tmp_path / "run", tag, out_root=tmp_path / "cards", tags_file=tmp_path / "tags.json")
    assert not any(tmp_path.iterdir())


def test_an_onnx_file_zoo_cannot_read_is_refused_for_predict(tmp_path):
    image = tmp_path / "x.png"
    Image.new("RGB", (32, 32)).save(image)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ArgumentError, match="onnxruntime cannot load"):
        predict([image], tmp_path / "junk.onnx")
    bare = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["input"], ["logits"])], "g",
        [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 3, 32, 32])],
        [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [1, 3, 32, 32])]))
    bare.metadata_props.add(key="zoo.config", value='{"input_size": [3, 32, 32]}')  # no mean, no std
    onnx.save(bare, tmp_path / "bare.onnx")
    with pytest.raises(ArgumentError, match="no readable zoo.config metadata"):
        predict([image], tmp_path / "bare.onnx")


@pytest.mark.parametrize("name", ["vgg11", "resnet18", "googlenet"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_input_of_another_precision_is_refused_the_same_way_in_every_family(name, dtype):
    model = zoo.models.registry.meta_model(name, num_classes=10)
    with pytest.raises(ZooInputError, match=f"holds torch.float32 weights but the input is {dtype}"):
        model(torch.zeros(1, 3, 32, 32, dtype=dtype, device="meta"))


# ---------------------------------------------------------------------------- every writer, failing midway


@pytest.fixture
def disk_fails(monkeypatch):
    """The write fails after the new bytes went to their temporary file, before the rename (a full disk, a kill)."""
    import zoo.hub.weights as C

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device (injected)")

    return lambda: monkeypatch.setattr(C.os, "replace", failing_replace)


@pytest.mark.slow
def test_checkpoint_folder_write_failing_keeps_the_old_one_loadable(saved_tiny, disk_fails):
    before = {p.name: p.read_bytes() for p in saved_tiny.iterdir()}
    disk_fails()
    with pytest.raises(OSError, match="injected"):
        save_pretrained(zoo.create_model("tinynet", num_classes=7, in_chans=1, stem="cifar"), saved_tiny, arch="tinynet",
                        model_kwargs={"num_classes": 7, "in_chans": 1, "stem": "cifar"})
    assert {p.name: p.read_bytes() for p in saved_tiny.iterdir()} == before
    zoo.load_model(saved_tiny)


@pytest.mark.slow
def test_onnx_write_failing_keeps_the_old_file_loadable(tiny_family, tmp_path, disk_fails):
    import onnxruntime as ort

    out = tmp_path / "m.onnx"
    args = [tiny_family, "--num-classes", "10", "--model-arg", "stem=cifar", "--input-size", "3", "32", "32", "--out", str(out)]
    assert export_main(args) == 0
    before = out.read_bytes()
    disk_fails()
    assert export_main(args) == 1  # a system error: one line, status 1
    assert out.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["m.onnx"]
    ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])


def test_bench_results_write_failing_keeps_the_old_ones(tmp_path, disk_fails):
    from zoo.export.bench import write_results

    results = json.loads(json.dumps({"schema": "zoo.bench/1", "settings": {"batch_sizes": [1], "input": "cifar10", "threads": 1},
                                     "environment": {}, "models": []}))
    (tmp_path / "results.json").write_text('{"old": true}')
    disk_fails()
    with pytest.raises(OSError, match="injected"):
        write_results(results, tmp_path)
    assert json.loads((tmp_path / "results.json").read_text()) == {"old": True}
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


@pytest.mark.slow
def test_card_write_failing_keeps_the_old_card(tiny_family, tmp_path, disk_fails):
    from huggingface_hub import ModelCard

    run = tmp_path / "run"
    assert main(["train", tiny_family, *TINY, "--out", str(run)]) == 0
    card = run / "model" / "README.md"
    before = card.read_bytes()
    disk_fails()
    assert main(["card", str(run)]) == 1
    assert card.read_bytes() == before and ModelCard.load(card).data.eval_results
