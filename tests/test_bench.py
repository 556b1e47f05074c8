"""The benchmark: its statistics on known data, its interleaving, its result schema and files, on tiny runs.
Timings are never asserted; the statistics and the bookkeeping around them are."""
from __future__ import annotations

import csv
import json
import shutil
import signal

import pytest
import torch
import torch._inductor.config

import zoo
from export.bench import SCHEMA, BenchConfig, build_parser, interleaved, main, model_names, run_bench
from export.inductor import compile_model
from export.report import compare, write_results
from export.stats import bootstrap_interval, is_noisy, ratios, summary
from zoo.data import load_sample, synthetic
from zoo.errors import CheckpointError, DataError

TINY = ["vgg11", "--model-arg", "head=cifar", "--input", "mnist", "--batch-sizes", "2", "--rounds", "2"]
PNG = b"\x89PNG\r\n\x1a\n"
FAST = dict(rounds=2, warmup=0, round_s=0.0, remeasure_s=0.0)


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


# ---------------------------------------------------------------------------- the run and its files


def test_bench_writes_the_documented_schema(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main([*TINY, "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["schema"] == SCHEMA and results["duration_s"] > 0
    env = results["environment"]
    assert env["ort_spinning"] is False and env["ort_provider"] == "CPUExecutionProvider" and "cpu_frequency" in env
    assert {"load_average_1min", "load_average_1min_after", "physical_cores"} <= set(env)
    assert results["settings"]["input_size"] == [1, 32, 32] and results["settings"]["batch_sizes"] == [1, 2]
    assert results["data"]["sample"] is True  # no --data-dir: zoo's shipped sample
    (m,) = results["models"]
    assert m["name"] == "vgg11" and m["model_kwargs"] == {"num_classes": 10, "in_chans": 1, "head": "cifar"}
    info = zoo.model_info("vgg11", input_size=(1, 32, 32), num_classes=10, in_chans=1, head="cifar")
    assert (m["params"], m["macs"]) == (info["params"], info["macs"])
    assert set(m["parity_max_abs_diff"]) == {"1", "4"} and max(m["parity_max_abs_diff"].values()) < 1e-3
    assert set(m["latency_ms"]) == {"torch", "onnxruntime"}  # untrained: no int8, no accuracy
    for engine in m["latency_ms"].values():
        for fig in engine.values():
            assert fig["ci95"][0] <= fig["median"] <= fig["ci95"][1] and len(fig["rounds"]) >= 2
    assert set(m["speedup"]["onnxruntime"]) == {"latency_b1", "throughput"} and m["accuracy"] is None
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert {(r["engine"], r["batch"]) for r in rows} == {("torch", "1"), ("torch", "2"), ("onnxruntime", "1"), ("onnxruntime", "2")}
    table = (out / "results.md").read_text()
    assert "| vgg11" in table and "ort/torch b1" in table and "shipped sample" not in table and table in capsys.readouterr().out
    for chart in ("macs_vs_latency.png", "latency_vs_batch.png"):
        assert (out / chart).read_bytes().startswith(PNG)


def test_trained_models_get_accuracy_for_every_engine_and_an_int8_copy(tmp_path):
    torch.manual_seed(0)
    kwargs = {"num_classes": 10, "in_chans": 1, "head": "cifar"}
    weights = zoo.save_pretrained(zoo.create_model("vgg11", **kwargs), tmp_path / "vgg11")
    cfg = BenchConfig(input="mnist", batch_sizes=(1, 4), eval_images=64, calibration_images=32, model_kwargs={"head": "cifar"},
                      threads=(1,), **FAST)
    results = run_bench(["vgg11"], cfg, weights={"vgg11": str(weights)}, data=synthetic("mnist", 64, 64))
    (m,) = results["models"]
    assert set(m["latency_ms"]) == {"torch", "onnxruntime", "int8"} and m["threads"] == 1
    acc = m["accuracy"]
    assert set(acc) == {"torch", "onnxruntime", "int8"} and abs(acc["torch"] - acc["onnxruntime"]) <= 1 / 64
    assert 0 < m["int8_onnx_bytes"] < m["onnx_bytes"] / 2  # int8 weights
    assert set(m["speedup"]["int8"]) == {"latency_b1", "throughput"}
    paths = write_results(results, tmp_path / "out")
    assert (tmp_path / "out" / "accuracy_vs_latency.png") in paths
    assert "int8/ort b1" in (tmp_path / "out" / "results.md").read_text()


CXX = pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")), reason="torch.compile on the CPU needs a C++ compiler")


@CXX
def test_torch_compile_is_a_third_engine_with_its_compile_time_apart(tmp_path):
    cfg = BenchConfig(input="mnist", batch_sizes=(1,), threads=(1,), model_kwargs={"head": "cifar"}, compile=True, **FAST)
    results = run_bench(["vgg11"], cfg)
    (m,) = results["models"]
    assert m["compile"]["status"] == "ok" and m["compile"]["compile_s"] > 0 and m["compile"]["parity_max_rel_diff"] < 1e-3
    assert set(m["latency_ms"]) == {"torch", "onnxruntime", "compile"} and set(m["speedup"]["compile"]) == {"latency_b1"}
    write_results(results, tmp_path)
    table = (tmp_path / "results.md").read_text()
    assert "compiled in" in table and "compile/torch b1" in table and "b1 ms compile" in table


def test_saved_weights_keep_their_configuration_and_a_conflicting_request_is_refused(tmp_path):
    weights = zoo.save_pretrained(zoo.create_model("vgg11", num_classes=10, in_chans=1, head="cifar"), tmp_path / "vgg11")
    fast = BenchConfig(input="mnist", batch_sizes=(1,), threads=(1,), **FAST)
    (m,) = run_bench(["vgg11"], fast, weights={"vgg11": str(weights)})["models"]
    assert m["model_kwargs"] == {"num_classes": 10, "in_chans": 1, "head": "cifar"}  # the weights' own, head included
    for cfg, message in [(BenchConfig(input="mnist", num_classes=5, **FAST), "saved with num_classes=10"),
                         (BenchConfig(input="cifar10", **FAST), "saved with in_chans=1")]:
        with pytest.raises(CheckpointError, match=message):
            run_bench(["vgg11"], cfg, weights={"vgg11": str(weights)})


def test_a_model_that_does_not_compile_says_why_and_keeps_its_other_engines(tmp_path):
    cfg = BenchConfig(input="mnist", batch_sizes=(1,), threads=(1,), model_kwargs={"head": "cifar"}, compile=True, **FAST)
    with torch._inductor.config.patch({"cpp.cxx": ("/nonexistent/g++",)}):  # a machine without a C++ compiler
        results = run_bench(["vgg11"], cfg)
    (m,) = results["models"]
    assert m["compile"]["status"].startswith("failed: InductorError") and set(m["latency_ms"]) == {"torch", "onnxruntime"}
    write_results(results, tmp_path)
    assert "failed: InductorError" in (tmp_path / "results.md").read_text()


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


def test_a_thread_sweep_measures_every_model_at_every_count():
    cfg = BenchConfig(input="mnist", batch_sizes=(1,), threads=(1, 2), model_kwargs={"head": "cifar"}, **FAST)
    results = run_bench(["vgg11"], cfg)
    assert [(m["name"], m["threads"]) for m in results["models"]] == [("vgg11", 1), ("vgg11", 2)]


def test_compare_reports_only_what_moved_beyond_the_intervals():
    def doc(median: float, low: float, high: float) -> dict:
        fig = {"median": median, "ci95": [low, high], "noisy": False, "rounds": []}
        return {"schema": SCHEMA, "models": [{"name": "m", "threads": 2, "latency_ms": {"torch": {"1": fig}}, "speedup": {}}]}

    old = doc(10.0, 9.5, 10.5)
    assert "no figure changed" in compare_docs(old, doc(10.2, 9.8, 10.6))
    moved = compare_docs(old, doc(20.0, 19.0, 21.0))
    assert "torch latency b1" in moved and "+100%" in moved


def compare_docs(old: dict, new: dict) -> str:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "old.json"
        path.write_text(json.dumps(old))
        return compare(path, new)


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


def test_other_processes_taking_the_cpu_are_detected_and_flag_figures_noisy():
    import subprocess
    import sys
    import time

    from export.bench import CONTENDED, _summary, cpu_clock, others_share

    quiet_start = cpu_clock()
    time.sleep(0.5)
    assert others_share(quiet_start, cpu_clock()) < CONTENDED  # sleeping: nobody else busy (a quiet machine)
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # the interpreter starts
        start = cpu_clock()
        time.sleep(1.0)
        share = others_share(start, cpu_clock())
    finally:
        burner.kill()
        burner.wait()
    assert share > CONTENDED, share  # one core of the machine's was busy elsewhere
    tight = [10.0, 10.1, 9.9, 10.0, 10.05]
    assert _summary(tight, 0.0)["noisy"] is False and _summary(tight, share)["noisy"] is True
