"""onnxruntime against torch eager on the CPU: the paper's efficiency comparison.

    python -m export.bench                       # the paper's models at CIFAR-10 input (zoo bench)
    python -m export.bench 'resnet*' --input imagenet --threads 4
    python -m export.bench resnet18 --weights resnet18=./ckpt/resnet18 --data-dir ../shared/data --quantize

For every model: export to ONNX (in a temporary folder, removed afterwards:
the paper's VGG19 is a 530 MB file), check parity, then time torch eager and
onnxruntime in the same run with the same number of threads, at batch 1
(p50/p90 latency) and at larger batches (throughput). With weights and data
it also measures top-1 accuracy of both; ``--quantize`` adds an int8
static-quantized copy (QDQ, calibrated on real training images) with its
accuracy delta and speed-up. Results go to ``--out`` as results.json,
results.csv, results.md and two PNG charts.

Each measurement runs ``warmup`` calls, then repeats until ``budget_s``
seconds have passed and at least ``min_runs`` calls were timed.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import io
import json
import os
import platform
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
from tqdm import tqdm

import zoo
from export.__main__ import add_model_arguments
from zoo.cliutil import format_table, run_command
from export.onnx import INPUT_NAME, check_parity, create_session, export_onnx, load_model
from zoo.arguments import Range, check_arguments
from zoo.checkpoint import atomic_write_bytes, check_writable
from zoo.data import Dataset, DeviceLoader, load_dataset, subset
from zoo.errors import ArgumentError, DataError, ExportError, UnknownModelError
from zoo.plots import png_bytes
from zoo.registry import split_model_name

SCHEMA = "zoo.bench/1"
PAPER_MODELS = ("vgg19", "resnet18", "googlenet*")
"""The paper's three families and its GoogLeNet ablations, in their paper configuration (default stem/head)."""

INPUTS: dict[str, tuple[tuple[int, int, int], int]] = {
    "cifar10": ((3, 32, 32), 10),
    "mnist": ((1, 32, 32), 10),
    "imagenet": ((3, 224, 224), 1000),
}
ENGINES = ("torch", "onnxruntime")


@dataclass
class BenchConfig:
    """What to measure and how long; the defaults keep the paper's 8 models at CIFAR-10 input to minutes on 2 cores."""

    input: str = "cifar10"
    threads: int = field(default_factory=torch.get_num_threads)
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    warmup: int = 2
    budget_s: float = 0.5
    min_runs: int = 5
    eval_images: int = 1000
    calibration_images: int = 256
    quantize: bool = False
    opset: int | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    num_classes: int | None = None

    def __post_init__(self) -> None:
        ranges = {"threads": Range(1), "warmup": Range(0), "budget_s": Range(0), "min_runs": Range(1),
                  "eval_images": Range(1), "calibration_images": Range(1), "num_classes": Range(1)}
        check_arguments("zoo bench", {k: v for k, v in dataclasses.asdict(self).items() if k != "batch_sizes"},
                        BenchConfig, ranges=ranges)
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ArgumentError(f"zoo bench: batch sizes must be >= 1, got {list(self.batch_sizes)}")
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


def measure(call: Callable[[], Any], *, warmup: int, budget_s: float, min_runs: int) -> dict[str, float]:
    """p50 and p90 wall time of ``call()`` in milliseconds, and how many runs were timed."""
    for _ in range(warmup):
        call()
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while time.perf_counter() < deadline or len(times) < min_runs:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    p50, p90 = np.percentile(times, [50, 90]) * 1e3
    return {"p50_ms": float(p50), "p90_ms": float(p90), "runs": len(times)}


def evaluate(predict: Predict, cfg: BenchConfig, data: Dataset | None) -> dict[str, Any]:
    """One engine: latency at every batch size, throughput at the largest, and top-1 on ``data`` when given."""
    rng = np.random.default_rng(0)
    latency = {}
    for batch in cfg.batch_sizes:
        x = rng.standard_normal((batch, *cfg.input_size), dtype=np.float32)
        latency[str(batch)] = measure(functools.partial(predict, x), warmup=cfg.warmup, budget_s=cfg.budget_s, min_runs=cfg.min_runs)
    largest = max(cfg.batch_sizes)
    result: dict[str, Any] = {"latency_ms": latency, "throughput_ips": largest / latency[str(largest)]["p50_ms"] * 1e3}
    if data is not None:
        result["accuracy"] = top1(predict, data, cfg.eval_images, largest)
    return result


def speedups(slow: dict[str, Any], fast: dict[str, Any]) -> dict[str, float]:
    """How many times ``fast`` beats ``slow``: p50 latency at batch 1, and throughput at the largest batch."""
    return {
        "latency_b1": slow["latency_ms"]["1"]["p50_ms"] / fast["latency_ms"]["1"]["p50_ms"],
        "throughput": fast["throughput_ips"] / slow["throughput_ips"],
    }


# ---------------------------------------------------------------------------- accuracy and int8


def normalised_batches(data: Dataset, x: torch.Tensor, y: torch.Tensor, batch: int):
    """(float32 NCHW normalised with the dataset's mean and std, labels) batches, in order: zoo.data's loader."""
    loader = DeviceLoader(x, y, batch_size=batch, mean=data.info.mean, std=data.info.std, shuffle=False, drop_last=False)
    return ((xb.numpy(), yb.numpy()) for xb, yb in loader.batches(0))


def top1(predict: Predict, data: Dataset, n: int, batch: int) -> float:
    """Top-1 accuracy of ``predict`` on a seeded ``n`` of the test set."""
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

    Activations uint8, weights int8 per channel, reduced range: onnxruntime's
    advice for x86 CPUs without VNNI, which is what the 2-core machines have.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_static  # lazy: only --quantize needs it

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


def bench_model(name: str, cfg: BenchConfig, workdir: Path, *, weights: str | None = None, data: Dataset | None = None) -> dict[str, Any]:
    """Export, check and time one model; accuracy when ``weights`` and ``data``; int8 when ``cfg.quantize``."""
    kwargs = {"num_classes": cfg.num_classes or INPUTS[cfg.input][1], "in_chans": cfg.input_size[0], **cfg.model_kwargs}
    model = load_model(name, weights=weights, **kwargs)
    info = zoo.model_info(name, input_size=cfg.input_size, **kwargs)
    path = workdir / f"{name}.onnx"
    start = time.perf_counter()
    export_onnx(model, path, input_size=cfg.input_size, opset=cfg.opset)
    export_s = time.perf_counter() - start
    parity = check_parity(model, path, input_size=cfg.input_size)
    # One engine at a time, each onnxruntime session released before the next engine runs: its worker
    # threads keep spinning after a run, and on 2 cores that slows torch eager 2-3x (measured).
    eval_data = data if weights is not None or split_model_name(name)[1] else None  # a tag brings its weights
    results = {"torch": evaluate(torch_predict(model), cfg, eval_data)}
    results["onnxruntime"] = evaluate(ort_predict(create_session(path, cfg.threads)), cfg, eval_data)
    int8 = None
    if cfg.quantize:
        int8_path = quantize_int8(path, workdir / f"{name}.int8.onnx", data, cfg.calibration_images)
        int8 = evaluate(ort_predict(create_session(int8_path, cfg.threads)), cfg, eval_data)
        int8["onnx_bytes"] = int8_path.stat().st_size
        int8["speedup_vs_fp32"] = speedups(results["onnxruntime"], int8)
        if "accuracy" in int8:
            int8["accuracy_delta"] = int8["accuracy"] - results["onnxruntime"]["accuracy"]
        int8_path.unlink()
    result = {
        "name": name,
        "model_kwargs": kwargs,
        "weights": weights,
        "params": info["params"],
        "macs": info["macs"],
        "onnx_bytes": path.stat().st_size,
        "export_s": export_s,
        "parity_max_abs_diff": {str(b): d for b, d in parity.items()},
        **results,
        "ort_speedup": speedups(results["torch"], results["onnxruntime"]),
        "int8": int8,
    }
    path.unlink()
    return result


# ---------------------------------------------------------------------------- the run


def environment(cfg: BenchConfig) -> dict[str, Any]:
    """Versions, CPU and the engines' settings: what a reader needs to compare two result files.

    The 1-minute load average shows whether other work shared the CPU (over
    ``cpu_count``, torch's OpenMP threads wait on descheduled peers and eager
    latencies can grow a hundredfold).
    """
    return {
        "load_average_1min": os.getloadavg()[0],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "onnx": onnx.__version__,
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": cfg.threads,
        "ort_intra_op_threads": cfg.threads,
        "ort_inter_op_threads": 1,
        "ort_graph_optimization_level": ort.GraphOptimizationLevel.ORT_ENABLE_ALL.name,
        "ort_execution_mode": ort.ExecutionMode.ORT_SEQUENTIAL.name,
        "ort_provider": "CPUExecutionProvider",
    }


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def run_bench(
    names: list[str], cfg: BenchConfig, *, weights: dict[str, str] | None = None, data: Dataset | None = None
) -> dict[str, Any]:
    """Benchmark ``names`` one after the other (a tqdm bar on stderr); the whole result document."""
    if cfg.quantize and data is None:
        raise DataError("int8 quantization calibrates on real images: pass data (--data-dir DIR with cifar10.npz / mnist.npz)")
    weights = weights or {}
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    env = environment(cfg)
    start = time.perf_counter()
    models = []
    try:
        with tempfile.TemporaryDirectory(prefix="zoo-bench-") as workdir:
            bar = tqdm(names, desc="bench", unit="model", file=sys.stderr)
            for name in bar:
                bar.set_postfix_str(name)
                models.append(bench_model(name, cfg, Path(workdir), weights=weights.get(name), data=data))
    finally:
        torch.set_num_threads(previous_threads)
    return {
        "schema": SCHEMA,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "duration_s": time.perf_counter() - start,
        "environment": {**env, "load_average_1min_after": os.getloadavg()[0]},
        "settings": {**dataclasses.asdict(cfg), "input_size": list(cfg.input_size)},
        "models": models,
    }


# ---------------------------------------------------------------------------- outputs


def table_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per model: the CSV's rows, and the markdown table's after formatting."""
    largest = str(max(results["settings"]["batch_sizes"]))
    rows = []
    for m in results["models"]:
        row = {
            "model": m["name"],
            "params_M": m["params"] / 1e6,
            "GMACs": m["macs"] / 1e9,
            "onnx_MB": m["onnx_bytes"] / 2**20,
            "torch_p50_ms": m["torch"]["latency_ms"]["1"]["p50_ms"],
            "torch_p90_ms": m["torch"]["latency_ms"]["1"]["p90_ms"],
            "ort_p50_ms": m["onnxruntime"]["latency_ms"]["1"]["p50_ms"],
            "ort_p90_ms": m["onnxruntime"]["latency_ms"]["1"]["p90_ms"],
            "ort_speedup_b1": m["ort_speedup"]["latency_b1"],
            f"torch_ips_b{largest}": m["torch"]["throughput_ips"],
            f"ort_ips_b{largest}": m["onnxruntime"]["throughput_ips"],
            "ort_speedup_throughput": m["ort_speedup"]["throughput"],
            "torch_top1": m["torch"].get("accuracy"),
            "ort_top1": m["onnxruntime"].get("accuracy"),
        }
        if m["int8"] is not None:
            row |= {
                "int8_p50_ms": m["int8"]["latency_ms"]["1"]["p50_ms"],
                "int8_speedup_b1": m["int8"]["speedup_vs_fp32"]["latency_b1"],
                "int8_speedup_throughput": m["int8"]["speedup_vs_fp32"]["throughput"],
                "int8_top1_delta": m["int8"].get("accuracy_delta"),
            }
        rows.append(row)
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def write_markdown(results: dict[str, Any], path: Path) -> Path:

    rows = table_rows(results)
    columns = [c for c in rows[0] if any(r.get(c) is not None for r in rows)] if rows else []
    env, settings = results["environment"], results["settings"]
    header = (
        f"Input {'x'.join(map(str, settings['input_size']))} ({settings['input']}), {env['torch_threads']} threads for "
        f"torch and onnxruntime ({env['ort_graph_optimization_level']}), {env['cpu']}; latency at batch 1, throughput "
        f"at batch {max(settings['batch_sizes'])}; speed-up = onnxruntime over torch eager (>1: onnxruntime faster)."
    )
    table = format_table([{c: _fmt(r.get(c)) for c in columns} for r in rows], columns)
    atomic_write_bytes(path, f"{header}\n\n{table}\n".encode())
    return path


def write_csv(results: dict[str, Any], path: Path) -> Path:
    rows = table_rows(results)
    columns = list(dict.fromkeys(c for r in rows for c in r))
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())
    return path


def plot_charts(results: dict[str, Any], out: Path) -> list[Path]:
    """Accuracy (MACs without it) against batch-1 latency, bubbles sized by params; latency against batch size."""
    import matplotlib.ticker  # lazy: matplotlib costs start-up time; only the charts need it
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    models = results["models"]
    has_accuracy = bool(models) and all(m["onnxruntime"].get("accuracy") is not None for m in models)
    fig = Figure(figsize=(8, 5.5))
    ax = fig.subplots()
    for engine, marker in zip(ENGINES, ("o", "s")):
        xs = [m[engine]["latency_ms"]["1"]["p50_ms"] for m in models]
        ys = [m[engine]["accuracy"] * 100 if has_accuracy else m["macs"] / 1e9 for m in models]
        ax.scatter(xs, ys, s=[20 + m["params"] / 2e5 for m in models], alpha=0.5, marker=marker)
        ax.scatter([], [], s=40, alpha=0.5, marker=marker, color=ax.collections[-1].get_facecolor()[0], label=engine)
        if engine == "onnxruntime":
            for m, x, y in zip(models, xs, ys):
                ax.annotate(m["name"], (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xscale("log")
    if not has_accuracy:
        ax.set_yscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(plain)
    ax.set_xlabel("latency at batch 1, p50 (ms)")
    ax.set_ylabel("top-1 accuracy (%)" if has_accuracy else "GMACs per image")
    ax.set_title(f"{'accuracy' if has_accuracy else 'MACs'} vs latency (bubble area ~ parameters)")
    ax.legend()
    fig.tight_layout()
    scatter = out / ("accuracy_vs_latency.png" if has_accuracy else "macs_vs_latency.png")
    atomic_write_bytes(scatter, png_bytes(fig, dpi=120))

    fig = Figure(figsize=(8, 5.5))
    ax = fig.subplots()
    for i, m in enumerate(models):
        for engine, style in zip(ENGINES, ("--", "-")):
            lat = m[engine]["latency_ms"]
            batches = sorted(lat, key=int)
            ax.plot([int(b) for b in batches], [lat[b]["p50_ms"] for b in batches], style, marker="o", color=f"C{i % 10}",
                    label=f"{m['name']} ({engine})")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("latency p50 (ms)")
    ax.set_title("latency vs batch size (solid: onnxruntime, dashed: torch eager)")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    lines = out / "latency_vs_batch.png"
    atomic_write_bytes(lines, png_bytes(fig, dpi=120))
    return [scatter, lines]


def write_results(results: dict[str, Any], out: Path) -> list[Path]:
    """results.json, results.csv, results.md and the charts in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "results.json"
    atomic_write_bytes(json_path, (json.dumps(results, indent=2) + "\n").encode())
    return [json_path, write_csv(results, out / "results.csv"), write_markdown(results, out / "results.md"), *plot_charts(results, out)]


# ---------------------------------------------------------------------------- command line


def weights_pair(item: str) -> tuple[str, str]:
    name, sep, source = item.partition("=")
    if not sep or not name or not source:
        raise argparse.ArgumentTypeError(f"takes MODEL=SOURCE pairs, e.g. resnet18=./ckpt/resnet18, got {item!r}")
    return name, source


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The ``python -m export.bench`` arguments, added to ``parser`` when given (to mount it as ``zoo bench``)."""
    parser = parser or argparse.ArgumentParser(prog="python -m export.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = BenchConfig()
    parser.add_argument("patterns", nargs="*", default=list(PAPER_MODELS), metavar="PATTERN",
                        help=f"model names or wildcards (default: the paper's, {' '.join(PAPER_MODELS)})")
    parser.add_argument("--input", choices=list(INPUTS), default=defaults.input, help="input size and classes: 3x32x32 / 1x32x32 with 10, or 3x224x224 with 1000")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="folder for results.json/.csv/.md and the charts")
    parser.add_argument("--threads", type=int, default=defaults.threads, help="threads for torch and onnxruntime alike (default: torch's)")
    parser.add_argument("--weights", nargs="+", type=weights_pair, default=[], metavar="MODEL=SOURCE",
                        help="weights per model (a .safetensors file, a checkpoint folder or hf-hub:owner/name); with data, accuracy is measured")
    parser.add_argument("--data-dir", type=Path, default=None, help="folder with cifar10.npz / mnist.npz: accuracy and int8 calibration")
    parser.add_argument("--quantize", action="store_true", help="also int8 static quantization (QDQ), calibrated on real images; needs data")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(defaults.batch_sizes), help="latency at each; throughput at the largest (1 is always measured)")
    parser.add_argument("--budget", type=float, default=defaults.budget_s, help="seconds per measurement, after warmup (default: %(default)s)")
    parser.add_argument("--eval-images", type=int, default=defaults.eval_images, help="test images for accuracy (default: %(default)s)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: torch's)")
    add_model_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    check_writable(args.out / "results.json")
    tags = [p for p in args.patterns if "." in p]  # arch.tag patterns: pretrained tags, with their weights
    names = zoo.list_models([p for p in args.patterns if p not in tags]) + zoo.list_models(tags, pretrained=True) if tags else zoo.list_models(args.patterns)
    wrong_input = [n for n in names if "." in n and zoo.get_pretrained_tag(n).dataset != args.input]
    if wrong_input:
        raise UnknownModelError(f"{', '.join(wrong_input)} take {zoo.get_pretrained_tag(wrong_input[0]).dataset} input; pass --input {zoo.get_pretrained_tag(wrong_input[0]).dataset}")
    if not names:
        raise UnknownModelError(f"no model matches {' '.join(args.patterns)}; zoo list shows them all")
    weights = dict(args.weights)
    if set(weights) - set(names):
        raise UnknownModelError(f"--weights for {', '.join(sorted(set(weights) - set(names)))}, not among the models benchmarked: {', '.join(names)}")
    cfg = BenchConfig(
        input=args.input, threads=args.threads, batch_sizes=tuple(sorted({1, *args.batch_sizes})), budget_s=args.budget,
        eval_images=args.eval_images, quantize=args.quantize, opset=args.opset,
        model_kwargs=dict(args.model_arg), num_classes=args.num_classes,
    )
    data = None
    if args.data_dir or args.quantize:
        if args.input == "imagenet":
            raise DataError("zoo has no ImageNet loader: accuracy and --quantize need --input cifar10 or mnist")
        data = load_dataset(args.input, args.data_dir)
    results = run_bench(names, cfg, weights=weights, data=data)
    paths = write_results(results, args.out)
    print((args.out / "results.md").read_text())
    print(f"{len(names)} models in {results['duration_s']:.0f} s; wrote {', '.join(str(p) for p in paths)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
