"""What the re-measuring rule costs and buys: `zoo bench`'s main job (its models, engines and settings) timed with
today's rule (more rounds only while the rounds a noisy figure would need to settle fit in the time left) and with
the rule before it (more rounds while any figure is noisy, until the budget is spent), side by side.

The two rules alternate in one process (new, old, old, new, ...), after one run that fills the ONNX cache and is not
counted; the old rule is today's code with the projection switched off (export.bench._rounds_wanted answers 1 while
a figure is noisy). Prints one JSON object: per rule, every run's seconds, rounds timed and noisy figures; the
ratio of the two rules' seconds (median of the per-pair ratios, with a 95% bootstrap interval over pairs); the
machine and its load.

    python benchmarks/remeasure_rule.py --pairs 2                           # the main job
    python benchmarks/remeasure_rule.py --pairs 1 --models resnet18 --rounds 2   # a smoke test
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from typing import Any

from zoo.core.machine import cpu_name, git_commit, isa_features
from zoo.export import bench
from zoo.export.stats import bootstrap_interval, summary


def old_rule(rounds: dict[str, list[float]]) -> int:
    """The rule before the projection: one more round wanted while any figure is noisy, whatever it would take."""
    return int(any(summary(r)["noisy"] for r in bench._figures(rounds)))


def one_run(names: list[str], cfg: bench.BenchConfig, data: Any, rule: str) -> dict[str, Any]:
    """One benchmark of ``names`` under ``rule``: its seconds, the rounds it timed and its noisy figures."""
    new_rule = bench._rounds_wanted
    if rule == "old":
        bench._rounds_wanted = old_rule
    try:
        result = bench.run_bench(names, cfg, data=data, progress=False)
    finally:
        bench._rounds_wanted = new_rule
    figures = [f for m in result["models"] for by_batch in m["latency_ms"].values() for f in by_batch.values()]
    return {"seconds": round(result["duration_s"], 1), "rounds": sum(len(f["rounds"]) for f in figures),
            "noisy": sum(f["noisy"] for f in figures), "figures": len(figures), "load_1min": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=2, help="runs of each rule, alternating")
    parser.add_argument("--models", nargs="*", default=[], help="default: the main job's")
    parser.add_argument("--rounds", type=int, default=bench.BenchConfig.rounds)
    args = parser.parse_args()
    names = bench.model_names(args.models, bench.DEFAULT_DATASET)
    data = bench.bench_data(bench.DEFAULT_DATASET, None)
    with tempfile.TemporaryDirectory(prefix="zoo-cache-") as cache:
        os.environ["ZOO_CACHE_DIR"] = cache  # the exports, made once by the first (uncounted) run
        cfg = bench.BenchConfig(rounds=args.rounds)
        one_run(names, cfg, data, "new")
        runs: dict[str, list[dict[str, Any]]] = {"new": [], "old": []}
        for pair in range(args.pairs):
            for rule in ("new", "old") if pair % 2 == 0 else ("old", "new"):
                runs[rule].append(one_run(names, cfg, data, rule))
    ratios = [n["seconds"] / o["seconds"] for n, o in zip(runs["new"], runs["old"])]
    print(json.dumps({
        "models": names, "runs": runs,
        "seconds_new_over_old": {"median": statistics.median(ratios), "ci95": bootstrap_interval(ratios),
                                 "pairs": ratios},
        "cpu": cpu_name(), "cpu_features": isa_features(), "cpus": os.cpu_count(), "commit": git_commit(),
    }, indent=2))


if __name__ == "__main__":
    main()
