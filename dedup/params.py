"""Clustering parameters and the two presets.

``stories`` (the default) groups independent reports of one event: TF-IDF
cosine over stemmed words, adjusted for length and dates, with average
linkage. ``duplicates`` groups copies and light rewrites: exact Jaccard over
word 3-shingles at 0.35, single linkage.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dedup.errors import ConfigError
from dedup.shingle import check_shingle_spec

SIMILARITIES = ("cosine", "jaccard")
LINKAGES = ("average", "single")


@dataclass(frozen=True)
class Params:
    """Every knob of a clustering run. Build one with :func:`resolve_params`.

    Attributes
    ----------
    preset : str
        The preset these values started from.
    lang : str or None
        Force one language for every document; ``None`` uses each document's
        ``lang`` or detects it.
    stem, stopwords : bool
        Stem words and drop stopwords of the document's language.
    shingle : {"word", "char"}
        Shingle kind for MinHash.
    shingle_size : int
        Words (or characters) per shingle.
    num_perm : int
        MinHash permutations.
    seed : int
        Seed of the MinHash permutations; results are deterministic for it.
    keywords : int
        With cosine similarity, sign each document's this many highest-weighted
        TF-IDF features instead of its shingles (0 = shingles): pairs are then
        proposed for sharing what is specific to them.
    single_word_keywords : bool
        Pick keywords among single words only, not word n-grams. Two
        documents share a rare bigram by chance far more often than a rare
        word, and more so the larger the batch: n-gram keywords crowd out the
        names and terms of a story as a corpus grows.
    lsh_threshold : float
        Jaccard similarity around which LSH starts proposing pairs.
    max_bucket : int
        An LSH bucket of more documents pairs each only with this many others
        (0 = pair whole buckets), so one very common shingle cannot make the
        candidate pairs quadratic.
    min_bands : int
        Keep candidate pairs that collide in at least this many LSH bands.
    similarity : {"cosine", "jaccard"}
        How candidate pairs are scored: TF-IDF cosine of terms, or exact
        Jaccard of shingles.
    tfidf_ngrams : int
        Longest term n-gram in the TF-IDF vectors (2 adds bigrams, which tell
        events of one topic apart better than single words).
    threshold : float
        Score at which two clusters merge (their mean pairwise score, for
        average linkage).
    linkage : {"average", "single"}
        How links become clusters.
    length_reference : float
        Distinct-term count above which cosine is discounted (0 = off).
    time_window_days, time_scale_days : float
        Pairs dated further apart than the window lose score with this decay
        scale (``time_scale_days`` 0 = ignore dates).
    """

    preset: str = "stories"
    lang: str | None = None
    stem: bool = True
    stopwords: bool = True
    shingle: str = "word"
    shingle_size: int = 1
    num_perm: int = 128
    seed: int = 1
    keywords: int = 40
    single_word_keywords: bool = True
    lsh_threshold: float = 0.01
    max_bucket: int = 200
    min_bands: int = 5
    similarity: str = "cosine"
    tfidf_ngrams: int = 2
    threshold: float = 0.045
    linkage: str = "average"
    length_reference: float = 25.0
    time_window_days: float = 3.0
    time_scale_days: float = 30.0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: Mapping[str, Params] = {
    "stories": Params(),
    "duplicates": Params(
        preset="duplicates",
        stem=False,
        stopwords=False,
        shingle="word",
        shingle_size=3,
        keywords=0,
        min_bands=1,
        # LSH must propose pairs well below the merge threshold, or near-threshold
        # copies are never checked (benchmarks/near_duplicates.py).
        lsh_threshold=0.2,
        similarity="jaccard",
        threshold=0.35,
        linkage="single",
        length_reference=0.0,
        time_scale_days=0.0,
    ),
}

_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(Params)}


def resolve_params(preset: str = "stories", **overrides: Any) -> Params:
    """The preset's parameters with ``overrides`` applied and checked.

    ``None`` values in ``overrides`` mean "keep the preset's value", so a CLI
    can pass every option through.

    Raises
    ------
    ConfigError
        For an unknown preset or option, or a value out of range.
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    unknown = sorted(set(overrides) - set(_FIELD_TYPES) - {"preset"})
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r}")
    changes = {k: v for k, v in overrides.items() if v is not None and k != "preset"}
    params = dataclasses.replace(PRESETS[preset], **changes)
    _validate(params)
    return params


def _validate(p: Params) -> None:
    check_shingle_spec(p.shingle, p.shingle_size)
    if p.similarity not in SIMILARITIES:
        raise ConfigError(f"similarity must be one of {', '.join(SIMILARITIES)}")
    if p.linkage not in LINKAGES:
        raise ConfigError(f"linkage must be one of {', '.join(LINKAGES)}")
    if not isinstance(p.num_perm, int) or not 2 <= p.num_perm <= 4096:
        raise ConfigError("num_perm must be an integer from 2 to 4096")
    if not isinstance(p.seed, int) or not 0 <= p.seed < 2**32:
        raise ConfigError("seed must be an integer from 0 to 2**32 - 1")
    if not isinstance(p.tfidf_ngrams, int) or not 1 <= p.tfidf_ngrams <= 3:
        raise ConfigError("tfidf_ngrams must be 1, 2 or 3")
    if not isinstance(p.keywords, int) or p.keywords < 0:
        raise ConfigError("keywords must be a whole number, 0 to sign shingles")
    if not isinstance(p.single_word_keywords, bool):
        raise ConfigError("single_word_keywords must be true or false")
    if not isinstance(p.max_bucket, int) or p.max_bucket < 0:
        raise ConfigError("max_bucket must be a whole number, 0 for no bound")
    if not isinstance(p.min_bands, int) or p.min_bands < 1:
        raise ConfigError("min_bands must be a positive whole number")
    if not 0.0 < p.lsh_threshold < 1.0:
        raise ConfigError("lsh_threshold must be between 0 and 1 (exclusive)")
    if not 0.0 < p.threshold <= 1.0:
        raise ConfigError("threshold must be in (0, 1]")
    for name in ("length_reference", "time_window_days", "time_scale_days"):
        if getattr(p, name) < 0:
            raise ConfigError(f"{name} must not be negative")
