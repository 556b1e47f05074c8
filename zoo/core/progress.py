"""Progress bars for long work: one look everywhere (a tqdm bar on stderr with its rate), drawn only on a terminal."""
from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

__all__ = ["progress_bar"]


def progress_bar(enabled: bool, total: int, desc: str, *, unit: str = "img", initial: int = 0) -> Any:
    """A tqdm bar on stderr with its rate, drawn only on a terminal (and when ``enabled``: not ``--quiet``); else
    None. Callers update it with ``bar.update(n)`` and ``bar.close()`` it."""
    if not (enabled and sys.stderr.isatty()):
        return None
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, unit_scale=unit == "img", leave=False,
                dynamic_ncols=True, file=sys.stderr)
