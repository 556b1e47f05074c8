"""ONNX export: every registry model against torch under onnxruntime, the interface, the command line.

Exporting costs 3-25 s per model on 2 cores (torch.export's tracing, not the
input size), so the sweep runs the CIFAR configurations at a small odd input,
and the paper configurations appear in two targeted tests.
"""
from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

import zoo
import zoo.registry
from export import check_parity, export_onnx
from export.__main__ import build_parser, main
from zoo.errors import ExportError

ALL = zoo.list_models()
# by default one model per family, chosen to cover most code paths (googlenet_resall5x5: true 5x5 branches,
# identity and projection shortcuts); the rest of the sweep is marked slow (3-25 s each, 3 min in all)
FAST = {"googlenet_resall5x5", "resnet18", "vgg11_bn"}


def cifar_kwargs(name: str) -> dict:
    return {zoo.registry.model_class(name).variant_arg: "cifar"}


def with_real_bn_statistics(model: nn.Module, input_size: tuple[int, int, int]) -> nn.Module:
    """One train-mode pass sets every BatchNorm's running statistics, so eval logits depend on the input
    (at init, GoogLeNet's std-0.01 convs make them a constant, and any export would pass parity)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: the statistics of this one batch
    model.train()
    with torch.no_grad():
        model(torch.randn(8, *input_size))
    return model.eval()


def assert_logits_vary(model: nn.Module, input_size: tuple[int, int, int]) -> None:
    with torch.no_grad():
        out = model(torch.randn(4, *input_size))
    assert out.std(0).max() > 1e-3, "logits do not depend on the input: parity would prove nothing"


SWEEP = [
    pytest.param(name, (1 if i % 2 == 0 else 3, 33, 33), marks=() if name in FAST else pytest.mark.slow, id=name)
    for i, name in enumerate(ALL)
]


@pytest.mark.parametrize("name, input_size", SWEEP)
def test_every_model_exports_with_parity(name, input_size, tmp_path):
    torch.manual_seed(0)
    model = zoo.create_model(name, num_classes=10, in_chans=input_size[0], **cifar_kwargs(name))
    model = with_real_bn_statistics(model, input_size)
    assert_logits_vary(model, input_size)

    path = export_onnx(model.train(), tmp_path / f"{name}.onnx", input_size=input_size)
    assert model.training
    diffs = check_parity(model, path, input_size=input_size, batch_sizes=(1, 3))

    assert set(diffs) == {1, 3} and all(d < 1e-3 for d in diffs.values())
    graph = onnx.load(str(path), load_external_data=False).graph
    assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == ["logits"]
    batch_dim = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.HasField("dim_value"), "the batch axis must be dynamic"
    assert not [t.name for t in graph.initializer if t.name.startswith(("aux1.", "aux2."))]


def test_paper_googlenet_at_224_drops_aux_heads_and_keeps_train_mode(tmp_path):
    """The paper configuration (imagenet stem) at ImageNet size, exported from train mode with aux heads."""
    torch.manual_seed(0)
    size = (3, 224, 224)
    model = with_real_bn_statistics(zoo.create_model("googlenet", num_classes=10, aux_logits=True), size).train()

    path = export_onnx(model, tmp_path / "googlenet.onnx", input_size=size)

    assert model.training, "the module's train mode must be restored"
    graph = onnx.load(str(path)).graph
    assert [o.name for o in graph.output] == ["logits"]
    assert graph.output[0].type.tensor_type.shape.dim[1].dim_value == 10
    assert not [t.name for t in graph.initializer if "aux" in t.name], "aux heads must not be exported"
    assert max(check_parity(model, path, input_size=size, batch_sizes=(1, 2)).values()) < 1e-3
    assert model.training


@pytest.mark.slow
def test_vgg_imagenet_head_at_cifar_size(tmp_path):
    """VGG's 7x7 adaptive pool on a 1x1 map: what the TorchScript exporter refuses (the paper's VGG19 on CIFAR)."""
    torch.manual_seed(0)
    size = (3, 32, 32)
    model = zoo.create_model("vgg11", num_classes=10).eval()
    path = export_onnx(model, tmp_path / "vgg11.onnx", input_size=size)
    assert max(check_parity(model, path, input_size=size).values()) < 1e-3


@pytest.mark.parametrize(
    "input_size, match",
    [((3, 32, 32), "in_chans=1"), ((1, 16, 16), "at least 32x32")],
)
def test_export_refuses_input_the_model_cannot_take(input_size, match, tmp_path):
    model = zoo.create_model("vgg11", in_chans=1, head="cifar")
    with pytest.raises(ExportError, match=match):
        export_onnx(model, tmp_path / "m.onnx", input_size=input_size)
    assert not (tmp_path / "m.onnx").exists()


@pytest.fixture(scope="module")
def static_export(tmp_path_factory) -> tuple[int, str, Path]:
    """``python -m export`` with a fixed batch of 3, run once: (exit code, stdout, the file)."""
    path = tmp_path_factory.mktemp("cli") / "vgg11.onnx"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["vgg11", "--out", str(path), "--batch", "3", "--input-size", "1", "32", "32", "--num-classes", "7",
                     "--model-arg", "head=cifar"])
    return code, out.getvalue(), path


def test_cli_exports_a_fixed_batch(static_export):
    code, out, path = static_export
    assert code == 0
    assert "onnx.checker (full) passed" in out and "batch 3:" in out
    graph = onnx.load(str(path)).graph
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [3, 1, 32, 32]
    assert graph.output[0].type.tensor_type.shape.dim[1].dim_value == 7


def test_parity_failure_raises_export_error(static_export):
    """Another random init of the same architecture is a model the file does not hold."""
    torch.manual_seed(1)
    other = zoo.create_model("vgg11", num_classes=7, in_chans=1, head="cifar")
    with pytest.raises(ExportError, match="differ by"):
        check_parity(other, static_export[2], input_size=(1, 32, 32), batch_sizes=(3,))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["resnet18", "--model-arg", "head=cifar"], "resnet18 takes no 'head'; it takes num_classes, in_chans, stem"),
        (["vgg11", "--input-size", "3", "16", "16"], "at least 32x32"),
        (["resnet1"], "unknown model 'resnet1'"),
    ],
)
def test_cli_errors_exit_2_with_the_fix(argv, message, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "m.onnx")]) == 2
    assert message in capsys.readouterr().err


def test_cli_rejects_bad_batch_and_kwargs(tmp_path):
    for bad in (["--batch", "0"], ["--batch", "many"], ["--model-arg", "stem"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["resnet18", "--out", str(tmp_path / "m.onnx"), *bad])


def test_parser_mounts_as_a_subcommand():
    root = argparse.ArgumentParser(prog="zoo")
    build_parser(root.add_subparsers(dest="command").add_parser("export"))
    args = root.parse_args(["export", "googlenet", "--out", "g.onnx", "--batch", "8", "--model-arg", "stem=cifar", "--model-arg", "aux_logits=false"])
    assert (args.model, args.batch, dict(args.model_arg)) == ("googlenet", 8, {"stem": "cifar", "aux_logits": False})
    assert callable(args.func)


def test_batchnorm_folding_keeps_outputs_and_the_original_model():
    from export.onnx import fold_batchnorm

    model = with_real_bn_statistics(zoo.create_model("googlenet_resall5x5", num_classes=10, stem="cifar"), (3, 33, 33))
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) > 50  # the original keeps its BatchNorms
    x = torch.randn(4, 3, 33, 33)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)
    other = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))  # not a zoo model: its order proves nothing
    assert fold_batchnorm(other) is other
