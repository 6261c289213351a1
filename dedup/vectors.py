"""TF-IDF document vectors over hashed term n-grams, built with numpy.

Features are the 32-bit hashes of a document's terms and term n-grams (the
same stable hashes as :mod:`dedup.shingle`), so no vocabulary dictionary is
built and the same features come out in any process, on any machine, in a
persistent index or on Spark. Document frequencies are counted over those
hashes; a batch's vectors are sparse rows whose columns index its sorted
distinct features.

A document's vector is its L2-normalised TF-IDF (sublinear tf, smoothed IDF)
times a length weight (:func:`length_weights`), so the dot product of two
vectors is the pair's length-adjusted cosine, and the dot product of two
clusters' vector sums divided by their sizes is their mean pairwise score.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
from scipy import sparse

from dedup.errors import ConfigError
from dedup.shingle import (
    MAX_SHINGLE_SIZE,
    batch_term_hashes,
    combine_hashes,
    counted_by_owner,
    distinct_hashes,
    grouped_ngram_hashes,
    run_lengths,
    shingle_hash_of,
    term_hashes,
)
from dedup.sparse_rows import SortedHashes, weighted_rows
from dedup.threads import call_in_threads, runs_of_cells

# Keywords of fewer matrix cells than this are picked on one thread.
_MIN_THREAD_CELLS = 1 << 16
# Tables of at least this many features are searched through a SortedHashes;
# a smaller one costs less to binary-search than to index.
_DIRECTED_SEARCH_SIZE = 1 << 16


def feature_hashes(terms: Sequence[str], max_n: int = 2) -> np.ndarray:
    """Hashes of ``terms`` and their n-grams up to ``max_n``, with repeats, as uint32.

    Unigram hashes are the terms' CRC-32 (:func:`dedup.shingle.term_hashes`);
    an n-gram's hash is the word shingle hash of :func:`dedup.shingle.shingle_hashes`.
    Phrases ("kim jong", "rate hike") tell events of one topic apart better
    than their words, which in a single-topic batch are all common.
    """
    if not 1 <= max_n <= MAX_SHINGLE_SIZE:
        raise ConfigError(f"n-grams must be 1 to {MAX_SHINGLE_SIZE} terms long")
    units = term_hashes(terms)
    parts = [units]
    for n in range(2, max_n + 1):
        if units.size >= n:
            parts.append(combine_hashes(units, n))
    return np.concatenate(parts) if len(parts) > 1 else units


def feature_counts(
    term_lists: Sequence[Sequence[str]], max_n: int = 2
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per term list, its distinct :func:`feature_hashes` (sorted) and how often each occurs.

    Equal to :func:`counted` of ``feature_hashes(terms, max_n)`` for each list,
    for the whole batch at once (see :func:`counted_features`).
    """
    units, owner = batch_term_hashes(term_lists)
    return counted_features(units, owner, len(term_lists), max_n)


def counted_features(
    units: np.ndarray, owner: np.ndarray, count: int, max_n: int = 2
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per owner ``0 .. count - 1``, the distinct features of its run of term hashes, counted.

    ``units`` are the term hashes of a batch of documents, ``owner`` the
    document of each (non-decreasing); features are the term n-grams up to
    ``max_n`` within a document. Counts come in the smallest unsigned type
    that holds them. A document's distinct features with their counts are all
    TF-IDF needs of it, and fewer values than its features with repeats.
    """
    if not 1 <= max_n <= MAX_SHINGLE_SIZE:
        raise ConfigError(f"n-grams must be 1 to {MAX_SHINGLE_SIZE} terms long")
    parts = [(units, owner)] + [grouped_ngram_hashes(units, owner, n) for n in range(2, max_n + 1)]
    return counted_by_owner(
        np.concatenate([hashes for hashes, _ in parts]),
        np.concatenate([groups for _, groups in parts]),
        count,
    )


def counted(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One document's sorted distinct features (uint32) and their counts: the plain version."""
    distinct, counts = np.unique(np.asarray(features, dtype=np.uint32), return_counts=True)
    return distinct, counts


def feature_names(terms: Sequence[str], max_n: int = 2) -> dict[int, str]:
    """Readable names of the features of ``terms``: ``{hash: "kim jong"}``, for explanations."""
    names: dict[int, str] = {}
    for n in range(1, max_n + 1):
        for i in range(len(terms) - n + 1):
            gram = list(terms[i : i + n])
            key = zlib.crc32(gram[0].encode("utf-8")) if n == 1 else shingle_hash_of(gram)
            names.setdefault(key, " ".join(gram))
    return names


@dataclass(frozen=True)
class DocumentFrequencies:
    """How many documents hold each feature.

    Attributes
    ----------
    features : ndarray of uint32
        Sorted distinct feature hashes.
    counts : ndarray of int64
        Documents holding each feature.
    documents : int
        Documents counted.
    """

    features: np.ndarray
    counts: np.ndarray
    documents: int

    @classmethod
    def count(cls, feature_sets: Sequence[np.ndarray]) -> DocumentFrequencies:
        """Count features over documents, given each one's distinct features.

        ``feature_sets`` are per document its features without repeats (as
        :func:`feature_counts` gives them): one sort of them all counts each
        document once per feature.
        """
        features, counts = run_lengths(_sorted_union(feature_sets))
        return cls(features, counts, len(feature_sets))

    def merged(self, other: DocumentFrequencies) -> DocumentFrequencies:
        """The frequencies of both collections together."""
        features = np.concatenate([self.features, other.features])
        counts = np.concatenate([self.counts, other.counts])
        merged, inverse = np.unique(features, return_inverse=True)
        return DocumentFrequencies(
            merged,
            np.bincount(inverse.ravel(), weights=counts).astype(np.int64),
            self.documents + other.documents,
        )

    def counts_of(self, features: np.ndarray) -> np.ndarray:
        """Documents holding each of ``features`` (0 for one not counted).

        A large table is searched through a :class:`SortedHashes` built on the
        first call and kept: an index answering query after query looks up
        each one's features in millions.
        """
        if self.features.size >= _DIRECTED_SEARCH_SIZE:
            return self._search.lookup(features, self.counts)
        df = np.zeros(len(features), dtype=np.int64)
        if self.features.size:
            position = np.minimum(np.searchsorted(self.features, features), self.features.size - 1)
            found = self.features[position] == features
            df[found] = self.counts[position[found]]
        return df

    @functools.cached_property
    def _search(self) -> SortedHashes:
        return SortedHashes.of(self.features)

    def idf(self, features: np.ndarray) -> np.ndarray:
        """Smoothed IDF, ``ln((1 + N) / (1 + df)) + 1``; unseen features get ``df = 0``."""
        return self.idf_of_counts(self.counts_of(features))

    def idf_of_counts(self, df: np.ndarray) -> np.ndarray:
        """:meth:`idf` of features that ``df`` documents hold."""
        df = np.asarray(df, dtype=np.int64)
        largest = int(df.max()) if df.size else 0
        if df.size <= 2 * largest:
            return _smoothed_idf(df, self.documents)
        # Millions of features share a few thousand counts: take each count's log once.
        return _smoothed_idf(np.arange(largest + 1), self.documents)[df]


def _smoothed_idf(df: np.ndarray, documents: int) -> np.ndarray:
    return np.log((1.0 + documents) / (1.0 + df)) + 1.0


def length_weights(distinct_terms: np.ndarray, reference: float) -> np.ndarray:
    """Per-document weight ``min(1, (reference / L) ** 0.25)`` for ``L`` distinct terms.

    Two long articles on one topic share much background vocabulary (the
    countries, institutions and stock phrases of the genre), so their cosine
    runs higher than that of two short items on the same topic. Weighting
    each vector by the fourth root discounts a pair by ``sqrt(reference /
    sqrt(Li * Lj))`` when both are long, so one threshold serves headlines and
    full articles alike; being per document, it keeps cluster sums exact.
    ``reference <= 0`` turns it off.
    """
    if reference <= 0:
        return np.ones(len(distinct_terms))
    return np.minimum(1.0, (reference / np.maximum(distinct_terms, 1)) ** 0.25)


def _concatenated(feature_sets: Sequence[np.ndarray]) -> np.ndarray:
    """All of ``feature_sets`` end to end in a new uint32 array, which callers may reorder."""
    return np.concatenate([np.empty(0, np.uint32), *feature_sets]).astype(np.uint32, copy=False)


def _sorted_union(feature_sets: Sequence[np.ndarray]) -> np.ndarray:
    """All of ``feature_sets`` in one sorted uint32 array, with repeats across sets."""
    flat = _concatenated(feature_sets)
    flat.sort()  # in place: the concatenation is already a copy
    return flat


def _distinct_union(feature_sets: Sequence[np.ndarray]) -> np.ndarray:
    """The sorted distinct features of all of ``feature_sets``."""
    return distinct_hashes(_concatenated(feature_sets), overwrite=True)


def tfidf_rows(
    features: Sequence[np.ndarray],
    counts: Sequence[np.ndarray],
    frequencies: DocumentFrequencies,
    weights: np.ndarray | None = None,
    min_documents: int = 1,
    jobs: int = 1,
) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Weighted, L2-normalised TF-IDF rows of documents.

    Parameters
    ----------
    features, counts : sequences of ndarray
        Per document, its sorted distinct feature hashes (uint32) and how often
        each occurs (:func:`feature_counts`).
    frequencies : DocumentFrequencies
        Supplies the IDF; features it has not seen get the highest IDF.
    weights : ndarray, optional
        Per-document factor applied after normalising (:func:`length_weights`).
    min_documents : int
        Keep only the columns of features that ``frequencies`` counts in at
        least this many documents. Rows are normalised before that: a feature
        of one document adds nothing to any dot product, so leaving it out
        (``min_documents=2``) changes no score and saves its memory.
    jobs : int
        Threads that fill the rows; the matrix is the same for any number.

    Returns
    -------
    matrix : csr_matrix, shape (n_documents, n_features)
        float32 values; columns index ``columns``; each row's indices are sorted.
    columns : ndarray of uint32
        The sorted distinct feature hashes of this batch that are kept.

    Notes
    -----
    One radix sort over all features, O(F) for F (document, feature)
    cells, and a compiled binary search per cell; no Python loop per
    feature.
    """
    columns = _distinct_union(features)
    df, documents = frequencies.counts_of(columns), frequencies.documents
    return _rows_over(features, counts, columns, df, documents, weights, min_documents, jobs)


def fitted_tfidf_rows(
    features: Sequence[np.ndarray],
    counts: Sequence[np.ndarray],
    min_documents: int = 1,
    jobs: int = 1,
) -> tuple[sparse.csr_matrix, np.ndarray]:
    """:func:`tfidf_rows` with IDF fitted on the same documents.

    Equal to ``tfidf_rows(f, c, DocumentFrequencies.count(f), min_documents=m)``,
    with the sorting done once. With ``min_documents`` 2 or more, the features
    of one document (most of a batch's distinct features) are dropped from the
    table the rows are built from: their IDF is known, and they are never
    columns. At a million documents that table is gigabytes smaller.
    """
    frequencies = DocumentFrequencies.count(features)
    table, df = frequencies.features, frequencies.counts
    unlisted = None
    if min_documents > 1:
        shared = df >= 2
        table, df = table[shared], df[shared]
        unlisted = float(frequencies.idf_of_counts(np.ones(1, np.int64))[0])
    idf = frequencies.idf_of_counts(df)
    del frequencies
    kept = df >= min_documents if min_documents > 1 else None
    matrix = weighted_rows(features, counts, table, idf, None, kept, unlisted, jobs)
    return matrix, table if kept is None else table[kept]


def summed_frequencies(
    features: Sequence[np.ndarray], tables: Sequence[DocumentFrequencies], total: int
) -> DocumentFrequencies:
    """The frequencies of the documents' distinct features, summed over ``tables`` of
    ``total`` documents in all: a table of just those features, for :func:`rows_over`.

    An index scores documents with its stored frequencies plus the batch's,
    so a verdict does not depend on the batch an article came in with.
    """
    columns = _distinct_union(features)
    df = sum((table.counts_of(columns) for table in tables), np.zeros(columns.size, np.int64))
    return DocumentFrequencies(columns, df, total)


def rows_over(
    features: Sequence[np.ndarray],
    counts: Sequence[np.ndarray],
    frequencies: DocumentFrequencies,
    min_documents: int = 1,
    jobs: int = 1,
    norms: np.ndarray | None = None,
    norms_out: np.ndarray | None = None,
) -> tuple[sparse.csr_matrix, np.ndarray]:
    """:func:`tfidf_rows` over the features ``frequencies`` lists, which hold every
    feature of the documents (:func:`summed_frequencies` of them).

    With ``norms`` (:func:`tfidf_norms`, or ``norms_out`` of an earlier call,
    kept) they need hold only the features that matter: a stored document's
    row over a new batch's features is all its dot products with the batch
    need. ``norms_out`` receives each row's norm.
    """
    return _rows_over(
        features,
        counts,
        frequencies.features,
        frequencies.counts,
        frequencies.documents,
        None,
        min_documents,
        jobs,
        norms,
        norms_out,
    )


def tfidf_norms(
    features: Sequence[np.ndarray],
    counts: Sequence[np.ndarray],
    frequencies: DocumentFrequencies,
    jobs: int = 1,
) -> np.ndarray:
    """The L2 norm of each document's TF-IDF values, ``frequencies`` holding every
    feature of the documents: :func:`rows_over`'s ``norms_out``, with no column kept."""
    norms = np.empty(len(features))
    no_column = np.zeros(frequencies.features.size, dtype=bool)
    idf = frequencies.idf_of_counts(frequencies.counts)
    weighted_rows(
        features, counts, frequencies.features, idf, None, no_column, None, jobs, None, norms
    )
    return norms


def _rows_over(
    features: Sequence[np.ndarray],
    counts: Sequence[np.ndarray],
    columns: np.ndarray,
    df: np.ndarray,
    documents: int,
    weights: np.ndarray | None,
    min_documents: int,
    jobs: int,
    norms: np.ndarray | None = None,
    norms_out: np.ndarray | None = None,
) -> tuple[sparse.csr_matrix, np.ndarray]:
    """:func:`tfidf_rows` once the documents' sorted distinct features (``columns``) are
    known, with ``df`` of ``documents`` holding each: the union is sorted and
    looked up once."""
    kept = df >= min_documents if min_documents > 1 else None
    idf = DocumentFrequencies(columns, df, documents).idf_of_counts(df)
    matrix = weighted_rows(
        features, counts, columns, idf, weights, kept, None, jobs, norms, norms_out
    )
    return matrix, columns if kept is None else columns[kept]


def top_features(
    matrix: sparse.csr_matrix,
    columns: np.ndarray,
    k: int,
    eligible: np.ndarray | None = None,
    jobs: int = 1,
) -> list[np.ndarray]:
    """Per row, the hashes of its ``k`` highest-weighted features (ties by hash), sorted.

    A document's keywords: the names, places and phrases that set it apart
    from the batch. MinHash over keyword sets proposes pairs that share what
    is specific to them, instead of the common words any two articles share.
    ``eligible``, a boolean per column, limits the choice to those columns
    (see :func:`word_columns`); None lets every column be chosen. ``jobs``
    threads share the rows; the result does not depend on it.

    Notes
    -----
    A compiled loop selects each row's ``k`` heaviest with a partition, O(nnz)
    in all; :func:`reference_top_features`, a stable sort per row, is the
    numpy version it must equal.
    """
    matrix = matrix.tocsr()
    columns = np.asarray(columns)
    eligible = np.ones(columns.size, bool) if eligible is None else np.asarray(eligible, bool)
    if np.any(columns[1:] < columns[:-1]):  # put the columns in hash order
        by_hash = np.argsort(columns, kind="stable")
        matrix, columns, eligible = matrix[:, by_hash].tocsr(), columns[by_hash], eligible[by_hash]
    if not matrix.has_sorted_indices:
        matrix = matrix.copy()
        matrix.sort_indices()
    # Within a row, column order is now hash order: taking equal weights in
    # column order breaks ties by hash, and the chosen come out in hash order.
    indptr = matrix.indptr.astype(np.int64)
    parts = call_in_threads(
        lambda lo, hi: _top_positions(
            indptr[lo : hi + 1], matrix.indices, matrix.data, eligible, k
        ),
        runs_of_cells(indptr, jobs, _MIN_THREAD_CELLS),
    )
    positions = np.concatenate([p for p, _ in parts])
    counts = np.concatenate([c for _, c in parts])
    hashes = columns[matrix.indices[positions]].astype(np.uint32)
    # np.split gives one empty part for no rows: no documents have no keyword sets.
    return np.split(hashes, np.cumsum(counts)[:-1]) if counts.size else []


@numba.njit(cache=True, nogil=True)
def _top_positions(indptr, indices, data, eligible, k):  # pragma: no cover - compiled
    n = indptr.size - 1
    counts = np.zeros(n, np.int64)
    for i in range(n):
        for p in range(indptr[i], indptr[i + 1]):
            counts[i] += eligible[indices[p]]
        counts[i] = min(k, counts[i])
    out = np.empty(counts.sum(), np.int64)
    at = 0
    for i in range(n):
        want = counts[i]
        if want == 0:
            continue
        start = indptr[i]
        allowed = np.flatnonzero(eligible[indices[start : indptr[i + 1]]]) + start
        if allowed.size == want:
            out[at : at + want] = allowed
            at += want
            continue
        # The want-th heaviest weight: every heavier feature is chosen, then the
        # first of those equal to it in column (hash) order, as a stable sort
        # by weight would; a selection, not a sort, of the row.
        weights = data[allowed]
        cut = np.partition(weights, allowed.size - want)[allowed.size - want]
        ties = want - np.count_nonzero(weights > cut)
        for p in allowed:
            if data[p] > cut or (data[p] == cut and ties > 0):
                ties -= data[p] == cut
                out[at] = p
                at += 1
    return out, counts


def reference_top_features(
    matrix: sparse.csr_matrix, columns: np.ndarray, k: int, eligible: np.ndarray | None = None
) -> list[np.ndarray]:
    """The plain numpy version of :func:`top_features`, which the tests hold it to."""
    matrix = matrix.tocsr()
    n = matrix.shape[0]
    owner = np.repeat(np.arange(n), np.diff(matrix.indptr))
    hashes = columns[matrix.indices]
    allowed = np.ones(hashes.size, bool) if eligible is None else eligible[matrix.indices]
    owner, hashes, data = owner[allowed], hashes[allowed], matrix.data[allowed]
    order = np.lexsort((hashes, -data, owner))
    first = np.searchsorted(owner, np.arange(n))  # owner is sorted: each row's first entry
    rank = np.arange(order.size) - first[owner[order]]
    chosen = order[rank < k]
    chosen = chosen[np.lexsort((hashes[chosen], owner[chosen]))]
    bounds = np.searchsorted(owner[chosen], np.arange(1, n))
    return np.split(hashes[chosen].astype(np.uint32), bounds)


def word_columns(columns: np.ndarray, words: np.ndarray) -> np.ndarray:
    """Which ``columns`` (feature hashes) are single words: in the sorted hashes ``words``.

    A bigram whose hash equals some word's counts as a word: one feature in
    about 4 billion / (distinct words), and the same on every engine.
    """
    columns = np.asarray(columns)
    if words.size == 0:
        return np.zeros(columns.size, bool)
    at = np.minimum(np.searchsorted(words, columns), words.size - 1)
    return words[at] == columns


def merge_counts(
    features: np.ndarray, counts: np.ndarray, more: np.ndarray, more_counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Add sorted ``(more, more_counts)`` into sorted ``(features, counts)``.

    Both are sorted and distinct; so is the result, and a feature in both has
    the sum of its counts. One compiled pass over both: an index adds a
    batch's features to tens of millions after every commit, and a search
    with an insert copied the whole table several times (seconds at a million
    documents).
    """
    features = np.asarray(features, dtype=np.uint32)
    more = np.asarray(more, dtype=np.uint32)
    out_features = np.empty(features.size + more.size, dtype=np.uint32)
    out_counts = np.empty(out_features.size, dtype=np.int64)
    size = _merge_sorted_counts(
        features,
        np.asarray(counts, dtype=np.int64),
        more,
        np.asarray(more_counts, dtype=np.int64),
        out_features,
        out_counts,
    )
    # Pages past ``size`` were never written, so they hold no memory.
    return out_features[:size], out_counts[:size]


@numba.njit(cache=True, nogil=True)
def _merge_sorted_counts(
    features, counts, more, more_counts, out_features, out_counts
):  # pragma: no cover - compiled
    i = j = k = 0
    while i < features.size and j < more.size:
        if features[i] < more[j]:
            out_features[k], out_counts[k] = features[i], counts[i]
            i += 1
        elif more[j] < features[i]:
            out_features[k], out_counts[k] = more[j], more_counts[j]
            j += 1
        else:
            out_features[k], out_counts[k] = features[i], counts[i] + more_counts[j]
            i += 1
            j += 1
        k += 1
    for rest in range(i, features.size):
        out_features[k], out_counts[k] = features[rest], counts[rest]
        k += 1
    for rest in range(j, more.size):
        out_features[k], out_counts[k] = more[rest], more_counts[rest]
        k += 1
    return k
