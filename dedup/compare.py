"""Two documents side by side: :func:`compare` explains a verdict, :func:`score_pairs`
scores many pairs, with the same analysis and scores as :func:`dedup.cluster`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dedup.analysis import analyse_terms
from dedup.normalize import detect_language, names, numbers, shared_names
from dedup.params import resolve_params
from dedup.pipeline import DocumentLike, _document_matrix, _prepare, _score, as_documents
from dedup.records import Document
from dedup.signature import estimated_jaccard, signatures
from dedup.vectors import feature_names
from dedup.verify import pair_jaccards


@dataclass(frozen=True)
class Comparison:
    """Why two documents are, or are not, the same story.

    ``score`` is the similarity clustering uses, ``same_story`` whether it
    reaches the threshold; the rest is evidence, the journalist's first: the
    names (people, places, organisations) and numbers both texts mention and
    how far apart they were published, then the measures and weighted terms.
    """

    score: float
    threshold: float
    same_story: bool
    cosine: float | None
    estimated_jaccard: float
    exact_jaccard: float
    days_apart: float | None
    shared_names: tuple[str, ...]
    shared_numbers: tuple[str, ...]
    shared_terms: tuple[tuple[str, float], ...]
    params: Mapping[str, Any]


def score_pairs(
    pairs: Sequence[tuple[DocumentLike, DocumentLike]], preset: str = "stories", **options: Any
) -> np.ndarray:
    """The clustering similarity of each pair, in [0, 1], with IDF fitted on all the pairs."""
    params = resolve_params(preset, **options)
    docs = _pair_documents(pairs)
    _, prepared = _prepare(docs, params, None, {})
    left = np.arange(0, len(docs), 2, dtype=np.int64)
    return _score(prepared, left, left + 1, params)["score"]


def compare(
    first: DocumentLike, second: DocumentLike, preset: str = "stories", **options: Any
) -> Comparison:
    """Compare two documents and explain the verdict.

    IDF is fitted on the two documents alone; use :func:`score_pairs` to fit
    it on a larger batch.
    """
    params = resolve_params(preset, **options)
    docs = _pair_documents([(first, second)])
    _, prepared = _prepare(docs, params, None, {})
    zero, one = np.array([0]), np.array([1])
    parts = _score(prepared, zero, one, params)
    sigs = signatures(prepared.hash_sets, params.num_perm, params.seed)
    first_doc, second_doc = docs
    # The weighted terms explain any verdict, a Jaccard one too: always build the vectors.
    explained = dataclasses.replace(params, similarity="cosine")
    # A Jaccard run's analysis has no features: only then analyse again for them.
    described = (
        prepared if params.similarity == "cosine" else _prepare(docs, explained, None, {})[1]
    )
    matrix, columns = _document_matrix(described, explained)
    weights = matrix[0].multiply(matrix[1]).toarray().ravel()
    (terms,) = analyse_terms(
        [(first_doc.text, first_doc.title, first_doc.lang)],
        params.lang,
        params.stem,
        params.stopwords,
    )
    term_names = feature_names(terms, params.tfidf_ngrams)
    top = [k for k in np.argsort(-weights, kind="stable")[:10] if weights[k] > 0]
    shared = tuple((term_names[int(columns[k])], round(float(weights[k]), 4)) for k in top)
    gap = float(parts["days_apart"][0])
    lang = params.lang or first_doc.lang or detect_language(first_doc.text)
    texts = [f"{d.title}\n{d.text}" if d.title else d.text for d in docs]
    common_numbers = set(numbers(texts[1]))
    return Comparison(
        score=float(parts["score"][0]),
        threshold=params.threshold,
        same_story=bool(parts["score"][0] >= params.threshold),
        cosine=float(parts["cosine"][0]) if "cosine" in parts else None,
        estimated_jaccard=estimated_jaccard(sigs[0], sigs[1]),
        exact_jaccard=float(pair_jaccards(prepared.hash_sets, zero, one)[0]),
        days_apart=None if np.isnan(gap) else gap,
        shared_names=tuple(
            shared_names(names(texts[0], lang), names(texts[1], second_doc.lang or lang), lang)
        ),
        shared_numbers=tuple(n for n in numbers(texts[0]) if n in common_numbers),
        shared_terms=shared,
        params=params.as_dict(),
    )


def _pair_documents(pairs: Sequence[tuple[DocumentLike, DocumentLike]]) -> list[Document]:
    """Flatten pairs into documents with ids unique across the batch."""
    flat: list[Document] = []
    for k, pair in enumerate(pairs):
        for side, item in zip("ab", pair, strict=True):
            (doc,) = as_documents([item])
            flat.append(dataclasses.replace(doc, id=f"{k}{side}"))
    return flat
