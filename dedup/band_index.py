"""LSH buckets of a persistent index, held in memory as sorted runs.

A store keeps its documents' band keys as runs, one per commit and merged
now and then (:func:`merge_plan`), so that reopening an index reads a few
blobs instead of a row per document and band. :class:`BandRuns` answers
"which stored documents share at least ``min_bands`` buckets with each of
these signatures" with binary searches in each run's per-band sorted keys, a
compiled loop and no Python object per hit. A bucket of more than
``max_bucket`` documents gives only the latest added, as the old bucket
table did; :func:`reference_bucket_mates` is the plain dict-of-buckets
version the tests hold it to.
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


def merge_plan(sizes: list[int]) -> int:
    """How many of the newest runs (sizes oldest first) to merge into one; 0 or 1 for none.

    Binary-counter merging: the newest runs merge while the run before them
    holds at most ``_MERGE_RATIO`` times their documents, so each document
    is rewritten about log2(runs) times and about that many runs stay.
    """
    count, total = 1, sizes[-1] if sizes else 0
    while count < len(sizes) and sizes[-count - 1] <= _MERGE_RATIO * total:
        total += sizes[-count - 1]
        count += 1
    return count if count > 1 else 0


class BandRuns:
    """The band runs of an index, oldest first, and the candidates they give."""

    def __init__(self) -> None:
        self.runs: list[BandRun] = []

    def candidates(
        self, band_keys: np.ndarray, max_bucket: int, min_bands: int, jobs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(owner, doc)`` pairs, by owner then doc: row ``owner`` of ``band_keys``
        shares at least ``min_bands`` buckets with stored document ``doc``.

        Each bucket gives its latest ``max_bucket`` documents (all when 0).
        ``jobs`` threads share the rows; the pairs do not depend on it.
        """
        band_keys = np.ascontiguousarray(band_keys, dtype=np.uint64)
        if not self.runs or band_keys.shape[0] == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        keys, members = List(), List()
        for run in self.runs:
            keys.append(run.keys)
            members.append(run.members)
        # Contiguous blocks of rows, one per thread (the kernel releases the
        # GIL); a block's owners count from its first row.
        count = max(1, min(jobs, band_keys.shape[0] // _MIN_THREAD_ROWS))
        starts = [band_keys.shape[0] * t // count for t in range(count + 1)]

        def block(t: int) -> tuple[np.ndarray, np.ndarray]:
            owners, docs = _bucket_mates(
                keys, members, band_keys[starts[t] : starts[t + 1]], max_bucket, min_bands
            )
            return owners + starts[t], docs

        parts = call_in_threads(block, [(t,) for t in range(count)])
        if count == 1:
            return parts[0]
        return np.concatenate([o for o, _ in parts]), np.concatenate([d for _, d in parts])


@numba.njit(cache=True, nogil=True)
def _bucket_mates(keys, members, query, max_bucket, min_bands):  # pragma: no cover - compiled
    rows, bands = query.shape
    owners = np.empty(1024, np.int64)
    docs = np.empty(1024, np.int64)
    found = 0
    hits = np.empty(1024, np.int64)
    for k in range(rows):
        count = 0
        for b in range(bands):
            key = query[k, b]
            left = max_bucket if max_bucket > 0 else np.iinfo(np.int64).max
            for r in range(len(keys) - 1, -1, -1):  # newest run first: latest documents
                run_keys = keys[r][b]
                lo = np.searchsorted(run_keys, key, side="left")
                hi = np.searchsorted(run_keys, key, side="right")
                take = min(hi - lo, left)
                if count + take > hits.size:
                    hits = grown(hits, 2 * (count + take))
                for p in range(hi - take, hi):
                    hits[count] = members[r][b, p]
                    count += 1
                left -= take
                if left == 0:
                    break
        mine = np.sort(hits[:count])
        start = 0
        while start < count:
            end = start + 1
            while end < count and mine[end] == mine[start]:
                end += 1
            if end - start >= min_bands:
                if found == owners.size:
                    owners = grown(owners, 2 * found)
                    docs = grown(docs, 2 * found)
                owners[found] = k
                docs[found] = mine[start]
                found += 1
            start = end
    return owners[:found], docs[:found]


def reference_bucket_mates(
    runs: list[tuple[np.ndarray, np.ndarray]],
    band_keys: np.ndarray,
    max_bucket: int,
    min_bands: int,
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
                shared[doc] = shared.get(doc, 0) + 1
        found |= {(owner, doc) for doc, n in shared.items() if n >= min_bands}
    return found
