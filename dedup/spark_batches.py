"""The per-batch work of the Spark engine: Arrow record batches in, Arrow record batches out.

Each function here runs inside a Spark Python worker through ``mapInArrow``
and calls the local engine's own functions (analysis, shingles, TF-IDF,
MinHash, banding, scoring, average linkage) on one batch, so every value is
computed by the same code as in a local run. Nothing here imports pyspark;
only pyarrow and numpy, so the functions can be tested without Spark.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
from scipy import sparse

from dedup.analysis import hashed_analysis, needs_shingles, needs_words
from dedup.candidates import band_keys
from dedup.errors import ConfigError
from dedup.linkage import average_linkage
from dedup.params import Params
from dedup.records import parse_published
from dedup.shingle import fmix32
from dedup.signature import signatures, signed
from dedup.vectors import (
    DocumentFrequencies,
    length_weights,
    tfidf_rows,
    top_features,
    word_columns,
)
from dedup.verify import story_scores

_EPOCH = datetime(1970, 1, 1)
_LONG = pa.int64()


def lists(arrays: Sequence[np.ndarray], kind: pa.DataType = _LONG) -> pa.ListArray:
    """One Arrow list per numpy array (uint32 hashes become non-negative int64)."""
    sizes = np.fromiter((a.size for a in arrays), dtype=np.int64, count=len(arrays))
    offsets = np.zeros(len(arrays) + 1, dtype=np.int32)
    np.cumsum(sizes, out=offsets[1:])
    dtype = np.float64 if kind == pa.float64() else np.int64
    flat = np.concatenate(arrays).astype(dtype) if len(arrays) else np.empty(0, dtype)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(flat, kind))


def unlist(column: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Offsets (into the returned child array) and the child array of an Arrow list column."""
    return column.offsets.to_numpy().astype(np.int64), column.values


def _split(offsets: np.ndarray, values: np.ndarray) -> list[np.ndarray]:
    return [values[offsets[k] : offsets[k + 1]] for k in range(offsets.size - 1)]


def _sorted_within_lists(offsets: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Indices that sort ``values`` within each list ``offsets[k] : offsets[k + 1]``.

    Positions outside ``offsets[0] : offsets[-1]`` stay where they are.
    """
    start, stop = int(offsets[0]), int(offsets[-1])
    owner = np.repeat(np.arange(offsets.size - 1), np.diff(offsets))
    order = np.arange(values.size)
    order[start:stop] = np.lexsort((values[start:stop], owner)) + start
    return order


def published_text(value: object) -> str | None:
    """A naive UTC ISO timestamp for ``value`` (as :func:`parse_published` reads it), or None.

    ``"@N"`` is N microseconds since the epoch, UTC (how the engine passes Spark timestamps).
    """
    if isinstance(value, str) and value.startswith("@"):
        return (_EPOCH + timedelta(microseconds=int(value[1:]))).isoformat()
    try:
        moment = parse_published(value)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return None if moment is None else moment.isoformat()


def _moments(texts: Sequence[str | None]) -> list[datetime | None]:
    return [None if t is None else datetime.fromisoformat(t) for t in texts]


def analyse_batches(
    batches: Iterable[pa.RecordBatch], params: Params, strip: bool
) -> Iterator[pa.RecordBatch]:
    """Analyse documents ``(id, text, title, published, lang)`` as the local engine does.

    Yields per document its ``id``, ``published`` (ISO text), length ``weight``,
    ``empty`` flag, the sorted distinct ``shingles`` (empty where the
    parameters never read them, :func:`dedup.analysis.needs_shingles`), and
    for cosine similarity its distinct TF-IDF ``features`` with their counts
    ``tf``; when shingles are signed, also their MinHash ``signature``; where
    keywords are single words (:func:`dedup.analysis.needs_words`), the
    features that are ``words`` of the batch, so that the engine can tell which
    features are words anywhere in the corpus, as the local engine does.
    """
    cosine = params.similarity == "cosine"
    shingled = needs_shingles(params)
    worded = needs_words(params)
    for batch in batches:
        data = batch.to_pydict()
        items = []
        for text, title, lang in zip(data["text"], data["title"], data["lang"], strict=True):
            if strip:  # as dedup.io reads optional text fields of a file
                title = (title.strip() or None) if title else None
                lang = (lang.strip() or None) if lang else None
            items.append((text or "", title, lang))
        analysed, words = hashed_analysis(items, params, shingled)
        sets = [a.shingles for a in analysed]
        counts = np.array([a.distinct_terms for a in analysed], dtype=np.int64)
        columns = {
            "id": pa.array(data["id"], pa.string()),
            "published": pa.array([published_text(p) for p in data["published"]], pa.string()),
            "weight": pa.array(length_weights(counts, params.length_reference), pa.float64()),
            "empty": pa.array(counts == 0, pa.bool_()),  # no terms: no shingles, no features
            "shingles": lists(sets),
        }
        if cosine:
            columns["features"] = lists([a.features for a in analysed])
            columns["tf"] = lists([a.counts for a in analysed])
        if shingled:
            columns["signature"] = lists(list(signatures(sets, params.num_perm, params.seed)))
        if worded:
            columns["words"] = lists(
                [a.features[word_columns(a.features, words)] for a in analysed]
            )
        yield pa.RecordBatch.from_pydict(columns)


def tfidf_batches(
    batches: Iterable[pa.RecordBatch], params: Params, documents: int, sign: bool
) -> Iterator[pa.RecordBatch]:
    """TF-IDF rows (and keyword signatures) of documents whose features carry their global DF.

    Input per document: ``i``, ``weight``, ``published`` and ``cells``, a list of
    ``(f, tf, df, word)`` (``df`` null for a feature of this document only,
    ``word`` true for a feature that is a single word in some document). The IDF
    uses the corpus-wide counts, so :func:`dedup.vectors.tfidf_rows` gives each
    row exactly the values of a local run; features of one document are then
    dropped as the local engine drops them. Yields ``i``, ``weight``,
    ``published``, the row as ``keys`` and ``vals``, and with ``sign`` the
    MinHash ``signature`` of the row's top ``params.keywords`` features.
    """
    for batch in batches:
        offsets, cells = unlist(batch.column("cells"))
        feats = cells.field("f").to_numpy(zero_copy_only=False).astype(np.int64)
        tf = cells.field("tf").to_numpy(zero_copy_only=False).astype(np.int64)
        df = cells.field("df").fill_null(1).to_numpy(zero_copy_only=False).astype(np.int64)
        distinct, first = np.unique(feats, return_index=True)
        frequencies = DocumentFrequencies(distinct.astype(np.uint32), df[first], documents)
        # The join leaves a document's cells in any order; tfidf_rows wants them by feature.
        by_feature = _sorted_within_lists(offsets, feats)
        matrix, columns = tfidf_rows(
            _split(offsets, feats[by_feature].astype(np.uint32)),
            _split(offsets, tf[by_feature]),
            frequencies,
            min_documents=2,
        )
        out = {
            "i": batch.column("i"),
            "weight": batch.column("weight"),
            "published": batch.column("published"),
            "keys": lists(_split(matrix.indptr, columns[matrix.indices])),
            "vals": lists(_split(matrix.indptr, matrix.data), pa.float64()),
        }
        if sign:
            eligible = None
            if needs_words(params):
                is_word = cells.field("word").fill_null(False).to_numpy(zero_copy_only=False)
                eligible = word_columns(columns, distinct[is_word[first]].astype(np.uint32))
            keywords = top_features(matrix, columns, params.keywords, eligible)
            out["signature"] = lists(list(signatures(keywords, params.num_perm, params.seed)))
        yield pa.RecordBatch.from_pydict(out)


def band_batches(
    batches: Iterable[pa.RecordBatch], bands: int, rows: int
) -> Iterator[pa.RecordBatch]:
    """One row ``(band, key, shuffle, i)`` per live document and LSH band.

    ``key`` is :func:`dedup.candidates.band_keys`' uint64 reinterpreted as a
    signed long; ``shuffle`` is the local engine's tie order inside a bucket.
    Documents whose signature is all ``0xFFFFFFFF`` emit nothing.
    """
    for batch in batches:
        index = batch.column("i").to_numpy().astype(np.int64)
        offsets, values = unlist(batch.column("signature"))
        flat = values.to_numpy(zero_copy_only=False)
        num_perm = int(offsets[1] - offsets[0]) if index.size else 1
        sigs = flat[offsets[0] : offsets[-1]].astype(np.uint32).reshape(index.size, num_perm)
        live = signed(sigs)
        index, sigs = index[live], sigs[live]
        keys = band_keys(sigs, bands, rows).view(np.int64)
        band = np.tile(np.arange(bands, dtype=np.int64), index.size)
        owner = np.repeat(index, bands)
        shuffle = fmix32(owner.astype(np.uint32) * np.uint32(0x9E3779B1) ^ band.astype(np.uint32))
        yield pa.RecordBatch.from_pydict(
            {
                "band": pa.array(band.astype(np.int32), pa.int32()),
                "key": pa.array(keys.ravel(), _LONG),
                "shuffle": pa.array(shuffle.astype(np.int64), _LONG),
                "i": pa.array(owner, _LONG),
            }
        )


_PAIRS_PER_CHUNK = 1 << 22  # pairs built at once: 32 MB of codes


def bucket_pair_batches(
    batches: Iterable[pa.RecordBatch], max_bucket: int
) -> Iterator[pa.RecordBatch]:
    """Pairs of each LSH bucket, as ``code = (i << 32) | j`` (``i < j``) and a count ``n``.

    Input per bucket: ``m``, its members ``(shuffle, i)`` sorted by shuffle.
    A member pairs with the next ``max_bucket`` members (all later ones when
    0), as :func:`dedup.candidates.candidate_pairs` pairs a sorted bucket.
    Pairs repeated within a batch are counted once with their multiplicity.
    """
    for batch in batches:
        offsets, members = unlist(batch.column("m"))
        index = members.field("i").to_numpy(zero_copy_only=False).astype(np.int64)
        sizes = np.diff(offsets)
        later = np.repeat(offsets[1:], sizes) - np.arange(offsets[0], offsets[-1]) - 1
        counts = later if max_bucket == 0 else np.minimum(later, max_bucket)
        ends = np.cumsum(counts)
        start = 0
        while start < counts.size:  # chunks of about _PAIRS_PER_CHUNK pairs, whole members
            base = ends[start - 1] if start else 0
            stop = max(start + 1, int(np.searchsorted(ends, base + _PAIRS_PER_CHUNK, "right")))
            chunk = counts[start:stop]
            left = np.repeat(np.arange(start, stop), chunk)
            step = np.arange(left.size) - np.repeat(np.cumsum(chunk) - chunk, chunk)
            a = index[offsets[0] + left]
            b = index[offsets[0] + left + 1 + step]
            codes, n = np.unique((np.minimum(a, b) << 32) | np.maximum(a, b), return_counts=True)
            yield pa.RecordBatch.from_pydict(
                {"code": pa.array(codes, _LONG), "n": pa.array(n.astype(np.int64), _LONG)}
            )
            start = stop


def count_batches(batches: Iterable[pa.RecordBatch], at_least: int) -> Iterator[pa.RecordBatch]:
    """Codes (sorted within the partition) whose counts ``n`` add up to ``at_least`` or more.

    Streams: a run of one code that crosses a batch boundary is carried over.
    """
    carry_codes = np.empty(0, dtype=np.int64)
    carry_n = np.empty(0, dtype=np.int64)
    for batch in batches:
        codes = np.concatenate([carry_codes, batch.column("code").to_numpy()])
        n = np.concatenate([carry_n, batch.column("n").to_numpy()])
        if codes.size == 0:
            continue
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
        last = starts[-1]  # the last run may go on in the next batch
        carry_codes, carry_n = codes[last:], n[last:]
        totals = np.add.reduceat(n[:last], starts[:-1]) if last else np.empty(0, np.int64)
        keep = totals >= at_least
        yield pa.RecordBatch.from_pydict({"code": pa.array(codes[starts[:-1]][keep], _LONG)})
    if carry_codes.size and carry_n.sum() >= at_least:
        yield pa.RecordBatch.from_pydict({"code": pa.array(carry_codes[:1], _LONG)})


def score_batches(batches: Iterable[pa.RecordBatch], params: Params) -> Iterator[pa.RecordBatch]:
    """Score candidate pairs ``(i, j)`` with :func:`dedup.verify.story_scores`.

    Each input row carries both documents' parts (``a_*`` and ``b_*``): TF-IDF
    ``keys``/``vals`` and ``weight`` for cosine, ``shingles`` for Jaccard, and
    ``published``. A batch becomes a small sparse matrix over its own sorted
    features, so each pair's products are summed in the local engine's order.
    """
    cosine = params.similarity == "cosine"
    for batch in batches:
        n = batch.num_rows
        rows = np.arange(n, dtype=np.int64)  # documents a0..a(n-1), then b0..b(n-1)
        published = _moments(batch.column("a_published").to_pylist()) + _moments(
            batch.column("b_published").to_pylist()
        )
        matrix = weights = hash_sets = None
        if cosine:
            matrix = _pair_matrix(batch)
            weights = np.concatenate(
                [batch.column(f"{side}_weight").to_numpy(zero_copy_only=False) for side in "ab"]
            )
        else:
            hash_sets = _column_arrays(batch, "a_shingles") + _column_arrays(batch, "b_shingles")
        parts = story_scores(
            matrix,
            weights,
            published,
            rows,
            rows + n,
            params.time_window_days,
            params.time_scale_days,
            hash_sets,
        )
        yield pa.RecordBatch.from_pydict(
            {"i": batch.column("i"), "j": batch.column("j"), "score": pa.array(parts["score"])}
        )


def _column_arrays(batch: pa.RecordBatch, name: str) -> list[np.ndarray]:
    offsets, values = unlist(batch.column(name))
    return [a.astype(np.uint32) for a in _split(offsets, values.to_numpy(zero_copy_only=False))]


def _pair_matrix(batch: pa.RecordBatch) -> sparse.csr_matrix:
    """Rows a0..a(n-1), b0..b(n-1) of the batch's TF-IDF vectors over its sorted features.

    Built straight from the Arrow list offsets, with no Python loop per pair.
    """
    indptr, keys, vals = [np.zeros(1, dtype=np.int64)], [], []
    for side in ("a", "b"):
        offsets, values = unlist(batch.column(f"{side}_keys"))
        value_offsets, weights = unlist(batch.column(f"{side}_vals"))
        keys.append(values.to_numpy(zero_copy_only=False)[offsets[0] : offsets[-1]])
        flat = weights.to_numpy(zero_copy_only=False)
        vals.append(flat[value_offsets[0] : value_offsets[-1]])
        indptr.append(offsets[1:] - offsets[0] + indptr[-1][-1])
    columns, index = np.unique(np.concatenate(keys), return_inverse=True)
    pointers = np.concatenate(indptr)
    shape = (pointers.size - 1, columns.size)
    return sparse.csr_matrix((np.concatenate(vals), index.ravel(), pointers), shape=shape)


def link_batches(batches: Iterable[pa.RecordBatch], threshold: float) -> Iterator[pa.RecordBatch]:
    """Average linkage inside each connected component; yields ``(node, cluster)`` of members.

    Input per component: ``links``, a list of ``(i, j, score)``, the kept links
    between its members. Nodes are renumbered in increasing global index, so
    :func:`dedup.linkage.average_linkage` breaks ties as it does on the whole
    corpus. A cluster is named by its smallest global index.
    """
    for batch in batches:
        offsets, links = unlist(batch.column("links"))
        i = links.field("i").to_numpy(zero_copy_only=False).astype(np.int64)
        j = links.field("j").to_numpy(zero_copy_only=False).astype(np.int64)
        score = links.field("score").to_numpy(zero_copy_only=False).astype(np.float64)
        nodes_out, clusters_out = [], []
        for k in range(offsets.size - 1):
            part = slice(offsets[k], offsets[k + 1])
            members = np.unique(np.concatenate([i[part], j[part]]))
            local_i = np.searchsorted(members, i[part])
            local_j = np.searchsorted(members, j[part])
            labels = average_linkage(members.size, local_i, local_j, score[part], threshold)
            root = np.full(members.size, np.iinfo(np.int64).max)
            np.minimum.at(root, labels, members)
            nodes_out.append(members)
            clusters_out.append(root[labels])
        flat_nodes = np.concatenate(nodes_out) if nodes_out else np.empty(0, np.int64)
        flat_clusters = np.concatenate(clusters_out) if clusters_out else np.empty(0, np.int64)
        yield pa.RecordBatch.from_pydict(
            {"node": pa.array(flat_nodes, _LONG), "cluster": pa.array(flat_clusters, _LONG)}
        )
