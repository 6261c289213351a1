"""Term hashes of texts without a Python object per token: the fast path of analysis.

:class:`TermHasher` gives, for ``(text, title, lang)`` items, the CRC-32 of
every term :func:`dedup.analysis.analyse_terms` gives them, in the same order,
and each item's number of distinct terms. A compiled scan finds the tokens of
normalised text by the rules of :func:`dedup.normalize.tokenize` and looks each
up by a 64-bit hash of its characters in a table of the tokens seen before.
Only a token seen for the first time goes through Python (apostrophes, CJK
bigrams, stopwords, stemming), and news reuses its vocabulary: after a few
hundred articles nearly every token is found in the table.
"""

from __future__ import annotations

import functools
import itertools
import re
import sys
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import numba
import numpy as np

from dedup.normalize import (
    Analyzer,
    normalize_for_tokens,
    refine_tokens,
    token_mark_codes,
    token_text,
)

# Character classes, as bits of one byte per code point.
_WORD = 1  # \w but "_" (token_text turns underscores into spaces)
_DIGIT = 2  # \d
_MARK = 4  # may continue a word: token_mark_codes
_APOSTROPHE, _PERIOD, _COMMA = ord("'"), ord("."), ord(",")
# Distinct tokens of a language, or terms, a hasher holds before it starts
# afresh: a few hundred MB at most, far more than a news vocabulary needs, and
# a bound on what an adversarial one costs.
_MAX_TOKENS = 1 << 21
_ABSENT = np.iinfo(np.int64).min  # a table lookup's answer for a token not in it


@functools.lru_cache(maxsize=1)
def character_classes() -> np.ndarray:
    """The class bits of every code point (uint8), as the token regex sees them."""
    everything = "".join(map(chr, range(sys.maxunicode + 1)))
    classes = np.zeros(sys.maxunicode + 1, dtype=np.uint8)
    for bit, pattern in ((_WORD, r"[^\W_]"), (_DIGIT, r"\d")):
        found = "".join(re.findall(pattern, everything))
        classes[np.frombuffer(found.encode("utf-32-le"), dtype=np.uint32)] |= bit
    classes[list(token_mark_codes())] |= _MARK
    return classes


class _TokenTable:
    """Token hash -> the ids of the terms the token gives, for one language.

    An open-addressing table in two arrays (64-bit keys, 0 meaning empty, and
    values), so the compiled scan can read it. A value ``v >= 0`` is the one
    term id of a token, as nearly every token has; ``v < 0`` points at
    ``-1 - v`` of ``firsts`` and ``counts``: the token's term ids are
    ``term_ids[firsts[-1 - v] : firsts[-1 - v] + counts[-1 - v]]`` (none for a
    stopword, several for a CJK run).
    """

    def __init__(self) -> None:
        self.keys = np.zeros(1 << 12, dtype=np.uint64)
        self.values = np.zeros(1 << 12, dtype=np.int64)
        self.firsts = np.zeros(1 << 6, dtype=np.int64)
        self.counts = np.zeros(1 << 6, dtype=np.int64)
        self.term_ids = np.zeros(1 << 6, dtype=np.int64)
        self.size = 0
        self.others = 0
        self.used_ids = 0

    def add(self, keys: Sequence[int], ids: Sequence[Sequence[int]]) -> list[int]:
        """Store the term ids of the tokens hashed to ``keys``; returns their values."""
        if 2 * (self.size + len(keys)) > self.keys.size:
            old_keys, old_values = self.keys, self.values
            slots = 1 << (2 * (self.size + len(keys))).bit_length()
            self.keys = np.zeros(slots, dtype=np.uint64)
            self.values = np.zeros(slots, dtype=np.int64)
            _insert_all(self.keys, self.values, old_keys, old_values)
        values = [one[0] if len(one) == 1 else self._add_other(one) for one in ids]
        _insert_all(self.keys, self.values, np.array(keys, np.uint64), np.array(values, np.int64))
        self.size += len(keys)
        return values

    def _add_other(self, ids: Sequence[int]) -> int:
        """Store the term ids of a token with none or several; returns its value."""
        self.firsts = _room(self.firsts, self.others + 1)
        self.counts = _room(self.counts, self.others + 1)
        self.term_ids = _room(self.term_ids, self.used_ids + len(ids))
        self.firsts[self.others], self.counts[self.others] = self.used_ids, len(ids)
        self.term_ids[self.used_ids : self.used_ids + len(ids)] = ids
        self.used_ids += len(ids)
        self.others += 1
        return -self.others


def _room(array: np.ndarray, size: int) -> np.ndarray:
    """``array``, or a copy twice as long, so that it holds at least ``size`` values."""
    if size <= array.size:
        return array
    grown = np.zeros(max(size, 2 * array.size), dtype=array.dtype)
    grown[: array.size] = array
    return grown


class TermHasher:
    """CRC-32 term hashes of texts, equal to hashing :meth:`Analyzer.terms`' terms.

    Parameters
    ----------
    lang : str or None
        Language of every text; ``None`` takes each item's, or detects it.
    stem, stopwords : bool
        As for :class:`dedup.normalize.Analyzer`.

    Notes
    -----
    A pass over a text's code points finds and hashes its tokens, O(length),
    in compiled code. A 64-bit hash identifies a token: two tokens sharing one
    (odds about 1 in 10^7 for a million distinct tokens) would share terms.
    Tables grow with the vocabulary and start afresh, between batches, past
    about two million tokens or terms, which changes nothing but speed. Not
    thread-safe; pickles empty.
    """

    def __init__(self, lang: str | None = None, *, stem: bool = True, stopwords: bool = True):
        self.lang = lang
        self.stem = stem
        self.stopwords = stopwords
        self._analyzer = Analyzer(lang, stem=stem, stopwords=stopwords)
        self._tables: dict[str | None, _TokenTable] = {}
        self._term_index: dict[str, int] = {}
        self._term_hashes = np.zeros(1 << 12, dtype=np.uint32)

    def __getstate__(self) -> dict[str, Any]:
        return {"lang": self.lang, "stem": self.stem, "stopwords": self.stopwords}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["lang"], stem=state["stem"], stopwords=state["stopwords"])

    def batch(
        self, items: Sequence[tuple[str, str | None, str | None]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Term hashes of ``(text, title, lang)`` items: the title's terms, then the text's.

        Returns
        -------
        units : ndarray of uint32
            Every term's CRC-32, item after item.
        owner : ndarray of int64
            The item each term is from.
        distinct : ndarray of int64
            Distinct terms per item.
        """
        if len(self._term_index) >= _MAX_TOKENS or any(
            table.size >= _MAX_TOKENS for table in self._tables.values()
        ):
            self.__init__(self.lang, stem=self.stem, stopwords=self.stopwords)  # start afresh
        ids = []
        for text, title, doc_lang in items:
            # As analyse_terms resolves it: the run's, the item's, or the text's language.
            lang = self.lang or doc_lang or self._analyzer.language(text)
            parts = [self._term_ids(title, lang)] if title else []
            ids.append(np.concatenate([*parts, self._term_ids(text, lang)]))
        lengths = np.array([i.size for i in ids], dtype=np.int64)
        every = np.concatenate([np.empty(0, np.int64), *ids])
        distinct = _distinct_runs(every, lengths, len(self._term_index))
        return self._term_hashes[every], np.repeat(np.arange(len(ids)), lengths), distinct

    def _term_ids(self, text: str, lang: str | None) -> np.ndarray:
        code = self._analyzer.code_for(text, lang)
        normalized = normalize_for_tokens(text, code)
        matched = token_text(normalized, code)
        table = self._table(code)
        codes = np.frombuffer(matched.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        values, missing, keys, starts, ends = _scan(
            codes, character_classes(), table.keys, table.values
        )
        if missing.size:
            self._add_new_tokens(table, code, matched, values, missing, keys, starts, ends)
        return _expand(values, table.firsts, table.counts, table.term_ids)

    def _add_new_tokens(self, table, code, matched, values, missing, keys, starts, ends) -> None:
        """Resolve the tokens of a text that the table lacks, add them, and fill in their values.

        All of a text's new tokens at once: one call of the analyser, one insertion.
        """
        positions: dict[int, list[int]] = {}  # a token's key -> where it occurs
        for k, key in zip(missing.tolist(), keys[missing].tolist(), strict=True):
            positions.setdefault(key, []).append(k)
        tokens = [matched[starts[ks[0]] : ends[ks[0]]] for ks in positions.values()]
        pieces = [refine_tokens([token], token, code) for token in tokens]
        terms = iter(self._analyzer.term_lookup([p for ps in pieces for p in ps], code))
        ids = [self._term_ids_of(filter(None, itertools.islice(terms, len(ps)))) for ps in pieces]
        for ks, value in zip(positions.values(), table.add(list(positions), ids), strict=True):
            values[ks] = value

    def _table(self, code: str | None) -> _TokenTable:
        table = self._tables.get(code)
        if table is None:
            table = self._tables[code] = _TokenTable()
        return table

    def _term_ids_of(self, terms: Iterable[str]) -> list[int]:
        ids = []
        for term in terms:
            found = self._term_index.get(term)
            if found is None:
                found = self._term_index[term] = len(self._term_index)
                self._term_hashes = _room(self._term_hashes, found + 1)
                self._term_hashes[found] = zlib.crc32(term.encode("utf-8"))
            ids.append(found)
        return ids


@numba.njit(cache=True, nogil=True)
def _hash_span(codes, start, end):  # pragma: no cover - compiled
    # FNV-1a over code points, then a 64-bit finaliser; 0 marks an empty slot.
    h = np.uint64(0xCBF29CE484222325)
    for p in range(start, end):
        h = (h ^ np.uint64(codes[p])) * np.uint64(0x100000001B3)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    return h if h != 0 else np.uint64(1)


@numba.njit(cache=True, nogil=True)
def _lookup(keys, values, key):  # pragma: no cover - compiled
    mask = np.uint64(keys.size - 1)
    slot = key & mask
    while keys[slot] != 0:
        if keys[slot] == key:
            return values[slot]
        slot = (slot + np.uint64(1)) & mask
    return _ABSENT


@numba.njit(cache=True, nogil=True)
def _insert(keys, values, key, value):  # pragma: no cover - compiled
    mask = np.uint64(keys.size - 1)
    slot = key & mask
    while keys[slot] != 0:
        slot = (slot + np.uint64(1)) & mask
    keys[slot] = key
    values[slot] = value


@numba.njit(cache=True, nogil=True)
def _insert_all(keys, values, old_keys, old_values):  # pragma: no cover - compiled
    for slot in range(old_keys.size):
        if old_keys[slot] != 0:
            _insert(keys, values, old_keys[slot], old_values[slot])


@numba.njit(cache=True, nogil=True)
def _digits_end(codes, classes, p):  # pragma: no cover - compiled
    while p < codes.size and classes[codes[p]] & _DIGIT:
        p += 1
    return p


@numba.njit(cache=True, nogil=True)
def _word_end(codes, classes, p):  # pragma: no cover - compiled
    while p < codes.size and classes[codes[p]] & (_WORD | _MARK):
        p += 1
    return p


@numba.njit(cache=True, nogil=True)
def _scan(codes, classes, keys, values):  # pragma: no cover - compiled
    """Each token's table value, which tokens are not in the table, and their hashes and spans.

    Tokens by the token regex, ``(?:\\d+(?:[.,]\\d+)+|W)(?:'W)*`` with
    ``W = \\w[\\w marks]*``, matched left to right as ``re.findall`` does: the
    number alternative wins whenever it matches at all.
    """
    n = codes.size
    found = np.empty(n, np.int64)
    hashes = np.empty(n, np.uint64)
    starts = np.empty(n, np.int64)
    ends = np.empty(n, np.int64)
    missing = np.empty(n, np.int64)
    count = absent = 0
    i = 0
    while i < n:
        if not classes[codes[i]] & _WORD:
            i += 1
            continue
        end = -1
        if classes[codes[i]] & _DIGIT:
            j = _digits_end(codes, classes, i)
            while (
                j + 1 < n
                and (codes[j] == _PERIOD or codes[j] == _COMMA)
                and classes[codes[j + 1]] & _DIGIT
            ):
                j = _digits_end(codes, classes, j + 1)
                end = j
        if end < 0:
            end = _word_end(codes, classes, i + 1)
        while end + 1 < n and codes[end] == _APOSTROPHE and classes[codes[end + 1]] & _WORD:
            end = _word_end(codes, classes, end + 2)
        key = _hash_span(codes, i, end)
        found[count] = _lookup(keys, values, key)
        hashes[count], starts[count], ends[count] = key, i, end
        if found[count] == _ABSENT:
            missing[absent] = count
            absent += 1
        count += 1
        i = end
    return found[:count], missing[:absent], hashes[:count], starts[:count], ends[:count]


@numba.njit(cache=True, nogil=True)
def _expand(values, firsts, counts, term_ids):  # pragma: no cover - compiled
    total = 0
    for v in values:
        total += 1 if v >= 0 else counts[-1 - v]
    out = np.empty(total, np.int64)
    at = 0
    for v in values:
        if v >= 0:
            out[at] = v
            at += 1
            continue
        for p in range(firsts[-1 - v], firsts[-1 - v] + counts[-1 - v]):
            out[at] = term_ids[p]
            at += 1
    return out


@numba.njit(cache=True, nogil=True)
def _distinct_runs(ids, lengths, id_count):  # pragma: no cover - compiled
    # A stamp per id, the run it was last seen in: one pass, no sort.
    seen = np.full(id_count, -1, np.int64)
    distinct = np.zeros(lengths.size, np.int64)
    at = 0
    for run in range(lengths.size):
        for _ in range(lengths[run]):
            if seen[ids[at]] != run:
                seen[ids[at]] = run
                distinct[run] += 1
            at += 1
    return distinct
