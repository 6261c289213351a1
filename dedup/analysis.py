"""Text analysis in worker processes: terms, shingle hashes and TF-IDF features of documents.

:func:`hashed_analysis` is the pure function a worker runs on a chunk of
``(text, title, lang)`` items; :func:`analyse_documents` feeds it a stream of
items over a process pool and gathers the results in input order, so a run
gives the same analysis for any number of workers. The pipeline, the index and
the Spark engine all analyse documents through these functions.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, NamedTuple

import numpy as np

from dedup.normalize import Analyzer
from dedup.params import Params
from dedup.shingle import batch_term_hashes, shingle_hash_sets, word_shingle_sets
from dedup.tokens import TermHasher
from dedup.vectors import counted_features

Progress = Callable[[str, int, int], None]
"""Called as ``progress(stage, done, total)`` while a run advances."""

# Documents per worker task: large enough to amortise pickling, small enough
# that every worker gets several tasks and none waits long for the last one.
_ANALYSE_CHUNK = (200, 2000)


class Analysed(NamedTuple):
    """One document as :func:`hashed_analysis` gives it."""

    shingles: np.ndarray  # sorted distinct shingle hashes, uint32
    features: np.ndarray  # sorted distinct TF-IDF feature hashes, uint32 (empty for Jaccard)
    counts: np.ndarray  # occurrences of each feature, unsigned
    distinct_terms: int


class Analysis(NamedTuple):
    """The analyses of a batch, in input order, and the words keywords may be chosen from."""

    documents: list[Analysed]
    words: np.ndarray  # sorted distinct term hashes of the batch; empty unless needs_words


def needs_words(params: Params) -> bool:
    """Whether a run picks keywords among single words, so needs to know which features are."""
    return params.similarity == "cosine" and params.keywords > 0 and params.single_word_keywords


def analyse_terms(
    items: Sequence[tuple[str, str | None, str | None]], lang: str | None, stem: bool, stop: bool
) -> list[list[str]]:
    """Terms of ``(text, title, lang)`` items: a pure function, so workers can run it."""
    analyzer = Analyzer(lang, stem=stem, stopwords=stop)
    terms = []
    for text, title, doc_lang in items:
        code = lang or doc_lang or analyzer.language(text)
        # The headline names the story: its terms count again on top of the body's.
        head = analyzer.terms(title, code) if title else []
        terms.append(head + analyzer.terms(text, code))
    return terms


def hashed_analysis(
    items: Sequence[tuple[str, str | None, str | None]], params: Params, shingles: bool = True
) -> Analysis:
    """Per item, its shingle-hash set, distinct TF-IDF features with counts and distinct terms.

    Runs in the workers, so that hashing is spread over them too. Terms come
    as hashes from :class:`dedup.tokens.TermHasher` (the same as hashing
    :func:`analyse_terms`' terms) but for character shingles, which need the
    terms' text. The hashes of a chunk are built at once, which costs far less
    than a call per document, and each term is hashed once for both shingles
    and features.
    Features come counted, not repeated, so less crosses to the main process.
    ``shingles=False`` leaves the shingle sets empty, for a run that neither
    signs nor scores them (see :func:`needs_shingles`).
    """
    count = len(items)
    if shingles and params.shingle == "char":
        # Character shingles are built from the terms' text: the string path.
        term_lists = analyse_terms(items, params.lang, params.stem, params.stopwords)
        units, owner = batch_term_hashes(term_lists)
        distinct = [len(set(terms)) for terms in term_lists]
        hash_sets = shingle_hash_sets(term_lists, "char", params.shingle_size)
    else:
        hasher = _term_hasher(params.lang, params.stem, params.stopwords)
        units, owner, distinct = hasher.batch(items)
        if shingles:
            hash_sets = word_shingle_sets(units, owner, count, params.shingle_size)
        else:
            hash_sets = [np.empty(0, np.uint32)] * count
    if params.similarity == "cosine":
        features, counts = counted_features(units, owner, count, params.tfidf_ngrams)
    else:
        features = counts = [np.empty(0, np.uint32)] * count
    words = np.unique(units).astype(np.uint32) if needs_words(params) else np.empty(0, np.uint32)
    return Analysis(list(map(Analysed, hash_sets, features, counts, map(int, distinct))), words)


@functools.lru_cache(maxsize=4)
def _term_hasher(lang: str | None, stem: bool, stopwords: bool) -> TermHasher:
    """One hasher per process and setting, whose token tables carry over from chunk to chunk."""
    return TermHasher(lang, stem=stem, stopwords=stopwords)


def needs_shingles(params: Params) -> bool:
    """Whether a clustering run reads shingle sets: to sign them, or to score Jaccard."""
    return params.similarity == "jaccard" or not params.keywords


def analyse_documents(
    items: Iterable[tuple[str, str | None, str | None]],
    params: Params,
    jobs: int = 1,
    progress: Progress | None = None,
    total: int = 0,
    shingles: bool = True,
    pool: ProcessPoolExecutor | None = None,
) -> Analysis:
    """:func:`hashed_analysis` of ``(text, title, lang)`` items, in chunks over ``jobs`` processes.

    ``items`` is read lazily, a few chunks ahead of the workers, so a stream
    of documents is never all in memory at once. The result is the same for
    any ``jobs``; ``progress("analyse", done, total)`` is called as chunks
    finish. ``total``, the number of items where known (0: not known), sizes
    the chunks so that every worker gets several. ``pool`` runs them in
    workers that live on between calls (:class:`AnalysisWorkers`); without
    it, a pool lives for this call.
    """
    total = len(items) if isinstance(items, Sized) else total
    low, high = _ANALYSE_CHUNK
    size = max(low, min(high, -(-total // (4 * jobs)))) if total else high
    chunks = _chunked(iter(items), size)
    head = list(itertools.islice(chunks, 2))  # a pool pays only from two chunks on
    chunks = itertools.chain(head, chunks)
    analyse = functools.partial(_packed_analysis, params=params, shingles=shingles)
    analysed: list[Analysed] = []
    words = [np.empty(0, np.uint32)]
    if progress:
        progress("analyse", 0, total)
    with contextlib.ExitStack() as stack:
        results: Iterable[_Packed] = map(analyse, chunks)
        if jobs > 1 and len(head) > 1:
            # Processes, not threads: analysis is pure Python. Results are taken
            # in chunk order, so they are the same as one process's.
            if pool is None:
                pool = stack.enter_context(_new_pool(jobs))
            results = _in_order(pool, analyse, chunks, 2 * jobs)
        for chunk in results:
            analysed.extend(_unpacked(chunk))
            words.append(chunk.words)
            if progress:
                progress("analyse", len(analysed), total)
    return Analysis(analysed, np.unique(np.concatenate(words)))


class _Packed(NamedTuple):
    """A chunk's analyses as one array per field, which pickles far faster than many."""

    arrays: tuple[np.ndarray, ...]  # shingles, features, counts of every document, end to end
    sizes: np.ndarray  # per field, per document: how many values it has
    distinct_terms: list[int]
    words: np.ndarray


def _packed_analysis(
    items: Sequence[tuple[str, str | None, str | None]], params: Params, shingles: bool
) -> _Packed:
    """:func:`hashed_analysis` of a chunk, packed by the worker that ran it."""
    chunk, words = hashed_analysis(items, params, shingles)  # chunks are never empty
    fields = list(zip(*chunk, strict=True))[:3]
    sizes = np.array([[v.size for v in values] for values in fields], dtype=np.int64)
    arrays = tuple(np.concatenate(values) for values in fields)
    return _Packed(arrays, sizes, [a.distinct_terms for a in chunk], words)


def _unpacked(packed: _Packed) -> list[Analysed]:
    """The analyses of a packed chunk, each array a view into the chunk's array of its field.

    A million documents' small arrays, once freed, leave the C heap too
    fragmented to hand memory back: gigabytes of peak memory. A chunk's few
    large arrays are returned whole when freed.
    """
    fields = []
    for flat, sizes in zip(packed.arrays, packed.sizes, strict=True):
        ends = np.cumsum(sizes).tolist()
        starts = [0, *ends[:-1]]
        fields.append([flat[a:b] for a, b in zip(starts, ends, strict=True)])  # np.split, faster
    return list(map(Analysed, *fields, packed.distinct_terms))


def _chunked(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk


def _in_order(
    pool: ProcessPoolExecutor, func: Callable[[Any], Any], chunks: Iterable[Any], ahead: int
) -> Iterator[Any]:
    """``pool.map(func, chunks)`` that reads at most ``ahead`` chunks before their results."""
    pending: collections.deque[Any] = collections.deque()
    for chunk in chunks:
        pending.append(pool.submit(func, chunk))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


class AnalysisWorkers:
    """Worker processes for :func:`analyse_documents` that live from call to call.

    They start with the first call that has work for them (``jobs > 1`` and
    two chunks or more) and stay until :meth:`close`, so their token tables
    stay warm: an index adding batch after batch analyses each about twice
    as fast. A worker that died (killed, out of memory) breaks the pool: new
    workers analyse that call's items again, once, as analysing has no side
    effect.
    """

    def __init__(self, jobs: int):
        self.jobs = jobs
        self._pool: ProcessPoolExecutor | None = None

    def analyse(
        self,
        items: Sequence[tuple[str, str | None, str | None]],
        params: Params,
        shingles: bool = True,
    ) -> Analysis:
        """:func:`analyse_documents` of ``items`` in these workers."""
        try:
            return self._analyse(items, params, shingles)
        except BrokenProcessPool:
            self.close(wait=False)
        return self._analyse(items, params, shingles)

    def _analyse(
        self, items: Sequence[tuple[str, str | None, str | None]], params: Params, shingles: bool
    ) -> Analysis:
        if self.jobs > 1 and self._pool is None:
            self._pool = _new_pool(self.jobs)  # an object only: no process before a submit
        return analyse_documents(items, params, self.jobs, shingles=shingles, pool=self._pool)

    def close(self, wait: bool = True) -> None:
        """Stop the workers; a later call starts new ones."""
        if self._pool is not None:
            self._pool.shutdown(wait=wait)
            self._pool = None


def _new_pool(jobs: int) -> ProcessPoolExecutor:
    # fork is cheapest where it exists (workers inherit loaded modules);
    # elsewhere fall back to the platform default.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    return ProcessPoolExecutor(jobs, mp_context=context)


def default_jobs() -> int:
    """Worker processes to use by default: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
