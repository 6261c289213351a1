"""Where a :class:`dedup.index.StoryIndex` keeps its state: one SQLite file, or Redis.

Both stores hold the same records: the index parameters and schema version,
one record per document (cluster, date, headline, feature counts), the
document frequencies of every feature, the kept similarity links, and the
LSH band buckets. A batch is written all-or-nothing:

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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from dedup.candidates import band_keys
from dedup.errors import DedupError
from dedup.signature import EMPTY

SCHEMA_VERSION = 1
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

    def feature_list(self) -> np.ndarray:
        """The features with repeats, as :func:`dedup.vectors.feature_hashes` gives them."""
        return np.repeat(self.features, self.counts)


@dataclass
class Batch:
    """Everything one ``add`` writes, applied all-or-nothing by :meth:`Store.commit`."""

    documents: list[StoredDocument] = field(default_factory=list)
    signatures: np.ndarray = field(default_factory=lambda: np.empty((0, 0), np.uint32))
    moved: dict[str, int] = field(default_factory=dict)  # existing id -> its new cluster
    links: list[tuple[str, str, float]] = field(default_factory=list)
    df_features: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint32))
    df_counts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    next_cluster: int = 0


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
    def lsh_candidates(self, signatures: np.ndarray, max_bucket: int) -> list[tuple[int, str]]:
        """``(k, id)`` for committed documents sharing an LSH bucket with signature ``k``.

        Signatures that are all ``EMPTY`` are never candidates. With ``max_bucket``
        > 0, at most that many documents per bucket, the latest added.
        """

    @abc.abstractmethod
    def documents(self, ids: Iterable[str]) -> dict[str, StoredDocument]:
        """The committed records of ``ids`` (missing ones left out)."""

    @abc.abstractmethod
    def frequencies(self, features: np.ndarray) -> tuple[np.ndarray, int]:
        """Document frequency of each feature, and the number of documents counted."""

    @abc.abstractmethod
    def members(self, clusters: Iterable[int]) -> dict[int, list[str]]:
        """The member ids of each cluster."""

    @abc.abstractmethod
    def links_among(self, ids: Iterable[str]) -> list[tuple[str, str, float]]:
        """Stored links with both ends in ``ids``."""

    @abc.abstractmethod
    def commit(self, batch: Batch) -> None:
        """Apply ``batch`` all-or-nothing (inside :meth:`writing`)."""

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
CREATE TABLE df (feature INTEGER PRIMARY KEY, n INTEGER NOT NULL);
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
        return {
            "schema": int(meta["schema"]),
            "params": json.loads(meta["params"]),
            "next_cluster": int(meta["next_cluster"]),
            "documents": int(meta["documents"]),
        }

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

    def lsh_candidates(self, signatures: np.ndarray, max_bucket: int) -> list[tuple[int, str]]:
        live, keys = self._keys(signatures)
        wanted: dict[tuple[int, int], list[int]] = {}
        for k, row in zip(live.tolist(), keys.tolist(), strict=True):
            for band, key in enumerate(row):
                wanted.setdefault((band, key), []).append(k)
        limit = max_bucket if max_bucket > 0 else -1
        sql = "SELECT doc FROM lsh WHERE band = ? AND key = ? ORDER BY doc DESC LIMIT ?"
        found: set[tuple[int, int]] = set()
        with self.reading():
            execute = self.db.execute
            for (band, key), ks in wanted.items():
                docs = [r[0] for r in execute(sql, (band, key, limit))]
                found.update((k, d) for k in ks for d in docs)
            self.db.execute("CREATE TEMP TABLE IF NOT EXISTS q_n (n INTEGER PRIMARY KEY)")
            self.db.execute("DELETE FROM q_n")
            numbers = {d for _, d in found}
            self.db.executemany("INSERT INTO q_n VALUES (?)", ((d,) for d in numbers))
            ids = dict(self.db.execute("SELECT n, id FROM docs JOIN q_n USING (n)").fetchall())
        return sorted((k, ids[d]) for k, d in found if d in ids)

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

    def frequencies(self, features: np.ndarray) -> tuple[np.ndarray, int]:
        with self.reading():
            self.db.execute("CREATE TEMP TABLE IF NOT EXISTS q_feat (f INTEGER PRIMARY KEY)")
            self.db.execute("DELETE FROM q_feat")
            self.db.executemany(
                "INSERT OR IGNORE INTO q_feat VALUES (?)", ((f,) for f in features.tolist())
            )
            found = dict(
                self.db.execute("SELECT feature, n FROM df JOIN q_feat ON feature = f").fetchall()
            )
            total = int(
                self.db.execute("SELECT value FROM meta WHERE key = 'documents'").fetchone()[0]
            )
        counts = np.fromiter((found.get(f, 0) for f in features.tolist()), np.int64, features.size)
        return counts, total

    def members(self, clusters: Iterable[int]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        with self.reading():
            for c in clusters:
                rows = self.db.execute("SELECT id FROM docs WHERE cluster = ?", (int(c),))
                out[int(c)] = [r[0] for r in rows]
        return out

    def links_among(self, ids: Iterable[str]) -> list[tuple[str, str, float]]:
        with self.reading():
            self._temp_ids(ids)
            self.db.execute("CREATE TEMP TABLE IF NOT EXISTS q_n (n INTEGER PRIMARY KEY)")
            self.db.execute("DELETE FROM q_n")
            self.db.execute("INSERT INTO q_n SELECT n FROM docs WHERE id IN (SELECT id FROM q_ids)")
            rows = self.db.execute(
                "SELECT da.id, db.id, l.score FROM links l "
                "JOIN docs da ON da.n = l.a JOIN docs db ON db.n = l.b "
                "WHERE l.a IN (SELECT n FROM q_n) AND l.b IN (SELECT n FROM q_n)"
            ).fetchall()
        return [(a, b, float(s)) for a, b, s in rows]

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
            db.executemany(
                "INSERT OR IGNORE INTO lsh VALUES (?, ?, ?)",
                (
                    (b, key, number[batch.documents[k].id])
                    for k, row in zip(live.tolist(), keys.tolist(), strict=True)
                    for b, key in enumerate(row)
                ),
            )
            db.executemany(
                "UPDATE docs SET cluster = ? WHERE id = ?",
                ((c, doc_id) for doc_id, c in batch.moved.items()),
            )
            db.executemany(
                "INSERT INTO links SELECT a.n, b.n, ? FROM docs a, docs b"
                " WHERE a.id = ? AND b.id = ? ON CONFLICT DO UPDATE SET score = excluded.score",
                ((s, a, b) for a, b, s in batch.links),
            )
            db.executemany(
                "INSERT INTO df VALUES (?, ?) ON CONFLICT DO UPDATE SET n = n + excluded.n",
                zip(batch.df_features.tolist(), batch.df_counts.tolist(), strict=True),
            )
            db.execute(
                "UPDATE meta SET value = CAST(value AS INTEGER) + ? WHERE key = 'documents'",
                (len(batch.documents),),
            )
            db.execute(
                "UPDATE meta SET value = ? WHERE key = 'next_cluster'", (str(batch.next_cluster),)
            )
        except sqlite3.Error as err:
            raise self._error(err) from None

    def remove(self, ids: Sequence[str]) -> list[str]:
        db = self.db
        present = []
        for doc_id in ids:
            row = db.execute("SELECT n, features FROM docs WHERE id = ?", (doc_id,)).fetchone()
            if row is None:
                continue
            present.append(doc_id)
            features, _ = unpack_features(row[1])
            db.executemany(
                "UPDATE df SET n = n - 1 WHERE feature = ?", ((f,) for f in features.tolist())
            )
            db.execute("DELETE FROM links WHERE a = ? OR b = ?", (row[0], row[0]))
            db.execute("DELETE FROM docs WHERE n = ?", (row[0],))
            # LSH rows of a removed document are left behind: candidates join on docs.
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


def _check_schema(location: str, schema: Any) -> None:
    if str(schema) != str(SCHEMA_VERSION):
        raise IndexFormatError(
            f"{location}: index schema version {schema} is not the version {SCHEMA_VERSION} "
            "this dedup reads; rebuild the index with `dedup index add`"
        )
