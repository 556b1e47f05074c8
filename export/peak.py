"""The machine's arithmetic limit, probed in a few seconds: GEMM throughput in GMAC/s for each precision.

A large square GEMM is the most a CPU's libraries get out of its cores: fp32 and bf16 through torch (oneDNN/MKL),
int8 through onnxruntime's MatMulInteger (uint8 x int8, the kernel its int8 convolutions use). Each is timed for
``seconds`` at the current intra-op threads and its fastest call kept: a limit, not a typical figure. Every latency
the benchmark reports is then also a rate (MACs per second) and a share of the peak of its engine's precision: how
far from the limit each engine stands. bf16 is probed only where the CPU has it (elsewhere it is emulated, and
there is no bf16 engine to compare).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from onnx import TensorProto, helper

from zoo.core.machine import has_bf16

from .onnx import PROVIDER

__all__ = ["GEMM_N", "peak_gmacs"]

GEMM_N = 1024
"""Square GEMM size: 1.07 GMAC per call, large enough to run at the limit, small enough for tens of calls a second."""


def _fastest(call: Callable[[], Any], seconds: float) -> float:
    """GMAC/s of the fastest of ``call``'s runs of a GEMM_N GEMM within ``seconds`` (one warm-up first, 3 at least)."""
    call()
    best, start, runs = float("inf"), time.perf_counter(), 0
    while runs < 3 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        call()
        best, runs = min(best, time.perf_counter() - t0), runs + 1
    return GEMM_N**3 / best / 1e9


def _torch_gemm(dtype: torch.dtype) -> Callable[[], Any]:
    a, b = (torch.randn(GEMM_N, GEMM_N).to(dtype) for _ in range(2))
    return lambda: torch.mm(a, b)


def _int8_gemm(threads: int) -> Callable[[], Any]:
    """onnxruntime's MatMulInteger, uint8 activations x int8 weights (as in the int8 engine's QDQ graphs)."""
    rng = np.random.default_rng(0)
    weights = helper.make_tensor("b", TensorProto.INT8, [GEMM_N, GEMM_N],
                                 rng.integers(-64, 64, (GEMM_N, GEMM_N), dtype=np.int8).tobytes(), raw=True)
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "gemm",
                              [helper.make_tensor_value_info("a", TensorProto.UINT8, [GEMM_N, GEMM_N])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [GEMM_N, GEMM_N])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=[PROVIDER])
    a = rng.integers(0, 128, (GEMM_N, GEMM_N), dtype=np.uint8)
    return lambda: session.run(None, {"a": a})


def peak_gmacs(threads: int, features: dict[str, bool], seconds: float = 1.0) -> dict[str, float]:
    """{precision: GMAC/s} at ``threads`` (torch's intra-op threads are set by the caller): fp32, int8, and bf16 where
    ``features`` has it."""
    peaks = {"fp32": _fastest(_torch_gemm(torch.float32), seconds), "int8": _fastest(_int8_gemm(threads), seconds)}
    if has_bf16(features):
        peaks["bf16"] = _fastest(_torch_gemm(torch.bfloat16), seconds)
    return {k: round(v, 1) for k, v in peaks.items()}
