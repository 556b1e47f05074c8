"""ONNX export of zoo models, the checker, and parity against torch under onnxruntime.

The exporter is ``torch.onnx.export(..., dynamo=True)`` (``torch.export`` to an
FX graph, translated by onnxscript), chosen on purpose over the TorchScript one:

- it is the only one that exports every registry model: the TorchScript
  exporter refuses ``adaptive_avg_pool2d`` when the output size does not
  divide the input, i.e. VGG's imagenet head (7x7 pool) at any input but
  224-ish, which includes the paper's VGG19 on 32x32 CIFAR-10;
- the TorchScript exporter is deprecated ("will be removed") since torch 2.9;
- the models' Python input checks (``zoo.models.layers.check_input``) run on
  fake tensors during ``torch.export`` and read only the static C, H, W, so
  the batch stays a symbolic ``Dim`` and no guard pins it; TorchScript tracing
  freezes them with a TracerWarning each.

It costs time, the tracing and decompositions, not the input size: so each
BatchNorm is first folded into the convolution before it (the graph of an
eval-mode model; the parity check covers the folding), which halves the
export of a GoogLeNet (7.4 s to 3.6 s on 2 CPU cores) and leaves onnxruntime
one op fewer per layer.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

import zoo
from zoo.core.errors import ArgumentError, ExportError
from zoo.core.files import atomic_path
from zoo.core.version import __version__
from zoo.inference.runtime import ONNX_PREFIX, PROVIDER, onnx_session
from zoo.models.layers import ZooModel
from zoo.models.registry import split_model_name

__all__ = [
    "INPUT_NAME", "MAX_OPSET", "MIN_OPSET", "OUTPUT_NAME", "PARITY_BATCHES", "PROVIDER", "check_onnx", "check_opset",
    "check_parity", "check_tolerance", "create_session", "export_onnx", "fold_batchnorm", "load_model",
]

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
PARITY_BATCHES = (1, 4)
"""Batch 1 and another: a graph that baked in the example batch fails one of them."""
MIN_OPSET = 18
"""The lowest opset torch's exporter writes itself (its torchlib's); a lower one goes through the ONNX version
converter after the export, which fails on zoo's models (torch 2.14: every opset below 18 came back as 18)."""
MAX_OPSET = onnx.defs.onnx_opset_version()
"""The highest opset the installed onnx (its checker) knows."""


def check_opset(opset: int | None) -> None:
    """Refuse, before any export, an opset the exporter cannot write; None is torch's default."""
    whole = isinstance(opset, int) and not isinstance(opset, bool)
    if opset is not None and not (whole and MIN_OPSET <= opset <= MAX_OPSET):
        raise ArgumentError(f"--opset {opset!r} is not one torch's ONNX exporter writes here: pass {MIN_OPSET} to "
                            f"{MAX_OPSET}, or leave --opset out")


def check_tolerance(tolerance: float) -> None:
    """Refuse a parity tolerance that is not a finite number >= 0: NaN or infinity would pass any difference."""
    if not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool) or not 0 <= tolerance < math.inf:
        raise ArgumentError(f"--tolerance {tolerance!r} must be a finite number >= 0, e.g. 1e-3 (relative to the "
                            "largest |logit|); NaN or inf would turn the parity check off")


def _check_input_size(model: ZooModel, input_size: tuple[int, int, int]) -> None:
    c, h, w = input_size
    name = type(model).__name__
    if c != model.in_chans:
        raise ExportError(f"{name} was built with in_chans={model.in_chans}; export it with input_size ({model.in_chans}, {h}, {w})")
    if min(h, w) < model.min_input_size:
        raise ExportError(f"{name} needs inputs of at least {model.min_input_size}x{model.min_input_size}, got {h}x{w}; pass a larger input_size")


def metadata(model: ZooModel, input_size: tuple[int, int, int]) -> dict[str, str]:
    """What an exported file says about itself (``metadata_props``): what zoo predict and users need to run it."""
    config: dict[str, Any] = {"num_classes": model.num_classes}
    if getattr(model, "data_config", None) is not None:  # a zoo model: its contract, at the exported input
        data = dataclasses.replace(model.data_config, input_size=(*input_size,))
        config.update(data=data.to_json(), tag=model.pretrained_cfg.get("tag"))
    props = {f"{ONNX_PREFIX}config": json.dumps(config), f"{ONNX_PREFIX}version": __version__}
    for key, attr in (("arch", "_zoo_arch"), ("weights_sha256", "_zoo_weights_sha256")):
        if getattr(model, attr, None):
            props[f"{ONNX_PREFIX}{key}"] = getattr(model, attr)
    return props


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of a zoo ``model`` with every BatchNorm2d folded into the Conv2d registered just before it.

    A family declares ``folds_batchnorm`` (:class:`ZooModel`) where each BatchNorm directly follows its
    convolution and is registered right after it (``conv``/``bn``, ``conv1``/``bn1``, ``Sequential(conv, bn, ...)``),
    as zoo's do. Other models (a pre-activation family, a plain nn.Module) need not keep that convention and are
    returned as they are; ``model`` itself is never changed.
    """
    if not isinstance(model, ZooModel) or not model.folds_batchnorm:
        return model
    folded = copy.deepcopy(model).eval()
    for m in list(folded.modules()):
        names = list(m._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = m._modules[a], m._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                m._modules[a], m._modules[b] = fuse_conv_bn_eval(conv, bn), nn.Identity()
    return folded


def export_onnx(
    model: ZooModel,
    path: str | os.PathLike,
    *,
    input_size: tuple[int, int, int],
    opset: int | None = None,
    dynamic_batch: bool = True,
    batch_size: int = 2,
) -> Path:
    """Export ``model`` in eval mode to ``path`` (one self-contained file) and check it.

    The graph has one input ``input`` (N, C, H, W) and one output ``logits``
    (N, classes); GoogLeNet's aux heads are not in it. ``batch_size`` is the
    example batch traced; with ``dynamic_batch`` (the default) N is a symbolic
    dimension, otherwise the graph is fixed to ``batch_size``. ``opset=None``
    takes torch's default. The model's train/eval mode is restored afterwards.
    """
    input_size = (*input_size,)  # a list given is a tuple from here on
    check_opset(opset)
    _check_input_size(model, input_size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.randn(batch_size, *input_size)
    dynamic_shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    was_training = model.training
    model.eval()
    try:
        program = torch.onnx.export(
            fold_batchnorm(model),
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamic_shapes=dynamic_shapes,
            verbose=False,
        )
    except Exception as e:  # torch.export and onnxscript raise many types; one error of ours with the cause attached
        raise ExportError(
            f"exporting {type(model).__name__} at input {input_size} failed: {type(e).__name__}: {e}; check that "
            f"model.eval()(torch.randn({batch_size}, {', '.join(map(str, input_size))})) runs, then rerun "
            "torch.onnx.export(..., dynamo=True, report=True) for the exporter's report"
        ) from e
    finally:
        model.train(was_training)
    if program is None:  # torch.onnx.export returns None only on its legacy (dynamo=False) path
        raise ExportError(f"exporting {type(model).__name__} gave no ONNX program; upgrade torch")
    outputs = [v.name for v in program.model.graph.outputs]
    if outputs != [OUTPUT_NAME]:
        raise ExportError(
            f"{type(model).__name__} in eval mode returns {len(outputs)} outputs ({outputs}); "
            "export takes models whose forward returns one logits tensor in eval mode"
        )
    program.model.metadata_props.update(metadata(model, input_size))
    program.model.doc_string = (f"zoo {__version__}: {getattr(model, '_zoo_arch', type(model).__name__)}, input "
                                f"{'x'.join(map(str, input_size))} float32 normalised with the mean and std in "
                                f"{ONNX_PREFIX}config; output logits")
    wrote = program.model.opset_imports.get("")
    if opset is not None and wrote != opset:  # the exporter falls back silently when its converter fails
        raise ExportError(f"the exporter could not write ONNX opset {opset} (it wrote {wrote}); pass --opset {wrote} "
                          "or higher, or leave --opset out")
    _check_one_file(model, program)
    with atomic_path(path) as tmp:  # no rejected or half-written file at path
        # not ONNXProgram.save: above 1.5 GB it moves the weights to a side file named after tmp, left behind
        onnx.save_model(program.model_proto, tmp)
        check_onnx(tmp)
    return path


_ONNX_FILE_LIMIT = 2**31 - 1
"""protobuf's limit on one message, so on an ONNX file holding its weights (zoo's largest, VGG19, is 0.55 GB)."""


def _check_one_file(model: nn.Module, program: torch.onnx.ONNXProgram) -> None:
    """Refuse weights that one ONNX file cannot hold: export writes self-contained files only."""
    size = sum(v.const_value.nbytes for v in program.model.graph.initializers.values()
               if v.const_value is not None)
    if size > _ONNX_FILE_LIMIT:
        raise ExportError(f"{type(model).__name__} has {size / 2**30:.1f} GiB of weights, more than one ONNX file holds "
                          "(2 GiB); export it with torch.onnx.export(..., dynamo=True).save(path, external_data=True)")


def check_onnx(path: str | os.PathLike) -> None:
    """``onnx.checker.check_model(full_check=True)``: the graph, its opset and shape inference."""
    try:
        onnx.checker.check_model(str(path), full_check=True)  # by path: 3x faster than a 500 MB ModelProto
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"{path} is not a valid ONNX model: {e}; re-export it, or try another --opset") from e


def create_session(path: str | os.PathLike, threads: int | None = None, *, spinning: bool = True) -> ort.InferenceSession:
    """An onnxruntime CPU session, all graph optimisations on; ``threads`` intra-op threads (ORT's default if None).

    ``spinning=False`` keeps idle worker threads from busy-waiting after a run, so another engine timed next
    on the same cores is not slowed by them (the benchmark's setting). A file onnxruntime cannot load is an
    ArgumentError naming it (:func:`zoo.inference.runtime.onnx_session`)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnx_session(path, options)


def check_parity(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    input_size: tuple[int, int, int],
    batch_sizes: tuple[int, ...] = PARITY_BATCHES,
    tolerance: float = 1e-3,
    seed: int = 0,
    on_batch: Callable[[int], Any] | None = None,
) -> dict[int, float]:
    """Max |onnxruntime - torch| of the logits per batch size, on fresh random input for each.

    Raises ExportError when a difference exceeds ``tolerance`` times the
    largest |logit| (at least 1), so the check means the same for small and
    large logits. float32 rounding alone reaches 3e-4 of that on ResNet152
    (torch float32 against float64), hence the default. The model's
    train/eval mode is restored afterwards. ``on_batch(batch)`` is called as each batch size starts (progress).
    """
    check_tolerance(tolerance)
    session = create_session(path)
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    diffs = {}
    try:
        for batch in batch_sizes:
            if on_batch is not None:
                on_batch(batch)
            x = torch.randn(batch, *input_size, generator=generator)
            with torch.inference_mode():
                expected = model(x).numpy()
            (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
            diffs[batch] = float(np.abs(got - expected).max())
            scale = max(1.0, float(np.abs(expected).max()))
            if diffs[batch] > tolerance * scale:
                raise ExportError(
                    f"{path}: onnxruntime and torch differ by {diffs[batch]:.3g} at batch {batch} (largest |logit| "
                    f"{scale:.3g}, tolerance {tolerance:g} of it); re-export with another --opset, or report the model"
                )
    finally:
        model.train(was_training)
    return diffs


def load_model(name: str, *, weights: str | None = None, **kwargs: Any) -> ZooModel:
    """The model to export, in eval mode: ``name`` with ``weights`` (zoo.load_model: the weights' recorded
    configuration; ``num_classes`` or ``in_chans`` other than theirs adapt it as timm does, e.g. 0 for a feature
    extractor, any other kwarg may only repeat it), an ``arch.tag`` with its published weights, or a bare arch
    randomly initialised. ``None`` values mean "not given"."""
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if weights is not None:
        return zoo.load_model(weights, name, **kwargs).eval()
    return zoo.create_model(name, pretrained=bool(split_model_name(name)[1]), **kwargs).eval()
