"""LSH buckets of a persistent index, held in memory as sorted runs.

A store keeps its documents' band keys as runs, one per commit and merged
now and then (:func:`merge_plan`), so that reopening an index reads a few
blobs instead of a row per document and band. :class:`BandRuns` answers
"which stored documents share at least ``min_bands`` buckets with each of
these signatures" with searches in each run's per-band sorted keys (the
signatures' keys visited in order, each search galloping on from the last), a
compiled loop and no Python object per hit. A bucket of more than
``max_bucket`` documents gives only the latest added, as the old bucket
table did. A :class:`DateWindow` leaves out the documents dated too far
from a signature's to ever link with it, once their shared buckets are
counted: one date read for each document that shares enough of them, not
one for each bucket hit. :func:`reference_bucket_mates` is the plain
dict-of-buckets version the tests hold it to.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numba
import numpy as np
from numba.typed import List

from dedup.candidates import grown
from dedup.threads import call_in_threads

# Merge the newest runs while the older of the last two holds at most this
# many times the newer's documents: about log2(documents / batch) runs stay.
_MERGE_RATIO = 2
# Bytes a run may take as one blob: SQLite refuses a blob over 1e9 bytes, which
# 128 bands reach at 650k documents; runs stop merging at half that.
_MAX_RUN_BYTES = 500_000_000
# Fewest signatures each thread of BandRuns.candidates takes: a query's one is not worth it.
_MIN_THREAD_ROWS = 256


@dataclass(frozen=True)
class BandRun:
    """The band keys of documents ``docs`` (ascending numbers), sorted band by band.

    ``keys[b]`` is band ``b``'s keys in ascending order and ``members[b]`` the
    document of each; documents with one key are in ascending number, so
    the last of a bucket's range are its latest.
    """

    docs: np.ndarray  # uint32, ascending
    keys: np.ndarray  # uint64, (bands, len(docs))
    members: np.ndarray  # uint32, (bands, len(docs))

    @classmethod
    def of(cls, docs: np.ndarray, band_keys: np.ndarray) -> BandRun:
        """A run from document numbers and their keys, shape ``(len(docs), bands)``."""
        docs = np.asarray(docs, dtype=np.uint32)
        if docs.size > 1 and np.any(docs[1:] <= docs[:-1]):
            raise ValueError("document numbers of a run must ascend")
        band_keys = np.asarray(band_keys, dtype=np.uint64)
        if band_keys.ndim != 2 or band_keys.shape[0] != docs.size:
            raise ValueError("band keys must have one row per document")
        order = np.argsort(band_keys.T, axis=1, kind="stable")
        keys = np.take_along_axis(band_keys.T, order, axis=1)
        return cls(docs, np.ascontiguousarray(keys), np.ascontiguousarray(docs[order]))

    def merged(self, newer: BandRun) -> BandRun:
        """One run of this one's documents and a newer run's (all numbered higher)."""
        if self.docs.size and newer.docs.size and newer.docs[0] <= self.docs[-1]:
            raise ValueError("the newer run must hold higher document numbers")
        keys = np.concatenate([self.keys, newer.keys], axis=1)
        members = np.concatenate([self.members, newer.members], axis=1)
        # Both halves are sorted and the newer documents are higher: a stable
        # sort by key keeps each bucket in document order.
        order = np.argsort(keys, axis=1, kind="stable")
        return BandRun(
            np.concatenate([self.docs, newer.docs]),
            np.take_along_axis(keys, order, axis=1),
            np.take_along_axis(members, order, axis=1),
        )

    def to_bytes(self) -> bytes:
        out = io.BytesIO()
        np.savez(out, docs=self.docs, keys=self.keys, members=self.members)
        return out.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> BandRun:
        with np.load(io.BytesIO(blob)) as data:
            return cls(data["docs"], data["keys"], data["members"])


@dataclass(frozen=True)
class DateWindow:
    """Which stored documents each row of band keys may pair with, by date.

    Row ``k`` keeps document ``d`` when ``abs(doc_days[d] - days[k]) <= reach[k]``.
    A document without a day (NaN, or numbered past ``doc_days``), a row
    without one (NaN) and an infinite reach keep everything: the window
    only drops pairs a caller would drop anyway.
    """

    doc_days: np.ndarray  # float64, by document number
    days: np.ndarray  # float64, of each row
    reach: np.ndarray  # float64, of each row

    @classmethod
    def everything(cls, rows: int) -> DateWindow:
        return cls(np.empty(0), np.full(rows, np.nan), np.full(rows, np.inf))

    def keeps(self, row: int, doc: int) -> bool:
        """Whether row ``row`` keeps document ``doc`` (the plain rule, for the tests)."""
        if doc >= self.doc_days.size or np.isinf(self.reach[row]):
            return True
        return not abs(self.doc_days[doc] - self.days[row]) > self.reach[row]


def run_limit(bands: int) -> int:
    """The most documents a run of ``bands`` bands may hold (see ``_MAX_RUN_BYTES``)."""
    return max(1, _MAX_RUN_BYTES // (4 + 12 * bands))  # a number, and a key and member a band


def merge_plan(sizes: list[int], limit: int | None = None) -> int:
    """How many of the newest runs (sizes oldest first) to merge into one; 0 or 1 for none.

    Binary-counter merging: the newest runs merge while the run before them
    holds at most ``_MERGE_RATIO`` times their documents, so each document
    is rewritten about log2(runs) times and about that many runs stay. No
    merge makes a run of more than ``limit`` documents: past it, runs stay
    apart (a few more, each searched on its own).
    """
    count, total = 1, sizes[-1] if sizes else 0
    while (
        count < len(sizes)
        and sizes[-count - 1] <= _MERGE_RATIO * total
        and (limit is None or total + sizes[-count - 1] <= limit)
    ):
        total += sizes[-count - 1]
        count += 1
    return count if count > 1 else 0


class BandRuns:
    """The band runs of an index, oldest first, and the candidates they give."""

    def __init__(self) -> None:
        self.runs: list[BandRun] = []

    def candidates(
        self,
        band_keys: np.ndarray,
        max_bucket: int,
        min_bands: int,
        jobs: int = 1,
        window: DateWindow | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(owner, doc)`` pairs, by owner then doc: row ``owner`` of ``band_keys``
        shares at least ``min_bands`` buckets with stored document ``doc``.

        Each bucket gives its latest ``max_bucket`` documents (all when 0).
        With a ``window``, the documents dated beyond each row's reach are
        dropped (see :class:`DateWindow`); a pair's count of shared
        buckets does not change. ``jobs`` threads share the rows; the pairs do
        not depend on it.
        """
        band_keys = np.ascontiguousarray(band_keys, dtype=np.uint64)
        if not self.runs or band_keys.shape[0] == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        if window is None:
            window = DateWindow.everything(band_keys.shape[0])
        keys, members = List(), List()
        for run in self.runs:
            keys.append(run.keys)
            members.append(run.members)
        top = max((int(run.docs[-1]) for run in self.runs if run.docs.size), default=0)
        # Contiguous blocks of rows, one per thread (the kernel releases the
        # GIL); a block's owners count from its first row.
        count = max(1, min(jobs, band_keys.shape[0] // _MIN_THREAD_ROWS))
        starts = [band_keys.shape[0] * t // count for t in range(count + 1)]

        def block(t: int) -> tuple[np.ndarray, np.ndarray]:
            rows = slice(starts[t], starts[t + 1])
            owners, docs = _bucket_mates(
                keys,
                members,
                # Buckets shared with each stored document: a byte each (two
                # past 255 bands), so the counts of a million stay in cache.
                np.zeros(top + 1, np.uint8 if band_keys.shape[1] < 256 else np.uint16),
                band_keys[rows],
                max_bucket,
                min_bands,
                window.doc_days,
                window.days[rows],
                window.reach[rows],
            )
            return owners + starts[t], docs

        parts = call_in_threads(block, [(t,) for t in range(count)])
        if count == 1:
            return parts[0]
        return np.concatenate([o for o, _ in parts]), np.concatenate([d for _, d in parts])


@numba.njit(cache=True, nogil=True)
def _bucket_mates(
    keys, members, shared, query, max_bucket, min_bands, doc_days, days, reach
):  # pragma: no cover - compiled
    rows, bands = query.shape
    bounds = _bucket_bounds(keys, query)
    owners = np.empty(1024, np.int64)
    docs = np.empty(1024, np.int64)
    found = 0
    # shared[doc] counts the buckets a row shares with stored document doc
    # (all zeros between rows), and met lists the documents met so far:
    # counting beats sorting every hit of a row.
    met = np.empty(1024, np.int64)
    dated = doc_days.size
    for k in range(rows):
        count = 0
        for b in range(bands):
            left = max_bucket if max_bucket > 0 else np.iinfo(np.int64).max
            for r in range(len(keys) - 1, -1, -1):  # newest run first: latest documents
                lo, hi = bounds[r, 0, k, b], bounds[r, 1, k, b]
                take = min(hi - lo, left)
                bucket = members[r][b]  # once: a typed list lookup per hit costs 5x the loop
                for p in range(hi - take, hi):
                    doc = bucket[p]
                    if shared[doc] == 0:
                        if count == met.size:
                            met = grown(met, 2 * count)
                        met[count] = doc
                        count += 1
                    shared[doc] += 1
                left -= take
                if left == 0:
                    break
        # The window keeps or drops a document whole: it is checked once for
        # each that shares enough buckets, not at each hit.
        day, far = days[k], reach[k]
        limited = not (np.isnan(day) or np.isinf(far))
        kept = 0
        for i in range(count):
            doc = met[i]
            # NaN (no date) compares false: such documents are kept.
            if shared[doc] >= min_bands and not (
                limited and doc < dated and abs(doc_days[doc] - day) > far
            ):
                met[kept] = doc
                kept += 1
            shared[doc] = 0
        if found + kept > owners.size:
            owners = grown(owners, 2 * (found + kept))
            docs = grown(docs, 2 * (found + kept))
        owners[found : found + kept] = k
        docs[found : found + kept] = np.sort(met[:kept])
        found += kept
    return owners[:found], docs[:found]


@numba.njit(cache=True, nogil=True)
def _bucket_bounds(keys, query):  # pragma: no cover - compiled
    """``[run, 0 | 1, row, band]``: where each row's bucket starts and ends in each run.

    The rows' keys of a band are visited in ascending order and each search
    gallops on from where the last one stopped, so a batch walks each run's
    keys about once, in order, instead of jumping about them row by row.
    """
    rows, bands = query.shape
    bounds = np.empty((len(keys), 2, rows, bands), np.int32)  # a run holds < 2**31 keys
    for b in range(bands):
        order = np.argsort(query[:, b])
        for r in range(len(keys)):
            run_keys = keys[r][b]
            at = 0
            for k in order:
                key = query[k, b]
                at = _gallop(run_keys, key, at, False)
                bounds[r, 0, k, b] = at
                bounds[r, 1, k, b] = _gallop(run_keys, key, at, True)
    return bounds


@numba.njit(cache=True, nogil=True, inline="always")
def _gallop(sorted_keys, key, start, past):  # pragma: no cover - compiled
    """The first position from ``start`` whose key is >= ``key`` (> ``key`` when ``past``).

    Steps of 1, 2, 4... bracket it, then a binary search finds it: the cost
    grows with the log of the distance walked, not of the array.
    """
    n = sorted_keys.size
    lo, step = start, 1  # every key before lo is below the one sought
    hi = start
    while hi < n and (sorted_keys[hi] <= key if past else sorted_keys[hi] < key):
        lo = hi + 1
        hi = lo + step
        step *= 2
    hi = min(hi, n)
    while lo < hi:
        mid = (lo + hi) // 2
        if sorted_keys[mid] <= key if past else sorted_keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


def reference_bucket_mates(
    runs: list[tuple[np.ndarray, np.ndarray]],
    band_keys: np.ndarray,
    max_bucket: int,
    min_bands: int,
    window: DateWindow | None = None,
) -> set[tuple[int, int]]:
    """:meth:`BandRuns.candidates` with a dict of buckets, for the tests.

    ``runs`` are ``(docs, keys)`` as given to :meth:`BandRun.of`, oldest first.
    """
    buckets: dict[tuple[int, int], list[int]] = {}
    for docs, keys in runs:
        for doc, row in zip(docs.tolist(), np.asarray(keys).tolist(), strict=True):
            for band, key in enumerate(row):
                buckets.setdefault((band, key), []).append(doc)
    found = set()
    for owner, row in enumerate(np.asarray(band_keys).tolist()):
        shared: dict[int, int] = {}
        for band, key in enumerate(row):
            members = sorted(buckets.get((band, key), []))
            for doc in members[-max_bucket:] if max_bucket > 0 else members:
                if window is None or window.keeps(owner, doc):
                    shared[doc] = shared.get(doc, 0) + 1
        found |= {(owner, doc) for doc, n in shared.items() if n >= min_bands}
    return found
