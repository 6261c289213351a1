"""Tests of the near-duplicate benchmark's generator (benchmarks/near_duplicates.py).

The perturbations are checked on a fixed text, so they run without the shared
data; corpus-level checks read the real originals and skip when they are missing.
"""

from __future__ import annotations

import difflib
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "near_duplicates.py"


def _load() -> ModuleType:
    # benchmarks/ is not a package; register the module before running it
    # because dataclasses look their module up in sys.modules.
    spec = importlib.util.spec_from_file_location("near_duplicates", BENCHMARK)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


nd = _load()

TEXT = "\n".join(
    [
        "Storm floods coastal towns as rivers burst their banks",
        "Heavy rain flooded 1,250 homes in three coastal towns on Tuesday, officials said, "
        "after two rivers burst their banks during the night.",
        "Emergency crews rescued 87 people from rooftops and cars. The regional governor "
        "declared a state of emergency and asked the army for help with the evacuation.",
        "Forecasters expect another 40.5 millimetres of rain before Thursday morning, and "
        "warned that the main bridge into the port could be closed for several days.",
        "Local schools will stay shut until Friday. Residents were told to boil tap water "
        "and to stay away from the flooded roads along the river.",
        "The storm is the third to hit the region this year, according to the weather "
        "service, which said the ground was already saturated by earlier rainfall.",
    ]
)
ORIGINAL = nd.Item("x0000", TEXT, "en", "x0000")


@pytest.fixture(scope="module")
def ctx():
    """A context whose vocabulary is the test text's own words."""
    return nd.contexts([ORIGINAL])["en"]


@pytest.fixture(scope="module")
def originals() -> list:
    """The first multilingual originals; skips when the shared data is missing."""
    if not nd.DEFAULT_DATA.is_dir():
        pytest.skip(f"shared data not found at {nd.DEFAULT_DATA}")
    items, _ = nd.load_originals(nd.DEFAULT_DATA, "multi")
    return items[:80]


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _changed_fraction(a: str, b: str) -> float:
    return 1.0 - difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


@pytest.mark.parametrize("seed", range(5))
def test_truncate_keeps_a_60_to_90_percent_prefix(seed: int, ctx) -> None:
    out = nd.truncate(TEXT, _rng(seed), ctx)
    body = re.sub(r"( ?\[\.\.\.\]| …|\.\.\.)$", "", out)
    assert TEXT.startswith(body)
    assert 0.5 * len(TEXT) <= len(body) <= 0.9 * len(TEXT)


@pytest.mark.parametrize("seed", range(5))
def test_noise_damages_one_to_two_percent_of_characters(seed: int, ctx) -> None:
    out = nd.noise(TEXT, _rng(seed), ctx)
    # Each edit moves one or two characters; the ratio counts both strings.
    assert 0.005 <= _changed_fraction(TEXT, out) <= 0.04
    assert abs(len(out) - len(TEXT)) <= 0.03 * len(TEXT)


@pytest.mark.parametrize("seed", range(5))
def test_boilerplate_wraps_the_untouched_story(seed: int, ctx) -> None:
    out = nd.boilerplate(TEXT, _rng(seed), ctx)
    assert TEXT in out
    assert len(out) > len(TEXT) + 5


def test_boilerplate_speaks_the_article_language() -> None:
    german = nd.Item("d", "Der Sturm hat drei Städte überflutet. " * 10, "de", "d")
    out = nd.boilerplate(german.text, _rng(1), nd.contexts([german])["de"])
    extra = out.replace(german.text, "")
    assert any(w in extra for w in ("Von", "Aktualisiert", "Anzeige", "Mitarbeit", "Rechte",
                                    "Lesen", "Cookies", "("))  # fmt: skip


@pytest.mark.parametrize("seed", range(5))
def test_reorder_moves_paragraphs_but_keeps_them_all(seed: int, ctx) -> None:
    out = nd.reorder(TEXT, _rng(seed), ctx)
    paragraphs, moved = TEXT.split("\n"), out.split("\n")
    assert sorted(paragraphs) == sorted(moved)
    assert moved[0] == paragraphs[0]  # the headline stays on top


def test_reorder_changes_order_for_some_seed(ctx) -> None:
    assert any(nd.reorder(TEXT, _rng(s), ctx) != TEXT for s in range(5))


@pytest.mark.parametrize("seed", range(5))
def test_drop_removes_exactly_one_paragraph(seed: int, ctx) -> None:
    out = nd.drop(TEXT, _rng(seed), ctx).split("\n")
    paragraphs = TEXT.split("\n")
    assert len(out) == len(paragraphs) - 1
    assert set(out) < set(paragraphs) and out[0] == paragraphs[0]


def test_drop_falls_back_to_sentences_without_paragraphs(ctx) -> None:
    flat = TEXT.replace("\n", " ")
    out = nd.drop(flat, _rng(3), ctx)
    assert len(out) < len(flat)
    assert all(s in flat for s in re.split(r"(?<=[.!?])\s+", out))


@pytest.mark.parametrize("seed", range(5))
def test_reword_replaces_three_to_eight_percent_of_words(seed: int, ctx) -> None:
    before = nd._WORD.findall(TEXT)
    after = nd._WORD.findall(nd.reword(TEXT, _rng(seed), ctx))
    assert len(before) == len(after)
    changed = sum(a.lower() != b.lower() for a, b in zip(before, after, strict=True))
    assert 0.02 <= changed / len(before) <= 0.09


@pytest.mark.parametrize(
    ("number", "lang", "expected"),
    [("1,250", "en", "1250"), ("40.5", "en", "40,5"), ("12500", "en", "12,500"),
     ("12500", "de", "12.500"), ("2020", "en", "2020"), ("87", "en", "87")],
)  # fmt: skip
def test_renumber_changes_only_the_formatting(number: str, lang: str, expected: str) -> None:
    assert nd._renumber(number, lang) == expected


@pytest.mark.parametrize("seed", range(5))
def test_punctuation_keeps_every_letter_and_digit(seed: int, ctx) -> None:
    out = nd.punctuation(TEXT, _rng(seed), ctx)
    assert out != TEXT
    assert re.sub(r"[\W_]", "", out) == re.sub(r"[\W_]", "", TEXT)


@pytest.mark.parametrize("seed", range(5))
def test_title_case_changes_only_the_headline_case(seed: int, ctx) -> None:
    out = nd.title_case(TEXT, _rng(seed), ctx)
    rest = TEXT.split("\n", 1)[1]
    assert out.casefold() == TEXT.casefold()
    assert out.endswith("\n" + rest) and out != TEXT


def test_make_variant_applies_kinds_in_canonical_order(ctx) -> None:
    # Boilerplate comes last, so truncation can never cut the footer off.
    out = nd.make_variant(ORIGINAL, ("boilerplate", "truncate"), _rng(2), ctx)
    assert out != TEXT and TEXT[:200] in out


def test_parse_option_reads_types() -> None:
    assert nd.parse_option("threshold=0.4") == ("threshold", 0.4)
    assert nd.parse_option("shingle-size=2") == ("shingle_size", 2)
    assert nd.parse_option("stem=true") == ("stem", True)
    assert nd.parse_option("shingle=char") == ("shingle", "char")


def test_originals_are_long_distinct_and_labelled(originals: list) -> None:
    assert all(len(o.text) >= nd.MIN_CHARS for o in originals)
    assert len({o.text for o in originals}) == len(originals)
    assert all(o.family == o.id and not o.kinds for o in originals)
    assert {o.lang for o in originals} <= {"tr", "de", "es"}


def test_generator_is_deterministic_for_a_seed(originals: list) -> None:
    first = nd.build_corpus(originals, 1)
    assert first == nd.build_corpus(originals, 1)
    assert first != nd.build_corpus(originals, 2)


def test_families_are_the_perturbation_families(originals: list) -> None:
    corpus = nd.build_corpus(originals, 1)
    ids = [d.id for d in corpus]
    assert len(set(ids)) == len(ids)
    by_id = {o.id: o for o in originals}
    counts = dict.fromkeys(by_id, 0)
    for doc in corpus[len(originals) :]:
        assert doc.family in by_id and doc.id.startswith(doc.family)
        assert doc.lang == by_id[doc.family].lang
        assert 1 <= len(doc.kinds) <= 3 and set(doc.kinds) <= set(nd.KINDS)
        counts[doc.family] += 1
    assert max(counts.values()) <= 4
    assert 0 in counts.values()  # singletons exist


def test_evaluate_scores_a_small_corpus(originals: list) -> None:
    corpus = nd.build_corpus(originals[:40], 1)
    result = nd.evaluate(corpus, "duplicates", {"threshold": 0.35, "lsh_threshold": 0.2})
    assert result["scores"].documents == len(corpus)
    assert result["scores"].gold_clusters == 40
    for recall, count in result["kinds"].values():
        assert count == 0 or 0.0 <= recall <= 1.0
