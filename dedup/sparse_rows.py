"""Sparse TF-IDF rows filled in compiled code, and the sorted-hash lookups they rest on.

:func:`weighted_rows` turns documents' features and counts into L2-normalised,
weighted CSR rows (:mod:`dedup.vectors` decides the IDF and the columns);
:func:`reference_weighted_rows` is the plain numpy version the tests hold it
to, bit for bit. :class:`SortedHashes` finds hashes in a sorted table of
millions through a directory of their top bits.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
from scipy import sparse

from dedup.threads import call_in_threads, runs_of_cells

# Cells (document, feature) per block of :func:`weighted_rows`: bounds its temporaries
# to a few hundred MB.
_BLOCK_CELLS = 1 << 22
# Cells of a block below which one thread fills all its rows.
_MIN_THREAD_CELLS = 1 << 16
# Bits of the filter of columns' top bits (see weighted_rows): about 32 a column, 2**26 at most.
_FILTER_BITS_PER_COLUMN_LOG2 = 5
_FILTER_MAX_BITS_LOG2 = 26


def weighted_rows(
    features: Sequence[np.ndarray],
    counts: Sequence[np.ndarray],
    columns: np.ndarray,
    idf: np.ndarray,
    weights: np.ndarray | None,
    kept: np.ndarray | None,
    unlisted_idf: float | None,
    jobs: int = 1,
    norms: np.ndarray | None = None,
    norms_out: np.ndarray | None = None,
) -> sparse.csr_matrix:
    """CSR rows of the documents' TF-IDF values, over the ``kept`` columns (a mask) or all.

    ``columns`` are sorted features, ``idf`` gives each one's IDF. They hold
    every feature of the documents, or, with ``unlisted_idf``, all but some
    that all have that IDF and are never columns: they count in the norms
    only. With ``norms`` (each row's L2 norm, as ``norms_out`` gave it
    once), rows are divided by those and the features ``columns`` lacks are
    simply left out: an index scores a stored document against a batch over
    the batch's features only. ``norms_out``, if given, receives the norm
    each row was divided by. Documents go in blocks of about
    ``_BLOCK_CELLS`` cells, so the temporaries stay small whatever the
    batch; within a block, ``jobs`` threads fill runs of documents.

    Notes
    -----
    One compiled pass per document (:func:`_fill_rows`) looks each cell up
    in ``columns`` and writes its value; :func:`reference_weighted_rows` is
    the numpy version it must equal bit for bit.
    """
    n = len(features)
    sizes = np.fromiter((f.size for f in features), dtype=np.int64, count=n)
    search = SortedHashes.of(columns)
    width, renumbered = _renumbered(columns, kept)
    row_weights = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    given = np.empty(0) if norms is None else np.asarray(norms, dtype=np.float64)
    used = np.empty(n) if norms_out is None else norms_out
    column_filter, filter_shift = np.empty(0, np.uint64), 0
    if norms is not None:
        unlisted_idf = 0.0  # look every cell up; those not found add nothing
        # A stored document meets a batch's columns in a few of its features:
        # a bitmap of the columns' top bits turns most others away with one
        # read instead of a search of the directory and the table.
        column_filter, filter_shift = _top_bits_filter(search.table)
    # Room for every cell, trimmed at the end: pages past the kept cells are
    # never written, so they never take memory, and nothing is copied. Values
    # are computed in float64 and kept in float32: a million documents' matrix
    # is gigabytes, and seven digits are more than a score needs.
    data = np.empty(int(sizes.sum()), dtype=np.float32)
    indices = np.empty(data.size, dtype=renumbered.dtype)
    lengths = np.zeros(n, dtype=np.int64)
    filled = 0
    for start, stop in _blocks(sizes):
        flat = np.concatenate(features[start:stop]).astype(np.uint32, copy=False)
        # uint32, as the store keeps them: a hundred thousand stored rows'
        # counts are not copied again to widen them.
        tf = np.concatenate(counts[start:stop]).astype(np.uint32, copy=False)
        starts = np.r_[0, np.cumsum(sizes[start:stop])]
        # Sublinear tf for each count, taken from a table: the same values as
        # ``1 + np.log(tf)`` cell by cell, with one logarithm per distinct count.
        tf_weight = 1.0 + np.log(np.arange(1, int(tf.max(initial=0)) + 1, dtype=np.float64))
        runs = runs_of_cells(starts, jobs, _MIN_THREAD_CELLS)
        fill = functools.partial(
            _fill_rows,
            starts,
            flat,
            tf,
            search.table,
            search.directory,
            search.shift,
            idf,
            renumbered,
            tf_weight,
            row_weights[start:stop],
            given[start:stop],
            column_filter,
            filter_shift,
            -1.0 if unlisted_idf is None else float(unlisted_idf),
            np.empty(flat.size, dtype=np.float64),
            data[filled:],
            indices[filled:],
            lengths[start:stop],
            used[start:stop],
        )
        written = call_in_threads(fill, runs)
        # Each run wrote its kept cells from its first cell on: close the gaps.
        base = filled
        for (first, _), count in zip(runs, written, strict=True):
            at = base + int(starts[first])
            data[filled : filled + count] = data[at : at + count]
            indices[filled : filled + count] = indices[at : at + count]
            filled += count
    data.resize(filled, refcheck=False)
    indices.resize(filled, refcheck=False)
    indptr = np.r_[0, np.cumsum(lengths)]
    return sparse.csr_matrix((data, indices, indptr), shape=(n, width))


def _renumbered(columns: np.ndarray, kept: np.ndarray | None) -> tuple[int, np.ndarray]:
    """The matrix width, and the matrix column of each of ``columns`` (-1 for one left out)."""
    width = columns.size if kept is None else int(np.count_nonzero(kept))
    index_type = np.int32 if width < 2**31 else np.int64
    if kept is None:
        return width, np.arange(columns.size, dtype=index_type)
    return width, np.where(kept, np.cumsum(kept) - 1, -1).astype(index_type)


@numba.njit(cache=True, nogil=True)
def _fill_rows(  # pragma: no cover - compiled
    starts,
    flat,
    tf,
    table,
    directory,
    shift,
    idf,
    renumbered,
    tf_weight,
    row_weights,
    norms,
    column_filter,
    filter_shift,
    unlisted_idf,
    scratch,
    data,
    indices,
    lengths,
    used_norms,
    first,
    last,
):
    """Rows ``first .. last - 1`` of a block (cells ``starts[d] .. starts[d + 1] - 1``
    of ``flat`` and ``tf``): each kept cell's value, normalised and weighted, and
    its column, written from ``data[starts[first]]`` on. Returns how many.
    ``unlisted_idf < 0`` means every feature is in ``table``; an empty ``norms``,
    that each row's norm is its own; ``used_norms[d]`` receives it. A value
    whose top bits (past ``filter_shift``) ``column_filter`` lacks (a
    :func:`_top_bits_filter` of ``table``, or empty for none) is not in
    ``table``, and is not searched for."""
    size = table.size
    out = starts[first]
    begin = out
    for d in range(first, last):
        total = 0.0
        for c in range(starts[d], starts[d + 1]):
            value = flat[c]
            if column_filter.size and not _may_hold(column_filter, filter_shift, value):
                low = size
            else:
                low = _position(table, directory, shift, value)
            if unlisted_idf < 0.0 or (low < size and table[low] == value):
                cell = tf_weight[tf[c] - 1] * idf[low]
                indices[c] = renumbered[low]
            else:
                cell = tf_weight[tf[c] - 1] * unlisted_idf
                indices[c] = -1
            scratch[c] = cell
            total += cell * cell  # in column order, as the reference's bincount
        norm = norms[d] if norms.size else np.sqrt(total)
        used_norms[d] = norm
        weight = row_weights[d]
        kept = 0
        for c in range(starts[d], starts[d + 1]):
            if indices[c] >= 0:  # read before ``out`` (never past ``c``) overwrites it
                indices[out] = indices[c]
                data[out] = (scratch[c] / norm) * weight
                out += 1
                kept += 1
        lengths[d] = kept
    return out - begin


def reference_weighted_rows(
    features: Sequence[np.ndarray],
    counts: Sequence[np.ndarray],
    columns: np.ndarray,
    idf: np.ndarray,
    weights: np.ndarray | None,
    kept: np.ndarray | None,
    unlisted_idf: float | None,
    norms: np.ndarray | None = None,
) -> sparse.csr_matrix:
    """The plain numpy version of :func:`weighted_rows`, which the tests hold it to."""
    if norms is not None:
        unlisted_idf = 0.0
    n = len(features)
    sizes = np.fromiter((f.size for f in features), dtype=np.int64, count=n)
    width, renumbered = _renumbered(columns, kept)
    if not sizes.sum():
        return sparse.csr_matrix((n, width), dtype=np.float32)
    rows = np.repeat(np.arange(n), sizes)
    flat = np.concatenate(features).astype(np.uint32)
    position = np.searchsorted(columns, flat)
    listed = np.ones(flat.size, dtype=bool)
    if unlisted_idf is not None:
        listed = np.zeros(flat.size, dtype=bool)
        if columns.size:
            listed = columns[np.minimum(position, columns.size - 1)] == flat
    cell_idf = np.full(flat.size, -1.0 if unlisted_idf is None else unlisted_idf)
    cell_idf[listed] = idf[position[listed]]
    column = np.full(flat.size, -1, dtype=renumbered.dtype)
    column[listed] = renumbered[position[listed]]
    values = (1.0 + np.log(np.concatenate(counts).astype(np.float64))) * cell_idf
    # Each row sums its squares in column order.
    if norms is None:
        values /= np.sqrt(np.bincount(rows, weights=values**2, minlength=n))[rows]
    else:
        values /= np.asarray(norms, dtype=np.float64)[rows]
    if weights is not None:
        values *= np.asarray(weights, dtype=np.float64)[rows]
    live = column >= 0
    return sparse.csr_matrix(
        (
            values[live].astype(np.float32),
            column[live],
            np.r_[0, np.cumsum(np.bincount(rows[live], minlength=n))],
        ),
        shape=(n, width),
    )


@dataclass(frozen=True)
class SortedHashes:
    """A sorted uint32 array with a directory for :meth:`positions`.

    A plain binary search into a large table waits on memory at every step,
    one value after the other. Hashes are near uniform, so a directory of
    where each value of their top bits starts in the table narrows a search
    to a few entries; the searches are independent of each other, so the
    processor overlaps their memory reads: several times faster on a batch's
    millions of features, and equal to ``np.searchsorted`` for any table.
    """

    table: np.ndarray
    directory: np.ndarray  # table positions where each top-bits prefix starts, and the end
    shift: int  # 32 minus the bits of the prefix

    @classmethod
    def of(cls, table: np.ndarray) -> SortedHashes:
        """Index a sorted array of hashes (cast to uint32)."""
        table = np.asarray(table, dtype=np.uint32)
        bits = min(24, max(0, int(table.size).bit_length() - 1))  # about one entry per prefix
        directory = np.empty((1 << bits) + 1, dtype=np.int64)
        _prefix_starts(table, 32 - bits, directory)
        return cls(table, directory, 32 - bits)

    def positions(self, values: np.ndarray) -> np.ndarray:
        """``np.searchsorted(self.table, values)``, as int64."""
        values = np.asarray(values, dtype=np.uint32)
        out = np.empty(values.size, dtype=np.int64)
        _directed_search(self.table, self.directory, self.shift, values, out)
        return out

    def lookup(self, values: np.ndarray, found: np.ndarray) -> np.ndarray:
        """``found[k]`` where ``values[i]`` is table entry ``k``, else 0; as int64.

        One pass: each value is searched and read while its table entry is
        still in cache, instead of a search, a gather to compare and a
        gather to read, each of the table at random.
        """
        values = np.asarray(values, dtype=np.uint32)
        out = np.empty(values.size, dtype=np.int64)
        _directed_lookup(self.table, self.directory, self.shift, found, values, out)
        return out


@numba.njit(cache=True, nogil=True)
def _prefix_starts(table, shift, directory):  # pragma: no cover - compiled
    """``directory[p]``: where the values whose top bits are ``p`` start in the sorted
    ``table``; the last entry is its size. One pass, no temporary the size of the table."""
    prefix = 0
    for i in range(table.size):
        top = np.int64(table[i]) >> shift
        while prefix <= top:
            directory[prefix] = i
            prefix += 1
    for p in range(prefix, directory.size):
        directory[p] = table.size


@numba.njit(cache=True, nogil=True)
def _directed_search(table, directory, shift, values, out):  # pragma: no cover - compiled
    for i in range(values.size):
        out[i] = _position(table, directory, shift, values[i])


@numba.njit(cache=True, nogil=True)
def _directed_lookup(table, directory, shift, found, values, out):  # pragma: no cover - compiled
    for i in range(values.size):
        at = _position(table, directory, shift, values[i])
        out[i] = found[at] if at < table.size and table[at] == values[i] else 0


@numba.njit(cache=True, nogil=True, inline="always")
def _position(table, directory, shift, value):  # pragma: no cover - compiled
    """Where ``value`` goes in ``table``: a binary search within its prefix's run."""
    bucket = np.int64(value) >> shift
    low, high = directory[bucket], directory[bucket + 1]
    while low < high:
        middle = (low + high) >> 1
        if table[middle] < value:
            low = middle + 1
        else:
            high = middle
    return low


def _top_bits_filter(table: np.ndarray) -> tuple[np.ndarray, int]:
    """A bitmap of the top bits of the hashes of ``table`` (uint32), and the shift
    that takes a hash to them: a power of two of bits, about 32 a hash (2**26
    at most, 8 MB), packed in uint64 words."""
    bits_log2 = int(table.size).bit_length() + _FILTER_BITS_PER_COLUMN_LOG2
    bits_log2 = max(6, min(_FILTER_MAX_BITS_LOG2, bits_log2))
    bitmap = np.zeros(1 << (bits_log2 - 6), dtype=np.uint64)
    _set_top_bits(table, 32 - bits_log2, bitmap)
    return bitmap, 32 - bits_log2


@numba.njit(cache=True, nogil=True)
def _set_top_bits(table, shift, bitmap):  # pragma: no cover - compiled
    for value in table:
        top = np.int64(value) >> shift
        bitmap[top >> 6] |= np.uint64(1) << np.uint64(top & 63)


@numba.njit(cache=True, nogil=True, inline="always")
def _may_hold(bitmap, shift, value):  # pragma: no cover - compiled
    """Whether the bitmap has ``value``'s top bits (always, for a value in its table)."""
    top = np.int64(value) >> shift
    return (bitmap[top >> 6] >> np.uint64(top & 63)) & np.uint64(1) != 0


def _blocks(sizes: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` runs of documents of about ``_BLOCK_CELLS`` cells each, covering all."""
    # A block ends where the running count of cells passes a multiple of the size.
    cuts = np.flatnonzero(np.diff(np.cumsum(sizes) // _BLOCK_CELLS)) + 1
    bounds = [0, *cuts.tolist(), sizes.size]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
