"""ONNX export: every family's code paths against torch under onnxruntime, the interface, the command line.

Exporting costs 3-25 s per model on 2 cores (torch.export's tracing, not the input size), so one model per
code path is exported, once, and shared by the tests that read it (``exported``); a cheap test checks that every
registered model runs the code of one of them.
"""
from __future__ import annotations

import argparse
import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import pytest
import torch
from torch import nn

import zoo
import zoo.registry
from zoo.export import check_parity, export_onnx
from zoo.export.__main__ import build_parser, main
from zoo.export.onnx import fold_batchnorm
from zoo.errors import ExportError

# One model per code path, with its variant options and input; the variants (CIFAR and ImageNet stems and heads,
# 1 and 3 channels) are spread over them. googlenet is the paper's configuration at ImageNet size with its aux
# heads, which must not be exported; vgg11's ImageNet head at CIFAR size is the 7x7 adaptive pool of a 1x1 map
# that the TorchScript exporter refuses (the paper's VGG19 on CIFAR-10).
CASES: dict[str, tuple[dict[str, Any], tuple[int, int, int]]] = {
    "resnet18": ({"stem": "cifar"}, (1, 33, 33)),  # BasicBlock
    "resnet50": ({"stem": "imagenet"}, (3, 33, 33)),  # Bottleneck
    "vgg11": ({"head": "imagenet"}, (1, 33, 33)),
    "vgg11_bn": ({"head": "cifar"}, (3, 33, 33)),
    "googlenet": ({"stem": "imagenet", "aux_logits": True}, (3, 224, 224)),
    "googlenet_5x5": ({"stem": "cifar"}, (1, 33, 33)),
    "googlenet_res3x3": ({"stem": "cifar"}, (3, 33, 33)),
    "googlenet_res5x5": ({"stem": "cifar"}, (1, 33, 33)),
    "googlenet_resall3x3": ({"stem": "imagenet"}, (3, 33, 33)),
    "googlenet_resall5x5": ({"stem": "cifar"}, (1, 33, 33)),
}
FAST = {"resnet18"}
"""The case of the fast tier (2 s); the others take 2-15 s each on 2 cores."""


def code_path(name: str) -> tuple[str, frozenset]:
    """What ``name``'s forward runs, whatever its depth: its class, and the kinds of module it is built of (type,
    kernel size, residual or not), at its defaults on the meta device. resnet34 runs resnet18's code with more
    blocks, resnet101 and resnet152 resnet50's, vgg13/16/19 vgg11's (and with BN vgg11_bn's); the GoogLeNet
    variants differ in kernel sizes and shortcuts, so each is its own case."""
    model = zoo.registry.meta_model(name)
    kinds = {(type(m).__name__, getattr(m, "kernel_size", None), getattr(m, "residual", None)) for m in model.modules()}
    return type(model).__name__, frozenset(kinds)


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


@dataclass
class Exported:
    model: nn.Module
    path: Path
    input_size: tuple[int, int, int]
    kept_train_mode: bool  # exported from train mode, and still in it afterwards


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``exported(name)``: CASES[name] with real BatchNorm statistics, exported from train mode, once per module."""
    done: dict[str, Exported] = {}

    def export(name: str) -> Exported:
        if name not in done:
            kwargs, input_size = CASES[name]
            torch.manual_seed(0)
            model = zoo.create_model(name, num_classes=10, in_chans=input_size[0], **kwargs)
            model = with_real_bn_statistics(model, input_size).train()
            path = export_onnx(model, tmp_path_factory.mktemp(name) / f"{name}.onnx", input_size=input_size)
            done[name] = Exported(model, path, input_size, model.training)
        return done[name]

    return export


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in CASES])
def test_every_code_path_exports_with_parity(name, exported):
    case = exported(name)
    model, size = case.model.eval(), case.input_size
    assert case.kept_train_mode, "the module's train mode must be restored"
    with torch.no_grad():
        assert model(torch.randn(4, *size)).std(0).max() > 1e-3, "logits independent of the input: parity would prove nothing"
    diffs = check_parity(model, case.path, input_size=size, batch_sizes=(1, 3))
    assert set(diffs) == {1, 3} and all(d < 1e-3 for d in diffs.values()) and not model.training
    graph = onnx.load(str(case.path), load_external_data=False).graph
    assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == ["logits"]
    assert graph.output[0].type.tensor_type.shape.dim[1].dim_value == 10
    batch_dim = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.HasField("dim_value"), "the batch axis must be dynamic"
    has_aux = any("aux" in n for n in model.state_dict())
    assert has_aux == name.startswith("googlenet")  # on by default: the next check proves something for GoogLeNets
    assert not [t.name for t in graph.initializer if "aux" in t.name], "aux heads must not be exported"
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fold_batchnorm(model).modules())  # exported folded


@pytest.mark.parametrize("name", zoo.list_models())
def test_every_registered_model_runs_the_code_of_an_exported_case(name):
    """A registered model exports if a case of the same code path does: the same modules, only more of them.
    A new family, block or variant fails here until CASES gets it."""
    assert code_path(name) in {code_path(case) for case in CASES}


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


@pytest.mark.slow
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


def test_batchnorm_folding_keeps_outputs_and_the_original_model(exported):
    model = exported("resnet18").model.eval()  # the downsample shortcuts' Sequential(conv, bn) and conv1/bn1 alike
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 20  # the original keeps its BatchNorms
    x = torch.randn(4, 1, 33, 33)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)
    other = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))  # not a zoo model: its order proves nothing
    assert fold_batchnorm(other) is other
