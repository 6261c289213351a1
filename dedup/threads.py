"""Run a compiled kernel over parts of its work, one thread per part.

The kernels release the GIL, so threads share the cores without pickling
anything. Each caller splits its own work (rows, pairs, cells) into
contiguous parts, with a minimum size below which a thread costs more than
it saves; a single part runs inline, with no pool.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

_T = TypeVar("_T")


def call_in_threads(function: Callable[..., _T], calls: Sequence[tuple[Any, ...]]) -> list[_T]:
    """``function(*call)`` for each of ``calls``, in order: inline for one, else a thread each."""
    if len(calls) == 1:
        return [function(*calls[0])]
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda call: function(*call), calls))


def runs_of_cells(starts: np.ndarray, jobs: int, min_cells: int) -> list[tuple[int, int]]:
    """``jobs`` contiguous runs ``(first, stop)`` of the items whose cells begin at ``starts``
    (``starts[-1]`` cells in all), of about equal cells; one run for fewer than ``min_cells``."""
    items, cells = starts.size - 1, int(starts[-1])
    parts = max(1, min(jobs, items, cells // min_cells))
    cuts = np.searchsorted(starts, np.arange(1, parts) * (cells / parts))
    bounds = [0, *np.unique(np.clip(cuts, 1, items - 1)).tolist(), items]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a] or [(0, 0)]
