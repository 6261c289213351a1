"""Shingles: the overlapping pieces of a text whose sets MinHash compares.

Shingles are represented by stable 32-bit hashes, computed with numpy over
whole arrays: each distinct term is hashed once (CRC-32, the same in every
process and on every machine, unlike Python's salted ``hash``), and word
n-grams are combined from term hashes without building n-gram strings.
:func:`shingles` builds the readable strings; it is the reference the tests
check the hashes against, and the evidence ``dedup compare`` shows.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Sequence

import numba
import numpy as np

from dedup.errors import ConfigError

SHINGLE_KINDS = ("word", "char")

# Odd 32-bit multipliers (from MurmurHash3 and xxHash) that position each term
# within an n-gram, so "a b" and "b a" hash apart.
_POSITION_MULTIPLIERS = np.array(
    [
        0x9E3779B1,
        0x85EBCA77,
        0xC2B2AE3D,
        0x27D4EB2F,
        0x165667B1,
        0xCC9E2D51,
        0x1B873593,
        0xE6546B64,
    ],
    dtype=np.uint32,
)
MAX_SHINGLE_SIZE = len(_POSITION_MULTIPLIERS)


def check_shingle_spec(kind: str, size: int) -> None:
    """Raise :class:`ConfigError` unless ``kind`` and ``size`` describe shingles we build."""
    if kind not in SHINGLE_KINDS:
        raise ConfigError(f"shingle kind must be one of {', '.join(SHINGLE_KINDS)}, got {kind!r}")
    if not isinstance(size, int) or not 1 <= size <= MAX_SHINGLE_SIZE:
        raise ConfigError(f"shingle size must be an integer from 1 to {MAX_SHINGLE_SIZE}")


def fmix32(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser: a bijection that spreads every input bit."""
    h = values.astype(np.uint32, copy=True)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


def term_hashes(terms: Sequence[str]) -> np.ndarray:
    """CRC-32 of each term's UTF-8 bytes, hashing each distinct term once."""
    table = dict.fromkeys(terms)
    for term in table:
        table[term] = zlib.crc32(term.encode("utf-8"))
    # A C-level map into a list, not a generator into fromiter: the lookup per
    # term is most of the cost on a big batch.
    return np.array(list(map(table.__getitem__, terms)), dtype=np.uint32)


def combine_hashes(units: np.ndarray, size: int) -> np.ndarray:
    """Hash every run of ``size`` consecutive unit hashes into one value, in order."""
    if units.size < size:
        # A text shorter than one shingle is one shingle of everything it has.
        size = units.size
        if size == 0:
            return units
    count = units.size - size + 1
    combined = np.zeros(count, dtype=np.uint32)
    for offset in range(size):
        combined += units[offset : offset + count] * _POSITION_MULTIPLIERS[offset]
    return fmix32(combined)


def shingle_hashes(terms: Sequence[str], kind: str = "word", size: int = 1) -> np.ndarray:
    """Sorted distinct 32-bit hashes of the shingles of ``terms``.

    Parameters
    ----------
    terms : sequence of str
        The analysed terms of one text, in order.
    kind : {"word", "char"}
        Word n-grams over terms, or character n-grams over the terms joined
        by single spaces.
    size : int
        n, from 1 to 8.

    Returns
    -------
    ndarray of uint32
        Empty when there are no terms.
    """
    check_shingle_spec(kind, size)
    if kind == "word":
        units = term_hashes(terms)
    else:
        text = " ".join(terms)
        units = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    return unique_sorted(combine_hashes(units, size))


def unique_sorted(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` of a 1-d array, by one sort.

    Asked for the values alone, numpy 2's ``np.unique`` takes a hash-based path
    that is 50 to 90 times slower on arrays of hashes like these.
    """
    return _first_of_runs(np.sort(values))


def _first_of_runs(ordered: np.ndarray) -> np.ndarray:
    """The distinct values of a sorted array (a new array)."""
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if ordered.size else ordered.copy()


def distinct_hashes(values: np.ndarray, *, overwrite: bool = False) -> np.ndarray:
    """``np.unique`` of uint32 hashes, sorted by radix: three passes of 11 bits.

    For the tens of millions of (document, feature) cells whose distinct
    features an index batch needs as columns, about three times faster than
    ``np.sort``. It needs a scratch array the size of ``values`` (and a copy,
    unless ``overwrite`` lets it reorder ``values``), so the batch run's
    hundreds of millions of cells keep to :func:`unique_sorted`.
    """
    values = np.asarray(values, dtype=np.uint32)
    return _first_of_runs(
        _radix_sorted(values if overwrite else values.copy(), np.empty_like(values))
    )


@numba.njit(cache=True, nogil=True)
def _radix_sorted(values, scratch):  # pragma: no cover - compiled
    """``values`` sorted, in whichever of the two buffers the last pass wrote."""
    digits = 1 << 11
    counts = np.zeros((3, digits), np.int64)
    for v in values:
        x = np.int64(v)
        counts[0, x & (digits - 1)] += 1
        counts[1, (x >> 11) & (digits - 1)] += 1
        counts[2, x >> 22] += 1
    for p in range(3):  # counts to start positions
        total = 0
        for d in range(digits):
            total, counts[p, d] = total + counts[p, d], total
    source, target = values, scratch
    for p in range(3):  # stable scatters, least significant digit first
        for v in source:
            d = (np.int64(v) >> (11 * p)) & (digits - 1)
            target[counts[p, d]] = v
            counts[p, d] += 1
        source, target = target, source
    return source


def shingle_hash_sets(
    term_lists: Sequence[Sequence[str]], kind: str = "word", size: int = 1
) -> list[np.ndarray]:
    """:func:`shingle_hashes` of many term lists at once, with equal results."""
    check_shingle_spec(kind, size)
    if kind != "word":
        return [shingle_hashes(terms, kind, size) for terms in term_lists]
    units, owner = batch_term_hashes(term_lists)
    return word_shingle_sets(units, owner, len(term_lists), size)


def word_shingle_sets(
    units: np.ndarray, owner: np.ndarray, count: int, size: int
) -> list[np.ndarray]:
    """Per owner ``0 .. count - 1``, the word-shingle hash set of its run of term hashes.

    ``units`` are the term hashes of a batch of documents, ``owner`` the
    document of each (non-decreasing). Word shingles of the whole batch are
    hashed in a few numpy passes and one sort for every set, which costs far
    less than a call of :func:`shingle_hashes` per document, with equal results.
    """
    hashes, groups = grouped_ngram_hashes(units, owner, size)
    sets, _ = counted_by_owner(hashes, groups, count)
    lengths = np.bincount(owner, minlength=count)
    ends = np.cumsum(lengths)
    for k in np.flatnonzero((lengths > 0) & (lengths < size)).tolist():
        # One shingle of everything a document shorter than a shingle has.
        sets[k] = combine_hashes(units[ends[k] - lengths[k] : ends[k]], size)
    return sets


def batch_term_hashes(term_lists: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`term_hashes` of every term of a batch, and the index of the list each is from."""
    lengths = np.fromiter((len(t) for t in term_lists), dtype=np.int64, count=len(term_lists))
    units = term_hashes(list(itertools.chain.from_iterable(term_lists)))
    return units, np.repeat(np.arange(len(term_lists)), lengths)


def grouped_ngram_hashes(
    units: np.ndarray, groups: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`combine_hashes` of the runs of ``size`` units that lie within one group.

    ``groups`` gives each unit's group (document), non-decreasing; returns the
    hashes in order and the group of each. A group shorter than ``size`` has none.
    """
    if units.size < size:
        return units[:0], groups[:0]
    hashes = combine_hashes(units, size)
    within = groups[: hashes.size] == groups[size - 1 :]
    return hashes[within], groups[: hashes.size][within]


def run_lengths(ordered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of a sorted array and the length (int64) of each one's run.

    ``np.unique(ordered, return_counts=True)`` in two compiled passes that
    allocate only the result: at a million documents the input is hundreds of
    millions of values, and numpy's masks and positions would be gigabytes.
    """
    return _run_lengths(ordered)


@numba.njit(cache=True, nogil=True)
def _run_lengths(ordered):  # pragma: no cover - compiled
    distinct = 0
    for k in range(ordered.size):
        if k == 0 or ordered[k] != ordered[k - 1]:
            distinct += 1
    values = np.empty(distinct, ordered.dtype)
    lengths = np.zeros(distinct, np.int64)
    at = -1
    for k in range(ordered.size):
        if k == 0 or ordered[k] != ordered[k - 1]:
            at += 1
            values[at] = ordered[k]
        lengths[at] += 1
    return values, lengths


def counted_by_owner(
    values: np.ndarray, owner: np.ndarray, count: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per owner ``0 .. count - 1``, its sorted distinct ``values`` (uint32) and their counts.

    One sort of ``(owner << 32 | value)`` keys for the whole batch. Counts come
    in the smallest unsigned type that holds the largest (uint8 nearly always):
    a batch of a million documents keeps hundreds of millions of them.
    """
    cells, counts = run_lengths(
        np.sort(owner.astype(np.uint64) << np.uint64(32) | values.astype(np.uint64))
    )
    owners = (cells >> np.uint64(32)).astype(np.int64)
    return (
        split_by_owner((cells & np.uint64(0xFFFFFFFF)).astype(np.uint32), owners, count),
        split_by_owner(_compact(counts), owners, count),
    )


def _compact(counts: np.ndarray) -> np.ndarray:
    """Non-negative ``counts`` in the smallest unsigned integer type that holds them all."""
    return counts.astype(np.min_scalar_type(int(counts.max())) if counts.size else np.uint8)


def split_by_owner(values: np.ndarray, owner: np.ndarray, count: int) -> list[np.ndarray]:
    """Split ``values``, grouped by their non-decreasing ``owner``, into ``count`` arrays."""
    if count == 0:
        return []
    return np.split(values, np.cumsum(np.bincount(owner, minlength=count))[:-1])


def shingles(terms: Sequence[str], kind: str = "word", size: int = 1) -> list[str]:
    """Readable shingles in text order (with repeats), for tests and explanations."""
    check_shingle_spec(kind, size)
    units: Sequence[str] = list(terms) if kind == "word" else " ".join(terms)
    glue = " " if kind == "word" else ""
    n = min(size, len(units))
    if n == 0:
        return []
    return [glue.join(units[i : i + n]) for i in range(len(units) - n + 1)]


def shingle_hash_of(shingle: Sequence[str] | str, kind: str = "word") -> int:
    """Hash of one shingle (its terms, or its characters) as :func:`shingle_hashes` computes it.

    The plain per-shingle loop the vectorised path must agree with.
    """
    if kind == "word":
        units = [zlib.crc32(t.encode("utf-8")) for t in shingle]
    else:
        units = [ord(c) for c in shingle]
    total = 0
    for offset, unit in enumerate(units):
        total = (total + unit * int(_POSITION_MULTIPLIERS[offset])) & 0xFFFFFFFF
    return int(fmix32(np.array([total], dtype=np.uint32))[0])
