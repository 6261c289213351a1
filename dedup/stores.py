"""Where a :class:`dedup.index.StoryIndex` keeps its state: one SQLite file, or Redis.

Both stores hold the same records: the index parameters and schema version,
one record per document (cluster, date, headline, feature counts), the
document frequencies of every feature (as runs: one per commit, the batch's
counts, merged into one full run now and then, so a commit writes what it
adds, not the whole table), the kept similarity links, and the LSH band
buckets. A batch is written all-or-nothing:

- SQLite (:class:`SQLiteStore`): WAL mode; a writer holds ``BEGIN IMMEDIATE``
  from its first read to its commit, so two writers serialise (or the second
  gets :class:`IndexBusyError` after the busy timeout), and readers see a
  snapshot. LSH buckets are a ``(band, key, doc)`` table whose keys are the
  exact bytes datasketch's ``MinHashLSH`` uses.
- Redis (:class:`RedisStore`): the LSH tables are datasketch's own Redis
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
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from dedup.candidates import band_keys
from dedup.errors import DedupError
from dedup.signature import EMPTY

SCHEMA_VERSION = 2  # 2: document frequencies as runs
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


@dataclass
class Batch:
    """Everything one ``add`` writes, applied all-or-nothing by :meth:`Store.commit`."""

    documents: list[StoredDocument] = field(default_factory=list)
    signatures: np.ndarray = field(default_factory=lambda: np.empty((0, 0), np.uint32))
    moved: dict[str, int] = field(default_factory=dict)  # existing id -> its new cluster
    links: list[tuple[str, str, float]] = field(default_factory=list)
    df_features: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint32))
    df_counts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    df_full: bool = False  # df_* are the whole table, replacing the runs before it
    df_run: int = -1  # set by commit: the run these counts were written as
    next_cluster: int = 0


def pack_counts(features: np.ndarray, counts: np.ndarray) -> tuple[bytes, bytes]:
    """A DF run as two little-endian blobs (signed counts: a removal is a run of -1s)."""
    return features.astype("<u4").tobytes(), counts.astype("<i8").tobytes()


def unpack_counts(features: bytes, counts: bytes) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.frombuffer(features, dtype="<u4").astype(np.uint32),
        np.frombuffer(counts, dtype="<i8").astype(np.int64),
    )


def pack_features(features: np.ndarray, counts: np.ndarray) -> bytes:
    return np.concatenate([features.astype("<u4"), counts.astype("<u4")]).tobytes()


def unpack_features(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    values = np.frombuffer(blob, dtype="<u4")
    half = values.size // 2
    return values[:half].astype(np.uint32), values[half:].astype(np.uint32)


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
        self, signatures: np.ndarray, max_bucket: int, min_bands: int = 1
    ) -> list[tuple[int, str]]:
        """``(k, id)`` for committed documents sharing LSH buckets with signature ``k``.

        Signatures that are all ``EMPTY`` are never candidates. With ``max_bucket``
        > 0, at most that many documents per bucket, the latest added. A pair
        must share at least ``min_bands`` buckets, as in
        :func:`dedup.candidates.candidate_pairs`.
        """

    @abc.abstractmethod
    def documents(self, ids: Iterable[str]) -> dict[str, StoredDocument]:
        """The committed records of ``ids`` (missing ones left out)."""

    @abc.abstractmethod
    def df_runs(self, after: int) -> tuple[list[tuple[int, bool, np.ndarray, np.ndarray]], int]:
        """DF runs newer than run ``after`` as ``(run, full, features, counts)``, oldest first,
        and the number of documents counted.

        When a full run is newer than ``after``, the list starts at the latest one.
        """

    @abc.abstractmethod
    def cluster_sizes(self, clusters: Iterable[int]) -> dict[int, int]:
        """The number of members of each cluster."""

    @abc.abstractmethod
    def cluster_links(
        self, clusters: Iterable[int]
    ) -> tuple[dict[int, list[str]], list[tuple[str, str, float]]]:
        """The members of each cluster, and the stored links with both ends among them."""

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
    return SQLiteStore(os.fspath(location), timeout=timeout)


# --- SQLite -----------------------------------------------------------------------

_SQLITE_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE docs (
    n INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, cluster INTEGER NOT NULL,
    published TEXT, title TEXT, source TEXT, snippet TEXT, distinct_terms INTEGER NOT NULL,
    features BLOB NOT NULL, shingles BLOB);
CREATE INDEX docs_cluster ON docs (cluster);
CREATE TABLE lsh (band INTEGER, key INTEGER, doc INTEGER, PRIMARY KEY (band, key, doc))
    WITHOUT ROWID;
CREATE TABLE df_runs (run INTEGER PRIMARY KEY, full INTEGER NOT NULL, features BLOB NOT NULL,
    counts BLOB NOT NULL);
CREATE TABLE links (a INTEGER, b INTEGER, score REAL NOT NULL, PRIMARY KEY (a, b))
    WITHOUT ROWID;
CREATE INDEX links_b ON links (b);
"""


class SQLiteStore(Store):
    """An index in one SQLite file (WAL mode, no server)."""

    def __init__(self, path: str, *, timeout: float = 30.0):
        self.location = path
        self.timeout = timeout
        if os.path.isdir(path):
            raise IndexFormatError(f"{path}: is a directory, not a dedup index file")
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise StoreUnavailableError(f"{path}: directory {parent} does not exist")
        try:
            self.db = sqlite3.connect(path, timeout=timeout, isolation_level=None)
            self.db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            if self._table_names():
                self._check_format()
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
            self.db.execute("PRAGMA temp_store = MEMORY")
            self.db.execute("PRAGMA cache_size = -200000")
        except sqlite3.DatabaseError as err:
            raise self._error(err) from None
        self._depth = 0

    def _error(self, err: sqlite3.Error) -> DedupError:
        text = str(err)
        if "locked" in text or "busy" in text:
            return IndexBusyError(
                f"{self.location}: index is busy (another writer held it for {self.timeout:g} s)"
            )
        if isinstance(err, sqlite3.DatabaseError) and (
            "not a database" in text or "malformed" in text or "no such table" in text
        ):
            return IndexFormatError(f"{self.location}: not a dedup index ({text})")
        return IndexFormatError(f"{self.location}: SQLite error: {text}")

    def _table_names(self) -> set[str]:
        rows = self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        return {r[0] for r in rows}

    def _check_format(self) -> None:
        if "meta" not in self._table_names():
            raise IndexFormatError(f"{self.location}: not a dedup index (a foreign SQLite file)")
        meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format") != FORMAT_NAME:
            raise IndexFormatError(f"{self.location}: not a dedup index (a foreign SQLite file)")
        _check_schema(self.location, meta.get("schema"))

    @contextlib.contextmanager
    def _transaction(self, kind: str) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            self.db.execute(f"BEGIN {kind}")
        except sqlite3.Error as err:
            raise self._error(err) from None
        self._depth = 1
        try:
            yield
            self.db.execute("COMMIT")
        except sqlite3.Error as err:
            self._rollback()
            raise self._error(err) from None
        except BaseException:
            self._rollback()
            raise
        finally:
            self._depth = 0

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("ROLLBACK")

    def writing(self) -> contextlib.AbstractContextManager[None]:
        return self._transaction("IMMEDIATE")

    def reading(self) -> contextlib.AbstractContextManager[None]:
        return self._transaction("DEFERRED")

    def meta(self) -> dict[str, Any] | None:
        try:
            if "meta" not in self._table_names():
                return None
            meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.Error as err:
            raise self._error(err) from None
        return meta_record(meta)

    def create(self, params: dict[str, Any], bands: int, rows: int) -> None:
        with self.writing():
            if "meta" in self._table_names():
                return  # another process created it first
            for statement in _SQLITE_SCHEMA.split(";"):
                if statement.strip():
                    self.db.execute(statement)
            values = {
                "format": FORMAT_NAME,
                "schema": str(SCHEMA_VERSION),
                "params": json.dumps(params, sort_keys=True),
                "next_cluster": "0",
                "documents": "0",
                "version": "0",
                "lsh": json.dumps([bands, rows]),
            }
            self.db.executemany("INSERT INTO meta VALUES (?, ?)", values.items())

    def _temp_ids(self, ids: Iterable[str]) -> None:
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS q_ids (id TEXT PRIMARY KEY)")
        self.db.execute("DELETE FROM q_ids")
        self.db.executemany("INSERT OR IGNORE INTO q_ids VALUES (?)", ((i,) for i in ids))

    def known(self, ids: Sequence[str]) -> set[str]:
        with self.reading():
            self._temp_ids(ids)
            rows = self.db.execute("SELECT id FROM docs WHERE id IN (SELECT id FROM q_ids)")
            return {r[0] for r in rows}

    def _keys(self, signatures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Live rows and their bucket keys (:func:`dedup.candidates.band_keys`) as int64."""
        live = np.flatnonzero(~np.all(signatures == EMPTY, axis=1))
        keys = band_keys(signatures[live], self.bands, self.rows).view(np.int64)
        return live, keys

    def lsh_candidates(
        self, signatures: np.ndarray, max_bucket: int, min_bands: int = 1
    ) -> list[tuple[int, str]]:
        live, keys = self._keys(signatures)
        if live.size == 0:
            return []
        bands = np.broadcast_to(np.arange(keys.shape[1]), keys.shape)
        wanted, inverse = np.unique(
            np.stack([bands.ravel(), keys.ravel()], axis=1), axis=0, return_inverse=True
        )
        # One statement for every bucket: the subquery finds the max_bucket-th
        # latest document of each bucket by walking the (band, key, doc) index
        # backwards, so a huge bucket costs max_bucket steps, not its size.
        floor = (
            "COALESCE((SELECT l2.doc FROM lsh l2 WHERE l2.band = q.band AND l2.key = q.key "
            f"ORDER BY l2.doc DESC LIMIT 1 OFFSET {max_bucket - 1}), 0)"
            if max_bucket > 0
            else "0"
        )
        with self.reading():
            db = self.db
            db.execute(
                "CREATE TEMP TABLE IF NOT EXISTS q_keys (q INTEGER PRIMARY KEY, band INTEGER, "
                "key INTEGER)"
            )
            db.execute("DELETE FROM q_keys")
            db.executemany(
                "INSERT INTO q_keys VALUES (?, ?, ?)",
                zip(range(len(wanted)), wanted[:, 0].tolist(), wanted[:, 1].tolist(), strict=True),
            )
            hits = db.execute(
                "SELECT q.q, d.id FROM q_keys q JOIN lsh l ON l.band = q.band AND l.key = q.key "
                f"JOIN docs d ON d.n = l.doc WHERE l.doc >= {floor}"
            ).fetchall()
        by_bucket: dict[int, list[str]] = {}
        for q, doc_id in hits:
            by_bucket.setdefault(q, []).append(doc_id)
        owners = np.repeat(live, keys.shape[1])
        found: Counter[tuple[int, str]] = Counter()
        for k, q in zip(owners.tolist(), inverse.ravel().tolist(), strict=True):
            found.update((k, doc_id) for doc_id in by_bucket.get(q, ()))
        return sorted(pair for pair, bands in found.items() if bands >= min_bands)

    def _row(self, row: Sequence[Any]) -> StoredDocument:
        features, counts = unpack_features(row[7]) if row[7] else (np.empty(0, np.uint32),) * 2
        return StoredDocument(
            id=row[0],
            cluster=int(row[1]),
            published=_date(row[2]),
            title=row[3],
            source=row[4],
            snippet=row[5] or "",
            distinct_terms=int(row[6]),
            features=features,
            counts=counts,
            shingles=_unpack_set(row[8]),
        )

    _COLUMNS = "id, cluster, published, title, source, snippet, distinct_terms"

    def documents(self, ids: Iterable[str]) -> dict[str, StoredDocument]:
        with self.reading():
            self._temp_ids(ids)
            rows = self.db.execute(
                f"SELECT {self._COLUMNS}, features, shingles FROM docs "
                "WHERE id IN (SELECT id FROM q_ids)"
            ).fetchall()
        return {r[0]: self._row(r) for r in rows}

    def df_runs(self, after: int) -> tuple[list[tuple[int, bool, np.ndarray, np.ndarray]], int]:
        with self.reading():
            db = self.db
            start = db.execute(
                "SELECT COALESCE(MAX(run), ?) FROM df_runs WHERE full = 1 AND run > ?",
                (after + 1, after),
            ).fetchone()[0]
            rows = db.execute(
                "SELECT run, full, features, counts FROM df_runs WHERE run >= ? ORDER BY run",
                (start,),
            ).fetchall()
            total = int(db.execute("SELECT value FROM meta WHERE key = 'documents'").fetchone()[0])
        return [(r, bool(full), *unpack_counts(f, c)) for r, full, f, c in rows], total

    def cluster_sizes(self, clusters: Iterable[int]) -> dict[int, int]:
        with self.reading():
            self._temp_numbers("q_c", clusters)
            rows = self.db.execute(
                "SELECT cluster, COUNT(*) FROM docs WHERE cluster IN (SELECT n FROM q_c) "
                "GROUP BY cluster"
            ).fetchall()
        return {int(c): int(k) for c, k in rows}

    def cluster_links(
        self, clusters: Iterable[int]
    ) -> tuple[dict[int, list[str]], list[tuple[str, str, float]]]:
        members: dict[int, list[str]] = {}
        with self.reading():
            self._temp_numbers("q_c", clusters)
            for c, doc_id in self.db.execute(
                "SELECT cluster, id FROM docs WHERE cluster IN (SELECT n FROM q_c) ORDER BY id"
            ):
                members.setdefault(int(c), []).append(doc_id)
            links = self.db.execute(
                "SELECT da.id, db.id, l.score FROM docs da JOIN links l ON l.a = da.n "
                "JOIN docs db ON db.n = l.b WHERE da.cluster IN (SELECT n FROM q_c) "
                "AND db.cluster IN (SELECT n FROM q_c)"
            ).fetchall()
        return members, [(a, b, float(score)) for a, b, score in links]

    def _temp_numbers(self, table: str, values: Iterable[int]) -> None:
        self.db.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} (n INTEGER PRIMARY KEY)")
        self.db.execute(f"DELETE FROM {table}")
        self.db.executemany(
            f"INSERT OR IGNORE INTO {table} VALUES (?)", ((int(v),) for v in values)
        )

    def commit(self, batch: Batch) -> None:
        db = self.db
        try:
            db.executemany(
                "INSERT INTO docs (id, cluster, published, title, source, snippet, distinct_terms,"
                " features, shingles) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        d.id,
                        d.cluster,
                        d.published.isoformat() if d.published else None,
                        d.title,
                        d.source,
                        d.snippet,
                        d.distinct_terms,
                        pack_features(d.features, d.counts),
                        _pack_set(d.shingles),
                    )
                    for d in batch.documents
                ),
            )
            number = dict(
                db.execute(
                    "SELECT id, n FROM docs ORDER BY n DESC LIMIT ?", (len(batch.documents),)
                ).fetchall()
            )
            live, keys = self._keys(batch.signatures)
            docs = np.array([number[batch.documents[k].id] for k in live.tolist()], np.int64)
            bands = np.broadcast_to(np.arange(keys.shape[1]), keys.shape).ravel()
            owners = np.repeat(docs, keys.shape[1])
            flat = keys.ravel()
            order = np.lexsort((owners, flat, bands))  # B-tree order: appends, not random seeks
            db.executemany(
                "INSERT OR IGNORE INTO lsh VALUES (?, ?, ?)",
                zip(
                    bands[order].tolist(), flat[order].tolist(), owners[order].tolist(), strict=True
                ),
            )
            db.executemany(
                "UPDATE docs SET cluster = ? WHERE id = ?",
                ((c, doc_id) for doc_id, c in batch.moved.items()),
            )
            # Links by id: resolve both ends to row numbers in one statement.
            db.execute("CREATE TEMP TABLE IF NOT EXISTS q_links (a TEXT, b TEXT, score REAL)")
            db.execute("DELETE FROM q_links")
            db.executemany("INSERT INTO q_links VALUES (?, ?, ?)", batch.links)
            db.execute(
                "INSERT INTO links SELECT da.n, db.n, q.score FROM q_links q "
                "JOIN docs da ON da.id = q.a JOIN docs db ON db.id = q.b WHERE true "
                "ON CONFLICT DO UPDATE SET score = excluded.score"
            )
            version = self._bump_version()
            if batch.df_full:
                db.execute("DELETE FROM df_runs")
            db.execute(
                "INSERT INTO df_runs VALUES (?, ?, ?, ?)",
                (version, int(batch.df_full), *pack_counts(batch.df_features, batch.df_counts)),
            )
            batch.df_run = version
            db.execute(
                "UPDATE meta SET value = CAST(value AS INTEGER) + ? WHERE key = 'documents'",
                (len(batch.documents),),
            )
            db.execute(
                "UPDATE meta SET value = ? WHERE key = 'next_cluster'", (str(batch.next_cluster),)
            )
        except sqlite3.Error as err:
            raise self._error(err) from None

    def _bump_version(self) -> int:
        self.db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'version'")
        return int(self.db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()[0])

    def remove(self, ids: Sequence[str]) -> list[str]:
        db = self.db
        present = []
        removed: list[np.ndarray] = []
        for doc_id in ids:
            row = db.execute("SELECT n, features FROM docs WHERE id = ?", (doc_id,)).fetchone()
            if row is None:
                continue
            present.append(doc_id)
            removed.append(unpack_features(row[1])[0])
            db.execute("DELETE FROM links WHERE a = ? OR b = ?", (row[0], row[0]))
            db.execute("DELETE FROM docs WHERE n = ?", (row[0],))
            # LSH rows of a removed document are left behind: candidates join on docs.
        if present:
            # A run of negative counts takes the documents out of the frequencies.
            features, counts = np.unique(np.concatenate(removed), return_counts=True)
            version = self._bump_version()
            db.execute(
                "INSERT INTO df_runs VALUES (?, 0, ?, ?)",
                (version, *pack_counts(features, -counts)),
            )
        db.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) - ? WHERE key = 'documents'",
            (len(present),),
        )
        return present

    def all_documents(self) -> list[StoredDocument]:
        with self.reading():
            rows = self.db.execute(
                f"SELECT {self._COLUMNS}, NULL, NULL FROM docs ORDER BY id"
            ).fetchall()
        return [self._row(r) for r in rows]

    def all_links(self) -> list[tuple[str, str, float]]:
        with self.reading():
            rows = self.db.execute(
                "SELECT da.id, db.id, l.score FROM links l "
                "JOIN docs da ON da.n = l.a JOIN docs db ON db.n = l.b"
            ).fetchall()
        return [(a, b, float(s)) for a, b, s in rows]

    def counts(self) -> dict[str, int]:
        with self.reading():
            one = self.db.execute
            return {
                "documents": one("SELECT COUNT(*) FROM docs").fetchone()[0],
                "clusters": one("SELECT COUNT(DISTINCT cluster) FROM docs").fetchone()[0],
                "links": one("SELECT COUNT(*) FROM links").fetchone()[0],
            }

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.db.close()


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
