"""ONNX export: every family's code paths against torch under onnxruntime, the interface, the command line.

Exporting costs 3-25 s per model on 2 cores (torch.export's tracing, not the input size), so one model per
code path is exported, once, and shared by the tests that read it (``exported``); the cases come from the registry
(:func:`export_cases`), so a new family is exported with no edit here.
"""
from __future__ import annotations

import argparse
import collections
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
import zoo.models.registry
from zoo.core.errors import ExportError
from zoo.export import check_parity, export_onnx
from zoo.export.__main__ import build_parser, main
from zoo.export.onnx import fold_batchnorm
from zoo.models.layers import VARIANTS
from zoo.models.registry import _MODELS, meta_model, model_class


def code_path(name: str) -> tuple[str, frozenset]:
    """What ``name``'s forward runs, whatever its depth: its class, and the kinds of module it is built of (type,
    kernel size, residual or not), at its defaults on the meta device. resnet34 runs resnet18's code with more
    blocks, resnet101 and resnet152 resnet50's, vgg13/16/19 vgg11's (and with BN vgg11_bn's); the GoogLeNet
    variants differ in kernel sizes and shortcuts, so each is its own case."""
    model = meta_model(name)
    kinds = {(type(m).__name__, getattr(m, "kernel_size", None), getattr(m, "residual", None)) for m in model.modules()}
    return type(model).__name__, frozenset(kinds)


PINNED: dict[str, tuple[dict[str, Any], tuple[int, int, int]]] = {
    "googlenet": ({"stem": "imagenet", "aux_logits": True}, (3, 224, 224)),
}
"""Cases set by hand over the derived ones (:func:`export_cases`): googlenet is the paper's configuration at ImageNet
size with its aux heads, which must not be exported."""


def export_cases() -> dict[str, tuple[dict[str, Any], tuple[int, int, int]]]:
    """One case per code path (:func:`code_path`) of the registered models: its first registered name (a family's file
    registers its smallest model first), with its variant options and input. Within a family the cases take the
    variants and channel counts in turn (cifar 1, imagenet 3, cifar 3, imagenet 1, ...), at 33x33 (odd: the ceil-mode
    pools), or the model's minimum size where larger; then :data:`PINNED`. A new family, block or variant is a case
    with no edit. vgg11_bn's ImageNet head at 33x33 is the 7x7 adaptive pool of a 1x1 map that the TorchScript
    exporter refuses (the paper's VGG19 on CIFAR-10)."""
    zoo.list_models()  # registers the built-in families
    firsts: dict[tuple[str, frozenset], str] = {}
    for name in list(_MODELS):  # registration order
        firsts.setdefault(code_path(name), name)
    turns: collections.Counter[str] = collections.Counter()
    cases = {}
    for (family, _), name in firsts.items():
        turn, turns[family] = turns[family], turns[family] + 1
        kwargs = {model_class(name).variant_arg: sorted(VARIANTS)[turn % 2]}  # cifar, imagenet
        side = max(33, meta_model(name, **kwargs).min_input_size)
        cases[name] = kwargs, ((1, 3)[(turn + turn // 2) % 2], side, side)
    return {**cases, **PINNED}


CASES = export_cases()


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


def export_case(name: str, case: tuple[dict[str, Any], tuple[int, int, int]], directory: Path) -> Exported:
    """``name`` built as ``case`` says, with real BatchNorm statistics, exported from train mode into ``directory``."""
    kwargs, input_size = case
    torch.manual_seed(0)
    model = zoo.create_model(name, num_classes=10, in_chans=input_size[0], **kwargs)
    model = with_real_bn_statistics(model, input_size).train()
    path = export_onnx(model, directory / f"{name}.onnx", input_size=input_size)
    return Exported(model, path, input_size, model.training)


@pytest.fixture(scope="module")
def exported(module_tmp):
    """``exported(name)``: :func:`export_case` of CASES[name], once per module."""
    done: dict[str, Exported] = {}

    def export(name: str) -> Exported:
        if name not in done:
            done[name] = export_case(name, CASES[name], module_tmp(name))
        return done[name]

    return export


def check_exported(case: Exported) -> None:
    """The export of a case: parity with torch at two batch sizes, the graph's interface, no aux head, and the
    family's BatchNorm declaration (:func:`check_fold_rule`)."""
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
    aux = type(model).aux_prefixes
    has_aux = any(k.startswith(aux) for k in model.state_dict())
    assert has_aux == type(model).takes_aux()  # on by default: the next check proves something for GoogLeNets
    assert not [t.name for t in graph.initializer if any(p.strip(".") in t.name for p in aux)], "aux heads exported"
    check_fold_rule(model)


def check_fold_rule(model: nn.Module) -> None:
    """What the family declares holds: with ``folds_batchnorm`` every BatchNorm folds into the conv before it (so the
    export has none); without, export takes the model as it is."""
    if type(model).folds_batchnorm:
        assert not any(isinstance(m, nn.BatchNorm2d) for m in fold_batchnorm(model).modules()), (
            "a BatchNorm not registered right after its conv: the family must declare folds_batchnorm = False")
    else:
        assert fold_batchnorm(model) is model


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
def test_every_code_path_exports_with_parity(name, exported):
    check_exported(exported(name))


def test_export_cases_cover_every_code_path_in_both_variants_and_channel_counts():
    """A registered model exports if a case of the same code path does: the same modules, only more of them. Each
    family's cases spread over both variants and 1 and 3 channels (where it has two code paths or more)."""
    paths = {code_path(name) for name in zoo.list_models()}
    assert {code_path(name) for name in CASES} == paths and len(CASES) == len(paths)
    for family in {family for family, _ in paths}:
        names = [name for name in CASES if code_path(name)[0] == family]
        variants = {CASES[name][0][model_class(name).variant_arg] for name in names}
        channels = {CASES[name][1][0] for name in names}
        assert len(names) < 2 or (variants == set(VARIANTS) and channels == {1, 3}), family


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
def static_export(module_tmp) -> tuple[int, str, Path]:
    """``python -m export`` with a fixed batch of 3, run once: (exit code, stdout, the file)."""
    path = module_tmp("cli") / "vgg11.onnx"
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


@pytest.mark.slow  # the export it reads: 4 s
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
        (["vgg11", "--model-arg", "head=cifar", "--input-size", "3", "16", "16"], "at least 32x32"),
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


@pytest.mark.slow
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
