"""Tests for dedup.candidates: banding maths against datasketch, pairs against brute force."""

from __future__ import annotations

import itertools
from itertools import combinations

import numpy as np
import pytest
from datasketch.lsh import _optimal_param
from hypothesis import given, settings
from hypothesis import strategies as st

from dedup.candidates import (
    band_keys,
    candidate_blocks,
    candidate_pairs,
    collision_probability,
    lsh_params,
    reference_bounded_pairs,
    reference_candidate_pairs,
)
from dedup.errors import ConfigError
from dedup.signature import EMPTY, signatures
from dedup.verify import date_decays, reach_days, score_ceilings


@pytest.mark.parametrize("threshold", [0.1, 0.3, 0.5, 0.8, 0.9])
@pytest.mark.parametrize("num_perm", [16, 64, 128])
def test_lsh_params_match_datasketch(threshold, num_perm):
    # Same criterion, datasketch integrates with scipy.quad and we use the trapezoid
    # rule on 201 points; for these settings the choice is identical.
    theirs = _optimal_param(threshold, num_perm, 0.5, 0.5)
    if theirs[0] >= 2:
        assert lsh_params(threshold, num_perm) == theirs
    else:  # datasketch's own MinHashLSH cannot use one band, so we pick the best of 2+
        bands, rows = lsh_params(threshold, num_perm)
        assert bands == 2 and bands * rows <= num_perm


@pytest.mark.parametrize(("threshold", "num_perm"), [(0.5, 128), (0.1, 128), (0.5, 256)])
def test_lsh_params_fit_and_put_threshold_on_the_slope(threshold, num_perm):
    bands, rows = lsh_params(threshold, num_perm)
    assert bands >= 1 and rows >= 1
    assert bands * rows <= num_perm
    # The S-curve rises around the threshold: low well below, high well above.
    assert collision_probability(threshold / 4, bands, rows) < 0.5
    assert collision_probability(min(1.0, threshold * 1.8), bands, rows) > 0.5


def test_lower_false_positive_weight_favours_recall():
    b_hi, r_hi = lsh_params(0.5, 128, 0.9)
    b_lo, r_lo = lsh_params(0.5, 128, 0.1)
    assert collision_probability(0.4, b_lo, r_lo) > collision_probability(0.4, b_hi, r_hi)


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.1, 1.5])
def test_lsh_params_rejects_threshold(threshold):
    with pytest.raises(ConfigError):
        lsh_params(threshold, 64)


@pytest.mark.parametrize("weight", [-0.1, 1.1])
def test_lsh_params_rejects_weight(weight):
    with pytest.raises(ConfigError):
        lsh_params(0.5, 64, weight)


def test_collision_probability_values():
    assert collision_probability(0.5, 1, 1) == pytest.approx(0.5)
    assert collision_probability(0.5, 2, 2) == pytest.approx(1 - 0.75**2)  # 0.4375
    assert collision_probability(0.8, 20, 5) == pytest.approx(1 - (1 - 0.8**5) ** 20)
    assert collision_probability(0.0, 10, 3) == 0.0
    assert collision_probability(1.0, 10, 3) == 1.0
    curve = collision_probability(np.linspace(0, 1, 50), 8, 4)
    assert curve.shape == (50,)
    assert np.all(np.diff(curve) >= 0)
    # More bands: more collisions; more rows: fewer.
    assert collision_probability(0.5, 9, 4) > collision_probability(0.5, 8, 4)
    assert collision_probability(0.5, 8, 5) < collision_probability(0.5, 8, 4)


def brute_force_pairs(sigs: np.ndarray, bands: int, rows: int) -> list[tuple[int, int]]:
    """Every pair (i < j) of non-empty signatures equal on at least one whole band."""
    live = [i for i in range(len(sigs)) if not np.all(sigs[i] == EMPTY)]
    out = []
    for i, j in itertools.combinations(live, 2):
        if any(
            np.array_equal(sigs[i, k * rows : (k + 1) * rows], sigs[j, k * rows : (k + 1) * rows])
            for k in range(bands)
        ):
            out.append((i, j))
    return out


@st.composite
def banded_signatures(draw):
    bands = draw(st.integers(2, 4))  # one band: see test_one_band_equals_brute_force
    rows = draw(st.integers(1, 3))
    num_perm = bands * rows + draw(st.integers(0, 3))  # slots past the bands are ignored
    n = draw(st.integers(0, 10))
    # A small alphabet (sometimes including the empty marker) so that bands collide.
    alphabet = draw(st.sampled_from([[0, 1], [0, 1, 2], [5, int(EMPTY)], [0, 1, int(EMPTY)]]))
    values = draw(st.lists(st.sampled_from(alphabet), min_size=n * num_perm, max_size=n * num_perm))
    sigs = np.array(values, dtype=np.uint32).reshape(n, num_perm)
    if n and draw(st.booleans()):
        sigs[draw(st.integers(0, n - 1))] = EMPTY  # an empty document
    if n > 1 and draw(st.booleans()):
        sigs[n - 1] = sigs[0]  # an exact copy
    return sigs, bands, rows


@settings(max_examples=100, deadline=None)
@given(case=banded_signatures(), seed=st.integers(0, 10))
def test_candidate_pairs_equal_brute_force_and_datasketch(case, seed):
    sigs, bands, rows = case
    left, right = candidate_pairs(sigs, bands, rows)
    assert left.dtype == right.dtype == np.int64
    got = list(zip(left.tolist(), right.tolist(), strict=True))
    assert got == brute_force_pairs(sigs, bands, rows)  # sorted, i < j, each once
    ref_left, ref_right = reference_candidate_pairs(sigs, bands, rows)
    assert got == list(zip(ref_left.tolist(), ref_right.tolist(), strict=True))


@settings(max_examples=100, deadline=None)
@given(case=banded_signatures(), bound=st.integers(1, 4))
def test_bounded_buckets_stay_connected_and_bounded(case, bound):
    sigs, bands, rows = case
    left, right = candidate_pairs(sigs, bands, rows, bound)
    got = set(zip(left.tolist(), right.tolist(), strict=True))
    assert got <= set(brute_force_pairs(sigs, bands, rows))
    keys = band_keys(sigs, bands, rows)
    live = ~np.all(sigs == EMPTY, axis=1)
    for band in range(bands):
        for key in set(keys[live, band].tolist()):
            bucket = np.flatnonzero(live & (keys[:, band] == key))
            if bucket.size <= bound + 1:  # small buckets are paired completely
                assert all((i, j) in got for i, j in combinations(bucket.tolist(), 2))
            else:  # a large one stays connected through its own pairs
                assert _connected(bucket.tolist(), got)
    # Each member of a band's bucket pairs with at most `bound` later members.
    assert len(got) <= bands * bound * len(sigs)


@st.composite
def date_windows(draw, n):
    """Nothing, or each document's day (NaN: unknown) and reach (-1: never links)."""
    if not draw(st.booleans()):
        return {}
    days = draw(st.lists(st.sampled_from([0.0, 1.0, 2.0, 5.0, np.nan]), min_size=n, max_size=n))
    reach = draw(st.lists(st.sampled_from([-1.0, 0.0, 1.5, 3.0, np.inf]), min_size=n, max_size=n))
    return {"days": np.array(days), "reach": np.array(reach)}


@settings(max_examples=200, deadline=None)
@given(
    case=banded_signatures(),
    bound=st.integers(0, 4),
    min_bands=st.integers(1, 4),
    jobs=st.integers(1, 3),
    data=st.data(),
)
def test_candidate_blocks_equal_the_all_at_once_reference(case, bound, min_bands, jobs, data):
    sigs, bands, rows = case
    min_bands = min(min_bands, bands)
    window = data.draw(date_windows(len(sigs)))
    blocks = list(candidate_blocks(sigs, bands, rows, bound, min_bands, jobs, **window))
    pairs = [
        pair for left, right in blocks for pair in zip(left.tolist(), right.tolist(), strict=True)
    ]
    assert all(i < j for i, j in pairs)
    assert len(pairs) == len(set(pairs))  # each pair in one block only
    ref_left, ref_right = reference_bounded_pairs(sigs, bands, rows, bound, min_bands, **window)
    assert sorted(pairs) == list(zip(ref_left.tolist(), ref_right.tolist(), strict=True))
    left, right = candidate_pairs(sigs, bands, rows, bound, min_bands, jobs, **window)
    assert (left.tolist(), right.tolist()) == (ref_left.tolist(), ref_right.tolist())


def test_candidate_blocks_on_many_documents_with_big_buckets():
    """Few distinct values: buckets far over the bound, pairs found in many bands."""
    sigs = np.random.default_rng(3).integers(0, 12, (600, 24)).astype(np.uint32)
    for bands, rows in ((24, 1), (12, 2)):
        got = candidate_pairs(sigs, bands, rows, max_bucket=7, min_bands=2, jobs=2)
        expected = reference_bounded_pairs(sigs, bands, rows, max_bucket=7, min_bands=2)
        assert got[0].size > 500
        assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])


def test_candidate_blocks_on_buckets_many_times_the_bound():
    """Buckets of thousands, whose blocks of ranks wrap around a byte many times."""
    sigs = np.random.default_rng(5).integers(0, 2, (6000, 8)).astype(np.uint32)
    for bound in (1, 3):
        got = candidate_pairs(sigs, 8, 1, max_bucket=bound, min_bands=2, jobs=2)
        expected = reference_bounded_pairs(sigs, 8, 1, max_bucket=bound, min_bands=2)
        assert got[0].size > 20
        assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])


@pytest.mark.parametrize("bound", [1, 7, 200, 255, 256, 1000])
def test_ranks_a_bound_apart_are_in_near_blocks(bound):
    from dedup.candidates import _near_blocks

    shift = bound.bit_length()  # as candidate_blocks cuts blocks
    # The ranks just before each block's end, over 300 blocks: a byte wraps around.
    ends = np.arange(1, 301) << shift
    for gap in sorted({0, 1, bound // 2, bound}):
        first = np.concatenate([ends - 1 - k for k in range(gap + 1)])
        second = first + gap
        first_blocks = (first >> shift).astype(np.uint8)
        second_blocks = (second >> shift).astype(np.uint8)
        for x, y in zip(first_blocks, second_blocks, strict=True):
            assert _near_blocks(x, y) and _near_blocks(y, x)
    assert not _near_blocks(np.uint8(5), np.uint8(7))
    assert not _near_blocks(np.uint8(0), np.uint8(254))


def test_candidate_blocks_on_many_dated_documents_with_big_buckets():
    rng = np.random.default_rng(4)
    sigs = rng.integers(0, 12, (600, 24)).astype(np.uint32)
    days = rng.integers(0, 60, 600).astype(np.float64)
    days[::17] = np.nan
    reach = rng.choice([5.0, 20.0, np.inf], 600)
    got = candidate_pairs(sigs, 24, 1, max_bucket=7, min_bands=2, jobs=2, days=days, reach=reach)
    expected = reference_bounded_pairs(sigs, 24, 1, 7, 2, days, reach)
    assert got[0].size > 500
    assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])


def test_pairs_out_of_either_documents_reach_are_left_out():
    sigs = np.ones((5, 4), dtype=np.uint32)  # one bucket: every pair collides in every band
    days = np.array([0.0, 10.0, 3.0, np.nan, 0.0])
    reach = np.array([5.0, 20.0, 5.0, 1.0, -1.0])
    left, right = candidate_pairs(sigs, 4, 1, days=days, reach=reach)
    got = list(zip(left.tolist(), right.tolist(), strict=True))
    # 0-1: 10 days, past 0's reach; 1-2: 7, past 2's; unknown dates are never out of
    # reach (3 pairs with all); 4 never links but to the undated one.
    assert got == [(0, 2), (0, 3), (1, 3), (2, 3), (3, 4)]


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([0.0, 5.0, 30.0]))
def test_the_window_drops_only_pairs_that_cannot_reach_the_floor(seed, scale):
    """What verification would drop anyway: the links a pipeline keeps do not change."""
    rng = np.random.default_rng(seed)
    n, floor = 80, 0.01
    sigs = rng.integers(0, 3, (n, 16)).astype(np.uint32)
    days = rng.integers(0, 400, n).astype(np.float64)
    days[rng.random(n) < 0.1] = np.nan
    weights = rng.uniform(0.005, 1.0, n)
    reach = reach_days(weights, floor, 3.0, scale)
    full = set(zip(*(a.tolist() for a in candidate_pairs(sigs, 16, 1, 5, 2)), strict=True))
    near = candidate_pairs(sigs, 16, 1, 5, 2, days=days, reach=reach)
    kept = set(zip(*(a.tolist() for a in near), strict=True))
    assert kept <= full
    left, right = (np.array(side, dtype=np.int64) for side in zip(*sorted(full), strict=True))
    ceilings = score_ceilings(weights, date_decays(days, left, right, 3.0, scale), left, right)
    reachable = {pair for pair, c in zip(sorted(full), ceilings, strict=True) if c >= floor}
    assert reachable <= kept


def test_a_window_needs_both_days_and_reach_for_every_document():
    sigs = np.ones((3, 4), dtype=np.uint32)
    for window in (
        {"days": np.zeros(3)},
        {"reach": np.zeros(3)},
        {"days": np.zeros(2), "reach": np.zeros(2)},
    ):
        with pytest.raises(ConfigError, match="days and reach"):
            candidate_blocks(sigs, 4, 1, **window)


def _connected(nodes: list[int], edges: set[tuple[int, int]]) -> bool:
    reached, frontier = {nodes[0]}, [nodes[0]]
    while frontier:
        x = frontier.pop()
        for i, j in edges:
            for a, b in ((i, j), (j, i)):
                if a == x and b in nodes and b not in reached:
                    reached.add(b)
                    frontier.append(b)
    return reached == set(nodes)


def test_few_permutations_still_get_two_bands():
    # datasketch's MinHashLSH refuses one band; lsh_params never proposes it.
    bands, rows = lsh_params(0.9, 8)
    assert bands >= 2 and bands * rows <= 8
    sigs = np.array([[1] * 8, [1] * 8, [2] * 8, [1] * 7 + [2]], dtype=np.uint32)
    left, right = candidate_pairs(sigs, bands, rows)
    got = list(zip(left.tolist(), right.tolist(), strict=True))
    assert got == brute_force_pairs(sigs, bands, rows)
    assert (0, 1) in got and all(2 not in pair for pair in got)


def test_one_band_is_a_config_error():
    sigs = np.ones((2, 8), dtype=np.uint32)
    with pytest.raises(ConfigError, match="2\\+ bands"):
        candidate_pairs(sigs, 1, 8)


def test_identical_signatures_always_pair():
    rng = np.random.default_rng(1)
    hashes = rng.integers(0, 2**32, size=50, dtype=np.uint32)
    other = rng.integers(0, 2**32, size=50, dtype=np.uint32)
    sigs = signatures([hashes, other, hashes.copy(), hashes[::-1].copy()], 128, 1)
    bands, rows = lsh_params(0.9, 128)
    left, right = candidate_pairs(sigs, bands, rows)
    pairs = set(zip(left.tolist(), right.tolist(), strict=True))
    assert {(0, 2), (0, 3), (2, 3)} <= pairs
    assert not any(1 in p for p in pairs)


def test_disjoint_random_sets_rarely_pair():
    rng = np.random.default_rng(2)
    hash_sets = [rng.integers(0, 2**32, size=40, dtype=np.uint32) for _ in range(60)]
    sigs = signatures(hash_sets, 128, 1)
    bands, rows = lsh_params(0.5, 128)
    left, _ = candidate_pairs(sigs, bands, rows)
    assert left.size <= 0.01 * (60 * 59 / 2)


def test_empty_signatures_never_pair():
    empty = np.empty(0, dtype=np.uint32)
    sigs = signatures([empty, empty, np.array([1, 2, 3], np.uint32), empty], 32, 1)
    left, right = candidate_pairs(sigs, 32, 1)
    assert left.size == right.size == 0


def test_no_documents():
    left, right = candidate_pairs(np.empty((0, 16), dtype=np.uint32), 4, 4)
    assert left.shape == right.shape == (0,)


@pytest.mark.parametrize(("bands", "rows"), [(5, 4), (17, 1), (0, 4), (4, 0)])
def test_candidate_pairs_rejects_banding(bands, rows):
    sigs = np.zeros((3, 16), dtype=np.uint32)
    with pytest.raises(ConfigError):
        candidate_pairs(sigs, bands, rows)


@settings(max_examples=100, deadline=None)
@given(case=banded_signatures(), min_bands=st.integers(1, 4))
def test_min_bands_keeps_pairs_colliding_in_that_many_bands(case, min_bands):
    sigs, bands, rows = case
    min_bands = min(min_bands, bands)
    left, right = candidate_pairs(sigs, bands, rows, min_bands=min_bands)
    got = list(zip(left.tolist(), right.tolist(), strict=True))
    live = ~np.all(sigs == EMPTY, axis=1)
    expected = [
        (i, j)
        for i, j in combinations(range(len(sigs)), 2)
        if live[i]
        and live[j]
        and sum(
            np.array_equal(sigs[i, k * rows : (k + 1) * rows], sigs[j, k * rows : (k + 1) * rows])
            for k in range(bands)
        )
        >= min_bands
    ]
    assert got == expected


def test_candidate_blocks_check_their_arguments_when_called():
    sigs = np.ones((2, 8), dtype=np.uint32)
    for bad in ({"bands": 1}, {"min_bands": 5}, {"max_bucket": -1}, {"jobs": 0}):
        arguments = {"bands": 4, "rows": 2, **bad}
        with pytest.raises(ConfigError):
            candidate_blocks(sigs, **arguments)  # not iterated: raises all the same


def test_min_bands_out_of_range_is_a_config_error():
    sigs = np.ones((2, 8), dtype=np.uint32)
    with pytest.raises(ConfigError):
        candidate_pairs(sigs, 4, 2, min_bands=5)
    with pytest.raises(ConfigError):
        candidate_pairs(sigs, 4, 2, min_bands=0)
