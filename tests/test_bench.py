"""The benchmark: its statistics on known data, its interleaving, its engines, its result schema and files, on tiny
runs. Timings are never asserted, nor is the machine's load: the statistics and the bookkeeping around them are.

Each run exports vgg11 (a few seconds on 2 cores), so runs are shared by module-scoped fixtures where their
settings allow; torch.compile, the slowest engine, compiles the smallest model at one batch size, once."""
from __future__ import annotations

import copy
import csv
import dataclasses
import json
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch
import torch._inductor.config

import zoo
from zoo.export import bench
from zoo.export.bench import (
    SCHEMA, BenchConfig, Engine, Subject, _summary, build_parser, busy_ticks, cpu_clock, interleaved, main,
    measure, model_names, others_share, run_bench, torch_predict,
)
from zoo.export.inductor import compile_model
from zoo.export.report import batch_chart, compare, cost_chart, table_rows, write_results
from zoo.export.stats import bootstrap_interval, is_noisy, ratios, summary
from zoo.data import load_sample, synthetic
from zoo.errors import CheckpointError, DataError

REPO = Path(__file__).resolve().parents[1]
TINY = ["vgg11", "--model-arg", "head=cifar", "--input", "mnist", "--batch-sizes", "2", "--rounds", "2", "--threads", "1"]
PNG = b"\x89PNG\r\n\x1a\n"
FAST = dict(rounds=2, warmup=0, round_s=0.0, remeasure_s=0.0)
VGG11 = {"num_classes": 10, "in_chans": 1, "head": "cifar"}


# ---------------------------------------------------------------------------- statistics


def test_bootstrap_interval_holds_the_median_and_shrinks_with_agreement():
    tight = [10.0, 10.1, 9.9, 10.05, 9.95, 10.0, 10.02]
    low, high = bootstrap_interval(tight)
    assert 9.9 <= low <= 10.0 <= high <= 10.1
    spread = [5.0, 15.0, 8.0, 12.0, 10.0, 6.0, 14.0]
    s_low, s_high = bootstrap_interval(spread)
    assert s_high - s_low > 3 * (high - low)
    assert bootstrap_interval([4.0]) == (4.0, 4.0)
    assert bootstrap_interval(tight) == bootstrap_interval(tight)  # seeded: the same rounds, the same interval


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
    engines = {name: (lambda name=name: calls.append(name)) for name in ("a", "b")}
    rounds = interleaved(engines, rounds=4, warmup=0, min_s=0.0)
    assert [len(r) for r in rounds.values()] == [4, 4]
    per_round = [calls[i:i + 3] for i in range(0, len(calls), 3)]  # each timed round runs 3 calls
    firsts = [chunk[0] for chunk in per_round]
    assert firsts == ["a", "b", "b", "a", "a", "b", "b", "a"]  # A B, B A, A B, B A


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
    monkeypatch.setattr(bench, "cpu_clock", lambda: next(readings))
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
    assert results["engines"] == {
        "torch": {"label": "torch", "baseline": None, "device": "cpu", "marker": "o", "line": "--"},
        "onnxruntime": {"label": "ort", "baseline": "torch", "device": "cpu", "marker": "s", "line": "-"}}
    (m,) = results["models"]
    assert m["name"] == "vgg11" and m["model_kwargs"] == VGG11
    info = zoo.model_info("vgg11", input_size=(1, 32, 32), **VGG11)
    assert (m["params"], m["macs"]) == (info["params"], info["macs"])
    assert set(m["parity_max_abs_diff"]) == {"1", "4"} and max(m["parity_max_abs_diff"].values()) < 1e-3
    assert set(m["latency_ms"]) == set(m["build"]) == {"torch", "onnxruntime"}  # untrained: no int8, no accuracy
    assert all(b["status"] == "ok" and b["build_s"] >= 0 for b in m["build"].values())
    for engine in m["latency_ms"].values():
        for fig in engine.values():
            assert fig["ci95"][0] <= fig["median"] <= fig["ci95"][1] and len(fig["rounds"]) >= 2
    assert set(m["speedup"]) == {"onnxruntime"} and set(m["speedup"]["onnxruntime"]) == {"latency_b1", "throughput"}
    assert m["accuracy"] is None
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert {(r["engine"], r["batch"]) for r in rows} == {("torch", "1"), ("torch", "2"), ("onnxruntime", "1"), ("onnxruntime", "2")}
    assert {(r["engine"], r["device"], r["baseline"], bool(r["speedup"])) for r in rows} == {
        ("torch", "cpu", "", False), ("onnxruntime", "cpu", "torch", True)}
    table = (out / "results.md").read_text()
    assert "| vgg11" in table and "ort/torch b1" in table and "shipped sample" not in table and table in capsys.readouterr().out
    for chart in ("macs_vs_latency.png", "latency_vs_batch.png"):
        assert (out / chart).read_bytes().startswith(PNG)


@pytest.fixture(scope="module")
def vgg11_weights(tmp_path_factory) -> Path:
    """A randomly initialised vgg11 saved as zoo saves trained weights, MNIST-sized with the CIFAR head."""
    torch.manual_seed(0)
    return zoo.save_pretrained(zoo.create_model("vgg11", **VGG11), tmp_path_factory.mktemp("weights") / "vgg11")


@pytest.mark.slow
def test_trained_models_get_accuracy_for_every_engine_and_an_int8_copy(vgg11_weights, tmp_path):
    cfg = BenchConfig(input="mnist", batch_sizes=(1, 4), eval_images=64, calibration_images=32, threads=(1,), **FAST)
    results = run_bench(["vgg11"], cfg, weights={"vgg11": str(vgg11_weights)}, data=synthetic("mnist", 64, 64))
    (m,) = results["models"]
    assert m["model_kwargs"] == VGG11  # the weights' own configuration, head included, though none was asked for
    assert set(m["latency_ms"]) == {"torch", "onnxruntime", "int8"} and m["threads"] == 1
    acc = m["accuracy"]
    assert set(acc) == {"torch", "onnxruntime", "int8"} and abs(acc["torch"] - acc["onnxruntime"]) <= 1 / 64
    assert 0 < m["build"]["int8"]["onnx_bytes"] < m["onnx_bytes"] / 2  # int8 weights
    assert set(m["speedup"]["int8"]) == {"latency_b1", "throughput"}
    paths = write_results(results, tmp_path / "out")
    assert (tmp_path / "out" / "accuracy_vs_latency.png") in paths
    table = (tmp_path / "out" / "results.md").read_text()
    assert "int8/ort b1" in table and "top-1 % torch / ort / int8" in table


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
TOY = Engine("channels_last", "cl", _channels_last, baseline="torch", synchronize=lambda: EVENTS.append("sync"),
             marker="P", line=":")


@pytest.fixture(scope="module")
def sweep() -> dict:
    """One run for three tests: vgg11 at 1 and 2 threads, a toy engine registered (one record, no other edit), and
    torch.compile asked for on a machine without a C++ compiler."""
    cfg = BenchConfig(input="mnist", batch_sizes=(1, 2), threads=(1, 2), model_kwargs={"head": "cifar"}, compile=True, **FAST)
    EVENTS.clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bench, "ENGINES", (*bench.ENGINES, TOY))
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
    assert saved["engines"]["channels_last"] == {"label": "cl", "baseline": "torch", "device": "cpu", "marker": "P", "line": ":"}
    table = (tmp_path / "results.md").read_text()
    assert all(f"| {column} |" in table for column in ("b1 ms cl", "img/s b2 cl", "cl/torch b1", "cl/torch b2"))
    toy_rows = [r for r in csv.DictReader((tmp_path / "results.csv").open()) if r["engine"] == "channels_last"]
    assert len(toy_rows) == 4 and all(r["baseline"] == "torch" and float(r["speedup"]) > 0 for r in toy_rows)
    for chart in (batch_chart(sweep), cost_chart(sweep, accuracy=False)):
        assert "channels_last" in [t.get_text() for t in chart.axes[0].get_legend().get_texts()]


@pytest.mark.slow
def test_a_model_that_does_not_compile_says_why_and_keeps_its_other_engines(sweep, tmp_path):
    for m in sweep["models"]:
        assert m["build"]["compile"]["status"].startswith("failed: InductorError")
        assert set(m["latency_ms"]) == {"torch", "onnxruntime", "channels_last"} and "compile" not in m["speedup"]
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
    cfg = BenchConfig(input="mnist", batch_sizes=(1,), threads=(1,), model_kwargs={"head": "cifar"}, compile=True, **FAST)
    results = run_bench(["vgg11"], cfg)
    (m,) = results["models"]
    built = m["build"]["compile"]
    assert built["status"] == "ok" and built["compile_s"] > 0 and built["parity_max_rel_diff"] < 1e-3
    assert set(m["latency_ms"]) == {"torch", "onnxruntime", "compile"} and set(m["speedup"]["compile"]) == {"latency_b1"}
    assert results["environment"]["inductor"] == {"force_disable_caches": True, "compile_threads": 1}
    write_results(results, tmp_path)
    table = (tmp_path / "results.md").read_text()
    assert "compile/torch b1" in table and "b1 ms compile" in table and "| builds |" in table


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
    old.write_text(json.dumps({**doc(10.0, 9.5, 10.5), "schema": "zoo.bench/1"}))
    assert "cannot compare" in compare(old, doc(10.0, 9.5, 10.5))


@pytest.mark.parametrize("report", ["cpu-bench", "cpu-bench-compile"])
def test_results_of_the_previous_schema_still_compare(report):
    path = REPO / "reports" / report / "results.json"
    old = json.loads(path.read_text())
    said = compare(path, {**old, "schema": SCHEMA})
    assert old["schema"] != SCHEMA and "no figure changed" in said and "(0 compared)" not in said


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
    from zoo.data import SAMPLE_FILE

    assert SAMPLE_FILE.stat().st_size <= 2 * 2**20
    for name, n_test in (("mnist", 1000), ("cifar10", 500)):
        sample = load_sample(name)
        assert len(sample.y_test) == n_test and sample.y_test.bincount().tolist() == [n_test // 10] * 10
        assert len(sample.y_train) == 100  # calibration comes from training images, never the test ones
