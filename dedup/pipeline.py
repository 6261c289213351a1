"""The public library: :func:`cluster` and :class:`StoryClusterer`.

Stages, each in its own module: normalise and analyse text in worker
processes (``normalize``, ``analysis``), shingle (``shingle``), vectorise
(``vectors``), sign (``signature``), propose candidate pairs (``candidates``),
score them as they come (``verify``) and link them into clusters
(``linkage``). This module wires them together; it reads no files and prints
nothing (callers may pass a ``progress`` callback).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from dedup import collector
from dedup.analysis import (
    Progress,
    analyse_documents,
    default_jobs,
    needs_shingles,
    needs_words,
)
from dedup.candidates import candidate_blocks, lsh_params
from dedup.errors import ConfigError, DuplicateIdError
from dedup.linkage import average_linkage, single_linkage
from dedup.params import Params, resolve_params
from dedup.records import Cluster, ClusterResult, Document, parse_published
from dedup.signature import signatures
from dedup.vectors import (
    fitted_tfidf_rows,
    length_weights,
    top_features,
    word_columns,
)
from dedup.verify import (
    date_decays,
    publication_days,
    reach_days,
    score_ceilings,
    story_scores,
)

DocumentLike = Document | str | Mapping[str, Any]

LINK_FLOOR = 0.25  # fraction of the threshold under which a link is not worth keeping
# Candidate pairs scored at once: enough that a document meets most of its
# partners in one pass (its row is laid out once per pass), few enough to
# keep the pass to a few hundred MB.
_SCORE_BATCH = 1 << 22
_PREVIEW_CHARS = 200  # text a result keeps per document with keep_text=False


def as_documents(documents: Iterable[DocumentLike]) -> list[Document]:
    """:func:`iter_as_documents` into a list."""
    return list(iter_as_documents(documents))


def iter_as_documents(documents: Iterable[DocumentLike]) -> Iterator[Document]:
    """Coerce strings, mappings and :class:`Document` s into documents with unique ids, lazily.

    A string becomes a document whose id is its position; a mapping needs a
    ``text`` key and may carry ``id``, ``title``, ``source``, ``published``
    (a ``datetime``), ``url`` and ``lang``; other keys go to ``extra``.

    Raises
    ------
    ConfigError
        For an item of another type, or a mapping without text.
    DuplicateIdError
        When two documents share an id.
    """
    known = ("title", "source", "published", "url", "lang")
    seen: set[str] = set()
    for position, item in enumerate(documents):
        if isinstance(item, Document):
            doc = item
        elif isinstance(item, str):
            doc = Document(id=str(position), text=item)
        elif isinstance(item, Mapping):
            if not isinstance(item.get("text"), str):
                raise ConfigError(f"document {position} has no 'text' string")
            doc_id = item.get("id")
            try:
                published = parse_published(item.get("published"))
            except ValueError as err:
                raise ConfigError(f"document {position}: {err}") from None
            extra = {k: v for k, v in item.items() if k not in ("id", "text", *known)}
            doc = Document(
                id=str(position) if doc_id is None else str(doc_id),
                text=item["text"],
                published=published,
                extra=extra,
                **{k: item.get(k) for k in known if k != "published"},
            )
        else:
            raise ConfigError(f"document {position} is a {type(item).__name__}, not a str or dict")
        if doc.id in seen:
            raise DuplicateIdError(f"duplicate id {doc.id!r}", doc.origin)
        seen.add(doc.id)
        yield doc


@dataclass(frozen=True)
class _Prepared:
    """What the stages need of a batch of documents, computed once."""

    hash_sets: list[np.ndarray]
    features: list[np.ndarray]  # sorted distinct TF-IDF feature hashes (empty for Jaccard)
    counts: list[np.ndarray]  # occurrences of each feature
    distinct_terms: np.ndarray
    published: np.ndarray  # days since 1970 (NaN: unknown), as verify.publication_days
    words: np.ndarray  # sorted hashes of the batch's single words, where keywords need them

    def taken(self, order: np.ndarray) -> _Prepared:
        """The same documents' analyses in ``order``."""
        return _Prepared(
            hash_sets=[self.hash_sets[k] for k in order],
            features=[self.features[k] for k in order],
            counts=[self.counts[k] for k in order],
            distinct_terms=self.distinct_terms[order],
            published=self.published[order],
            words=self.words,
        )


def _prepare(
    documents: Iterable[DocumentLike],
    params: Params,
    progress: Progress | None,
    stats: dict[str, float],
    jobs: int = 1,
    keep_text: bool = True,
    shingles: bool = True,
) -> tuple[list[Document], _Prepared]:
    """Analyse ``documents`` as they are read; returns them as documents (see :func:`run`)."""
    start = time.perf_counter()
    docs: list[Document] = []

    def items() -> Iterator[tuple[str, str | None, str | None]]:
        for doc in iter_as_documents(documents):
            docs.append(doc if keep_text else _without_text(doc))
            yield doc.text, doc.title, doc.lang

    total = len(documents) if isinstance(documents, Sized) else 0
    analysed, words = analyse_documents(items(), params, jobs, progress, total, shingles)
    stats["seconds_analyse"] = time.perf_counter() - start
    return docs, _Prepared(
        hash_sets=[a.shingles for a in analysed],
        features=[a.features for a in analysed],
        counts=[a.counts for a in analysed],
        distinct_terms=np.array([a.distinct_terms for a in analysed], dtype=np.int64),
        published=publication_days([d.published for d in docs]),
        words=words,
    )


def _without_text(doc: Document) -> Document:
    """``doc`` with what reports show: its text cut to a preview, no ``extra`` fields."""
    return dataclasses.replace(doc, text=doc.text[:_PREVIEW_CHARS], extra={})


def _release_freed_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc; elsewhere a no-op).

    A million documents' analyses are freed once vectorised, but glibc keeps
    the heap they lived in: without this, gigabytes stay in the peak of the
    later stages.
    """
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _document_matrix(
    prepared: _Prepared, params: Params, jobs: int = 1
) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Unweighted TF-IDF rows (IDF fitted on the batch) over features two or more documents share.

    Returns the matrix and the feature hash of each of its columns. Most
    bigrams are in one document only: leaving them out halves the matrix and
    every pair's work without changing a score. ``jobs`` threads fill the rows.
    """
    return fitted_tfidf_rows(prepared.features, prepared.counts, 2, jobs)


def _signatures(
    prepared: _Prepared,
    params: Params,
    matrix: sparse.csr_matrix | None,
    columns: np.ndarray | None,
    jobs: int = 1,
) -> np.ndarray:
    """MinHash signatures of each document's keywords, or of its shingles without keywords.

    The keyword sets are freed on return: a million documents' need not wait for the linkage.
    """
    sets = prepared.hash_sets
    if params.keywords and matrix is not None:
        eligible = word_columns(columns, prepared.words) if needs_words(params) else None
        sets = top_features(matrix, columns, params.keywords, eligible, jobs)
    return signatures(sets, params.num_perm, params.seed, jobs)


def _score(
    prepared: _Prepared,
    rows: np.ndarray,
    cols: np.ndarray,
    params: Params,
    matrix: sparse.csr_matrix | None = None,
    jobs: int = 1,
    decays: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Score pairs; returns the final ``score`` and the parts it was built from.

    ``matrix`` is the batch's document matrix and ``decays`` the pairs' date
    decays when the caller already has them; ``jobs`` threads compute cosines.
    """
    if params.similarity == "cosine" and matrix is None:
        matrix, _ = _document_matrix(prepared, params, jobs)
    return story_scores(
        matrix if params.similarity == "cosine" else None,
        _length_weights(prepared, params),
        prepared.published,
        rows,
        cols,
        params.time_window_days,
        params.time_scale_days,
        prepared.hash_sets,
        jobs,
        decays,
    )


def _length_weights(prepared: _Prepared, params: Params) -> np.ndarray | None:
    """Per-document length weights of a cosine run; None for Jaccard, which has none."""
    if params.similarity != "cosine":
        return None
    return length_weights(prepared.distinct_terms, params.length_reference)


def _scored_links(
    prepared: _Prepared,
    sigs: np.ndarray,
    params: Params,
    matrix: sparse.csr_matrix | None,
    jobs: int,
    stats: dict[str, Any],
    progress: Progress | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate pairs scored as LSH gives them; the links worth keeping, sorted by pair.

    A link is kept when it scores at least ``LINK_FLOOR`` times the threshold:
    links far below it barely move a cluster's mean, yet they are most of the
    candidates, so the linkage does half the work and the candidates are
    never all in memory at once (a million documents have billions). Seconds
    spent waiting for pairs and scoring them go to ``stats`` as the
    ``candidates`` and ``verify`` stages; progress is reported by bands.
    """
    bands, rows_per_band = lsh_params(params.lsh_threshold, params.num_perm)
    floor = params.threshold * LINK_FLOOR
    weights = _length_weights(prepared, params)
    days = reach = None
    if params.time_scale_days > 0:
        # Bucket mates dated beyond reach are skipped: such pairs never link.
        days = prepared.published
        reach = reach_days(
            np.ones(len(days)) if weights is None else weights,
            floor,
            params.time_window_days,
            params.time_scale_days,
        )
    blocks = candidate_blocks(
        sigs,
        bands,
        rows_per_band,
        params.max_bucket,
        min(params.min_bands, bands),
        jobs,
        days,
        reach,
    )
    pending: list[tuple[np.ndarray, np.ndarray]] = []
    kept = [(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))]
    seconds = {"candidates": 0.0, "verify": 0.0}
    candidates = scored = 0

    def score_pending() -> int:
        """Score the pending pairs, keep their links; returns how many reached a score."""
        start = time.perf_counter()
        rows = np.concatenate([r for r, _ in pending])
        cols = np.concatenate([c for _, c in pending])
        pending.clear()
        # Pairs whose length and date factors alone are under the floor cannot
        # become links: skip their cosines. The links kept are the same.
        decays = date_decays(
            prepared.published, rows, cols, params.time_window_days, params.time_scale_days
        )
        reachable = score_ceilings(weights, decays, rows, cols) >= floor
        rows, cols = rows[reachable], cols[reachable]
        scores = _score(prepared, rows, cols, params, matrix, jobs, decays[reachable])["score"]
        link = scores >= floor
        kept.append((rows[link], cols[link], scores[link]))
        seconds["verify"] += time.perf_counter() - start
        return rows.size

    if progress:
        progress("candidates", 0, bands)
    waited = time.perf_counter()
    for band, block in enumerate(blocks, 1):
        seconds["candidates"] += time.perf_counter() - waited
        pending.append(block)
        candidates += block[0].size
        if sum(r.size for r, _ in pending) >= _SCORE_BATCH:
            scored += score_pending()
        if progress:
            progress("candidates", band, bands)
        waited = time.perf_counter()
    if pending:
        scored += score_pending()
    rows, cols, scores = (np.concatenate(part) for part in zip(*kept, strict=True))
    order = np.lexsort((cols, rows))
    stats.update(
        lsh_bands=bands,
        lsh_rows=rows_per_band,
        candidate_pairs=candidates,
        scored_pairs=scored,
        seconds_candidates=seconds["candidates"],
        seconds_verify=seconds["verify"],
    )
    return rows[order], cols[order], scores[order]


def _build_result(
    docs: Sequence[Document],
    labels: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    scores: np.ndarray,
    empty: np.ndarray,
    params: Params,
    stats: dict[str, Any],
) -> ClusterResult:
    n = len(docs)
    same = labels[rows] == labels[cols]
    support = np.zeros(n)
    np.add.at(support, rows[same], scores[same])
    np.add.at(support, cols[same], scores[same])
    sizes = np.bincount(labels, minlength=1)
    mean_sim = np.where(sizes[labels] > 1, support / np.maximum(sizes[labels] - 1, 1), 1.0)
    members_of: dict[int, list[int]] = {}
    for i, label in enumerate(labels.tolist()):
        members_of.setdefault(label, []).append(i)
    # Largest first, ties by first member: stable and independent of label numbering.
    ordered = sorted(members_of.values(), key=lambda m: (-len(m), m[0]))
    final = np.empty(n, dtype=np.int64)
    clusters = []
    for label, members in enumerate(ordered):
        final[members] = label
        sims = tuple(round(float(mean_sim[i]), 6) for i in members)
        # The most similar member; ties go to the smallest id, whatever the input order.
        best = max(sims)
        representative = min(
            (m for m, sim in zip(members, sims, strict=True) if sim == best),
            key=lambda m: docs[m].id,
        )
        clusters.append(Cluster(label, tuple(members), sims, representative))
    flags = tuple(("empty",) if e else () for e in empty.tolist())
    return ClusterResult(tuple(docs), final, tuple(clusters), flags, params.as_dict(), stats)


@contextlib.contextmanager
def _stage(
    name: str, *, stats: dict[str, Any], progress: Progress | None, total: int
) -> Iterator[None]:
    """Time a stage into ``stats["seconds_<name>"]`` and report its start and end."""
    if progress:
        progress(name, 0, total)
    start = time.perf_counter()
    yield
    stats[f"seconds_{name}"] = time.perf_counter() - start
    if progress:
        progress(name, total, total)


def run(
    documents: Iterable[DocumentLike],
    params: Params,
    progress: Progress | None = None,
    jobs: int | None = None,
    keep_text: bool = True,
) -> ClusterResult:
    """Cluster ``documents`` with resolved ``params`` (see :func:`cluster`).

    ``jobs`` worker processes analyse the text (default: :func:`default_jobs`);
    the result does not depend on it. ``documents`` is read once, as the
    workers take it; with ``keep_text=False`` the result's documents keep a
    200-character preview of their text and no ``extra`` fields. Python's
    cyclic garbage collector is paused during the run (see :mod:`dedup.collector`).
    """
    jobs = default_jobs() if jobs is None else jobs
    if jobs < 1:
        raise ConfigError("jobs must be at least 1")
    with collector.paused():  # a million records would be rescanned, again and again
        return _run(documents, params, progress, jobs, keep_text)


def _run(
    documents: Iterable[DocumentLike],
    params: Params,
    progress: Progress | None,
    jobs: int,
    keep_text: bool,
) -> ClusterResult:
    stats: dict[str, Any] = {}
    # A million documents' shingle sets are a gigabyte: build them only if read.
    docs, prepared = _prepare(
        documents, params, progress, stats, jobs, keep_text, needs_shingles(params)
    )
    n = stats["documents"] = len(docs)
    # Work in id order so that labels do not depend on the order of the input.
    order = np.array(sorted(range(n), key=lambda i: docs[i].id), dtype=np.int64)
    prepared = prepared.taken(order)

    stage = functools.partial(_stage, stats=stats, progress=progress, total=n)
    matrix = columns = None
    if params.similarity == "cosine":
        with stage("vectorise"):
            matrix, columns = _document_matrix(prepared, params, jobs)
        # In the matrix now: free them.
        prepared = dataclasses.replace(prepared, features=[], counts=[])
        _release_freed_memory()
    with stage("sign"):
        sigs = _signatures(prepared, params, matrix, columns, jobs)
        del columns  # past signing, the columns are not read again
    rows, cols, scores = _scored_links(prepared, sigs, params, matrix, jobs, stats, progress)
    stats["links"] = int(np.count_nonzero(scores >= params.threshold))
    with stage("cluster"):
        if params.linkage == "average":
            labels = average_linkage(n, rows, cols, scores, params.threshold, jobs)
        else:
            labels = single_linkage(n, rows, cols, scores, params.threshold)

    # Back from id order to input order.
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.arange(n)
    empty = prepared.distinct_terms[inverse] == 0  # no terms: no shingles, no features
    return _build_result(
        docs, labels[inverse], order[rows], order[cols], scores, empty, params, stats
    )


def cluster(
    documents: Iterable[DocumentLike],
    preset: str = "stories",
    *,
    progress: Progress | None = None,
    jobs: int | None = None,
    keep_text: bool = True,
    **options: Any,
) -> ClusterResult:
    """Group documents that report the same story.

    Parameters
    ----------
    documents : iterable of Document, str or dict
        The articles; see :func:`iter_as_documents`. Read once, lazily: a
        generator (such as :func:`dedup.iter_documents`) is never all in memory.
    preset : {"stories", "duplicates"}
        Starting parameters; ``options`` override any of them (see
        :class:`dedup.params.Params`).
    progress : callable, optional
        Called as ``progress(stage, done, total)``.
    jobs : int, optional
        Worker processes for text analysis; default all available cores.
        Results are identical for any number.
    keep_text : bool
        False keeps, of each document, what the reports show: its metadata
        and a 200-character preview of its text, without ``extra`` fields.
        A million news articles then take about a tenth of the memory.

    Returns
    -------
    ClusterResult
        Every input document exactly once, in input order.

    Notes
    -----
    Python's cyclic garbage collector is paused while the documents are
    clustered and re-enabled after if it was enabled (:mod:`dedup.collector`):
    it rescanned a large run's millions of records again and again. Reference
    counting frees memory as usual meanwhile.

    Examples
    --------
    >>> result = cluster(["Quake hits Izmir", "Izmir quake kills two", "Rates held"])
    >>> len(result)
    3
    """
    return run(documents, resolve_params(preset, **options), progress, jobs, keep_text)


class StoryClusterer:
    """scikit-learn-style wrapper around :func:`cluster`.

    Parameters
    ----------
    preset : str
        ``"stories"`` or ``"duplicates"``.
    **options
        Any :class:`dedup.params.Params` field.

    Attributes
    ----------
    labels_ : ndarray of int
        Cluster label per document, after :meth:`fit`.
    result_ : ClusterResult
        The full result of the last :meth:`fit`.

    Notes
    -----
    Cost is dominated by analysis (linear in text size), LSH (O(n * bands))
    and linkage over candidate links (about O(m log m) for m candidate pairs);
    nothing is quadratic in the number of documents unless the LSH buckets are.
    """

    def __init__(self, preset: str = "stories", **options: Any):
        self.preset = preset
        self.options = options

    def fit(self, documents: Iterable[DocumentLike], y: Any = None) -> StoryClusterer:
        """Cluster ``documents``; ``y`` is ignored (scikit-learn convention)."""
        params = resolve_params(self.preset, **self.options)
        self.result_ = run(documents, params)
        self.labels_ = self.result_.labels
        return self

    def fit_predict(self, documents: Iterable[DocumentLike], y: Any = None) -> np.ndarray:
        return self.fit(documents).labels_
