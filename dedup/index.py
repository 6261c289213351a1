"""A persistent, incremental story index: :class:`StoryIndex`.

Documents are added in batches and each joins an existing cluster or starts a
new one; nothing already indexed is re-clustered from scratch. For a batch:

1. analyse, sign and featurise the new documents as :func:`dedup.cluster` does;
2. candidates: LSH among the new documents (:func:`dedup.candidates.candidate_pairs`)
   and against the stored band buckets (the same bands and keys);
3. score every candidate pair with the batch's length and date factors and a
   TF-IDF whose document frequencies are the store's plus the batch's, so a
   verdict does not depend on which batch an article came in with;
4. average linkage over the new documents and the existing clusters they link
   to, each existing cluster a node of its size whose links are the stored
   ones; clusters merge while the mean pairwise score reaches the threshold.
   A cluster keeps its id; when two existing clusters merge, the larger's id
   survives.

The store (:mod:`dedup.stores`) is one SQLite file or a Redis database.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dedup.candidates import candidate_pairs, lsh_params
from dedup.errors import ConfigError, DuplicateIdError
from dedup.linkage import average_linkage, single_linkage
from dedup.params import Params, resolve_params
from dedup.pipeline import DocumentLike, _build_result, _distinct_counts, _prepare, as_documents
from dedup.records import ClusterResult, Document
from dedup.signature import signatures
from dedup.stores import (
    Batch,
    IndexBusyError,
    IndexFormatError,
    IndexParamsError,
    Store,
    StoredDocument,
    StoreUnavailableError,
    open_store,
)
from dedup.vectors import DocumentFrequencies, feature_hashes, length_weights, tfidf_rows
from dedup.verify import days_apart, pair_cosines, pair_jaccards, time_factor

__all__ = [
    "Assignment",
    "IndexBusyError",
    "IndexFormatError",
    "IndexParamsError",
    "StoreUnavailableError",
    "StoryIndex",
]

_LINK_FLOOR = 0.25  # as in dedup.pipeline: links under this share of the threshold are dropped
_SNIPPET = 300


@dataclass(frozen=True)
class Assignment:
    """Where one document went (``add``) or would go (``query``).

    Attributes
    ----------
    id : str
        The document.
    cluster : int or None
        Its cluster in the index; for ``query``, None when it would start a new one.
    status : str
        ``"new"`` (started a cluster), ``"joined"`` (joined an existing one),
        ``"exists"`` (already indexed; left as it was) or, for ``query``,
        ``"new"`` / ``"joined"`` as it would be.
    score : float
        Mean link score to the other members of the cluster (0 for a singleton).
    size : int
        The cluster's size afterwards.
    matches : tuple of (int, float)
        For ``query``: existing clusters it links to, with the mean score, best first.
    """

    id: str
    cluster: int | None
    status: str
    score: float
    size: int
    matches: tuple[tuple[int, float], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": self.id,
            "cluster": self.cluster,
            "status": self.status,
            "score": round(self.score, 4),
            "size": self.size,
        }
        if self.matches:
            record["matches"] = [{"cluster": c, "score": round(s, 4)} for c, s in self.matches]
        return record


@dataclass
class _Plan:
    """The outcome of clustering a batch against the store, before it is written."""

    assignments: list[Assignment]
    batch: Batch
    skipped: list[str] = field(default_factory=list)


class StoryIndex:
    """A story index that persists, grows and answers queries.

    Parameters
    ----------
    location : str or path
        A SQLite file (created on first use) or ``redis://host:port/db``.
    preset : str, optional
        Parameters for a new index; for an existing one, given parameters must
        equal the stored ones (or :class:`IndexParamsError`).
    timeout : float
        Seconds a writer waits for another writer before :class:`IndexBusyError`.
    **options
        Any :class:`dedup.params.Params` field (None keeps the stored value).

    Examples
    --------
    >>> with StoryIndex("news.sqlite") as index:  # doctest: +SKIP
    ...     index.add(docs)
    ...     index.query(["Quake hits Izmir"])
    """

    def __init__(
        self,
        location: str | os.PathLike[str],
        preset: str | None = None,
        *,
        timeout: float = 30.0,
        **options: Any,
    ):
        self.location = os.fspath(location)
        self.store: Store = open_store(self.location, timeout=timeout)
        try:
            self.params = self._open(preset, options)
        except BaseException:
            self.store.close()
            raise
        self.bands, self.rows = lsh_params(self.params.lsh_threshold, self.params.num_perm)
        self.store.configure(self.bands, self.rows, self.params.seed, self.params.num_perm)

    def _open(self, preset: str | None, options: dict[str, Any]) -> Params:
        asked = {k: v for k, v in options.items() if v is not None}
        meta = self.store.meta()
        if meta is None:
            params = resolve_params(preset or "stories", **asked)
            bands, rows = lsh_params(params.lsh_threshold, params.num_perm)
            self.store.create(params.as_dict(), bands, rows)
            meta = self.store.meta()
            assert meta is not None
        stored = dict(meta["params"])
        unknown = sorted(set(stored) - set(Params().as_dict()))
        if unknown:
            raise IndexFormatError(
                f"{self.location}: index parameters unknown to this dedup: {', '.join(unknown)}"
            )
        params = Params(**stored)
        if preset is not None or asked:
            wanted = resolve_params(preset or stored["preset"], **asked).as_dict()
            diff = sorted(k for k in wanted if wanted[k] != stored.get(k))
            if diff:
                shown = ", ".join(f"{k}={stored.get(k)!r} (asked {wanted[k]!r})" for k in diff)
                raise IndexParamsError(
                    f"{self.location}: the index was created with other parameters: {shown}"
                )
        return params

    def __enter__(self) -> StoryIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the store's connection."""
        self.store.close()

    # --- public operations --------------------------------------------------------

    def add(
        self, documents: Iterable[DocumentLike], *, on_duplicate: str = "skip"
    ) -> list[Assignment]:
        """Add documents; each joins a cluster or starts one. All-or-nothing per call.

        Parameters
        ----------
        on_duplicate : {"skip", "error"}
            An id already in the index is left as it is and reported with
            status ``"exists"``, or raises :class:`DuplicateIdError`.
        """
        if on_duplicate not in ("skip", "error"):
            raise ConfigError("on_duplicate must be 'skip' or 'error'")
        docs = as_documents(documents)
        with self.store.writing():
            present = self.store.known([d.id for d in docs])
            if present and on_duplicate == "error":
                first = next(d for d in docs if d.id in present)
                raise DuplicateIdError(f"id {first.id!r} is already in the index", first.origin)
            plan = self._plan([d for d in docs if d.id not in present], write=True)
            if plan.batch.documents:
                self.store.commit(plan.batch)
        by_id = {a.id: a for a in plan.assignments}
        if present:
            stored = self.store.documents(present)
            sizes = {
                c: len(m)
                for c, m in self.store.members({d.cluster for d in stored.values()}).items()
            }
            for doc_id, d in stored.items():
                by_id[doc_id] = Assignment(doc_id, d.cluster, "exists", 0.0, sizes[d.cluster])
        return [by_id[d.id] for d in docs]

    def query(self, documents: Iterable[DocumentLike]) -> list[Assignment]:
        """Which clusters the documents would join, with scores; changes nothing."""
        docs = as_documents(documents)
        for _ in range(10):  # a store without snapshots: retry when a commit moved under us
            before = self.store.version()
            with self.store.reading():
                assignments = self._plan(docs, write=False).assignments
            if self.store.version() == before:
                break
        return assignments

    def remove(self, ids: Sequence[str]) -> list[str]:
        """Remove documents by id; returns those that were present.

        A cluster loses the members removed; it is not split.
        """
        with self.store.writing():
            return self.store.remove([str(i) for i in ids])

    def clusters(self) -> ClusterResult:
        """Every indexed document and its cluster, as :func:`dedup.cluster` returns them."""
        with self.store.reading():
            stored = self.store.all_documents()
            links = self.store.all_links()
        docs = [
            Document(
                id=d.id,
                text=d.snippet,
                title=d.title,
                source=d.source,
                published=d.published,
                extra={"index_cluster": d.cluster},
            )
            for d in stored
        ]
        position = {d.id: k for k, d in enumerate(stored)}
        _, labels = np.unique(
            np.array([d.cluster for d in stored], dtype=np.int64), return_inverse=True
        )
        rows = np.array([position[a] for a, _, _ in links], dtype=np.int64)
        cols = np.array([position[b] for _, b, _ in links], dtype=np.int64)
        scores = np.array([s for _, _, s in links], dtype=np.float64)
        empty = np.array([d.distinct_terms == 0 for d in stored], dtype=bool)
        stats = {"documents": len(docs), "index": self.location}
        return _build_result(docs, labels.ravel(), rows, cols, scores, empty, self.params, stats)

    def stats(self) -> dict[str, Any]:
        """Counts, parameters and the store."""
        counts = self.store.counts()
        out: dict[str, Any] = {
            "index": self.location,
            "store": type(self.store).__name__.replace("Store", "").lower(),
            **counts,
            "lsh_bands": self.bands,
            "lsh_rows": self.rows,
            "params": self.params.as_dict(),
        }
        if os.path.isfile(self.location):
            out["bytes"] = sum(
                os.path.getsize(p)
                for p in (self.location, self.location + "-wal")
                if os.path.exists(p)
            )
        return out

    # --- the incremental step -----------------------------------------------------

    def _plan(self, docs: Sequence[Document], *, write: bool) -> _Plan:
        params = self.params
        docs = sorted(docs, key=lambda d: d.id)  # canonical order, as the batch run
        n = len(docs)
        if n == 0:
            return _Plan([], Batch())
        prepared = _prepare(docs, params, None, {})
        sigs = signatures(prepared.hash_sets, params.num_perm, params.seed)
        feats = [feature_hashes(t, params.tfidf_ngrams) for t in prepared.terms]
        distinct = _distinct_counts(prepared.terms)
        batch_df = DocumentFrequencies.count(feats)
        new = _Nodes(
            [d.id for d in docs],
            list(feats),
            distinct.tolist(),
            list(prepared.published),
            list(prepared.hash_sets),
            [-1] * n,
        )
        max_bucket = int(getattr(params, "max_bucket", 0))

        # Candidates: new x new by LSH, new x stored from the store's buckets.
        new_rows, new_cols = candidate_pairs(sigs, self.bands, self.rows, max_bucket)
        old_pairs = self.store.lsh_candidates(sigs, max_bucket)
        found = self.store.documents(sorted({doc_id for _, doc_id in old_pairs}))
        new.extend(found[i] for i in sorted(found))
        at = {doc_id: k for k, doc_id in enumerate(new.ids)}
        rows = np.concatenate([new_rows, [k for k, d in old_pairs if d in at]]).astype(np.int64)
        cols = np.concatenate([new_cols, [at[d] for _, d in old_pairs if d in at]]).astype(np.int64)
        scores = self._scores(new, batch_df, n, rows, cols)
        floor = params.threshold * _LINK_FLOOR

        # The existing clusters the batch links to are clustered again, with the batch.
        touched = sorted({new.cluster[j] for j in cols[(scores >= floor) & (cols >= n)].tolist()})
        members = self.store.members(touched) if touched else {}
        member_ids = sorted(m for c in touched for m in members[c])
        nodes = _Nodes(
            new.ids[:n], feats[:], new.distinct[:n], new.published[:n], new.sets[:n], [-1] * n
        )
        fetched = self.store.documents([m for m in member_ids if m not in found])
        nodes.extend(found[m] if m in found else fetched[m] for m in member_ids)
        at = {doc_id: k for k, doc_id in enumerate(nodes.ids)}
        keep = np.array([j < n or new.ids[j] in at for j in cols.tolist()], dtype=bool)
        stored = self.store.links_among(member_ids) if member_ids else []
        rows = np.concatenate([rows[keep], [at[a] for a, _, _ in stored]]).astype(np.int64)
        cols = np.concatenate(
            [[at[new.ids[j]] for j in cols[keep].tolist()], [at[b] for _, b, _ in stored]]
        ).astype(np.int64)
        scores = self._scores(nodes, batch_df, n, rows, cols)
        kept = scores >= floor
        rows, cols, scores = rows[kept], cols[kept], scores[kept]

        # Link in id order, as the batch run does, so ties break the same way.
        order = np.array(sorted(range(len(nodes.ids)), key=lambda k: nodes.ids[k]), dtype=np.int64)
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        linkage = average_linkage if params.linkage == "average" else single_linkage
        labels = linkage(order.size, rank[rows], rank[cols], scores, params.threshold)[rank]

        # Cluster ids: each old id goes to the group holding most of its members.
        meta = self.store.meta()
        next_cluster = int(meta["next_cluster"]) if meta else 0
        groups: dict[int, list[int]] = {}
        for k, label in enumerate(labels.tolist()):
            groups.setdefault(label, []).append(k)
        claims = sorted(
            (
                (-sum(1 for k in g if nodes.cluster[k] == c), c, label)
                for label, g in groups.items()
                for c in {nodes.cluster[k] for k in g if k >= n}
            )
        )
        cluster_of_group: dict[int, int | None] = {}
        taken: set[int] = set()
        for _, c, label in claims:
            if label not in cluster_of_group and c not in taken:
                cluster_of_group[label] = c
                taken.add(c)
        for label in sorted(groups, key=lambda g: nodes.ids[groups[g][0]]):
            if label not in cluster_of_group:
                if write:
                    cluster_of_group[label], next_cluster = next_cluster, next_cluster + 1
                else:
                    cluster_of_group[label] = None
        moved = {
            nodes.ids[k]: cluster_of_group[labels[k]]
            for k in range(n, len(nodes.ids))
            if cluster_of_group[labels[k]] != nodes.cluster[k]
        }

        # Per new document: mean score to the rest of its cluster, and its matches.
        size = {label: len(g) for label, g in groups.items()}
        support = np.zeros(len(nodes.ids))
        same = labels[rows] == labels[cols]
        np.add.at(support, rows[same], scores[same])
        np.add.at(support, cols[same], scores[same])
        match: list[dict[int, float]] = [{} for _ in range(n)]
        for i, j, s in zip(rows.tolist(), cols.tolist(), scores.tolist(), strict=True):
            if i < n <= j:
                c = nodes.cluster[j]
                match[i][c] = match[i].get(c, 0.0) + s / len(members[c])
        assignments = []
        for i, doc in enumerate(docs):
            label = int(labels[i])
            total = size[label]
            joined = any(k >= n for k in groups[label])
            ranked = tuple(sorted(match[i].items(), key=lambda x: (-x[1], x[0])))
            assignments.append(
                Assignment(
                    doc.id,
                    cluster_of_group[label],
                    "joined" if joined else "new",
                    float(support[i] / (total - 1)) if total > 1 else 0.0,
                    total,
                    () if write else ranked,
                )
            )
        batch = Batch()
        if write:
            batch = self._batch(docs, prepared, sigs, feats, distinct, assignments)
            batch.moved = moved
            batch.next_cluster = next_cluster
            batch.df_features, batch.df_counts = batch_df.features, batch_df.counts
            batch.links = [
                (nodes.ids[i], nodes.ids[j], s)
                for i, j, s in zip(rows.tolist(), cols.tolist(), scores.tolist(), strict=True)
                if i < n or j < n
            ]
            # Stored links among members were rescored: keep the new values.
            batch.links += [
                (nodes.ids[i], nodes.ids[j], s)
                for i, j, s in zip(rows.tolist(), cols.tolist(), scores.tolist(), strict=True)
                if i >= n and j >= n
            ]
        return _Plan(assignments, batch)

    def _scores(
        self,
        nodes: _Nodes,
        batch_df: DocumentFrequencies,
        n_new: int,
        rows: np.ndarray,
        cols: np.ndarray,
    ) -> np.ndarray:
        """Scores of (rows, cols) among ``nodes``, as the pipeline scores them.

        IDF comes from the store's document frequencies plus the batch's
        (``batch_df`` over the first ``n_new`` nodes, which are not stored yet).
        """
        params = self.params
        if rows.size == 0:
            return np.empty(0)
        if params.similarity == "cosine":
            used = np.unique(np.concatenate([rows, cols]))
            lists = [
                nodes.features[k] if k in set(used.tolist()) else np.empty(0, np.uint32)
                for k in range(len(nodes.ids))
            ]
            union = np.unique(np.concatenate(lists).astype(np.uint32))
            stored_counts, stored_n = self.store.frequencies(union)
            batch_counts = np.zeros(union.size, dtype=np.int64)
            inside = np.isin(batch_df.features, union)
            batch_counts[np.searchsorted(union, batch_df.features[inside])] = batch_df.counts[
                inside
            ]
            frequencies = DocumentFrequencies(union, stored_counts + batch_counts, stored_n + n_new)
            weights = length_weights(
                np.asarray(nodes.distinct, dtype=np.int64), params.length_reference
            )
            matrix, _ = tfidf_rows(lists, frequencies)
            base = pair_cosines(matrix, rows, cols) * weights[rows] * weights[cols]
        else:
            base = pair_jaccards(nodes.sets, rows, cols)
        gaps = days_apart(nodes.published, rows, cols)
        factor = time_factor(gaps, params.time_window_days, params.time_scale_days)
        return np.clip(base * factor, 0.0, 1.0)

    def _batch(
        self,
        docs: Sequence[Document],
        prepared: Any,
        sigs: np.ndarray,
        feats: list[np.ndarray],
        distinct: np.ndarray,
        assignments: list[Assignment],
    ) -> Batch:
        batch = Batch(signatures=sigs)
        jaccard = self.params.similarity == "jaccard"
        for k, doc in enumerate(docs):
            features, counts = np.unique(feats[k].astype(np.uint32), return_counts=True)
            cluster = assignments[k].cluster
            assert cluster is not None
            batch.documents.append(
                StoredDocument(
                    id=doc.id,
                    cluster=cluster,
                    published=doc.published,
                    title=doc.title,
                    source=doc.source,
                    snippet=doc.text[:_SNIPPET],
                    distinct_terms=int(distinct[k]),
                    features=features,
                    counts=counts.astype(np.uint32),
                    shingles=np.unique(prepared.hash_sets[k]) if jaccard else None,
                )
            )
        return batch


@dataclass
class _Nodes:
    """Documents taking part in one incremental step: the batch's first, then stored ones."""

    ids: list[str]
    features: list[np.ndarray]
    distinct: list[int]
    published: list[Any]
    sets: list[np.ndarray]
    cluster: list[int]

    def extend(self, stored: Iterable[StoredDocument]) -> int:
        """Append stored documents; returns the position of the first."""
        first = len(self.ids)
        for d in stored:
            self.ids.append(d.id)
            self.features.append(d.feature_list())
            self.distinct.append(d.distinct_terms)
            self.published.append(d.published)
            self.sets.append(d.shingles if d.shingles is not None else np.empty(0, np.uint32))
            self.cluster.append(d.cluster)
        return first
