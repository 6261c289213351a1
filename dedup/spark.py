"""The Spark engine: the local pipeline on Apache Spark, with the same results.

:func:`cluster` takes a Spark DataFrame with ``id`` and ``text`` (optionally
``title``, ``published`` and ``lang``) and returns one row per document with
its ``cluster``; :func:`cluster_files` reads JSON Lines or Parquet through
Spark and writes the result (``dedup cluster --engine spark``).

Every stage calls the local engine's own functions on batches of rows
(:mod:`dedup.spark_batches`, through ``mapInArrow``), so signatures, candidate
pairs and scores are bit-identical to a local run; what is global is done with
DataFrame operations: the id order, document frequencies, LSH buckets,
connected components (:mod:`dedup.spark_graph`) and the output. No
per-document or per-pair data is collected on the driver.

pyspark is imported lazily: ``import dedup`` works without it, and using this
module without it raises :class:`~dedup.errors.ConfigError`.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dedup.analysis import needs_shingles, needs_words
from dedup.candidates import lsh_params
from dedup.errors import ConfigError, DuplicateIdError, EmptyDocumentError, FieldError, InputError
from dedup.params import Params, resolve_params
from dedup.pipeline import LINK_FLOOR

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

    from dedup.io import FieldMap

_MISSING = "the spark engine needs pyspark: pip install 'dedup[spark]'"
_FORMATS = {".jsonl": "json", ".json": "json", ".ndjson": "json", ".parquet": "parquet"}
_WORKER_ERROR = re.compile(r"dedup\.errors\.(ConfigError|InputError): (.+)")


def _pyspark() -> Any:
    try:
        import pyspark.sql
    except ImportError:
        raise ConfigError(_MISSING) from None
    return pyspark.sql


@dataclass
class SparkRun:
    """The stages of one Spark run, each a DataFrame (persisted while the run is open).

    Attributes
    ----------
    params : Params
        The resolved parameters.
    documents : int
        Number of input documents.
    docs : DataFrame
        Per document: ``i`` (its position in id order), ``id``, ``empty``, and
        what later stages need.
    signatures : DataFrame
        ``i``, ``signature`` (array of the uint32 MinHash values as longs).
    candidates : DataFrame
        ``i``, ``j`` with ``i < j``: the candidate pairs, each once.
    scores : DataFrame
        ``i``, ``j``, ``score``.
    result : DataFrame
        One row per document: ``id``, ``cluster``, ``size``, ``similarity``, ``flags``.
    """

    params: Params
    documents: int
    docs: DataFrame
    signatures: DataFrame
    candidates: DataFrame
    scores: DataFrame
    result: DataFrame
    _cached: list[DataFrame] = field(default_factory=list, repr=False)

    def close(self) -> None:
        """Drop the persisted stages from executor memory and disk."""
        for frame in self._cached:
            frame.unpersist()
        self._cached.clear()


def run(dataframe: DataFrame, params: Params, *, strip: bool = False) -> SparkRun:
    """Run every stage on ``dataframe`` with resolved ``params``; see :func:`cluster`.

    The stages are persisted as they are computed and stay so until
    :meth:`SparkRun.close`, so tests and tools can read signatures, candidate
    pairs and scores of the same run. ``strip`` trims ``title`` and ``lang``
    as :mod:`dedup.io` does for files.

    Notes
    -----
    Shuffles: the ids (id order), the analysed documents (joined with their
    position), the (document, feature) cells (document frequencies and the
    TF-IDF join), the ``documents x bands`` bucket rows, the pairs emitted by
    the buckets (counted over bands), the candidate pairs joined with both
    documents' vectors, and a few per connected-components round. Python work
    is linear in text size plus the emitted pairs; pairing is bounded by
    ``documents x bands x max_bucket``.
    """
    from dedup import spark_graph

    sql = _pyspark()
    functions = sql.functions
    cached: list[DataFrame] = []

    def keep(frame: DataFrame) -> DataFrame:
        frame = frame.persist()
        cached.append(frame)
        return frame

    try:
        base = _inputs(dataframe, functions)
        _check_unique(base, functions)
        analysed = keep(_analysed(base, params, strip))
        documents = analysed.count()
        index = _id_index(analysed.select("id"), functions, keep)
        docs = keep(analysed.join(index, "id"))
        sign_shingles = needs_shingles(params)
        vectors = None
        if params.similarity == "cosine":
            vectors = keep(_vectors(docs, params, documents, not sign_shingles, functions))
        signed = docs if vectors is None or sign_shingles else vectors
        sigs = signed.select("i", "signature")
        candidates = keep(signature_pairs(sigs, params))
        if vectors is None:
            parts = docs.select("i", "published", "shingles")
        else:
            parts = vectors.select("i", "published", "keys", "vals", "weight")
        scores = keep(_scores(candidates, parts, params))
        labels = keep(spark_graph.cluster_labels(scores, params, LINK_FLOOR))
        # Similarities over the links the linkage saw, as the local engine keeps them.
        links = scores.filter(scores.score >= params.threshold * LINK_FLOOR)
        result = spark_graph.assemble(docs.select("i", "id", "empty"), labels, links)
        return SparkRun(params, documents, docs, sigs, candidates, scores, result, cached)
    except Exception as exc:
        for frame in cached:
            frame.unpersist()
        _reraise_worker_error(exc)
        raise


def cluster(dataframe: DataFrame, preset: str = "stories", **options: Any) -> DataFrame:
    """Group the documents of a Spark DataFrame that report the same story.

    Parameters
    ----------
    dataframe : pyspark.sql.DataFrame
        Columns ``id`` and ``text``; optional ``title``, ``published`` (ISO
        text, date or timestamp) and ``lang``. Ids must be unique.
    preset : {"stories", "duplicates"}
        Starting parameters, as for :func:`dedup.cluster`.
    **options
        Any :class:`dedup.params.Params` field (see :func:`dedup.params.resolve_params`).

    Returns
    -------
    pyspark.sql.DataFrame
        One row per input document: ``id``, ``cluster`` (the position, in id
        order, of the cluster's first document; shared by its members),
        ``size``, ``similarity`` (mean score to the rest of its cluster over
        its links, the pairs scoring at least a quarter of the threshold; 1.0
        for a singleton) and ``flags`` (``["empty"]`` for a
        document without usable words). The result is materialised on the
        executors (a local checkpoint), not on the driver.

    Raises
    ------
    ConfigError
        For bad options, a DataFrame without ``id`` or ``text``, an invalid
        ``published`` value, or when pyspark is missing.
    DuplicateIdError
        When two rows share an id.

    Notes
    -----
    The same partition as :func:`dedup.cluster` for the same options (ARI 1 on
    ECB+ and GoogleNews-TS). Cost: analysis is linear in text size and spread
    over executors; LSH emits ``documents x bands`` rows, bounded buckets
    emit at most ``documents x bands x max_bucket`` pairs; linkage runs per
    connected component of the links at the threshold, each on one executor.
    """
    params = resolve_params(preset, **options)
    stages = run(dataframe, params)
    try:
        return stages.result.localCheckpoint(eager=True)
    except Exception as exc:
        _reraise_worker_error(exc)
        raise
    finally:
        stages.close()


def signatures(dataframe: DataFrame, preset: str = "stories", **options: Any) -> DataFrame:
    """``id`` and MinHash ``signature`` (uint32 values as longs) of each document, as a local run.

    Persisted stages of the run are released once the result is checkpointed.
    """
    return _stage_of(dataframe, preset, options, "signatures")


def candidate_pairs(dataframe: DataFrame, preset: str = "stories", **options: Any) -> DataFrame:
    """Candidate pairs ``(i, j)``, positions in id order with ``i < j``, as a local run."""
    return _stage_of(dataframe, preset, options, "candidates")


def _stage_of(dataframe: DataFrame, preset: str, options: dict[str, Any], name: str) -> DataFrame:
    stages = run(dataframe, resolve_params(preset, **options))
    try:
        frame = getattr(stages, name)
        if name == "signatures":
            frame = frame.join(stages.docs.select("i", "id"), "i")
        return frame.localCheckpoint(eager=True)
    finally:
        stages.close()


def _reraise_worker_error(exc: Exception) -> None:
    """A ConfigError or InputError raised in a Python worker, raised again on the driver."""
    found = _WORKER_ERROR.findall(str(exc))
    if found:
        kind, message = found[-1]
        raise (ConfigError if kind == "ConfigError" else InputError)(message.strip()) from None


# --- stages -------------------------------------------------------------------------


def _inputs(dataframe: DataFrame, F: Any) -> DataFrame:
    """``id``, ``text``, ``title``, ``published``, ``lang``, typed for the analysis."""
    types = dict(dataframe.dtypes)
    for name in ("id", "text"):
        if name not in types:
            raise ConfigError(f"the DataFrame has no {name!r} column (has: {', '.join(types)})")

    def text_column(name: str) -> Any:
        if name not in types:
            return F.lit(None).cast("string").alias(name)
        return F.col(name).cast("string").alias(name)

    if "published" not in types:
        published = F.lit(None).cast("string")
    elif types["published"].startswith("timestamp"):
        published = F.unix_micros(F.col("published").cast("timestamp")).cast("string")
        published = F.concat(F.lit("@"), published)
    else:
        published = F.col("published").cast("string")
    return dataframe.select(
        F.col("id").cast("string").alias("id"),
        F.coalesce(F.col("text").cast("string"), F.lit("")).alias("text"),
        text_column("title"),
        published.alias("published"),
        text_column("lang"),
    )


def _check_unique(base: DataFrame, F: Any) -> None:
    """Raise for a missing or repeated id; one aggregation, one row at most to the driver."""
    counts = base.groupBy("id").count()
    bad = counts.filter(F.col("id").isNull() | (F.col("count") > 1)).limit(1).collect()
    if bad and bad[0]["id"] is None:
        raise ConfigError("a document has no id")
    if bad:
        raise DuplicateIdError(f"duplicate id {bad[0]['id']!r}")


def _analysed(base: DataFrame, params: Params, strip: bool) -> DataFrame:
    """Per document: id, published, weight, empty, shingles (+ features, tf, signature)."""
    from dedup.spark_batches import analyse_batches

    parallelism = base.sparkSession.sparkContext.defaultParallelism
    if base.rdd.getNumPartitions() < parallelism:  # spread the analysis over every core
        base = base.repartition(parallelism)
    schema = "id string, published string, weight double, empty boolean, shingles array<bigint>"
    if params.similarity == "cosine":
        schema += ", features array<bigint>, tf array<bigint>"
    if needs_shingles(params):
        schema += ", signature array<bigint>"
    if needs_words(params):
        schema += ", words array<bigint>"
    task = functools.partial(analyse_batches, params=params, strip=strip)
    return base.mapInArrow(task, schema)


def _id_index(ids: DataFrame, F: Any, keep: Any) -> DataFrame:
    """``id`` and ``i``, its position in id order (UTF-8 byte order, as Python sorts str).

    A distributed sort, then each partition's offset from its predecessors'
    sizes: one small row per partition reaches the driver. ``keep`` persists
    the sorted ids, so that the offsets and the positions read the same rows.
    """
    ordered = keep(
        ids.orderBy("id")
        .withColumn("_p", F.spark_partition_id())
        .withColumn("_m", F.monotonically_increasing_id())
    )
    sizes = dict(ordered.groupBy("_p").count().collect())
    offsets, total = [], 0
    for part in range(max(sizes, default=-1) + 1):
        offsets.append(total)
        total += sizes.get(part, 0)
    offset = F.element_at(F.array(*[F.lit(o) for o in offsets] or [F.lit(0)]), F.col("_p") + 1)
    within = F.col("_m") - F.shiftleft(F.col("_p").cast("long"), 33)
    return ordered.select("id", (offset.cast("long") + within).alias("i"))


def _vectors(docs: DataFrame, params: Params, documents: int, sign: bool, F: Any) -> DataFrame:
    """TF-IDF rows with corpus-wide document frequencies, and keyword signatures with ``sign``."""
    from dedup.spark_batches import tfidf_batches

    frequencies = (
        docs.select(F.explode("features").alias("f"))
        .groupBy("f")
        .count()
        .filter(F.col("count") > 1)  # a missing feature is one document's: df = 1
        .withColumnRenamed("count", "df")
    )
    if needs_words(params):  # which features are a single word in some document
        words = docs.select(F.explode("words").alias("f")).distinct()
        frequencies = frequencies.join(words.withColumn("word", F.lit(True)), "f", "left")
    else:
        frequencies = frequencies.withColumn("word", F.lit(None).cast("boolean"))
    cells = docs.select(
        "i", "weight", "published", F.explode_outer(F.arrays_zip("features", "tf")).alias("c")
    ).select("i", "weight", "published", F.col("c.features").alias("f"), F.col("c.tf").alias("tf"))
    cell = F.when(F.col("f").isNotNull(), F.struct("f", "tf", "df", "word"))
    grouped = (
        cells.join(frequencies, "f", "left")
        .groupBy("i", "weight", "published")
        .agg(F.collect_list(cell).alias("cells"))
    )
    schema = "i bigint, weight double, published string, keys array<bigint>, vals array<double>"
    if sign:
        schema += ", signature array<bigint>"
    task = functools.partial(tfidf_batches, params=params, documents=documents, sign=sign)
    return grouped.mapInArrow(task, schema)


def signature_pairs(sigs: DataFrame, params: Params) -> DataFrame:
    """Candidate pairs ``(i, j)``, ``i < j``, of documents ``i`` with a MinHash ``signature``.

    The Spark form of :func:`dedup.candidates.candidate_pairs`: one row per
    (band, band key, document), grouped by (band, key); inside a bucket the
    members are sorted by the local engine's per-band shuffle and each pairs
    with the next ``params.max_bucket`` (all later ones when 0), through
    ``slice`` of the sorted member array; pairs found in at least
    ``min(params.min_bands, bands)`` bands are kept. Documents with an empty
    signature are never candidates.

    Notes
    -----
    ``documents x bands`` rows are shuffled once; a bucket of ``b`` members
    emits at most ``b x max_bucket`` pairs, built with numpy in bounded
    chunks, and is held on one executor as an array of ``b`` (shuffle, index)
    structs. Pairs travel as one long, ``(i << 32) | j``, and are counted
    over bands with one aggregation (so positions stay below 2**31).
    """
    from pyspark.sql import functions as F

    from dedup.spark_batches import band_batches, bucket_pair_batches, count_batches

    bands, rows = lsh_params(params.lsh_threshold, params.num_perm)
    min_bands = min(params.min_bands, bands)
    task = functools.partial(band_batches, bands=bands, rows=rows)
    rows_df = sigs.mapInArrow(task, "band int, key bigint, shuffle bigint, i bigint")
    buckets = (
        rows_df.groupBy("band", "key")
        .agg(F.array_sort(F.collect_list(F.struct("shuffle", "i"))).alias("m"))
        .filter(F.size("m") > 1)
    )
    task = functools.partial(bucket_pair_batches, max_bucket=params.max_bucket)
    coded = buckets.select("m").mapInArrow(task, "code bigint, n bigint")
    # Count bands per pair: a hash shuffle and a sort by code, then runs counted in numpy
    # (several times faster than a groupBy of mostly distinct keys).
    ordered = coded.repartition("code").sortWithinPartitions("code")
    counting = functools.partial(count_batches, at_least=min_bands)
    kept = ordered.mapInArrow(counting, "code bigint")
    return kept.select(
        F.shiftright("code", 32).alias("i"), F.col("code").bitwiseAND(0xFFFFFFFF).alias("j")
    )


def _scores(candidates: DataFrame, parts: DataFrame, params: Params) -> DataFrame:
    """``i``, ``j``, ``score`` of every candidate pair, by :func:`dedup.verify.story_scores`.

    Each pair row is joined with both documents' parts (vectors, or shingle
    sets): by two shuffle joins, or, when their estimated size (one
    aggregation) is under ``spark.sql.autoBroadcastJoinThreshold`` (10 MB by
    default; -1 turns it off), by broadcasting them, as Spark would.
    """
    from pyspark.sql import functions as F

    from dedup.spark_batches import score_batches

    names = [c for c in parts.columns if c != "i"]
    left = parts.select(parts["i"], *[parts[c].alias(f"a_{c}") for c in names])
    right = parts.select(parts["i"].alias("j"), *[parts[c].alias(f"b_{c}") for c in names])
    arrays = [F.size(c) for c in ("keys", "shingles") if c in names]
    # Estimated bytes of the per-document parts: broadcast them when small, which saves
    # two shuffles of the pairs; otherwise Spark joins by shuffling (any size).
    nbytes = parts.agg(F.sum(sum(arrays, F.lit(8)) * 16 + 64)).first()[0] or 0
    limit = _size_conf(parts.sparkSession.conf.get("spark.sql.autoBroadcastJoinThreshold", "-1"))
    if 0 <= nbytes <= limit:
        left, right = F.broadcast(left), F.broadcast(right)
    joined = candidates.join(left, "i").join(right, "j")
    task = functools.partial(score_batches, params=params)
    return joined.mapInArrow(task, "i bigint, j bigint, score double")


def _size_conf(value: str) -> int:
    """Bytes of a Spark size setting such as ``10485760b``, ``10MB`` or ``-1``."""
    text = value.strip().lower().removesuffix("b")
    scale = 1
    for suffix, factor in (("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30), ("t", 1 << 40)):
        if text.endswith(suffix):
            text, scale = text[: -len(suffix)], factor
    try:
        return int(float(text) * scale)
    except ValueError:
        return -1


# --- files and sessions ---------------------------------------------------------------


def session(master: str | None = None, app_name: str = "dedup") -> tuple[SparkSession, bool]:
    """The active SparkSession, or a new one on ``master`` (default ``local[*]``).

    Returns the session and whether it was created here (the caller stops it).
    Under ``spark-submit`` the master comes from the submit unless ``master`` is given.
    """
    sql = _pyspark()
    active = sql.SparkSession.getActiveSession()
    if active is not None:
        return active, False
    from pyspark import SparkConf

    builder = sql.SparkSession.builder.appName(app_name)
    configured = SparkConf().get("spark.master")
    chosen = master or configured or "local[*]"
    if master or not configured:
        builder = builder.master(chosen)
    if chosen.startswith("local") and not os.environ.get("PYSPARK_PYTHON"):
        builder = builder.config("spark.pyspark.python", sys.executable)
    return builder.getOrCreate(), True


def cluster_files(
    inputs: str | Path | Sequence[str | Path],
    output: str | Path,
    master: str | None = None,
    preset: str = "stories",
    *,
    fields: FieldMap | None = None,
    allow_empty: bool = False,
    **options: Any,
) -> dict[str, int]:
    """Cluster JSON Lines or Parquet files on Spark; write one row per document to ``output``.

    Parameters
    ----------
    inputs : path or sequence of paths
        ``.jsonl`` (``.json``, ``.ndjson``) or ``.parquet`` files, all of one
        kind; any Spark-readable location (``hdfs://``, ``s3a://``, ...).
    output : path
        ``.parquet`` or ``.jsonl``/``.json``: a directory of part files, as
        Spark writes them, replaced if it exists.
    master : str, optional
        Spark master URL; default ``local[*]`` (or spark-submit's).
    preset, **options
        As for :func:`cluster`.
    fields : FieldMap, optional
        Which input fields hold the id, text, title, published and lang.
    allow_empty : bool
        Keep documents with an empty text (as flagged singletons) instead of failing.

    Returns
    -------
    dict
        ``documents`` and ``clusters`` counts.

    Raises
    ------
    InputError
        For a missing or unreadable input, naming it; ``FieldError`` for a
        missing field; ``EmptyDocumentError`` for an empty text.
    ConfigError
        For bad options, an unknown file extension, or a missing pyspark.

    Notes
    -----
    The session is stopped at the end only if this call started it.
    """
    from dedup.io import FieldMap

    params = resolve_params(preset, **options)
    paths = [str(p) for p in ([inputs] if isinstance(inputs, str | Path) else inputs)]
    if not paths:
        raise ConfigError("no input given")
    kind = _format_of(paths)
    writer = _format_of([str(output)], "output")
    for path in paths:
        if "://" not in path and not Path(path).exists():
            raise InputError("no such file or directory", path)
    spark, created = session(master)
    try:
        frame = _read(spark, kind, paths, fields or FieldMap(), allow_empty)
        stages = run(frame, params, strip=True)
        try:
            result = stages.result.persist()
            writer_of = result.write.mode("overwrite")
            (writer_of.parquet if writer == "parquet" else writer_of.json)(str(output))
            counts = {"documents": stages.documents}
            counts["clusters"] = result.select("cluster").distinct().count()
            result.unpersist()
            return counts
        except Exception as exc:
            _reraise_worker_error(exc)
            raise
        finally:
            stages.close()
    finally:
        if created:
            spark.stop()


def _format_of(paths: Sequence[str], role: str = "input") -> str:
    kinds = {_FORMATS.get(Path(p.rstrip("/")).suffix.lower()) for p in paths}
    if None in kinds or len(kinds) != 1:
        shown = ", ".join(paths)
        raise ConfigError(f"the spark engine reads and writes .jsonl or .parquet, not {shown}")
    if role == "output" and len(paths) != 1:
        raise ConfigError("give one output")
    return kinds.pop()


def _read(
    spark: SparkSession, kind: str, paths: list[str], fields: FieldMap, allow_empty: bool
) -> DataFrame:
    """The input files as ``id``, ``text`` and the optional fields present, checked."""
    from pyspark.errors import PySparkException

    F = _pyspark().functions
    shown = ", ".join(paths)
    try:
        if kind == "json":
            frame = spark.read.option("mode", "FAILFAST").json(paths)
        else:
            frame = spark.read.parquet(*paths)
        columns = set(frame.columns)
    except PySparkException as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read: {first}", shown) from None
    for attr, name in fields.remapped().items():
        if name not in columns:
            have = ", ".join(sorted(columns)[:10])
            raise FieldError(f"unknown field {name!r} for the {attr} (record has: {have})", shown)
    for required in (fields.id, fields.text):
        if required not in columns:
            raise FieldError(f"missing field {required!r}", shown)
    chosen = [
        F.col(getattr(fields, attr)).alias(attr)
        for attr in ("id", "text", "title", "published", "lang")
        if getattr(fields, attr) in columns
    ]
    frame = frame.select(*chosen)
    if not allow_empty:
        blank = F.col("text").isNull() | (F.trim(F.col("text").cast("string")) == "")
        empty = frame.filter(blank).select("id").limit(1).collect()
        if empty:
            raise EmptyDocumentError(f"empty text in document {empty[0]['id']!r}", shown)
    return frame
