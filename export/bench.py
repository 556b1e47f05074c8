"""The paper's efficiency comparison on the CPU: torch eager at its best, onnxruntime fp32 and int8, and the CPU's
own fast paths (bf16, OpenVINO), each against its baseline and against the machine's arithmetic limit.

    zoo bench                                   # the paper's models and the tags, at CIFAR-10 input
    zoo bench --engines all                     # every engine this CPU and this install have
    zoo bench 'googlenet_res5x5.*' --input mnist --threads 1 2
    zoo bench resnet18 --weights resnet18=./run/model --data-dir ../shared/data --quantize
    zoo bench resnet18 vgg11_bn --engines torch_cl onnxruntime compile   # torch.compile, compile time apart
    zoo bench --compare old/results.json        # what changed beyond the intervals

Engines (``--engines NAME ...``, ``all``; ``--skip-engines NAME ...``; the default is DEFAULT_ENGINES):
``torch_cl`` is torch at its best eager form (BatchNorm folded, channels_last, inference_mode), the baseline of
torch's speed-ups; ``torch`` is plain eager, a reference row; ``onnxruntime`` fp32; ``int8`` onnxruntime on a static
QDQ copy (per-channel int8 weights, calibrated on training images only, reduced range only on a CPU without VNNI);
``bf16`` torch's oneDNN bf16 autocast with channels_last; ``ov_bf16`` and ``ov_int8`` OpenVINO on the same ONNX
files (the optional extra ``deeper-zoo[openvino]``), each in its own worker process; ``compile`` torch.compile
(inductor), compiled for every batch size before timing within ``--compile-limit``. An engine this CPU lacks the
instructions for (bf16 without AVX512_BF16 or AMX) or whose runtime is not installed is one line in the report.

For every model: export to ONNX (cached in the user's cache folder, export.cache; parity checked every run), then
build the selected engines that apply to it and time them with the same intra-op threads (onnxruntime's spinning
off, so its idle threads do not slow the next engine) in interleaved rounds (export.timing): each round times every
engine once, after warm-up, in alternating order. A latency is the median over rounds of each round's median call,
with a 95% bootstrap interval; a speed-up is the median of the per-round ratios with its interval (export.stats).
While a figure's interval is wider than +-10% the model's figures are timed for more rounds, within ``remeasure_s``
per model (each batch size its share), unless other processes take over 10% of the CPU (more rounds cannot help that
noise); a figure that stays wide, or was timed under such load, is flagged noisy. Each latency is also a rate,
GMAC/s, and a share of the peak a short GEMM probe measures at the run's start for the engine's precision
(export.peak). Models with trained weights (a tag, or ``--weights``) get top-1 accuracy for every engine, on
``--data-dir``'s full test set or else on the sample of real test images shipped with zoo. Results go to ``--out``:
results.json (every round kept, the CPU's instruction-set features, the peaks), results.csv, results.md and PNG
charts.

Engines are records (:class:`Engine`) in ``ENGINES``: how one is built for a model, when it applies, where it is
available, its baseline, its precision, its device, its chart style and what it adds to the environment. Timing,
accuracy, results.json and every table column and chart legend (export.report reads results.json's ``engines``)
follow from them, so adding an engine is adding a record.

Devices: each engine names the device it runs on (results.json's ``engines``
record it) and a ``synchronize`` hook that returns once the device has
finished the work already asked of it. Every call timing makes, warm-up
included, ends with the engine's hook before the clock is read: so at both
ends of a timed interval nothing is pending, and a call counts until its work
is done. On the CPU a call is done when it returns and the hook
does nothing; a CUDA torch engine would pass ``torch.cuda.synchronize``, while
onnxruntime's CUDA provider synchronises before ``run`` returns. An engine takes
and returns host (numpy) arrays, so a device engine's copies are timed, as a
caller pays them. Only CPU engines exist so far.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import onnxscript
import torch

import zoo
from zoo.core.arguments import Range, check_arguments
from zoo.core.console import add_quiet, positive, run_command
from zoo.core.errors import ArgumentError, CheckpointError, DataError, ExportError, UnknownModelError
from zoo.core.files import check_writable
from zoo.core.machine import cpu_name, has_bf16, has_vnni, isa_features, physical_cores
from zoo.core.progress import progress_bar
from zoo.core.version import __version__
from zoo.data.datasets import DEFAULT_DATASET, get_spec, list_datasets
from zoo.data.loading import Dataset, DeviceLoader, load_dataset, load_sample, subset
from zoo.hub.pretrained import read_meta
from zoo.models.layers import ZooModel
from zoo.models.registry import split_model_name

from . import openvino
from .__main__ import add_model_arguments
from .cache import cached, code_sha256, is_cached, state_sha256
from .inductor import INDUCTOR_SETTINGS, compile_model
from .onnx import (
    INPUT_NAME,
    PROVIDER,
    check_opset,
    check_parity,
    create_session,
    export_onnx,
    fold_batchnorm,
    load_model,
)
from .peak import peak_gmacs
from .report import SCHEMA, compare, read_results, write_results
from .stats import NOISY, ratios, summary
from .timing import CONTENDED, Round, Worker, cpu_clock, interleaved, others_share, time_round

PAPER_MODELS = ("vgg19", "resnet18", "googlenet*")
"""The paper's three families and its GoogLeNet ablations, in their paper configuration (default stem/head)."""

IMAGENET = "imagenet"
"""The ImageNet-sized input, 3x224x224 and 1000 classes: timing only (zoo has no ImageNet data). The other inputs
are the registered datasets (zoo.data.datasets), each at its spec's input size and classes."""


def input_names() -> list[str]:
    return [*list_datasets(), IMAGENET]


def input_shape(name: str) -> tuple[tuple[int, int, int], int]:
    """(input size, classes) of the input ``name``: a dataset's spec, or ImageNet's."""
    if name == IMAGENET:
        return (3, 224, 224), 1000
    spec = get_spec(name)
    return spec.input_size, spec.num_classes


def bench_data(name: str, data_dir: Path | None) -> Dataset | None:
    """What accuracy and int8 calibration use: the dataset from ``data_dir`` (or its own arrays or folder), else the
    sample zoo ships of it; none for ImageNet."""
    if name == IMAGENET:
        return None
    spec = get_spec(name)
    return load_dataset(spec, data_dir) if data_dir or spec.sample is None else load_sample(name)


DEFAULT_ENGINES = ("torch", "torch_cl", "onnxruntime", "int8")
"""The engines of a plain ``zoo bench``: torch eager plain and at its best, onnxruntime fp32, and int8 for models
with weights (``--quantize``: for every model). ``--engines all`` adds the CPU's other fast paths and compile."""
ALL = "all"


@dataclass
class BenchConfig:
    """What to measure and how long; the defaults keep the paper's models at CIFAR-10 input to minutes on 2 cores."""

    input: str = DEFAULT_DATASET
    threads: tuple[int, ...] = field(default_factory=lambda: (physical_cores(),))
    batch_sizes: tuple[int, ...] = (1, 32)  # the table's latency and throughput; more (e.g. 8) for the batch chart
    engines: tuple[str, ...] = DEFAULT_ENGINES  # names in ENGINES, or "all"
    skip_engines: tuple[str, ...] = ()  # names switched off, e.g. from "all"
    features: dict[str, bool] = field(default_factory=isa_features)  # the CPU's (zoo.core.machine): what bf16/int8 use
    rounds: int = 7
    warmup: int = 1  # calls before each round's timed ones: the engine timed before it has left other data in cache
    round_s: float = 0.05  # each round times calls for at least this long (and 3 calls, unless one call fills it)
    remeasure_s: float = 4.0  # per model, shared by the batch sizes: more rounds while an interval is wider than +-10%
    peak_s: float = 1.0  # per precision and thread count: the GEMM peak probe (export.peak)
    eval_images: int = 0  # 0: the whole test set given (or the shipped sample)
    calibration_images: int = 100
    quantize: bool = False  # int8 for every model; models with weights always get it
    compile_limit_s: float = 300.0  # per model, all batch sizes: GoogLeNet takes about 150 s on 2 cores
    opset: int | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    num_classes: int | None = None

    def __post_init__(self) -> None:
        ranges = {"rounds": Range(2), "warmup": Range(0), "round_s": Range(0), "remeasure_s": Range(0),
                  "peak_s": Range(0), "eval_images": Range(0), "calibration_images": Range(1),
                  "num_classes": Range(1), "compile_limit_s": Range(1)}
        listed = ("threads", "batch_sizes", "engines", "skip_engines", "features")
        scalars = {k: v for k, v in dataclasses.asdict(self).items() if k not in listed}
        check_arguments("zoo bench", scalars, BenchConfig, ranges=ranges)
        for name in ("threads", "batch_sizes"):
            values = tuple(getattr(self, name))
            if not values or min(values) < 1:
                raise ArgumentError(f"zoo bench: {name} must be >= 1, got {list(values)}")
        self.batch_sizes = tuple(sorted({1, *self.batch_sizes}))  # batch 1: the latency every table reports
        self.engines = select_engines(self.engines, self.skip_engines)
        if self.input not in input_names():
            raise ArgumentError(f"zoo bench: input={self.input!r} is not one of {', '.join(input_names())}")
        check_opset(self.opset)
        self._check_model_kwargs()

    def _check_model_kwargs(self) -> None:
        """A --model-arg that contradicts the input's channels or --num-classes is refused, not overridden."""
        for key, value, option in (("in_chans", self.input_size[0], f"--input {self.input}"),
                                   ("num_classes", self.num_classes, "--num-classes")):
            if value is not None and self.model_kwargs.get(key, value) != value:
                raise ArgumentError(f"zoo bench: --model-arg {key}={self.model_kwargs[key]!r} contradicts {option} "
                                    f"({key}={value}); pass one of them")

    @property
    def input_size(self) -> tuple[int, int, int]:
        return input_shape(self.input)[0]


# ---------------------------------------------------------------------------- engines

Predict = Callable[[np.ndarray], np.ndarray]
"""An engine ready to run: a float32 NCHW batch in host memory, logits out in host memory."""


@dataclass
class Subject:
    """One model as every engine is built from it, exported and checked once for all thread counts."""

    name: str
    weights: str | None
    kwargs: dict[str, Any]  # what was built: the weights' configuration, or the tag's, or the arguments
    model: torch.nn.Module  # eager, in eval mode
    onnx: Path  # its fp32 export, parity checked (in the cache)
    key: dict[str, Any]  # the export's cache key: what an int8 copy's key builds on
    facts: dict[str, Any]  # size, export time and parity: the same whatever the engine
    trained: bool  # weights or a tag: its accuracy is worth measuring
    cfg: BenchConfig
    data: Dataset | None


Build = Callable[[Subject, int], tuple[Predict | None, dict[str, Any]]]
"""An engine built for a model at this many intra-op threads, and what the build reports; None with the
report's ``status`` saying why when the engine cannot run the model (the run goes on without it). An engine whose
runtime's threads disturb the others returns a :class:`export.timing.Worker`: it is timed in its own process."""


def _always(subject: Subject) -> bool:
    return True


def _anywhere(features: dict[str, bool]) -> str | None:
    return None


def _on_return() -> None:
    """The CPU's synchronize: a call's work is done when it returns."""


@dataclass(frozen=True)
class Engine:
    """One way to run a model, and all the benchmark needs to know of it: appended to ENGINES, it is built for
    every model it applies to, timed in the interleaved rounds, compared with its baseline, run for accuracy,
    and given columns in results.md and rows in results.csv, and a marker and line in the charts' legends.
    ``device`` and ``synchronize``: see the module docstring."""

    name: str  # its key in results.json and its name for --engines
    label: str  # its name in the table's headers
    build: Build
    baseline: str | None = None  # the engine its speed-ups are against
    applies: Callable[[Subject], bool] = _always  # e.g. int8: trained models only (or --quantize)
    batches: tuple[int, ...] | None = None  # the only batch sizes it is timed at (None: every one): what its rows use
    available: Callable[[dict[str, bool]], str | None] = _anywhere  # why not on this CPU or install (one line), or None
    precision: str = "fp32"  # the arithmetic it runs in: which GEMM peak its GMAC/s are a share of (export.peak)
    device: str = "cpu"
    synchronize: Callable[[], None] = _on_return  # returns once the device has finished what was asked of it
    marker: str = "o"  # its points in the cost charts (matplotlib marker)
    line: str = "-"  # its lines in the latency-against-batch chart (matplotlib linestyle)
    environment: Callable[[], dict[str, Any]] = dict  # what results.json's environment says of it

    def describe(self) -> dict[str, Any]:
        """What results.json says of the engine: all the report needs for its columns and charts."""
        return {"label": self.label, "baseline": self.baseline, "precision": self.precision, "device": self.device,
                "marker": self.marker, "line": self.line}


def torch_predict(model: torch.nn.Module, memory_format: torch.memory_format = torch.contiguous_format,
                  dtype: torch.dtype | None = None) -> Predict:
    """Eager torch under inference_mode; the input in ``memory_format``; under bf16 autocast with ``dtype``."""
    def predict(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            return model(torch.from_numpy(x).contiguous(memory_format=memory_format)).float().numpy()

    return predict


def ort_predict(session: ort.InferenceSession) -> Predict:
    return lambda x: session.run(None, {INPUT_NAME: x})[0]


# ---------------------------------------------------------------------------- timing


def _to_the_end(predict: Predict, x: np.ndarray, synchronize: Callable[[], None]) -> None:
    """One call of an engine that returns once its device has finished it (the module docstring's devices)."""
    predict(x)
    synchronize()


def _round_of(engine: Engine, predict: Predict, x: np.ndarray) -> Round:
    """How one round of ``engine`` is timed: here, or in its worker process (export.timing), alike."""
    if isinstance(predict, Worker):
        return functools.partial(predict.round, x)
    return functools.partial(time_round, functools.partial(_to_the_end, predict, x, engine.synchronize))


def measure(engines: dict[Engine, Predict], batch: int, cfg: BenchConfig,
            remeasure_s: float = 0.0) -> tuple[dict[str, list[float]], float]:
    """Round times (ms) of every engine at ``batch``, then more rounds for up to ``remeasure_s`` seconds while one is
    noisy and other processes leave the machine to the benchmark; and the share of the machine's CPU they took."""
    x = np.random.default_rng(0).standard_normal((batch, *cfg.input_size), dtype=np.float32)
    rounds_of = {e.name: _round_of(e, p, x) for e, p in engines.items()}
    workers = [p.pid for p in engines.values() if isinstance(p, Worker) and p.pid is not None]
    start = cpu_clock(workers)
    rounds = interleaved(rounds_of, cfg.rounds, cfg.warmup, cfg.round_s)
    deadline = time.perf_counter() + remeasure_s
    while (time.perf_counter() < deadline and others_share(start, cpu_clock(workers)) <= CONTENDED
           and any(summary(r)["noisy"] for r in _figures(rounds))):
        interleaved(rounds_of, 2, cfg.warmup, cfg.round_s, into=rounds)
    return rounds, others_share(start, cpu_clock(workers))


def _summary(rounds: list[float], contended: float) -> dict[str, Any]:
    """A figure's summary; noisy too when other processes took more than CONTENDED of the CPU while it was timed."""
    fig = summary(rounds)
    return {**fig, "noisy": fig["noisy"] or contended > CONTENDED, "others_cpu_share": round(contended, 3)}


def speedup_rounds(rounds: dict[str, list[float]]) -> dict[str, list[float]]:
    """Per-round ratios of each engine timed with its baseline: how many times faster it is."""
    return {e.name: ratios(rounds[e.baseline], rounds[e.name]) for e in ENGINES
            if e.name in rounds and e.baseline in rounds}


def _figures(rounds: dict[str, list[float]]) -> list[list[float]]:
    """Every figure reported from these rounds: each engine's times, and each speed-up's per-round ratios."""
    return [*rounds.values(), *speedup_rounds(rounds).values()]


# ---------------------------------------------------------------------------- accuracy and int8


def normalised_batches(data: Dataset, x: torch.Tensor, y: torch.Tensor, batch: int):
    """(float32 NCHW normalised with the dataset's mean and std, labels) batches, in order: zoo.data.loading's loader."""
    loader = DeviceLoader(x, y, batch_size=batch, mean=data.spec.mean, std=data.spec.std, shuffle=False, drop_last=False)
    return ((xb.numpy(), yb.numpy()) for xb, yb in loader.batches(0))


def top1(predict: Predict, data: Dataset, n: int, batch: int) -> float:
    """Top-1 accuracy of ``predict`` on a seeded ``n`` of the test set (0 or more than it has: all of it), in batches
    of ``batch``, the last padded with zeros to it: an engine compiled for the timed batch sizes runs them all."""
    x, y = subset(data.x_test, data.y_test, n)
    correct = 0
    for xb, yb in normalised_batches(data, x, y, batch):
        padded = np.concatenate([xb, np.zeros((batch - len(xb), *xb.shape[1:]), xb.dtype)]) if len(xb) < batch else xb
        correct += int((predict(padded)[:len(xb)].argmax(1) == yb).sum())
    return correct / len(y)


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over batches of normalised images."""

    def __init__(self, batches: list[np.ndarray]) -> None:
        self._batches = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def int8_settings(features: dict[str, bool]) -> dict[str, Any]:
    """The static quantization settings for a CPU with these features: activations uint8, weights int8 per output
    channel, and a reduced (7-bit) weight range only without VNNI, where AVX2's 16-bit sums of uint8 x int8
    products can saturate (onnxruntime's advice); with VNNI or AMX the full range is exact and more accurate."""
    return {"format": "QDQ", "activations": "QUInt8", "weights": "QInt8", "per_channel": True,
            "reduce_range": not has_vnni(features)}


def quantize_int8(src: Path, dst: Path, data: Dataset, n_images: int, settings: dict[str, Any] | None = None) -> Path:
    """Static int8 quantization of ``src`` into ``dst`` with ``settings`` (int8_settings; this CPU's when None),
    calibrated (min-max) on ``n_images`` training images."""
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_static  # noqa: PLC0415 lazy: only int8 needs it

    settings = settings or int8_settings(isa_features())
    prepared = dst.with_name(dst.stem + ".pre.onnx")
    x, y = subset(data.x_train, data.y_train, n_images, seed=1)
    batches = [xb for xb, _ in normalised_batches(data, x, y, 32)]
    try:
        quant_pre_process(src, prepared)  # shape inference + graph optimisation, as onnxruntime recommends first
        quantize_static(
            prepared, dst, _Calibration(batches), quant_format=QuantFormat[settings["format"]],
            activation_type=QuantType[settings["activations"]], weight_type=QuantType[settings["weights"]],
            per_channel=settings["per_channel"], reduce_range=settings["reduce_range"],
        )
    except Exception as e:  # onnxruntime.quantization raises plain exceptions of many types
        raise ExportError(f"int8 quantization of {src.name} failed: {type(e).__name__}: {e}; rerun without --quantize") from e
    finally:
        prepared.unlink(missing_ok=True)
    return dst


def int8_file(s: Subject) -> Path:
    """``s``'s int8 copy, from the cache (export.cache) or quantized now: the same file for every engine running
    int8 and every thread count."""
    if s.data is None:  # run_bench refuses --quantize without data before any work
        raise DataError("int8 quantization calibrates on real images: pass data (--data-dir DIR with the input's NAME.npz)")
    data, settings = s.data, int8_settings(s.cfg.features)
    key = {"int8_of": s.key, **settings, "calibration_images": s.cfg.calibration_images, "data": data.sha256,
           "onnxruntime": ort.__version__}
    path, _ = cached(key, lambda dst: quantize_int8(s.onnx, dst, data, s.cfg.calibration_images, settings))
    return path


# ---------------------------------------------------------------------------- the engines benchmarked


def _torch(s: Subject, threads: int) -> tuple[Predict, dict[str, Any]]:
    return torch_predict(s.model), {}


def _torch_cl(s: Subject, threads: int) -> tuple[Predict, dict[str, Any]]:
    """torch at its best eager form: BatchNorm folded into the convolutions (as onnxruntime's graph has it),
    weights and input channels_last (oneDNN's native layout), inference_mode."""
    return torch_predict(fold_batchnorm(s.model).to(memory_format=torch.channels_last), torch.channels_last), {}


def _bf16(s: Subject, threads: int) -> tuple[Predict, dict[str, Any]]:
    """torch's oneDNN bf16: the best eager form under bf16 autocast (weights cast once per call by autocast)."""
    model = fold_batchnorm(s.model).to(memory_format=torch.channels_last)
    return torch_predict(model, torch.channels_last, torch.bfloat16), {}


def _onnxruntime(s: Subject, threads: int) -> tuple[Predict, dict[str, Any]]:
    return ort_predict(create_session(s.onnx, threads, spinning=False)), {}


def _int8(s: Subject, threads: int) -> tuple[Predict, dict[str, Any]]:
    path = int8_file(s)
    return ort_predict(create_session(path, threads, spinning=False)), {
        "onnx_bytes": path.stat().st_size, "reduce_range": int8_settings(s.cfg.features)["reduce_range"]}


def _ov(precision: str, int8: bool) -> Build:
    """An OpenVINO engine on the fp32 export or the int8 copy, in its own worker process (export.openvino)."""
    def build(s: Subject, threads: int) -> tuple[Predict, dict[str, Any]]:
        worker = Worker(openvino.engine, str(int8_file(s) if int8 else s.onnx), threads, precision)
        return worker, worker.facts

    return build


def _compile(s: Subject, threads: int) -> tuple[Predict | None, dict[str, Any]]:
    compiled, facts = compile_model(s.model, s.cfg.batch_sizes, s.cfg.input_size, s.cfg.compile_limit_s)
    return (None if compiled is None else torch_predict(compiled)), facts


def _bf16_cpu(features: dict[str, bool]) -> str | None:
    return None if has_bf16(features) else "unavailable on this CPU: no avx512_bf16/amx (bf16 would be emulated)"


def _ov_bf16_available(features: dict[str, bool]) -> str | None:
    return _bf16_cpu(features) or openvino.missing()


def _ort_environment() -> dict[str, Any]:
    """onnxruntime's version and the settings create_session(spinning=False) gives every session here."""
    return {
        "onnxruntime": ort.__version__,
        "ort_provider": PROVIDER,
        "ort_inter_op_threads": 1,
        "ort_spinning": False,
        "ort_graph_optimization_level": ort.GraphOptimizationLevel.ORT_ENABLE_ALL.name,
        "ort_execution_mode": ort.ExecutionMode.ORT_SEQUENTIAL.name,
    }


def _int8_applies(s: Subject) -> bool:
    return s.data is not None and (s.cfg.quantize or s.trained)


ENGINES: tuple[Engine, ...] = (
    Engine("torch", "eager", _torch, baseline="torch_cl", batches=(1,), marker="o", line="--",
           environment=lambda: {"torch": torch.__version__}),
    Engine("torch_cl", "torch-cl", _torch_cl, marker="v", line="-."),
    Engine("onnxruntime", "ort", _onnxruntime, baseline="torch_cl", marker="s", line="-", environment=_ort_environment),
    Engine("int8", "int8", _int8, baseline="onnxruntime", applies=_int8_applies, precision="int8", marker="^", line=":"),
    Engine("bf16", "bf16", _bf16, baseline="torch_cl", available=_bf16_cpu, precision="bf16", marker="X", line=":"),
    Engine("ov_bf16", "ov-bf16", _ov("bf16", int8=False), baseline="onnxruntime", available=_ov_bf16_available,
           precision="bf16", marker="P", line="-", environment=openvino.environment),
    Engine("ov_int8", "ov-int8", _ov("f32", int8=True), baseline="int8", applies=_int8_applies,
           available=lambda f: openvino.missing(), precision="int8", marker="*", line=":",
           environment=openvino.environment),
    Engine("compile", "compile", _compile, baseline="torch_cl", marker="D", line="-.",
           environment=lambda: {"inductor": INDUCTOR_SETTINGS}),
)
"""Every engine, in the order of the tables and charts; each selected one applies to a model when its ``applies``
says so, and runs where its ``available`` finds no reason it cannot. ``torch`` (plain eager) is a reference row:
its speed-up over the baseline ``torch_cl`` shows what the best eager form gains, at batch 1 only (the table's
reference latency; its batch-32 figure was the run's slowest and no row or chart needs it)."""


def select_engines(names: tuple[str, ...], skip: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The engines named (``all``: every one), less those in ``skip``, in ENGINES' order; an unknown name is refused."""
    known = [e.name for e in ENGINES]
    unknown = sorted(set(names) - {*known, ALL} | set(skip) - set(known))
    if unknown:
        raise ArgumentError(f"zoo bench: no engine {', '.join(unknown)}; the engines are {', '.join(known)} (or {ALL})")
    chosen = [n for n in known if (ALL in names or n in names) and n not in skip]
    if not chosen:
        raise ArgumentError(f"zoo bench: --engines {' '.join(names)} less --skip-engines {' '.join(skip)} leaves no "
                            "engine; name one to run")
    return tuple(chosen)


# ---------------------------------------------------------------------------- one model


EXPORT_CODE = (Path(__file__).with_name("onnx.py"), *sorted(Path(zoo.__file__).with_name("models").glob("*.py")))
"""The source an export's bytes depend on beyond its weights: the exporter's and the models'."""


def load_subject(name: str, cfg: BenchConfig, weights: str | None) -> ZooModel:
    """``name`` as the benchmark measures it: its weights (or the tag's) as saved, or else seeded random weights,
    the same every run and in every process, so that the export's cache key is too."""
    asked = {"in_chans": cfg.input_size[0], **cfg.model_kwargs, **({"num_classes": cfg.num_classes} if cfg.num_classes else {})}
    # saved weights bring their configuration: only what was asked for is passed, and a conflict is refused
    if weights is not None:
        _check_measurable(weights, asked)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return load_model(name, weights=weights, **(asked if weights else {"num_classes": input_shape(cfg.input)[1], **asked}))


def export_key(model: ZooModel, cfg: BenchConfig) -> dict[str, Any]:
    """What decides the bytes of ``model``'s export (export.cache)."""
    return {"arch": model._zoo_arch, "kwargs": dict(model._model_args), "weights_sha256": state_sha256(model),
            "input_size": cfg.input_size, "opset": cfg.opset, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxscript": onnxscript.__version__, "zoo": __version__, "code_sha256": code_sha256(*EXPORT_CODE)}


def export_cached(model: ZooModel, key: dict[str, Any], cfg: BenchConfig) -> tuple[Path, bool]:
    """``model``'s ONNX file from the cache, or exported into it now; and whether it was a hit."""
    return cached(key, lambda dst: export_onnx(model, dst, input_size=cfg.input_size, opset=cfg.opset))


def _export_in_worker(name: str, cfg: BenchConfig, weights: str | None) -> float:
    """A worker process's share of :func:`export_ahead`: one model exported into the cache; its seconds."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    model = load_subject(name, cfg, weights)
    export_cached(model, export_key(model, cfg), cfg)
    return time.perf_counter() - start


def export_ahead(models: dict[str, ZooModel], cfg: BenchConfig, weights: dict[str, str]) -> dict[str, float]:
    """Export the models the cache lacks before any timing, in worker processes (one per physical core): tracing is
    one core's work, so on a first run the exports overlap instead of queueing. Each worker builds its model the
    way :func:`load_subject` does, so its file is the one ``prepare`` then finds. Seconds per model exported."""
    missing = [name for name, model in models.items() if not is_cached(export_key(model, cfg))]
    if len(missing) < 2:  # one export gains nothing from a process of its own
        return {}
    workers = min(physical_cores(), len(missing))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        seconds = pool.map(_export_in_worker, missing, [cfg] * len(missing), [weights.get(n) for n in missing])
        return dict(zip(missing, seconds))


def prepare(name: str, cfg: BenchConfig, weights: str | None, data: Dataset | None,
            model: ZooModel | None = None, export_s: float | None = None) -> Subject:
    """Load (unless ``model`` is given: :func:`load_subject`'s), export (or take from the cache) and check
    ``name``: what its engines are built from. ``export_s``: the seconds a worker took to export it ahead."""
    model = load_subject(name, cfg, weights) if model is None else model
    kwargs = dict(model._model_args)  # what was built: the weights' configuration, or the tag's, or the arguments
    info = zoo.model_info(model._zoo_arch, input_size=cfg.input_size, **kwargs)
    start = time.perf_counter()
    key = export_key(model, cfg)
    path, hit = export_cached(model, key, cfg)
    facts: dict[str, Any] = {"params": info["params"], "macs": info["macs"], "onnx_bytes": path.stat().st_size,
                             "export_s": time.perf_counter() - start if export_s is None else export_s,
                             "export_cached": hit and export_s is None}
    facts["parity_max_abs_diff"] = {str(b): d for b, d in check_parity(model, path, input_size=cfg.input_size).items()}
    trained = weights is not None or bool(split_model_name(name)[1])  # a tag brings its weights
    return Subject(name, weights, kwargs, model, path, key, facts, trained, cfg, data)


def _check_measurable(weights: str, asked: dict[str, Any]) -> None:
    """The benchmark measures the saved weights as they are: a head or input other than theirs (which loading would
    adapt, timm's way) would time and score a model nobody trained, so it is refused."""
    meta = read_meta(weights)
    for key in ("num_classes", "in_chans"):
        if key in asked and asked[key] != getattr(meta, key):
            raise CheckpointError(f"{weights} was saved with {key}={getattr(meta, key)}, but {key}={asked[key]} was asked "
                                  f"for; the benchmark measures those weights as they are: drop that option")


def build_engines(s: Subject, threads: int) -> tuple[dict[Engine, Predict], dict[str, dict[str, Any]]]:
    """The selected engines available here that apply to ``s``, built for ``threads``; and how each build went:
    ``status`` ("ok" or why there is no engine), ``build_s`` and what the build reports."""
    engines, builds = {}, {}
    for engine in usable_engines(s.cfg):
        if not engine.applies(s):
            continue
        start = time.perf_counter()
        predict, facts = engine.build(s, threads)
        builds[engine.name] = {"status": "ok", **facts, "build_s": round(time.perf_counter() - start, 2)}
        if predict is not None:
            engines[engine] = predict
    return engines, builds


def usable_engines(cfg: BenchConfig) -> list[Engine]:
    """The selected engines with nothing against them on this CPU and install."""
    return [e for e in ENGINES if e.name in cfg.engines and e.available(cfg.features) is None]


def bench_model(s: Subject, engines: dict[Engine, Predict], builds: dict[str, Any], threads: int,
                peaks: dict[str, float]) -> dict[str, Any]:
    """Latency at every batch size and throughput at the largest, per engine, each with its GMAC/s and share of the
    ``peaks``; speed-ups; accuracy when trained. Re-measuring noisy figures takes at most ``remeasure_s`` per model,
    shared evenly by the batch sizes (batch 1's cheap rounds once took all of it, and batch 32 never had more)."""
    cfg, largest = s.cfg, max(s.cfg.batch_sizes)
    latency: dict[str, dict[str, Any]] = {e.name: {} for e in engines}
    speedups: dict[str, dict[str, Any]] = {}
    for batch in cfg.batch_sizes:
        timed = {e: p for e, p in engines.items() if e.batches is None or batch in e.batches}
        rounds, contended = measure(timed, batch, cfg, cfg.remeasure_s / len(cfg.batch_sizes))
        for engine in timed:
            fig = _summary(rounds[engine.name], contended)
            gmacs = s.facts["macs"] * batch / fig["median"] / 1e6
            latency[engine.name][str(batch)] = {**fig, "gmacs": round(gmacs, 2),
                                                "of_peak": round(gmacs / peaks[engine.precision], 4)}
        if batch in (1, largest):
            for name, per_round in speedup_rounds(rounds).items():
                speedups.setdefault(name, {})["latency_b1" if batch == 1 else "throughput"] = _summary(per_round, contended)
    throughput = {e: _summary([largest / ms * 1e3 for ms in by_batch[str(largest)]["rounds"]],
                              by_batch[str(largest)]["others_cpu_share"]) for e, by_batch in latency.items()
                  if str(largest) in by_batch}
    accuracy = {e.name: top1(p, s.data, cfg.eval_images, largest) for e, p in engines.items()} if s.trained and s.data else None
    figures = [*(f for e in latency.values() for f in e.values()), *(f for sp in speedups.values() for f in sp.values())]
    return {"name": s.name, "threads": threads, "model_kwargs": s.kwargs, "weights": s.weights, **s.facts,
            "build": builds, "latency_ms": latency, "throughput_ips": throughput, "speedup": speedups,
            "accuracy": accuracy, "noisy": any(f["noisy"] for f in figures)}


# ---------------------------------------------------------------------------- the run


def environment(cfg: BenchConfig) -> dict[str, Any]:
    """Versions, CPU, its instruction-set features (what the int8 and bf16 settings were chosen from), load and
    frequency settings: what a reader needs to compare runs (the engines add theirs)."""
    return {
        "load_average_1min": os.getloadavg()[0],
        "python": platform.python_version(),
        "onnx": onnx.__version__,
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "physical_cores": physical_cores(),
        "cpu_features": cfg.features,
        "cpu_frequency": _cpu_frequency(),
        "noisy_beyond": NOISY,
        "noisy_when_others_take": CONTENDED,
    }


def _cpu_frequency() -> dict[str, str]:
    """What the kernel says of cpu0's frequency scaling, where it can be read (often not in containers)."""
    base = Path("/sys/devices/system/cpu/cpu0/cpufreq")
    found = {}
    for name in ("scaling_governor", "scaling_cur_freq", "scaling_max_freq", "scaling_driver"):
        try:
            found[name] = (base / name).read_text().strip()
        except OSError:
            continue
    return found or {"note": "not readable here"}


def _bench_all(names: list[str], cfg: BenchConfig, weights: dict[str, str], data: Dataset | None, bar: Any,
               peaks: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Every model at every thread count, each exported (or taken from the cache) once; ``peaks`` gets the GEMM
    peaks of every thread count, probed before its first model."""
    loaded = {name: load_subject(name, cfg, weights.get(name)) for name in names}
    if bar is not None:
        bar.set_postfix_str("exporting")
    exported = export_ahead(loaded, cfg, weights)
    models = []
    for name in names:
        subject = prepare(name, cfg, weights.get(name), data, loaded.pop(name), exported.get(name))
        for threads in cfg.threads:
            if bar is not None:
                bar.set_postfix_str(f"{name}, {threads} threads")
            torch.set_num_threads(threads)
            if str(threads) not in peaks:
                peaks[str(threads)] = peak_gmacs(threads, cfg.features, cfg.peak_s)
            engines, builds = build_engines(subject, threads)
            try:
                models.append(bench_model(subject, engines, builds, threads, peaks[str(threads)]))
            finally:
                for worker in (p for p in engines.values() if isinstance(p, Worker)):
                    worker.close()
            if bar is not None:
                bar.update()
    return models


def run_bench(names: list[str], cfg: BenchConfig, *, weights: dict[str, str] | None = None,
              data: Dataset | None = None, progress: bool = True) -> dict[str, Any]:
    """Benchmark ``names`` at every thread count (with ``progress``, a bar on a terminal); the whole result document."""
    if cfg.quantize and data is None:
        raise DataError("int8 quantization calibrates on real images: pass data (--data-dir DIR with the input's NAME.npz)")
    previous = torch.get_num_threads()
    env, start = environment(cfg), time.perf_counter()
    peaks: dict[str, Any] = {}
    bar = progress_bar(progress, len(cfg.threads) * len(names), "bench", unit="model")
    try:
        models = _bench_all(names, cfg, weights or {}, data, bar, peaks)
    finally:
        torch.set_num_threads(previous)
        if bar is not None:
            bar.close()
    used = [e for e in ENGINES if any(e.name in m["build"] for m in models)]
    return {
        "schema": SCHEMA,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "duration_s": time.perf_counter() - start,
        "environment": {**env, **{k: v for e in used for k, v in e.environment().items()},
                        "load_average_1min_after": os.getloadavg()[0]},
        "settings": {**dataclasses.asdict(cfg), "input_size": list(cfg.input_size)},
        "data": None if data is None else {"source": data.source, "test_images": len(data.y_test),
                                           "sample": data.source.startswith("sample:")},
        "peak_gmacs": peaks,
        "engines": {e.name: e.describe() for e in used},
        "unavailable": {e.name: e.available(cfg.features) for e in ENGINES
                        if e.name in cfg.engines and e.available(cfg.features)},
        "models": models,
    }


# ---------------------------------------------------------------------------- command line


def weights_pair(item: str) -> tuple[str, str]:
    name, sep, source = item.partition("=")
    if not sep or not name or not source:
        raise argparse.ArgumentTypeError(f"takes MODEL=SOURCE, got {item!r}")
    return name, source


DESCRIPTION = """The paper's efficiency comparison on the CPU. Each model is exported to ONNX (cached, its parity with
torch checked every run) and timed with the same threads in interleaved rounds on each engine: torch at its best
eager form (torch_cl, the baseline), plain eager, onnxruntime fp32 and int8, and where this CPU and install have
them bf16, OpenVINO and torch.compile. A latency is the median over rounds with its 95% bootstrap interval; models
with weights get top-1 accuracy on every engine. Writes results.json, results.csv, results.md and charts to --out.
The method, engine by engine: docs/benchmark.md."""
"""What ``--help`` says above the options: plain text (zoo's help layout refills its lines)."""

EXAMPLES = """
  zoo bench                                   # the paper's models and the tags, at CIFAR-10 input
  zoo bench --engines all                     # every engine this CPU and this install have
  zoo bench 'googlenet_res5x5.*' --input mnist --threads 1 2
  zoo bench resnet18 --weights resnet18=runs/r18/model --data-dir DIR --quantize
  zoo bench resnet18 vgg11_bn --engines torch_cl onnxruntime compile    # compile time apart
  zoo bench --compare old/results.json        # what changed beyond the intervals"""
"""What ``--help`` shows below the options, before zoo's exit codes."""


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The ``python -m zoo.export.bench`` arguments, added to ``parser`` when given (to mount it as ``zoo bench``)."""
    parser = parser or argparse.ArgumentParser(prog="python -m zoo.export.bench",
                                               formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.description = DESCRIPTION
    parser.epilog = "\n\n".join(filter(None, (f"examples:{EXAMPLES}", parser.epilog)))
    defaults = BenchConfig()
    parser.add_argument("patterns", nargs="*", default=None, metavar="PATTERN",
                        help=f"model names, wildcards or arch.tag names (default: {' '.join(PAPER_MODELS)} and the input's tags)")
    parser.add_argument("--input", choices=input_names(), default=defaults.input,
                        help="a dataset (its input size and classes) or imagenet (3x224x224, 1000 classes; timing only)")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="folder for results.json/.csv/.md and the charts")
    parser.add_argument("--threads", type=positive(int), nargs="+", default=list(defaults.threads),
                        help="intra-op threads for every engine; several values sweep (default: the physical cores)")
    parser.add_argument("--weights", nargs="+", type=weights_pair, default=[], metavar="MODEL=SOURCE",
                        help="weights per model (a .safetensors file, a checkpoint folder or hf-hub:owner/name): accuracy and int8")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder with the input's NAME.npz: accuracy on the full test set (default: zoo's shipped sample)")
    parser.add_argument("--quantize", action="store_true", help="int8 (static QDQ) for every model, not only those with weights")
    parser.add_argument("--engines", nargs="+", default=list(defaults.engines), metavar="NAME",
                        help=f"engines to run: {', '.join(e.name for e in ENGINES)}, or {ALL} (every one this CPU and "
                             f"install have); default: {' '.join(defaults.engines)}")
    parser.add_argument("--skip-engines", nargs="+", default=[], metavar="NAME", help="engines switched off, e.g. after --engines all")
    parser.add_argument("--compile", action="store_true",
                        help="add torch.compile (inductor) to the engines, compiled for every batch size first (minutes per model on 2 cores)")
    parser.add_argument("--compile-limit", type=positive(float), default=defaults.compile_limit_s, metavar="SECONDS",
                        help="time for each model to compile, all batch sizes (default: %(default)s); past it the table says so")
    parser.add_argument("--batch-sizes", type=positive(int), nargs="+", default=list(defaults.batch_sizes),
                        help="latency at each; throughput at the largest (1 is always measured); add 8 for a fuller "
                             f"latency-against-batch chart (default: {' '.join(map(str, defaults.batch_sizes))})")
    parser.add_argument("--rounds", type=positive(int), default=defaults.rounds, help="interleaved rounds per figure (default: %(default)s)")
    parser.add_argument("--eval-images", type=int, default=defaults.eval_images, help="test images for accuracy (0: all)")
    parser.add_argument("--opset", type=positive(int), default=None, help="ONNX opset (default: torch's)")
    add_quiet(parser)
    parser.add_argument("--compare", type=Path, metavar="RESULTS_JSON", help="an earlier results.json: print what changed beyond the intervals")
    add_model_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def model_names(patterns: list[str] | None, input_name: str) -> list[str]:
    """Registry names and tags for ``patterns``; by default the paper's models and the tags trained on the input."""
    if not patterns:
        tags = [t for t in zoo.list_models(pretrained=True) if zoo.get_pretrained_tag(t).dataset == input_name]
        return zoo.list_models(list(PAPER_MODELS)) + tags
    tags = [p for p in patterns if "." in p]  # arch.tag patterns: pretrained tags, with their weights
    names = zoo.list_models([p for p in patterns if p not in tags]) + zoo.list_models(tags, pretrained=True)
    wrong = [n for n in names if "." in n and zoo.get_pretrained_tag(n).dataset != input_name]
    if wrong:
        dataset = zoo.get_pretrained_tag(wrong[0]).dataset
        raise UnknownModelError(f"{', '.join(wrong)} take {dataset} input; pass --input {dataset}")
    if not names:
        raise UnknownModelError(f"no model matches {' '.join(patterns)}; zoo list shows them all")
    return names


def run(args: argparse.Namespace) -> int:
    check_writable(args.out / "results.json")
    if args.compare:
        read_results(args.compare)  # a file --compare cannot read is refused before the benchmark, not after
    names = model_names(args.patterns, args.input)
    weights = dict(args.weights)
    if set(weights) - set(names):
        raise UnknownModelError(f"--weights for {', '.join(sorted(set(weights) - set(names)))}, not among the models benchmarked: {', '.join(names)}")
    cfg = BenchConfig(
        input=args.input, threads=tuple(args.threads), batch_sizes=tuple(args.batch_sizes), rounds=args.rounds,
        engines=(*args.engines, *(["compile"] if args.compile else [])), skip_engines=tuple(args.skip_engines),
        eval_images=args.eval_images, quantize=args.quantize, compile_limit_s=args.compile_limit,
        opset=args.opset, model_kwargs=dict(args.model_arg),
        num_classes=args.num_classes,
    )
    if args.input == IMAGENET and (args.data_dir or args.quantize or weights):
        raise DataError(f"zoo has no ImageNet loader: accuracy and int8 need --input {' or '.join(list_datasets())}")
    data = bench_data(args.input, args.data_dir)
    results = run_bench(names, cfg, weights=weights, data=data, progress=not args.quiet)
    paths = write_results(results, args.out)
    print((args.out / "results.md").read_text())
    if args.compare:
        print(compare(args.compare, results))
    print(f"{len(results['models'])} runs in {results['duration_s']:.0f} s; wrote {', '.join(str(p) for p in paths)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
