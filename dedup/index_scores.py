"""How a :class:`dedup.index.StoryIndex` scores stored documents against a batch.

Scores use the index's document frequencies of today, which move with every
batch. Two things a score needs from a stored document are kept in the store
instead of being taken afresh from all its features each time: its TF-IDF
norm, and its stored links' scores. Each stands while the index has grown
(or shrunk) by at most ``FRESH_GROWTH`` since it was taken (:func:`is_fresh`);
a batch takes those it meets again once they are older than that. IDF moves
with the logarithm of the index's size: over 10% growth of the synthetic
benchmark corpus a kept norm was off by 0.5% (median; 0.8% at the 99th
percentile, 2.4% at most) from one taken afresh, so a score moves by about as
much. In exchange a stored candidate's row over the batch's own features,
divided by its kept norm, is all its dot products with the batch need: its
other features are never looked up.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

import numpy as np
from scipy import sparse

from dedup.analysis import default_jobs
from dedup.params import Params
from dedup.pipeline import LINK_FLOOR
from dedup.stores import Candidates, StoredRows
from dedup.vectors import (
    DocumentFrequencies,
    length_weights,
    merge_counts,
    rows_over,
    summed_frequencies,
    tfidf_norms,
)
from dedup.verify import date_decays, score_ceilings, story_scores

FRESH_GROWTH = 1.1
# The recent table is folded into the large one once it holds this share of its features.
_FOLD_SHARE = 1 / 8


class KeptFrequencies:
    """An index's document frequencies, as a large table and a small one of what came since.

    Adding each batch's counts straight into tens of millions of features
    rewrote the whole table after every commit (1 to 1.6 s an add at a
    million documents). They go into the small table instead, which is
    folded into the large one once it holds ``_FOLD_SHARE`` of its features:
    the large table is rewritten every few adds, and keeps its search
    directory (see :meth:`DocumentFrequencies.counts_of`) until then.
    Lookups sum both (:meth:`tables`).
    """

    def __init__(self) -> None:
        self.documents = 0
        self._large = self._recent = _no_frequencies()

    def tables(self) -> tuple[DocumentFrequencies, DocumentFrequencies]:
        """Tables whose counts, summed, are the frequencies (``documents`` unused)."""
        return self._large, self._recent

    def add(self, features: np.ndarray, counts: np.ndarray, documents: int = 0) -> None:
        """Count a run of sorted distinct ``features`` (``counts`` documents each) in."""
        self._recent = DocumentFrequencies(
            *merge_counts(self._recent.features, self._recent.counts, features, counts), 0
        )
        self.documents += documents
        if self._recent.features.size > _FOLD_SHARE * self._large.features.size:
            self._large, self._recent = DocumentFrequencies(*self.whole(), 0), _no_frequencies()

    def reset(self, features: np.ndarray, counts: np.ndarray, documents: int) -> None:
        """Replace everything with one whole table."""
        self._large, self._recent = DocumentFrequencies(features, counts, 0), _no_frequencies()
        self.documents = documents

    def whole(self) -> tuple[np.ndarray, np.ndarray]:
        """The frequencies as one table: ``(features, counts)``."""
        if not self._recent.features.size:
            return self._large.features, self._large.counts
        return merge_counts(
            self._large.features, self._large.counts, self._recent.features, self._recent.counts
        )


def _no_frequencies() -> DocumentFrequencies:
    return DocumentFrequencies(np.empty(0, np.uint32), np.empty(0, np.int64), 0)


def is_fresh(taken_at: int | np.ndarray, documents: int) -> bool | np.ndarray:
    """Whether a norm or score taken when the index held ``taken_at`` documents still
    stands now that it holds ``documents``: within ``FRESH_GROWTH`` either way.
    Elementwise for an array of ``taken_at``."""
    return (taken_at * FRESH_GROWTH >= documents) & (documents * FRESH_GROWTH >= taken_at)


def kept_norms(
    stored: StoredRows,
    tables: Sequence[DocumentFrequencies],
    total: int,
    refreshed: dict[str, tuple[float, int]],
    frequencies: DocumentFrequencies | None = None,
) -> np.ndarray:
    """The stored documents' TF-IDF norms as kept; those taken too long ago (or never)
    are taken again with the frequencies of ``tables`` (``total`` documents) and
    noted in ``refreshed`` as ``id -> (norm, total)``, for the batch to write.

    ``frequencies``, :func:`summed_frequencies` of the documents' features
    where the caller has it already, saves counting them again.
    """
    norms = stored.norms.copy()
    taken = ~np.isnan(norms) & is_fresh(stored.norm_documents, total)
    if refreshed:
        for k, doc_id in enumerate(stored.ids):
            if doc_id in refreshed:
                norms[k], taken[k] = refreshed[doc_id][0], True
    stale = np.flatnonzero(~taken).tolist()
    if stale:
        feats = [stored.features[k] for k in stale]
        counts = [stored.counts[k] for k in stale]
        if frequencies is None:
            frequencies = summed_frequencies(feats, tables, total)
        norms[stale] = tfidf_norms(feats, counts, frequencies, default_jobs())
        refreshed.update((stored.ids[k], (float(norms[k]), total)) for k in stale)
    return norms


def rescored_links(
    stored: StoredRows,
    rows: np.ndarray,
    cols: np.ndarray,
    tables: Sequence[DocumentFrequencies],
    total: int,
    refreshed: dict[str, tuple[float, int]],
    params: Params,
) -> np.ndarray:
    """Scores of the stored links between rows ``rows[k]`` and ``cols[k]`` of
    ``stored`` with the frequencies of today.

    Norms come from :func:`kept_norms` (stale ones taken again and noted in
    ``refreshed``), so a link scores as a new pair of the same documents would.
    """
    matrix = weights = hash_sets = None
    if params.similarity == "cosine":
        frequencies = summed_frequencies(stored.features, tables, total)
        norms = kept_norms(stored, tables, total, refreshed, frequencies)
        matrix, _ = rows_over(stored.features, stored.counts, frequencies, 2, default_jobs(), norms)
        weights = length_weights(stored.distinct_terms, params.length_reference)
    else:
        hash_sets = shingle_sets(stored.shingles)
    return pair_scores(matrix, weights, stored.days, rows, cols, hash_sets, params)


def shingle_sets(shingles: Sequence[np.ndarray | None]) -> list[np.ndarray]:
    """Shingle sets for the jaccard similarity; an empty one where none is kept."""
    return [s if s is not None else np.empty(0, np.uint32) for s in shingles]


def pair_scores(
    matrix: sparse.csr_matrix | None,
    weights: np.ndarray | None,
    published: Sequence[datetime | None] | np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    hash_sets: Sequence[np.ndarray] | None,
    params: Params,
) -> np.ndarray:
    """:func:`dedup.verify.story_scores` of pairs ``rows[p]``, ``cols[p]`` with the
    index's parameters: TF-IDF rows and weights, or shingle sets (jaccard);
    ``published`` as :func:`dedup.verify.days_apart` takes it."""
    return story_scores(
        matrix,
        weights,
        published,
        rows,
        cols,
        params.time_window_days,
        params.time_scale_days,
        hash_sets,
        default_jobs(),
    )["score"]


def reachable_candidates(
    candidates: Candidates,
    days: np.ndarray | None,
    weights: np.ndarray | None,
    params: Params,
) -> Candidates:
    """The candidates whose dates and lengths let them reach a link.

    ``days`` and ``weights`` are the new documents' publication days and
    length weights (None: scores do not use them). The store gives each
    candidate's day and length with it: a pair whose length factor and
    date decay alone keep it under the link floor is dropped unscored, as
    :func:`dedup.pipeline.cluster` drops it, and in a long archive that is
    most candidates, whose vectors then need not be read at all.
    """
    owners, mates = candidates.owners, candidates.mates
    if days is not None and weights is not None and owners.size:
        # Nodes: the new documents, then the candidates.
        stored_weights = length_weights(candidates.distinct_terms, params.length_reference)
        weights = np.concatenate([weights, stored_weights])
        nodes = mates + days.size
        decays = date_decays(
            np.concatenate([days, candidates.days]),
            owners,
            nodes,
            params.time_window_days,
            params.time_scale_days,
        )
        reach = score_ceilings(weights, decays, owners, nodes) >= params.threshold * LINK_FLOOR
        owners, mates = owners[reach], mates[reach]
    return dataclasses.replace(candidates, owners=owners, mates=mates)
