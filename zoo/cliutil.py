"""What every command line of zoo and of export shares: argument types, tables and the exit-code rule.

A leaf: it imports nothing of zoo but its errors, so ``zoo.cli`` and ``export``'s
commands both build on it without importing each other.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from zoo.errors import ZooError

__all__ = ["EXIT_USER_ERROR", "format_table", "key_value", "run_command"]

EXIT_USER_ERROR = 2
"""The exit status of a refused input or a failed check (argparse's usage errors use it too)."""


def key_value(item: str) -> tuple[str, Any]:
    """argparse type: ``"stem=cifar"`` -> ``("stem", "cifar")``; the value is JSON when it parses (``aux_logits=false``)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"takes KEY=VALUE, got {item!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def format_table(rows: list[dict], columns: list[str]) -> str:
    """A GitHub-flavoured markdown table of ``rows`` restricted to ``columns``."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse ``argv`` and run its ``func``; a ZooError becomes one line on stderr and exit status 2."""
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ZooError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
