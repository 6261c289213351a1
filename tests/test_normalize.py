"""Tests for dedup.normalize: repair, case folding, normalisation, detection, analysis."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dedup import normalize
from dedup.errors import ConfigError
from dedup.normalize import (
    Analyzer,
    casefold,
    detect_language,
    normalize_for_tokens,
    normalize_text,
    repair_text,
    tokenize,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REPO = Path(__file__).resolve().parents[1]

TURKISH = "Putin Kuzey Kore'ye gitti. Kore’nin lideri İstanbul'da IŞIK"
SENTENCES = {
    "tr": "Cumhurbaşkanı bugün Ankara'da gazetecilere yaptığı açıklamada yeni ekonomik "
    "tedbirlerin önümüzdeki hafta açıklanacağını söyledi.",
    "en": "The president told reporters on Tuesday that new economic measures would be "
    "announced next week.",
    "de": "Der Präsident sagte am Dienstag vor Journalisten, dass neue wirtschaftliche "
    "Maßnahmen nächste Woche angekündigt würden.",
    "es": "El presidente dijo el martes a los periodistas que la próxima semana se "
    "anunciarán nuevas medidas económicas.",
}


def tokens(text: str, lang: str | None) -> list[str]:
    return tokenize(normalize_text(text, lang), lang)


# --- repair_text -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("broken", "fixed"),
    [
        ("Ã§ok gÃ¼zel", "çok güzel"),
        ("Itâ€™s", "It’s"),
        ("yaptÄ±ran giriÅŸ", "yaptıran giriş"),
        ("ÃƒÂ©tÃƒÂ©", "été"),  # encoded twice
        ("Ð¿Ñ€Ð¸Ð²ÐµÑ‚", "привет"),
    ],
)
def test_repair_fixes_mojibake(broken: str, fixed: str) -> None:
    assert repair_text(broken) == fixed


def test_repair_applies_nfkc() -> None:
    assert repair_text("ﬁnal ＡＢＣ ½") == "final ABC 1⁄2"


def test_repair_leaves_clean_text_alone_without_ftfy(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> str:
        raise AssertionError("ftfy called on clean text")

    monkeypatch.setattr(normalize.ftfy, "fix_text", boom)
    for text in ["Türkçe çok güzel, değil mi?", "Straße «quoted» – l’été", "plain ascii"]:
        assert repair_text(text) == text


def test_repair_keeps_curly_quotes_and_html_for_later_steps() -> None:
    # Only encoding repairs: a suspect text is otherwise treated like a clean one.
    assert repair_text("Ã§ok “güzel” &amp;") == "çok “güzel” &amp;"


@pytest.mark.parametrize(
    ("pair_id", "field", "expected"),
    [
        ("1558569628_1558529820", "text2", "Horoz dövüşü yaptıran zanlılar yakalandı"),
        ("1602657540_1604288758", "text2", "Bayern will neues Konzept für Versammlungen"),
        ("1609068534_1647990025", "text2", "des Dekanats Eichstätt, die seit"),
    ],
)
def test_repair_real_semeval_lines(pair_id: str, field: str, expected: str) -> None:
    path = DATA / "semeval2022" / "pairs_train.jsonl"
    if not path.exists():
        pytest.skip(f"{path} not available")
    with path.open(encoding="utf-8") as f:
        record = next((r for r in map(json.loads, f) if r["pair_id"] == pair_id), None)
    if record is None:
        pytest.skip(f"pair {pair_id} not in {path}")
    raw = record[field]
    line = next(line for line in raw.splitlines() if "Ã" in line)
    assert expected not in line
    assert expected in repair_text(line)
    repaired = repair_text(raw)  # ftfy works line by line: clean lines survive
    assert expected in repaired and "Ã" not in repaired
    assert repair_text(repaired) == repaired


# --- casefold ----------------------------------------------------------------------


def test_casefold_turkish_dotted_and_dotless_i() -> None:
    assert casefold("IŞIK", "tr") == "ışık"
    assert casefold("İstanbul", "tr") == "istanbul"
    assert casefold("ISPARTA ılık İzmir", "tr") == "ısparta ılık izmir"
    assert casefold("I\u0307ZMİR", "az") == "izmir"  # decomposed dotted capital I


def test_casefold_other_languages() -> None:
    assert casefold("İstanbul", None) == "istanbul"  # no combining dot (str.lower adds one)
    assert casefold("İstanbul", "en") == "istanbul"
    assert casefold("IŞIK", "en") == "işik"
    assert casefold("i\u0307stanbul", None) == "istanbul"  # already lowered by str.lower
    assert casefold("Straße STRASSE", "de") == "strasse strasse"
    assert casefold("ΟΔΟΣ οδός", "el") == "οδοσ οδόσ"


def test_casefold_language_codes() -> None:
    assert casefold("IŞIK", "TR") == casefold("IŞIK", "tr-TR") == casefold("IŞIK", "tr_TR")
    assert casefold("IŞIK", "und") == casefold("IŞIK", None)
    with pytest.raises(ConfigError):
        casefold("x", "turkish")
    with pytest.raises(ConfigError):
        casefold("x", "t1")


# --- normalize_text ----------------------------------------------------------------


def test_normalize_unifies_apostrophes_quotes_and_whitespace() -> None:
    assert normalize_text("Kore’nin ‘lideri’ Kore`ye Kore´de Koreʼyi", "tr") == (
        "kore'nin 'lideri' kore'ye kore'de kore'yi"
    )
    assert normalize_text("“Ne” «dedi» „er“", None) == '"ne" "dedi" "er"'
    assert normalize_text("  a\t\tb\n\u00a0c\u2028d  ", None) == "a b c d"
    assert normalize_text("", "tr") == ""
    assert normalize_text(" \n\t ", None) == ""


def test_normalize_repairs_then_folds() -> None:
    assert normalize_text("Ã‡OK GÃœZEL Ä°stanbul", "tr") == "çok güzel istanbul"


# --- detect_language ---------------------------------------------------------------


@pytest.mark.parametrize("lang", sorted(SENTENCES))
def test_detect_language(lang: str) -> None:
    assert detect_language(SENTENCES[lang]) == lang


def test_detect_language_repairs_mojibake_first() -> None:
    assert detect_language(SENTENCES["tr"].encode("utf-8").decode("cp1252", "replace")) == "tr"


@pytest.mark.parametrize("text", ["", "   ", "123 456", "!!! ... ---", "2024-05-01 12:00"])
def test_detect_language_without_letters(text: str) -> None:
    assert detect_language(text) == "und"


def test_import_loads_no_language_model() -> None:
    code = "import sys, dedup.normalize; sys.exit('py3langid' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


# --- tokenize ----------------------------------------------------------------------


def test_tokenize_turkish_apostrophe_suffixes() -> None:
    assert tokens("Kore'ye Kore’nin Putin'in Ankara'da ABD'nin 2024'te", "tr") == [
        "kore",
        "kore",
        "putin",
        "ankara",
        "abd",
        "2024",
    ]
    # Same without a language: suffix stripping is the general rule.
    assert tokens("Kore'ye Kore’nin", None) == ["kore", "kore"]


def test_tokenize_english_possessives_and_contractions() -> None:
    assert tokens("Putin's visit, the presidents' car; don't", "en") == [
        "putin",
        "visit",
        "the",
        "presidents",
        "car",
        "don",
    ]
    assert tokens("O'Brien met O’Neill's aide", "en") == ["obrien", "met", "oneill", "aide"]


def test_tokenize_elision_only_for_fr_it_ca() -> None:
    assert tokens("L'homme qu'il a vu, d’Israël", "fr") == ["homme", "il", "a", "vu", "israël"]
    assert tokens("dell'anno all'ospedale", "it") == ["anno", "ospedale"]
    assert tokens("l'home col·lecció", "ca") == ["home", "collecció"]
    assert tokens("l'homme", "en") == ["lhomme"]


def test_tokenize_apostrophe_inside_words() -> None:
    assert tokens("мʼясо п'ять", "uk") == ["мясо", "пять"]


def test_tokenize_punctuation_hyphens_numbers() -> None:
    assert tokens("Covid-19: 1,200 dead (3.5%) in 2024; snake_case!", None) == [
        "covid",
        "19",
        "1,200",
        "dead",
        "3.5",
        "in",
        "2024",
        "snake",
        "case",
    ]


def test_tokenize_keeps_combining_marks_and_splits_cjk() -> None:
    assert tokens("हिन्दी समाचार", "hi") == ["हिन्दी", "समाचार"]
    assert tokens("می‌خواهم", "fa") == ["می\u200cخواهم"]
    assert tokens("习近平访问 iPhone15", "zh") == ["习近", "近平", "平访", "访问", "iphone15"]


@pytest.mark.parametrize("text", ["", "   ", "...!?", "— – - ''' \"\""])
def test_tokenize_nothing(text: str) -> None:
    assert tokens(text, None) == []


# --- Analyzer ----------------------------------------------------------------------


def test_analyzer_turkish_example() -> None:
    terms = Analyzer().terms(TURKISH + " ve bir bu")
    assert terms.count("kore") == 2
    assert "istanbul" in terms
    assert "ışık" in terms
    assert not {"ve", "bir", "bu"} & set(terms)
    assert Analyzer().language(TURKISH) == "tr"


def test_analyzer_english_example() -> None:
    assert Analyzer("en").terms("The Presidents visited Pyongyang's airport") == [
        "presid",
        "visit",
        "pyongyang",
        "airport",
    ]


@pytest.mark.parametrize(
    ("lang", "text", "stopwords"),
    [
        ("tr", "ve bir bu da için ile", {"ve", "bir", "bu", "da", "için", "ile"}),
        ("en", "the and of it's don't", {"the", "and", "of", "it", "don"}),
        ("de", "der die und ist nicht", {"der", "die", "und", "ist", "nicht"}),
        ("es", "el la de que y los", {"el", "la", "de", "que", "los"}),
    ],
)
def test_analyzer_drops_stopwords(lang: str, text: str, stopwords: set[str]) -> None:
    assert Analyzer(lang).terms(text) == []
    kept = set(Analyzer(lang, stem=False, stopwords=False).terms(text))
    assert stopwords <= kept


@pytest.mark.parametrize(
    ("lang", "text", "expected"),
    [
        ("tr", "seçimleri gazetecilere", ["seçim", "gazeteci"]),
        ("en", "visited elections", ["visit", "elect"]),
        ("de", "Häuser Wahlen", ["haus", "wahl"]),
        ("es", "ciudades elecciones", ["ciudad", "eleccion"]),
        ("fr", "élections nationales", ["élect", "national"]),
    ],
)
def test_analyzer_stems_per_language(lang: str, text: str, expected: list[str]) -> None:
    assert Analyzer(lang).terms(text) == expected
    assert Analyzer(lang, stem=False).terms(text) == normalize_text(text, lang).split()


def test_analyzer_german_sharp_s() -> None:
    # casefold maps ß to ss, so the body's 'Straße' matches the headline's 'STRASSE'.
    analyzer = Analyzer("de")
    assert analyzer.terms("Straße") == analyzer.terms("STRASSE") == analyzer.terms("Strasse")


def test_analyzer_spanish_with_detection() -> None:
    analyzer = Analyzer()
    assert analyzer.language(SENTENCES["es"]) == "es"
    terms = analyzer.terms(SENTENCES["es"])
    assert "president" in terms and "med" in terms and "el" not in terms


def test_analyzer_short_tokens_and_numbers() -> None:
    assert Analyzer("en").terms("a 5 killed in 2024 by G7 x") == ["kill", "2024", "g7"]


def test_analyzer_unknown_language_still_works() -> None:
    analyzer = Analyzer("xx")
    assert analyzer.terms("The Presidents visited") == ["the", "presidents", "visited"]
    assert analyzer.language("anything") == "xx"
    assert Analyzer("und").language(SENTENCES["de"]) == "de"  # 'und' means: detect


def test_analyzer_explicit_language_wins() -> None:
    analyzer = Analyzer("tr")
    assert analyzer.terms("IŞIK") == ["ışık"]
    assert analyzer.terms("IŞIK", "en") == ["işik"]


def test_analyzer_rejects_bad_language() -> None:
    with pytest.raises(ConfigError):
        Analyzer("english")
    with pytest.raises(ConfigError):
        Analyzer().terms("text", "??")


@pytest.mark.parametrize("text", ["", "   \n\t", "!!! ... ???", "—", "a b c", "'"])
def test_analyzer_empty_input(text: str) -> None:
    assert Analyzer().terms(text) == []
    assert Analyzer("tr").terms(text) == []


def test_analyzer_cache_and_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    analyzer = Analyzer("tr")
    first = analyzer.terms(TURKISH)
    assert analyzer.terms(TURKISH) == first
    clone = pickle.loads(pickle.dumps(analyzer))
    assert repr(clone) == repr(analyzer) and clone.terms(TURKISH) == first
    monkeypatch.setattr(normalize, "_MAX_CACHE", 3)  # forces the cache to be cleared
    assert Analyzer("tr").terms(TURKISH) == first


# --- properties --------------------------------------------------------------------

# Characters that exercise the tricky interactions: Turkish I, combining dots, ß/ẞ,
# final sigma, 'ΐ' (casefold denormalises it), 'ŉ' (casefold creates 'ʼ'), '´' (NFKC
# creates a space), mojibake material and compatibility characters.
TRICKY = list("IİıißẞςΣΐŉ´’‘ʼ`′“”«»ÃÂâ€™¼§ŸĞŞçÖü\u0307\u0345\u0301 \u00a0\n'\"ǅﬁ\u212a\u2126")
TEXTS = st.one_of(
    st.text(),
    st.text(alphabet=st.one_of(st.characters(), st.sampled_from(TRICKY))),
    # mojibake: UTF-8 bytes read as Latin-1 or cp1252
    st.text(alphabet=st.one_of(st.characters(), st.sampled_from(TRICKY))).map(
        lambda s: s.encode("utf-8", "surrogatepass").decode("latin-1")
    ),
    st.text().map(lambda s: s.encode("utf-8", "surrogatepass").decode("cp1252", "replace")),
)
LANGS = st.sampled_from([None, "tr", "en", "de"])
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(st.text(), LANGS)
def test_normalize_text_idempotent_plain_text(text: str, lang: str | None) -> None:
    once = normalize_text(text, lang)
    assert normalize_text(once, lang) == once


@PROPERTY
@given(TEXTS, LANGS)
def test_normalize_text_idempotent(text: str, lang: str | None) -> None:
    once = normalize_text(text, lang)
    assert normalize_text(once, lang) == once
    assert once == " ".join(once.split())


ASCII_SPACES = st.text(alphabet=st.sampled_from("aIbi`'., 1\t\n\r\x0b\x0c\x1c\x1f"))


@PROPERTY
@given(TEXTS | ASCII_SPACES, LANGS)
def test_normalizing_for_tokens_gives_the_same_tokens(text: str, lang: str | None) -> None:
    fast = normalize_for_tokens(text, lang)
    assert tokenize(fast, lang) == tokenize(normalize_text(text, lang), lang)
    assert " ".join(fast.split()) == normalize_text(text, lang)  # only whitespace differs


def test_normalizing_for_tokens_leaves_ascii_whitespace_alone():
    assert normalize_for_tokens("IRAN\n\n says `no'\t", "en") == "iran\n\n says 'no'\t"
    # Turkish folding leaves ASCII: the full normalisation, collapsed.
    assert normalize_for_tokens("IRAN\n\n", "tr") == "ıran"


@PROPERTY
@given(TEXTS)
def test_repair_text_idempotent(text: str) -> None:
    once = repair_text(text)
    assert repair_text(once) == once


@PROPERTY
@given(TEXTS, LANGS)
def test_casefold_idempotent(text: str, lang: str | None) -> None:
    once = casefold(text, lang)
    assert casefold(once, lang) == once


@PROPERTY
@given(TEXTS, LANGS)
def test_tokens_and_terms_are_clean(text: str, lang: str | None) -> None:
    for token in tokens(text, lang):
        assert token and token.split() == [token] and "'" not in token
    for term in Analyzer(lang).terms(text):
        assert term and term.split() == [term] and len(term) >= 1


def test_names_are_capitalised_runs_without_sentence_openers():
    from dedup.normalize import names

    text = (
        "Putin Kuzey Kore'ye gitti. Kim Jong Un, Pyongyang’da karşıladı. "
        "The talks ended, the end.\nThe Muğla coast. Yesterday a man came."
    )
    assert names(text, "tr") == [
        ("Putin", "Kuzey", "Kore"),  # apostrophe suffix dropped
        ("Kim", "Jong", "Un"),  # 'kim' is a Turkish stopword, but not written lowercase here
        ("Pyongyang",),
        ("Muğla",),  # 'The' opens the sentence and appears lowercase elsewhere
    ]  # 'Yesterday' alone at a sentence start is not a name
    assert names("", "en") == []


def test_shared_names_match_by_word_and_numbers_keep_order():
    from dedup.normalize import names, numbers, shared_names

    first = names("Officials said Vladimir Putin met Kim Jong Un in Pyongyang on 19 June 2024.")
    second = names("Talks between Putin and Kim ended in Moscow, said the 2024 report of 19 pages.")
    # "Vladimir Putin" meets "Putin" word by word; Moscow and Pyongyang are one-sided.
    assert shared_names(first, second) == ["Putin", "Kim"]
    assert numbers("Magnitude 5.4, 12 injured, 3 cars, 2,500 homes") == ["5.4", "12", "2,500"]
