"""How long the README's main job takes: `zoo bench` twice, first with an empty ONNX cache, then again (the repeat
takes every export from the cache), each in a fresh interpreter; the machine and its load recorded beside the
seconds. The targets (issue 27): first run <= 100 s and repeat <= 60 s on a quiet 2-core machine.

    python benchmarks/bench_job_time.py --out reports/cpu-bench                 # the main job, into its report folder
    python benchmarks/bench_job_time.py --out /tmp/smoke -- vgg11 --model-arg head=cifar --input mnist --rounds 2

Arguments after ``--`` go to `zoo bench` (default: none, the main job). Prints one JSON object and writes it to
OUT/job_time.json: the wall seconds of each run, the 1-minute load average before and after each, the CPU, its
instruction-set features and zoo's commit. A load average above 0.3 before a run means it was not quiet.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from zoo.core.files import atomic_write_bytes
from zoo.core.machine import cpu_name, git_commit, isa_features, physical_cores


def timed_run(out: Path, cache: Path, extra: list[str]) -> dict[str, float]:
    """One `zoo bench` in a fresh interpreter, its ONNX cache at ``cache``: wall seconds and the load around it."""
    before = os.getloadavg()[0]
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "zoo.cli", "bench", "--out", str(out), "--quiet", *extra], check=True,
                   env={**os.environ, "ZOO_CACHE_DIR": str(cache)}, stdout=subprocess.DEVNULL)
    return {"wall_s": round(time.perf_counter() - start, 1), "load_1min_before": before,
            "load_1min_after": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="zoo bench's --out; job_time.json goes there too")
    parser.add_argument("bench_args", nargs="*", help="after --: arguments for zoo bench")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="zoo-cache-") as cache:
        first = timed_run(args.out, Path(cache), args.bench_args)
        repeat = timed_run(args.out, Path(cache), args.bench_args)
    record = {"command": f"zoo bench --out {args.out} {' '.join(args.bench_args)}".strip(), "first_run": first,
              "repeat_run": repeat, "cpu": cpu_name(), "physical_cores": physical_cores(),
              "cpu_features": isa_features(), "commit": git_commit()}
    text = json.dumps(record, indent=2) + "\n"
    atomic_write_bytes(args.out / "job_time.json", text.encode())
    print(text, end="")


if __name__ == "__main__":
    main()
