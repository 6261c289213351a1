"""Which cluster id each group of a relinked index batch carries.

When an index batch is linked, the existing clusters it touches are linked
again member by member with the new documents, so the groups that come out
can split, merge or extend them. An existing id should survive where most of
its members went, and nothing should take an id twice.
"""

from __future__ import annotations

from collections.abc import Sequence


def carried_cluster_ids(
    labels: Sequence[int],
    stored_cluster: Sequence[int | None],
    node_ids: Sequence[str],
    next_cluster: int | None,
) -> tuple[dict[int, int | None], int | None]:
    """The cluster id of each group, and the next id still free.

    Parameters
    ----------
    labels : sequence of int
        Group of each node.
    stored_cluster : sequence of int or None
        Cluster id each node has in the index; None for a new document.
    node_ids : sequence of str
        Document id of each node: new groups are numbered in the order of
        their smallest member's position, so in id order when the nodes are.
    next_cluster : int or None
        First unused id; None (a read-only query) leaves new groups without one.

    Notes
    -----
    Each (group, existing id) pair claims by how many of the id's members the
    group holds; claims are granted largest first (ties to the smaller id,
    then the smaller label), each id and each group once. So the larger part
    of a split keeps the id, and of two merged clusters the larger one's id
    survives. O(n log n) for n nodes.
    """
    groups: dict[int, list[int]] = {}
    for k, label in enumerate(labels):
        groups.setdefault(label, []).append(k)
    claims = sorted(
        (-sum(1 for k in members if stored_cluster[k] == c), c, label)
        for label, members in groups.items()
        for c in {stored_cluster[k] for k in members if stored_cluster[k] is not None}
    )
    cluster_of_group: dict[int, int | None] = {}
    taken: set[int] = set()
    for _, c, label in claims:
        if label not in cluster_of_group and c not in taken:
            cluster_of_group[label] = c
            taken.add(c)
    for label in sorted(groups, key=lambda g: node_ids[groups[g][0]]):
        if label not in cluster_of_group:
            cluster_of_group[label] = next_cluster
            if next_cluster is not None:
                next_cluster += 1
    return cluster_of_group, next_cluster
