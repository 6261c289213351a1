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

_T = TypeVar("_T")


def call_in_threads(function: Callable[..., _T], calls: Sequence[tuple[Any, ...]]) -> list[_T]:
    """``function(*call)`` for each of ``calls``, in order: inline for one, else a thread each."""
    if len(calls) == 1:
        return [function(*calls[0])]
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda call: function(*call), calls))
