"""The onnxruntime-vs-torch benchmark: its result schema and files, on tiny runs. Timings are never asserted."""
from __future__ import annotations

import csv
import json

import pytest
import torch

import zoo
from export.bench import SCHEMA, BenchConfig, build_parser, main, run_bench, write_results
from zoo.data import synthetic
from zoo.errors import DataError

TINY = ["vgg11", "--model-arg", "head=cifar", "--input", "mnist", "--batch-sizes", "2", "--budget", "0"]
PNG = b"\x89PNG\r\n\x1a\n"


def assert_timed(engine: dict, batches: list[int]) -> None:
    assert sorted(engine["latency_ms"], key=int) == [str(b) for b in batches]
    for lat in engine["latency_ms"].values():
        assert 0 < lat["p50_ms"] <= lat["p90_ms"] and lat["runs"] >= BenchConfig().min_runs
    assert engine["throughput_ips"] > 0


def test_bench_writes_the_documented_schema(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main([*TINY, "--out", str(out)]) == 0

    results = json.loads((out / "results.json").read_text())
    assert results["schema"] == SCHEMA and results["duration_s"] > 0
    env = results["environment"]
    assert env["torch_threads"] == env["ort_intra_op_threads"] == results["settings"]["threads"] > 0
    assert env["ort_graph_optimization_level"] == "ORT_ENABLE_ALL" and env["ort_provider"] == "CPUExecutionProvider"
    assert results["settings"]["input_size"] == [1, 32, 32] and results["settings"]["batch_sizes"] == [1, 2]

    (m,) = results["models"]
    assert m["name"] == "vgg11" and m["model_kwargs"] == {"num_classes": 10, "in_chans": 1, "head": "cifar"}
    info = zoo.model_info("vgg11", input_size=(1, 32, 32), num_classes=10, in_chans=1, head="cifar")
    assert (m["params"], m["macs"]) == (info["params"], info["macs"])
    assert m["onnx_bytes"] > 4 * m["params"] * 0.99  # float32 weights, in the one file
    assert set(m["parity_max_abs_diff"]) == {"1", "4"} and max(m["parity_max_abs_diff"].values()) < 1e-3
    for engine in ("torch", "onnxruntime"):
        assert_timed(m[engine], [1, 2])
        assert "accuracy" not in m[engine]  # no weights, no data
    assert set(m["ort_speedup"]) == {"latency_b1", "throughput"} and all(v > 0 for v in m["ort_speedup"].values())
    assert m["weights"] is None and m["int8"] is None

    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["model"] for r in rows] == ["vgg11"] and float(rows[0]["ort_speedup_b1"]) == pytest.approx(m["ort_speedup"]["latency_b1"])
    table = (out / "results.md").read_text()
    assert "| vgg11 |" in table and "ort_speedup_b1" in table and table in capsys.readouterr().out
    for chart in ("macs_vs_latency.png", "latency_vs_batch.png"):
        assert (out / chart).read_bytes().startswith(PNG)


def test_bench_accuracy_and_int8_with_weights_and_data(tmp_path):
    """Weights through zoo.hub, a synthetic MNIST: top-1 of both engines, and the int8 copy's delta and speed-up."""
    from zoo.hub import save_pretrained

    torch.manual_seed(0)
    kwargs = {"num_classes": 10, "in_chans": 1, "head": "cifar"}
    weights = save_pretrained(zoo.create_model("vgg11", **kwargs), tmp_path / "vgg11", arch="vgg11", model_kwargs=kwargs)
    cfg = BenchConfig(input="mnist", batch_sizes=(1, 4), budget_s=0, eval_images=64, calibration_images=32,
                      quantize=True, model_kwargs={"head": "cifar"})

    results = run_bench(["vgg11"], cfg, weights={"vgg11": str(weights)}, data=synthetic("mnist", 64, 64))

    (m,) = results["models"]
    assert m["weights"] == str(weights)
    acc_torch, acc_ort = m["torch"]["accuracy"], m["onnxruntime"]["accuracy"]
    assert 0 <= acc_torch <= 1 and abs(acc_torch - acc_ort) <= 1 / 64  # same logits up to float noise
    int8 = m["int8"]
    assert_timed(int8, [1, 4])
    assert 0 < int8["onnx_bytes"] < m["onnx_bytes"] / 2  # int8 weights
    assert int8["accuracy_delta"] == pytest.approx(int8["accuracy"] - acc_ort)
    assert set(int8["speedup_vs_fp32"]) == {"latency_b1", "throughput"}

    paths = write_results(results, tmp_path / "out")
    assert (tmp_path / "out" / "accuracy_vs_latency.png") in paths
    assert "int8_top1_delta" in (tmp_path / "out" / "results.md").read_text()


def test_quantize_without_data_is_refused_before_any_work():
    with pytest.raises(DataError, match="--data-dir"):
        run_bench(["vgg11"], BenchConfig(quantize=True))


def test_imagenet_has_no_data_for_accuracy(tmp_path, capsys):
    assert main(["resnet18", "--input", "imagenet", "--data-dir", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "no ImageNet loader" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [(["nosuchnet*"], "no model matches"), (["resnet18", "--weights", "vgg11=w.safetensors"], "--weights for vgg11")],
)
def test_bad_models_or_weights_exit_2(argv, message, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_default_is_the_papers_models_at_cifar10_input():
    args = build_parser().parse_args([])
    assert zoo.list_models(args.patterns) == ["googlenet", "googlenet_5x5", "googlenet_res3x3", "googlenet_res5x5",
                                              "googlenet_resall3x3", "googlenet_resall5x5", "resnet18", "vgg19"]
    assert args.input == "cifar10" and args.model_arg == [] and not args.quantize
