"""Verification: score candidate pairs and keep the ones that are the same story.

Stories are scored by the dot product of TF-IDF vectors (:mod:`dedup.vectors`),
adjusted for publication dates; copies are scored by exact Jaccard over
shingles. Everything here is pure: arrays in, arrays out.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

import numba
import numpy as np
from scipy import sparse

from dedup.signature import exact_jaccard
from dedup.threads import call_in_threads

_EPOCH = datetime(1970, 1, 1)
_DAY = timedelta(days=1)
# Pairs scored per sparse batch: bounds the temporary row copies to a few MB.
_PAIR_BATCH = 1 << 16
# Fewest pairs that each thread of pair_cosines takes: starting one costs more.
_MIN_THREAD_PAIRS = 1 << 8


def pair_cosines(
    matrix: sparse.csr_matrix, rows: np.ndarray, cols: np.ndarray, jobs: int = 1
) -> np.ndarray:
    """Cosine of each (rows[k], cols[k]) pair of L2-normalised sparse rows.

    ``jobs`` threads share the pairs; the result does not depend on it.

    Notes
    -----
    A compiled loop over the pairs grouped by their first document: that row
    goes once into a small hash table of its columns, then each partner's
    nonzeros are looked up in it, so a pair costs the partner's row length and
    no row is copied. The table stays in cache whatever the width
    of the matrix; a dense row of millions of columns would not, and a pair
    would wait on memory for each of its partner's rare features. Products are
    summed in column order, so the result equals :func:`reference_pair_cosines`
    bit for bit.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    if rows.shape != cols.shape:
        raise ValueError("rows and cols must have one length")
    if not matrix.has_sorted_indices:
        matrix = matrix.copy()
        matrix.sort_indices()
    out = np.empty(rows.size, dtype=np.float64)
    order = np.argsort(rows, kind="stable")
    arrays = (
        matrix.indptr.astype(np.int64, copy=False),
        matrix.indices,
        matrix.data,  # float32 or float64: the kernel multiplies in float64 either way
        rows,
        cols,
    )
    # Each thread takes a contiguous run of the ordered pairs; the kernel
    # releases the GIL. A few pairs (an index query's) are not worth a thread.
    runs = np.array_split(order, max(1, min(jobs, rows.size // _MIN_THREAD_PAIRS)))
    call_in_threads(_pair_dots, [(*arrays, run, out) for run in runs])
    return np.clip(out, 0.0, 1.0)


@numba.njit(cache=True, nogil=True)
def _pair_dots(indptr, indices, data, rows, cols, order, out):  # pragma: no cover - compiled
    # Open addressing, at most a sixteenth full; a slot from the top bits of a
    # Fibonacci hash of the column. Each row uses the first 2**bits slots its
    # length needs, so one very long row does not make every later row clear
    # (and probe) a large table.
    keys = np.full(1 << 10, -1, np.int64)
    values = np.zeros(1 << 10, data.dtype)
    bits = 10
    current = -1
    for k in order:
        i = rows[k]
        if i != current:
            bits = 10
            while (1 << bits) < 16 * (indptr[i + 1] - indptr[i]):
                bits += 1
            if keys.size < (1 << bits):
                keys = np.full(1 << bits, -1, np.int64)
                values = np.zeros(1 << bits, data.dtype)
            else:
                keys[: 1 << bits] = -1
            for p in range(indptr[i], indptr[i + 1]):
                slot = _slot(indices[p], bits)
                while keys[slot] != -1:
                    slot = (slot + 1) & ((1 << bits) - 1)
                keys[slot] = indices[p]
                values[slot] = data[p]
            current = i
        j = cols[k]
        total = 0.0
        for p in range(indptr[j], indptr[j + 1]):
            slot = _slot(indices[p], bits)
            while keys[slot] != -1:
                if keys[slot] == indices[p]:
                    # Products in float64, as the reference takes them; the
                    # columns row i lacks add nothing, in its sum an exact 0.0.
                    total += np.float64(data[p]) * np.float64(values[slot])
                    break
                slot = (slot + 1) & ((1 << bits) - 1)
        out[k] = total


@numba.njit(cache=True, nogil=True)
def _slot(column, bits):  # pragma: no cover - compiled
    return ((np.int64(column) * 0x9E3779B1) & 0xFFFFFFFF) >> (32 - bits)


def reference_pair_cosines(
    matrix: sparse.csr_matrix, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    """The plain scipy version of :func:`pair_cosines`, which the tests hold it to."""
    matrix = matrix.astype(np.float64)  # products in float64, as the kernel takes them
    out = np.empty(len(rows), dtype=np.float64)
    for start in range(0, len(rows), _PAIR_BATCH):
        stop = start + _PAIR_BATCH
        product = matrix[rows[start:stop]].multiply(matrix[cols[start:stop]]).tocsr()
        # Sum each row in column order: scipy's own row sums may add in another
        # order depending on the batch's shape, which moves the last bit.
        product.sort_indices()
        count = product.shape[0]
        owner = np.repeat(np.arange(count), np.diff(product.indptr))
        out[start:stop] = np.bincount(owner, weights=product.data, minlength=count)
    return np.clip(out, 0.0, 1.0)


def days_apart(published: Sequence[datetime | None] | np.ndarray, rows, cols) -> np.ndarray:
    """Days between each pair's publication times; NaN where either date is unknown.

    ``published`` holds datetimes, or their :func:`publication_days` (cheaper
    for a caller that scores many batches of pairs among the same documents).
    """
    stamps = published if isinstance(published, np.ndarray) else publication_days(published)
    return np.abs(stamps[rows] - stamps[cols]) if len(stamps) else np.empty(0)


def publication_days(published: Sequence[datetime | None]) -> np.ndarray:
    """Days since 1970 of each publication time, as float64; NaN where it is unknown."""
    # Subtract an epoch rather than call .timestamp(), which would read these
    # naive UTC datetimes as local time and shift gaps across daylight saving.
    return np.array([_days_since_epoch(p) for p in published], dtype=np.float64)


def _days_since_epoch(moment: datetime | None) -> float:
    if moment is None:
        return np.nan
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return (moment - _EPOCH) / _DAY


def time_factor(gap_days: np.ndarray, window_days: float, scale_days: float) -> np.ndarray:
    """1 within ``window_days``, then ``exp(-(gap - window) / scale)``; 1 where a date is unknown.

    Reports of one event come out within days of it, and story threads (a
    crime, then the trial) within weeks; the same topic months apart is
    usually another event. ``scale_days <= 0`` turns the factor off.
    """
    if scale_days <= 0:
        return np.ones(len(gap_days))
    excess = np.maximum(np.nan_to_num(gap_days, nan=0.0) - window_days, 0.0)
    return np.exp(-excess / scale_days)


def story_scores(
    matrix: sparse.csr_matrix | None,
    weights: np.ndarray | None,
    published: Sequence[datetime | None] | np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    window_days: float,
    scale_days: float,
    hash_sets: Sequence[np.ndarray] | None = None,
    jobs: int = 1,
    decays: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Score pairs ``(rows[k], cols[k])``; returns the ``score`` and the parts it is built from.

    With ``matrix`` (L2-normalised TF-IDF rows) and per-document length
    ``weights``, the base is ``cosine * length_factor`` (parts ``cosine`` and
    ``length_factor``); without it, the exact Jaccard of ``hash_sets`` (part
    ``jaccard``). Either is multiplied by the date decay (``days_apart``,
    ``time_factor``) and clipped to [0, 1]. The one place the parts are
    combined, so a batch run and an incremental index score a pair alike.
    ``jobs`` threads compute the cosines; the scores do not depend on it.
    ``published`` is as :func:`days_apart` takes it. ``decays``, the pairs'
    :func:`date_decays` where the caller has them already, are used as the
    ``time_factor``; ``days_apart`` is then not among the parts.
    """
    parts: dict[str, np.ndarray] = {}
    if matrix is not None:
        if weights is None:
            raise ValueError("a cosine score needs the length weights")
        parts["cosine"] = pair_cosines(matrix, rows, cols, jobs)
        parts["length_factor"] = weights[rows] * weights[cols]
        base = parts["cosine"] * parts["length_factor"]
    else:
        if hash_sets is None:
            raise ValueError("a Jaccard score needs the shingle sets")
        parts["jaccard"] = pair_jaccards(hash_sets, rows, cols)
        base = parts["jaccard"]
    if decays is None:
        parts["days_apart"] = days_apart(published, rows, cols)
        decays = time_factor(parts["days_apart"], window_days, scale_days)
    parts["time_factor"] = decays
    parts["score"] = np.clip(base * parts["time_factor"], 0.0, 1.0)
    return parts


def date_decays(
    published: Sequence[datetime | None] | np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    window_days: float,
    scale_days: float,
) -> np.ndarray:
    """Each pair's :func:`time_factor` of its :func:`days_apart`: its date decay."""
    return time_factor(days_apart(published, rows, cols), window_days, scale_days)


def score_ceilings(
    weights: np.ndarray | None, decays: np.ndarray, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    """The most each pair can score in :func:`story_scores`, whatever its cosine or Jaccard.

    Both are at most 1, so a score is at most the pair's length factor (with
    ``weights``) times its date decay (``decays``, :func:`date_decays`). A
    caller that drops pairs under some floor can skip scoring those whose
    ceiling is under it: articles months apart, most of the candidates in a
    long archive, never reach a cosine.
    """
    return decays * (weights[rows] * weights[cols]) if weights is not None else decays


def reach_days(
    weights: np.ndarray, floor: float, window_days: float, scale_days: float
) -> np.ndarray:
    """The widest date gap at which a pair with each document can still score ``floor``.

    :func:`score_ceilings` bounds a pair by both length weights (each at most
    1) times its date decay, so a document of weight ``w``
    (:func:`dedup.vectors.length_weights`) reaches ``floor`` only within
    ``window + scale * ln(w / floor)`` days: about 140 at the stories preset.
    Where it never can, the reach is -1; where dates do not count, it is
    infinite. A hair is added, so that rounding cannot make the reach drop a
    pair the exact ceiling keeps.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if scale_days <= 0 or floor <= 0:
        return np.full(weights.size, np.inf)
    reach = window_days + scale_days * np.log(np.maximum(weights, floor) / floor)
    return np.where(weights >= floor, reach + 1e-6, -1.0)


def pair_jaccards(hash_sets: Sequence[np.ndarray], rows, cols) -> np.ndarray:
    """Exact Jaccard of each pair's shingle-hash sets."""
    return np.array(
        [exact_jaccard(hash_sets[i], hash_sets[j]) for i, j in zip(rows, cols, strict=True)],
        dtype=np.float64,
    )
