"""Candidate pairs: documents whose MinHash signatures collide in an LSH band.

The banding maths is in plain functions (:func:`collision_probability`,
:func:`lsh_params`) that can be checked without an index.
:func:`candidate_blocks` is the fast path: it bands the whole signature array
with numpy sorts, bounds what one huge bucket (boilerplate, a very common
word) can emit, and gives each pair once, band by band, so a caller can score
and drop pairs without ever holding them all; :func:`candidate_pairs` collects
them. Two plain versions are kept beside it for the tests:
:func:`reference_bounded_pairs`, all bands' pairs at once in numpy, and
:func:`reference_candidate_pairs`, which puts the signatures into datasketch's
``MinHashLSH`` and reads back every pair that shares a bucket (equal whenever
no bucket is over the bound).
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from datasketch import MinHashLSH

from dedup.errors import ConfigError
from dedup.shingle import fmix32
from dedup.signature import EMPTY, signed, to_minhash


def collision_probability(similarity: np.ndarray | float, bands: int, rows: int):
    """Probability that two sets of Jaccard ``similarity`` share at least one band."""
    return 1.0 - (1.0 - np.asarray(similarity, dtype=np.float64) ** rows) ** bands


def lsh_params(
    threshold: float, num_perm: int, false_positive_weight: float = 0.5
) -> tuple[int, int]:
    """Bands (2 or more) and rows, ``bands * rows <= num_perm``, that best split at ``threshold``.

    Minimises the weighted sum of the false-positive area (collisions below
    the threshold) and the false-negative area (misses above it) under the
    S-curve, the criterion datasketch uses.

    Parameters
    ----------
    threshold : float
        Jaccard similarity in (0, 1) at which pairs should start to collide.
    num_perm : int
        Signature length.
    false_positive_weight : float
        In [0, 1]; the false-negative weight is its complement. Story
        clustering wants recall, so callers may lower it.
    """
    if num_perm < 2:
        raise ConfigError("LSH needs at least 2 permutations")
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"LSH threshold must be between 0 and 1, got {threshold}")
    if not 0.0 <= false_positive_weight <= 1.0:
        raise ConfigError("false_positive_weight must be between 0 and 1")
    below = np.linspace(0.0, threshold, 201)
    above = np.linspace(threshold, 1.0, 201)
    best: tuple[float, int, int] | None = None
    # datasketch's MinHashLSH refuses a single band, so the search starts at two.
    for bands in range(2, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            false_pos = np.trapezoid(collision_probability(below, bands, rows), below)
            false_neg = np.trapezoid(1.0 - collision_probability(above, bands, rows), above)
            error = false_positive_weight * false_pos + (1 - false_positive_weight) * false_neg
            if best is None or error < best[0] - 1e-15:
                best = (error, bands, rows)
    assert best is not None
    return best[1], best[2]


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One uint64 bucket key per document and band, shape ``(n, bands)``.

    Keys are exact for one or two rows (the values themselves, packed) and a
    64-bit mix of the rows beyond that, where a false collision (odds about
    2**-64 a pair) would only add a candidate that verification then scores.
    """
    n = signatures.shape[0]
    banded = signatures[:, : bands * rows].reshape(n, bands, rows).astype(np.uint64)
    if rows == 1:
        return banded[:, :, 0]
    if rows == 2:
        return (banded[:, :, 0] << np.uint64(32)) | banded[:, :, 1]
    keys = np.zeros((n, bands), dtype=np.uint64)
    for row in range(rows):
        keys = (keys ^ banded[:, :, row]) * np.uint64(0x9E3779B97F4A7C15)
        keys ^= keys >> np.uint64(29)
    return keys


def candidate_pairs(
    signatures: np.ndarray,
    bands: int,
    rows: int,
    max_bucket: int = 0,
    min_bands: int = 1,
    jobs: int = 1,
    days: np.ndarray | None = None,
    reach: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of documents that shares an LSH bucket, with huge buckets bounded.

    Parameters
    ----------
    signatures : ndarray of uint32, shape (n, num_perm)
        From :func:`dedup.signature.signatures`.
    bands, rows : int
        LSH banding, ``bands * rows <= num_perm``.
    max_bucket : int
        0 pairs every bucket completely. Otherwise a bucket of more than
        ``max_bucket + 1`` documents pairs each member only with the next
        ``max_bucket`` members in a pseudo-random order that differs by band:
        the bucket stays connected, and its cost grows linearly instead of
        quadratically.
    min_bands : int
        Keep only pairs that share a bucket in at least this many bands. The
        count estimates the pair's similarity (about ``bands * J`` for one-row
        bands), so 2 or 3 drops pairs that met by one chance shared shingle.
    jobs : int
        Threads; the result does not depend on it.
    days, reach : ndarray of float64, shape (n,), optional
        Each document's publication day (NaN: unknown) and the widest date gap
        at which it can still link (:func:`dedup.verify.reach_days`). Given
        both, a pair dated further apart than either document's reach is
        left out, whatever its bands: it could never score a link.

    Returns
    -------
    (ndarray, ndarray) of int64
        Row and column indices with ``i < j``, sorted, each pair once.
        Documents with an empty signature (no shingles) are never candidates.

    Notes
    -----
    The pairs of :func:`candidate_blocks`, sorted. Holding every pair at once
    costs 16 bytes a pair; a caller that scores and filters them can take the
    blocks one at a time instead.
    """
    found = candidate_blocks(signatures, bands, rows, max_bucket, min_bands, jobs, days, reach)
    n = signatures.shape[0]
    codes = np.sort(np.concatenate([i * n + j for i, j in found] or [np.empty(0, np.int64)]))
    return codes // max(n, 1), codes % max(n, 1)


def candidate_blocks(
    signatures: np.ndarray,
    bands: int,
    rows: int,
    max_bucket: int = 0,
    min_bands: int = 1,
    jobs: int = 1,
    days: np.ndarray | None = None,
    reach: np.ndarray | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The pairs of :func:`candidate_pairs`, one block per band, each pair in one block only.

    A pair is given with the first band that pairs it, and only if at least
    ``min_bands`` bands pair it; within a block, in the band's bucket order,
    ``i < j``. Memory is one block of pairs at a time, never all of them.

    Notes
    -----
    Each band's bucket order (its keys sorted, ties by a hash of document and
    band) is found once, O(n log n) per band, and kept as every document's
    rank in it, ``n * bands`` int32, and the rank's block of
    ``2**max_bucket.bit_length()`` ranks mod 256, ``n * bands`` bytes. A band
    pairs a document with a bucket mate at most ``max_bucket`` ranks away, so
    whether any band pairs a given pair is a compare of the two documents'
    keys and ranks: a compiled loop walks each band's buckets and keeps the
    pairs that band is the first to pair, with no pair materialised twice and
    no global sort. Mates in blocks too far apart in all but a few bands are
    ruled out from the bytes, without reading ranks. With ``days``
    and ``reach``, bucket mates dated out of each other's reach are dropped
    before their keys are read: in an archive of years most bucket mates
    are. :func:`reference_bounded_pairs` is the all-at-once version it must
    equal.
    """
    _check_banding(bands, rows, signatures.shape[1])
    if max_bucket < 0:
        raise ConfigError("max_bucket must be 0 (no bound) or positive")
    if not 1 <= min_bands <= bands:
        raise ConfigError(f"min_bands must be from 1 to the {bands} bands")
    if jobs < 1:
        raise ConfigError("jobs must be at least 1")
    window = _date_window(signatures.shape[0], days, reach)
    # Checked here, not on the first block: a generator would raise only when read.
    return _first_band_blocks(signatures, bands, rows, max_bucket, min_bands, jobs, window)


def _date_window(n: int, days: np.ndarray | None, reach: np.ndarray | None) -> np.ndarray:
    """Each document's (day, reach) as one row of float64, ``(n, 2)``; ``(0, 2)`` for no window."""
    if days is None and reach is None:
        return np.empty((0, 2))
    if days is None or reach is None or len(days) != n or len(reach) != n:
        raise ConfigError(f"days and reach must both be given, one value for each of {n} documents")
    return np.column_stack([np.asarray(days, np.float64), np.asarray(reach, np.float64)])


def _first_band_blocks(
    signatures: np.ndarray,
    bands: int,
    rows: int,
    max_bucket: int,
    min_bands: int,
    jobs: int,
    window: np.ndarray,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    n = signatures.shape[0]
    live = np.flatnonzero(signed(signatures))
    if live.size < 2:  # no pair to find (a single-document query, say): skip the bands
        return
    if window.size:  # rows of live documents only, as the keys are
        window = window[live]
    # One-row keys are the signature values themselves: no copy when all are live.
    if rows == 1:
        keys = signatures[:, :bands] if live.size == n else signatures[live, :bands]
    else:
        keys = band_keys(signatures[live], bands, rows)
    ranks = np.empty(keys.shape, dtype=np.int32)
    # Each rank's block of 2**shift ranks, mod 256: ranks at most max_bucket apart
    # (less than a block) are in the same or a neighbouring block, which a byte
    # tells. Without a bound every rank is close enough: no blocks.
    blocks = np.empty(keys.shape if max_bucket else (0, bands), dtype=np.uint8)
    shift = max_bucket.bit_length()

    def rank_band(band: int) -> None:
        ranks[_bucket_order(keys[:, band], live, band), band] = np.arange(live.size)
        if max_bucket:
            blocks[:, band] = ranks[:, band] >> shift  # the cast keeps the low 8 bits

    def pairs_of(band: int) -> tuple[np.ndarray, np.ndarray]:
        order = np.empty(live.size, dtype=np.int64)
        order[ranks[:, band]] = np.arange(live.size)
        left, right = _first_band_pairs(
            keys, ranks, blocks, order, band, max_bucket, min_bands, window
        )
        return live[left], live[right]

    # Threads: numpy's sorts and the compiled kernel release the GIL.
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(rank_band, range(bands)))
        # Only a few bands run ahead of the consumer: finished blocks wait in memory.
        ahead = collections.deque(pool.submit(pairs_of, b) for b in range(min(jobs, bands)))
        for band in range(jobs, bands + jobs):
            block = ahead.popleft().result()
            if band < bands:
                ahead.append(pool.submit(pairs_of, band))
            yield block


def _bucket_order(keys: np.ndarray, live: np.ndarray, band: int) -> np.ndarray:
    """Positions of one band's keys sorted; ties (a bucket) by a hash of (document, band).

    The tie order differs by band, so bounded buckets pair different neighbours
    in different bands.
    """
    # A bijection of the document number, so no two documents tie on it.
    shuffle = fmix32(live.astype(np.uint32) * np.uint32(0x9E3779B1) ^ np.uint32(band))
    if keys.dtype == np.uint32:  # one 64-bit sort of (key, shuffle), 3x faster than lexsort
        return np.argsort(keys.astype(np.uint64) << np.uint64(32) | shuffle)
    return np.lexsort((shuffle, keys))


@numba.njit(cache=True, nogil=True)
def _first_band_pairs(
    keys, ranks, blocks, order, band, max_bucket, min_bands, window
):  # pragma: no cover - compiled
    m, bands = keys.shape
    dated = window.shape[0] > 0
    limit = max_bucket if max_bucket > 0 else m  # no bound: every rank is close enough
    size = 1024
    left = np.empty(size, np.int64)
    right = np.empty(size, np.int64)
    found = 0
    # A member's mates go through filters, cheapest first, each a loop without
    # branches over the mates the last one kept: so the reads of many mates'
    # rows (random, mostly cache misses) are under way at once instead of one
    # after another. Only the few left get the exact check.
    mates = np.empty(1024, np.int64)
    equal = np.empty(1024, np.int32)
    start = 0
    while start < m:
        key = keys[order[start], band]
        end = start + 1
        while end < m and keys[order[end], band] == key:
            end += 1
        for p in range(start, end - 1):
            i = order[p]
            stop = end if max_bucket == 0 else min(end, p + 1 + max_bucket)
            if stop - p > mates.size:
                mates = np.empty(2 * (stop - p), np.int64)
                equal = np.empty(2 * (stop - p), np.int32)
            # Mates in reach. NaN days compare false: an unknown date is never out of reach.
            near = 0
            for q in range(p + 1, stop):
                j = order[q]
                mates[near] = j
                near += not (
                    dated and abs(window[i, 0] - window[j, 0]) > min(window[i, 1], window[j, 1])
                )
            # Most bucket mates share only a band or two: a count of equal keys,
            # which the compiler vectorises, rules them out first.
            for t in range(near):
                j = mates[t]
                count = 0
                for b in range(bands):
                    count += keys[i, b] == keys[j, b]
                equal[t] = count
            near = _kept(mates, equal, near, min_bands)
            # Most pairs left share many bands, so were paired by an earlier one:
            # the first earlier band with an equal key nearly always pairs them.
            for t in range(near):
                j = mates[t]
                first = band
                for b in range(band):
                    first = min(first, b if keys[i, b] == keys[j, b] else band)
                at = first if first < band else 0
                equal[t] = first == band or abs(ranks[i, at] - ranks[j, at]) > limit
            near = _kept(mates, equal, near, 1)
            # In a large batch many pairs share keys of huge buckets but are far
            # apart in them: equal keys in blocks too far apart cannot pair.
            if max_bucket > 0:
                for t in range(near):
                    j = mates[t]
                    count = 0
                    for b in range(bands):
                        count += (keys[i, b] == keys[j, b]) & _near_blocks(
                            blocks[i, b], blocks[j, b]
                        )
                    equal[t] = count
                near = _kept(mates, equal, near, min_bands)
            for t in range(near):
                j = mates[t]
                # Which bands pair (i, j): same key, ranks close enough.
                count = 0
                for b in range(bands):
                    if keys[i, b] == keys[j, b] and abs(ranks[i, b] - ranks[j, b]) <= limit:
                        if b < band:  # an earlier band gives this pair
                            count = -1
                            break
                        count += 1
                if count >= min_bands:
                    if found == size:
                        size *= 2
                        left = grown(left, size)
                        right = grown(right, size)
                    left[found] = min(i, j)
                    right[found] = max(i, j)
                    found += 1
        start = end
    return left[:found], right[:found]


@numba.njit(cache=True, nogil=True, inline="always")
def _near_blocks(first, second):  # pragma: no cover - compiled
    """Whether two blocks (uint8, mod 256) are equal or neighbours: differ by -1, 0 or 1."""
    return np.uint8(first - second + np.uint8(1)) <= 2


@numba.njit(cache=True, nogil=True, inline="always")
def _kept(mates, scores, count, least):  # pragma: no cover - compiled
    """Move the first ``count`` mates whose score is at least ``least`` to the front; how many."""
    kept = 0
    for t in range(count):
        mates[kept] = mates[t]
        kept += scores[t] >= least
    return kept


@numba.njit(cache=True, nogil=True)
def grown(array, size):  # pragma: no cover - compiled
    """``array`` copied into a new array of ``size`` (at least its own), for compiled loops."""
    out = np.empty(size, array.dtype)
    out[: array.size] = array
    return out


def reference_bounded_pairs(
    signatures: np.ndarray,
    bands: int,
    rows: int,
    max_bucket: int = 0,
    min_bands: int = 1,
    days: np.ndarray | None = None,
    reach: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`candidate_pairs` all at once in numpy: every band's pairs, sorted, repeats counted.

    The plain version the tests hold :func:`candidate_blocks` to, bounded
    buckets, ``min_bands`` and the date window included; it holds every
    band's pairs at once.
    """
    n, num_perm = signatures.shape
    _check_banding(bands, rows, num_perm)
    live = np.flatnonzero(signed(signatures))
    keys = band_keys(signatures[live], bands, rows)
    found: list[np.ndarray] = [np.empty(0, dtype=np.int64)]
    for band in range(bands):
        order = _bucket_order(keys[:, band], live, band)
        left, right = _bucket_pairs(keys[order, band], max_bucket)
        left, right = live[order[left]], live[order[right]]
        found.append(np.minimum(left, right) * n + np.maximum(left, right))
    codes = np.sort(np.concatenate(found))
    first = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]) if codes.size else codes
    first = first[np.diff(np.r_[first, codes.size]) >= min_bands]
    left, right = codes[first] // max(n, 1), codes[first] % max(n, 1)
    window = _date_window(n, days, reach)
    if window.size:  # NaN days compare false: an unknown date is never out of reach
        gap = np.abs(window[left, 0] - window[right, 0])
        near = ~(gap > np.minimum(window[left, 1], window[right, 1]))
        left, right = left[near], right[near]
    return left, right


def _bucket_pairs(sorted_keys: np.ndarray, max_bucket: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(p, q)``, ``p < q``, of sorted keys in one run, q at most ``max_bucket`` after p.

    Built with ``repeat`` and ``cumsum`` in O(pairs), with no loop over buckets.
    """
    m = sorted_keys.size
    if m == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    run_start = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    run_end = np.r_[run_start[1:], m]
    end_of = np.repeat(run_end, np.diff(np.r_[run_start, m]))
    later = end_of - np.arange(m) - 1  # members after each position in its run
    counts = later if max_bucket == 0 else np.minimum(later, max_bucket)
    left = np.repeat(np.arange(m), counts)
    step = np.arange(left.size) - np.repeat(np.cumsum(counts) - counts, counts)
    return left, left + 1 + step


def reference_candidate_pairs(
    signatures: np.ndarray, bands: int, rows: int, seed: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """The same pairs as :func:`candidate_pairs` without a bound, through datasketch's MinHashLSH.

    The plain implementation the fast path is tested against: insert every
    signature, query each, keep ``i < j``. O(n * bands) Python calls.
    """
    n, num_perm = signatures.shape
    _check_banding(bands, rows, num_perm)
    index = MinHashLSH(num_perm=num_perm, params=(bands, rows))
    live = [i for i in range(n) if not np.all(signatures[i] == EMPTY)]
    minhashes = {i: to_minhash(signatures[i], seed) for i in live}
    with index.insertion_session() as session:
        for i in live:
            session.insert(i, minhashes[i], check_duplication=False)
    pairs = sorted({(i, j) for i in live for j in index.query(minhashes[i]) if i < j})
    array = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    return array[:, 0], array[:, 1]


def _check_banding(bands: int, rows: int, num_perm: int) -> None:
    if bands * rows > num_perm or bands < 2 or rows < 1:
        raise ConfigError(
            f"{bands} bands of {rows} rows do not fit {num_perm} permutations (need 2+ bands)"
        )
