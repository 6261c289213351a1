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
    grouped_ngram_hashes,
    shingle_hash_of,
    split_by_owner,
    term_hashes,
)


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


def feature_hash_lists(term_lists: Sequence[Sequence[str]], max_n: int = 2) -> list[np.ndarray]:
    """:func:`feature_hashes` of many term lists at once, with equal results."""
    if not 1 <= max_n <= MAX_SHINGLE_SIZE:
        raise ConfigError(f"n-grams must be 1 to {MAX_SHINGLE_SIZE} terms long")
    units, owner = batch_term_hashes(term_lists)
    parts = [(units, owner)] + [grouped_ngram_hashes(units, owner, n) for n in range(2, max_n + 1)]
    features = np.concatenate([hashes for hashes, _ in parts])
    feature_owner = np.concatenate([groups for _, groups in parts])
    # Stable: per document, its words and then its n-grams, as feature_hashes gives them.
    by_owner = np.argsort(feature_owner, kind="stable")
    return split_by_owner(features[by_owner], feature_owner[by_owner], len(term_lists))


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
    def count(cls, feature_lists: Sequence[np.ndarray]) -> DocumentFrequencies:
        """Count features over documents (each document counts a feature once)."""
        cells = _Cells.of(feature_lists)
        return cls(cells.columns, cells.document_counts, len(feature_lists))

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
        """Documents holding each of ``features`` (0 for one not counted)."""
        df = np.zeros(len(features), dtype=np.int64)
        if self.features.size:
            position = np.minimum(np.searchsorted(self.features, features), self.features.size - 1)
            found = self.features[position] == features
            df[found] = self.counts[position[found]]
        return df

    def idf(self, features: np.ndarray) -> np.ndarray:
        """Smoothed IDF, ``ln((1 + N) / (1 + df)) + 1``; unseen features get ``df = 0``."""
        return np.log((1.0 + self.documents) / (1.0 + self.counts_of(features))) + 1.0


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


@dataclass(frozen=True)
class _Cells:
    """The distinct (document, feature) cells of a batch, in (document, feature) order."""

    rows: np.ndarray  # document of each cell
    cols: np.ndarray  # column of each cell, an index into ``columns``
    term_counts: np.ndarray  # occurrences of the feature in the document
    columns: np.ndarray  # sorted distinct feature hashes
    document_counts: np.ndarray  # documents holding each column's feature
    documents: int

    @classmethod
    def of(cls, feature_lists: Sequence[np.ndarray]) -> _Cells:
        n = len(feature_lists)
        sizes = np.fromiter((f.size for f in feature_lists), dtype=np.int64, count=n)
        flat = np.concatenate(feature_lists).astype(np.uint64) if n else np.empty(0, np.uint64)
        # One sort of (document << 32 | feature) keys finds every cell and its count.
        keys = np.repeat(np.arange(n, dtype=np.uint64), sizes) << np.uint64(32) | flat
        keys.sort()
        first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if keys.size else keys
        cells = keys[first]
        hashes = (cells & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        # np.unique(hashes, return_inverse=True, return_counts=True), twice as fast.
        by_hash = np.argsort(hashes, kind="stable")
        ordered = hashes[by_hash]
        starts = np.r_[True, ordered[1:] != ordered[:-1]] if ordered.size else ordered.astype(bool)
        cols = np.empty(hashes.size, dtype=np.int64)
        cols[by_hash] = np.cumsum(starts) - 1
        return cls(
            rows=(cells >> np.uint64(32)).astype(np.int64),
            cols=cols,
            term_counts=np.diff(np.r_[first, keys.size]),
            columns=ordered[starts],
            document_counts=np.diff(np.r_[np.flatnonzero(starts), ordered.size]),
            documents=n,
        )


def tfidf_rows(
    feature_lists: Sequence[np.ndarray],
    frequencies: DocumentFrequencies,
    weights: np.ndarray | None = None,
    min_documents: int = 1,
) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Weighted, L2-normalised TF-IDF rows of documents.

    Parameters
    ----------
    feature_lists : sequence of ndarray of uint32
        Per document, its feature hashes with repeats (:func:`feature_hashes`).
    frequencies : DocumentFrequencies
        Supplies the IDF; features it has not seen get the highest IDF.
    weights : ndarray, optional
        Per-document factor applied after normalising (:func:`length_weights`).
    min_documents : int
        Keep only the columns of features that ``frequencies`` counts in at
        least this many documents. Rows are normalised before that: a feature
        of one document adds nothing to any dot product, so leaving it out
        (``min_documents=2``) changes no score and saves its memory.

    Returns
    -------
    matrix : csr_matrix, shape (n_documents, n_features)
        Columns index ``columns``; each row's indices are sorted.
    columns : ndarray of uint32
        The sorted distinct feature hashes of this batch that are kept.

    Notes
    -----
    Two numpy sorts over all features, O(F log F) for F features in the
    batch; no Python loop per feature.
    """
    cells = _Cells.of(feature_lists)
    return _rows_of(cells, frequencies, weights, min_documents)


def fitted_tfidf_rows(
    feature_lists: Sequence[np.ndarray], min_documents: int = 1
) -> tuple[sparse.csr_matrix, np.ndarray, DocumentFrequencies]:
    """:func:`tfidf_rows` with IDF fitted on the same documents, and their frequencies.

    Equal to ``tfidf_rows(f, DocumentFrequencies.count(f), min_documents=m)``,
    with the sorting done once.
    """
    cells = _Cells.of(feature_lists)
    frequencies = DocumentFrequencies(cells.columns, cells.document_counts, len(feature_lists))
    return (*_rows_of(cells, frequencies, None, min_documents), frequencies)


def _rows_of(
    cells: _Cells,
    frequencies: DocumentFrequencies,
    weights: np.ndarray | None,
    min_documents: int,
) -> tuple[sparse.csr_matrix, np.ndarray]:
    kept = frequencies.counts_of(cells.columns) >= min_documents if min_documents > 1 else None
    matrix = _weighted_rows(cells, frequencies.idf(cells.columns), weights, kept)
    return matrix, cells.columns if kept is None else cells.columns[kept]


def _weighted_rows(
    cells: _Cells, idf: np.ndarray, weights: np.ndarray | None, kept: np.ndarray | None = None
) -> sparse.csr_matrix:
    """CSR rows of the cells' TF-IDF values, over the ``kept`` columns (a mask) or all."""
    rows, cols = cells.rows, cells.cols
    values = (1.0 + np.log(cells.term_counts)) * idf[cols]
    norms = np.sqrt(np.bincount(rows, weights=values**2, minlength=cells.documents))
    values /= norms[rows]
    if weights is not None:
        values *= np.asarray(weights, dtype=np.float64)[rows]
    width = cells.columns.size
    if kept is not None:
        live = kept[cols]
        rows, values = rows[live], values[live]
        cols = (np.cumsum(kept) - 1)[cols[live]]
        width = int(np.count_nonzero(kept))
    # Cells come sorted by (row, column): the CSR arrays are the cells themselves.
    indptr = np.r_[0, np.cumsum(np.bincount(rows, minlength=cells.documents))]
    return sparse.csr_matrix((values, cols, indptr), shape=(cells.documents, width))


def columns_by_frequency(matrix: sparse.csr_matrix) -> sparse.csr_matrix:
    """Renumber the columns of CSR ``matrix`` in place, from the most to the least frequent.

    Scoring pairs reads each row against a dense copy of another: with the
    features most rows share packed together at the front, those reads stay in
    cache, which halves the cost on large batches. Column numbers then no
    longer match the batch's feature hashes, so use it for dot products only.
    In place, because a million documents' matrix is gigabytes: only the new
    column indices are allocated. Returns ``matrix``.
    """
    frequency = np.bincount(matrix.indices, minlength=matrix.shape[1])
    rank = np.empty(matrix.shape[1], dtype=matrix.indices.dtype)
    rank[np.argsort(-frequency, kind="stable")] = np.arange(matrix.shape[1])
    matrix.indices = rank[matrix.indices]
    matrix.has_sorted_indices = False
    matrix.sort_indices()
    return matrix


def top_features(matrix: sparse.csr_matrix, columns: np.ndarray, k: int) -> list[np.ndarray]:
    """Per row, the hashes of its ``k`` highest-weighted features (ties by hash), sorted.

    A document's keywords: the names, places and phrases that set it apart
    from the batch. MinHash over keyword sets proposes pairs that share what
    is specific to them, instead of the common words any two articles share.

    Notes
    -----
    A compiled loop does one stable sort per row, O(nnz log(row length)) in
    all; :func:`reference_top_features` is the numpy version it must equal.
    """
    matrix = matrix.tocsr()
    columns = np.asarray(columns)
    if np.any(columns[1:] < columns[:-1]):  # put the columns in hash order
        by_hash = np.argsort(columns, kind="stable")
        matrix, columns = matrix[:, by_hash].tocsr(), columns[by_hash]
    if not matrix.has_sorted_indices:
        matrix = matrix.copy()
        matrix.sort_indices()
    # Within a row, column order is now hash order: a stable sort by weight
    # leaves ties by hash, and sorting the chosen positions puts them in hash order.
    positions, counts = _top_positions(matrix.indptr.astype(np.int64), matrix.data, k)
    hashes = columns[matrix.indices[positions]].astype(np.uint32)
    return np.split(hashes, np.cumsum(counts)[:-1])


@numba.njit(cache=True, nogil=True)
def _top_positions(indptr, data, k):  # pragma: no cover - compiled
    n = indptr.size - 1
    counts = np.empty(n, np.int64)
    for i in range(n):
        counts[i] = min(k, indptr[i + 1] - indptr[i])
    out = np.empty(counts.sum(), np.int64)
    at = 0
    for i in range(n):
        start = indptr[i]
        chosen = np.argsort(-data[start : indptr[i + 1]], kind="mergesort")[: counts[i]]
        chosen.sort()
        out[at : at + counts[i]] = chosen + start
        at += counts[i]
    return out, counts


def reference_top_features(
    matrix: sparse.csr_matrix, columns: np.ndarray, k: int
) -> list[np.ndarray]:
    """The plain numpy version of :func:`top_features`, which the tests hold it to."""
    matrix = matrix.tocsr()
    n = matrix.shape[0]
    owner = np.repeat(np.arange(n), np.diff(matrix.indptr))
    hashes = columns[matrix.indices]
    order = np.lexsort((hashes, -matrix.data, owner))
    rank = np.arange(order.size) - matrix.indptr[owner[order]]
    chosen = order[rank < k]
    chosen = chosen[np.lexsort((hashes[chosen], owner[chosen]))]
    bounds = np.searchsorted(owner[chosen], np.arange(1, n))
    return np.split(hashes[chosen].astype(np.uint32), bounds)
