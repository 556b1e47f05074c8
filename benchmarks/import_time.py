"""Start-up cost: `import torch`, `import zoo` (light), zoo's API on first use, with timm, `zoo --help`,
`zoo --version`, `zoo list`, side by side.

Each command runs in a fresh interpreter, in interleaved rounds (torch, zoo, ... torch, zoo, ...), so a
machine's load touches all alike; prints one JSON object with every round's seconds, the medians, the
ratios of `zoo --help` and `zoo --version` to `import torch` (median of per-round ratios, bootstrap 95%
interval), the API's cost over torch, and the five largest imports under it (`python -X importtime`).

    python benchmarks/import_time.py --rounds 7
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "import torch": [sys.executable, "-c", "import torch"],
    "import zoo": [sys.executable, "-c", "import zoo"],
    "zoo API": [sys.executable, "-c", "import zoo; zoo.list_models()"],
    "import zoo, timm": [sys.executable, "-c", "import zoo, timm"],
    "zoo --help": [sys.executable, "-m", "zoo.cli", "--help"],
    "zoo --version": [sys.executable, "-m", "zoo.cli", "--version"],
    "zoo list": [sys.executable, "-m", "zoo.cli", "list"],
}


def seconds(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def interval(a: list[float], b: list[float], n: int = 2000) -> tuple[float, float]:
    """95% bootstrap interval of median(a) - median(b), resampling rounds."""
    rng = random.Random(0)
    diffs = sorted(statistics.median(rng.choices(a, k=len(a))) - statistics.median(rng.choices(b, k=len(b))) for _ in range(n))
    return diffs[int(0.025 * n)], diffs[int(0.975 * n)]


def largest_imports() -> list[tuple[str, float]]:
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", "import zoo; zoo.list_models()"], capture_output=True,
                         text=True).stderr
    rows = [line.split("|") for line in err.splitlines() if line.startswith("import time:") and "self" not in line]
    tops = [(r[2].strip(), int(r[1]) / 1e6) for r in rows if r[2].startswith(" ") and not r[2].startswith("  ")]
    return sorted(tops, key=lambda t: -t[1])[:5]


def ratio(a: list[float], b: list[float], n: int = 2000) -> dict[str, float | list[float]]:
    """The median of the per-round ratios a/b, with a 95% bootstrap interval over rounds."""
    per_round = [x / y for x, y in zip(a, b)]
    rng = random.Random(0)
    boot = sorted(statistics.median(rng.choices(per_round, k=len(per_round))) for _ in range(n))
    return {"median": statistics.median(per_round), "ci95": [boot[int(0.025 * n)], boot[int(0.975 * n)]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(rounds):
        for name, cmd in COMMANDS.items():
            times[name].append(seconds(cmd))
    medians = {name: statistics.median(t) for name, t in times.items()}
    low, high = interval(times["zoo API"], times["import torch"])
    print(json.dumps({
        "rounds": times, "median_s": medians,
        "ratio_to_import_torch": {k: ratio(times[k], times["import torch"]) for k in ("zoo --help", "zoo --version")},
        "api_over_torch_s": {"median": medians["zoo API"] - medians["import torch"], "ci95": [low, high]},
        "largest_top_level_imports_under_the_api_s": largest_imports(),
    }, indent=2))


if __name__ == "__main__":
    main()
