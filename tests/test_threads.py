"""call_in_threads (dedup.threads): results in call order, one call inline."""

from __future__ import annotations

import threading

from dedup.threads import call_in_threads


def test_results_come_in_call_order_from_threads():
    seen: set[int] = set()

    def work(k: int, scale: int) -> int:
        seen.add(threading.get_ident())
        return k * scale

    assert call_in_threads(work, [(k, 10) for k in range(6)]) == [0, 10, 20, 30, 40, 50]
    assert threading.get_ident() not in seen


def test_one_call_runs_inline():
    assert call_in_threads(lambda: threading.get_ident(), [()]) == [threading.get_ident()]
