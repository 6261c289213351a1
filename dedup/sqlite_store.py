"""A :class:`dedup.stores.Store` in one SQLite file: the embedded default, with no server.

WAL mode; a writer holds ``BEGIN IMMEDIATE`` from its first read to its
commit, so two writers serialise (or the second gets
:class:`dedup.stores.IndexBusyError` after the busy timeout), and readers see
a snapshot. LSH band keys are runs of blobs (:mod:`dedup.band_index`), one
per commit and merged now and then, searched in memory.
"""

from __future__ import annotations

import contextlib
import json
import operator
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from dedup.band_index import BandRun, BandRuns, DateWindow, merge_plan, run_limit
from dedup.candidates import band_keys
from dedup.errors import DedupError
from dedup.signature import signed
from dedup.stores import (
    FORMAT_NAME,
    SCHEMA_VERSION,
    Batch,
    Candidates,
    ClusterLinks,
    IndexBusyError,
    IndexFormatError,
    Store,
    StoredDocument,
    StoredRows,
    StoreUnavailableError,
    _check_schema,
    _date,
    _pack_set,
    _unpack_set,
    meta_record,
    pack_counts,
    pack_features,
    unpack_counts,
    unpack_features,
)
from dedup.verify import publication_days

_SQLITE_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE docs (
    n INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, cluster INTEGER NOT NULL,
    published TEXT, title TEXT, source TEXT, snippet TEXT, distinct_terms INTEGER NOT NULL,
    norm REAL, norm_documents INTEGER NOT NULL, features BLOB NOT NULL, shingles BLOB);
CREATE INDEX docs_cluster ON docs (cluster);
CREATE TABLE lsh_runs (run INTEGER PRIMARY KEY, first_doc INTEGER NOT NULL,
    documents INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE df_runs (run INTEGER PRIMARY KEY, full INTEGER NOT NULL, features BLOB NOT NULL,
    counts BLOB NOT NULL);
CREATE TABLE links (a INTEGER, b INTEGER, score REAL NOT NULL, documents INTEGER NOT NULL,
    PRIMARY KEY (a, b)) WITHOUT ROWID;
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
        self._runs: dict[int, BandRun] = {}  # the committed band runs read so far
        self._band_runs = BandRuns()
        # Publication days (NaN: none) and distinct terms of the committed documents
        # by number, read so far: what bounds a candidate's scores, without a read.
        self._doc_days = np.empty(0)
        self._doc_terms = np.empty(0, dtype=np.int64)

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
        self.db.executemany("INSERT OR IGNORE INTO q_ids VALUES (?)", zip(ids))

    def known(self, ids: Sequence[str]) -> set[str]:
        with self.reading():
            self._temp_ids(ids)
            rows = self.db.execute("SELECT id FROM docs WHERE id IN (SELECT id FROM q_ids)")
            return {r[0] for r in rows}

    def _keys(self, signatures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Live rows and their bucket keys (:func:`dedup.candidates.band_keys`) as int64."""
        live = np.flatnonzero(signed(signatures))
        keys = band_keys(signatures[live], self.bands, self.rows).view(np.int64)
        return live, keys

    def lsh_candidates(
        self,
        signatures: np.ndarray,
        max_bucket: int,
        min_bands: int = 1,
        jobs: int = 1,
        days: np.ndarray | None = None,
        reach: np.ndarray | None = None,
    ) -> Candidates:
        live, keys = self._keys(signatures)
        with self.reading():
            self._sync_runs()
            self._sync_facts()
            window = None
            if days is not None and reach is not None:
                window = DateWindow(self._doc_days, days[live], reach[live])
            owners, docs = self._band_runs.candidates(keys, max_bucket, min_bands, jobs, window)
        # Pairs come by owner, then by number: the numbers' order is the mates'.
        numbers, mates = np.unique(docs, return_inverse=True)
        # Keys of removed documents stay in their runs (and one numbered past
        # the facts read has no day): the docs table drops them with the rows.
        read = numbers < self._doc_days.size
        stored_days = np.full(numbers.size, np.nan)
        stored_days[read] = self._doc_days[numbers[read]]
        terms = np.zeros(numbers.size, dtype=np.int64)
        terms[read] = self._doc_terms[numbers[read]]
        return Candidates(live[owners], mates.ravel(), None, stored_days, terms, numbers)

    def _sync_runs(self) -> None:
        """Bring the in-memory band runs up to the committed ones (inside a transaction)."""
        listed = self.db.execute("SELECT run FROM lsh_runs ORDER BY first_doc").fetchall()
        wanted = [run for (run,) in listed]
        missing = [run for run in wanted if run not in self._runs]
        if missing:
            self._temp_numbers("q_r", missing)
            for run, data in self.db.execute(
                "SELECT run, data FROM lsh_runs WHERE run IN (SELECT n FROM q_r)"
            ):
                self._runs[run] = BandRun.from_bytes(data)
        self._runs = {run: self._runs[run] for run in wanted}
        self._band_runs.runs = list(self._runs.values())

    def _sync_facts(self) -> None:
        """Read the days and distinct terms of documents committed since the last call
        (inside a transaction).

        Candidates are found before a batch writes its rows, so only committed
        documents are read and a rolled-back commit leaves nothing behind; a
        removed document's facts stay, which only keeps a candidate that the
        docs table then drops.
        """
        rows = self.db.execute(
            "SELECT n, published, distinct_terms FROM docs WHERE n >= ? ORDER BY n",
            (self._doc_days.size,),
        ).fetchall()
        if rows:
            numbers = np.array([r[0] for r in rows], dtype=np.int64)
            days = np.full(int(numbers[-1]) + 1, np.nan)
            days[: self._doc_days.size] = self._doc_days
            days[numbers] = publication_days([_date(r[1]) for r in rows])
            terms = np.zeros(days.size, dtype=np.int64)
            terms[: self._doc_terms.size] = self._doc_terms
            terms[numbers] = [r[2] for r in rows]
            self._doc_days, self._doc_terms = days, terms

    def _row(self, row: Sequence[Any]) -> StoredDocument:
        features, counts = unpack_features(row[9]) if row[9] else (np.empty(0, np.uint32),) * 2
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
            shingles=_unpack_set(row[10]),
            norm=row[7],
            norm_documents=int(row[8]),
        )

    _COLUMNS = (
        "id, cluster, published, title, source, snippet, distinct_terms, norm, norm_documents"
    )

    def documents(self, ids: Iterable[str], vectors: bool = True) -> dict[str, StoredDocument]:
        blobs = "features, shingles" if vectors else "NULL, NULL"
        with self.reading():
            self._temp_ids(ids)
            rows = self.db.execute(
                f"SELECT {self._COLUMNS}, {blobs} FROM docs WHERE id IN (SELECT id FROM q_ids)"
            ).fetchall()
        return {r[0]: self._row(r) for r in rows}

    def candidate_rows(
        self, candidates: Candidates, mates: np.ndarray
    ) -> tuple[StoredRows, np.ndarray]:
        assert candidates.numbers is not None
        # By row number: one rowid search each, not the id index's and then the rowid's.
        with self.reading():
            self._temp_numbers("q_n", candidates.numbers[mates])
            rows = self.db.execute(
                "SELECT n, id, cluster, norm, norm_documents, features, shingles"
                " FROM docs WHERE n IN (SELECT n FROM q_n)"
            ).fetchall()
        rows.sort(key=operator.itemgetter(1))
        numbers = np.array([r[0] for r in rows], dtype=np.int64)
        vectors = [unpack_features(r[5]) for r in rows]
        found = StoredRows(
            [r[1] for r in rows],
            np.array([r[2] for r in rows], dtype=np.int64),
            # Days and lengths were read with the runs, in the candidates' transaction.
            self._doc_days[numbers],
            self._doc_terms[numbers],
            [f for f, _ in vectors],
            [c for _, c in vectors],
            [_unpack_set(r[6]) for r in rows],
            np.array([np.nan if r[3] is None else r[3] for r in rows], dtype=np.float64),
            np.array([r[4] for r in rows], dtype=np.int64),
        )
        return found, np.searchsorted(candidates.numbers, numbers)

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

    def cluster_links(self, clusters: Iterable[int]) -> ClusterLinks:
        with self.reading():
            self._temp_numbers("q_c", clusters)
            members = self.db.execute(
                "SELECT n, id, cluster FROM docs WHERE cluster IN (SELECT n FROM q_c) ORDER BY id"
            ).fetchall()
            self._temp_numbers("q_m", (n for n, _, _ in members))
            # By row number, not id: no join back to docs for each link's ends.
            # "+b": seek each member's links by a and test b, not every (a, b)
            # pair of members, quadratic in a big story's size.
            links = self.db.execute(
                "SELECT a, b, score, documents FROM links "
                "WHERE a IN (SELECT n FROM q_m) AND +b IN (SELECT n FROM q_m)"
            ).fetchall()
        numbers = np.array([n for n, _, _ in members], dtype=np.int64)
        by_number = np.argsort(numbers)
        a, b, scores, documents = np.array(links, dtype=np.float64).reshape(-1, 4).T
        # Row numbers < 2**53 are exact as float64.
        position = by_number[np.searchsorted(numbers[by_number], np.stack([a, b]).astype(np.int64))]
        return ClusterLinks(
            [doc_id for _, doc_id, _ in members],
            np.array([c for _, _, c in members], dtype=np.int64),
            position[0],
            position[1],
            scores,
            documents.astype(np.int64),
        )

    def _temp_numbers(self, table: str, values: Iterable[int]) -> None:
        self.db.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} (n INTEGER PRIMARY KEY)")
        self.db.execute(f"DELETE FROM {table}")
        # zip makes the one-value rows in C: twice as fast as a generator of tuples.
        numbers = values.tolist() if isinstance(values, np.ndarray) else [int(v) for v in values]
        self.db.executemany(f"INSERT OR IGNORE INTO {table} VALUES (?)", zip(numbers))

    def commit(self, batch: Batch) -> None:
        db = self.db
        try:
            db.executemany(
                "INSERT INTO docs (id, cluster, published, title, source, snippet, distinct_terms,"
                " norm, norm_documents, features, shingles)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        d.id,
                        d.cluster,
                        d.published.isoformat() if d.published else None,
                        d.title,
                        d.source,
                        d.snippet,
                        d.distinct_terms,
                        d.norm,
                        d.norm_documents,
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
            limit = run_limit(self.bands)
            for start in range(0, docs.size, limit):  # a huge batch as several runs
                part = slice(start, start + limit)
                self._add_run(BandRun.of(docs[part], keys[part]), limit)
            db.executemany(
                "UPDATE docs SET cluster = ? WHERE id = ?",
                ((c, doc_id) for doc_id, c in batch.moved.items()),
            )
            db.executemany(
                "UPDATE docs SET norm = ?, norm_documents = ? WHERE id = ?",
                ((norm, at, doc_id) for doc_id, (norm, at) in batch.norms.items()),
            )
            # Links by id: resolve both ends to row numbers in one statement.
            db.execute("CREATE TEMP TABLE IF NOT EXISTS q_links (a TEXT, b TEXT, score REAL)")
            db.execute("DELETE FROM q_links")
            db.executemany("INSERT INTO q_links VALUES (?, ?, ?)", batch.links)
            db.execute(
                "INSERT INTO links SELECT da.n, db.n, q.score, ? FROM q_links q "
                "JOIN docs da ON da.id = q.a JOIN docs db ON db.id = q.b WHERE true "
                "ON CONFLICT DO UPDATE SET score = excluded.score, documents = excluded.documents",
                (batch.documents_after,),
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

    def _add_run(self, run: BandRun, limit: int) -> None:
        """Write a commit's band run, merging the newest runs as :func:`merge_plan` says."""
        self._sync_runs()
        runs = list(self._runs.items())
        merge = merge_plan([r.docs.size for _, r in runs] + [run.docs.size], limit)
        if merge:
            for number, older in reversed(runs[len(runs) + 1 - merge :]):
                run = older.merged(run)
                self.db.execute("DELETE FROM lsh_runs WHERE run = ?", (number,))
        if run.docs.size:
            written = self.db.execute(
                "INSERT INTO lsh_runs (first_doc, documents, data) VALUES (?, ?, ?)",
                (int(run.docs[0]), int(run.docs.size), run.to_bytes()),
            )
            # Cached now, not read back; a rolled-back commit's run is dropped on the next sync.
            self._runs[written.lastrowid] = run

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
