"""MinHash signatures as one numpy array, compatible with datasketch.

A signature row is exactly what ``datasketch.MinHash(num_perm, seed,
scheme="affine32", hashfunc=<identity>)`` holds after ``update`` with every
shingle hash: the same permutations (drawn from ``numpy.random.RandomState(seed)``),
the same MurmurHash3 pre-mix and the same ``a * h + b mod 2**32``. The fast path
here is a compiled loop over every document's shingles; :func:`reference_signature`
goes through datasketch itself, and the tests prove the two equal.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
from datasketch import MinHash

from dedup.errors import ConfigError
from dedup.threads import call_in_threads, runs_of_cells

EMPTY = np.uint32(0xFFFFFFFF)
# Shingles gathered into one array for the kernel at a time: a bounded copy
# (256 KB), not one of every document's.
_CHUNK_SHINGLES = 1 << 16
# Fewer shingles than this are signed on one thread.
_MIN_THREAD_SHINGLES = 1 << 14


def signed(signatures: np.ndarray) -> np.ndarray:
    """Which rows of ``signatures`` sign something: an empty set's row is all ``EMPTY``
    and falls in no bucket."""
    return ~np.all(signatures == EMPTY, axis=1)


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The affine permutations ``(a, b)`` datasketch's "affine32" scheme draws for ``seed``."""
    if not isinstance(num_perm, int) or num_perm < 1:
        raise ConfigError("num_perm must be a positive integer")
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint64).astype(np.uint32)
    return a, b


def signatures(
    hash_sets: Sequence[np.ndarray], num_perm: int = 128, seed: int = 1, jobs: int = 1
) -> np.ndarray:
    """MinHash signatures of many shingle-hash sets at once.

    Parameters
    ----------
    hash_sets : sequence of ndarray of uint32
        Per document, its shingle hashes (duplicates are harmless).
    num_perm : int
        Permutations, the signature length.
    seed : int
        Seed of the permutations; equal seeds give equal signatures.
    jobs : int
        Threads, each signing a share of the chunks; the result does not
        depend on it.

    Returns
    -------
    ndarray of uint32, shape (n_documents, num_perm)
        An empty set's row is all ``0xFFFFFFFF``, like an empty datasketch MinHash.

    Notes
    -----
    O(total shingles x num_perm) multiply-adds and minimums in a compiled
    loop, which keeps a document's pre-mixed shingles in cache while it goes
    through the permutations; ten times as fast as the same arithmetic in
    numpy arrays. Shingles are gathered a chunk of documents at a time, so
    memory stays bounded.
    """
    a, b = permutations(num_perm, seed)
    out = np.full((len(hash_sets), num_perm), EMPTY, dtype=np.uint32)
    sizes = np.fromiter((h.size for h in hash_sets), dtype=np.int64, count=len(hash_sets))
    offsets = np.r_[0, np.cumsum(sizes)]  # where each document's shingles begin

    def sign(first: int, last: int) -> None:  # the kernel releases the GIL
        start = first
        while start < last:
            # A chunk: its first document, then those after it that hold fewer than
            # _CHUNK_SHINGLES shingles between them.
            later = offsets[start + 2 : last + 1]
            stop = start + 1 + int(np.searchsorted(later, offsets[start + 1] + _CHUNK_SHINGLES))
            flat = np.concatenate([h.astype(np.uint32, copy=False) for h in hash_sets[start:stop]])
            _sign_rows(flat, offsets[start : stop + 1] - offsets[start], a, b, out[start:stop])
            start = stop

    # Contiguous runs of documents with about equal shares of the shingles, one a thread.
    call_in_threads(sign, runs_of_cells(offsets, jobs, _MIN_THREAD_SHINGLES))
    return out


@numba.njit(cache=True, nogil=True)
def _sign_rows(flat, starts, a, b, out):  # pragma: no cover - compiled
    """Row ``d`` of ``out`` takes the signature of ``flat[starts[d] : starts[d + 1]]``."""
    mixed = np.empty(flat.size, np.uint32)
    # MurmurHash3's finaliser, as shingle.fmix32, but here: with the mixed
    # hashes an argument (fmix32's array) the loops below ran six times slower.
    for k in range(flat.size):
        h = np.uint32(flat[k])
        h ^= h >> np.uint32(16)
        h = np.uint32(h * np.uint32(0x85EBCA6B))
        h ^= h >> np.uint32(13)
        h = np.uint32(h * np.uint32(0xC2B2AE35))
        mixed[k] = h ^ (h >> np.uint32(16))
    for d in range(starts.size - 1):
        if starts[d + 1] == starts[d]:
            continue  # an empty set keeps its row of EMPTY
        shingles = mixed[starts[d] : starts[d + 1]]
        for p in range(a.size):
            # Integers widen in numba: truncating gives uint32 arithmetic, mod 2**32.
            low = np.uint32(0xFFFFFFFF)
            for h in shingles:
                low = min(low, np.uint32(a[p] * h + b[p]))
            out[d, p] = low


def reference_signature(hashes: np.ndarray, num_perm: int = 128, seed: int = 1) -> np.ndarray:
    """One signature through datasketch's own ``MinHash.update``, for tests and checks."""
    minhash = MinHash(num_perm=num_perm, seed=seed, scheme="affine32", hashfunc=int)
    for h in hashes.tolist():
        minhash.update(h)
    return minhash.hashvalues.copy()


def to_minhash(signature: np.ndarray, seed: int = 1) -> MinHash:
    """Wrap a signature row as a datasketch ``MinHash`` (for ``MinHashLSH``)."""
    return MinHash(num_perm=signature.size, seed=seed, hashvalues=signature, scheme="affine32")


def estimated_jaccard(first: np.ndarray, second: np.ndarray) -> float:
    """Fraction of equal signature slots: MinHash's estimate of Jaccard similarity."""
    if first.shape != second.shape:
        raise ValueError("signatures of different lengths cannot be compared")
    return float(np.mean(first == second))


def exact_jaccard(first: np.ndarray, second: np.ndarray) -> float:
    """Jaccard similarity of two sorted sets of distinct shingle hashes (0 when both are empty)."""
    union = np.union1d(first, second).size
    if union == 0:
        return 0.0
    return np.intersect1d(first, second, assume_unique=True).size / union
