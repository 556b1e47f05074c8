"""PNG figures, returned as bytes for atomic writes: training curves, comparisons, confusion matrices.

Built on ``matplotlib.figure.Figure`` directly: no pyplot, so no global
backend or figure state is touched in the caller's process.
"""
from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any


def png_bytes(fig, dpi: int = 100) -> bytes:
    """A matplotlib Figure as PNG bytes, for an atomic write."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def history_png(history: Sequence[Mapping[str, Any]]) -> bytes:
    """Loss, top-1 error and learning rate per epoch of one run (the trainer's metrics.jsonl rows)."""
    from matplotlib.figure import Figure  # noqa: PLC0415 lazy: matplotlib costs start-up time; only figures need it
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415 lazy: matplotlib costs start-up time; only figures need it

    epochs = [row["epoch"] for row in history]
    fig = Figure(figsize=(12, 3.6))
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.14, top=0.91, wspace=0.22)  # constrained layout: 2x slower
    loss_ax, err_ax, lr_ax = fig.subplots(1, 3)
    splits = ("train", "val", "test") if all("val_err" in row for row in history) else ("train", "test")
    for split in splits:
        loss_ax.plot(epochs, [row[f"{split}_loss"] for row in history], marker=".", label=split)
        err_ax.plot(epochs, [row[f"{split}_err"] for row in history], marker=".", label=f"{split} top-1")
    if all(row.get("test_top5_err") is not None for row in history):
        err_ax.plot(epochs, [row["test_top5_err"] for row in history], marker=".", ls="--", label="test top-5")
    error_axis(err_ax, [row["test_err"] for row in history])
    lr_ax.plot(epochs, [row["lr"] for row in history], marker=".")
    lr_ax.set_yscale("log")
    for ax, title in ((loss_ax, "cross-entropy loss"), (err_ax, "error (%)"), (lr_ax, "learning rate")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    loss_ax.legend()
    err_ax.legend()
    return png_bytes(fig)


def error_axis(ax, errors: Sequence[float]) -> None:
    """A log error axis where the errors that matter end below 10% (MNIST): a linear 0-90% axis hides them."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter  # noqa: PLC0415 lazy: matplotlib costs start-up time; only figures need it

    if errors and min(errors) < 10:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())


def curves_png(runs: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]], title: str) -> bytes:
    """Top-1 error per epoch of several runs, one colour each: test solid, train dashed (the paper's figures).

    Each run is a list of histories, one per seed: the lines are the means over seeds, the band
    around the test line spans the seeds' lowest to highest.
    """
    import numpy as np  # noqa: PLC0415 lazy: with matplotlib, only figures need it
    from matplotlib.figure import Figure  # noqa: PLC0415 lazy: matplotlib costs start-up time; only figures need it
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415 lazy: matplotlib costs start-up time; only figures need it

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    errors = []
    for i, (label, histories) in enumerate(runs.items()):
        histories = [h for h in histories if h]
        if not histories:
            continue
        n = min(len(h) for h in histories)
        epochs = [r["epoch"] for r in histories[0][:n]]
        test = np.array([[r["test_err"] for r in h[:n]] for h in histories])
        train = np.array([[r["train_err"] for r in h[:n]] for h in histories])
        seeds = f" ({len(histories)} seeds)" if len(histories) > 1 else ""
        ax.plot(epochs, test.mean(0), color=f"C{i}", label=f"{label} test{seeds}")
        if len(histories) > 1:
            ax.fill_between(epochs, test.min(0), test.max(0), color=f"C{i}", alpha=0.15, lw=0)
        ax.plot(epochs, train.mean(0), color=f"C{i}", ls="--", alpha=0.6, label=f"{label} train")
        errors += test.ravel().tolist()
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("top-1 error (%)")
    error_axis(ax, errors)
    ax.set_title(textwrap.fill(title, 90), fontsize=10)  # a long title wraps rather than run off the figure
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return png_bytes(fig)


def confusion_png(matrix: Sequence[Sequence[int]], labels: Sequence[str], title: str) -> bytes:
    """Row-normalised confusion matrix (rows: true class) with the counts written in."""
    import numpy as np  # noqa: PLC0415 lazy: with matplotlib, only figures need it
    from matplotlib.figure import Figure  # noqa: PLC0415 lazy: matplotlib costs start-up time; only figures need it

    m = np.asarray(matrix, dtype=float)
    rates = m / np.maximum(m.sum(1, keepdims=True), 1)
    fig = Figure(figsize=(6.5, 6))
    ax = fig.subplots()
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, str(int(m[i, j])), ha="center", va="center", fontsize=6, color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    return png_bytes(fig)
