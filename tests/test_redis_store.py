"""Tests for dedup.redis_store's bucket counting, which needs no Redis server."""

from __future__ import annotations

from collections import Counter
from unittest import mock

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dedup import redis_store


@st.composite
def bucket_hits(draw):
    """Buckets of distinct stored documents, each band's own, and each new row's in each band."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    stored = draw(st.integers(1, 12))
    rows = np.sort(rng.choice(50, draw(st.integers(0, 12)), replace=False))
    buckets, which = [], []
    for _ in range(draw(st.integers(1, 5))):
        first, count = len(buckets), draw(st.integers(1, 4))
        buckets += [
            rng.choice(stored, int(rng.integers(0, stored + 1)), replace=False)
            for _ in range(count)
        ]
        which.append(rng.integers(first, first + count, rows.size))
    return rows, np.array(which, dtype=np.int64), buckets, stored, draw(st.integers(1, len(which)))


@settings(max_examples=200, deadline=None)
@given(case=bucket_hits(), block=st.sampled_from([1, 2, 5, 1000]))
def test_shared_buckets_count_as_a_counter_of_pairs_does(case, block):
    rows, which, buckets, stored, min_bands = case
    expected = Counter(
        (int(row), int(member))
        for band in which
        for row, bucket in zip(rows, band, strict=True)
        for member in buckets[bucket]
    )
    members = np.concatenate(buckets).astype(np.int64)
    sizes = np.array([b.size for b in buckets], dtype=np.int64)
    with mock.patch.object(redis_store, "_HIT_ROWS", block):
        owners, mates = redis_store._shared_buckets(rows, which, members, sizes, stored, min_bands)
    assert list(zip(owners.tolist(), mates.tolist(), strict=True)) == sorted(
        pair for pair, shared in expected.items() if shared >= min_bands
    )
