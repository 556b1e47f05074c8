"""What this machine is, for records of where a number was measured: its CPU and its cores."""
from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["cpu_name", "physical_cores"]


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
