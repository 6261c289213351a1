"""Tests for dedup.band_index: in-memory band runs against a plain dict of buckets."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba.typed import List

from dedup import band_index
from dedup.band_index import (
    BandRun,
    BandRuns,
    DateWindow,
    merge_plan,
    reference_bucket_mates,
    run_limit,
)


@st.composite
def stored_runs(draw):
    """Runs of ascending document numbers with few distinct keys (big buckets), and queries."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    bands = draw(st.integers(1, 6))
    spread = draw(st.integers(1, 5))
    runs, first = [], draw(st.integers(0, 3))
    for size in draw(st.lists(st.integers(0, 25), min_size=1, max_size=5)):
        docs = first + np.cumsum(rng.integers(1, 4, size))
        first = int(docs[-1]) + 1 if size else first
        runs.append((docs, rng.integers(0, spread, (size, bands)).astype(np.uint64)))
    queries = rng.integers(0, spread + 1, (draw(st.integers(0, 12)), bands)).astype(np.uint64)
    return runs, queries, draw(st.integers(0, 8)), draw(st.integers(1, bands))


def pairs_of(owners, docs) -> set[tuple[int, int]]:
    return set(zip(owners.tolist(), docs.tolist(), strict=True))


@settings(max_examples=150, deadline=None)
@given(case=stored_runs(), jobs=st.integers(1, 4))
def test_candidates_equal_the_dict_of_buckets(case, jobs):
    runs, queries, max_bucket, min_bands = case
    index = BandRuns()
    index.runs = [BandRun.of(docs, keys) for docs, keys in runs]
    # Threads for a few signatures too, which candidates would not start.
    with mock.patch.object(band_index, "_MIN_THREAD_ROWS", 1):
        owners, docs = index.candidates(queries, max_bucket, min_bands, jobs)
    assert pairs_of(owners, docs) == reference_bucket_mates(runs, queries, max_bucket, min_bands)
    assert np.all(np.diff(owners * (docs.max(initial=0) + 1) + docs) > 0)  # by owner, then doc


@st.composite
def date_windows(draw, rows: int, docs: int) -> DateWindow:
    """Days of some documents (some unknown), of each row (some unknown) and reaches."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    def days(count: int) -> np.ndarray:
        out = rng.integers(0, 20, count).astype(np.float64)
        out[rng.random(count) < 0.2] = np.nan
        return out

    reach = rng.choice([-1.0, 0.0, 2.0, 5.5, np.inf], rows)
    return DateWindow(days(draw(st.integers(0, docs))), days(rows), reach)


@settings(max_examples=150, deadline=None)
@given(case=stored_runs(), data=st.data(), jobs=st.integers(1, 3))
def test_a_date_window_drops_exactly_the_documents_out_of_reach(case, data, jobs):
    runs, queries, max_bucket, min_bands = case
    last = max((int(docs[-1]) for docs, _ in runs if docs.size), default=0)
    window = data.draw(date_windows(queries.shape[0], last + 2))
    index = BandRuns()
    index.runs = [BandRun.of(docs, keys) for docs, keys in runs]
    with mock.patch.object(band_index, "_MIN_THREAD_ROWS", 1):
        owners, docs = index.candidates(queries, max_bucket, min_bands, jobs, window)
    expected = reference_bucket_mates(runs, queries, max_bucket, min_bands, window)
    assert pairs_of(owners, docs) == expected
    # The window only drops pairs: those left are pairs without it.
    assert expected <= reference_bucket_mates(runs, queries, max_bucket, min_bands)


def test_a_date_window_counts_buckets_after_the_bound():
    # Bucket 7 holds documents 1-3, the bound gives 2 and 3; the window drops 3.
    index = BandRuns()
    index.runs = [BandRun.of(np.array([1, 2, 3]), np.full((3, 1), 7))]
    window = DateWindow(np.array([0.0, 0.0, 9.0, 30.0]), np.array([10.0]), np.array([2.0]))
    owners, docs = index.candidates(np.array([[7]]), 2, 1, window=window)
    assert docs.tolist() == [2]  # document 1 is in reach but past the bound


@settings(max_examples=100, deadline=None)
@given(case=stored_runs())
def test_merged_runs_give_the_same_candidates(case):
    runs, queries, max_bucket, min_bands = case
    separate, merged = BandRuns(), BandRuns()
    separate.runs = [BandRun.of(docs, keys) for docs, keys in runs]
    one = separate.runs[0]
    for run in separate.runs[1:]:
        one = one.merged(run)
    merged.runs = [BandRun.from_bytes(one.to_bytes())]
    assert pairs_of(*merged.candidates(queries, max_bucket, min_bands)) == pairs_of(
        *separate.candidates(queries, max_bucket, min_bands)
    )


@settings(max_examples=150, deadline=None)
@given(
    keys=st.lists(st.integers(0, 2**64 - 1), max_size=400),
    known=st.lists(st.integers(0, 399), max_size=30),
    unknown=st.lists(st.integers(0, 2**64 - 1), max_size=30),
)
def test_bucket_bounds_equal_a_binary_search(keys, known, unknown):
    # Long runs of distinct keys and few rows: long gallops, as a query makes.
    run = np.sort(np.array(keys, dtype=np.uint64))
    wanted = [int(run[k % run.size]) for k in known] if run.size else []
    query = np.array(wanted + unknown, dtype=np.uint64).reshape(-1, 1)
    bounds = band_index._bucket_bounds(List([run.reshape(1, -1)]), query)
    np.testing.assert_array_equal(bounds[0, 0, :, 0], np.searchsorted(run, query[:, 0], "left"))
    np.testing.assert_array_equal(bounds[0, 1, :, 0], np.searchsorted(run, query[:, 0], "right"))


def test_a_bucket_over_the_bound_gives_its_latest_documents():
    index = BandRuns()
    index.runs = [
        BandRun.of(np.array([1, 2, 3]), np.full((3, 1), 7)),
        BandRun.of(np.array([8, 9]), np.array([[7], [5]])),
    ]
    owners, docs = index.candidates(np.array([[7]], np.uint64), max_bucket=2, min_bands=1)
    assert docs.tolist() == [3, 8] and owners.tolist() == [0, 0]
    _, docs = index.candidates(np.array([[7]], np.uint64), max_bucket=0, min_bands=1)
    assert docs.tolist() == [1, 2, 3, 8]


def test_runs_need_ascending_documents():
    with pytest.raises(ValueError, match="ascend"):
        BandRun.of(np.array([3, 2]), np.zeros((2, 1)))
    older = BandRun.of(np.array([5]), np.zeros((1, 1)))
    with pytest.raises(ValueError, match="higher"):
        older.merged(BandRun.of(np.array([4]), np.zeros((1, 1))))


def test_merge_plan_keeps_about_log_runs():
    sizes: list[int] = []
    for _ in range(100):
        sizes.append(10_000)
        merge = merge_plan(sizes)
        if merge:
            sizes[-merge:] = [sum(sizes[-merge:])]
        assert sum(sizes) == 10_000 * (_ + 1)
        assert len(sizes) <= 8  # log2(100) + 1
    assert merge_plan([100]) == 0 and merge_plan([1000, 10]) == 0
    assert merge_plan([10, 10]) == 2 and merge_plan([40, 20, 10, 10]) == 4


def test_merge_plan_never_makes_a_run_over_the_limit():
    sizes: list[int] = []
    for step in range(200):
        sizes.append(10_000)
        merge = merge_plan(sizes, limit=65_000)
        if merge:
            sizes[-merge:] = [sum(sizes[-merge:])]
        assert max(sizes) <= 65_000 and sum(sizes) == 10_000 * (step + 1)
    assert len(sizes) <= 2_000_000 // 65_000 * 2 + 8  # full runs, and a log tail
    assert merge_plan([10, 10], limit=15) == 0 and merge_plan([10, 10], limit=20) == 2


def test_a_run_at_the_limit_fits_one_blob():
    # 128 bands: SQLite's 1e9-byte blob would hold 650k documents' keys.
    assert 200_000 < run_limit(128) < 650_000
    small, large = (
        len(BandRun.of(np.arange(n), np.zeros((n, 128), np.uint64)).to_bytes()) for n in (500, 1000)
    )
    per_document = (large - small) / 500
    assert large + per_document * (run_limit(128) - 1000) < 1e9
