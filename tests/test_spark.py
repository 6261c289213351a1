"""The Spark engine against the local one, on Spark ``local[2]``.

Signatures, candidate pairs and scores must be bit-identical and the
partition the same; the graph stages are checked against scipy.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as scipy_components

import dedup
from dedup import pipeline
from dedup.candidates import candidate_pairs, lsh_params
from dedup.cli import cli
from dedup.evaluate import score
from dedup.params import resolve_params

pytest.importorskip("pyspark")
from pyspark.sql import SparkSession  # noqa: E402

from dedup import spark as dspark  # noqa: E402
from dedup.spark_graph import connected_components  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ECBPLUS = DATA / "ecbplus" / "ecbplus.jsonl"
GOOGLENEWS = DATA / "googlenews" / "googlenews_ts.jsonl"


@pytest.fixture(scope="module")
def spark():
    session = (
        SparkSession.builder.master("local[2]")
        .appName("dedup-tests")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.default.parallelism", "2")
        .config("spark.driver.memory", "2g")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.pyspark.python", sys.executable)
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    return path


def local_stages(docs: list[dedup.Document], params) -> SimpleNamespace:
    """The local engine's signatures, candidate pairs and scores, in id order."""
    canonical = sorted(docs, key=lambda d: d.id)
    _, prepared = pipeline._prepare(canonical, params, None, {}, 1)
    matrix = columns = None
    if params.similarity == "cosine":
        matrix, columns = pipeline._document_matrix(prepared, params)
    sigs = pipeline._signatures(prepared, params, matrix, columns)
    bands, rows = lsh_params(params.lsh_threshold, params.num_perm)
    i, j = candidate_pairs(sigs, bands, rows, params.max_bucket, min(params.min_bands, bands))
    scores = pipeline._score(prepared, i, j, params, matrix)["score"]
    return SimpleNamespace(ids=[d.id for d in canonical], sigs=sigs, i=i, j=j, scores=scores)


def spark_stages(stages: dspark.SparkRun, n: int) -> SimpleNamespace:
    sigs = np.full((n, stages.params.num_perm), 0xFFFFFFFF, dtype=np.uint32)
    for row in stages.signatures.toLocalIterator():
        sigs[row["i"]] = np.array(row["signature"], dtype=np.uint32)
    pairs = sorted((r["i"], r["j"], r["score"]) for r in stages.scores.toLocalIterator())
    ids = {r["i"]: r["id"] for r in stages.docs.select("i", "id").toLocalIterator()}
    result = {r["id"]: r.asDict() for r in stages.result.toLocalIterator()}
    return SimpleNamespace(ids=[ids[k] for k in range(n)], sigs=sigs, pairs=pairs, result=result)


def agreement(spark_run: SimpleNamespace, local: SimpleNamespace, docs, labels) -> None:
    assert spark_run.ids == local.ids
    assert np.array_equal(spark_run.sigs, local.sigs)
    local_pairs = list(zip(local.i.tolist(), local.j.tolist(), local.scores.tolist(), strict=True))
    assert [p[:2] for p in spark_run.pairs] == [p[:2] for p in local_pairs]
    assert spark_run.pairs == local_pairs  # scores bit-identical
    predicted = [spark_run.result[d.id]["cluster"] for d in docs]
    assert len(spark_run.result) == len(docs)
    assert score(predicted, labels.tolist()).ari >= 0.99
    assert partition(predicted) == partition(labels.tolist())


def partition(labels) -> set[frozenset[int]]:
    groups: dict = {}
    for k, label in enumerate(labels):
        groups.setdefault(label, set()).add(k)
    return {frozenset(g) for g in groups.values()}


@pytest.fixture(scope="module")
def ecbplus(spark):
    docs = dedup.read_documents(_need(ECBPLUS))
    params = resolve_params("stories")
    stages = dspark.run(spark.read.json(str(ECBPLUS)), params, strip=True)
    try:
        yield docs, params, spark_stages(stages, len(docs))
    finally:
        stages.close()


def test_ecbplus_signatures_pairs_scores_and_labels_agree(ecbplus):
    docs, params, spark_run = ecbplus
    local = dedup.cluster(docs, jobs=1)
    agreement(spark_run, local_stages(docs, params), docs, local.labels)


def test_ecbplus_sizes_and_similarities_agree(ecbplus):
    docs, _, spark_run = ecbplus
    # Input in id order: dedup.pipeline.run maps candidate pairs back to input
    # order with the wrong permutation, so the local similarities are only right
    # when the input already is in id order.
    canonical = sorted(docs, key=lambda d: d.id)
    local = dedup.cluster(canonical, jobs=1)
    for cluster in local.clusters:
        for member, similarity in zip(cluster.members, cluster.similarities, strict=True):
            row = spark_run.result[canonical[member].id]
            assert row["size"] == cluster.size
            assert row["similarity"] == pytest.approx(similarity, abs=1e-6)
            assert row["flags"] == []


def test_duplicates_preset_on_a_sample_with_copies_agrees(spark):
    rng = random.Random(3)
    sample = dedup.read_documents(_need(ECBPLUS))[:160]
    records = [{"id": d.id, "text": d.text, "published": "2024-01-02"} for d in sample]
    for k, doc in enumerate(sample[:60]):  # light rewrites: drop and swap a few words
        words = doc.text.split()
        for _ in range(max(1, len(words) // 30)):
            words.pop(rng.randrange(len(words)))
        records.append({"id": f"copy-{k}", "text": " ".join(words), "published": "2024-01-05"})
    records.append({"id": "blank", "text": "   "})
    docs = pipeline.as_documents(records)
    params = resolve_params("duplicates")
    local = dedup.cluster(docs, "duplicates", jobs=1)
    stages = dspark.run(
        spark.createDataFrame(records, "id string, text string, published string"), params
    )
    try:
        got = spark_stages(stages, len(docs))
    finally:
        stages.close()
    agreement(got, local_stages(docs, params), docs, local.labels)
    assert got.result["blank"]["flags"] == ["empty"]
    assert sum(r["size"] > 1 for r in got.result.values()) >= 100


def test_cluster_takes_titles_and_timestamps_and_rejects_duplicate_ids(spark):
    from datetime import datetime

    day = datetime(2024, 3, 1)
    rows = [
        ("a1", "Quake hits Izmir", "A magnitude 6 earthquake struck Izmir, killing two.", day),
        ("a2", "Izmir quake", "Two killed as magnitude 6 earthquake hits Izmir.", day),
        ("a3", None, "Izmir earthquake of magnitude 6 kills two people.", datetime(2024, 9, 1)),
        ("b1", "Rates held", "The central bank held its policy rate at 45 percent.", None),
        ("b2", None, "Central bank keeps policy rate at 45 percent.", day),
    ]
    schema = "id string, title string, text string, published timestamp"
    frame = spark.createDataFrame(rows, schema)
    out = dspark.cluster(frame, threshold=0.03)
    assert out.columns == ["id", "cluster", "size", "similarity", "flags"]
    got = {r["id"]: r["cluster"] for r in out.collect()}
    keys = ("id", "title", "text", "published")
    local = dedup.cluster([dict(zip(keys, r, strict=True)) for r in rows], threshold=0.03)
    assert partition([got[r[0]] for r in rows]) == partition(local.labels.tolist())
    twice = frame.union(frame.limit(1))
    with pytest.raises(dedup.DuplicateIdError, match="duplicate id 'a1'"):
        dspark.cluster(twice)
    with pytest.raises(dedup.ConfigError, match="no 'text' column"):
        dspark.cluster(frame.select("id"))
    bad = spark.createDataFrame(
        [("x", "Some text", "not a date")], "id string, text string, published string"
    )
    with pytest.raises(dedup.ConfigError, match="invalid published date 'not a date'"):
        dspark.cluster(bad)


def test_large_star_small_star_equals_scipy(spark):
    rng = np.random.default_rng(7)
    parts, offset = [], 0
    for n, m in ((300, 220), (500, 480), (80, 400)):  # sparse, near-critical, dense
        edges = rng.integers(0, n, size=(m, 2)) + offset
        parts.append(edges)
        offset += n
    parts.append(np.array([[offset + k, offset + k + 1] for k in range(63)]))  # a long path
    parts.append(np.array([[offset + 100, offset + 100 + k] for k in range(1, 40)]))  # a star
    parts.append(np.array([[offset + 200, offset + 200]]))  # a self-loop only
    edges = np.concatenate(parts)
    n = int(edges.max()) + 1
    frame = spark.createDataFrame([(int(a), int(b)) for a, b in edges], "i long, j long")
    got = {r["node"]: r["component"] for r in connected_components(frame).collect()}
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, labels = scipy_components(graph, directed=False)
    smallest = {}
    for node, label in enumerate(labels.tolist()):
        smallest.setdefault(label, node)
    on_edges = {int(x) for a, b in edges if a != b for x in (a, b)}
    assert set(got) == on_edges
    assert all(got[node] == smallest[labels[node]] for node in on_edges)


def test_a_huge_bucket_stays_bounded_and_matches_the_local_pairs(spark):
    rng = np.random.default_rng(1)
    params = resolve_params("stories", max_bucket=5, min_bands=2)
    same = rng.integers(0, 2**32, size=params.num_perm, dtype=np.uint64)
    sigs = np.tile(same, (400, 1))
    sigs[300:] = rng.integers(0, 2**32, size=(100, params.num_perm), dtype=np.uint64)
    sigs[350] = 0xFFFFFFFF  # an empty document is never a candidate
    sigs = sigs.astype(np.uint32)
    rows = [(k, [int(v) for v in sigs[k]]) for k in range(len(sigs))]
    frame = spark.createDataFrame(rows, "i long, signature array<long>")
    got = sorted((r["i"], r["j"]) for r in dspark.signature_pairs(frame, params).collect())
    bands, per_band = lsh_params(params.lsh_threshold, params.num_perm)
    i, j = candidate_pairs(sigs, bands, per_band, params.max_bucket, params.min_bands)
    assert got == list(zip(i.tolist(), j.tolist(), strict=True))
    assert len(got) <= 300 * params.max_bucket * bands / params.min_bands
    assert len(got) < 300 * 299 // 2


def _cli(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _small_input(tmp_path: Path) -> tuple[Path, list[str]]:
    docs = dedup.read_documents(_need(ECBPLUS))[:40]
    path = tmp_path / "news.jsonl"
    with path.open("w") as out:
        for d in docs:
            out.write(json.dumps({"id": d.id, "text": d.text, "title": d.title}) + "\n")
    return path, [d.id for d in docs]


def test_cli_spark_engine_writes_parquet_and_jsonl(spark, tmp_path):
    import pyarrow.parquet as pq

    path, ids = _small_input(tmp_path)
    parquet = tmp_path / "out.parquet"
    result = _cli("cluster", path, "--engine", "spark", "--spark-master", "local[2]", "-o", parquet)
    assert result.exit_code == 0, result.output
    table = pq.read_table(parquet).to_pylist()
    assert sorted(r["id"] for r in table) == sorted(ids)
    assert {"cluster", "size", "similarity", "flags"} <= set(table[0])
    local = dedup.cluster(dedup.read_documents(path), jobs=1)
    by_id = {r["id"]: r["cluster"] for r in table}
    assert partition([by_id[i] for i in ids]) == partition(local.labels.tolist())

    jsonl = tmp_path / "out.jsonl"
    result = _cli(
        "cluster",
        parquet_input(tmp_path, table),
        "--engine",
        "spark",
        "--preset",
        "duplicates",
        "-o",
        jsonl,
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    lines = [
        json.loads(x)
        for p in sorted(jsonl.glob("part-*"))
        for x in p.read_text().split("\n")
        if x.strip()
    ]
    assert sorted(r["id"] for r in lines) == sorted(ids)


def parquet_input(tmp_path: Path, table: list[dict]) -> Path:
    """The ids of ``table`` with their ECB+ texts, as a Parquet input file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = {d.id: d.text for d in dedup.read_documents(ECBPLUS)[:40]}
    path = tmp_path / "in.parquet"
    ids = [r["id"] for r in table]
    pq.write_table(pa.table({"id": ids, "text": [texts[i] for i in ids]}), path)
    return path


def test_cli_spark_engine_errors(tmp_path):
    result = _cli(
        "cluster", tmp_path / "missing.jsonl", "--engine", "spark", "-o", tmp_path / "o.parquet"
    )
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: {tmp_path / 'missing.jsonl'}: no such file or directory"
    ]
    result = _cli("cluster", tmp_path / "missing.jsonl", "--engine", "spark")
    assert result.exit_code == 2
    assert "--output" in result.stderr
    result = _cli("cluster", tmp_path / "a.csv", "--engine", "spark", "-o", tmp_path / "o.parquet")
    assert result.exit_code == 1
    assert "Error: the spark engine reads and writes .jsonl or .parquet" in result.stderr


def test_missing_pyspark_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyspark", None)
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)
    with pytest.raises(dedup.ConfigError, match=r"pip install 'dedup\[spark\]'"):
        dspark.session()


@pytest.mark.skipif(not os.environ.get("DEDUP_SLOW"), reason="slow: set DEDUP_SLOW=1")
def test_googlenews_agrees_with_the_local_engine(spark):
    docs = dedup.read_documents(_need(GOOGLENEWS))
    params = resolve_params("stories")
    start = time.perf_counter()
    local = dedup.cluster(docs, jobs=2)
    local_seconds = time.perf_counter() - start
    start = time.perf_counter()
    stages = dspark.run(spark.read.json(str(GOOGLENEWS)), params, strip=True)
    try:
        stages.result.count()
        spark_seconds = time.perf_counter() - start
        got = spark_stages(stages, len(docs))
    finally:
        stages.close()
    predicted = [got.result[d.id]["cluster"] for d in docs]
    ari = score(predicted, local.labels.tolist()).ari
    print(f"\nGoogleNews-TS: local {local_seconds:.1f} s, spark {spark_seconds:.1f} s, ARI {ari}")
    agreement(got, local_stages(docs, params), docs, local.labels)
