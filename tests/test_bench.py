"""The benchmark: its statistics on known data, its interleaving, its engines, its result schema and files, on tiny
runs. Timings are never asserted, nor is the machine's load: the statistics and the bookkeeping around them are.

Each run exports vgg11 (a few seconds on 2 cores), so runs are shared by module-scoped fixtures where their
settings allow; torch.compile, the slowest engine, compiles the smallest model at one batch size, once."""
from __future__ import annotations

import copy
import csv
import dataclasses
import functools
import itertools
import json
import os
import random
import shutil
import signal
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch._inductor.config
from matplotlib.collections import PathCollection

import zoo
from zoo.core.errors import ArgumentError, CheckpointError, DataError, ExportError
from zoo.core.machine import ISA_FEATURES, has_bf16, has_vnni, isa_features
from zoo.data.loading import load_sample, synthetic
from zoo.export import bench, timing
from zoo.export.bench import (
    DEFAULT_ENGINES,
    SCHEMA,
    BenchConfig,
    Engine,
    Subject,
    _summary,
    build_parser,
    int8_settings,
    main,
    measure,
    model_names,
    prepare,
    quantize_int8,
    run_bench,
    select_engines,
    torch_predict,
)
from zoo.export.cache import cached, is_cached
from zoo.export.inductor import compile_model
from zoo.export.onnx import INPUT_NAME
from zoo.export.peak import peak_gmacs
from zoo.export.report import NOISY_LEGEND, batch_chart, compare, cost_chart, peak_chart, table_rows, write_results
from zoo.export.stats import bootstrap_interval, is_noisy, ratios, summary
from zoo.export.timing import Worker, busy_ticks, cpu_clock, interleaved, others_share, time_round

REPO = Path(__file__).resolve().parents[1]
TINY = ["vgg11", "--model-arg", "head=cifar", "--input", "mnist", "--batch-sizes", "2", "--rounds", "2", "--threads", "1"]
PNG = b"\x89PNG\r\n\x1a\n"
FAST = dict(rounds=2, warmup=0, round_s=0.0, remeasure_s=0.0)
VGG11 = {"num_classes": 10, "in_chans": 1, "head": "cifar"}
AVX2 = isa_features(["fpu", "sse4_2", "avx", "avx2", "fma"])
"""A CPU like the 2-core machines of some days: AVX2 only."""
SAPPHIRE_RAPIDS = isa_features(["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"])
"""A CPU with every fast path: VNNI, AVX512_BF16 and AMX."""


@pytest.fixture(scope="module", autouse=True)
def onnx_cache(module_tmp) -> Path:
    """The ONNX cache of this module's runs: a fresh folder, never the user's."""
    folder = module_tmp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZOO_CACHE_DIR", str(folder))
        yield folder


# ---------------------------------------------------------------------------- statistics


def test_bootstrap_interval_holds_the_median_and_shrinks_with_agreement():
    tight = [10.0, 10.1, 9.9, 10.05, 9.95, 10.0, 10.02]
    low, high = bootstrap_interval(tight)
    assert 9.9 <= low <= 10.0 <= high <= 10.1
    spread = [5.0, 15.0, 8.0, 12.0, 10.0, 6.0, 14.0]
    s_low, s_high = bootstrap_interval(spread)
    assert s_high - s_low > 3 * (high - low)
    assert bootstrap_interval([4.0]) == (4.0, 4.0)
    rounds = [5 + 10 * (i * 0.618 % 1) for i in range(25)]  # 25 distinct values between 5 and 15
    first = bootstrap_interval(rounds)
    random.seed(1), np.random.seed(1), torch.manual_seed(1)  # the global generators moved: the interval is its own seed's
    assert bootstrap_interval(rounds) == first
    assert len({bootstrap_interval(rounds, seed=k) for k in range(10)}) > 1  # negative control: the seed matters


def test_noisy_flag_is_a_plus_minus_ten_percent_interval():
    assert not is_noisy(10.0, (9.1, 10.9))
    assert is_noisy(10.0, (8.9, 10.5)) and is_noisy(10.0, (9.5, 11.2))
    assert summary([10.0, 10.1, 9.9, 10.0, 10.05])["noisy"] is False
    assert summary([10.0, 20.0, 5.0, 10.0, 30.0])["noisy"] is True
    assert summary([1.0, 2.0, 3.0])["rounds"] == [1.0, 2.0, 3.0]  # every round kept


def test_speedup_is_the_median_of_per_round_ratios():
    torch_ms, ort_ms = [10.0, 20.0, 12.0], [1.0, 2.0, 1.5]  # round 2 ran under load: both slowed
    assert ratios(torch_ms, ort_ms) == [10.0, 10.0, 8.0]
    assert summary(ratios(torch_ms, ort_ms))["median"] == 10.0
    with pytest.raises(ValueError, match="pair the rounds"):
        ratios([1.0], [1.0, 2.0])


def test_rounds_interleave_and_alternate_their_order():
    calls: list[str] = []
    engines = {name: functools.partial(time_round, lambda name=name: calls.append(name)) for name in ("a", "b")}
    rounds = interleaved(engines, rounds=4, warmup=0, min_s=0.0)
    assert [len(r) for r in rounds.values()] == [4, 4]
    per_round = [calls[i:i + 3] for i in range(0, len(calls), 3)]  # each timed round runs 3 calls
    firsts = [chunk[0] for chunk in per_round]
    assert firsts == ["a", "b", "b", "a", "a", "b", "b", "a"]  # A B, B A, A B, B A


def test_a_round_is_three_calls_or_more_unless_one_call_fills_it(monkeypatch):
    """On a virtual clock that each call moves on by its duration, so the machine's load cannot change a round."""
    clock = {"now": 0.0}
    calls: list[float] = []

    def taking(seconds: float) -> None:
        calls.append(seconds)
        clock["now"] += seconds

    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=lambda: clock["now"]))
    short = 2.0**-10  # about 1 ms, exact in binary: 20 of them sum to exactly 20 * short
    assert time_round(functools.partial(taking, short), warmup=1, min_s=20 * short) == short * 1e3
    assert len(calls) == 1 + 20  # short calls: warm-up, then at least 3 and min_s of them
    calls.clear()
    assert time_round(functools.partial(taking, 0.03), warmup=1, min_s=0.02) == pytest.approx(30.0)
    assert len(calls) == 1 + 1  # a call as long as the round: warm-up, then that one call
    calls.clear()
    time_round(functools.partial(taking, 0.03), warmup=0, min_s=0.0)
    assert len(calls) == 3  # negative control: no minimum time, so no call fills a round


# ---------------------------------------------------------------------------- the machine's load


def test_busy_cpu_time_leaves_out_idle_and_iowait():
    # /proc/stat's cpu line: user nice system idle iowait irq softirq steal guest guest_nice, in clock ticks
    assert busy_ticks("cpu  100 5 20 1000 50 3 2 0 0 0") == 130
    assert busy_ticks("cpu  100 5 20 1000") == 125  # old kernels: no iowait field
    start, end = cpu_clock(), cpu_clock()
    assert all(b >= a for a, b in zip(start, end))  # the real clock only moves forward, whatever the load


@pytest.mark.parametrize("others, noisy", [(0.0, False), (0.05, False), (0.5, True)])
def test_other_processes_taking_the_cpu_are_detected_and_flag_figures_noisy(others, noisy, monkeypatch):
    """A fake CPU clock: over 2 s of wall time this process used 1 s of CPU, and the machine was busy for that
    and ``others`` of all its cores' time; measure reports that share, and figures timed meanwhile are noisy
    beyond CONTENDED."""
    cpus = os.cpu_count() or 1
    readings = iter([(100.0, 50.0, 10.0), (102.0, 50.0 + 1.0 + others * 2.0 * cpus, 11.0)])
    monkeypatch.setattr(bench, "cpu_clock", lambda workers: next(readings))
    noop = Engine("noop", "noop", lambda s, threads: (None, {}))
    cfg = BenchConfig(input="mnist", batch_sizes=(1,), **FAST)
    rounds, share = measure({noop: lambda x: x}, 1, cfg)
    assert len(rounds["noop"]) == cfg.rounds and share == pytest.approx(others)
    tight = [10.0, 10.1, 9.9, 10.0, 10.05]
    assert _summary(tight, share)["noisy"] is noisy and _summary(tight, share)["others_cpu_share"] == round(others, 3)
    assert others_share((0.0, 5.0, 1.0), (1.0, 5.0, 2.0)) == 0.0  # this process alone: nobody else, never below 0
    assert others_share((1.0, 5.0, 1.0), (1.0, 9.0, 1.0)) == 0.0  # no wall time passed: no share


# ---------------------------------------------------------------------------- the run and its files


@dataclasses.dataclass
class NoRemeasuring(BenchConfig):
    """The command line's configuration without re-timing noisy figures (10 s each on a loaded machine)."""

    remeasure_s: float = 0.0


@pytest.mark.slow
def test_bench_writes_the_documented_schema(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "BenchConfig", NoRemeasuring)
    out = tmp_path / "bench"
    assert main([*TINY, "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["schema"] == SCHEMA and results["duration_s"] > 0
    env = results["environment"]
    assert env["ort_spinning"] is False and env["ort_provider"] == "CPUExecutionProvider" and "cpu_frequency" in env
    assert {"load_average_1min", "load_average_1min_after", "physical_cores", "torch", "onnxruntime"} <= set(env)
    assert "inductor" not in env  # an engine's environment only when it ran
    assert results["settings"]["input_size"] == [1, 32, 32] and results["settings"]["batch_sizes"] == [1, 2]
    assert results["data"]["sample"] is True  # no --data-dir: zoo's shipped sample
    assert env["cpu_features"] == isa_features() and set(env["cpu_features"]) == set(ISA_FEATURES)
    assert results["engines"] == {
        "torch": {"label": "eager", "baseline": "torch_cl", "precision": "fp32", "device": "cpu", "marker": "o", "line": "--"},
        "torch_cl": {"label": "torch-cl", "baseline": None, "precision": "fp32", "device": "cpu", "marker": "v", "line": "-."},
        "onnxruntime": {"label": "ort", "baseline": "torch_cl", "precision": "fp32", "device": "cpu", "marker": "s", "line": "-"}}
    assert set(results["peak_gmacs"]) == {"1"} and {"fp32", "int8"} <= set(results["peak_gmacs"]["1"])
    (m,) = results["models"]
    assert m["name"] == "vgg11" and m["model_kwargs"] == VGG11
    info = zoo.model_info("vgg11", input_size=(1, 32, 32), **VGG11)
    assert (m["params"], m["macs"]) == (info["params"], info["macs"])
    assert set(m["parity_max_abs_diff"]) == {"1", "4"} and max(m["parity_max_abs_diff"].values()) < 1e-3
    assert set(m["latency_ms"]) == set(m["build"]) == {"torch", "torch_cl", "onnxruntime"}  # untrained: no int8, no accuracy
    assert all(b["status"] == "ok" and b["build_s"] >= 0 for b in m["build"].values())
    for engine in m["latency_ms"].values():
        for fig in engine.values():
            assert fig["ci95"][0] <= fig["median"] <= fig["ci95"][1] and len(fig["rounds"]) >= 2
    for batch, fig in m["latency_ms"]["onnxruntime"].items():  # the rate of the median call, a share of the fp32 peak
        assert fig["gmacs"] == pytest.approx(m["macs"] * int(batch) / fig["median"] / 1e6, rel=0.01)
        assert fig["of_peak"] == pytest.approx(fig["gmacs"] / results["peak_gmacs"]["1"]["fp32"], rel=0.01)
    assert set(m["speedup"]) == {"torch", "onnxruntime"} and set(m["speedup"]["onnxruntime"]) == {"latency_b1", "throughput"}
    assert set(m["latency_ms"]["torch"]) == {"1"} and set(m["speedup"]["torch"]) == {"latency_b1"}  # plain eager: batch 1
    assert m["accuracy"] is None
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert {(r["engine"], r["batch"]) for r in rows} == {("torch", "1")} | {(e, b) for e in ("torch_cl", "onnxruntime") for b in "12"}
    assert {(r["engine"], r["device"], r["baseline"], bool(r["speedup"])) for r in rows} == {
        ("torch", "cpu", "torch_cl", True), ("torch_cl", "cpu", "", False), ("onnxruntime", "cpu", "torch_cl", True)}
    assert all(float(r["gmacs"]) > 0 and 0 < float(r["of_peak"]) for r in rows)
    table = (out / "results.md").read_text()
    assert "| vgg11" in table and "ort/torch-cl b1" in table and "eager/torch-cl b1" in table
    assert "shipped sample" not in table and table in capsys.readouterr().out
    features = " ".join(k if v else f"-{k}" for k, v in isa_features().items())
    assert f"({features})" in table and "GEMM peak, GMAC/s" in table
    for chart in ("macs_vs_latency.png", "latency_vs_batch.png", "gmacs_vs_peak.png"):
        assert (out / chart).read_bytes().startswith(PNG)


@pytest.fixture(scope="module")
def vgg11_weights(module_tmp) -> Path:
    """A randomly initialised vgg11 saved as zoo saves trained weights, MNIST-sized with the CIFAR head."""
    torch.manual_seed(0)
    return zoo.save_pretrained(zoo.create_model("vgg11", **VGG11), module_tmp("weights") / "vgg11")


@pytest.mark.slow
def test_trained_models_get_accuracy_for_every_engine_and_an_int8_copy(vgg11_weights, tmp_path):
    cfg = BenchConfig(input="mnist", batch_sizes=(1, 4), eval_images=64, calibration_images=32, threads=(1,), **FAST)
    results = run_bench(["vgg11"], cfg, weights={"vgg11": str(vgg11_weights)}, data=synthetic("mnist", 64, 64))
    (m,) = results["models"]
    assert m["model_kwargs"] == VGG11  # the weights' own configuration, head included, though none was asked for
    assert set(m["latency_ms"]) == {"torch", "torch_cl", "onnxruntime", "int8"} and m["threads"] == 1
    acc = m["accuracy"]
    assert set(acc) == {"torch", "torch_cl", "onnxruntime", "int8"}
    assert abs(acc["torch"] - acc["onnxruntime"]) <= 1 / 64 and abs(acc["torch"] - acc["torch_cl"]) <= 1 / 64
    assert m["build"]["int8"]["reduce_range"] is not has_vnni(isa_features())  # this CPU's setting
    assert 0 < m["build"]["int8"]["onnx_bytes"] < m["onnx_bytes"] / 2  # int8 weights
    assert set(m["speedup"]["int8"]) == {"latency_b1", "throughput"}
    paths = write_results(results, tmp_path / "out")
    assert (tmp_path / "out" / "accuracy_vs_latency.png") in paths
    table = (tmp_path / "out" / "results.md").read_text()
    assert "int8/ort b1" in table and "top-1 % eager / torch-cl / ort / int8" in table


def test_a_conflicting_request_for_saved_weights_is_refused(vgg11_weights):
    for cfg, message in [(BenchConfig(input="mnist", num_classes=5, **FAST), "saved with num_classes=10"),
                         (BenchConfig(input="cifar10", **FAST), "saved with in_chans=1")]:
        with pytest.raises(CheckpointError, match=message):
            run_bench(["vgg11"], cfg, weights={"vgg11": str(vgg11_weights)})


def _channels_last(s: Subject, threads: int):
    """The toy engine's build: eager torch on channels-last weights, its calls and synchronizations logged."""
    predict = torch_predict(copy.deepcopy(s.model).to(memory_format=torch.channels_last))
    return lambda x: (EVENTS.append("call"), predict(x))[1], {}


EVENTS: list[str] = []
TOY = Engine("channels_last", "cl", _channels_last, baseline="onnxruntime", synchronize=lambda: EVENTS.append("sync"),
             marker="P", line=":")


@pytest.fixture(scope="module")
def sweep() -> dict:
    """One run for three tests: vgg11 at 1 and 2 threads, a toy engine registered (one record, no other edit), and
    torch.compile asked for on a machine without a C++ compiler."""
    EVENTS.clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bench, "ENGINES", (*bench.ENGINES, TOY))
        cfg = BenchConfig(input="mnist", batch_sizes=(1, 2), threads=(1, 2), model_kwargs={"head": "cifar"},
                          engines=("torch", "onnxruntime", "compile", "channels_last"), **FAST)
        with torch._inductor.config.patch({"cpp.cxx": ("/nonexistent/g++",)}):
            return run_bench(["vgg11"], cfg)


@pytest.mark.slow
def test_a_thread_sweep_measures_every_model_at_every_count_from_one_export(sweep):
    assert [(m["name"], m["threads"]) for m in sweep["models"]] == [("vgg11", 1), ("vgg11", 2)]
    first, second = sweep["models"]
    assert first["export_s"] == second["export_s"] and first["parity_max_abs_diff"] == second["parity_max_abs_diff"]


@pytest.mark.slow
def test_an_engine_is_one_record(sweep, tmp_path):
    """Registered, the toy engine is built, timed with its device synchronized after every call, compared with its
    baseline, and reported in results.json, the table, the CSV and the charts' legends."""
    assert EVENTS and EVENTS == ["call", "sync"] * (len(EVENTS) // 2)
    for m in sweep["models"]:
        assert m["build"]["channels_last"]["status"] == "ok" and set(m["latency_ms"]["channels_last"]) == {"1", "2"}
        assert set(m["speedup"]["channels_last"]) == {"latency_b1", "throughput"}
    write_results(sweep, tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["engines"]["channels_last"] == {"label": "cl", "baseline": "onnxruntime", "precision": "fp32", "device": "cpu",
                                                 "marker": "P", "line": ":"}
    table = (tmp_path / "results.md").read_text()
    assert all(f"| {column} |" in table for column in ("b1 ms cl", "img/s b2 cl", "cl/ort b1", "cl/ort b2"))
    toy_rows = [r for r in csv.DictReader((tmp_path / "results.csv").open()) if r["engine"] == "channels_last"]
    assert len(toy_rows) == 4 and all(r["baseline"] == "onnxruntime" and float(r["speedup"]) > 0 for r in toy_rows)
    for chart in (batch_chart(sweep), cost_chart(sweep, accuracy=False)):
        assert "channels_last" in [t.get_text() for t in chart.axes[0].get_legend().get_texts()]


@pytest.mark.slow
def test_a_model_that_does_not_compile_says_why_and_keeps_its_other_engines(sweep, tmp_path):
    for m in sweep["models"]:
        assert m["build"]["compile"]["status"].startswith("failed: InductorError")
        assert set(m["latency_ms"]) == {"torch", "onnxruntime", "channels_last"} and "compile" not in m["speedup"]
    assert "torch_cl" not in sweep["engines"]  # not selected: not built, and torch has no baseline to compare with
    write_results(sweep, tmp_path)
    assert "compile: failed: InductorError" in (tmp_path / "results.md").read_text()


def test_builds_worth_a_word_are_in_the_table():
    fig = {"median": 1.0, "ci95": [1.0, 1.0], "noisy": False, "rounds": [1.0, 1.0]}
    engines = {e: {"label": e[:3], "baseline": None, "device": "cpu", "marker": "o", "line": "-"} for e in ("torch", "int8", "compile")}
    builds = {"torch": {"status": "ok", "build_s": 0.01}, "int8": {"status": "failed: a|b", "build_s": 0.2},
              "compile": {"status": "ok", "build_s": 57.6}}
    model = {"name": "m", "threads": 1, "params": 1e6, "macs": 1e6, "noisy": False, "accuracy": None, "build": builds,
             "latency_ms": {"torch": {"1": fig}}, "throughput_ips": {"torch": fig}, "speedup": {}}
    (row,) = table_rows({"engines": engines, "settings": {"batch_sizes": [1]}, "models": [model]})
    assert row["builds"] == "int: failed: a\\|b; com 58 s"  # the quick torch build says nothing


CXX = pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")), reason="torch.compile on the CPU needs a C++ compiler")


@pytest.mark.slow
@CXX
def test_torch_compile_is_a_third_engine_with_its_compile_time_apart(tmp_path):
    cfg = BenchConfig(input="mnist", batch_sizes=(1,), threads=(1,), model_kwargs={"head": "cifar"},
                      engines=("torch_cl", "onnxruntime", "compile"), **FAST)
    results = run_bench(["vgg11"], cfg)
    (m,) = results["models"]
    built = m["build"]["compile"]
    assert built["status"] == "ok" and built["compile_s"] > 0 and built["parity_max_rel_diff"] < 1e-3
    assert set(m["latency_ms"]) == {"torch_cl", "onnxruntime", "compile"} and set(m["speedup"]["compile"]) == {"latency_b1"}
    assert results["environment"]["inductor"] == {"force_disable_caches": True, "compile_threads": 1}
    write_results(results, tmp_path)
    table = (tmp_path / "results.md").read_text()
    assert "compile/torch-cl b1" in table and "b1 ms compile" in table and "| builds |" in table


@pytest.mark.slow  # the first C++ build in a process takes 10-20 s on 2 cores
@CXX
def test_compile_past_its_time_limit_is_abandoned_and_the_next_compiles():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 30 * 30, 3))
    handler, threads = signal.getsignal(signal.SIGALRM), torch._inductor.config.compile_threads
    compiled, facts = compile_model(model, (1,), (1, 32, 32), limit_s=0.01)
    assert compiled is None and facts["status"] == "not compiled within 0.01 s"
    assert facts["compile_s"] < 2.0  # stopped by the alarm, not noticed after a whole compile (4-10 s cold here)
    assert signal.getsignal(signal.SIGALRM) is handler and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert not torch.is_inference_mode_enabled() and torch.is_grad_enabled()  # everything it entered was left
    assert torch._inductor.config.force_disable_caches is False and torch._inductor.config.compile_threads == threads
    compiled, facts = compile_model(model, (1, 2), (1, 32, 32), limit_s=300)
    assert facts["status"] == "ok" and facts["compile_s"] > 0.01
    x = torch.randn(2, 1, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(compiled(x), model(x))


def test_compare_reports_only_what_moved_beyond_the_intervals(tmp_path):
    def doc(median: float, low: float, high: float) -> dict:
        fig = {"median": median, "ci95": [low, high], "noisy": False, "rounds": []}
        return {"schema": SCHEMA, "models": [{"name": "m", "threads": 2, "latency_ms": {"torch": {"1": fig}}, "speedup": {}}]}

    old = tmp_path / "old.json"
    old.write_text(json.dumps(doc(10.0, 9.5, 10.5)))
    assert "no figure changed" in compare(old, doc(10.2, 9.8, 10.6))
    moved = compare(old, doc(20.0, 19.0, 21.0))
    assert "torch latency b1" in moved and "+100%" in moved
    improved = compare(old, doc(5.0, 4.8, 5.2))  # faster beyond both intervals: reported as a change too
    assert "changed beyond the intervals" in improved and "torch latency b1" in improved and "-50%" in improved
    old.write_text(json.dumps({**doc(10.0, 9.5, 10.5), "schema": "zoo.bench/1"}))
    assert "cannot compare" in compare(old, doc(10.0, 9.5, 10.5))


@pytest.mark.parametrize("report", ["cpu-bench", "cpu-bench-compile"])
def test_shipped_results_of_this_or_the_previous_schema_compare(report):
    path = REPO / "reports" / report / "results.json"
    old = json.loads(path.read_text())
    said = compare(path, {**old, "schema": SCHEMA})
    assert "no figure changed" in said and "(0 compared)" not in said


def test_a_shipped_result_of_the_previous_schema_is_there_to_compare():
    assert json.loads((REPO / "reports" / "cpu-bench-compile" / "results.json").read_text())["schema"] != SCHEMA


def test_quantize_without_data_is_refused_before_any_work():
    with pytest.raises(DataError, match="--data-dir"):
        run_bench(["vgg11"], BenchConfig(quantize=True))


def test_imagenet_has_no_data_for_accuracy(tmp_path, capsys):
    assert main(["resnet18", "--input", "imagenet", "--data-dir", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "no ImageNet loader" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [(["nosuchnet*"], "no model matches"), (["resnet18", "--weights", "vgg11=w.safetensors"], "--weights for vgg11"),
     (["googlenet_res5x5.mnist_paper"], "take mnist input; pass --input mnist")],
)
def test_bad_models_or_weights_exit_2(argv, message, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_default_is_the_papers_models_and_the_inputs_tags_at_cifar10_input():
    args = build_parser().parse_args([])
    assert args.input == "cifar10" and args.model_arg == [] and not args.quantize
    assert model_names(args.patterns, args.input) == [
        "googlenet", "googlenet_5x5", "googlenet_res3x3", "googlenet_res5x5", "googlenet_resall3x3", "googlenet_resall5x5",
        "resnet18", "vgg19", "googlenet_res5x5.cifar10_paper"]
    assert model_names(None, "mnist")[-1] == "googlenet_res5x5.mnist_paper"


def test_the_shipped_sample_is_real_small_and_stratified():
    from zoo.data.loading import SAMPLE_FILE

    assert SAMPLE_FILE.stat().st_size <= 2 * 2**20
    for name, n_test in (("mnist", 1000), ("cifar10", 500)):
        sample = load_sample(name)
        assert len(sample.y_test) == n_test and sample.y_test.bincount().tolist() == [n_test // 10] * 10
        assert len(sample.y_train) == 100  # calibration comes from training images, never the test ones


def _input_scale(path: Path) -> float:
    """The scale of the QuantizeLinear on the model's input: the calibrated range of the images, over 255."""
    model = onnx.load(path)
    (node,) = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == INPUT_NAME]
    (scale,) = [onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.name == node.input[1]]
    return float(scale)


def test_int8_calibrates_on_the_training_images_only(tmp_path):
    """Dark training images and bright test images: the input's calibrated range is the training images'."""
    data = synthetic("mnist", 40, 40)
    data = dataclasses.replace(data, x_train=data.x_train // 25, x_test=200 + data.x_test // 5)  # [0, 10] and [200, 251]
    conv = onnx.helper.make_node("Conv", [INPUT_NAME, "w"], ["y"], pads=[1, 1, 1, 1])
    w = onnx.numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 1, 3, 3)).astype(np.float32), "w")
    graph = onnx.helper.make_graph(
        [conv], "conv", [onnx.helper.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.FLOAT, ["n", 1, 32, 32])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 4, 32, 32])], [w])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), tmp_path / "conv.onnx")
    scale = _input_scale(quantize_int8(tmp_path / "conv.onnx", tmp_path / "int8.onnx", data, 32))
    (mean,), (std,) = data.spec.mean, data.spec.std
    low, high = (float(data.x_train.min()) / 255 - mean) / std, (float(data.x_train.max()) / 255 - mean) / std
    assert scale == pytest.approx((max(high, 0) - min(low, 0)) / 255, rel=0.05)  # min-max, 0 always representable
    bright = (float(data.x_test.max()) / 255 - mean) / std
    assert scale < bright / 255 / 2  # negative control: the test images would have needed a scale over twice as wide


# ---------------------------------------------------------------------------- the CPU's features and its fast paths


def test_features_come_from_the_kernels_flags_and_decide_int8_and_bf16():
    assert AVX2 == {"avx2": True, "avx512f": False, "avx_vnni": False, "avx512_vnni": False, "avx512_bf16": False, "amx": False}
    assert SAPPHIRE_RAPIDS == {**{k: True for k in ISA_FEATURES}, "avx_vnni": False}
    assert not has_vnni(AVX2) and not has_bf16(AVX2) and has_vnni(SAPPHIRE_RAPIDS) and has_bf16(SAPPHIRE_RAPIDS)
    assert has_vnni(isa_features(["avx2", "avx_vnni"])) and not has_bf16(isa_features(["avx2", "avx_vnni"]))
    assert int8_settings(AVX2)["reduce_range"] is True  # 16-bit sums can saturate without VNNI
    assert int8_settings(SAPPHIRE_RAPIDS)["reduce_range"] is False
    assert set(isa_features()) == set(ISA_FEATURES)  # this machine's, whatever it has


def test_engines_are_chosen_by_name():
    names = [e.name for e in bench.ENGINES]
    assert BenchConfig().engines == DEFAULT_ENGINES == ("torch", "torch_cl", "onnxruntime", "int8")
    assert select_engines(("all",)) == tuple(names)
    assert select_engines(("all",), ("compile", "torch")) == tuple(n for n in names if n not in ("compile", "torch"))
    assert select_engines(("onnxruntime", "torch_cl")) == ("torch_cl", "onnxruntime")  # ENGINES' order
    with pytest.raises(ArgumentError, match="no engine nosuch; the engines are torch, torch_cl"):
        select_engines(("torch", "nosuch"))
    with pytest.raises(ArgumentError, match="no engine tourch"):
        select_engines(("all",), ("tourch",))
    with pytest.raises(ArgumentError, match="leaves no engine"):
        select_engines(("torch",), ("torch",))
    args = build_parser().parse_args(["--engines", "all", "--skip-engines", "compile", "--compile"])
    assert args.engines == ["all"] and args.skip_engines == ["compile"] and args.compile


def test_an_unknown_engine_exits_2_with_the_list(tmp_path, capsys):
    assert main(["vgg11", "--engines", "fp64", "--out", str(tmp_path)]) == 2
    assert "no engine fp64; the engines are" in capsys.readouterr().err


@pytest.mark.slow
def test_bf16_runs_where_the_cpu_has_it_and_is_one_line_where_not(tmp_path):
    """The feature set is data: on an AVX2 CPU bf16 is one line in the report and no build; on one with AMX the
    engine runs (here emulated, if this CPU lacks bf16: slow, but the same code) and its bf16 peak is probed."""
    small = dict(input="mnist", batch_sizes=(1,), threads=(1,), engines=("torch_cl", "bf16"), **FAST)
    without = run_bench(["resnet18"], BenchConfig(features=AVX2, **small))
    assert without["unavailable"] == {"bf16": "unavailable on this CPU: no avx512_bf16/amx (bf16 would be emulated)"}
    assert set(without["models"][0]["build"]) == {"torch_cl"} and "bf16" not in without["peak_gmacs"]["1"]
    write_results(without, tmp_path)
    assert "\n- bf16: unavailable on this CPU: no avx512_bf16/amx" in (tmp_path / "results.md").read_text()
    with_bf16 = run_bench(["resnet18"], BenchConfig(features=SAPPHIRE_RAPIDS, peak_s=0.0, **small))
    (m,) = with_bf16["models"]
    assert with_bf16["unavailable"] == {} and m["build"]["bf16"]["status"] == "ok"
    assert with_bf16["engines"]["bf16"]["precision"] == "bf16" and with_bf16["peak_gmacs"]["1"]["bf16"] > 0
    assert set(m["speedup"]["bf16"]) == {"latency_b1"} and m["latency_ms"]["bf16"]["1"]["of_peak"] > 0
    assert with_bf16["environment"]["cpu_features"] == SAPPHIRE_RAPIDS


def test_a_missing_optional_runtime_is_one_line_not_an_error(monkeypatch):
    monkeypatch.setattr(bench.openvino.importlib.util, "find_spec", lambda name: None)
    (ov,) = [e for e in bench.ENGINES if e.name == "ov_int8"]
    assert ov.available(AVX2) == "unavailable: openvino is not installed (pip install 'deeper-zoo[openvino]')"
    (ov_bf16,) = [e for e in bench.ENGINES if e.name == "ov_bf16"]
    assert "no avx512_bf16/amx" in ov_bf16.available(AVX2) and "not installed" in ov_bf16.available(SAPPHIRE_RAPIDS)
    cfg = BenchConfig(engines=("all",), features=AVX2, **FAST)
    assert {e.name for e in bench.usable_engines(cfg)} == {"torch", "torch_cl", "onnxruntime", "int8", "compile"}


def test_the_peak_probe_measures_fp32_and_int8_and_bf16_only_where_the_cpu_has_it():
    torch.set_num_threads(1)
    peaks = peak_gmacs(1, AVX2, seconds=0.0)
    assert set(peaks) == {"fp32", "int8"} and all(v > 0 for v in peaks.values())


# ---------------------------------------------------------------------------- isolation: engines in their own process


def _ort_in_worker(path: str, threads: int):
    """A toy isolated engine (imported by name in the worker): onnxruntime, in a process of its own."""
    from zoo.export.onnx import create_session

    return bench.ort_predict(create_session(path, threads, spinning=False)), {"pid_seen": os.getpid()}


def _broken_in_worker(path: str, threads: int):
    raise RuntimeError(f"cannot open {path}\nsecond line")


def _isolated(s: Subject, threads: int):
    worker = Worker(_ort_in_worker, str(s.onnx), threads)
    return worker, worker.facts


WORKER = Engine("ort_worker", "ort-w", _isolated, baseline="onnxruntime", marker="h", line="-")


@pytest.mark.slow
def test_an_engine_in_its_own_process_gets_the_same_rounds_statistics_and_accuracy(vgg11_weights):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bench, "ENGINES", (*bench.ENGINES, WORKER))
        cfg = BenchConfig(input="mnist", batch_sizes=(1, 4), eval_images=64, threads=(1,),
                          engines=("onnxruntime", "ort_worker"), **FAST)
        results = run_bench(["vgg11"], cfg, weights={"vgg11": str(vgg11_weights)}, data=synthetic("mnist", 64, 64))
    (m,) = results["models"]
    worker = m["build"]["ort_worker"]
    assert worker["process"] == worker["pid_seen"] != os.getpid()
    assert not Path(f"/proc/{worker['process']}").exists()  # closed after the model
    for batch in ("1", "4"):
        assert len(m["latency_ms"]["ort_worker"][batch]["rounds"]) == len(m["latency_ms"]["onnxruntime"][batch]["rounds"])
    assert set(m["speedup"]["ort_worker"]) == {"latency_b1", "throughput"}
    assert m["accuracy"]["ort_worker"] == m["accuracy"]["onnxruntime"]  # the same model, through the pipe


@pytest.mark.slow
def test_a_worker_that_fails_to_build_is_one_line():
    with pytest.raises(ExportError, match=r"^_broken_in_worker failed in its worker: RuntimeError: cannot open x\.onnx$"):
        Worker(_broken_in_worker, "x.onnx", 1)


def test_a_worker_process_cpu_time_is_the_benchmarks_own():
    """/proc/PID/stat's utime and stime, after a command name that may hold spaces and parentheses."""
    from zoo.export.timing import process_ticks

    assert process_ticks("123 (a b) c) S 1 2 3 4 5 6 7 8 9 10 70 30 0 0 20") == 100
    wall, busy, own = cpu_clock([os.getpid()])  # this process counted twice: more than os.times() alone
    assert own >= sum(os.times()[:2])


# ---------------------------------------------------------------------------- re-measuring, the cache, charts, compare


@pytest.mark.parametrize("others, more_rounds", [(0.0, True), (0.5, False)])
def test_a_noisy_figure_is_remeasured_unless_other_processes_took_the_cpu(others, more_rounds, monkeypatch):
    cpus = os.cpu_count() or 1
    clock = {"t": 0.0}

    def fake_clock(workers):  # every reading 1 s later, others taking ``others`` of the machine meanwhile
        clock["t"] += 1.0
        return clock["t"], clock["t"] * others * cpus, 0.0

    alternating = itertools.cycle([8.0, 1.0])  # rounds of 8 and 1 ms in turns: never within +-10%, whatever the load

    monkeypatch.setattr(bench, "cpu_clock", fake_clock)
    monkeypatch.setattr(bench, "time_round", lambda call, warmup, min_s: next(alternating))
    noisy = Engine("noisy", "noisy", lambda s, t: (None, {}))
    cfg = BenchConfig(input="mnist", batch_sizes=(1,), rounds=2, warmup=0, round_s=0.0, remeasure_s=0.0)
    rounds, share = measure({noisy: lambda x: x}, 1, cfg, remeasure_s=0.3)
    assert (len(rounds["noisy"]) > cfg.rounds) is more_rounds and share == pytest.approx(others)


def test_the_onnx_cache_hits_misses_on_a_new_key_and_remakes_a_damaged_file(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path))
    made = []

    def make(path: Path) -> None:
        made.append(path)
        path.write_bytes(b"onnx bytes %d" % len(made))

    key = {"arch": "toy", "kwargs": {"a": 1}, "input_size": (1, 32, 32), "torch": "2", "onnx": "1", "opset": None}
    path, hit = cached(key, make)
    assert not hit and path.parent == tmp_path / "onnx" and path.read_bytes() == b"onnx bytes 1"
    assert cached(key, make) == (path, True) and len(made) == 1
    assert cached({**key, "opset": 20}, make)[1] is False and len(made) == 2  # any part of the key: a new entry
    path.write_bytes(b"onnx bytes X")  # same size, other bytes: the sha256 check on read catches it
    assert cached(key, make) == (path, False) and path.read_bytes() == b"onnx bytes 3"
    with pytest.raises(RuntimeError):
        cached({**key, "arch": "broken"}, lambda p: (p.write_bytes(b"half"), (_ for _ in ()).throw(RuntimeError()))[0])
    assert sorted(p.suffix for p in (tmp_path / "onnx").iterdir()) == [".json"] * 2 + [".onnx"] * 2  # nothing half-written


@pytest.mark.slow
def test_a_repeat_run_takes_the_export_from_the_cache_and_checks_its_parity():
    cfg = BenchConfig(input="mnist", model_kwargs={"head": "cifar"}, **FAST)
    first, again = prepare("vgg11", cfg, None, None), prepare("vgg11", cfg, None, None)
    assert again.onnx == first.onnx and again.facts["export_cached"] and again.facts["parity_max_abs_diff"]
    assert first.key == again.key and first.key["weights_sha256"] != prepare("vgg13", cfg, None, None).key["weights_sha256"]


@pytest.mark.slow
def test_a_first_run_exports_ahead_in_workers_the_files_the_run_then_finds():
    cfg = BenchConfig(input="mnist", model_kwargs={"head": "cifar"}, opset=20, **FAST)  # opset: entries of its own
    loaded = {name: bench.load_subject(name, cfg, None) for name in ("vgg11", "vgg13")}
    keys = {name: bench.export_key(model, cfg) for name, model in loaded.items()}
    assert not any(is_cached(k) for k in keys.values())  # negative control: nothing there before
    seconds = bench.export_ahead(loaded, cfg, {})
    assert sorted(seconds) == ["vgg11", "vgg13"] and all(s > 0 for s in seconds.values())
    assert all(is_cached(k) for k in keys.values())  # each worker built the same weights: the same key
    subject = prepare("vgg11", cfg, None, None, loaded["vgg11"], seconds["vgg11"])
    assert subject.key == keys["vgg11"] and not subject.facts["export_cached"]
    assert subject.facts["export_s"] == seconds["vgg11"] and subject.facts["parity_max_abs_diff"]
    assert bench.export_ahead(loaded, cfg, {}) == {}  # a repeat run has nothing to export
    assert not is_cached({**keys["vgg11"], "weights_sha256": "0" * 64})


def _doc(noisy: bool, features: dict | None = None) -> dict:
    fig = {"median": 2.0, "ci95": [1.0, 3.0] if noisy else [1.9, 2.1], "noisy": noisy, "rounds": [2.0, 2.0],
           "gmacs": 5.0, "of_peak": 0.1}
    engine = {"label": "ort", "baseline": None, "precision": "fp32", "device": "cpu", "marker": "s", "line": "-"}
    return {"schema": SCHEMA, "engines": {"onnxruntime": engine}, "settings": {"batch_sizes": [1]},
            "environment": {"cpu_features": features or AVX2}, "peak_gmacs": {"2": {"fp32": 50.0, "int8": 90.0}},
            "models": [{"name": "m", "threads": 2, "macs": 1e7, "accuracy": None, "speedup": {},
                        "latency_ms": {"onnxruntime": {"1": fig}}}]}


@pytest.mark.slow
@pytest.mark.parametrize("noisy", [True, False])
def test_noisy_figures_are_drawn_hollow_and_the_legend_says_so(noisy):
    for chart in (cost_chart(_doc(noisy), accuracy=False), batch_chart(_doc(noisy)), peak_chart(_doc(noisy))):
        ax = chart.axes[0]
        drawn = [c for c in ax.collections if isinstance(c, PathCollection) and len(c.get_offsets())]  # points, not legend entries
        assert drawn and all(bool((c.get_facecolor()[:, 3] == 0).all()) is noisy for c in drawn)
        assert NOISY_LEGEND in [t.get_text() for t in ax.get_legend().get_texts()]
    ceilings = [t.get_text() for t in peak_chart(_doc(noisy)).axes[0].get_legend().get_texts() if t.get_text().startswith("peak")]
    assert ceilings == ["peak fp32, 2 thr: 50 GMAC/s", "peak int8, 2 thr: 90 GMAC/s"]


def test_compare_warns_when_the_cpus_features_differ(tmp_path):
    old = tmp_path / "old.json"
    old.write_text(json.dumps(_doc(False, SAPPHIRE_RAPIDS)))
    said = compare(old, _doc(False, AVX2))
    assert said.startswith("warning: the CPUs' instruction-set features differ (they differ in amx, avx512_bf16, avx512_vnni, avx512f")
    assert "no figure changed" in said
    old.write_text(json.dumps(_doc(False, AVX2)))
    assert not compare(old, _doc(False, AVX2)).startswith("warning")  # the negative control
