"""Write zoo/eval_sample.npz: the real test (and calibration) images `zoo bench` uses when no data is given.

A seeded, class-stratified sample of the official splits: 1,000 MNIST and 500 CIFAR-10 test images for
accuracy, and 100 training images of each for int8 calibration (never test images). 1.8 MiB, within the
2 MiB the package may carry. Accuracy on it is a sample's (MNIST to 0.1 point, CIFAR-10 to 0.2), and
every output that uses it says so.

    python benchmarks/make_eval_sample.py --data-dir ../shared/data
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np

from zoo.core.files import atomic_write_bytes
from zoo.data.datasets import get_spec, list_datasets
from zoo.data.loading import SAMPLE_FILE

SEED = 0


def stratified(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    per_class = n // 10
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == k), per_class, replace=False) for k in range(10)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="the directory with mnist.npz and cifar10.npz")
    args = parser.parse_args()
    rng = np.random.default_rng(SEED)
    arrays = {}
    for name in (n for n in list_datasets() if get_spec(n).sample):
        n_test, n_train = get_spec(name).sample
        with np.load(args.data_dir / f"{name}.npz") as full:
            test, train = stratified(full["y_test"], n_test, rng), stratified(full["y_train"], n_train, rng)
            arrays |= {f"{name}_x_test": full["x_test"][test], f"{name}_y_test": full["y_test"][test],
                       f"{name}_x_train": full["x_train"][train], f"{name}_y_train": full["y_train"][train]}
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(SAMPLE_FILE, buf.getvalue())
    print(f"wrote {SAMPLE_FILE} ({len(buf.getvalue()) / 2**20:.2f} MiB)")


if __name__ == "__main__":
    main()
