"""Where a :class:`dedup.index.StoryIndex` keeps its state: one SQLite file, or Redis.

Both stores hold the same records: the index parameters and schema version,
one record per document (cluster, date, headline, feature counts, and its
TF-IDF norm with the index size it was taken at), the document frequencies
of every feature (as runs: one per commit, the batch's counts, merged into
one full run now and then, so a commit writes what it adds, not the whole
table), the kept similarity links (each with the index size it was scored
at), and the LSH band buckets. A batch is written all-or-nothing:

- SQLite (:class:`dedup.sqlite_store.SQLiteStore`): WAL mode; a writer holds ``BEGIN IMMEDIATE``
  from its first read to its commit, so two writers serialise (or the second
  gets :class:`IndexBusyError` after the busy timeout), and readers see a
  snapshot. LSH band keys are runs of blobs (:mod:`dedup.band_index`), one per
  commit and merged now and then, searched in memory: a bucket table with a
  row per document and band cost most of an ``add`` and grew with the index.
- Redis (:class:`dedup.redis_store.RedisStore`): the LSH tables are datasketch's own Redis
  storage; the records are written in one ``MULTI``/``EXEC`` per batch. The
  LSH insertions happen just before that and outside it, so the records are
  the source of truth: candidates are filtered to committed documents, and an
  orphaned LSH entry is replaced when its id is added again.
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from dedup.errors import DedupError
from dedup.verify import publication_days

# 2: document frequencies as runs; 3: LSH band keys as runs; 4: kept norms and link ages
SCHEMA_VERSION = 4
FORMAT_NAME = "dedup-index"


class IndexError_(DedupError):  # noqa: N801 - not the builtin IndexError
    """Base class of the errors of a persistent index."""


class IndexFormatError(IndexError_):
    """INDEX is not a dedup index (corrupt, foreign, or from another schema version)."""


class IndexBusyError(IndexError_):
    """Another writer held the index for longer than the busy timeout."""


class StoreUnavailableError(IndexError_):
    """The store cannot be reached (Redis down, directory missing)."""


class IndexParamsError(IndexError_):
    """The index was created with other parameters than the ones asked for."""


@dataclass
class StoredDocument:
    """One document as the index keeps it."""

    id: str
    cluster: int
    published: datetime | None
    title: str | None
    source: str | None
    snippet: str
    distinct_terms: int
    features: np.ndarray  # sorted distinct feature hashes, uint32
    counts: np.ndarray  # occurrences of each feature, uint32
    shingles: np.ndarray | None = None  # shingle-hash set, for the jaccard similarity only
    # The L2 norm of its TF-IDF values, taken when the index held ``norm_documents``
    # documents (None: not taken, or the jaccard similarity).
    norm: float | None = None
    norm_documents: int = 0


@dataclass(frozen=True)
class Candidates:
    """Stored documents that share LSH buckets with new signatures.

    Pair ``p`` is signature row ``owners[p]`` and stored candidate
    ``mates[p]``, a position in the candidate lists: ``ids`` in id order
    (Redis), or ``numbers``, the SQLite row numbers, in ascending order, the
    ids then coming with the rows (:meth:`Store.candidate_rows`). Pairs come
    by owner, then by mate. Each candidate comes with its publication day and
    distinct terms, which bound its pairs' scores.
    """

    owners: np.ndarray  # int64
    mates: np.ndarray  # int64, positions in the candidate lists
    ids: list[str] | None
    days: np.ndarray  # float64, dedup.verify.publication_days of each candidate
    distinct_terms: np.ndarray  # int64, of each candidate
    numbers: np.ndarray | None = None  # SQLite: the row number of each candidate

    @classmethod
    def of(cls, pairs: Iterable[tuple[int, str]], facts: dict[str, StoredDocument]) -> Candidates:
        """From ``(owner, id)`` pairs, keeping those whose id ``facts`` holds."""
        pairs = sorted(p for p in pairs if p[1] in facts)
        ids = sorted({doc_id for _, doc_id in pairs})
        at = {doc_id: k for k, doc_id in enumerate(ids)}
        return cls(
            np.array([k for k, _ in pairs], dtype=np.int64),
            np.array([at[d] for _, d in pairs], dtype=np.int64),
            ids,
            publication_days([facts[d].published for d in ids]),
            np.array([facts[d].distinct_terms for d in ids], dtype=np.int64),
        )


@dataclass(frozen=True)
class StoredRows:
    """Stored documents as columns: what scoring them against a batch reads.

    A batch meets a hundred thousand stored candidates at a million
    documents; columns spare a record, a date parse and a title per one.
    """

    ids: list[str]
    clusters: np.ndarray  # int64
    days: np.ndarray  # float64, dedup.verify.publication_days
    distinct_terms: np.ndarray  # int64
    features: list[np.ndarray]  # each sorted distinct feature hashes, uint32
    counts: list[np.ndarray]  # uint32, occurrences of each feature
    shingles: list[np.ndarray | None]
    norms: np.ndarray  # float64, as StoredDocument.norm (NaN for None)
    norm_documents: np.ndarray  # int64

    @classmethod
    def of(cls, docs: Sequence[StoredDocument]) -> StoredRows:
        """The rows of ``docs``, in their order."""
        return cls(
            [d.id for d in docs],
            np.array([d.cluster for d in docs], dtype=np.int64),
            publication_days([d.published for d in docs]),
            np.array([d.distinct_terms for d in docs], dtype=np.int64),
            [d.features for d in docs],
            [d.counts for d in docs],
            [d.shingles for d in docs],
            np.array([np.nan if d.norm is None else d.norm for d in docs], dtype=np.float64),
            np.array([d.norm_documents for d in docs], dtype=np.int64),
        )

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, positions: Sequence[int]) -> StoredRows:
        """The rows at ``positions``, in that order."""
        at = np.asarray(positions, dtype=np.int64)
        return StoredRows(
            [self.ids[k] for k in positions],
            self.clusters[at],
            self.days[at],
            self.distinct_terms[at],
            [self.features[k] for k in positions],
            [self.counts[k] for k in positions],
            [self.shingles[k] for k in positions],
            self.norms[at],
            self.norm_documents[at],
        )

    def joined(self, other: StoredRows) -> StoredRows:
        """These rows, then ``other``'s."""
        return StoredRows(
            self.ids + other.ids,
            np.concatenate([self.clusters, other.clusters]),
            np.concatenate([self.days, other.days]),
            np.concatenate([self.distinct_terms, other.distinct_terms]),
            self.features + other.features,
            self.counts + other.counts,
            self.shingles + other.shingles,
            np.concatenate([self.norms, other.norms]),
            np.concatenate([self.norm_documents, other.norm_documents]),
        )


@dataclass(frozen=True)
class ClusterLinks:
    """The members of some clusters, in id order, and the stored links among them.

    Link ``k`` joins members ``ids[a[k]]`` and ``ids[b[k]]`` (each pair once);
    it was scored ``scores[k]`` when the index held ``documents[k]`` documents.
    Arrays rather than tuples: a query meets thousands of links.
    """

    ids: list[str]
    clusters: np.ndarray  # int64, each member's cluster
    a: np.ndarray  # int64, positions in ids
    b: np.ndarray  # int64, positions in ids
    scores: np.ndarray  # float64
    documents: np.ndarray  # int64

    @classmethod
    def of(
        cls, members: Iterable[tuple[str, int]], links: Iterable[tuple[str, str, float, int]]
    ) -> ClusterLinks:
        """From ``(id, cluster)`` members and ``(a, b, score, documents)`` links by id."""
        ordered = sorted(members)
        at = {doc_id: k for k, (doc_id, _) in enumerate(ordered)}
        listed = list(links)
        return cls(
            [doc_id for doc_id, _ in ordered],
            np.array([c for _, c in ordered], dtype=np.int64),
            np.array([at[a] for a, _, _, _ in listed], dtype=np.int64),
            np.array([at[b] for _, b, _, _ in listed], dtype=np.int64),
            np.array([s for _, _, s, _ in listed], dtype=np.float64),
            np.array([d for *_, d in listed], dtype=np.int64),
        )

    def sizes(self) -> dict[int, int]:
        """Members of each cluster."""
        found, counts = np.unique(self.clusters, return_counts=True)
        return dict(zip(found.tolist(), counts.tolist(), strict=True))


@dataclass
class Batch:
    """Everything one ``add`` writes, applied all-or-nothing by :meth:`Store.commit`."""

    documents: list[StoredDocument] = field(default_factory=list)
    signatures: np.ndarray = field(default_factory=lambda: np.empty((0, 0), np.uint32))
    moved: dict[str, int] = field(default_factory=dict)  # existing id -> its new cluster
    # Links scored by this batch (new, or stored ones scored again), when the
    # index holds ``documents_after`` documents.
    links: list[tuple[str, str, float]] = field(default_factory=list)
    # Stored documents whose norms were taken again: id -> (norm, documents_after).
    norms: dict[str, tuple[float, int]] = field(default_factory=dict)
    documents_after: int = 0
    df_features: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint32))
    df_counts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    df_full: bool = False  # df_* are the whole table, replacing the runs before it
    df_run: int = -1  # set by commit: the run these counts were written as
    next_cluster: int = 0


def pack_counts(features: np.ndarray, counts: np.ndarray) -> tuple[bytes, bytes]:
    """A DF run as two little-endian blobs of 4 bytes a feature (signed counts: a removal
    is a run of -1s). A million articles' table, written whole, is near 100M features:
    8-byte counts would pass SQLite's 1 GB limit on a blob."""
    return features.astype("<u4").tobytes(), counts.astype("<i4").tobytes()


def unpack_counts(features: bytes, counts: bytes) -> tuple[np.ndarray, np.ndarray]:
    # Indexes written before counts took 4 bytes hold 8-byte ones.
    width = "<i8" if len(counts) == 2 * len(features) and features else "<i4"
    return (
        np.frombuffer(features, dtype="<u4").astype(np.uint32),
        np.frombuffer(counts, dtype=width).astype(np.int64),
    )


def pack_features(features: np.ndarray, counts: np.ndarray) -> bytes:
    return np.concatenate([features.astype("<u4"), counts.astype("<u4")]).tobytes()


def unpack_features(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Read-only views of the blob (no copy: an add reads a hundred thousand of them)."""
    values = np.frombuffer(blob, dtype="<u4").astype(np.uint32, copy=False)
    half = values.size // 2
    return values[:half], values[half:]


def _pack_set(values: np.ndarray | None) -> bytes | None:
    return None if values is None else values.astype("<u4").tobytes()


def _unpack_set(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(blob, dtype="<u4").astype(np.uint32)


def _date(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class Store(abc.ABC):
    """The records of one index. Ids are strings; cluster ids are integers."""

    location: str

    @abc.abstractmethod
    def meta(self) -> dict[str, Any] | None:
        """``{"schema", "params", "next_cluster"}``, or None for an empty, new store."""

    @abc.abstractmethod
    def create(self, params: dict[str, Any], bands: int, rows: int) -> None:
        """Initialise an empty store."""

    @abc.abstractmethod
    def writing(self) -> contextlib.AbstractContextManager[None]:
        """Hold the writer's lock; reads inside it see the state the commit builds on."""

    @abc.abstractmethod
    def reading(self) -> contextlib.AbstractContextManager[None]:
        """A consistent snapshot for a sequence of reads."""

    def version(self) -> int:
        """A counter every commit moves (0 where :meth:`reading` is already a snapshot)."""
        return 0

    @abc.abstractmethod
    def known(self, ids: Sequence[str]) -> set[str]:
        """The ids among ``ids`` that are committed."""

    bands: int = 2
    rows: int = 1
    seed: int = 1

    def configure(self, bands: int, rows: int, seed: int, num_perm: int) -> None:
        """The LSH banding and MinHash seed of the index's parameters."""
        self.bands, self.rows, self.seed = bands, rows, seed

    @abc.abstractmethod
    def lsh_candidates(
        self,
        signatures: np.ndarray,
        max_bucket: int,
        min_bands: int = 1,
        jobs: int = 1,
        days: np.ndarray | None = None,
        reach: np.ndarray | None = None,
    ) -> Candidates:
        """The committed documents sharing LSH buckets with each signature.

        Signatures that are all ``EMPTY`` are never candidates. With ``max_bucket``
        > 0, at most that many documents per bucket, the latest added. A pair
        must share at least ``min_bands`` buckets, as in
        :func:`dedup.candidates.candidate_pairs`. A store may use ``jobs``
        threads; the candidates do not depend on it.

        With ``days`` (:func:`dedup.verify.publication_days` of each signature's
        document) and ``reach`` (:func:`dedup.verify.reach_days`), a store may
        leave out documents dated further than a signature's reach from it, as
        a caller that filters by :func:`dedup.verify.score_ceilings` would.
        """

    @abc.abstractmethod
    def documents(self, ids: Iterable[str], vectors: bool = True) -> dict[str, StoredDocument]:
        """The committed records of ``ids`` (missing ones left out).

        With ``vectors=False`` their features, counts and shingles are left
        empty: the dates and lengths that bound a pair's score are cheap to
        read, the vectors are not.
        """

    @abc.abstractmethod
    def df_runs(self, after: int) -> tuple[list[tuple[int, bool, np.ndarray, np.ndarray]], int]:
        """DF runs newer than run ``after`` as ``(run, full, features, counts)``, oldest first,
        and the number of documents counted.

        When a full run is newer than ``after``, the list starts at the latest one.
        """

    @abc.abstractmethod
    def cluster_sizes(self, clusters: Iterable[int]) -> dict[int, int]:
        """The number of members of each cluster."""

    def candidate_rows(
        self, candidates: Candidates, mates: np.ndarray
    ) -> tuple[StoredRows, np.ndarray]:
        """The candidates ``mates`` (ascending positions in the candidate lists) that are
        still stored, as rows in id order, and the position of each row's candidate."""
        assert candidates.ids is not None  # a store without ids overrides this
        found = self.documents([candidates.ids[m] for m in mates.tolist()])
        kept = [m for m in mates.tolist() if candidates.ids[m] in found]  # in id order
        rows = StoredRows.of([found[candidates.ids[m]] for m in kept])
        return rows, np.array(kept, dtype=np.int64)

    @abc.abstractmethod
    def cluster_links(self, clusters: Iterable[int]) -> ClusterLinks:
        """The members of the clusters and the stored links with both ends among them."""

    @abc.abstractmethod
    def commit(self, batch: Batch) -> None:
        """Apply ``batch`` all-or-nothing (inside :meth:`writing`); sets ``batch.df_run``."""

    @abc.abstractmethod
    def remove(self, ids: Sequence[str]) -> list[str]:
        """Delete documents (inside :meth:`writing`); returns the ids that were present."""

    @abc.abstractmethod
    def all_documents(self) -> list[StoredDocument]:
        """Every committed document (features left empty), ordered by id."""

    @abc.abstractmethod
    def all_links(self) -> list[tuple[str, str, float]]:
        """Every stored link."""

    @abc.abstractmethod
    def counts(self) -> dict[str, int]:
        """``documents``, ``clusters`` and ``links``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""


def open_store(location: str, *, timeout: float = 30.0) -> Store:
    """The store at ``location``: a ``redis://`` URL, or a SQLite file path."""
    if str(location).startswith(("redis://", "rediss://", "unix://")):
        from dedup.redis_store import RedisStore

        return RedisStore(str(location), timeout=timeout)
    from dedup.sqlite_store import SQLiteStore

    return SQLiteStore(os.fspath(location), timeout=timeout)


def meta_record(meta: dict[str, Any]) -> dict[str, Any]:
    """The index's header from its stored key/value pairs, as both stores keep them."""
    return {
        "schema": int(meta["schema"]),
        "params": json.loads(meta["params"]),
        "next_cluster": int(meta["next_cluster"]),
        "documents": int(meta["documents"]),
    }


def _check_schema(location: str, schema: Any) -> None:
    if str(schema) != str(SCHEMA_VERSION):
        raise IndexFormatError(
            f"{location}: index schema version {schema} is not the version {SCHEMA_VERSION} "
            "this dedup reads; rebuild the index with `dedup index add`"
        )
