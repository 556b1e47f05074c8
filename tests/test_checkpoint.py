"""zoo.core.files and zoo.hub.weights: atomic writes, staged folders, the metadata schema, and the checks before a load."""
from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn

import zoo
from zoo.core.errors import CheckpointError
from zoo.core.files import atomic_write_bytes, staged_dir
from zoo.data.datasets import DataConfig
from zoo.hub.weights import (
    CheckpointMeta,
    check_compatible,
    check_finite,
    read_checkpoint,
    save_tensors,
    state_dict_of,
    strip_prefixes,
)


def meta_for(arch: str, **model_kwargs) -> CheckpointMeta:
    with torch.device("meta"):
        model = zoo.create_model(arch, **model_kwargs)
    return CheckpointMeta(
        arch=arch, model_kwargs=model_kwargs, num_classes=model.num_classes, in_chans=model.in_chans,
        data=model.data_config, zoo_version=zoo.__version__,
    )


def meta_model(arch: str, **model_kwargs) -> nn.Module:
    with torch.device("meta"):
        return zoo.create_model(arch, **model_kwargs)


def weights_of(arch: str, **model_kwargs) -> dict[str, torch.Tensor]:
    """Shapes are all check_compatible reads, so meta tensors stand in for a file's."""
    return meta_model(arch, **model_kwargs).state_dict()


def test_atomic_write_replaces_whole_file_or_nothing(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")

    def failing_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new contents")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_staged_dir_publishes_whole_or_not_at_all(tmp_path):
    out = tmp_path / "model"
    with pytest.raises(RuntimeError, match="midway"):
        with staged_dir(out) as staging:
            (staging / "a").write_text("1")
            raise RuntimeError("midway")
    assert os.listdir(tmp_path) == []

    with staged_dir(out) as staging:
        (staging / "a").write_text("1")
        (staging / "stale.png").write_text("old curve")
    (out / "user-notes.txt").write_text("mine")
    assert sorted(os.listdir(out)) == ["a", "stale.png", "user-notes.txt"]

    with pytest.raises(RuntimeError):
        with staged_dir(out, stale=("stale.png",)) as staging:
            (staging / "a").write_text("2")
            raise RuntimeError("midway")
    assert (out / "a").read_text() == "1" and (out / "stale.png").exists()

    with staged_dir(out, stale=("stale.png",)) as staging:
        (staging / "a").write_text("2")
    assert sorted(os.listdir(out)) == ["a", "user-notes.txt"] and (out / "a").read_text() == "2"
    assert os.listdir(tmp_path) == ["model"]


def test_metadata_round_trip_is_exact():
    data = DataConfig((3, 32, 32), (0.49, 0.48, 0.45), (0.25, 0.24, 0.26), crop_pct=32 / 28, mirror=True,
                      label_names=tuple("abcdefghij"), dataset="cifar10", dataset_sha256="a" * 64, images=(45000, 10000),
                      base_model="googlenet_res5x5.cifar10_paper", metrics={"final_test_err": 6.1, "best_epoch": 12})
    meta = CheckpointMeta(
        arch="googlenet_res5x5", model_kwargs={"num_classes": 10, "stem": "cifar", "aux_logits": False},
        num_classes=10, in_chans=3, data=data, zoo_version="0.1.0", tag="cifar10_fast", recipe="fast", git_commit="f" * 40,
    )
    strings = meta.to_metadata()
    assert all(isinstance(v, str) for v in strings.values()) and strings["format"] == "pt"
    assert CheckpointMeta.from_metadata(strings, "f") == meta
    assert CheckpointMeta.from_metadata({"format": "pt"}, "f") is None  # a safetensors file zoo did not write


def test_format_1_loose_fields_read_as_one_data_record():
    """Files written before the record (the bundled tags' among them) keep loading: their loose fields become the
    record, the padding rule timm's crop_pct, the dataset's mirror symmetry and the init the base model."""
    strings = {"format": "pt", "zoo_format": "1", "arch": "resnet18", "model_kwargs": '{"num_classes": 10, "in_chans": 1}',
               "num_classes": "10", "in_chans": "1", "input_size": "[1, 32, 32]", "zoo_version": "0.1.0",
               "mean": "[0.1307]", "std": "[0.3081]", "dataset": "mnist", "dataset_sha256": "b" * 64, "init": "x.y",
               "metrics": '{"final_test_err": 1.5}'}
    data = CheckpointMeta.from_metadata(strings, "f").data
    assert (data.crop_pct, data.pad, data.mirror, data.base_model) == (32 / 28, 2, False, "x.y")
    assert (data.dataset, data.dataset_sha256, data.metrics) == ("mnist", "b" * 64, {"final_test_err": 1.5})
    explicit = CheckpointMeta.from_metadata({**strings, "pad": "0", "dataset": "cifar10", "mean": "[0.5]"}, "f").data
    assert (explicit.crop_pct, explicit.mirror) == (1.0, True)  # a recorded pad wins over the dataset's rule


def _data(**change) -> str:
    return json.dumps({**meta_for("resnet18", num_classes=10).data.to_json(), **change})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"zoo_format": "99"}, "newer zoo"),
        ({"data": '{"input_size": [3, 32'}, "malformed zoo metadata"),
        ({"data": _data(metrics={"final_test_err": 140})}, "percentage in \\[0, 100\\]"),
        ({"data": _data(metrics={"final_test_err": float("nan")})}, "not a finite number"),
        ({"data": _data(label_names=["a", "b"])}, "2 label names for num_classes=10"),
        ({"data": _data(dataset_sha256="abc")}, "64 lowercase hex"),
        ({"data": _data(colour="blue")}, "only the fields"),
    ],
)
def test_bad_metadata_refused(change, message):
    valid = meta_for("resnet18", num_classes=10).to_metadata()
    assert CheckpointMeta.from_metadata(valid, "f")  # the negative control loads
    strings = {**valid, **change}
    with pytest.raises(CheckpointError, match=message):
        CheckpointMeta.from_metadata(strings, "f")


def test_wrapper_prefixes_stripped():
    t = torch.zeros(1)
    assert strip_prefixes({"module._orig_mod.fc.weight": t, "_orig_mod.module.fc.bias": t, "conv1.weight": t}).keys() == {
        "fc.weight", "fc.bias", "conv1.weight"
    }
    with pytest.raises(CheckpointError, match="collides"):
        strip_prefixes({"module.fc.weight": t, "fc.weight": t})


class Compiled(nn.Module):
    """Stands in for torch.compile's OptimizedModule (importing torch._dynamo costs seconds): it keeps
    the model as ``_orig_mod``, so its state_dict keys start with ``_orig_mod.``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self._orig_mod = model


def test_state_dict_of_unwraps_ddp_style_and_compiled_models():
    model = zoo.create_model("resnet18", num_classes=10)
    keys = set(model.state_dict())
    assert all(k.startswith("module._orig_mod.") for k in nn.DataParallel(Compiled(model)).state_dict())
    assert set(state_dict_of(nn.DataParallel(Compiled(model)))) == keys


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_non_finite_values_refused_anywhere_integers_ignored(dtype):
    ok = {"w": torch.ones(3, dtype=dtype), "empty": torch.ones(0, dtype=dtype), "num_batches_tracked": torch.tensor(7)}
    check_finite(ok, "f")
    for bad in (float("nan"), float("inf"), float("-inf")):
        for position in (0, 4999, 9999):
            w2 = torch.randn(10000).to(dtype)
            w2[position] = bad
            with pytest.raises(CheckpointError, match="NaN or infinite values in w2"):
                check_finite({**ok, "w2": w2}, "f")


def test_read_checkpoint_strips_wrapper_prefixes(tmp_path):
    """Weights saved from a DDP-wrapped, compiled model carry ``module._orig_mod.`` prefixes."""
    path = tmp_path / "ddp.safetensors"
    save_tensors(path, {"module._orig_mod.fc.weight": torch.ones(2, 3), "module.fc.bias": torch.zeros(2)}, {})
    tensors, meta = read_checkpoint(path)
    assert sorted(tensors) == ["fc.bias", "fc.weight"] and meta is None


def test_read_checkpoint_checks_every_pinned_digest(tmp_path):
    path = tmp_path / "w.safetensors"
    save_tensors(path, {"w": torch.ones(2)}, {"format": "pt"})
    from zoo.core.files import sha256_file

    good = sha256_file(path)
    tensors, meta = read_checkpoint(path, sha256={"config.json": good})
    assert meta is None and torch.equal(tensors["w"], torch.ones(2))
    with pytest.raises(CheckpointError, match="sha256 mismatch .* tag x.y expects 0+, the file has " + good):
        read_checkpoint(path, sha256={"config.json": good, "tag x.y": "0" * 64})


def test_compatible_weights_pass_and_their_near_misses_do_not():
    model, meta, tensors = meta_model("resnet18", num_classes=10), meta_for("resnet18", num_classes=10), weights_of("resnet18", num_classes=10)
    assert check_compatible(model, tensors, meta, "f", meta_model("resnet18", num_classes=10)) is None
    less = {k: v for k, v in tensors.items() if k != "fc.bias"}  # negative control: one tensor short
    with pytest.raises(CheckpointError, match=r"missing fc.bias\): build it with zoo.create_model\('resnet18', num_classes=10\)"):
        check_compatible(model, less, meta, "f", meta_model("resnet18", num_classes=10))
    # a dropout rate changes no weight: not an architecture difference
    assert check_compatible(meta_model("googlenet", dropout=0.0), weights_of("googlenet"), meta_for("googlenet"), "f",
                            meta_model("googlenet")) is None
    with pytest.raises(CheckpointError, match="wrong architecture: .*inception4b.residual"):  # the same shapes, residual
        check_compatible(meta_model("googlenet_res3x3"), weights_of("googlenet"), meta_for("googlenet"), "f",
                         meta_model("googlenet"))


@pytest.mark.parametrize(
    ("model_args", "file_args", "message"),
    [
        (("resnet18", {}), ("resnet18", {"num_classes": 10}), "weights have num_classes=10; pass num_classes=10"),
        (("resnet18", {}), ("resnet18", {"in_chans": 1}), "weights have in_chans=1; pass in_chans=1"),
        (("vgg11", {}), ("resnet18", {}), "wrong architecture: f holds 'resnet18' weights \\(ResNet\\), the model is a VGG"),
        (("resnet34", {}), ("resnet18", {}), "missing layer1.2.*build it with zoo.create_model\\(.resnet18.\\)"),
        (("googlenet", {"aux_logits": False}), ("googlenet", {}), "pass aux_logits=True"),
        (("googlenet", {}), ("googlenet", {"aux_logits": False}), "pass aux_logits=False"),
        (("resnet18", {"stem": "cifar"}), ("resnet18", {}), "build it with zoo.create_model\\('resnet18'\\)"),
    ],
)
def test_incompatible_weights_refused_with_the_fix(model_args, file_args, message):
    model = meta_model(model_args[0], **model_args[1])
    with pytest.raises(CheckpointError, match=message):
        check_compatible(model, weights_of(file_args[0], **file_args[1]), meta_for(file_args[0], **file_args[1]), "f",
                         meta_model(file_args[0], **file_args[1]))  # the model the file's metadata describes


def test_same_shapes_different_architecture_refused():
    """googlenet_res5x5 and googlenet_5x5 have identical keys and shapes; only the metadata tells them apart."""
    residual = weights_of("googlenet_res5x5")
    plain = meta_model("googlenet_5x5")
    assert {k: v.shape for k, v in residual.items()} == {k: v.shape for k, v in plain.state_dict().items()}
    check_compatible(plain, residual, None, "f")  # without zoo metadata nothing can tell
    with pytest.raises(CheckpointError, match="inception4b.residual is True in googlenet_res5x5, False in the model"):
        check_compatible(plain, residual, meta_for("googlenet_res5x5"), "f", meta_model("googlenet_res5x5"))


def test_shape_hint_without_metadata():
    with pytest.raises(CheckpointError, match="weights have num_classes=7; pass num_classes=7"):
        check_compatible(meta_model("vgg11_bn"), weights_of("vgg11_bn", num_classes=7), None, "f")
