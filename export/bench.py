"""torch eager against onnxruntime (fp32 and int8), and torch.compile on request, on the CPU: the paper's
efficiency comparison.

    zoo bench                                   # the paper's models and the bundled tags at CIFAR-10 input
    zoo bench 'googlenet_res5x5.*' --input mnist --threads 1 2
    zoo bench resnet18 --weights resnet18=./run/model --data-dir ../shared/data --quantize
    zoo bench resnet18 vgg11_bn --compile        # torch.compile (inductor) too, compile time reported apart
    zoo bench --compare old/results.json        # what changed beyond the intervals

For every model: export to ONNX (a temporary file, once for every thread count), check parity, then build the
engines that apply to it and time them with the same intra-op threads (onnxruntime's spinning off, so its idle
threads do not slow the next engine) in interleaved rounds: each round times
every engine once, after warm-up, in alternating order. A latency is the median
over rounds of each round's median call, with a 95% bootstrap interval; a
speed-up is the median of the per-round ratios with its interval (export.stats).
A figure whose interval is wider than +-10% is timed for more rounds, within a
time limit, and flagged noisy if it stays wide. Models with trained weights (a
tag, or ``--weights``) get top-1 accuracy for every engine, on ``--data-dir``'s
full test set or else on the sample of real test images shipped with zoo, and an
int8 copy (static QDQ, per-channel weights, calibrated on training images only).
With ``--compile``, torch.compile (inductor) is a third engine: each model is
compiled for every batch size before timing, within ``--compile-limit`` seconds,
and checked against eager; a model that does not compile says why in the table.
Results go to ``--out``: results.json (every round kept), results.csv,
results.md and PNG charts.

Engines are records (:class:`Engine`) in ``ENGINES``: how one is built for a
model, when it applies, its baseline, its device, its chart style and what it
adds to the environment. Timing, accuracy, results.json and every table column
and chart legend (export.report reads results.json's ``engines``) follow from
them, so adding an engine is adding a record.

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
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

import zoo
from .__main__ import add_model_arguments
from .inductor import INDUCTOR_SETTINGS, compile_model
from .onnx import INPUT_NAME, PROVIDER, check_opset, check_parity, create_session, export_onnx, load_model
from .report import SCHEMA, compare, read_results, write_results
from .stats import NOISY, ratios, summary
from zoo.arguments import Range, check_arguments
from zoo.files import check_writable
from zoo.cliutil import add_quiet, positive, run_command
from zoo.data import Dataset, DeviceLoader, load_dataset, load_sample, subset
from zoo.datasets import DEFAULT_DATASET, get_spec, list_datasets
from zoo.errors import ArgumentError, CheckpointError, DataError, ExportError, UnknownModelError
from zoo.hub import read_meta
from zoo.machine import cpu_name, physical_cores
from zoo.progress import progress_bar
from zoo.registry import split_model_name

PAPER_MODELS = ("vgg19", "resnet18", "googlenet*")
"""The paper's three families and its GoogLeNet ablations, in their paper configuration (default stem/head)."""

IMAGENET = "imagenet"
"""The ImageNet-sized input, 3x224x224 and 1000 classes: timing only (zoo has no ImageNet data). The other inputs
are the registered datasets (zoo.datasets), each at its spec's input size and classes."""


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


@dataclass
class BenchConfig:
    """What to measure and how long; the defaults keep the paper's models at CIFAR-10 input to minutes on 2 cores."""

    input: str = DEFAULT_DATASET
    threads: tuple[int, ...] = field(default_factory=lambda: (physical_cores(),))
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    rounds: int = 7
    warmup: int = 2
    round_s: float = 0.05  # each round times calls for at least this long (and 3 calls)
    remeasure_s: float = 10.0  # per figure: time spent on more rounds while its interval is wider than +-10%
    eval_images: int = 0  # 0: the whole test set given (or the shipped sample)
    calibration_images: int = 100
    quantize: bool = False  # int8 for every model; models with weights always get it
    compile: bool = False  # torch.compile (inductor) as a third engine
    compile_limit_s: float = 300.0  # per model, all batch sizes: GoogLeNet takes about 150 s on 2 cores
    opset: int | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    num_classes: int | None = None

    def __post_init__(self) -> None:
        ranges = {"rounds": Range(2), "warmup": Range(0), "round_s": Range(0), "remeasure_s": Range(0),
                  "eval_images": Range(0), "calibration_images": Range(1), "num_classes": Range(1),
                  "compile_limit_s": Range(1)}
        scalars = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("threads", "batch_sizes")}
        check_arguments("zoo bench", scalars, BenchConfig, ranges=ranges)
        for name in ("threads", "batch_sizes"):
            values = tuple(getattr(self, name))
            if not values or min(values) < 1:
                raise ArgumentError(f"zoo bench: {name} must be >= 1, got {list(values)}")
        self.batch_sizes = tuple(sorted({1, *self.batch_sizes}))  # batch 1: the latency every table reports
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
    onnx: Path  # its fp32 export, parity checked
    facts: dict[str, Any]  # size, export time and parity: the same whatever the engine
    trained: bool  # weights or a tag: its accuracy is worth measuring
    cfg: BenchConfig
    data: Dataset | None


Build = Callable[[Subject, int], tuple[Predict | None, dict[str, Any]]]
"""An engine built for a model at this many intra-op threads, and what the build reports; None with the
report's ``status`` saying why when the engine cannot run the model (the run goes on without it)."""


def _always(subject: Subject) -> bool:
    return True


def _on_return() -> None:
    """The CPU's synchronize: a call's work is done when it returns."""


@dataclass(frozen=True)
class Engine:
    """One way to run a model, and all the benchmark needs to know of it: appended to ENGINES, it is built for
    every model it applies to, timed in the interleaved rounds, compared with its baseline, run for accuracy,
    and given columns in results.md and rows in results.csv, and a marker and line in the charts' legends.
    ``device`` and ``synchronize``: see the module docstring."""

    name: str  # its key in results.json
    label: str  # its name in the table's headers
    build: Build
    baseline: str | None = None  # the engine its speed-ups are against
    applies: Callable[[Subject], bool] = _always  # e.g. int8: trained models only; compile: with --compile
    device: str = "cpu"
    synchronize: Callable[[], None] = _on_return  # returns once the device has finished what was asked of it
    accuracy: bool = True  # top-1 measured with it (batches of 100)
    marker: str = "o"  # its points in the cost charts (matplotlib marker)
    line: str = "-"  # its lines in the latency-against-batch chart (matplotlib linestyle)
    environment: Callable[[], dict[str, Any]] = dict  # what results.json's environment says of it

    def describe(self) -> dict[str, Any]:
        """What results.json says of the engine: all the report needs for its columns and charts."""
        return {"label": self.label, "baseline": self.baseline, "device": self.device, "marker": self.marker,
                "line": self.line}


def torch_predict(model: torch.nn.Module) -> Predict:
    def predict(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    return predict


def ort_predict(session: ort.InferenceSession) -> Predict:
    return lambda x: session.run(None, {INPUT_NAME: x})[0]


# ---------------------------------------------------------------------------- timing


def time_round(call: Callable[[], Any], warmup: int, min_s: float) -> float:
    """One round: ``warmup`` calls, then the median of at least 3 calls and ``min_s`` seconds of them, in ms."""
    for _ in range(warmup):
        call()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < min_s:
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def interleaved(calls: dict[str, Callable[[], Any]], rounds: int, warmup: int, min_s: float,
                into: dict[str, list[float]] | None = None) -> dict[str, list[float]]:
    """``rounds`` rounds in which every engine is timed once, the order reversed every other round (A B, B A, ...),
    so that a change of the machine's load during the run reaches every engine alike."""
    into = into if into is not None else {name: [] for name in calls}
    done = len(into[next(iter(calls))])  # rounds already timed: the alternation continues from them
    for r in range(done, done + rounds):
        order = list(calls) if r % 2 == 0 else list(reversed(calls))
        for name in order:
            into[name].append(time_round(calls[name], warmup, min_s))
    return into


CONTENDED = 0.10
"""Share of the machine's CPU time other processes may take while a figure is timed before it is flagged noisy."""


def busy_ticks(stat_line: str) -> float:
    """CPU time the whole machine spent busy, in clock ticks, from /proc/stat's first (``cpu``) line: every field
    but idle and iowait."""
    fields = [float(v) for v in stat_line.split()[1:]]
    return sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0.0)


def cpu_clock() -> tuple[float, float, float]:
    """(wall seconds, CPU seconds busy on the whole machine, CPU seconds of this process), where /proc/stat exists."""
    own = os.times()
    try:
        busy = busy_ticks(Path("/proc/stat").read_text().split("\n", 1)[0])
    except (OSError, ValueError, IndexError):
        return time.perf_counter(), 0.0, 0.0
    return time.perf_counter(), busy / os.sysconf("SC_CLK_TCK"), own.user + own.system


def others_share(start: tuple[float, float, float], end: tuple[float, float, float]) -> float:
    """The share of the machine's CPU time that other processes used between two cpu_clock() readings."""
    wall = end[0] - start[0]
    others = (end[1] - start[1]) - (end[2] - start[2])
    return max(0.0, others / (wall * (os.cpu_count() or 1))) if wall > 0 else 0.0


def _to_the_end(predict: Predict, x: np.ndarray, synchronize: Callable[[], None]) -> None:
    """One call of an engine that returns once its device has finished it (the module docstring's devices)."""
    predict(x)
    synchronize()


def measure(engines: dict[Engine, Predict], batch: int, cfg: BenchConfig) -> tuple[dict[str, list[float]], float]:
    """Round times (ms) of every engine at ``batch``, more rounds within ``remeasure_s`` while one is noisy, and the
    share of the machine's CPU other processes took meanwhile."""
    x = np.random.default_rng(0).standard_normal((batch, *cfg.input_size), dtype=np.float32)
    calls = {e.name: functools.partial(_to_the_end, p, x, e.synchronize) for e, p in engines.items()}
    start = cpu_clock()
    rounds = interleaved(calls, cfg.rounds, cfg.warmup, cfg.round_s)
    deadline = time.perf_counter() + cfg.remeasure_s
    while time.perf_counter() < deadline and any(summary(r)["noisy"] for r in _figures(rounds)):
        interleaved(calls, 2, cfg.warmup, cfg.round_s, into=rounds)
    return rounds, others_share(start, cpu_clock())


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
    """(float32 NCHW normalised with the dataset's mean and std, labels) batches, in order: zoo.data's loader."""
    loader = DeviceLoader(x, y, batch_size=batch, mean=data.spec.mean, std=data.spec.std, shuffle=False, drop_last=False)
    return ((xb.numpy(), yb.numpy()) for xb, yb in loader.batches(0))


def top1(predict: Predict, data: Dataset, n: int, batch: int) -> float:
    """Top-1 accuracy of ``predict`` on a seeded ``n`` of the test set (0 or more than it has: all of it)."""
    x, y = subset(data.x_test, data.y_test, n)
    correct = sum(int((predict(xb).argmax(1) == yb).sum()) for xb, yb in normalised_batches(data, x, y, batch))
    return correct / len(y)


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over batches of normalised images."""

    def __init__(self, batches: list[np.ndarray]) -> None:
        self._batches = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def quantize_int8(src: Path, dst: Path, data: Dataset, n_images: int) -> Path:
    """Static int8 quantization of ``src`` into ``dst``: QDQ, calibrated (min-max) on ``n_images`` training images.

    Activations uint8, weights int8 per output channel, reduced range: onnxruntime's advice for x86 CPUs
    without VNNI, which is what the 2-core machines have.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_static  # lazy: only int8 needs it

    prepared = dst.with_name(dst.stem + ".pre.onnx")
    x, y = subset(data.x_train, data.y_train, n_images, seed=1)
    batches = [xb for xb, _ in normalised_batches(data, x, y, 32)]
    try:
        quant_pre_process(src, prepared)  # shape inference + graph optimisation, as onnxruntime recommends first
        quantize_static(
            prepared, dst, _Calibration(batches),
            quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            per_channel=True, reduce_range=True,
        )
    except Exception as e:  # onnxruntime.quantization raises plain exceptions of many types
        raise ExportError(f"int8 quantization of {src.name} failed: {type(e).__name__}: {e}; rerun without --quantize") from e
    prepared.unlink()
    return dst


# ---------------------------------------------------------------------------- the engines benchmarked


def _torch(s: Subject, threads: int) -> tuple[Predict, dict[str, Any]]:
    return torch_predict(s.model), {}


def _onnxruntime(s: Subject, threads: int) -> tuple[Predict, dict[str, Any]]:
    return ort_predict(create_session(s.onnx, threads, spinning=False)), {}


def _int8(s: Subject, threads: int) -> tuple[Predict, dict[str, Any]]:
    path = s.onnx.with_name(f"{s.name}.int8.onnx")
    if not path.exists():  # quantized once per model, whatever the thread counts
        quantize_int8(s.onnx, path, s.data, s.cfg.calibration_images)
    return ort_predict(create_session(path, threads, spinning=False)), {"onnx_bytes": path.stat().st_size}


def _compile(s: Subject, threads: int) -> tuple[Predict | None, dict[str, Any]]:
    compiled, facts = compile_model(s.model, s.cfg.batch_sizes, s.cfg.input_size, s.cfg.compile_limit_s)
    return (None if compiled is None else torch_predict(compiled)), facts


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


ENGINES: tuple[Engine, ...] = (
    Engine("torch", "torch", _torch, marker="o", line="--", environment=lambda: {"torch": torch.__version__}),
    Engine("onnxruntime", "ort", _onnxruntime, baseline="torch", marker="s", line="-", environment=_ort_environment),
    Engine("int8", "int8", _int8, baseline="onnxruntime", marker="^", line=":",
           applies=lambda s: s.data is not None and (s.cfg.quantize or s.trained)),
    # compiled for the timed batch sizes only, so no accuracy (batches of 100); its parity with eager is in its build
    Engine("compile", "compile", _compile, baseline="torch", marker="D", line="-.", accuracy=False,
           applies=lambda s: s.cfg.compile, environment=lambda: {"inductor": INDUCTOR_SETTINGS}),
)
"""Every engine, in the order of the tables and charts; each applies to a model when its ``applies`` says so."""


# ---------------------------------------------------------------------------- one model


def prepare(name: str, cfg: BenchConfig, workdir: Path, weights: str | None, data: Dataset | None) -> Subject:
    """Load, export and check ``name``: what its engines are built from."""
    asked = {"in_chans": cfg.input_size[0], **cfg.model_kwargs, **({"num_classes": cfg.num_classes} if cfg.num_classes else {})}
    # saved weights bring their configuration: only what was asked for is passed, and a conflict is refused
    if weights is not None:
        _check_measurable(weights, asked)
    model = load_model(name, weights=weights, **(asked if weights else {"num_classes": input_shape(cfg.input)[1], **asked}))
    kwargs = dict(model._model_args)  # what was built: the weights' configuration, or the tag's, or the arguments
    info = zoo.model_info(model._zoo_arch, input_size=cfg.input_size, **kwargs)
    path = workdir / f"{name}.onnx"
    start = time.perf_counter()
    export_onnx(model, path, input_size=cfg.input_size, opset=cfg.opset)
    facts: dict[str, Any] = {"params": info["params"], "macs": info["macs"], "onnx_bytes": path.stat().st_size,
                             "export_s": time.perf_counter() - start}
    facts["parity_max_abs_diff"] = {str(b): d for b, d in check_parity(model, path, input_size=cfg.input_size).items()}
    trained = weights is not None or bool(split_model_name(name)[1])  # a tag brings its weights
    return Subject(name, weights, kwargs, model, path, facts, trained, cfg, data)


def _check_measurable(weights: str, asked: dict[str, Any]) -> None:
    """The benchmark measures the saved weights as they are: a head or input other than theirs (which loading would
    adapt, timm's way) would time and score a model nobody trained, so it is refused."""
    meta = read_meta(weights)
    for key in ("num_classes", "in_chans"):
        if key in asked and asked[key] != getattr(meta, key):
            raise CheckpointError(f"{weights} was saved with {key}={getattr(meta, key)}, but {key}={asked[key]} was asked "
                                  f"for; the benchmark measures those weights as they are: drop that option")


def build_engines(s: Subject, threads: int) -> tuple[dict[Engine, Predict], dict[str, dict[str, Any]]]:
    """The engines that apply to ``s``, built for ``threads``; and how each build went: ``status`` ("ok" or why
    there is no engine), ``build_s`` and what the build reports."""
    engines, builds = {}, {}
    for engine in (e for e in ENGINES if e.applies(s)):
        start = time.perf_counter()
        predict, facts = engine.build(s, threads)
        builds[engine.name] = {"status": "ok", **facts, "build_s": round(time.perf_counter() - start, 2)}
        if predict is not None:
            engines[engine] = predict
    return engines, builds


def bench_model(s: Subject, engines: dict[Engine, Predict], builds: dict[str, Any], threads: int) -> dict[str, Any]:
    """Latency at every batch size and throughput at the largest, per engine; speed-ups; accuracy when trained."""
    cfg, largest = s.cfg, max(s.cfg.batch_sizes)
    latency: dict[str, dict[str, Any]] = {e.name: {} for e in engines}
    speedups: dict[str, dict[str, Any]] = {}
    for batch in cfg.batch_sizes:
        rounds, contended = measure(engines, batch, cfg)
        for name, times in rounds.items():
            latency[name][str(batch)] = _summary(times, contended)
        if batch in (1, largest):
            for name, per_round in speedup_rounds(rounds).items():
                speedups.setdefault(name, {})["latency_b1" if batch == 1 else "throughput"] = _summary(per_round, contended)
    throughput = {e: _summary([largest / ms * 1e3 for ms in by_batch[str(largest)]["rounds"]],
                              by_batch[str(largest)]["others_cpu_share"]) for e, by_batch in latency.items()}
    accuracy = ({e.name: top1(p, s.data, cfg.eval_images, 100) for e, p in engines.items() if e.accuracy}
                if s.trained and s.data else None)
    figures = [*(f for e in latency.values() for f in e.values()), *(f for sp in speedups.values() for f in sp.values())]
    return {"name": s.name, "threads": threads, "model_kwargs": s.kwargs, "weights": s.weights, **s.facts,
            "build": builds, "latency_ms": latency, "throughput_ips": throughput, "speedup": speedups,
            "accuracy": accuracy, "noisy": any(f["noisy"] for f in figures)}


# ---------------------------------------------------------------------------- the run


def environment() -> dict[str, Any]:
    """Versions, CPU, load and frequency settings: what a reader needs to compare runs (the engines add theirs)."""
    return {
        "load_average_1min": os.getloadavg()[0],
        "python": platform.python_version(),
        "onnx": onnx.__version__,
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "physical_cores": physical_cores(),
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


def _bench_all(names: list[str], cfg: BenchConfig, weights: dict[str, str], data: Dataset | None, bar: Any) -> list[dict[str, Any]]:
    """Every model at every thread count, each exported once, in a temporary folder."""
    models = []
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as workdir:
        for name in names:
            subject = prepare(name, cfg, Path(workdir), weights.get(name), data)
            for threads in cfg.threads:
                if bar is not None:
                    bar.set_postfix_str(f"{name}, {threads} threads")
                torch.set_num_threads(threads)
                models.append(bench_model(subject, *build_engines(subject, threads), threads))
                if bar is not None:
                    bar.update()
    return models


def run_bench(names: list[str], cfg: BenchConfig, *, weights: dict[str, str] | None = None,
              data: Dataset | None = None, progress: bool = True) -> dict[str, Any]:
    """Benchmark ``names`` at every thread count (with ``progress``, a bar on a terminal); the whole result document."""
    if cfg.quantize and data is None:
        raise DataError("int8 quantization calibrates on real images: pass data (--data-dir DIR with the input's NAME.npz)")
    previous = torch.get_num_threads()
    env, start = environment(), time.perf_counter()
    bar = progress_bar(progress, len(cfg.threads) * len(names), "bench", unit="model")
    try:
        models = _bench_all(names, cfg, weights or {}, data, bar)
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
        "engines": {e.name: e.describe() for e in used},
        "models": models,
    }


# ---------------------------------------------------------------------------- command line


def weights_pair(item: str) -> tuple[str, str]:
    name, sep, source = item.partition("=")
    if not sep or not name or not source:
        raise argparse.ArgumentTypeError(f"takes MODEL=SOURCE, got {item!r}")
    return name, source


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The ``python -m zoo.export.bench`` arguments, added to ``parser`` when given (to mount it as ``zoo bench``)."""
    parser = parser or argparse.ArgumentParser(prog="python -m zoo.export.bench", description=__doc__,
                                               formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.description = parser.description or __doc__
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
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile (inductor) as a third engine, compiled for every batch size first (minutes per model on 2 cores)")
    parser.add_argument("--compile-limit", type=positive(float), default=defaults.compile_limit_s, metavar="SECONDS",
                        help="time for each model to compile, all batch sizes (default: %(default)s); past it the table says so")
    parser.add_argument("--batch-sizes", type=positive(int), nargs="+", default=list(defaults.batch_sizes),
                        help="latency at each; throughput at the largest (1 is always measured)")
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
        eval_images=args.eval_images, quantize=args.quantize, compile=args.compile, compile_limit_s=args.compile_limit,
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
