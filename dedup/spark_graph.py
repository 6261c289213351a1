"""Graph stages of the Spark engine: connected components, linkage and the output rows.

:func:`connected_components` is the large-star/small-star algorithm of
Kiveris et al. ("Connected Components in MapReduce and Beyond", SoCC 2014) in
DataFrame operations, with no GraphFrames. :func:`cluster_labels` runs the
local engine's linkage per component, which gives the local partition
exactly (see its notes); :func:`assemble` builds one output row per document.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from dedup.params import Params

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

_MAX_ROUNDS = 200  # large-star/small-star needs O(log^2 n) rounds; this is only a guard


def connected_components(edges: DataFrame, src: str = "i", dst: str = "j") -> DataFrame:
    """Connected components of an undirected graph, by alternating large-star and small-star.

    Parameters
    ----------
    edges : pyspark.sql.DataFrame
        One row per edge, endpoints (long) in columns ``src`` and ``dst``;
        repeats, either direction and self-loops are fine.

    Returns
    -------
    pyspark.sql.DataFrame
        ``node``, ``component`` for every node on an edge (not self-loops
        only); the component is its smallest node.

    Notes
    -----
    Edges are kept as ``(u, v)`` with ``v < u``. Large-star links every
    larger neighbour of a node to the smallest node of its neighbourhood;
    small-star links a node and its smaller neighbours to the smallest of
    them. Both keep connectivity and never raise an endpoint, and the pair
    reaches a fixed point in O(log^2 n) rounds (in practice a handful): a
    forest of stars centred on each component's minimum, which is when no
    node is both a leaf and a centre. Each round is a few shuffles of the
    O(m) edges; lineage is cut by a local checkpoint per round.
    """
    from pyspark.sql import functions as F

    current = (
        edges.select(
            F.greatest(F.col(src), F.col(dst)).cast("long").alias("u"),
            F.least(F.col(src), F.col(dst)).cast("long").alias("v"),
        )
        .filter(F.col("u") != F.col("v"))
        .distinct()
        .localCheckpoint(eager=True)
    )
    for _ in range(_MAX_ROUNDS):
        current = _small_star(_large_star(current, F), F).localCheckpoint(eager=True)
        if _is_star_forest(current, F):
            break
    else:  # pragma: no cover - unreachable for finite graphs
        raise RuntimeError("connected components did not converge")
    roots = current.select(F.col("v").alias("node"), F.col("v").alias("component"))
    return current.select(F.col("u").alias("node"), F.col("v").alias("component")).union(
        roots.distinct()
    )


def _large_star(edges: DataFrame, F) -> DataFrame:
    """Each node's larger neighbours, linked to the smallest node of its neighbourhood."""
    from pyspark.sql import Window

    both = edges.select(F.col("u").alias("x"), F.col("v").alias("y")).union(
        edges.select(F.col("v").alias("x"), F.col("u").alias("y"))
    )
    smallest = F.least(F.col("x"), F.min("y").over(Window.partitionBy("x")))
    linked = both.withColumn("m", smallest).filter(F.col("y") > F.col("x"))
    return linked.select(F.col("y").alias("u"), F.col("m").alias("v"))


def _small_star(edges: DataFrame, F) -> DataFrame:
    """Each node and its smaller neighbours, linked to the smallest of those neighbours."""
    from pyspark.sql import Window

    with_min = edges.withColumn("m", F.min("v").over(Window.partitionBy("u")))
    spokes = F.array(
        F.struct(F.col("v").alias("u"), F.col("m").alias("v")),
        F.struct(F.col("u").alias("u"), F.col("m").alias("v")),
    )
    out = with_min.select(F.explode(spokes).alias("e")).select("e.u", "e.v")
    return out.filter(F.col("u") != F.col("v")).distinct()


def _is_star_forest(edges: DataFrame, F) -> bool:
    """Whether no node is both an edge's larger end (a leaf) and a smaller end (a centre)."""
    roles = F.array(
        F.struct(F.col("u").alias("n"), F.lit(1).alias("r")),
        F.struct(F.col("v").alias("n"), F.lit(2).alias("r")),
    )
    nodes = edges.select(F.explode(roles).alias("e")).groupBy("e.n").agg(F.bit_or("e.r").alias("r"))
    return nodes.filter(F.col("r") == 3).limit(1).count() == 0


def cluster_labels(scores: DataFrame, params: Params, floor: float) -> DataFrame:
    """``node``, ``cluster`` (smallest member) of every document in a cluster of two or more.

    Notes
    -----
    Links at or above the threshold form the graph whose components
    :func:`connected_components` finds. Single linkage stops there. Average
    linkage merges two clusters only while their mean link is at least the
    threshold, so some link between them is too: no cluster crosses a
    component. Each component is clustered by
    :func:`dedup.linkage.average_linkage` on one executor, with the kept
    links (``score >= threshold * floor``) inside it: the links the local
    engine's linkage clusters that component with, so the labels equal a
    local run's.
    """
    from pyspark.sql import functions as F

    from dedup.spark_batches import link_batches

    strong = scores.filter(F.col("score") >= params.threshold)
    components = connected_components(strong)
    if params.linkage == "single":
        return components.select("node", F.col("component").alias("cluster"))
    kept = scores.filter(F.col("score") >= params.threshold * floor)
    of_i = components.select(F.col("node").alias("i"), F.col("component"))
    of_j = components.select(F.col("node").alias("j"), F.col("component").alias("cj"))
    inside = kept.join(of_i, "i").join(of_j, "j").filter(F.col("component") == F.col("cj"))
    links = F.collect_list(F.struct("i", "j", "score")).alias("links")
    grouped = inside.groupBy("component").agg(links)
    task = functools.partial(link_batches, threshold=params.threshold)
    return grouped.mapInArrow(task, "node bigint, cluster bigint")


def assemble(docs: DataFrame, labels: DataFrame, scores: DataFrame) -> DataFrame:
    """One row per document: ``id``, ``cluster``, ``size``, ``similarity``, ``flags``.

    ``docs`` has ``i``, ``id``, ``empty``; ``labels`` ``node``, ``cluster``
    for documents in clusters of two or more; the rest are singletons named
    by their own position. ``similarity`` is the document's summed score to
    the members of its cluster over the pairs in ``scores``, over ``size - 1``.
    """
    from pyspark.sql import functions as F

    labelled = docs.join(labels.withColumnRenamed("node", "i"), "i", "left").withColumn(
        "cluster", F.coalesce("cluster", "i")
    )
    sizes = labelled.groupBy("cluster").agg(F.count("*").alias("size"))
    of_i = labels.select(F.col("node").alias("i"), F.col("cluster").alias("ci"))
    of_j = labels.select(F.col("node").alias("j"), F.col("cluster").alias("cj"))
    inside = scores.join(of_i, "i").join(of_j, "j").filter(F.col("ci") == F.col("cj"))
    support = (
        inside.select(F.explode(F.array("i", "j")).alias("i"), "score")
        .groupBy("i")
        .agg(F.sum("score").alias("support"))
    )
    out = labelled.join(sizes, "cluster").join(support, "i", "left")
    similarity = F.when(
        F.col("size") > 1, F.coalesce("support", F.lit(0.0)) / (F.col("size") - 1)
    ).otherwise(F.lit(1.0))
    flags = F.when(F.col("empty"), F.array(F.lit("empty"))).otherwise(
        F.array().cast("array<string>")
    )
    return out.select(
        "id",
        F.col("cluster").cast("long").alias("cluster"),
        F.col("size").cast("long").alias("size"),
        similarity.alias("similarity"),
        flags.alias("flags"),
    )
