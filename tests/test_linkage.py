"""Tests for dedup.linkage: the heap-based average linkage against a plain O(n^3) reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dedup.linkage as linkage_module
from dedup.linkage import average_linkage, canonical_labels, single_linkage


def partition(labels) -> set[frozenset[int]]:
    groups: dict[object, set[int]] = {}
    for i, label in enumerate(np.asarray(labels).tolist()):
        groups.setdefault(label, set()).add(i)
    return {frozenset(g) for g in groups.values()}


def reference_average_linkage(n, rows, cols, weights, threshold):
    """Merge the pair of clusters with the highest mean similarity over ALL member pairs
    (missing links count 0) while that mean reaches ``threshold``."""
    sim = np.zeros((n, n))
    for i, j, w in zip(rows, cols, weights, strict=True):
        if i != j and w > 0:
            sim[i, j] += w
            sim[j, i] += w
    clusters = [[i] for i in range(n)]
    while len(clusters) > 1:
        best = None
        for a, b in itertools.combinations(range(len(clusters)), 2):
            total = sum(sim[x, y] for x in clusters[a] for y in clusters[b])
            mean = total / (len(clusters[a]) * len(clusters[b]))
            key = (mean, -min(clusters[a]), -min(clusters[b]))
            if best is None or key > best[0]:
                best = (key, a, b)
        (mean, _, _), a, b = best
        if mean < threshold:
            break
        clusters[a] = clusters[a] + clusters[b]
        del clusters[b]
    labels = np.empty(n, dtype=np.int64)
    for k, members in enumerate(clusters):
        labels[members] = k
    return labels


def union_find_components(n, rows, cols, weights, threshold):
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i, j, w in zip(rows, cols, weights, strict=True):
        if w >= threshold:
            parent[find(i)] = find(j)
    return np.array([find(i) for i in range(n)])


@st.composite
def sparse_graphs(draw, max_n=12):
    """A random sparse graph with distinct, tie-free weights (drawn from a seeded RNG)."""
    n = draw(st.integers(1, max_n))
    all_pairs = list(itertools.combinations(range(n), 2))
    edges = draw(st.lists(st.sampled_from(all_pairs), unique=True)) if all_pairs else []
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    weights = rng.uniform(0.01, 1.0, size=len(edges))
    flip = rng.random(len(edges)) < 0.5  # either orientation of an undirected link
    rows = np.array([j if f else i for (i, j), f in zip(edges, flip, strict=True)], dtype=np.int64)
    cols = np.array([i if f else j for (i, j), f in zip(edges, flip, strict=True)], dtype=np.int64)
    threshold = draw(st.sampled_from([0.05, 0.1, 0.2, 0.3, 0.5, 0.7]))
    return n, rows, cols, weights, threshold


@pytest.mark.parametrize("dense_nodes", [0, 512], ids=["dicts", "dense"])
@settings(max_examples=100, deadline=None)
@given(graph=sparse_graphs())
def test_average_linkage_equals_reference(dense_nodes, graph):
    n, rows, cols, weights, threshold = graph
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(linkage_module, "_DENSE_NODES", dense_nodes)
        got = average_linkage(n, rows, cols, weights, threshold)
    assert got.shape == (n,)
    assert partition(got) == partition(reference_average_linkage(*graph))
    np.testing.assert_array_equal(got, canonical_labels(got))


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(2, 40),
    seed=st.integers(0, 2**32 - 1),
    density=st.floats(0.05, 1.0),
    threshold=st.sampled_from([0.05, 0.1, 0.2, 0.3]),
)
def test_dense_kernel_equals_the_dict_kernel_ties_included(n, seed, density, threshold):
    # Weights from a few values, repeated pairs and both orientations: the two
    # kernels must make the same merges in the same order, not just the same partition.
    rng = np.random.default_rng(seed)
    m = int(density * n * (n - 1))
    rows = rng.integers(0, n, m)
    cols = (rows + rng.integers(1, n, m)) % n  # never a self link
    weights = rng.choice([0.1, 0.2, 0.25, 0.5], m)
    args = (n, rows, cols, weights, threshold)
    dense = linkage_module._dense_average_linkage_roots(*args)
    np.testing.assert_array_equal(dense, linkage_module._average_linkage_roots(*args))


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), jobs=st.integers(2, 4))
def test_average_linkage_is_the_same_on_threads(seed, jobs):
    # Many small components with links between them, as stories in a corpus.
    rng = np.random.default_rng(seed)
    n = 300
    rows = rng.integers(0, n, 900)
    cols = np.minimum(n - 1, rows + rng.integers(1, 6, 900))  # mostly near neighbours
    weights = rng.uniform(0.01, 1.0, 900)
    one = average_linkage(n, rows, cols, weights, 0.4)
    assert len(partition(one)) < n
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(linkage_module, "_MIN_THREAD_LINKS", 1)  # threads even on a few links
        assert np.array_equal(one, average_linkage(n, rows, cols, weights, 0.4, jobs))


@settings(max_examples=50, deadline=None)
@given(graph=sparse_graphs(max_n=10))
def test_average_linkage_clusters_meet_the_threshold(graph):
    # No two output clusters could still merge: their mean similarity is below threshold.
    n, rows, cols, weights, threshold = graph
    labels = average_linkage(n, rows, cols, weights, threshold)
    sim = np.zeros((n, n))
    sim[rows, cols] = weights
    sim[cols, rows] = weights
    groups = sorted(partition(labels), key=min)
    for a, b in itertools.combinations(groups, 2):
        assert sim[np.ix_(list(a), list(b))].mean() < threshold


@settings(max_examples=100, deadline=None)
@given(graph=sparse_graphs())
def test_single_linkage_equals_union_find(graph):
    n, rows, cols, weights, threshold = graph
    got = single_linkage(n, rows, cols, weights, threshold)
    assert partition(got) == partition(union_find_components(*graph))
    np.testing.assert_array_equal(got, canonical_labels(got))


@settings(max_examples=50, deadline=None)
@given(graph=sparse_graphs())
def test_average_refines_single(graph):
    # Every average-linkage merge needs some link >= threshold between the two sides,
    # so average clusters never cross single-linkage components.
    n, rows, cols, weights, threshold = graph
    single = partition(single_linkage(n, rows, cols, weights, threshold))
    for group in partition(average_linkage(n, rows, cols, weights, threshold)):
        assert any(group <= component for component in single)


def test_chaining_single_links_all_average_keeps_c_apart():
    # A-B 0.9, B-C 0.8, A-C missing. Single links everything at 0.5. Average merges
    # A and B first (0.9), then scores {A,B}-C as (0 + 0.8) / 2 = 0.4 < 0.5: C stays apart.
    rows, cols, weights = np.array([0, 1]), np.array([1, 2]), np.array([0.9, 0.8])
    assert single_linkage(3, rows, cols, weights, 0.5).tolist() == [0, 0, 0]
    assert average_linkage(3, rows, cols, weights, 0.5).tolist() == [0, 0, 1]
    # Below that mean, 0.4 >= 0.35, average links C too.
    assert average_linkage(3, rows, cols, weights, 0.35).tolist() == [0, 0, 0]
    # At exactly the mean the merge happens (>=).
    assert average_linkage(3, rows, cols, weights, 0.4).tolist() == [0, 0, 0]


def test_average_linkage_needs_support_from_many_pairs():
    # Two tight triangles (0.8) joined by one bridge 2-3 (0.7): the triangles form
    # first, then the mean across them is 0.7 / 9 = 0.078.
    tri = [(0, 1), (0, 2), (1, 2), (3, 4), (3, 5), (4, 5)]
    rows = np.array([i for i, _ in tri] + [2])
    cols = np.array([j for _, j in tri] + [3])
    weights = np.array([0.8] * 6 + [0.7])
    assert average_linkage(6, rows, cols, weights, 0.3).tolist() == [0, 0, 0, 1, 1, 1]
    assert single_linkage(6, rows, cols, weights, 0.3).tolist() == [0] * 6
    assert average_linkage(6, rows, cols, weights, 0.07).tolist() == [0] * 6


def test_duplicate_links_are_summed_and_self_links_ignored():
    # 0-1 given twice (0.3 + 0.3 = 0.6 >= 0.5); a self link on 2 does nothing.
    rows, cols = np.array([0, 1, 2]), np.array([1, 0, 2])
    weights = np.array([0.3, 0.3, 1.0])
    assert average_linkage(3, rows, cols, weights, 0.5).tolist() == [0, 0, 1]
    assert average_linkage(3, rows[:1], cols[:1], weights[:1], 0.5).tolist() == [0, 1, 2]


def test_no_links_and_no_nodes():
    empty = np.empty(0)
    assert average_linkage(4, empty, empty, empty, 0.5).tolist() == [0, 1, 2, 3]
    assert single_linkage(4, empty, empty, empty, 0.5).tolist() == [0, 1, 2, 3]
    assert average_linkage(0, empty, empty, empty, 0.5).tolist() == []
    assert single_linkage(0, empty, empty, empty, 0.5).tolist() == []


def test_bad_input():
    one = np.array([0])
    with pytest.raises(ValueError):
        average_linkage(2, one, np.array([1]), np.array([0.5]), 0.0)
    for linkage in (average_linkage, single_linkage):
        with pytest.raises(ValueError):
            linkage(2, one, np.array([2]), np.array([0.5]), 0.5)  # endpoint out of range
        with pytest.raises(ValueError):
            linkage(2, one, np.array([-1]), np.array([0.5]), 0.5)
        with pytest.raises(ValueError):
            linkage(2, one, np.array([1, 0]), np.array([0.5]), 0.5)  # lengths differ


def test_canonical_labels_example():
    assert canonical_labels(np.array([7, 3, 7, 9])).tolist() == [0, 1, 0, 2]
    assert canonical_labels(np.array([], dtype=np.int64)).tolist() == []


@settings(max_examples=100, deadline=None)
@given(roots=st.lists(st.integers(-5, 5), max_size=30))
def test_canonical_labels_properties(roots):
    roots = np.array(roots, dtype=np.int64)
    labels = canonical_labels(roots)
    assert labels.shape == roots.shape
    # Same partition.
    assert partition(labels) == partition(roots)
    # Labels count up from 0 in order of each cluster's first node.
    firsts = [labels[i] for i in range(len(labels)) if labels[i] not in labels[:i]]
    assert firsts == list(range(len(firsts)))
    # Idempotent, and independent of how the input names its clusters.
    np.testing.assert_array_equal(canonical_labels(labels), labels)
    np.testing.assert_array_equal(canonical_labels(roots * 3 + 100), labels)
    np.testing.assert_array_equal(canonical_labels(-roots), labels)
