"""A :class:`dedup.stores.Store` in Redis, for several workers sharing one index.

``redis://host:port/db`` (optionally ``?prefix=name``, default ``dedup``). The
LSH buckets are datasketch's own Redis storage (``MinHashLSH`` with
``storage_config={"type": "redis", ...}``); the records are Redis hashes and
sets written in one ``MULTI``/``EXEC`` per batch, so a batch is all-or-nothing.
Writers take a lock key (``SET NX`` with an expiry, so a killed writer cannot
hold it forever); readers check a version counter and retry a torn read.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from itertools import compress
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np

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
    StoreUnavailableError,
    _check_schema,
    _date,
    meta_record,
    pack_counts,
    pack_features,
    unpack_counts,
    unpack_features,
)

_LOCK_MS = 120_000
# New documents whose bucket hits are counted at once: at most 256 x 128 bands x
# max_bucket 200 hits, 52 MB an array, and far fewer in practice.
_HIT_ROWS = 256
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"


class RedisStore(Store):
    """An index in a Redis database."""

    def __init__(self, url: str, *, timeout: float = 30.0):
        try:
            import redis
        except ImportError:  # pragma: no cover - redis is a dependency
            raise StoreUnavailableError("a redis:// index needs the redis package") from None
        self.location = url
        self.timeout = timeout
        parsed = urlparse(url)
        prefix = parse_qs(parsed.query).get("prefix", ["dedup"])[0]
        self.p = prefix
        clean = parsed._replace(query="").geturl()
        try:
            self.r = redis.Redis.from_url(clean, socket_connect_timeout=5)
            self.r.ping()
        except (redis.exceptions.RedisError, ValueError, OSError) as err:
            raise StoreUnavailableError(f"cannot reach Redis at {url}: {err}") from None
        self._redis_error = redis.exceptions.RedisError
        kind = self.r.type(f"{prefix}:meta")
        if kind not in (b"none", b"hash"):
            raise IndexFormatError(f"{url}: not a dedup index (key {prefix}:meta is a {kind!r})")
        if kind == b"hash":
            meta = self._meta_raw()
            if meta.get("format") != FORMAT_NAME:
                raise IndexFormatError(f"{url}: not a dedup index (foreign {prefix}:meta)")
            _check_schema(url, meta.get("schema"))
        self.lsh: Any = None
        self._token: str | None = None

    def configure(self, bands: int, rows: int, seed: int, num_perm: int) -> None:
        from datasketch import MinHashLSH

        super().configure(bands, rows, seed, num_perm)
        pool = self.r.connection_pool.connection_kwargs
        config = {
            "type": "redis",
            "basename": f"{self.p}:lsh".encode(),
            "redis": {"host": pool.get("host"), "port": pool.get("port"), "db": pool.get("db", 0)},
        }
        self.lsh = MinHashLSH(
            num_perm=num_perm, params=(bands, rows), storage_config=config, prepickle=False
        )

    def _meta_raw(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.r.hgetall(f"{self.p}:meta").items()}

    def meta(self) -> dict[str, Any] | None:
        meta = self._meta_raw()
        if not meta:
            return None
        return meta_record(meta)

    def create(self, params: dict[str, Any], bands: int, rows: int) -> None:
        values = {
            "format": FORMAT_NAME,
            "schema": str(SCHEMA_VERSION),
            "params": json.dumps(params, sort_keys=True),
            "next_cluster": "0",
            "documents": "0",
            "version": "0",
            "lsh": json.dumps([bands, rows]),
        }
        with self.writing():
            if not self.r.exists(f"{self.p}:meta"):
                self.r.hset(f"{self.p}:meta", mapping=values)

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        if self._token is not None:
            yield
            return
        token = uuid.uuid4().hex
        deadline = time.monotonic() + self.timeout
        while not self.r.set(f"{self.p}:lock", token, nx=True, px=_LOCK_MS):
            if time.monotonic() > deadline:
                raise IndexBusyError(
                    f"{self.location}: index is busy (another writer held it "
                    f"for {self.timeout:g} s)"
                )
            time.sleep(0.05)
        self._token = token
        try:
            yield
        finally:
            self._token = None
            with contextlib.suppress(self._redis_error):
                self.r.eval(_RELEASE, 1, f"{self.p}:lock", token)

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        yield

    def version(self) -> int:
        return int(self.r.hget(f"{self.p}:meta", "version") or 0)

    def known(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        found = self.r.hmget(f"{self.p}:cluster", list(ids))
        return {i for i, c in zip(ids, found, strict=True) if c is not None}

    def lsh_candidates(
        self,
        signatures: np.ndarray,
        max_bucket: int,
        min_bands: int = 1,
        jobs: int = 1,
        days: np.ndarray | None = None,
        reach: np.ndarray | None = None,
    ) -> Candidates:
        # Every candidate, dates aside: the index's own date filter drops the rest.
        live = np.flatnonzero(signed(signatures))
        band_keys = self._band_keys(signatures[live])
        # Every band's buckets in one round trip, not one a band, each fetched once
        # however many new documents share it. Not a transaction, which would hold
        # up other clients while a big batch reads: a reader checks the version.
        buckets = [dict.fromkeys(keys) for keys in band_keys]
        pipe = self.r.pipeline(transaction=False)
        for table, wanted in zip(self.lsh.hashtables, buckets, strict=True):
            for key in wanted:
                table._get_items(pipe, table.redis_key(key))
        fetched = iter(pipe.execute())
        met: dict[bytes, int] = {}  # each stored id met, numbered in the order met
        codes: list[int] = []  # the buckets' members, laid end to end
        sizes: list[int] = []
        for wanted in buckets:
            for key in wanted:
                wanted[key] = len(sizes)
                members = next(fetched)
                members = sorted(members)[-max_bucket:] if max_bucket else members
                codes.extend(met.setdefault(m, len(met)) for m in members)
                sizes.append(len(members))
        which = np.array(
            [
                [wanted[key] for key in keys]
                for keys, wanted in zip(band_keys, buckets, strict=True)
            ],
            dtype=np.int64,
        )
        owners, mates = _shared_buckets(
            live,
            which,
            np.array(codes, dtype=np.int64),
            np.array(sizes, dtype=np.int64),
            len(met),
            min_bands,
        )
        ids = [m.decode() for m in met]
        found = [(k, ids[m]) for k, m in zip(owners.tolist(), mates.tolist(), strict=True)]
        # Committed records only (see the module notes), with their dates and lengths.
        facts = self.documents(sorted({doc_id for _, doc_id in found}), vectors=False)
        return Candidates.of(found, facts)

    def _band_keys(self, signatures: np.ndarray) -> list[list[bytes]]:
        """Each band's bucket key of each signature, as ``MinHashLSH`` makes them: a
        signature is its datasketch ``MinHash``'s ``hashvalues`` (uint32)."""
        values = np.ascontiguousarray(signatures, dtype=np.uint32)
        return [[self.lsh._H(v[start:end]) for v in values] for start, end in self.lsh.hashranges]

    def _remove_lsh(self, keys: Sequence[bytes]) -> None:
        """``MinHashLSH.remove`` of those of ``keys`` it holds, found in one round trip."""
        listed = self.lsh.keys.getmany(*keys) if keys else []
        for key, hashes in zip(keys, listed, strict=True):
            if hashes:
                self.lsh.remove(key)

    def _insert_lsh(self, keys: Sequence[bytes], signatures: np.ndarray) -> None:
        """``MinHashLSH.insert`` of each key and signature, in datasketch's own layout
        (a table's hash of bucket names, and a set a bucket), but a band's bucket
        names in one command and each bucket's new members in one: 10,000
        documents were 2.6 million commands a document and band at a time."""
        band_keys = self._band_keys(signatures)
        pipe = self.r.pipeline(transaction=False)
        for key, hashes in zip(keys, zip(*band_keys, strict=True), strict=True):
            self.lsh.keys._insert(pipe, key, *hashes)
        pipe.execute()
        for table, hashes in zip(self.lsh.hashtables, band_keys, strict=True):
            members: dict[bytes, list[bytes]] = {}
            for key, bucket in zip(keys, hashes, strict=True):
                members.setdefault(bucket, []).append(key)
            if not members:
                continue
            # What RedisSetStorage._insert does, bucket by bucket.
            named = {bucket: table.redis_key(bucket) for bucket in members}
            pipe.hset(table._name, mapping=named)
            for bucket, ids in members.items():
                pipe.sadd(named[bucket], *ids)
            pipe.execute()

    def documents(self, ids: Iterable[str], vectors: bool = True) -> dict[str, StoredDocument]:
        ids = list(ids)
        if not ids:
            return {}
        pipe = self.r.pipeline(transaction=True)
        names = ("cluster", "info", "feat", "shingles", "norm") if vectors else ("cluster", "info")
        for name in names:
            pipe.hmget(f"{self.p}:{name}", ids)
        clusters, infos, *blobs = pipe.execute()
        feats, shingles, norms = blobs if vectors else ([None] * len(ids),) * 3
        out = {}
        rows = zip(ids, clusters, infos, feats, shingles, norms, strict=True)
        for doc_id, c, info, feat, sh, norm in rows:
            if c is None or info is None:
                continue
            out[doc_id] = self._document(doc_id, int(c), info, feat, sh, norm)
        return out

    @staticmethod
    def _document(
        doc_id: str,
        cluster: int,
        info: bytes,
        feat: bytes | None,
        sh: bytes | None,
        norm: bytes | None = None,
    ) -> StoredDocument:
        record = json.loads(info)
        features, counts = unpack_features(feat) if feat else (np.empty(0, np.uint32),) * 2
        value, at = norm.split() if norm else (None, 0)  # "norm documents"
        return StoredDocument(
            id=doc_id,
            cluster=cluster,
            published=_date(record["published"]),
            title=record["title"],
            source=record["source"],
            snippet=record["snippet"],
            distinct_terms=record["distinct"],
            features=features,
            counts=counts,
            shingles=None if sh is None else np.frombuffer(sh, "<u4").astype(np.uint32),
            norm=None if value is None else float(value),
            norm_documents=int(at),
        )

    def df_runs(self, after: int) -> tuple[list[tuple[int, bool, np.ndarray, np.ndarray]], int]:
        p = self.p
        pipe = self.r.pipeline(transaction=True)  # runs and the count from one moment
        pipe.zrangebyscore(f"{p}:dfruns", f"({after}", "+inf", withscores=True)
        pipe.hget(f"{p}:meta", "documents")
        listed, total = pipe.execute()
        runs = [(int(score), name.decode()) for name, score in listed]
        fulls = [k for k, (_, name) in enumerate(runs) if name.endswith(":full")]
        runs = runs[fulls[-1] :] if fulls else runs
        pipe = self.r.pipeline(transaction=True)
        for _, name in runs:
            pipe.hmget(f"{p}:df:{name}", ["features", "counts"])
        out = []
        for (run, name), (features, counts) in zip(runs, pipe.execute(), strict=True):
            if features is None:  # merged away by a full run since listed: read again
                return self.df_runs(after)
            out.append((run, name.endswith(":full"), *unpack_counts(features, counts)))
        return out, int(total or 0)

    def cluster_sizes(self, clusters: Iterable[int]) -> dict[int, int]:
        clusters = list(clusters)
        pipe = self.r.pipeline(transaction=False)
        for c in clusters:
            pipe.scard(f"{self.p}:members:{c}")
        return dict(zip(clusters, pipe.execute(), strict=True))

    def cluster_links(self, clusters: Iterable[int]) -> ClusterLinks:
        members = [(m, c) for c, ids in self.members(clusters).items() for m in ids]
        return ClusterLinks.of(members, self.links_among([m for m, _ in members]))

    def members(self, clusters: Iterable[int]) -> dict[int, list[str]]:
        clusters = list(clusters)
        pipe = self.r.pipeline(transaction=False)
        for c in clusters:
            pipe.smembers(f"{self.p}:members:{c}")
        return {
            c: sorted(m.decode() for m in found)
            for c, found in zip(clusters, pipe.execute(), strict=True)
        }

    def links_among(self, ids: Iterable[str]) -> list[tuple[str, str, float, int]]:
        """The links with both ends among ``ids``, as ``(a, b, score, documents)``."""
        ids = list(ids)
        wanted = set(ids)
        pipe = self.r.pipeline(transaction=False)
        for doc_id in ids:
            pipe.hgetall(f"{self.p}:links:{doc_id}")
        out = []
        for a, links in zip(ids, pipe.execute(), strict=True):
            for b_raw, s in links.items():
                b = b_raw.decode()
                if a < b and b in wanted:
                    score, at = s.split()  # "score documents"
                    out.append((a, b, float(score), int(at)))
        return out

    def commit(self, batch: Batch) -> None:
        p = self.p
        # LSH first, outside the transaction: entries of a batch that never
        # commits are filtered out by known(), and replaced if the id comes again.
        keys = [d.id.encode() for d in batch.documents]
        self._remove_lsh(keys)  # left by a batch that never committed
        live = signed(batch.signatures)  # an empty one has no buckets
        self._insert_lsh(list(compress(keys, live)), batch.signatures[live])
        pipe = self.r.pipeline(transaction=True)
        for d in batch.documents:
            info = {
                "published": d.published.isoformat() if d.published else None,
                "title": d.title,
                "source": d.source,
                "snippet": d.snippet,
                "distinct": d.distinct_terms,
            }
            pipe.hset(f"{p}:info", d.id, json.dumps(info))
            pipe.hset(f"{p}:feat", d.id, pack_features(d.features, d.counts))
            if d.shingles is not None:
                pipe.hset(f"{p}:shingles", d.id, d.shingles.astype("<u4").tobytes())
            pipe.hset(f"{p}:cluster", d.id, d.cluster)
            pipe.sadd(f"{p}:members:{d.cluster}", d.id)
            if d.norm is not None:
                pipe.hset(f"{p}:norm", d.id, f"{float(d.norm)!r} {d.norm_documents}")
        for doc_id, (norm, at) in batch.norms.items():
            pipe.hset(f"{p}:norm", doc_id, f"{float(norm)!r} {at}")
        old = self.r.hmget(f"{p}:cluster", list(batch.moved)) if batch.moved else []
        version = int(self.r.hget(f"{p}:meta", "version") or 0) + 1  # we hold the writer lock
        run = f"{version}:full" if batch.df_full else str(version)
        for (doc_id, c), before in zip(batch.moved.items(), old, strict=True):
            if before is not None:
                pipe.srem(f"{p}:members:{int(before)}", doc_id)
            pipe.hset(f"{p}:cluster", doc_id, c)
            pipe.sadd(f"{p}:members:{c}", doc_id)
        for a, b, s in batch.links:
            value = f"{s!r} {batch.documents_after}"
            pipe.hset(f"{p}:links:{a}", b, value)
            pipe.hset(f"{p}:links:{b}", a, value)
        if batch.df_full:
            for name in self.r.zrange(f"{p}:dfruns", 0, -1):
                pipe.delete(f"{p}:df:{name.decode()}")
            pipe.delete(f"{p}:dfruns")
        features, counts = pack_counts(batch.df_features, batch.df_counts)
        pipe.hset(f"{p}:df:{run}", mapping={"features": features, "counts": counts})
        pipe.zadd(f"{p}:dfruns", {run: version})
        batch.df_run = version
        pipe.hincrby(f"{p}:meta", "documents", len(batch.documents))
        pipe.hset(f"{p}:meta", "next_cluster", batch.next_cluster)
        pipe.hincrby(f"{p}:meta", "version", 1)
        pipe.execute()

    def remove(self, ids: Sequence[str]) -> list[str]:
        p = self.p
        found = self.documents(ids)
        present = [i for i in ids if i in found]
        self._remove_lsh([doc_id.encode() for doc_id in present])
        pipe = self.r.pipeline(transaction=True)
        if present:
            # A run of negative counts takes the documents out of the frequencies.
            version = int(self.r.hget(f"{p}:meta", "version") or 0) + 1
            removed = np.concatenate([found[i].features for i in present])
            features, counts = np.unique(removed, return_counts=True)
            blobs = pack_counts(features, -counts)
            pipe.hset(f"{p}:df:{version}", mapping={"features": blobs[0], "counts": blobs[1]})
            pipe.zadd(f"{p}:dfruns", {str(version): version})
        for doc_id in present:
            d = found[doc_id]
            for other in self.r.hkeys(f"{p}:links:{doc_id}"):
                pipe.hdel(f"{p}:links:{other.decode()}", doc_id)
            pipe.delete(f"{p}:links:{doc_id}")
            pipe.srem(f"{p}:members:{d.cluster}", doc_id)
            for name in ("cluster", "info", "feat", "shingles", "norm"):
                pipe.hdel(f"{p}:{name}", doc_id)
        pipe.hincrby(f"{p}:meta", "documents", -len(present))
        pipe.hincrby(f"{p}:meta", "version", 1)
        pipe.execute()
        return present

    def all_documents(self) -> list[StoredDocument]:
        pipe = self.r.pipeline(transaction=True)
        pipe.hgetall(f"{self.p}:cluster")
        pipe.hgetall(f"{self.p}:info")
        clusters, infos = pipe.execute()
        out = []
        for raw in sorted(clusters):
            if raw in infos:
                out.append(self._document(raw.decode(), int(clusters[raw]), infos[raw], None, None))
        return out

    def all_links(self) -> list[tuple[str, str, float]]:
        ids = [d.decode() for d in self.r.hkeys(f"{self.p}:cluster")]
        return [(a, b, s) for a, b, s, _ in self.links_among(ids)]

    def counts(self) -> dict[str, int]:
        clusters = self.r.hvals(f"{self.p}:cluster")
        return {
            "documents": len(clusters),
            "clusters": len(set(clusters)),
            "links": len(self.all_links()),
        }

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.r.close()


def _shared_buckets(
    rows: np.ndarray,
    which: np.ndarray,
    members: np.ndarray,
    sizes: np.ndarray,
    stored: int,
    min_bands: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``(row, stored document)`` pairs sharing at least ``min_bands`` buckets.

    ``which[band, k]`` is the bucket of ``rows[k]`` in that band; the buckets'
    ``members`` (numbers below ``stored``) are laid end to end, ``sizes`` of
    each. Rows go a block at a time, so a batch's hits (up to rows x bands x
    max_bucket) are never all held at once.
    """
    starts = np.cumsum(sizes) - sizes
    owners, mates = [], []
    for first in range(0, rows.size, _HIT_ROWS):
        block = which[:, first : first + _HIT_ROWS]
        buckets = block.ravel()  # band by band, each band's rows in order
        lengths = sizes[buckets]
        ends = np.cumsum(lengths)
        at = np.arange(int(ends[-1]) if ends.size else 0) + np.repeat(
            starts[buckets] - (ends - lengths), lengths
        )
        row = np.repeat(np.tile(np.arange(first, first + block.shape[1]), block.shape[0]), lengths)
        pair, shared = np.unique(row * stored + members[at], return_counts=True)
        pair = pair[shared >= min_bands]
        owners.append(rows[pair // stored])
        mates.append(pair % stored)
    if not owners:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(owners), np.concatenate(mates)
