"""Tests for dedup.vectors: the numpy TF-IDF against scikit-learn and plain-Python references."""

from __future__ import annotations

import math
import zlib
from collections import Counter
from unittest import mock

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import TfidfVectorizer

import dedup.vectors as vectors_module
from dedup.index_scores import KeptFrequencies
from dedup.shingle import shingle_hash_of, shingle_hashes, term_hashes
from dedup.vectors import (
    DocumentFrequencies,
    counted,
    feature_counts,
    feature_hashes,
    feature_names,
    length_weights,
    rows_over,
    summed_frequencies,
    tfidf_norms,
    tfidf_rows,
)

# Terms are what the analyser emits: non-empty and without spaces.
TERM = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")),
    min_size=1,
    max_size=8,
).filter(lambda t: " " not in t)
# A small vocabulary gives repeats within and across documents.
SMALL_VOCAB = ["kim", "jong", "putin", "kore", "zirve", "İstanbul", "日本", "x"]
TERMS = st.one_of(
    st.lists(st.sampled_from(SMALL_VOCAB), max_size=15),
    st.lists(TERM, max_size=10),
)
DOCUMENTS = st.lists(TERMS, max_size=8)
MAX_N = st.integers(1, 3)
# Raw hashes, including the ends of the uint32 range, with repeats.
HASH = st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 7, 2**31, 2**32 - 1]))
HASH_LISTS = st.lists(st.lists(HASH, max_size=12), max_size=8)

# Matrix values are float32: they match float64 references to about seven digits.
F32 = 1e-6


def as_features(hash_lists) -> list[np.ndarray]:
    return [np.array(h, dtype=np.uint32) for h in hash_lists]


def bags(feature_lists) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per document, its distinct features and their counts: what tfidf_rows takes."""
    pairs = [counted(f) for f in feature_lists]
    return [f for f, _ in pairs], [c for _, c in pairs]


def distinct(feature_lists) -> list[np.ndarray]:
    """Per document, its distinct features: what DocumentFrequencies.count takes."""
    return bags(feature_lists)[0]


@st.composite
def feature_batches(draw) -> list[np.ndarray]:
    """Per document, its feature hashes: from term lists, or raw hashes."""
    if draw(st.booleans()):
        max_n = draw(MAX_N)
        return [feature_hashes(terms, max_n) for terms in draw(DOCUMENTS)]
    return as_features(draw(HASH_LISTS))


def rows_as_dicts(matrix, columns) -> list[dict[int, float]]:
    """Each sparse row as {feature hash: value}, zeros left out."""
    dense = matrix.toarray()
    return [
        {int(h): float(v) for h, v in zip(columns, row, strict=True) if v != 0} for row in dense
    ]


def reference_df(feature_lists) -> Counter:
    return Counter(int(h) for f in feature_lists for h in set(f.tolist()))


def reference_rows(feature_lists, df: Counter, documents: int, weights=None):
    """Plain-Python TF-IDF: sublinear tf, smoothed idf, L2 norm, then the weight."""
    out = []
    for i, features in enumerate(feature_lists):
        tf = Counter(int(h) for h in features)
        row = {
            h: (1 + math.log(c)) * (math.log((1 + documents) / (1 + df.get(h, 0))) + 1)
            for h, c in tf.items()
        }
        norm = math.sqrt(sum(v * v for v in row.values()))
        weight = 1.0 if weights is None else float(weights[i])
        out.append({h: v / norm * weight for h, v in row.items()})
    return out


def assert_rows_close(got: list[dict], expected: list[dict], atol: float = F32) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        # A weight of 0 leaves stored zeros, which rows_as_dicts drops.
        e = {h: v for h, v in e.items() if v != 0}
        assert g.keys() == e.keys()
        for h in g:
            assert g[h] == pytest.approx(e[h], rel=0, abs=atol)


def sklearn_rows(feature_lists) -> tuple[np.ndarray, dict[str, int]]:
    """scikit-learn's TF-IDF of the features as string tokens, and its vocabulary."""
    tokens = [[str(int(h)) for h in f] for f in feature_lists]
    vectorizer = TfidfVectorizer(analyzer=lambda x: x, sublinear_tf=True)
    try:
        matrix = vectorizer.fit_transform(tokens)
    except ValueError:
        # scikit-learn refuses a batch without any token ("empty vocabulary").
        assert not any(tokens)
        return np.zeros((len(tokens), 0)), {}
    return matrix.toarray(), vectorizer.vocabulary_


# --- tfidf_rows ---------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(feature_lists=feature_batches())
def test_tfidf_rows_equal_sklearn(feature_lists):
    matrix, columns = tfidf_rows(
        *bags(feature_lists), DocumentFrequencies.count(distinct(feature_lists))
    )
    expected, vocabulary = sklearn_rows(feature_lists)
    assert matrix.shape == expected.shape
    # scikit-learn orders columns by token string, ours by hash: align by the hash.
    assert sorted(vocabulary) == sorted(str(int(h)) for h in columns)
    order = [vocabulary[str(int(h))] for h in columns]
    np.testing.assert_allclose(matrix.toarray(), expected[:, order], rtol=0, atol=F32)


@settings(max_examples=100, deadline=None)
@given(feature_lists=feature_batches(), other=feature_batches())
def test_tfidf_rows_with_other_frequencies_equal_reference(feature_lists, other):
    # Frequencies of another collection (an index): features it has not seen get df = 0.
    # One fixed feature keeps the frequencies non-empty (see test_empty_frequencies_idf).
    other = [*other, np.array([5], dtype=np.uint32)]
    matrix, columns = tfidf_rows(*bags(feature_lists), DocumentFrequencies.count(distinct(other)))
    expected = reference_rows(feature_lists, reference_df(other), len(other))
    assert_rows_close(rows_as_dicts(matrix, columns), expected)


@settings(max_examples=100, deadline=None)
@given(feature_lists=feature_batches(), stored=feature_batches(), batch=feature_batches())
def test_summed_frequencies_give_the_rows_of_both_tables(feature_lists, stored, batch):
    # An index's stored frequencies plus a batch's: the same rows as the frequencies
    # of both collections counted as one.
    assume(feature_lists)  # the index calls it for one document or more
    tables = tuple(DocumentFrequencies.count(distinct(part)) for part in (stored, batch))
    whole = tables[0].merged(tables[1])
    frequencies = summed_frequencies(feature_lists, tables, len(stored) + len(batch))
    for least in (1, 2):
        got, got_columns = rows_over(*bags(feature_lists), frequencies, least)
        expected, columns = tfidf_rows(*bags(feature_lists), whole, min_documents=least)
        assert got_columns.tolist() == columns.tolist()
        np.testing.assert_array_equal(got.toarray(), expected.toarray())


@settings(max_examples=100, deadline=None)
@given(feature_lists=feature_batches(), batch=feature_batches(), other=feature_batches())
def test_rows_over_a_batch_with_kept_norms_give_the_full_rows_dot_products(
    feature_lists, batch, other
):
    # A stored document's row over a batch's features, divided by its kept norm:
    # bit for bit the full row's values in those columns, so every dot product
    # with the batch's rows is the same.
    assume(feature_lists and batch)
    features, counts = bags(feature_lists)
    everyone = DocumentFrequencies.count(distinct([*feature_lists, *batch, *other]))
    tables = (everyone,)
    total = everyone.documents
    own = summed_frequencies(feature_lists, tables, total)
    divided_by = np.empty(len(features))
    full, full_columns = rows_over(features, counts, own, 2, norms_out=divided_by)
    norms = tfidf_norms(features, counts, own, jobs=2)
    np.testing.assert_array_equal(norms, divided_by)
    over_batch = summed_frequencies(batch, tables, total)
    got, got_columns = rows_over(features, counts, over_batch, 2, norms=norms)
    # The full rows in the batch's columns (zero where a document lacks one).
    want = np.zeros(got.shape, dtype=np.float32)
    present = np.isin(got_columns, full_columns)
    want[:, present] = full.toarray()[:, np.searchsorted(full_columns, got_columns[present])]
    np.testing.assert_array_equal(got.toarray(), want)


@settings(max_examples=100, deadline=None)
@given(feature_lists=feature_batches())
def test_tfidf_columns_are_the_sorted_distinct_features(feature_lists):
    matrix, columns = tfidf_rows(
        *bags(feature_lists), DocumentFrequencies.count(distinct(feature_lists))
    )
    assert columns.dtype == np.uint32
    flat = [int(h) for f in feature_lists for h in f]
    assert columns.tolist() == sorted(set(flat))
    assert matrix.shape == (len(feature_lists), columns.size)
    assert matrix.dtype == np.float32
    # A stored cell for exactly the features each document holds.
    for i, f in enumerate(feature_lists):
        stored = columns[matrix[i].indices]
        assert sorted(stored.tolist()) == sorted(set(f.tolist()))


@settings(max_examples=100, deadline=None)
@given(feature_lists=feature_batches())
def test_tfidf_rows_are_l2_normalised(feature_lists):
    matrix, _ = tfidf_rows(*bags(feature_lists), DocumentFrequencies.count(distinct(feature_lists)))
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    expected = [1.0 if f.size else 0.0 for f in feature_lists]
    np.testing.assert_allclose(norms, expected, rtol=0, atol=F32)
    assert np.all(matrix.data > 0)


@st.composite
def batches_with_weights(draw):
    feature_lists = draw(feature_batches())
    weights = draw(
        st.lists(
            # 0 or a real length weight: a tiny one would underflow float32
            st.just(0.0) | st.floats(1e-3, 2.0),
            min_size=len(feature_lists),
            max_size=len(feature_lists),
        )
    )
    return feature_lists, np.array(weights, dtype=np.float64)


@settings(max_examples=100, deadline=None)
@given(case=batches_with_weights())
def test_weights_multiply_normalised_rows(case):
    feature_lists, weights = case
    frequencies = DocumentFrequencies.count(distinct(feature_lists))
    plain, plain_columns = tfidf_rows(*bags(feature_lists), frequencies)
    weighted, columns = tfidf_rows(*bags(feature_lists), frequencies, weights)
    np.testing.assert_array_equal(columns, plain_columns)
    np.testing.assert_allclose(
        weighted.toarray(), plain.toarray() * weights[:, None], rtol=F32, atol=0
    )
    # Normalised first, then weighted: a row's norm is its weight (0 for an empty document).
    norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
    expected = [w if f.size else 0.0 for f, w in zip(feature_lists, weights, strict=True)]
    np.testing.assert_allclose(norms, expected, rtol=0, atol=F32)
    expected_rows = reference_rows(
        feature_lists, reference_df(feature_lists), len(feature_lists), weights
    )
    assert_rows_close(rows_as_dicts(weighted, columns), expected_rows)


@settings(max_examples=50, deadline=None)
@given(documents=st.lists(TERMS, min_size=2, max_size=6), reference=st.floats(1.0, 20.0))
def test_weighted_dot_product_is_the_length_adjusted_cosine(documents, reference):
    features = [feature_hashes(t, 2) for t in documents]
    frequencies = DocumentFrequencies.count(distinct(features))
    weights = length_weights(np.array([len(set(t)) for t in documents]), reference)
    plain, _ = tfidf_rows(*bags(features), frequencies)
    weighted, _ = tfidf_rows(*bags(features), frequencies, weights)
    cosines = (plain @ plain.T).toarray()
    np.testing.assert_allclose(
        (weighted @ weighted.T).toarray(),
        cosines * np.outer(weights, weights),
        rtol=0,
        atol=F32,
    )


def test_tfidf_is_sublinear_with_smoothed_idf():
    # ["a", "a", "b"] and ["b"]: idf(a) = ln(3 / 2) + 1, idf(b) = 1; tf(a) = 1 + ln 2.
    features = [feature_hashes(["a", "a", "b"], 1), feature_hashes(["b"], 1)]
    matrix, columns = tfidf_rows(
        *bags(features), DocumentFrequencies.count(distinct(features)), np.array([0.5, 2])
    )
    raw_a = (1 + math.log(2)) * (math.log(1.5) + 1)
    norm = math.hypot(raw_a, 1.0)
    got = rows_as_dicts(matrix, columns)
    a, b = zlib.crc32(b"a"), zlib.crc32(b"b")
    assert got[0] == pytest.approx({a: 0.5 * raw_a / norm, b: 0.5 / norm})
    assert got[1] == pytest.approx({b: 2.0})


def test_empty_batches():
    empty = DocumentFrequencies.count(distinct([]))
    matrix, columns = tfidf_rows(*bags([]), empty)
    assert matrix.shape == (0, 0)
    assert columns.size == 0 and columns.dtype == np.uint32
    no_terms = [feature_hashes([], 2), feature_hashes([], 2)]
    matrix, columns = tfidf_rows(
        *bags(no_terms), DocumentFrequencies.count(distinct(no_terms)), np.ones(2)
    )
    assert matrix.shape == (2, 0)
    assert matrix.nnz == 0


# --- feature_hashes and feature_names -----------------------------------------------------


def reference_features(terms: list[str], max_n: int) -> list[int]:
    out = [zlib.crc32(t.encode("utf-8")) for t in terms]
    for n in range(2, max_n + 1):
        out += [shingle_hash_of(terms[i : i + n]) for i in range(len(terms) - n + 1)]
    return out


@settings(max_examples=100, deadline=None)
@given(terms=TERMS, max_n=st.integers(1, 5))
def test_feature_hashes_equal_reference(terms, max_n):
    got = feature_hashes(terms, max_n)
    assert got.dtype == np.uint32
    assert got.tolist() == reference_features(terms, max_n)


@settings(max_examples=100, deadline=None)
@given(terms=TERMS)
def test_feature_hashes_are_term_hashes_then_word_shingles(terms):
    unigrams = feature_hashes(terms, 1)
    np.testing.assert_array_equal(unigrams, term_hashes(terms))
    both = feature_hashes(terms, 2)
    np.testing.assert_array_equal(both[: len(terms)], term_hashes(terms))
    bigrams = both[len(terms) :]
    assert bigrams.size == max(len(terms) - 1, 0)
    if len(terms) >= 2:
        np.testing.assert_array_equal(np.unique(bigrams), shingle_hashes(terms, "word", 2))
        assert bigrams.tolist() == [
            shingle_hash_of([a, b]) for a, b in zip(terms, terms[1:], strict=False)
        ]


def test_fewer_terms_than_n_give_no_ngrams():
    # Unlike shingle_hashes, a short text is not one n-gram of everything it has.
    assert feature_hashes([], 3).size == 0
    assert feature_hashes([], 3).dtype == np.uint32
    assert feature_hashes(["kim"], 3).tolist() == [zlib.crc32(b"kim")]
    got = feature_hashes(["kim", "jong"], 3).tolist()
    assert got == [zlib.crc32(b"kim"), zlib.crc32(b"jong"), shingle_hash_of(["kim", "jong"])]
    assert feature_hashes(["kim", "jong"], 1).tolist() == got[:2]


def test_feature_hashes_keep_repeats_and_order():
    got = feature_hashes(["a", "b", "a", "b"], 2).tolist()
    ab, ba = shingle_hash_of(["a", "b"]), shingle_hash_of(["b", "a"])
    a, b = zlib.crc32(b"a"), zlib.crc32(b"b")
    assert got == [a, b, a, b, ab, ba, ab]
    assert ab != ba


def test_feature_hashes_are_pinned():
    # Unigrams are the plain CRC-32s (not the mixed size-1 word shingle hashes); the bigram
    # is the word shingle hash pinned in test_shingle.py.
    got = feature_hashes(["putin", "kore"], 2).tolist()
    assert got == [786176833, 2923015584, 3629983801]
    assert got[:2] == [zlib.crc32(b"putin"), zlib.crc32(b"kore")]
    assert got[2:] == shingle_hashes(["putin", "kore"], "word", 2).tolist()


@settings(max_examples=100, deadline=None)
@given(terms=TERMS, max_n=st.integers(1, 4))
def test_feature_names_name_every_feature(terms, max_n):
    names = feature_names(terms, max_n)
    hashes = {int(h) for h in feature_hashes(terms, max_n)}
    assert set(names) == hashes
    for key, name in names.items():
        gram = name.split(" ")
        assert 1 <= len(gram) <= max_n
        # The name is a run of the text whose hash is the key.
        assert any(terms[i : i + len(gram)] == gram for i in range(len(terms)))
        expected = zlib.crc32(gram[0].encode("utf-8")) if len(gram) == 1 else shingle_hash_of(gram)
        assert key == expected
    # Looking up the numpy hashes themselves works too.
    for h in feature_hashes(terms, max_n):
        assert h in names


def test_feature_names_example():
    names = feature_names(["kim", "jong", "un", "kim"], 2)
    assert names == {
        zlib.crc32(b"kim"): "kim",
        zlib.crc32(b"jong"): "jong",
        zlib.crc32(b"un"): "un",
        shingle_hash_of(["kim", "jong"]): "kim jong",
        shingle_hash_of(["jong", "un"]): "jong un",
        shingle_hash_of(["un", "kim"]): "un kim",
    }
    assert feature_names([], 2) == {}
    assert feature_names(["kim", "jong"], 1) == {
        zlib.crc32(b"kim"): "kim",
        zlib.crc32(b"jong"): "jong",
    }


# --- DocumentFrequencies ------------------------------------------------------------------


def assert_frequencies_equal(got: DocumentFrequencies, expected: DocumentFrequencies) -> None:
    np.testing.assert_array_equal(got.features, expected.features)
    np.testing.assert_array_equal(got.counts, expected.counts)
    assert got.documents == expected.documents
    assert got.features.dtype == np.uint32
    assert got.counts.dtype == np.int64


@settings(max_examples=100, deadline=None)
@given(feature_lists=feature_batches())
def test_count_counts_each_document_once(feature_lists):
    got = DocumentFrequencies.count(distinct(feature_lists))
    expected = reference_df(feature_lists)
    assert got.features.dtype == np.uint32
    assert got.counts.dtype == np.int64
    assert got.documents == len(feature_lists)
    assert got.features.tolist() == sorted(expected)
    assert got.counts.tolist() == [expected[h] for h in sorted(expected)]


def test_count_example():
    features = [feature_hashes(["a", "a", "b"], 1), feature_hashes(["b"], 1), feature_hashes([], 1)]
    got = DocumentFrequencies.count(distinct(features))
    a, b = zlib.crc32(b"a"), zlib.crc32(b"b")
    assert dict(zip(got.features.tolist(), got.counts.tolist(), strict=True)) == {a: 1, b: 2}
    assert got.documents == 3


@settings(max_examples=100, deadline=None)
@given(feature_lists=feature_batches(), data=st.data())
def test_merged_halves_equal_the_whole(feature_lists, data):
    split = data.draw(st.integers(0, len(feature_lists)))
    left = DocumentFrequencies.count(distinct(feature_lists[:split]))
    right = DocumentFrequencies.count(distinct(feature_lists[split:]))
    whole = DocumentFrequencies.count(distinct(feature_lists))
    assert_frequencies_equal(left.merged(right), whole)
    assert_frequencies_equal(right.merged(left), whole)


@settings(max_examples=100, deadline=None)
@given(batches=st.lists(feature_batches(), max_size=8), data=st.data())
def test_kept_frequencies_sum_to_the_whole_count(batches, data):
    # Batches counted in one by one (some as a whole table): the two tables'
    # counts sum to one count of every document, folded or not.
    kept = KeptFrequencies()
    seen: list[np.ndarray] = []
    for batch in batches:
        seen += distinct(batch)
        whole = DocumentFrequencies.count(seen)
        if data.draw(st.booleans()):
            counted = DocumentFrequencies.count(distinct(batch))
            kept.add(counted.features, counted.counts, counted.documents)
        else:
            kept.reset(whole.features, whole.counts, whole.documents)
        assert kept.documents == len(seen)
        features, counts = kept.whole()
        np.testing.assert_array_equal(features, whole.features)
        np.testing.assert_array_equal(counts, whole.counts)
        probe = np.concatenate([whole.features, np.array([7, 2**32 - 1], np.uint32)])
        summed = sum(table.counts_of(probe) for table in kept.tables())
        np.testing.assert_array_equal(summed, whole.counts_of(probe))


def test_kept_frequencies_fold_the_recent_table_at_an_eighth_of_the_large():
    kept = KeptFrequencies()
    kept.reset(np.arange(80, dtype=np.uint32), np.ones(80, np.int64), 10)
    kept.add(np.array([3, 100], np.uint32), np.array([1, 1], np.int64), 1)
    large, recent = kept.tables()
    assert (large.features.size, recent.features.tolist()) == (80, [3, 100])
    assert recent.counts_of(np.array([3], np.uint32)).tolist() == [1]
    kept.add(np.arange(101, 110, dtype=np.uint32), np.ones(9, np.int64), 1)  # 11 > 80 / 8
    large, recent = kept.tables()
    assert (large.features.size, recent.features.size, kept.documents) == (90, 0, 12)
    assert large.counts_of(np.array([3, 100], np.uint32)).tolist() == [2, 1]


def test_merged_with_empty():
    features = [feature_hashes(["a", "b"], 2), feature_hashes(["b"], 2)]
    counted = DocumentFrequencies.count(distinct(features))
    empty = DocumentFrequencies.count(distinct([]))
    assert_frequencies_equal(counted.merged(empty), counted)
    assert_frequencies_equal(empty.merged(counted), counted)
    assert_frequencies_equal(empty.merged(empty), empty)


@st.composite
def frequencies_and_queries(draw):
    feature_lists = draw(feature_batches())
    seen = sorted({int(h) for f in feature_lists for h in f})
    queries = draw(st.lists(st.one_of(HASH, st.sampled_from(seen)) if seen else HASH))
    return feature_lists, np.array(queries, dtype=np.uint32)


@settings(max_examples=100, deadline=None)
@given(case=frequencies_and_queries())
def test_idf_equals_smoothed_formula(case):
    feature_lists, queries = case
    frequencies = DocumentFrequencies.count(
        distinct(feature_lists + [np.array([7], dtype=np.uint32)])
    )
    df = reference_df(feature_lists + [np.array([7], dtype=np.uint32)])
    n = len(feature_lists) + 1
    got = frequencies.idf(queries)
    assert got.shape == queries.shape
    expected = [math.log((1 + n) / (1 + df.get(int(h), 0))) + 1 for h in queries]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_idf_example():
    a, b, c = (zlib.crc32(t) for t in (b"a", b"b", b"c"))
    frequencies = DocumentFrequencies.count(
        distinct([np.array([a, a, b], np.uint32), np.array([b])])
    )
    got = frequencies.idf(np.array([a, b, c, 0, 2**32 - 1], dtype=np.uint32))
    expected = [math.log(1.5) + 1, 1.0, math.log(3) + 1, math.log(3) + 1, math.log(3) + 1]
    np.testing.assert_allclose(got, expected)
    assert frequencies.idf(np.empty(0, np.uint32)).size == 0
    # Unseen features get the highest IDF.
    assert got[2] == got.max()


def test_empty_frequencies_with_no_queries():
    for frequencies in (
        DocumentFrequencies.count(distinct([])),
        DocumentFrequencies.count(distinct([np.empty(0)])),
    ):
        assert frequencies.features.size == 0
        assert frequencies.idf(np.empty(0, np.uint32)).size == 0


@pytest.mark.parametrize("documents", [0, 2])
def test_empty_frequencies_idf(documents):
    frequencies = DocumentFrequencies.count(distinct([np.empty(0, np.uint32)] * documents))
    queries = feature_hashes(["kim", "jong"], 2)
    np.testing.assert_allclose(frequencies.idf(queries), math.log(1 + documents) + 1)
    matrix, _ = tfidf_rows(*bags([queries]), frequencies)
    assert matrix.shape == (1, 3)


# --- length_weights -----------------------------------------------------------------------


def test_length_weights():
    lengths = np.array([100, 100, 4, 0, 400, 25])
    got = length_weights(lengths, 25.0)
    # (25 / 100) ** 0.25 = sqrt(0.5); short documents are not boosted past 1; 0 counts as 1.
    np.testing.assert_allclose(got, [math.sqrt(0.5), math.sqrt(0.5), 1.0, 1.0, 0.5, 1.0])
    assert got.dtype == np.float64
    # The pair factor w[i] * w[j] is sqrt(reference / sqrt(Li * Lj)) when both are long.
    assert got[0] * got[1] == pytest.approx(0.5)
    assert got[0] * got[4] == pytest.approx(math.sqrt(25 / 200))
    # Per document: a long and a short item are discounted by the long one's weight only.
    assert got[0] * got[2] == pytest.approx(math.sqrt(0.5))
    assert length_weights(lengths, 0.0).tolist() == [1.0] * len(lengths)
    assert length_weights(lengths, -1.0).tolist() == [1.0] * len(lengths)
    assert length_weights(np.empty(0, np.int64), 25.0).size == 0


@settings(max_examples=100, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 5000), min_size=1, max_size=20),
    reference=st.floats(-10.0, 200.0, allow_nan=False, allow_subnormal=False),
)
def test_length_weights_decrease_with_length(lengths, reference):
    counts = np.array(sorted(lengths))
    got = length_weights(counts, reference)
    assert got.shape == counts.shape
    assert np.all(got <= 1.0)
    assert np.all(got > 0.0)
    assert np.all(np.diff(got) <= 0.0)
    if reference <= 0:
        assert got.tolist() == [1.0] * len(counts)
    else:
        expected = [min(1.0, (reference / max(c, 1)) ** 0.25) for c in counts.tolist()]
        np.testing.assert_allclose(got, expected, rtol=1e-15)


@settings(max_examples=100, deadline=None)
@given(
    pair=st.tuples(st.integers(1, 5000), st.integers(1, 5000)),
    reference=st.floats(0.5, 200.0),
)
def test_length_pair_factor(pair, reference):
    w = length_weights(np.array(pair), reference)
    factor = w[0] * w[1]
    assert 0 < factor <= 1.0
    if min(pair) >= reference:
        assert factor == pytest.approx(math.sqrt(reference / math.sqrt(pair[0] * pair[1])))


def test_top_features_picks_the_heaviest_per_row_ties_by_hash():
    from scipy import sparse

    from dedup.vectors import top_features

    matrix = sparse.csr_matrix(
        np.array([[0.1, 0.5, 0.0, 0.3], [0.0, 0.0, 0.0, 0.0], [0.2, 0.2, 0.9, 0.0]])
    )
    columns = np.array([40, 10, 30, 20], dtype=np.uint32)
    got = top_features(matrix, columns, 2)
    assert [g.tolist() for g in got] == [[10, 20], [], [10, 30]]
    assert all(g.dtype == np.uint32 for g in got)
    everything = top_features(matrix, columns, 10)
    assert [g.tolist() for g in everything] == [[10, 20, 40], [], [10, 30, 40]]
    assert top_features(matrix[:0], columns, 2) == []  # no documents, no keyword sets
    # Column 10 may not be chosen: the next heaviest take its place, and a row
    # with fewer eligible features than k gets fewer keywords.
    eligible = np.array([True, False, True, True])
    assert [g.tolist() for g in top_features(matrix, columns, 2, eligible)] == [
        [20, 40],
        [],
        [30, 40],
    ]
    assert [g.tolist() for g in top_features(matrix, columns, 10, ~eligible)] == [[10], [], [10]]


def test_word_columns_marks_the_hashes_of_single_words():
    from dedup.vectors import word_columns

    terms = ["kim", "jong", "un", "putin", "kim"]
    names = feature_names(terms, 2)
    words = np.unique(term_hashes(terms))
    columns = np.array(sorted(names), dtype=np.uint32)[::-1]  # any order
    marked = word_columns(columns, words)
    assert {names[int(c)] for c in columns[marked]} == set(terms)
    assert all(" " in names[int(c)] for c in columns[~marked])
    assert not word_columns(columns, np.empty(0, np.uint32)).any()


@st.composite
def weighted_rows(draw):
    """A small sparse matrix with many equal weights (ties) and distinct, unsorted column hashes."""
    n_rows = draw(st.integers(1, 6))
    n_cols = draw(st.integers(1, 12))
    weights = st.sampled_from([0.0, 0.0, 0.1, 0.25, 0.5, 1.0])
    dense = np.array(draw(st.lists(weights, min_size=n_rows * n_cols, max_size=n_rows * n_cols)))
    hashes = st.lists(st.integers(0, 2**32 - 1), min_size=n_cols, max_size=n_cols, unique=True)
    columns = np.array(draw(hashes), dtype=np.uint32)
    eligible = draw(st.none() | st.lists(st.booleans(), min_size=n_cols, max_size=n_cols))
    eligible = None if eligible is None else np.array(eligible)
    return dense.reshape(n_rows, n_cols), columns, draw(st.integers(0, 14)), eligible


@settings(max_examples=200, deadline=None)
@given(case=weighted_rows(), jobs=st.integers(1, 3))
def test_top_features_equal_the_numpy_reference(case, jobs):
    from scipy import sparse

    from dedup.vectors import reference_top_features, top_features

    dense, columns, k, eligible = case
    matrix = sparse.csr_matrix(dense)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(vectors_module, "_MIN_THREAD_CELLS", 1)  # threads even on a few cells
        got = top_features(matrix, columns, k, eligible, jobs)
    want = reference_top_features(matrix, columns, k, eligible)
    assert [g.tolist() for g in got] == [w.tolist() for w in want]
    assert all(g.dtype == np.uint32 for g in got)


@settings(max_examples=100, deadline=None)
@given(feature_lists=feature_batches(), min_documents=st.integers(1, 3))
def test_fitted_rows_equal_rows_over_counted_frequencies_restricted_after_normalising(
    feature_lists, min_documents
):
    from dedup.vectors import fitted_tfidf_rows

    frequencies = DocumentFrequencies.count(distinct(feature_lists))
    full, columns = tfidf_rows(*bags(feature_lists), frequencies)
    kept = np.flatnonzero(frequencies.counts >= min_documents)
    got, got_columns = fitted_tfidf_rows(*bags(feature_lists), min_documents)
    np.testing.assert_array_equal(got_columns, columns[kept])
    np.testing.assert_array_equal(got.toarray(), full[:, kept].toarray())
    restricted, restricted_columns = tfidf_rows(
        *bags(feature_lists), frequencies, None, min_documents
    )
    np.testing.assert_array_equal(restricted_columns, columns[kept])
    np.testing.assert_array_equal(restricted.toarray(), full[:, kept].toarray())


@settings(max_examples=100, deadline=None)
@given(term_lists=DOCUMENTS, max_n=st.integers(1, 3))
def test_feature_counts_equal_one_count_per_document(term_lists, max_n):
    features, counts = feature_counts(term_lists, max_n)
    assert len(features) == len(counts) == len(term_lists)
    for terms, got, tf in zip(term_lists, features, counts, strict=True):
        want, want_tf = counted(feature_hashes(terms, max_n))
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(tf, want_tf)
        assert got.dtype == np.uint32
        assert np.issubdtype(tf.dtype, np.unsignedinteger)


def test_feature_counts_widen_for_large_counts():
    _, counts = feature_counts([["a"] * 300, ["b"]], 1)
    assert counts[0].tolist() == [300] and counts[1].tolist() == [1]
    assert counts[0].dtype == np.uint16


@settings(max_examples=100, deadline=None)
@given(feature_lists=feature_batches(), other=feature_batches(), block=st.integers(1, 6))
def test_rows_built_in_blocks_equal_rows_built_at_once(feature_lists, other, block):
    # Blocks only bound the temporaries: every value must come out bit for bit the same.
    from dedup import sparse_rows, vectors

    frequencies = DocumentFrequencies.count(distinct([*feature_lists, *other]))
    weights = np.linspace(0.5, 1.0, len(feature_lists))
    whole, columns = tfidf_rows(*bags(feature_lists), frequencies, weights, 2)
    fitted = vectors.fitted_tfidf_rows(*bags(feature_lists), 2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sparse_rows, "_BLOCK_CELLS", block)
        blocked, blocked_columns = tfidf_rows(*bags(feature_lists), frequencies, weights, 2)
        blocked_fitted = vectors.fitted_tfidf_rows(*bags(feature_lists), 2)
    for got, want in ((blocked, whole), (blocked_fitted[0], fitted[0])):
        for part in ("data", "indices", "indptr"):
            np.testing.assert_array_equal(getattr(got, part), getattr(want, part))
    np.testing.assert_array_equal(blocked_columns, columns)


@settings(max_examples=200, deadline=None)
@given(
    feature_lists=feature_batches(),
    other=feature_batches(),
    jobs=st.integers(1, 3),
    block=st.sampled_from([1, 5, 1 << 22]),
    variant=st.sampled_from(["all", "shared columns", "unlisted", "given norms"]),
    weighted=st.booleans(),
)
def test_weighted_rows_equal_the_numpy_reference(
    feature_lists, other, jobs, block, variant, weighted
):
    # The compiled rows, in blocks and threads, against the plain numpy version: bit for bit.
    from dedup import sparse_rows

    features, counts = bags(feature_lists)
    frequencies = DocumentFrequencies.count(distinct([*feature_lists, *other]))
    columns, df = frequencies.features, frequencies.counts
    idf = frequencies.idf_of_counts(df)
    kept = unlisted = norms = None
    if variant == "shared columns":
        kept = df >= 2
    elif variant == "unlisted":  # features held once are left out of the table
        columns, idf, unlisted = columns[df >= 2], idf[df >= 2], 9.5
    elif variant == "given norms":  # and those left out are not counted at all
        norms = np.linspace(0.5, 3.0, len(features))
        columns, idf = columns[df >= 2], idf[df >= 2]
    weights = np.linspace(0.25, 1.0, len(features)) if weighted else None
    arguments = (features, counts, columns, idf, weights, kept, unlisted)
    want = sparse_rows.reference_weighted_rows(*arguments, norms)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sparse_rows, "_BLOCK_CELLS", block)
        patch.setattr(sparse_rows, "_MIN_THREAD_CELLS", 1)  # threads even on a few cells
        got = sparse_rows.weighted_rows(*arguments, jobs, norms)
    assert got.shape == want.shape
    for part in ("data", "indices", "indptr"):
        np.testing.assert_array_equal(getattr(got, part), getattr(want, part))


@settings(max_examples=200, deadline=None)
@given(table=st.lists(HASH, max_size=3000, unique=True))
def test_top_bits_filter_holds_every_column_and_turns_most_others_away(table):
    from dedup import sparse_rows

    table = np.sort(np.array(table, dtype=np.uint32))
    bitmap, shift = sparse_rows._top_bits_filter(table)
    assert all(sparse_rows._may_hold(bitmap, shift, value) for value in table.tolist())
    # About 32 bits a column: a random hash passes about one time in 32.
    others = np.random.default_rng(table.size).integers(0, 2**32, 2000).astype(np.uint32)
    passed = sum(sparse_rows._may_hold(bitmap, shift, value) for value in others.tolist())
    assert passed <= 2000 // 8


@settings(max_examples=200, deadline=None)
@given(table=st.lists(HASH, max_size=300), values=st.lists(HASH, max_size=50))
def test_sorted_hashes_positions_equal_searchsorted(table, values):
    from dedup.sparse_rows import SortedHashes

    ordered = np.sort(np.array(table, dtype=np.uint32))
    queries = np.array([*values, *table[:5]], dtype=np.uint32)
    got = SortedHashes.of(ordered).positions(queries)
    np.testing.assert_array_equal(got, np.searchsorted(ordered, queries))
    assert got.dtype == np.int64


def test_idf_of_counts_is_the_same_by_table_or_directly():
    frequencies = DocumentFrequencies(np.arange(5, dtype=np.uint32), np.ones(5, np.int64), 1000)
    df = np.array([0, 1, 2, 2, 2, 2, 2, 3, 999, 1000] + [1] * 3000, dtype=np.int64)
    by_table = frequencies.idf_of_counts(df)
    direct = np.log((1.0 + 1000) / (1.0 + df)) + 1.0
    np.testing.assert_array_equal(by_table, direct)
    np.testing.assert_array_equal(frequencies.idf_of_counts(df[:10]), direct[:10])


@settings(max_examples=50, deadline=None)
@given(
    table=st.dictionaries(st.integers(0, 2**32 - 1), st.integers(1, 50), max_size=300),
    wanted=st.lists(st.integers(0, 2**32 - 1), max_size=50),
    directed=st.booleans(),
)
def test_counts_of_equal_a_dict_lookup(table, wanted, directed):
    features = np.array(sorted(table), dtype=np.uint32)
    counts = np.array([table[f] for f in sorted(table)], dtype=np.int64)
    frequencies = DocumentFrequencies(features, counts, 100)
    # Some wanted features from the table, some not; the directed search for
    # a table of any size, as an index's millions of features get it.
    queries = np.array(wanted + list(table)[: len(wanted)], dtype=np.uint32)
    with mock.patch.object(vectors_module, "_DIRECTED_SEARCH_SIZE", 1 if directed else 2**40):
        got = frequencies.counts_of(queries)
        again = frequencies.counts_of(queries)  # the second call reuses the directory
    expected = [table.get(int(q), 0) for q in queries]
    assert got.tolist() == expected
    assert again.tolist() == expected


COUNTED = st.dictionaries(HASH, st.integers(-5, 50), max_size=200)


@settings(max_examples=200, deadline=None)
@given(table=COUNTED, more=COUNTED)
def test_merge_counts_equal_adding_dictionaries(table, more):
    from dedup.vectors import merge_counts

    def arrays(counted):
        keys = sorted(counted)
        return np.array(keys, np.uint32), np.array([counted[k] for k in keys], np.int64)

    features, counts = merge_counts(*arrays(table), *arrays(more))
    want = Counter(table)
    for feature, count in more.items():
        want[feature] = want.get(feature, 0) + count
    want_features, want_counts = arrays(dict(want))
    np.testing.assert_array_equal(features, want_features)
    np.testing.assert_array_equal(counts, want_counts)
    assert features.dtype == np.uint32 and counts.dtype == np.int64
