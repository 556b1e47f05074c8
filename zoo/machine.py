"""What this machine and this code are, for records of where a number was measured: the CPU, its cores, the commit."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

__all__ = ["cpu_name", "git_commit", "physical_cores"]


def _cpuinfo() -> list[tuple[str, str]]:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []
    return [(key.strip(), value.strip()) for key, _, value in (line.partition(":") for line in lines)]


def cpu_name() -> str:
    """The CPU's model name, as the kernel reports it."""
    return next((value for key, value in _cpuinfo() if key == "model name"), platform.processor() or platform.machine())


def physical_cores() -> int:
    """Cores, not hardware threads (two threads of one core share its arithmetic); os.cpu_count() if unknown."""
    cores, physical = set(), "0"
    for key, value in _cpuinfo():
        if key == "physical id":
            physical = value
        elif key == "core id":
            cores.add((physical, value))
    return len(cores) or os.cpu_count() or 1


def git_commit() -> str | None:
    """The commit of the zoo source tree (``+dirty`` when it has changes), or None outside a git checkout.

    ``$ZOO_GIT_COMMIT``, when set, wins: a copy of the tree sent to another machine may carry no
    ``.git`` or a stale one.
    """
    if os.environ.get("ZOO_GIT_COMMIT"):
        return os.environ["ZOO_GIT_COMMIT"]
    src = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=src, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}+dirty" if dirty else commit
