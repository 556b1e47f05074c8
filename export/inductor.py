"""torch.compile (inductor) on the CPU as a benchmark engine: the one a torch user would pick instead of ONNX.

:func:`compile_model` compiles a model for every batch size the benchmark times,
before any timing, within a time limit (on 2 cores GoogLeNet takes about 2.5
minutes for three batch sizes), and checks the compiled outputs against eager
ones. Inductor's on-disk caches are off while it compiles, so the compile time
is what a first run on a machine pays, the same in every run. What it reports
(compile seconds, or why there is no engine: an error, the limit, outputs that
differ) goes in the results beside the engine's timings.
"""
from __future__ import annotations

import signal
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from torch import nn

__all__ = ["INDUCTOR_SETTINGS", "compile_model"]

INDUCTOR_SETTINGS = {"force_disable_caches": True, "compile_threads": 1}
"""Inductor's configuration while a model compiles: no caches (the compile time is a first run's, the same in every
run) and one compile thread (C++ builds run as children of this process, so a stopped compile leaves none running)."""


class _OverTime(BaseException):
    """The time limit passed. A BaseException, so that no ``except Exception`` inside torch.compile catches it."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise _OverTime in the main thread after ``seconds`` (SIGALRM), as soon as Python runs again (a C++ compile
    in progress finishes first), and again until it is out; elsewhere no limit (signals reach only the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    armed = [True]

    def expire(signum: int, frame: Any) -> None:
        if armed[0]:
            signal.setitimer(signal.ITIMER_REAL, 1.0)  # again in a second, in case a callback swallows this one
            raise _OverTime

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        while armed[0]:  # an alarm landing here would skip the disarming: retry until it is done
            try:
                armed[0] = False
                signal.setitimer(signal.ITIMER_REAL, 0)
            except _OverTime:
                armed[0] = True
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def compile_model(model: nn.Module, batch_sizes: tuple[int, ...], input_size: tuple[int, int, int], limit_s: float,
                  tolerance: float = 1e-3) -> tuple[nn.Module | None, dict[str, Any]]:
    """``model`` compiled (static shapes) for each batch size, and what happened; None instead of the module when
    it failed, ran past ``limit_s`` or gives logits further than ``tolerance`` (relative, as export.onnx's
    parity check) from eager ones."""
    # lazy: 2.7 s of imports (inductor, dynamo) that only this engine uses, paid by every zoo bench and export otherwise
    import torch._inductor.config  # noqa: PLC0415
    torch._dynamo.reset()  # instances of one class share their forward's recompile limit: start each model afresh
    compiled = cast(nn.Module, torch.compile(model.eval(), dynamic=False))  # a module compiles to an OptimizedModule, typed as a plain callable
    generator = torch.Generator().manual_seed(0)
    start, diff = time.perf_counter(), 0.0
    # one graph per batch size, however many; the time limit innermost, so it is disarmed before the rest unwinds
    try:
        with torch._inductor.config.patch(INDUCTOR_SETTINGS), torch._dynamo.config.patch(recompile_limit=len(batch_sizes) + 8), \
                torch.inference_mode(), warnings.catch_warnings(), time_limit(limit_s):
            warnings.filterwarnings("ignore", "dynamo_pgo force disabled")  # the caches are off on purpose
            for batch in batch_sizes:
                x = torch.randn(batch, *input_size, generator=generator)
                expected = model(x)
                scale = max(1.0, float(expected.abs().max()))
                diff = max(diff, float((compiled(x) - expected).abs().max()) / scale)
    except _OverTime:
        status = f"not compiled within {limit_s:g} s"
    except Exception as e:  # torch.compile fails in many ways (no C++ compiler, an unsupported operator, ...)
        reason = (str(e).strip().splitlines() or [""])[0][:200]
        status = f"failed: {type(e).__name__}" + (f": {reason}" if reason else "")
    else:
        status = "ok" if diff <= tolerance else f"outputs differ from eager by {diff:.1e} of the largest logit"
    seconds = time.perf_counter() - start
    if seconds >= limit_s:  # also when code inside torch.compile caught the alarm, or turned it into another error
        status = f"not compiled within {limit_s:g} s"
    facts = {"status": status, "compile_s": round(seconds, 2)}
    return (compiled, {**facts, "parity_max_rel_diff": diff}) if status == "ok" else (None, facts)
