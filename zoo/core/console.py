"""What every command line of zoo and of export shares, and what a library module may print with: argument
types, the ``--quiet`` flag, markdown tables, the exit-code rule and the smoke-test size (``ZOO_SMOKE``).

A leaf: it imports nothing of zoo but its errors and the environment's checks (zoo.core.environment), so the CLI
(``zoo.cli``, ``zoo.cli.commands``, ``zoo.cli.cliutil``) and export's modules build on it without importing each other.
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
from collections.abc import Callable
from typing import Any

from zoo.core.environment import check_environment, debug_enabled, smoke_enabled
from zoo.core.errors import RunStopped, ZooError

__all__ = ["EXIT_CODES", "EXIT_OS_ERROR", "EXIT_STOPPED", "EXIT_USER_ERROR", "SMOKE_SIZE", "add_quiet", "format_table",
           "key_value", "positive", "run_command", "smoke_size"]

EXIT_USER_ERROR = 2
"""The exit status of a refused input or a failed check (argparse's usage errors use it too)."""
EXIT_OS_ERROR = 1
"""The exit status of a failure of the system: a file that cannot be read or written, a full disk."""
EXIT_STOPPED = 130
"""The exit status of a run stopped by SIGINT / SIGTERM, its state saved (the shell's 128 + SIGINT)."""
EXIT_CODES = (
    "exit status: 0 done; 1 the system failed (a file that cannot be read or written, a full disk); "
    "2 a refused input or a failed check (usage, data, weights, export parity); 130 a run stopped by "
    "SIGINT/SIGTERM with its state saved. Each error is one line; --debug (or ZOO_DEBUG=1) shows the traceback."
)


SMOKE_SIZE: dict[str, Callable[[Any], Any]] = {
    "epochs": lambda n: 1,  # training: one epoch
    "train_subset": lambda n: min(n or 64, 64),  # of at most 64 training images (0 means all)
    "test_subset": lambda n: min(n or 64, 64),  # tested and evaluated (zoo eval) on at most 64
    "synthetic": lambda n: min(n, 64),
    "val_split": lambda n: min(n, 32),
    "quick": lambda on: True,  # reproductions: --quick, one seed, in this process
    "seeds": lambda seeds: [1],
    "jobs": lambda n: 1,
    "rounds": lambda n: 2,  # benchmarks: 2 rounds, at batch 1, accuracy on 64 images
    "batch_sizes": lambda sizes: [1],
    "eval_images": lambda n: min(n or 64, 64),
}
"""What ``ZOO_SMOKE=1`` does to any command's arguments, by their name (train, reproduce, bench take them): every
command runs at smoke-test size, which is how tests/test_docs.py runs every command of the README and docs/. The
one place it is applied is :func:`run_command`; the README names the variable and what it does."""


def smoke_size(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` at smoke-test size (:data:`SMOKE_SIZE`); arguments it does not name stay as given."""
    for name, cap in SMOKE_SIZE.items():
        if hasattr(args, name):
            setattr(args, name, cap(getattr(args, name)))
    return args


def positive(kind: type) -> Callable[[str], Any]:
    """argparse type: a number of ``kind`` (int or float) greater than zero."""

    noun = {int: "whole number", float: "number"}[kind]

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"takes a {noun} > 0, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"takes a {noun} > 0, got {text!r}")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def key_value(item: str) -> tuple[str, Any]:
    """argparse type: ``"stem=cifar"`` -> ``("stem", "cifar")``.

    The value is a Python literal when it parses as one (``aux_logits=False``, ``lr=0.1``, as timm's
    ParseKwargs reads them), else JSON (``aux_logits=false``), else the string itself. Whether the key
    and value fit is checked where they are used, against the model's or the recipe's signature.
    """
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"takes KEY=VALUE, got {item!r}")
    for parse in (ast.literal_eval, json.loads):
        try:
            return key, parse(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return key, value


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """``--quiet``, for the commands that draw a :func:`progress_bar`."""
    parser.add_argument("--quiet", action="store_true", help="no progress bar (none is drawn when stderr is not a terminal)")


def format_table(rows: list[dict], columns: list[str]) -> str:
    """A GitHub-flavoured markdown table of ``rows`` restricted to ``columns``."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse ``argv`` and run its ``func``. One of our errors becomes one line on stderr and exit status 2, a
    system error (OSError) one line and status 1; anything else is a bug and keeps its traceback."""
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    try:
        debug = debug or debug_enabled()
        check_environment()  # a bad variable is one line before any work
        return args.func(smoke_size(args) if smoke_enabled() else args)
    except KeyboardInterrupt:
        print(f"{parser.prog}: stopped (Ctrl-C)", file=sys.stderr)
        return EXIT_STOPPED
    except RunStopped as e:
        print(f"{parser.prog}: {e}", file=sys.stderr)
        return EXIT_STOPPED
    except ZooError as e:
        if debug:
            raise
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as e:
        if debug:
            raise
        where = f": {e.filename}" if e.filename else ""
        print(f"{parser.prog}: error: {e.strerror or e}{where}", file=sys.stderr)
        return EXIT_OS_ERROR
