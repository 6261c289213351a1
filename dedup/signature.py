"""MinHash signatures as one numpy array, compatible with datasketch.

A signature row is exactly what ``datasketch.MinHash(num_perm, seed,
scheme="affine32", hashfunc=<identity>)`` holds after ``update`` with every
shingle hash: the same permutations (drawn from ``numpy.random.RandomState(seed)``),
the same MurmurHash3 pre-mix and the same ``a * h + b mod 2**32``. The fast path
here computes every document in one array pass; :func:`reference_signature`
goes through datasketch itself, and the tests prove the two equal.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from datasketch import MinHash

from dedup.errors import ConfigError
from dedup.shingle import fmix32
from dedup.threads import call_in_threads, runs_of_cells

EMPTY = np.uint32(0xFFFFFFFF)
# How many (permutation x shingle) values to compute at once: 4 MB, so that the
# products stay in cache for the minimum; 64x larger chunks ran 9x slower.
_CHUNK_VALUES = 1 << 20
# Fewer shingles than this are signed on one thread.
_MIN_THREAD_VALUES = 1 << 14


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
    O(total shingles x num_perm) arithmetic in numpy, in chunks of documents
    so that memory stays bounded, with ``np.minimum.reduceat`` taking each
    document's minimum in one call.
    """
    a, b = permutations(num_perm, seed)
    out = np.full((len(hash_sets), num_perm), EMPTY, dtype=np.uint32)
    sizes = np.fromiter((h.size for h in hash_sets), dtype=np.int64, count=len(hash_sets))
    per_chunk = max(1, _CHUNK_VALUES // num_perm)
    offsets = np.r_[0, np.cumsum(sizes)]  # where each document's shingles begin

    def sign(first: int, last: int) -> None:  # numpy's arithmetic releases the GIL
        start = first
        while start < last:
            # A chunk: its first document, then those after it that hold fewer than
            # per_chunk shingles between them.
            later = offsets[start + 2 : last + 1]
            stop = start + 1 + int(np.searchsorted(later, offsets[start + 1] + per_chunk))
            _sign_chunk(hash_sets[start:stop], sizes[start:stop], a, b, out[start:stop])
            start = stop

    # Contiguous runs of documents with about equal shares of the shingles, one a thread.
    call_in_threads(sign, runs_of_cells(offsets, jobs, _MIN_THREAD_VALUES))
    return out


def _sign_chunk(hash_sets, sizes: np.ndarray, a: np.ndarray, b: np.ndarray, out: np.ndarray):
    nonempty = np.flatnonzero(sizes)
    if nonempty.size == 0:
        return
    flat = fmix32(np.concatenate([hash_sets[i] for i in nonempty]).astype(np.uint32))
    permuted = a[:, None] * flat[None, :] + b[:, None]  # uint32 arithmetic wraps: mod 2**32
    offsets = np.concatenate(([0], np.cumsum(sizes[nonempty])[:-1]))
    out[nonempty] = np.minimum.reduceat(permuted, offsets, axis=1).T


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
