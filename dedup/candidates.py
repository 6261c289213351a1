"""Candidate pairs: documents whose MinHash signatures collide in an LSH band.

The banding maths is in plain functions (:func:`collision_probability`,
:func:`lsh_params`) that can be checked without an index; :func:`candidate_pairs`
puts the signatures into datasketch's ``MinHashLSH`` with those bands and rows
and reads back every pair that shares a bucket.
"""

from __future__ import annotations

import numpy as np
from datasketch import MinHashLSH

from dedup.errors import ConfigError
from dedup.signature import EMPTY, to_minhash


def collision_probability(similarity: np.ndarray | float, bands: int, rows: int):
    """Probability that two sets of Jaccard ``similarity`` share at least one band."""
    return 1.0 - (1.0 - np.asarray(similarity, dtype=np.float64) ** rows) ** bands


def lsh_params(
    threshold: float, num_perm: int, false_positive_weight: float = 0.5
) -> tuple[int, int]:
    """Bands (2 or more) and rows, ``bands * rows <= num_perm``, that best split at ``threshold``.

    Minimises the weighted sum of the false-positive area (collisions below
    the threshold) and the false-negative area (misses above it) under the
    S-curve, the criterion datasketch uses.

    Parameters
    ----------
    threshold : float
        Jaccard similarity in (0, 1) at which pairs should start to collide.
    num_perm : int
        Signature length.
    false_positive_weight : float
        In [0, 1]; the false-negative weight is its complement. Story
        clustering wants recall, so callers may lower it.
    """
    if num_perm < 2:
        raise ConfigError("LSH needs at least 2 permutations")
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"LSH threshold must be between 0 and 1, got {threshold}")
    if not 0.0 <= false_positive_weight <= 1.0:
        raise ConfigError("false_positive_weight must be between 0 and 1")
    below = np.linspace(0.0, threshold, 201)
    above = np.linspace(threshold, 1.0, 201)
    best: tuple[float, int, int] | None = None
    # datasketch's MinHashLSH refuses a single band, so the search starts at two.
    for bands in range(2, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            false_pos = np.trapezoid(collision_probability(below, bands, rows), below)
            false_neg = np.trapezoid(1.0 - collision_probability(above, bands, rows), above)
            error = false_positive_weight * false_pos + (1 - false_positive_weight) * false_neg
            if best is None or error < best[0] - 1e-15:
                best = (error, bands, rows)
    assert best is not None
    return best[1], best[2]


def candidate_pairs(
    signatures: np.ndarray, bands: int, rows: int, seed: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of documents that shares an LSH bucket.

    Parameters
    ----------
    signatures : ndarray of uint32, shape (n, num_perm)
        From :func:`dedup.signature.signatures`.
    bands, rows : int
        LSH banding, ``bands * rows <= num_perm``.
    seed : int
        The signatures' seed (datasketch records it on each MinHash).

    Returns
    -------
    (ndarray, ndarray) of int64
        Row and column indices with ``i < j``, sorted, each pair once. Documents
        with an empty signature (no shingles) are never candidates.

    Notes
    -----
    Inserting and querying cost O(n * bands); the output is as large as the
    buckets' pairs, quadratic only within a bucket.
    """
    n, num_perm = signatures.shape
    if bands * rows > num_perm or bands < 2 or rows < 1:
        raise ConfigError(
            f"{bands} bands of {rows} rows do not fit {num_perm} permutations (need 2+ bands)"
        )
    index = MinHashLSH(num_perm=num_perm, params=(bands, rows))
    live = [i for i in range(n) if not np.all(signatures[i] == EMPTY)]
    minhashes = {i: to_minhash(signatures[i], seed) for i in live}
    with index.insertion_session() as session:
        for i in live:
            session.insert(i, minhashes[i], check_duplication=False)
    left: list[int] = []
    right: list[int] = []
    for i in live:
        for j in index.query(minhashes[i]):
            if i < j:
                left.append(i)
                right.append(j)
    pairs = np.array([left, right], dtype=np.int64).reshape(2, -1)
    order = np.lexsort((pairs[1], pairs[0]))
    return pairs[0][order], pairs[1][order]
