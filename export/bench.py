"""torch eager against onnxruntime (fp32 and int8), and torch.compile on request, on the CPU: the paper's
efficiency comparison.

    zoo bench                                   # the paper's models and the bundled tags at CIFAR-10 input
    zoo bench 'googlenet_res5x5.*' --input mnist --threads 1 2
    zoo bench resnet18 --weights resnet18=./run/model --data-dir ../shared/data --quantize
    zoo bench resnet18 vgg11_bn --compile        # torch.compile (inductor) too, compile time reported apart
    zoo bench --compare old/results.json        # what changed beyond the intervals

For every model: export to ONNX (a temporary file), check parity, then time the
engines with the same intra-op threads (onnxruntime's spinning off, so its idle
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
from export.__main__ import add_model_arguments
from export.inductor import compile_model
from export.onnx import INPUT_NAME, check_parity, create_session, export_onnx, load_model
from export.report import compare, write_results
from export.stats import NOISY, ratios, summary
from zoo.arguments import Range, check_arguments
from zoo.checkpoint import check_writable
from zoo.cliutil import add_quiet, positive, progress_bar, run_command
from zoo.data import Dataset, DeviceLoader, load_dataset, load_sample, subset
from zoo.errors import ArgumentError, DataError, ExportError, UnknownModelError
from zoo.machine import cpu_name, physical_cores
from zoo.registry import split_model_name

SCHEMA = "zoo.bench/2"
PAPER_MODELS = ("vgg19", "resnet18", "googlenet*")
"""The paper's three families and its GoogLeNet ablations, in their paper configuration (default stem/head)."""

INPUTS: dict[str, tuple[tuple[int, int, int], int]] = {
    "cifar10": ((3, 32, 32), 10),
    "mnist": ((1, 32, 32), 10),
    "imagenet": ((3, 224, 224), 1000),
}


@dataclass
class BenchConfig:
    """What to measure and how long; the defaults keep the paper's models at CIFAR-10 input to minutes on 2 cores."""

    input: str = "cifar10"
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
        if self.input not in INPUTS:
            raise ArgumentError(f"zoo bench: input={self.input!r} is not one of {', '.join(INPUTS)}")

    @property
    def input_size(self) -> tuple[int, int, int]:
        return INPUTS[self.input][0]


# ---------------------------------------------------------------------------- engines and timing

Predict = Callable[[np.ndarray], np.ndarray]
"""An engine: a float32 NCHW batch in, logits out."""


def torch_predict(model: torch.nn.Module) -> Predict:
    def predict(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    return predict


def ort_predict(session: ort.InferenceSession) -> Predict:
    return lambda x: session.run(None, {INPUT_NAME: x})[0]


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


def cpu_clock() -> tuple[float, float, float]:
    """(wall seconds, CPU seconds busy on the whole machine, CPU seconds of this process), where /proc/stat exists."""
    own = os.times()
    try:
        fields = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return time.perf_counter(), 0.0, 0.0
    busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0.0)  # all but idle and iowait
    return time.perf_counter(), busy / os.sysconf("SC_CLK_TCK"), own.user + own.system


def others_share(start: tuple[float, float, float], end: tuple[float, float, float]) -> float:
    """The share of the machine's CPU time that other processes used between two cpu_clock() readings."""
    wall = end[0] - start[0]
    others = (end[1] - start[1]) - (end[2] - start[2])
    return max(0.0, others / (wall * (os.cpu_count() or 1))) if wall > 0 else 0.0


def measure(predicts: dict[str, Predict], batch: int, cfg: BenchConfig, input_size: tuple[int, int, int]) -> tuple[dict[str, list[float]], float]:
    """Round times (ms) of every engine at ``batch``, more rounds within ``remeasure_s`` while one is noisy, and the
    share of the machine's CPU other processes took meanwhile."""
    x = np.random.default_rng(0).standard_normal((batch, *input_size), dtype=np.float32)
    calls = {name: functools.partial(p, x) for name, p in predicts.items()}
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


BASELINE = {"onnxruntime": "torch", "int8": "onnxruntime", "compile": "torch"}
"""Each speed-up reported: an engine over the one it replaces."""


def _figures(rounds: dict[str, list[float]]) -> list[list[float]]:
    """Every figure reported from these rounds: each engine's times, and each speed-up's per-round ratios."""
    return [*rounds.values(), *(ratios(rounds[base], rounds[e]) for e, base in BASELINE.items() if e in rounds)]


# ---------------------------------------------------------------------------- accuracy and int8


def normalised_batches(data: Dataset, x: torch.Tensor, y: torch.Tensor, batch: int):
    """(float32 NCHW normalised with the dataset's mean and std, labels) batches, in order: zoo.data's loader."""
    loader = DeviceLoader(x, y, batch_size=batch, mean=data.info.mean, std=data.info.std, shuffle=False, drop_last=False)
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


# ---------------------------------------------------------------------------- one model


@dataclass
class Prepared:
    """One model ready to time: its engines, what it is, and the files it came with."""

    name: str
    weights: str | None
    kwargs: dict[str, Any]
    predicts: dict[str, Predict]
    facts: dict[str, Any]
    trained: bool  # weights or a tag: its accuracy is worth measuring


def prepare(name: str, cfg: BenchConfig, workdir: Path, threads: int, weights: str | None, data: Dataset | None) -> Prepared:
    """Export and check ``name``, open its engines (torch, onnxruntime, int8 when quantized)."""
    asked = {"in_chans": cfg.input_size[0], **cfg.model_kwargs, **({"num_classes": cfg.num_classes} if cfg.num_classes else {})}
    # saved weights bring their configuration: only what was asked for is passed, and a conflict is refused
    model = load_model(name, weights=weights, **(asked if weights else {"num_classes": INPUTS[cfg.input][1], **asked}))
    kwargs = dict(model._zoo_kwargs)  # what was built: the weights' configuration, or the tag's, or the arguments
    info = zoo.model_info(model._zoo_arch, input_size=cfg.input_size, **kwargs)
    path = workdir / f"{name}.onnx"
    start = time.perf_counter()
    export_onnx(model, path, input_size=cfg.input_size, opset=cfg.opset)
    facts: dict[str, Any] = {"params": info["params"], "macs": info["macs"], "onnx_bytes": path.stat().st_size,
                             "export_s": time.perf_counter() - start}
    facts["parity_max_abs_diff"] = {str(b): d for b, d in check_parity(model, path, input_size=cfg.input_size).items()}
    predicts = {"torch": torch_predict(model), "onnxruntime": ort_predict(create_session(path, threads, spinning=False))}
    trained = weights is not None or bool(split_model_name(name)[1])  # a tag brings its weights
    if data is not None and (cfg.quantize or trained):
        int8 = quantize_int8(path, workdir / f"{name}.int8.onnx", data, cfg.calibration_images)
        facts["int8_onnx_bytes"] = int8.stat().st_size
        predicts["int8"] = ort_predict(create_session(int8, threads, spinning=False))
    if cfg.compile:
        compiled, facts["compile"] = compile_model(model, cfg.batch_sizes, cfg.input_size, cfg.compile_limit_s)
        if compiled is not None:
            predicts["compile"] = torch_predict(compiled)
    return Prepared(name, weights, kwargs, predicts, facts, trained)


def bench_model(p: Prepared, cfg: BenchConfig, threads: int, data: Dataset | None) -> dict[str, Any]:
    """Latency at every batch size and throughput at the largest, per engine; speed-ups; accuracy when trained."""
    latency: dict[str, dict[str, Any]] = {engine: {} for engine in p.predicts}
    speedups: dict[str, dict[str, Any]] = {engine: {} for engine in p.predicts if engine != "torch"}
    largest = max(cfg.batch_sizes)
    for batch in cfg.batch_sizes:
        rounds, contended = measure(p.predicts, batch, cfg, cfg.input_size)
        for engine, times in rounds.items():
            latency[engine][str(batch)] = _summary(times, contended)
        for engine, base in BASELINE.items():
            if engine in rounds and batch in (1, largest):
                key = "latency_b1" if batch == 1 else "throughput"
                speedups[engine][key] = _summary(ratios(rounds[base], rounds[engine]), contended)
    throughput = {e: _summary([largest / ms * 1e3 for ms in latency[e][str(largest)]["rounds"]],
                              latency[e][str(largest)]["others_cpu_share"]) for e in p.predicts}
    # compiled for the timed batch sizes only; its parity with eager is in facts["compile"]
    accuracy = ({e: top1(fn, data, cfg.eval_images, 100) for e, fn in p.predicts.items() if e != "compile"}
                if p.trained and data else None)
    figures = [*(f for e in latency.values() for f in e.values()), *(f for s in speedups.values() for f in s.values())]
    return {"name": p.name, "threads": threads, "model_kwargs": p.kwargs, "weights": p.weights, **p.facts,
            "latency_ms": latency, "throughput_ips": throughput, "speedup": speedups, "accuracy": accuracy,
            "noisy": any(f["noisy"] for f in figures)}


# ---------------------------------------------------------------------------- the run


def environment(cfg: BenchConfig) -> dict[str, Any]:
    """Versions, CPU, load and frequency settings and the engines' settings: what a reader needs to compare runs."""
    return {
        "load_average_1min": os.getloadavg()[0],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "onnx": onnx.__version__,
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "physical_cores": physical_cores(),
        "cpu_frequency": _cpu_frequency(),
        "ort_inter_op_threads": 1,
        "ort_spinning": False,
        "ort_graph_optimization_level": ort.GraphOptimizationLevel.ORT_ENABLE_ALL.name,
        "ort_execution_mode": ort.ExecutionMode.ORT_SEQUENTIAL.name,
        "ort_provider": "CPUExecutionProvider",
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


def run_bench(names: list[str], cfg: BenchConfig, *, weights: dict[str, str] | None = None,
              data: Dataset | None = None, progress: bool = True) -> dict[str, Any]:
    """Benchmark ``names`` at every thread count (with ``progress``, a bar on a terminal); the whole result document."""
    if cfg.quantize and data is None:
        raise DataError("int8 quantization calibrates on real images: pass data (--data-dir DIR with cifar10.npz / mnist.npz)")
    weights = weights or {}
    previous = torch.get_num_threads()
    env, start, models = environment(cfg), time.perf_counter(), []
    try:
        with tempfile.TemporaryDirectory(prefix="zoo-bench-") as workdir:
            bar = progress_bar(progress, len(cfg.threads) * len(names), "bench", unit="model")
            for threads, name in ((t, n) for t in cfg.threads for n in names):
                if bar is not None:
                    bar.set_postfix_str(f"{name}, {threads} threads")
                torch.set_num_threads(threads)
                prepared = prepare(name, cfg, Path(workdir), threads, weights.get(name), data)
                models.append(bench_model(prepared, cfg, threads, data))
                if bar is not None:
                    bar.update()
            if bar is not None:
                bar.close()
    finally:
        torch.set_num_threads(previous)
    return {
        "schema": SCHEMA,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "duration_s": time.perf_counter() - start,
        "environment": {**env, "load_average_1min_after": os.getloadavg()[0]},
        "settings": {**dataclasses.asdict(cfg), "input_size": list(cfg.input_size)},
        "data": None if data is None else {"source": data.source, "test_images": len(data.y_test),
                                           "sample": data.source.startswith("sample:")},
        "models": models,
    }


# ---------------------------------------------------------------------------- command line


def weights_pair(item: str) -> tuple[str, str]:
    name, sep, source = item.partition("=")
    if not sep or not name or not source:
        raise argparse.ArgumentTypeError(f"takes MODEL=SOURCE, got {item!r}")
    return name, source


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The ``python -m export.bench`` arguments, added to ``parser`` when given (to mount it as ``zoo bench``)."""
    parser = parser or argparse.ArgumentParser(prog="python -m export.bench", description=__doc__,
                                               formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.description = parser.description or __doc__
    defaults = BenchConfig()
    parser.add_argument("patterns", nargs="*", default=None, metavar="PATTERN",
                        help=f"model names, wildcards or arch.tag names (default: {' '.join(PAPER_MODELS)} and the input's tags)")
    parser.add_argument("--input", choices=list(INPUTS), default=defaults.input, help="input size and classes: 3x32x32 / 1x32x32 with 10, or 3x224x224 with 1000")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="folder for results.json/.csv/.md and the charts")
    parser.add_argument("--threads", type=positive(int), nargs="+", default=list(defaults.threads),
                        help="intra-op threads for every engine; several values sweep (default: the physical cores)")
    parser.add_argument("--weights", nargs="+", type=weights_pair, default=[], metavar="MODEL=SOURCE",
                        help="weights per model (a .safetensors file, a checkpoint folder or hf-hub:owner/name): accuracy and int8")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder with cifar10.npz / mnist.npz: accuracy on the full test set (default: zoo's shipped sample)")
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
    if args.input == "imagenet" and (args.data_dir or args.quantize or weights):
        raise DataError("zoo has no ImageNet loader: accuracy and int8 need --input cifar10 or mnist")
    data = None if args.input == "imagenet" else load_dataset(args.input, args.data_dir) if args.data_dir else load_sample(args.input)
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
