"""Tests for dedup.signature: the vectorised signatures against datasketch's own MinHash."""

from __future__ import annotations

import numpy as np
import pytest
from datasketch import MinHash
from hypothesis import given, settings
from hypothesis import strategies as st

import dedup.signature as signature_module
from dedup.errors import ConfigError
from dedup.signature import (
    EMPTY,
    estimated_jaccard,
    exact_jaccard,
    permutations,
    reference_signature,
    signatures,
    signed,
    to_minhash,
)

UINT32 = st.integers(0, 2**32 - 1)
HASH_SET = st.lists(UINT32, max_size=30).map(lambda v: np.array(v, dtype=np.uint32))
HASH_SETS = st.lists(HASH_SET, max_size=8)
NUM_PERM = st.integers(1, 64)
SEED = st.integers(0, 2**32 - 1)


@settings(max_examples=75, deadline=None)
@given(hash_sets=HASH_SETS, num_perm=NUM_PERM, seed=SEED)
def test_signatures_equal_datasketch(hash_sets, num_perm, seed):
    got = signatures(hash_sets, num_perm, seed)
    assert got.dtype == np.uint32
    assert got.shape == (len(hash_sets), num_perm)
    for row, hashes in zip(got, hash_sets, strict=True):
        np.testing.assert_array_equal(row, reference_signature(hashes, num_perm, seed))


@settings(max_examples=50, deadline=None)
@given(
    hash_sets=HASH_SETS,
    num_perm=st.integers(1, 16),
    chunk=st.integers(1, 64),
    jobs=st.integers(1, 3),
)
def test_chunks_and_threads_do_not_change_signatures(hash_sets, num_perm, chunk, jobs):
    whole = signatures(hash_sets, num_perm, 7)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(signature_module, "_CHUNK_SHINGLES", chunk)
        mp.setattr(signature_module, "_MIN_THREAD_SHINGLES", 1)  # threads even on a few shingles
        chunked = signatures(hash_sets, num_perm, 7, jobs)
    np.testing.assert_array_equal(chunked, whole)


def test_chunking_splits_into_several_chunks(monkeypatch):
    rng = np.random.default_rng(3)
    hash_sets = [rng.integers(0, 2**32, size=k, dtype=np.uint32) for k in (5, 0, 9, 1, 0, 30, 2)]
    whole = signatures(hash_sets, 16, 3)
    calls = []
    original = signature_module._sign_rows

    def spy(flat, starts, a, b, out):
        calls.append(len(out))
        return original(flat, starts, a, b, out)

    monkeypatch.setattr(signature_module, "_CHUNK_SHINGLES", 4)
    monkeypatch.setattr(signature_module, "_sign_rows", spy)
    chunked = signatures(hash_sets, 16, 3)
    assert len(calls) >= 3
    assert sum(calls) == len(hash_sets)
    np.testing.assert_array_equal(chunked, whole)


def test_empty_sets_are_all_ones():
    got = signatures([np.empty(0, dtype=np.uint32), np.array([1, 2], dtype=np.uint32)], 32, 1)
    assert np.all(got[0] == EMPTY)
    assert not np.all(got[1] == EMPTY)
    np.testing.assert_array_equal(got[0], MinHash(num_perm=32, seed=1).hashvalues)
    np.testing.assert_array_equal(got[0], reference_signature(np.empty(0, np.uint32), 32, 1))
    # One hash equal to EMPTY by chance does not make a row empty.
    got[1, 0] = EMPTY
    assert signed(got).tolist() == [False, True]


def test_no_documents():
    assert signatures([], 16, 1).shape == (0, 16)


def test_duplicates_are_harmless():
    once = signatures([np.array([5, 9, 11], dtype=np.uint32)], 32, 1)
    many = signatures([np.array([9, 5, 11, 5, 9, 9], dtype=np.uint32)], 32, 1)
    np.testing.assert_array_equal(once, many)


@pytest.mark.parametrize("num_perm", [1, 2, 16, 128, 257])
@pytest.mark.parametrize("seed", [0, 1, 42, 2**32 - 1])
def test_permutations_equal_datasketch(num_perm, seed):
    a, b = permutations(num_perm, seed)
    expected = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    np.testing.assert_array_equal(a, expected[0])
    np.testing.assert_array_equal(b, expected[1])
    assert a.dtype == b.dtype == np.uint32
    assert np.all(a % 2 == 1)  # odd multipliers: bijections mod 2**32


@pytest.mark.parametrize("num_perm", [0, -1, 2.0])
def test_permutations_reject_bad_num_perm(num_perm):
    with pytest.raises(ConfigError):
        permutations(num_perm, 1)


def test_deterministic_for_a_seed_and_different_across_seeds():
    rng = np.random.default_rng(0)
    hash_sets = [rng.integers(0, 2**32, size=20, dtype=np.uint32) for _ in range(4)]
    first = signatures(hash_sets, 64, 5)
    np.testing.assert_array_equal(first, signatures(hash_sets, 64, 5))
    other = signatures(hash_sets, 64, 6)
    assert not np.array_equal(first, other)
    # Each row differs in most slots under another seed.
    assert np.all(np.mean(first == other, axis=1) < 0.5)


def _overlapping_sets(rng: np.random.Generator, only_a: int, only_b: int, shared: int):
    values = rng.choice(2**32, size=only_a + only_b + shared, replace=False).astype(np.uint32)
    common = values[:shared]
    a = np.concatenate([common, values[shared : shared + only_a]])
    b = np.concatenate([common, values[shared + only_a :]])
    return np.unique(a), np.unique(b)


@settings(max_examples=60, deadline=None)
@given(
    only_a=st.integers(0, 200),
    only_b=st.integers(0, 200),
    shared=st.integers(1, 200),
    data_seed=st.integers(0, 2**32 - 1),
    perm_seed=st.sampled_from([1, 2, 3, 42, 1234]),
)
def test_estimate_is_close_to_exact_jaccard(only_a, only_b, shared, data_seed, perm_seed):
    # The estimate is a mean of 256 slot agreements, stddev <= sqrt(0.25 / 256) = 0.031;
    # 0.2 is more than 6 sigma, so this cannot flake.
    a, b = _overlapping_sets(np.random.default_rng(data_seed), only_a, only_b, shared)
    sig = signatures([a, b], 256, perm_seed)
    exact = exact_jaccard(a, b)
    assert exact == pytest.approx(shared / (only_a + only_b + shared))
    assert abs(estimated_jaccard(sig[0], sig[1]) - exact) < 0.2


def test_estimate_error_distribution_on_fixed_seeds():
    # Deterministic: fixed data and permutation seeds. With stddev <= 0.031, an error
    # above 0.1 is a > 3 sigma event: allow a few, require the mean error to be small.
    errors = []
    for k in range(60):
        rng = np.random.default_rng(1000 + k)
        only_a, only_b, shared = (int(x) for x in rng.integers(1, 150, size=3))
        a, b = _overlapping_sets(rng, only_a, only_b, shared)
        sig = signatures([a, b], 256, 1 + k % 5)
        errors.append(abs(estimated_jaccard(sig[0], sig[1]) - exact_jaccard(a, b)))
    errors = np.array(errors)
    assert np.mean(errors < 0.1) >= 0.95
    assert errors.mean() < 0.04


def test_identical_and_disjoint_sets():
    rng = np.random.default_rng(9)
    a, b = _overlapping_sets(rng, 100, 100, 0)
    sig = signatures([a, a.copy(), b], 128, 1)
    assert estimated_jaccard(sig[0], sig[1]) == 1.0
    assert estimated_jaccard(sig[0], sig[2]) < 0.1
    assert exact_jaccard(a, b) == 0.0
    assert exact_jaccard(a, a) == 1.0


def test_exact_jaccard_edge_cases():
    empty = np.empty(0, dtype=np.uint32)
    assert exact_jaccard(empty, empty) == 0.0
    assert exact_jaccard(empty, np.array([1], dtype=np.uint32)) == 0.0
    assert exact_jaccard(np.array([1, 2, 3], np.uint32), np.array([2, 3, 4], np.uint32)) == 0.5


def test_estimated_jaccard_rejects_different_lengths():
    with pytest.raises(ValueError):
        estimated_jaccard(np.zeros(4, np.uint32), np.zeros(5, np.uint32))


@settings(max_examples=50, deadline=None)
@given(first=HASH_SET, second=HASH_SET, num_perm=st.integers(2, 64), seed=SEED)
def test_to_minhash_round_trip(first, second, num_perm, seed):
    sig = signatures([first, second], num_perm, seed)
    m0, m1 = to_minhash(sig[0], seed), to_minhash(sig[1], seed)
    np.testing.assert_array_equal(m0.hashvalues, sig[0])
    assert m0.seed == seed
    assert len(m0) == num_perm
    assert m0.jaccard(m1) == pytest.approx(estimated_jaccard(sig[0], sig[1]))
    # The wrapped signature equals one built by datasketch from the raw hashes.
    reference = MinHash(num_perm=num_perm, seed=seed, scheme="affine32", hashfunc=int)
    for h in first.tolist():
        reference.update(h)
    assert m0 == reference
