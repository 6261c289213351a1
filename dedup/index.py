"""A persistent, incremental story index: :class:`StoryIndex`.

Documents are added in batches and each joins an existing cluster or starts a
new one; nothing already indexed is re-clustered from scratch. For a batch:

1. analyse, sign and featurise the new documents as :func:`dedup.cluster` does;
2. candidates: LSH among the new documents (:func:`dedup.candidates.candidate_pairs`)
   and against the stored band buckets (the same bands and keys);
3. score every candidate pair with the batch's length and date factors and a
   TF-IDF whose document frequencies are the store's plus the batch's, so a
   verdict does not depend on which batch an article came in with; a stored
   candidate's row is built over the batch's features only and divided by
   its kept norm (:mod:`dedup.index_scores`);
4. average linkage over the new documents and the existing clusters they link
   to, each existing cluster a node of its size whose links are the stored
   ones (scored again once the index has grown 10% since they were scored);
   clusters merge while the mean pairwise score reaches the threshold.
   A cluster keeps its id; when two existing clusters merge, the larger's id
   survives.

The store (:mod:`dedup.stores`) is one SQLite file or a Redis database.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from scipy import sparse

from dedup.analysis import AnalysisWorkers, default_jobs, needs_shingles, needs_words
from dedup.candidates import candidate_pairs, lsh_params
from dedup.cluster_ids import carried_cluster_ids
from dedup.errors import ConfigError, DuplicateIdError
from dedup.index_scores import (
    KeptFrequencies,
    is_fresh,
    kept_norms,
    pair_scores,
    reachable_candidates,
    rescored_links,
    shingle_sets,
)
from dedup.linkage import average_linkage, single_linkage
from dedup.params import Params, resolve_params
from dedup.pipeline import LINK_FLOOR, DocumentLike, _build_result, as_documents
from dedup.records import Assignment, ClusterResult, Document
from dedup.signature import signatures
from dedup.stores import (
    Batch,
    IndexBusyError,
    IndexFormatError,
    IndexParamsError,
    Store,
    StoredDocument,
    StoredRows,
    StoreUnavailableError,
    open_store,
)
from dedup.vectors import (
    DocumentFrequencies,
    length_weights,
    merge_counts,
    rows_over,
    summed_frequencies,
    top_features,
    word_columns,
)
from dedup.verify import (
    publication_days,
    reach_days,
)

__all__ = [
    "Assignment",
    "IndexBusyError",
    "IndexFormatError",
    "IndexParamsError",
    "StoreUnavailableError",
    "StoryIndex",
]

_SNIPPET = 300
_T = TypeVar("_T")
_DF_RUNS = 16  # DF runs in the store before a writer merges them into one


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
        # Document frequencies as of store run ``_df_run`` (see _frequencies).
        self._df_run = -1
        self._df_pending = 0  # runs read since the last full one
        self._df = KeptFrequencies()
        # Started by the first large batch and kept until close(): their token
        # tables stay warm from one add to the next.
        self._workers = AnalysisWorkers(default_jobs())

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
        # Indexes made before single-word keywords picked them among all features.
        stored.setdefault("single_word_keywords", False)
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
        """Close the store's connection and stop the analysis workers."""
        self._workers.close()
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
            batch = plan.batch
            if batch.documents:
                if self._df_pending + 1 >= _DF_RUNS:
                    # Too many runs to read on open: write the whole table as one.
                    batch.df_full = True
                    batch.df_features, batch.df_counts = merge_counts(
                        *self._df.whole(), batch.df_features, batch.df_counts
                    )
                self.store.commit(batch)
                # The commit is the next run: count it in instead of reading it back.
                total = self._df.documents + len(batch.documents)
                if batch.df_full:
                    self._df.reset(batch.df_features, batch.df_counts, total)
                else:
                    self._df.add(batch.df_features, batch.df_counts, len(batch.documents))
                self._df_run = batch.df_run
                self._df_pending = 0 if batch.df_full else self._df_pending + 1
        by_id = {a.id: a for a in plan.assignments}
        if present:
            stored = self.store.documents(present)
            sizes = self.store.cluster_sizes({d.cluster for d in stored.values()})
            for doc_id, d in stored.items():
                by_id[doc_id] = Assignment(doc_id, d.cluster, "exists", 0.0, sizes[d.cluster])
        return [by_id[d.id] for d in docs]

    def query(self, documents: Iterable[DocumentLike]) -> list[Assignment]:
        """Which clusters the documents would join, with scores, in input order; changes nothing."""
        docs = as_documents(documents)
        planned = self._consistent(lambda: self._plan(docs, write=False).assignments)
        by_id = {a.id: a for a in planned}  # the plan works in id order
        return [by_id[d.id] for d in docs]

    def _consistent(self, read: Callable[[], _T]) -> _T:
        """``read()`` in one snapshot; on a store without snapshots (Redis), read
        again while a commit moved under it."""
        for _ in range(10):
            before = self.store.version()
            with self.store.reading():
                value = read()
            if self.store.version() == before:
                break
        return value

    def remove(self, ids: Sequence[str]) -> list[str]:
        """Remove documents by id; returns those that were present.

        A cluster loses the members removed; it is not split.
        """
        with self.store.writing():
            return self.store.remove([str(i) for i in ids])

    def clusters(self) -> ClusterResult:
        """Every indexed document and its cluster, as :func:`dedup.cluster` returns them."""
        stored, links = self._consistent(
            lambda: (self.store.all_documents(), self.store.all_links())
        )
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

    def _frequencies(self) -> tuple[DocumentFrequencies, ...]:
        """The store's document frequencies, kept in memory and brought up to date.

        The store keeps them as runs (one per commit, merged now and then);
        only runs newer than the ones kept are read, so a writer adding batch
        after batch, or a process answering query after query, reads them once.
        """
        runs, total = self.store.df_runs(self._df_run)
        for run, full, features, counts in runs:
            if full:
                self._df.reset(features, counts, total)
                self._df_pending = 0
            else:
                self._df.add(features, counts)
                self._df_pending += 1
            self._df_run = run
        self._df.documents = total
        return self._df.tables()

    def _plan(self, docs: Sequence[Document], *, write: bool) -> _Plan:
        params = self.params
        docs = sorted(docs, key=lambda d: d.id)  # canonical order, as the batch run
        n = len(docs)
        if n == 0:
            return _Plan([], Batch())
        items = [(d.text, d.title, d.lang) for d in docs]
        analysed, words = self._workers.analyse(items, params, shingles=needs_shingles(params))
        feats, tfs = [a.features for a in analysed], [a.counts for a in analysed]
        distinct = np.array([a.distinct_terms for a in analysed], dtype=np.int64)
        sets = [a.shingles for a in analysed]
        batch_df = DocumentFrequencies.count(feats)
        tables = (*self._frequencies(), batch_df)
        total = self._df.documents + n
        cosine = params.similarity == "cosine"

        # Vectors of the new documents, IDF from the store plus the batch, so a
        # verdict does not depend on which batch an article came in with.
        new_matrix = new_columns = frequencies = new_norms = None
        if cosine:
            frequencies = summed_frequencies(feats, tables, total)
            # Over features another document holds too, as the batch run's
            # matrix: keywords are picked among them, and no score changes.
            new_norms = np.empty(n)  # kept in the store with each document
            new_matrix, new_columns = rows_over(
                feats, tfs, frequencies, 2, default_jobs(), norms_out=new_norms
            )
        if cosine and params.keywords:
            eligible = word_columns(new_columns, words) if needs_words(params) else None
            keyword_sets = top_features(new_matrix, new_columns, params.keywords, eligible)
            sigs = signatures(keyword_sets, params.num_perm, params.seed)
        else:
            sigs = signatures(sets, params.num_perm, params.seed)

        # Candidates: new x new by LSH over the batch, new x stored from the store's buckets.
        new_days = publication_days([d.published for d in docs])
        days = new_weights = reach = None
        if cosine:
            # Documents dated beyond reach never link: LSH may skip them.
            days = new_days
            new_weights = length_weights(distinct, params.length_reference)
            reach = reach_days(
                new_weights,
                params.threshold * LINK_FLOOR,
                params.time_window_days,
                params.time_scale_days,
            )
        min_bands = min(params.min_bands, self.bands)
        new_rows, new_cols = candidate_pairs(
            sigs, self.bands, self.rows, params.max_bucket, min_bands, default_jobs(), days, reach
        )
        candidates = self.store.lsh_candidates(
            sigs, params.max_bucket, min_bands, default_jobs(), days, reach
        )
        reachable = reachable_candidates(candidates, days, new_weights, params)
        old, mate_of_old = self.store.candidate_rows(reachable, np.unique(reachable.mates))
        # Node of each candidate: n + its row in old (id order); -1 if gone.
        node_of_mate = np.full(reachable.days.size, -1, dtype=np.int64)
        node_of_mate[mate_of_old] = n + np.arange(len(old))
        nodes = node_of_mate[reachable.mates]
        stays = nodes >= 0
        owners, nodes = reachable.owners[stays], nodes[stays]
        # By owner, then by id, whatever order the store gave: sums over the
        # pairs then add up in the same order on every store.
        by_id = np.argsort(owners * (n + len(old)) + nodes)
        rows = np.concatenate([new_rows, owners[by_id]])
        cols = np.concatenate([new_cols, nodes[by_id]])
        published = np.concatenate([new_days, old.days])
        refreshed: dict[str, tuple[float, int]] = {}  # stored norms taken again
        if cosine:
            matrix = new_matrix
            if len(old):
                # A stored candidate's row over the batch's columns, divided by
                # its kept norm, is all its dot products with the batch need:
                # its other features are never looked up.
                old_matrix, _ = rows_over(
                    old.features,
                    old.counts,
                    frequencies,
                    2,
                    default_jobs(),
                    kept_norms(old, tables, total, refreshed),
                )
                matrix = sparse.vstack([new_matrix, old_matrix], format="csr")
            weights = np.concatenate(
                [new_weights, length_weights(old.distinct_terms, params.length_reference)]
            )
            hash_sets = None
        else:
            matrix = weights = None
            hash_sets = list(sets) + shingle_sets(old.shingles)
        scores = pair_scores(matrix, weights, published, rows, cols, hash_sets, params)
        kept = scores >= params.threshold * LINK_FLOOR
        rows, cols, scores = rows[kept], cols[kept], scores[kept]

        # The existing clusters the batch links to are clustered again with it,
        # member by member, over their stored links: a new document can still
        # split or regroup them, as the batch run would. Only the stored links
        # are scored again (with today's frequencies, once they are no longer
        # fresh), never all member pairs.
        touched = np.unique(old.clusters[cols[cols >= n] - n]).tolist()
        linked = self.store.cluster_links(touched)
        link_scores = linked.scores
        stale = np.flatnonzero(~is_fresh(linked.documents, total))
        if stale.size:
            ends = np.unique(np.concatenate([linked.a[stale], linked.b[stale]]))
            end_ids = [linked.ids[e] for e in ends.tolist()]
            # The ends among the candidates are read already.
            row_of = {doc_id: k for k, doc_id in enumerate(old.ids)}
            fetched = self.store.documents([e for e in end_ids if e not in row_of])
            pool = old.joined(StoredRows.of(list(fetched.values())))
            row_of.update((doc_id, len(old) + k) for k, doc_id in enumerate(fetched))
            link_scores = link_scores.copy()
            link_scores[stale] = rescored_links(
                pool.take([row_of[e] for e in end_ids]),
                np.searchsorted(ends, linked.a[stale]),
                np.searchsorted(ends, linked.b[stale]),
                tables,
                total,
                refreshed,
                params,
            )
        node_ids = [d.id for d in docs] + linked.ids
        # Node of each candidate; -1 for one not among the touched clusters'
        # members (its links are below the floor): dropped.
        at = {doc_id: n + k for k, doc_id in enumerate(linked.ids)}
        node_of = np.array(list(range(n)) + [at.get(i, -1) for i in old.ids], dtype=np.int64)
        node_cols = node_of[cols]
        keep = node_cols >= 0
        rows, node_cols, scores = rows[keep], node_cols[keep], scores[keep]
        all_rows = np.concatenate([rows, n + linked.a])
        all_cols = np.concatenate([node_cols, n + linked.b])
        all_scores = np.concatenate([scores, link_scores])
        # Link in id order, as the batch run does, so ties break the same way.
        order = np.array(sorted(range(len(node_ids)), key=lambda k: node_ids[k]), np.int64)
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        linkage = average_linkage if params.linkage == "average" else single_linkage
        labels = linkage(order.size, rank[all_rows], rank[all_cols], all_scores, params.threshold)[
            rank
        ]

        # Cluster ids: each old id goes to the group holding most of its members.
        meta = self.store.meta()
        stored_cluster = [None] * n + linked.clusters.tolist()
        cluster_of_group, next_cluster = carried_cluster_ids(
            labels.tolist(),
            stored_cluster,
            node_ids,
            (int(meta["next_cluster"]) if meta else 0) if write else None,
        )
        moved = {
            node_ids[k]: cluster_of_group[labels[k]]
            for k in range(n, len(node_ids))
            if cluster_of_group[labels[k]] != stored_cluster[k]
        }

        # Per new document: mean score to the rest of its cluster, and its matches.
        size = Counter(labels.tolist())
        joined = set(labels[n:].tolist())  # groups holding a stored document
        same = labels[rows] == labels[node_cols]
        support = np.zeros(n)
        np.add.at(support, rows[same], scores[same])
        inner = same & (node_cols < n)
        np.add.at(support, node_cols[inner], scores[inner])
        match: list[dict[int, float]] = [{} for _ in range(n)]
        if not write:
            sizes = linked.sizes()
            for i, j, s in zip(rows.tolist(), node_cols.tolist(), scores.tolist(), strict=True):
                if j >= n:
                    c = stored_cluster[j]
                    match[i][c] = match[i].get(c, 0.0) + s / sizes[c]
        assignments = []
        for i, doc in enumerate(docs):
            label = int(labels[i])
            group = size[label]
            ranked = tuple(sorted(match[i].items(), key=lambda x: (-x[1], x[0])))
            assignments.append(
                Assignment(
                    doc.id,
                    cluster_of_group[label],
                    "joined" if label in joined else "new",
                    float(support[i] / (group - 1)) if group > 1 else 0.0,
                    group,
                    ranked,
                )
            )
        if not write:
            return _Plan(assignments, Batch())
        jaccard = params.similarity == "jaccard"
        records = [
            StoredDocument(
                id=doc.id,
                cluster=a.cluster,
                published=doc.published,
                title=doc.title,
                source=doc.source,
                snippet=doc.text[:_SNIPPET],
                distinct_terms=int(terms),
                features=f,
                counts=c.astype(np.uint32),
                shingles=shingles if jaccard else None,  # sorted and distinct already
                norm=None if norm is None else float(norm),
                norm_documents=total,
            )
            for doc, a, f, c, terms, shingles, norm in zip(
                docs,
                assignments,
                feats,
                tfs,
                distinct,
                sets,
                [None] * n if new_norms is None else new_norms,
                strict=True,
            )
        ]
        links = [
            (node_ids[i], node_ids[j], s)
            for i, j, s in zip(rows.tolist(), node_cols.tolist(), scores.tolist(), strict=True)
        ] + [
            (linked.ids[a], linked.ids[b], s)
            for a, b, s in zip(
                linked.a[stale].tolist(),
                linked.b[stale].tolist(),
                link_scores[stale].tolist(),
                strict=True,
            )
        ]
        batch = Batch(
            documents=records,
            signatures=sigs,
            moved=moved,
            links=links,
            norms=refreshed,
            documents_after=total,
            df_features=batch_df.features,
            df_counts=batch_df.counts,
            next_cluster=next_cluster,
        )
        return _Plan(assignments, batch)
