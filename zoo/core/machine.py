"""What this machine and this code are, for records of where a number was measured: the CPU, its cores, its
instruction-set features, the commit."""
from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Iterable
from pathlib import Path

__all__ = ["ISA_FEATURES", "cpu_flags", "cpu_name", "git_commit", "has_bf16", "has_vnni", "isa_features", "physical_cores"]

ISA_FEATURES = ("avx2", "avx512f", "avx_vnni", "avx512_vnni", "avx512_bf16", "amx")
"""The instruction-set features that decide which CPU inference paths are fast: AVX2 for fp32, VNNI (the AVX-512 or
the AVX (Alder Lake) form) for int8 dot products, AVX512_BF16 or AMX (tiles with bf16 and int8) for bf16."""


def _cpuinfo() -> list[tuple[str, str]]:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []
    return [(key.strip(), value.strip()) for key, _, value in (line.partition(":") for line in lines)]


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags, as the kernel reports them (/proc/cpuinfo's first ``flags`` line); none elsewhere."""
    return frozenset(next((value.split() for key, value in _cpuinfo() if key == "flags"), []))


def isa_features(flags: Iterable[str] | None = None) -> dict[str, bool]:
    """Each of ISA_FEATURES, from ``flags`` (kernel flag names; this machine's when None): the record a benchmark
    keeps of the machine and chooses its int8 and bf16 settings from. ``amx`` is any AMX tile unit."""
    flags = cpu_flags() if flags is None else frozenset(flags)
    return {name: (any(f.startswith("amx") for f in flags) if name == "amx" else name in flags) for name in ISA_FEATURES}


def has_vnni(features: dict[str, bool]) -> bool:
    """int8 dot products in one instruction (VNNI or AMX): no 16-bit overflow, so int8 needs no reduced range."""
    return features.get("avx512_vnni", False) or features.get("avx_vnni", False) or features.get("amx", False)


def has_bf16(features: dict[str, bool]) -> bool:
    """bf16 arithmetic in hardware (AVX512_BF16 or AMX): elsewhere bf16 is emulated, slower than fp32."""
    return features.get("avx512_bf16", False) or features.get("amx", False)


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
