"""Which cluster id each relinked group of an index batch carries (dedup.cluster_ids)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dedup.cluster_ids import carried_cluster_ids


def test_the_larger_part_of_a_split_keeps_the_id():
    # Nodes: one new document, then stored a, b, c of cluster 7.
    ids, got_next = carried_cluster_ids([1, 0, 0, 1], [None, 7, 7, 7], ["n", "a", "b", "c"], 10)
    assert ids == {0: 7, 1: 10} and got_next == 11


def test_two_merged_clusters_keep_the_larger_ones_id():
    stored = [None, 3, 3, 5, 5, 5]
    ids, got_next = carried_cluster_ids([0] * 6, stored, list("nabcde"), 8)
    assert ids == {0: 5} and got_next == 8


def test_a_tie_goes_to_the_smaller_id():
    ids, _ = carried_cluster_ids([0, 0, 1, 1], [4, 9, 4, 9], list("abcd"), 20)
    assert ids == {0: 4, 1: 9}


def test_new_groups_are_numbered_in_node_order_and_a_query_numbers_none():
    labels, stored, names = [2, 5, 2, 0], [None, None, None, 6], ["a", "b", "c", "d"]
    assert carried_cluster_ids(labels, stored, names, 30) == ({2: 30, 5: 31, 0: 6}, 32)
    assert carried_cluster_ids(labels, stored, names, None) == ({2: None, 5: None, 0: 6}, None)


@given(
    nodes=st.lists(
        st.tuples(st.integers(0, 5), st.one_of(st.none(), st.integers(0, 4))), max_size=25
    ),
    first_free=st.integers(5, 9),
)
def test_no_id_is_given_twice_and_new_ids_run_on(nodes, first_free):
    labels = [label for label, _ in nodes]
    stored = [cluster for _, cluster in nodes]
    names = [f"d{k:02}" for k in range(len(nodes))]
    ids, got_next = carried_cluster_ids(labels, stored, names, first_free)
    assert set(ids) == set(labels)
    given_ids = list(ids.values())
    assert len(set(given_ids)) == len(given_ids)
    fresh = sorted(i for i in given_ids if i >= first_free)
    assert fresh == list(range(first_free, got_next))
    # An existing id goes only to a group holding one of its members.
    for label, cluster in ids.items():
        if cluster < first_free:
            assert any(lab == label and st_ == cluster for lab, st_ in nodes)
    # A group holding stored members gets an existing id unless all of theirs went elsewhere.
    for label, cluster in ids.items():
        theirs = {c for lab, c in nodes if lab == label and c is not None}
        if cluster >= first_free and theirs:
            assert all(c in given_ids for c in theirs)
