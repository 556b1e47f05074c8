"""Timing: one round of calls, interleaved rounds, the machine's load meanwhile, and engines in their own process.

A round (:func:`time_round`) is a few warm-up calls, then the median of at least 3 calls and ``min_s`` seconds of
them (one call, where it alone takes ``min_s``). :func:`interleaved` times every engine once per round, the order
reversed every other round. An engine whose runtime starts threads that disturb the others (OpenVINO's, which slowed
torch eager 3x in one process) runs in a :class:`Worker`: its own process, sent each round's input and timing it
there with the same :func:`time_round`, so its figures and the others' come from the same interleaved rounds and the
same statistics. The load other processes put on the machine (:func:`others_share`) counts a worker's CPU time as
the benchmark's own.
"""
from __future__ import annotations

import functools
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from zoo.core.errors import ExportError

__all__ = ["CONTENDED", "Round", "Worker", "busy_ticks", "cpu_clock", "interleaved", "others_share", "time_round"]

Round = Callable[[int, float], float]
"""One engine's round: (warm-up calls, minimum seconds) -> the round's median call, in ms."""

CONTENDED = 0.10
"""Share of the machine's CPU time other processes may take while a figure is timed before it is flagged noisy."""


def time_round(call: Callable[[], Any], warmup: int, min_s: float) -> float:
    """One round: ``warmup`` calls, then the median of at least 3 calls and ``min_s`` seconds of them, in ms; or the
    first call alone where it takes ``min_s`` or longer (a large model's large batch: a timer's resolution and an
    interrupt are lost in it, three calls would triple its cost, and the interval over rounds measures its spread)."""
    for _ in range(warmup):
        call()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < min_s:
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
        if min_s and times[0] >= min_s:
            break
    return statistics.median(times) * 1e3


def interleaved(rounds_of: dict[str, Round], rounds: int, warmup: int, min_s: float,
                into: dict[str, list[float]] | None = None) -> dict[str, list[float]]:
    """``rounds`` rounds in which every engine is timed once, the order reversed every other round (A B, B A, ...),
    so that a change of the machine's load during the run reaches every engine alike."""
    into = into if into is not None else {name: [] for name in rounds_of}
    done = len(into[next(iter(rounds_of))])  # rounds already timed: the alternation continues from them
    for r in range(done, done + rounds):
        order = list(rounds_of) if r % 2 == 0 else list(reversed(rounds_of))
        for name in order:
            into[name].append(rounds_of[name](warmup, min_s))
    return into


def busy_ticks(stat_line: str) -> float:
    """CPU time the whole machine spent busy, in clock ticks, from /proc/stat's first (``cpu``) line: every field
    but idle and iowait."""
    fields = [float(v) for v in stat_line.split()[1:]]
    return sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0.0)


def process_ticks(stat: str) -> float:
    """User and system CPU time of one process, in clock ticks, from its /proc/PID/stat (fields 14 and 15, counted
    after the command name, which may hold spaces and parentheses)."""
    fields = stat.rpartition(")")[2].split()
    return float(fields[11]) + float(fields[12])


def cpu_clock(pids: Iterable[int] = ()) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds busy on the whole machine, CPU seconds of this process and the worker processes
    ``pids``), where /proc/stat exists."""
    own = os.times()
    try:
        busy = busy_ticks(Path("/proc/stat").read_text().split("\n", 1)[0])
        workers = sum(process_ticks(Path(f"/proc/{pid}/stat").read_text()) for pid in pids)
    except (OSError, ValueError, IndexError):
        return time.perf_counter(), 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return time.perf_counter(), busy / tick, own.user + own.system + workers / tick


def others_share(start: tuple[float, float, float], end: tuple[float, float, float]) -> float:
    """The share of the machine's CPU time that other processes used between two cpu_clock() readings."""
    wall = end[0] - start[0]
    others = (end[1] - start[1]) - (end[2] - start[2])
    return max(0.0, others / (wall * (os.cpu_count() or 1))) if wall > 0 else 0.0


Factory = Callable[..., tuple[Callable[[np.ndarray], np.ndarray], dict[str, Any]]]
"""A module-level function (the worker imports it by name) that builds an engine: (predict, facts)."""


class Worker:
    """An engine built by ``factory(*args)`` in a process of its own (spawned: nothing of this one's threads is
    inherited). Called with a batch it returns the logits (accuracy); :meth:`round` times one round there.
    ``facts`` is what the build reported, with the worker's ``process`` id."""

    def __init__(self, factory: Factory, *args: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, factory, args), daemon=True)
        self._process.start()
        child.close()
        self.pid = self._process.pid
        self.facts = self._ask(None)

    def _ask(self, message: tuple | None) -> Any:
        try:
            if message is not None:
                self._conn.send(message)
            status, value = self._conn.recv()
        except (EOFError, OSError) as e:
            self.close()
            raise ExportError(f"the engine's worker process (pid {self.pid}) ended: {e or 'no reply'}; run the engine "
                              "alone with --engines NAME to see why") from None
        if status == "error":
            self.close()
            raise ExportError(value)
        return value

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._ask(("run", x))

    def round(self, x: np.ndarray, warmup: int, min_s: float) -> float:
        return self._ask(("round", x, warmup, min_s))

    def close(self) -> None:
        if self._process.is_alive():
            try:
                self._conn.send(("close",))
            except OSError:
                pass
            self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()


def _serve(conn: Any, factory: Factory, args: tuple) -> None:
    """The worker's loop: build, then answer run and round requests until told to close."""
    try:
        predict, facts = factory(*args)
        conn.send(("ok", {**facts, "process": os.getpid()}))
        while (message := conn.recv())[0] != "close":
            if message[0] == "run":
                conn.send(("ok", predict(message[1])))
            else:
                x, warmup, min_s = message[1:]
                conn.send(("ok", time_round(functools.partial(predict, x), warmup, min_s)))
    except EOFError:  # the benchmark went away
        return
    except Exception as e:  # the runtime's own errors, of many types: reported to the benchmark as one line
        conn.send(("error", f"{factory.__name__} failed in its worker: {type(e).__name__}: {e}".splitlines()[0]))
