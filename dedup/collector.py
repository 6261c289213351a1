"""Pausing Python's cyclic garbage collector while a run builds its records.

A run holds a record per document (the document, its analysis, its output
row), none of them in a reference cycle. The cyclic collector nonetheless
rescans all of them, again and again, as their number grows: on synthetic
news (``benchmarks/speed.py``), 5% of a 100,000-article run and 8% of a
million-article one, most of it while the workers wait on the main process.
Reference counting still frees everything as usual while it is paused.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Disable the cyclic collector inside the block; re-enable it after if it was enabled.

    Nested and concurrent uses are safe: a block that found it disabled
    leaves it to whoever disabled it, so it ends enabled if it started so.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
