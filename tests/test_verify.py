"""Tests for dedup.verify: sparse pair scores against dense numpy, and the adjustments."""

from __future__ import annotations

import math
import os
import time
import zlib
from datetime import datetime, timedelta, timezone
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dedup.verify as verify_module
from dedup.vectors import DocumentFrequencies, feature_counts, tfidf_rows
from dedup.verify import (
    days_apart,
    pair_cosines,
    pair_jaccards,
    reach_days,
    score_ceilings,
    time_factor,
)

VOCAB = ["kim", "putin", "kore", "rusya", "zirve", "ziyaret", "anlaşma", "füze", "uzay", "x"]
TERM_LISTS = st.lists(st.lists(st.sampled_from(VOCAB), max_size=12), min_size=1, max_size=8)


def tfidf_matrix(term_lists):
    """TF-IDF rows of unigram features, with the batch's own document frequencies."""
    features, counts = feature_counts(term_lists, 1)
    return tfidf_rows(features, counts, DocumentFrequencies.count(features))


def dense_cosines(matrix, rows, cols) -> np.ndarray:
    dense = matrix.toarray()
    out = []
    for i, j in zip(rows, cols, strict=True):
        norm = np.linalg.norm(dense[i]) * np.linalg.norm(dense[j])
        out.append(0.0 if norm == 0 else float(dense[i] @ dense[j]) / norm)
    return np.array(out)


@st.composite
def batches_with_pairs(draw):
    term_lists = draw(TERM_LISTS)
    n = len(term_lists)
    pairs = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=20))
    rows = np.array([i for i, _ in pairs], dtype=np.int64)
    cols = np.array([j for _, j in pairs], dtype=np.int64)
    return term_lists, rows, cols


@settings(max_examples=100, deadline=None)
@given(case=batches_with_pairs())
def test_pair_cosines_equal_dense_numpy(case):
    term_lists, rows, cols = case
    matrix, _ = tfidf_matrix(term_lists)
    got = pair_cosines(matrix, rows, cols)
    np.testing.assert_allclose(got, dense_cosines(matrix, rows, cols), atol=1e-6)  # float32 rows
    assert np.all((got >= 0) & (got <= 1))


@settings(max_examples=50, deadline=None)
@given(case=batches_with_pairs(), batch=st.integers(1, 5))
def test_pair_cosines_batching_does_not_change_result(case, batch):
    term_lists, rows, cols = case
    matrix, _ = tfidf_matrix(term_lists)
    whole = pair_cosines(matrix, rows, cols)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(verify_module, "_PAIR_BATCH", batch)
        np.testing.assert_array_equal(pair_cosines(matrix, rows, cols), whole)


@settings(max_examples=100, deadline=None)
@given(term_lists=TERM_LISTS)
def test_tfidf_rows_are_l2_normalised(term_lists):
    matrix, _ = tfidf_matrix(term_lists)
    assert matrix.shape[0] == len(term_lists)
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    expected = np.array([1.0 if terms else 0.0 for terms in term_lists])
    np.testing.assert_allclose(norms, expected, atol=1e-6)  # float32 rows


def test_tfidf_is_sublinear_with_smoothed_idf():
    # Two documents: ["a", "a", "b"] and ["b"].
    # idf(a) = ln((1 + 2) / (1 + 1)) + 1, idf(b) = ln(3 / 3) + 1 = 1; tf(a) = 1 + ln 2.
    matrix, columns = tfidf_matrix([["a", "a", "b"], ["b"]])
    hash_a, hash_b = zlib.crc32(b"a"), zlib.crc32(b"b")
    assert columns.tolist() == sorted([hash_a, hash_b])
    raw_a = (1 + math.log(2)) * (math.log(1.5) + 1)
    raw_b = 1.0
    norm = math.hypot(raw_a, raw_b)
    by_hash = {hash_a: [raw_a / norm, 0.0], hash_b: [raw_b / norm, 1.0]}
    expected = np.array([by_hash[int(h)] for h in columns]).T
    np.testing.assert_allclose(matrix.toarray(), expected)
    assert pair_cosines(matrix, np.array([0]), np.array([1]))[0] == pytest.approx(raw_b / norm)


def test_identical_documents_have_cosine_one():
    matrix, _ = tfidf_matrix([["kim", "putin"], ["kim", "putin"], ["uzay"]])
    got = pair_cosines(matrix, np.array([0, 0]), np.array([1, 2]))
    assert got[0] == pytest.approx(1.0)
    assert got[1] == 0.0


def test_empty_batches_do_not_fail():
    matrix, _ = tfidf_matrix([])
    assert matrix.shape == (0, 0)
    matrix, _ = tfidf_matrix([[], []])
    assert matrix.shape == (2, 0)
    assert pair_cosines(matrix, np.array([0]), np.array([1])).tolist() == [0.0]
    empty = np.empty(0, dtype=np.int64)
    assert pair_cosines(matrix, empty, empty).size == 0
    # One empty document in a batch is an all-zero row.
    matrix, _ = tfidf_matrix([[], ["a"]])
    assert pair_cosines(matrix, np.array([0]), np.array([1])).tolist() == [0.0]


def test_time_factor():
    gaps = np.array([0.0, 2.0, 3.0, np.nan, 33.0, 63.0, 1000.0])
    got = time_factor(gaps, 3.0, 30.0)
    np.testing.assert_allclose(got[:4], 1.0)  # within the window, or a date unknown
    assert got[4] == pytest.approx(math.exp(-1))
    assert got[5] == pytest.approx(math.exp(-2))
    assert 0 < got[6] < 1e-10
    assert np.all(np.diff(got[[0, 1, 2, 4, 5, 6]]) <= 0)
    assert time_factor(gaps, 3.0, 0.0).tolist() == [1.0] * len(gaps)
    assert time_factor(np.empty(0), 3.0, 30.0).size == 0


def test_days_apart():
    published = [datetime(2024, 6, 19), datetime(2024, 6, 21, 12), None, datetime(2024, 6, 19)]
    rows, cols = np.array([0, 1, 0, 2, 0]), np.array([1, 0, 2, 2, 3])
    got = days_apart(published, rows, cols)
    assert got[0] == pytest.approx(2.5)
    assert got[1] == pytest.approx(2.5)
    assert np.isnan(got[2]) and np.isnan(got[3])
    assert got[4] == 0.0
    assert days_apart([], np.empty(0, np.int64), np.empty(0, np.int64)).size == 0


@pytest.fixture
def berlin_time():
    """Run with a local timezone that has daylight saving, then restore."""
    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset is not available")
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Berlin"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


def test_days_apart_ignores_the_local_timezone(berlin_time):
    published = [datetime(2024, 3, 30), datetime(2024, 4, 1)]  # DST starts 2024-03-31 in Berlin
    got = days_apart(published, np.array([0]), np.array([1]))
    assert got[0] == pytest.approx(2.0)


def test_days_apart_accepts_timezone_aware_datetimes():
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    published = [start, start + timedelta(days=4)]
    assert days_apart(published, np.array([0]), np.array([1]))[0] == pytest.approx(4.0)


SETS = st.lists(st.sets(st.integers(0, 30), max_size=15), min_size=1, max_size=6)


@settings(max_examples=100, deadline=None)
@given(sets=SETS, data=st.data())
def test_pair_jaccards_equal_python_sets(sets, data):
    n = len(sets)
    pairs = data.draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1))))
    hash_sets = [np.array(sorted(s), dtype=np.uint32) for s in sets]
    rows = [i for i, _ in pairs]
    cols = [j for _, j in pairs]
    got = pair_jaccards(hash_sets, rows, cols)
    expected = [
        len(sets[i] & sets[j]) / len(sets[i] | sets[j]) if sets[i] | sets[j] else 0.0
        for i, j in pairs
    ]
    np.testing.assert_allclose(got, expected)
    assert got.dtype == np.float64


@settings(max_examples=200, deadline=None)
@given(case=batches_with_pairs())
def test_pair_cosines_equal_the_reference_bit_for_bit(case):
    term_lists, rows, cols = case
    matrix, _ = tfidf_matrix(term_lists)
    np.testing.assert_array_equal(
        pair_cosines(matrix, rows, cols), verify_module.reference_pair_cosines(matrix, rows, cols)
    )


def test_pair_cosines_accept_unsorted_indices_and_any_pair_order():
    matrix, _ = tfidf_matrix([["kim", "putin", "kore"], ["kore", "kim"], ["uzay", "kim"]])
    shuffled = matrix.copy()
    for i in range(shuffled.shape[0]):  # reverse each row's column order
        lo, hi = shuffled.indptr[i], shuffled.indptr[i + 1]
        shuffled.indices[lo:hi] = shuffled.indices[lo:hi][::-1].copy()
        shuffled.data[lo:hi] = shuffled.data[lo:hi][::-1].copy()
    shuffled.has_sorted_indices = False
    rows, cols = np.array([2, 0, 1, 0]), np.array([0, 1, 2, 2])
    np.testing.assert_array_equal(
        pair_cosines(shuffled, rows, cols), verify_module.reference_pair_cosines(matrix, rows, cols)
    )


def test_pair_cosines_with_rows_of_very_different_lengths():
    # A row of thousands of features needs a larger table than the rows after it.
    rng = np.random.default_rng(5)
    words = [f"w{k}" for k in range(5000)]
    term_lists = [list(rng.choice(words, size=n)) for n in (3000, 4, 40, 2500, 7, 300)]
    matrix, _ = tfidf_matrix(term_lists)
    rows, cols = np.triu_indices(len(term_lists))
    order = rng.permutation(rows.size)
    np.testing.assert_array_equal(
        pair_cosines(matrix, rows[order], cols[order]),
        verify_module.reference_pair_cosines(matrix, rows[order], cols[order]),
    )


@settings(max_examples=50, deadline=None)
@given(case=batches_with_pairs(), jobs=st.integers(2, 5))
def test_pair_cosines_do_not_depend_on_the_threads(case, jobs):
    term_lists, rows, cols = case
    matrix, _ = tfidf_matrix(term_lists)
    # Threads for a handful of pairs too, which pair_cosines would not start.
    with mock.patch.object(verify_module, "_MIN_THREAD_PAIRS", 1):
        threaded = pair_cosines(matrix, rows, cols, jobs)
    np.testing.assert_array_equal(threaded, pair_cosines(matrix, rows, cols))


@settings(max_examples=100, deadline=None)
@given(
    case=batches_with_pairs(),
    data=st.data(),
    window=st.floats(0, 10),
    scale=st.sampled_from([0.0, 1.0, 30.0]),
    reference=st.sampled_from([0.0, 1.0, 25.0]),
)
def test_no_pair_scores_over_its_ceiling(case, data, window, scale, reference):
    from dedup.vectors import length_weights
    from dedup.verify import date_decays, score_ceilings, story_scores

    term_lists, rows, cols = case
    matrix, _ = tfidf_matrix(term_lists)
    weights = length_weights(np.array([len(set(t)) for t in term_lists]), reference)
    days = data.draw(
        st.lists(
            st.integers(0, 400) | st.none(), min_size=len(term_lists), max_size=len(term_lists)
        )
    )
    published = [None if d is None else datetime(2024, 1, 1) + timedelta(days=d) for d in days]
    scores = story_scores(matrix, weights, published, rows, cols, window, scale)["score"]
    decays = date_decays(published, rows, cols, window, scale)
    ceilings = score_ceilings(weights, decays, rows, cols)
    assert np.all(scores <= ceilings)
    given = story_scores(matrix, weights, published, rows, cols, window, scale, decays=decays)
    np.testing.assert_array_equal(given["score"], scores)
    identical = rows == cols  # a document with itself: cosine 1 (when it has terms)
    has_terms = np.array([len(t) > 0 for t in term_lists])
    same = identical & has_terms[rows]
    np.testing.assert_allclose(scores[same], ceilings[same], rtol=1e-6)  # float32 rows
    sets, _ = feature_counts(term_lists, 1)
    jaccards = story_scores(None, None, published, rows, cols, window, scale, sets)["score"]
    assert np.all(jaccards <= score_ceilings(None, decays, rows, cols))


@settings(max_examples=300, deadline=None)
@given(
    weights=st.tuples(st.floats(0.001, 1.0), st.floats(0.001, 1.0)),
    gap=st.floats(0, 500),
    window=st.floats(0, 10),
    scale=st.sampled_from([0.0, 1.0, 30.0]),
    floor=st.floats(0.001, 0.5),
)
def test_reach_days_keeps_every_pair_that_can_reach_the_floor(weights, gap, window, scale, floor):
    w = np.array(weights)
    decay = time_factor(np.array([gap]), window, scale)
    ceiling = score_ceilings(w, decay, np.array([0]), np.array([1]))[0]
    reach = reach_days(w[:1], floor, window, scale)[0]
    if ceiling >= floor:
        assert gap <= reach
    if np.isfinite(reach) and reach >= 0:
        # Tight: with a partner of weight 1, just inside reaches the floor, just past does not.
        inside, past = time_factor(np.array([reach - 1e-3, reach + 1e-3]), window, scale) * w[0]
        assert inside >= floor > past
    else:
        assert (scale <= 0 and reach == np.inf) or (w[0] < floor and reach < 0)
