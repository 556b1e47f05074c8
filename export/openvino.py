"""OpenVINO engines for the benchmark: the optional extra ``deeper-zoo[openvino]``.

OpenVINO runs zoo's own ONNX files (the fp32 export and the int8 QDQ copy) on the CPU, in bf16 where the CPU has it
(AVX512_BF16 or AMX), and its int8 kernels use VNNI and AMX. Its thread pool disturbs other runtimes in the same
process (torch eager slowed from 7.6 to 24.5 ms at batch 1 with it loaded), so :func:`engine` is built and timed in
a worker process of its own (export.timing.Worker). ``openvino`` is imported inside :func:`engine` only, because it
is optional: without it every OpenVINO engine is one line in the report (:func:`missing`), not an error.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["engine", "environment", "missing"]

INSTALL = "pip install 'deeper-zoo[openvino]'"


def missing() -> str | None:
    """Why there is no OpenVINO engine here (not installed), or None."""
    return None if importlib.util.find_spec("openvino") else f"unavailable: openvino is not installed ({INSTALL})"


def environment() -> dict[str, Any]:
    """What results.json's environment says of OpenVINO (read from its package metadata: nothing is loaded)."""
    return {"openvino": importlib.metadata.version("openvino")}


def engine(path: str, threads: int, precision: str) -> tuple[Callable[[np.ndarray], np.ndarray], dict[str, Any]]:
    """The ONNX file at ``path`` compiled for OpenVINO's CPU plugin: ``threads`` inference threads, one stream,
    latency hint, inference precision ``precision`` ("bf16", or "f32" to leave an int8 graph's other operators in
    fp32); a predict function that returns a copy of the logits (as onnxruntime hands back a new array)."""
    import openvino  # noqa: PLC0415 lazy: an optional runtime, imported only where an OpenVINO engine runs (its worker process)

    core = openvino.Core()
    compiled = core.compile_model(path, "CPU", {
        "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": precision,
    })
    request = compiled.create_infer_request()

    def predict(x: np.ndarray) -> np.ndarray:
        return np.array(request.infer({0: x})[0], copy=True)

    return predict, {"inference_precision": str(compiled.get_property("INFERENCE_PRECISION_HINT"))}
