"""Tests for dedup.shingle: the vectorised hashes against the plain per-shingle reference."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dedup.errors import ConfigError
from dedup.shingle import (
    MAX_SHINGLE_SIZE,
    check_shingle_spec,
    fmix32,
    run_lengths,
    shingle_hash_of,
    shingle_hashes,
    shingles,
    term_hashes,
)

# Terms are what the analyser emits: non-empty and without spaces.
TERM = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), min_size=1
).filter(lambda t: " " not in t)
TERMS = st.lists(TERM, max_size=20)
SMALL_VOCAB_TERMS = st.lists(
    st.sampled_from(["a", "b", "c", "kore", "İstanbul", "日本"]), max_size=25
)


def reference_word_hashes(terms: list[str], size: int) -> np.ndarray:
    """Per-window loop over the term lists themselves (not over split strings)."""
    n = min(size, len(terms))
    if n == 0:
        return np.empty(0, dtype=np.uint32)
    windows = [terms[i : i + n] for i in range(len(terms) - n + 1)]
    return np.array(sorted({shingle_hash_of(w, "word") for w in windows}), dtype=np.uint32)


def reference_char_hashes(terms: list[str], size: int) -> np.ndarray:
    values = {shingle_hash_of(s, "char") for s in shingles(terms, "char", size)}
    return np.array(sorted(values), dtype=np.uint32)


@settings(max_examples=100, deadline=None)
@given(terms=st.one_of(TERMS, SMALL_VOCAB_TERMS), size=st.integers(1, 5))
def test_word_hashes_equal_reference(terms, size):
    got = shingle_hashes(terms, "word", size)
    assert got.dtype == np.uint32
    np.testing.assert_array_equal(got, reference_word_hashes(terms, size))


@settings(max_examples=100, deadline=None)
@given(terms=st.one_of(TERMS, SMALL_VOCAB_TERMS), size=st.integers(1, 5))
def test_char_hashes_equal_reference(terms, size):
    got = shingle_hashes(terms, "char", size)
    assert got.dtype == np.uint32
    np.testing.assert_array_equal(got, reference_char_hashes(terms, size))


@settings(max_examples=100, deadline=None)
@given(terms=st.one_of(TERMS, SMALL_VOCAB_TERMS), size=st.integers(1, 5))
def test_readable_word_shingles_are_the_windows(terms, size):
    n = min(size, len(terms))
    expected = [" ".join(terms[i : i + n]) for i in range(len(terms) - n + 1)] if n else []
    assert shingles(terms, "word", size) == expected


@settings(max_examples=50, deadline=None)
@given(terms=SMALL_VOCAB_TERMS, size=st.integers(1, 5))
def test_hashes_sorted_and_distinct(terms, size):
    for kind in ("word", "char"):
        got = shingle_hashes(terms, kind, size)
        assert np.all(np.diff(got.astype(np.int64)) > 0)


def test_word_order_matters():
    assert (
        shingle_hashes(["a", "b"], "word", 2).tolist()
        != shingle_hashes(["b", "a"], "word", 2).tolist()
    )
    assert shingle_hash_of(["a", "b"]) != shingle_hash_of(["b", "a"])
    assert shingle_hash_of("ab", "char") != shingle_hash_of("ba", "char")
    # As sets of unigrams they are the same.
    np.testing.assert_array_equal(
        shingle_hashes(["a", "b"], "word", 1), shingle_hashes(["b", "a"], "word", 1)
    )


def test_repeated_term_is_not_the_same_as_one_term():
    assert (
        shingle_hashes(["a", "a"], "word", 2).tolist() != shingle_hashes(["a"], "word", 1).tolist()
    )


@pytest.mark.parametrize("size", [3, 5, MAX_SHINGLE_SIZE])
def test_short_input_gives_one_shingle(size):
    # Two terms (and "x y", three characters) are shorter than the shingle.
    assert shingle_hashes(["x", "y"], "word", size).tolist() == [shingle_hash_of(["x", "y"])]
    assert shingles(["x", "y"], "word", size) == ["x y"]
    if size > 3:
        assert shingle_hashes(["x", "y"], "char", size).tolist() == [shingle_hash_of("x y", "char")]
        assert shingles(["x", "y"], "char", size) == ["x y"]


def test_short_word_input_is_one_shingle_of_all_terms():
    got = shingle_hashes(["putin", "kore"], "word", 5)
    assert got.tolist() == [shingle_hash_of(["putin", "kore"], "word")]
    assert shingles(["putin", "kore"], "word", 5) == ["putin kore"]


@pytest.mark.parametrize("kind", ["word", "char"])
@pytest.mark.parametrize("size", [1, 3])
def test_empty_gives_empty(kind, size):
    got = shingle_hashes([], kind, size)
    assert got.size == 0
    assert got.dtype == np.uint32
    assert shingles([], kind, size) == []


def test_term_hashes_are_crc32():
    terms = ["putin", "kore", "putin", "İstanbul"]
    expected = [zlib.crc32(t.encode("utf-8")) for t in terms]
    assert term_hashes(terms).tolist() == expected
    assert term_hashes([]).size == 0


def test_hashes_are_pinned_across_machines():
    # Computed once and written down: a change here changes every stored signature.
    assert shingle_hashes(["putin", "kore"], "word", 1).tolist() == [3661793237, 3725333787]
    assert shingle_hashes(["putin", "kore"], "word", 2).tolist() == [3629983801]
    assert shingle_hashes(["putin", "kore"], "char", 3).tolist() == [
        111910503,
        348887199,
        1863120334,
        1915101634,
        2292029520,
        2894008850,
        3071064367,
        3359848483,
    ]


def test_fmix32_is_a_known_bijection_sample():
    values = np.arange(1 << 16, dtype=np.uint32)
    mixed = fmix32(values)
    assert np.unique(mixed).size == values.size
    assert fmix32(np.array([0], dtype=np.uint32))[0] == 0  # murmur3 fmix32(0) == 0
    # Does not modify its input.
    np.testing.assert_array_equal(values, np.arange(1 << 16, dtype=np.uint32))


@pytest.mark.parametrize(
    ("kind", "size"),
    [
        ("line", 1),
        ("", 1),
        ("word", 0),
        ("word", -1),
        ("char", MAX_SHINGLE_SIZE + 1),
        ("word", 1.5),
        ("word", "2"),
    ],
)
def test_check_shingle_spec_rejects(kind, size):
    with pytest.raises(ConfigError):
        check_shingle_spec(kind, size)
    with pytest.raises(ConfigError):
        shingle_hashes(["a"], kind, size)
    with pytest.raises(ConfigError):
        shingles(["a"], kind, size)


@pytest.mark.parametrize("kind", ["word", "char"])
@pytest.mark.parametrize("size", [1, MAX_SHINGLE_SIZE])
def test_check_shingle_spec_accepts(kind, size):
    check_shingle_spec(kind, size)  # no exception
    assert shingle_hashes(["a", "b"], kind, size).size >= 1


@settings(max_examples=100, deadline=None)
@given(
    term_lists=st.lists(SMALL_VOCAB_TERMS, max_size=6),
    kind=st.sampled_from(["word", "char"]),
    size=st.integers(1, 5),
)
def test_shingle_hash_sets_equal_one_call_per_document(term_lists, kind, size):
    from dedup.shingle import shingle_hash_sets

    got = shingle_hash_sets(term_lists, kind, size)
    assert len(got) == len(term_lists)
    for terms, hashes in zip(term_lists, got, strict=True):
        assert hashes.dtype == np.uint32
        np.testing.assert_array_equal(hashes, shingle_hashes(terms, kind, size))


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.integers(0, 40), max_size=60), wide=st.booleans())
def test_unique_sorted_equals_numpy_unique(values, wide):
    from dedup.shingle import unique_sorted

    array = np.array(values, dtype=np.uint64 if wide else np.uint32)
    got = unique_sorted(array)
    np.testing.assert_array_equal(got, np.unique(array))
    assert got.dtype == array.dtype


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.integers(0, 20) | st.integers(0, 2**32 - 1), max_size=200))
def test_run_lengths_equal_np_unique_with_counts(values):
    ordered = np.sort(np.array(values, dtype=np.uint32))
    got_values, got_lengths = run_lengths(ordered)
    expected_values, expected_lengths = np.unique(ordered, return_counts=True)
    np.testing.assert_array_equal(got_values, expected_values)
    np.testing.assert_array_equal(got_lengths, expected_lengths)
    assert got_values.dtype == np.uint32 and got_lengths.dtype == np.int64


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.integers(0, 2**32 - 1),
            st.sampled_from([0, 1, 2**11 - 1, 2**11, 2**22 - 1, 2**22, 2**31, 2**32 - 1]),
        ),
        max_size=400,
    ),
    overwrite=st.booleans(),
)
def test_distinct_hashes_equal_numpy_unique(values, overwrite):
    from dedup.shingle import distinct_hashes

    array = np.array(values, dtype=np.uint32)
    before = array.copy()
    got = distinct_hashes(array, overwrite=overwrite)
    np.testing.assert_array_equal(got, np.unique(before))
    assert got.dtype == np.uint32
    if not overwrite:
        np.testing.assert_array_equal(array, before)
