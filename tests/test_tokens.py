"""The compiled term hasher against the plain analysis it must equal."""

from __future__ import annotations

import json
import pickle
from itertools import islice

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dedup import tokens
from dedup.analysis import analyse_terms
from dedup.shingle import batch_term_hashes
from dedup.tokens import TermHasher

# Characters where tokenising has rules: Turkish dotted and dotless i, digits
# of other scripts and number separators, apostrophes of every kind, marks,
# joiners, CJK and kana, numerics that are not decimal digits, underscores.
TRICKY = (
    "aIİıiSs ÇçĞğ0123456789٣.,'’`´_-–  \n\t\u0301\u0307\u200c\u200d"
    "日本語のニュース北朝鮮ß²½ⅫΣςé\ufb01\u00a0\u2028\U00010400\U0001f600"
)
TEXTS = st.text(alphabet=st.sampled_from(TRICKY), max_size=60) | st.text(max_size=40)
LANGS = st.sampled_from([None, "en", "tr", "fr", "ca", "uk", "ja", "und", "de"])
ITEMS = st.lists(st.tuples(TEXTS, st.none() | TEXTS, LANGS), max_size=8)


def reference(items, lang, stem=True, stopwords=True):
    term_lists = analyse_terms(items, lang, stem, stopwords)
    units, owner = batch_term_hashes(term_lists)
    return units, owner, np.array([len(set(t)) for t in term_lists], dtype=np.int64)


def assert_equal_to_reference(hasher, items, lang, stem=True, stopwords=True):
    got = hasher.batch(items)
    for have, want in zip(got, reference(items, lang, stem, stopwords), strict=True):
        np.testing.assert_array_equal(have, want)
    assert got[0].dtype == np.uint32


@settings(max_examples=300, deadline=None)
@given(items=ITEMS, lang=st.sampled_from([None, "tr", "en"]), stem=st.booleans())
def test_term_hashes_equal_the_string_analysis(items, lang, stem):
    hasher = TermHasher(lang, stem=stem, stopwords=stem)
    assert_equal_to_reference(hasher, items, lang, stem, stem)
    # Again with the tokens now in the table: found, not resolved anew.
    assert_equal_to_reference(hasher, items, lang, stem, stem)


@settings(max_examples=100, deadline=None)
@given(items=ITEMS)
def test_tables_started_afresh_change_nothing(items):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tokens, "_MAX_TOKENS", 3)  # a fresh table every few tokens
        hasher = TermHasher("en")
        for _ in range(2):
            assert_equal_to_reference(hasher, items, "en")


def test_table_holds_many_tokens_and_reuses_them():
    words = [f"word{k}" for k in range(20_000)]
    items = [(" ".join(words[k : k + 500]), None, "en") for k in range(0, 20_000, 500)]
    hasher = TermHasher()
    assert_equal_to_reference(hasher, items, None)
    assert hasher._tables["en"].size == 20_000
    assert_equal_to_reference(hasher, items[::-1], None)


def test_pickles_without_its_tables():
    hasher = TermHasher("tr", stem=False)
    hasher.batch([("Kore'ye gitti", None, None)])
    copy = pickle.loads(pickle.dumps(hasher))
    assert copy._tables == {} and (copy.lang, copy.stem, copy.stopwords) == ("tr", False, True)
    assert_equal_to_reference(copy, [("Kore'ye gitti", None, None)], "tr", False, True)


def test_turkish_suffixes_numbers_and_the_title_first():
    item = ("Putin Kore'ye gitti, Kore'nin 1,200.5 askeri", "KORE", None)
    units, owner, distinct = TermHasher("tr").batch([item])
    terms = ["kore", "put", "kore", "git", "kore", "1,200.5", "asker"]
    np.testing.assert_array_equal(units, batch_term_hashes([terms])[0])
    assert owner.tolist() == [0] * 7 and distinct.tolist() == [5]


@pytest.mark.parametrize("name", ["semeval", "ecbplus"])
def test_real_articles_in_many_languages(shared_data, name):
    if name == "semeval":
        path = shared_data / "semeval2022" / "pairs_train.jsonl"
        with path.open(encoding="utf-8") as lines:
            rows = [json.loads(line) for line in islice(lines, 300)]
        items = [(r[key], None, r["lang"]) for r in rows for key in ("text1", "text2")]
    else:
        path = shared_data / "ecbplus" / "ecbplus.jsonl"
        with path.open(encoding="utf-8") as lines:
            rows = [json.loads(line) for line in islice(lines, 300)]
        items = [(r["text"], r.get("title"), None) for r in rows]
    assert_equal_to_reference(TermHasher(), items, None)
