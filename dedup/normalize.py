"""Text normalisation and analysis: raw article text in, comparable terms out.

:func:`normalize_text` (mojibake repair, NFKC, Turkish-aware case folding,
apostrophe/quote unification, whitespace collapse) -> :func:`tokenize` ->
:class:`Analyzer` (stopwords, short tokens, stemming).

Language codes are ISO 639 codes (``"tr"``); a region or script suffix
(``"pt-BR"``) is ignored. ``None``, ``""``, ``"und"`` and ``"zxx"`` mean unknown: no
language-specific casing, stopwords or stemming. Every function raises
:class:`ConfigError` for a ``lang`` that is not a 2-3 letter code.

Nothing heavy happens at import: the language model, stopword sets, stemmers
and the token regex are built on first use.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Any

import ftfy
import Stemmer
import stopwordsiso

from dedup.errors import ConfigError

__all__ = ["Analyzer", "casefold", "detect_language", "normalize_text", "repair_text", "tokenize"]

# Language detection reads only this many characters: on the SemEval-2022 pairs
# (7 languages) 1000 characters are as accurate as 2000 at two thirds of the cost.
_DETECT_CHARS = 1000
# Normalisation steps are iterated to a fixed point (that is what makes them
# idempotent); real text converges in one or two passes, this bounds pathologies.
_MAX_PASSES = 8
# Per-language term cache size; cleared when full (a news vocabulary fits).
_MAX_CACHE = 200_000

# A Latin-1 letter that UTF-8 lead bytes become (Â..ô) followed by what a UTF-8
# continuation byte becomes in Latin-1 or cp1252. Matches 'Ã§', 'â€™', 'Ä±', 'ÅŸ'
# but almost never clean text, so ftfy (~0.4 ms per article) runs only on suspects.
_SUSPICIOUS = re.compile(
    "[\u00c2-\u00f4][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192"
    "\u02c6\u02dc\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122]"
)
# Only ftfy's encoding repairs: its other fixers (quotes, widths, HTML, line
# breaks) would make a suspect text differ from an identical clean one, and
# NFKC plus our own unification already cover them.
_FTFY_CONFIG = ftfy.TextFixerConfig(
    unescape_html=False, remove_terminal_escapes=False, fix_latin_ligatures=False,
    fix_character_width=False, uncurl_quotes=False, fix_line_breaks=False,
    remove_control_chars=False, normalization=None, explain=False,
)  # fmt: skip
_APOSTROPHES = re.compile("[\u2019\u2018\u02bc`\u00b4\u2032\u201b\uff07]")
_QUOTES = re.compile("[\u201c\u201d\u201e\u201f\u00ab\u00bb\u2039\u203a\u2033\u301d\u301e]")
_PUNCTUATION = re.compile(f"{_APOSTROPHES.pattern}|{_QUOTES.pattern}")
_I_DOT = re.compile("i\u0307+")  # what str.lower() makes of 'İ'
_LETTER = re.compile(r"[^\W\d_]")
_LANG_CODE = re.compile("[a-z]{2,3}")
_UNKNOWN_LANGS = frozenset({"", "und", "zxx", "mul"})
_DOTTED_I_LANGS = frozenset({"tr", "az", "crh", "gag"})  # Turkic Latin alphabets
_ELISION_LANGS = frozenset({"fr", "it", "ca"})
_APOSTROPHE_IN_WORD_LANGS = frozenset({"uk", "be", "uz"})  # мʼясо, oʻzbek
# Elided forms longer than two letters (Italian articulated prepositions, French qu-).
_LONG_ELISIONS = frozenset({
    "dell", "nell", "sull", "dall", "all", "coll", "pell", "quell", "quest", "bell", "sant",
    "lorsqu", "puisqu", "jusqu", "quoiqu",
})  # fmt: skip
# py3langid labels without an ISO 639-1 code that have an ISO 639-1 macrolanguage.
_DETECTOR_ALIASES = {"ary": "ar", "arz": "ar", "uzs": "uz", "yue": "zh", "wuu": "zh", "gug": "gn"}
_STEMMER_NAMES = {
    "ar": "arabic", "hy": "armenian", "eu": "basque", "ca": "catalan", "cs": "czech",
    "da": "danish", "nl": "dutch", "en": "english", "eo": "esperanto", "et": "estonian",
    "fi": "finnish", "fr": "french", "de": "german", "el": "greek", "hi": "hindi",
    "hu": "hungarian", "id": "indonesian", "ga": "irish", "it": "italian", "lt": "lithuanian",
    "ne": "nepali", "no": "norwegian", "nb": "norwegian", "nn": "norwegian", "fa": "persian",
    "pl": "polish", "pt": "portuguese", "ro": "romanian", "ru": "russian", "sr": "serbian",
    "st": "sesotho", "es": "spanish", "sv": "swedish", "ta": "tamil", "tr": "turkish",
    "yi": "yiddish",
}  # fmt: skip
_STOPWORD_ALIASES = {"nb": "no", "nn": "no"}
# Han and kana: these scripts do not separate words with spaces. BMP only, which
# re compiles to a bitmap (3x faster); rare Han beyond U+FFFF stays whole.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_RUN = re.compile(f"[{_CJK}]+")
_CJK_SPLIT = re.compile(f"([{_CJK}]+)")


@functools.lru_cache(maxsize=512)
def _lang_code(lang: str | None) -> str | None:
    """Return the primary subtag of ``lang`` in lower case, ``None`` if unknown."""
    if lang is None:
        return None
    code = str(lang).strip().lower().replace("_", "-").split("-")[0]
    if code in _UNKNOWN_LANGS:
        return None
    if not _LANG_CODE.fullmatch(code):
        raise ConfigError(f"unsupported language {lang!r}: expected an ISO 639 code such as 'tr'")
    return code


def _fixed_point(step: Any, text: str, *args: Any) -> str:
    """Apply ``step`` until the text stops changing, so the result is idempotent."""
    for _ in range(_MAX_PASSES):
        new = step(text, *args)
        if new == text:
            break
        text = new
    return text


def _fix_encoding(text: str) -> str:
    if not text.isascii() and _SUSPICIOUS.search(text):
        text = ftfy.fix_text(text, _FTFY_CONFIG)
    return text


def _nfkc(text: str) -> str:
    # is_normalized is a quick check (~0.5 us per article) that usually avoids a copy.
    if text.isascii() or unicodedata.is_normalized("NFKC", text):
        return text
    return unicodedata.normalize("NFKC", text)


def _repair_once(text: str) -> str:
    # ftfy first: NFKC would destroy mojibake evidence ('Ã¼' -> 'Ã1⁄4').
    return _nfkc(_fix_encoding(text))


def repair_text(text: str) -> str:
    """Repair mojibake and apply Unicode NFKC.

    ftfy (encoding repairs only) runs just on text that contains a typical
    UTF-8-read-as-cp1252 pair such as ``'Ã§'`` or ``'â€'``; other text only gets NFKC.

    Parameters
    ----------
    text : str
        Raw text.

    Returns
    -------
    str
        Repaired text; ``repair_text(repair_text(x)) == repair_text(x)``.
    """
    return _fixed_point(_repair_once, text)


def _casefold_once(text: str, code: str | None) -> str:
    if code in _DOTTED_I_LANGS:
        text = text.replace("I\u0307", "i").replace("\u0130", "i").replace("I", "\u0131")
    else:
        text = text.replace("\u0130", "i")
    # casefold rather than lower: 'Straße', 'STRASSE' and Swiss 'Strasse' all become
    # 'strasse', and Greek final 'ς' becomes 'σ' so upper-case headlines match body
    # text. The German and Greek Snowball stemmers give the same stems either way.
    text = text.casefold()
    return _I_DOT.sub("i", text) if "\u0307" in text else text


def casefold(text: str, lang: str | None) -> str:
    """Lower-case ``text`` by the rules of ``lang``.

    For Turkish and other Turkic Latin alphabets (``tr``, ``az``, ``crh``, ``gag``)
    ``I`` becomes ``ı`` and ``İ`` becomes ``i``; elsewhere ``İ`` becomes ``i``. Then
    :meth:`str.casefold` (so ``ß`` -> ``ss``), and a combining dot left on ``i``
    (``str.lower('İ')`` gives ``'i̇'``) is removed.

    Parameters
    ----------
    text : str
        Text to fold.
    lang : str or None
        Language code; ``None`` for language-neutral folding.

    Returns
    -------
    str
        Folded text; folding it again changes nothing.
    """
    return _fixed_point(_casefold_once, text, _lang_code(lang))


def _unify_punctuation(text: str) -> str:
    if text.isascii():
        return text.replace("`", "'")
    if _PUNCTUATION.search(text):  # one scan instead of two substitutions
        text = _QUOTES.sub('"', _APOSTROPHES.sub("'", text))
    return text


def _normalize_once(text: str, code: str | None) -> str:
    # Unify before NFKC, which turns '´' into ' ́' (a space and a combining accent).
    text = _unify_punctuation(_fix_encoding(text))
    text = _casefold_once(_nfkc(text), code)
    if not text.isascii():
        # casefold can denormalise ('ΐ' -> 'ΐ' decomposed) and create 'ʼ' (from 'ŉ').
        text = _unify_punctuation(_nfkc(text))
    # Any whitespace but ' ' is unprintable, so this skips the split on collapsed text.
    if "  " in text or not text.isprintable() or text[:1] == " " or text[-1:] == " ":
        text = " ".join(text.split())
    return text


def normalize_text(text: str, lang: str | None = None) -> str:
    """Normalise text for comparison.

    Repairs mojibake, applies NFKC, unifies apostrophes (``’ ‘ ʼ ` ´ ′``) to
    ``'`` and typographic quotes (``“ ” „ « »`` ...) to ``"``, folds case with
    :func:`casefold` and collapses every run of whitespace to one space.

    Parameters
    ----------
    text : str
        Raw text.
    lang : str or None
        Language code for case folding.

    Returns
    -------
    str
        Normalised text; ``normalize_text(normalize_text(x, l), l)`` equals
        ``normalize_text(x, l)``.
    """
    code = _lang_code(lang)
    if text.isascii():
        once = _normalize_once(text, code)
        # ASCII in and out: one pass unified '`', folded case and collapsed
        # whitespace, and left nothing another pass would change.
        if once.isascii():
            return once
    return _fixed_point(_normalize_once, text, code)


def normalize_for_tokens(text: str, lang: str | None = None) -> str:
    """:func:`normalize_text`, perhaps without collapsing whitespace: the same tokens, faster.

    Tokens never hold whitespace, so its runs need not be collapsed before
    tokenising. Only ASCII text that stays ASCII skips it: its one pass of
    normalisation has no step that whitespace could change (no mojibake
    repair, no NFKC), so the tokens are those of :func:`normalize_text`.
    Collapsing is a third of normalising a news article.
    """
    if text.isascii():
        once = _casefold_once(_unify_punctuation(text), _lang_code(lang))
        if once.isascii():
            return once
    return normalize_text(text, lang)


@functools.lru_cache(maxsize=1)
def _identifier() -> Any:
    """Load the py3langid model once per process, on first use."""
    from py3langid import langid

    factory = getattr(langid.LanguageIdentifier, "from_model_file", None)
    if factory is None:  # py3langid < 0.3
        factory = langid.LanguageIdentifier.from_pickled_model
    return factory(langid.MODEL_FILE)


def detect_language(text: str) -> str:
    """Detect the language of ``text`` with py3langid.

    Parameters
    ----------
    text : str
        Raw text; only its first 1000 characters are read (after mojibake repair).

    Returns
    -------
    str
        An ISO 639-1 code such as ``"tr"`` (a few rare languages come back as
        py3langid's ISO 639-3 labels, e.g. ``"crh"``), or ``"und"`` when the text
        has no letters.
    """
    sample = repair_text(text[:_DETECT_CHARS])
    if not _LETTER.search(sample):
        return "und"
    label = str(_identifier().classify(sample)[0])
    return "und" if label == "zxx" else _DETECTOR_ALIASES.get(label, label)


@functools.lru_cache(maxsize=1)
def token_mark_codes() -> tuple[int, ...]:
    """Code points that may continue a token though they are not word characters.

    Combining marks (``\\w`` misses them), and ZWNJ/ZWJ, which sit inside
    Persian and Indic words. BMP only: one code point above U+FFFF stops re
    from compiling the class to a bitmap (3x slower tokenising); the
    supplementary planes' marks are historic scripts.
    """
    return tuple(
        c for c in range(0x10000) if c in (0x200C, 0x200D) or unicodedata.category(chr(c))[0] == "M"
    )


@functools.lru_cache(maxsize=1)
def _token_pattern() -> re.Pattern[str]:
    """Compile the token regex: words, with marks inside, and numbers with separators."""
    marks = []
    codes = token_mark_codes()
    start = prev = codes[0]
    for cp in [*codes[1:], -1]:
        if cp != prev + 1:  # close the range start..prev
            marks.append(f"{chr(start)}-{chr(prev)}")
            start = cp
        prev = cp
    word = rf"\w[\w{''.join(marks)}]*"
    return re.compile(rf"(?:\d+(?:[.,]\d+)+|{word})(?:'{word})*")


def _split_apostrophe(token: str, code: str | None) -> str:
    parts = token.split("'")
    if code in _APOSTROPHE_IN_WORD_LANGS:
        return "".join(parts)
    if code in _ELISION_LANGS:
        # l'homme, d'un, qu'il, dell'anno: keep what follows the elided article.
        while len(parts) > 1 and (len(parts[0]) <= 2 or parts[0] in _LONG_ELISIONS):
            parts = parts[1:]
        return parts[0]
    if len(parts[0]) == 1 and len(parts[1]) >= 3 and code not in _DOTTED_I_LANGS:
        return parts[0] + parts[1]  # O'Brien, d'Artagnan: the letter belongs to the name
    # Turkish suffixes (Kore'ye, Putin'in), English "'s" and contractions (don't -> don).
    return parts[0]


def _split_cjk(token: str) -> list[str]:
    out = []
    for i, piece in enumerate(_CJK_SPLIT.split(token)):  # odd pieces are CJK runs
        if i % 2 and len(piece) > 1:
            out.extend(piece[j : j + 2] for j in range(len(piece) - 1))  # character bigrams
        elif piece:
            out.append(piece)
    return out


def tokenize(normalized: str, lang: str | None) -> list[str]:
    """Split normalised text into word tokens.

    Tokens are runs of letters, digits and combining marks; punctuation,
    hyphens and underscores separate them; numbers keep inner separators
    (``"1,200"``, ``"3.5"``). A token with an apostrophe keeps the part before it
    (Turkish ``kore'ye`` -> ``kore``, ``putin's`` -> ``putin``, ``don't`` -> ``don``),
    except: a single letter before it joins the next part (``o'brien`` ->
    ``obrien``; not in Turkic languages); in ``fr``/``it``/``ca`` elided articles
    are dropped (``l'homme`` -> ``homme``); in ``uk``/``be``/``uz`` the apostrophe
    is part of the word and is removed. Runs of Han/kana characters become
    overlapping character bigrams.

    Parameters
    ----------
    normalized : str
        Output of :func:`normalize_text`.
    lang : str or None
        Language code.

    Returns
    -------
    list of str
        Non-empty tokens without whitespace, in text order.
    """
    code = _lang_code(lang)
    return refine_tokens(_token_pattern().findall(token_text(normalized, code)), normalized, code)


def token_text(normalized: str, code: str | None) -> str:
    """The text :func:`tokenize` matches tokens in: underscores and Catalan ``l·l`` resolved."""
    if code == "ca":
        normalized = normalized.replace("l\u00b7l", "ll")  # col·lecció
    return normalized.replace("_", " ")


def refine_tokens(tokens: list[str], normalized: str, code: str | None) -> list[str]:
    """Matched ``tokens`` of ``normalized`` text with apostrophes and CJK runs resolved.

    Token by token, so the tokens of a text are the refined tokens of its
    matches, one match at a time.
    """
    if "'" in normalized:
        tokens = [_split_apostrophe(t, code) if "'" in t else t for t in tokens]
    if _CJK_RUN.search(normalized):
        tokens = [piece for t in tokens for piece in _split_cjk(t)]
    return tokens


@functools.cache
def _stopwords(code: str) -> frozenset[str]:
    """Stopwords of ``code`` normalised and tokenised like text ("don't" -> "don")."""
    words = stopwordsiso.stopwords(_STOPWORD_ALIASES.get(code, code))
    return frozenset(t for w in words for t in tokenize(normalize_text(w, code), code))


class Analyzer:
    """Turn raw text into the terms used for shingles and TF-IDF.

    Parameters
    ----------
    lang : str or None
        Language of every text; ``None`` detects it per text.
    stem : bool
        Stem with the Snowball stemmer of the language, when there is one.
    stopwords : bool
        Drop the language's stopwords (stopwords-iso), matched before stemming.

    Notes
    -----
    Terms are cached per language; an instance is not thread-safe (PyStemmer
    objects are not), so use one per thread. Instances pickle without caches.
    """

    def __init__(self, lang: str | None = None, *, stem: bool = True, stopwords: bool = True):
        self.lang = _lang_code(lang)
        self.stem = stem
        self.stopwords = stopwords
        # language -> {token: term, or None when the token is dropped}
        self._terms: dict[str | None, dict[str, str | None]] = {}
        self._stemmers: dict[str | None, Any] = {}

    def __repr__(self) -> str:
        return f"Analyzer(lang={self.lang!r}, stem={self.stem}, stopwords={self.stopwords})"

    def __getstate__(self) -> dict[str, Any]:
        return {"lang": self.lang, "stem": self.stem, "stopwords": self.stopwords}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["lang"], stem=state["stem"], stopwords=state["stopwords"])

    def language(self, text: str) -> str:
        """Return the language :meth:`terms` would use for ``text`` (``"und"`` if unknown)."""
        return self.lang or detect_language(text)

    def terms(self, text: str, lang: str | None = None) -> list[str]:
        """Return the terms of ``text``.

        Parameters
        ----------
        text : str
            Raw text.
        lang : str or None
            Language; overrides the instance's, which overrides detection
            (``None`` and ``"und"`` count as not given).

        Returns
        -------
        list of str
            Stems of the tokens of :func:`tokenize` that are not stopwords and
            have at least two characters (so ``"2024"`` stays, ``"a"`` and ``"5"``
            go), in text order with repeats.
        """
        code = self.code_for(text, lang)
        return self.terms_of_tokens(tokenize(normalize_text(text, code), code), code)

    def code_for(self, text: str, lang: str | None = None) -> str | None:
        """The language code :meth:`terms` uses for ``text`` given ``lang`` (None: unknown)."""
        return _lang_code(lang) or self.lang or _lang_code(detect_language(text))

    def terms_of_tokens(self, tokens: list[str], code: str | None) -> list[str]:
        """The terms :meth:`terms` keeps of :func:`tokenize`'s ``tokens`` in language ``code``."""
        return list(filter(None, self.term_lookup(tokens, code)))  # drops the None entries

    def term_lookup(self, tokens: list[str], code: str | None) -> list[str | None]:
        """Each token's term in language ``code``, or None where :meth:`terms` drops it."""
        table = self._terms.setdefault(code, {})
        missing = set(tokens).difference(table)
        if len(table) + len(missing) > _MAX_CACHE:
            table.clear()
            missing = set(tokens)
        if missing:
            self._add_terms(table, code, missing)
        return list(map(table.__getitem__, tokens))

    def _add_terms(self, table: dict[str, str | None], code: str | None, new: set[str]) -> None:
        stop = _stopwords(code) if self.stopwords and code else frozenset()
        keep = [t for t in new if len(t) >= 2 and t not in stop]
        table.update(dict.fromkeys(new))
        stemmer = self._stemmer(code) if self.stem else None
        stems = stemmer.stemWords(keep) if stemmer is not None else keep
        # A stemmer never returns '' for real words; the guard keeps terms non-empty.
        table.update((t, s or t) for t, s in zip(keep, stems, strict=True))

    def _stemmer(self, code: str | None) -> Any:
        name = _STEMMER_NAMES.get(code or "")
        if name not in self._stemmers:
            available = name is not None and name in Stemmer.algorithms()
            # maxCacheSize=0: the term table already caches every word.
            self._stemmers[name] = Stemmer.Stemmer(name, 0) if available else None
        return self._stemmers[name]


_WORD_SPAN = re.compile(r"[^\W\d_][\w'\u2019.\-]*")
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
_SENTENCE_END = frozenset('.!?:;\n"“”«»()')


def names(text: str, lang: str | None = None) -> list[tuple[str, ...]]:
    """Proper names in ``text``: runs of capitalised words, as first written, in order.

    A run ends at punctuation or a line break. At the start of a sentence,
    where any word is capitalised, leading words the text also writes in
    lowercase go ("The Muğla" -> "Muğla", while "Kim Jong Un" stays even
    though "kim" is a Turkish stopword), and a one-word run goes altogether.
    Apostrophe suffixes go (``Kore'ye`` -> ``Kore``): who and where, what a
    journalist reads first.
    """
    code = _lang_code(lang)
    text = repair_text(text)
    lowercase = {casefold(w, code) for w in _WORD_SPAN.findall(text) if w[0].islower()}
    runs: list[tuple[list[str], bool]] = []  # (words, starts a sentence)
    previous_end = 0
    for match in _WORD_SPAN.finditer(text):
        word = _APOSTROPHES.sub("'", match.group()).split("'")[0].rstrip(".-")
        gap = text[previous_end : match.start()]
        previous_end = match.end()
        if not word or not word[0].isupper():
            runs.append(([], False))  # a lowercase word ends the run before it
            continue
        if runs and runs[-1][0] and not gap.strip() and "\n" not in gap:
            runs[-1][0].append(word)
            continue
        before = text[: match.start()].rstrip()
        runs.append(([word], not before or before[-1] in _SENTENCE_END))
    found: dict[tuple[str, ...], None] = {}
    for words, at_sentence_start in runs:
        while at_sentence_start and words and casefold(words[0], code) in lowercase:
            words = words[1:]
            at_sentence_start = False
        if words and len(" ".join(words)) > 1 and not (len(words) == 1 and at_sentence_start):
            found.setdefault(tuple(words))
    return list(found)


def shared_names(
    first: list[tuple[str, ...]], second: list[tuple[str, ...]], lang: str | None = None
) -> list[str]:
    """The parts of ``first``'s names whose words are name words of ``second`` too.

    Matching by word lets "Vladimir Putin" meet "Putin", in ``first``'s order.
    """
    code = _lang_code(lang)
    other = {casefold(word, code) for run in second for word in run}
    shared: dict[str, str] = {}
    for run in first:
        part: list[str] = []
        for word in (*run, None):
            if word is not None and casefold(word, code) in other:
                part.append(word)
                continue
            if part:
                shown = " ".join(part)
                shared.setdefault(casefold(shown, code), shown)
                part = []
    # Drop a name inside a longer shared one ("Putin" when "Vladimir Putin" is there).
    keys = list(shared)
    return [
        shown
        for key, shown in shared.items()
        if not any(key != longer and f" {key} " in f" {longer} " for longer in keys)
    ]


def numbers(text: str) -> list[str]:
    """Numbers of two or more characters (dates, counts, magnitudes), in order, each once."""
    found = (m.group() for m in _NUMBER.finditer(repair_text(text)))
    return list(dict.fromkeys(v for v in found if len(v) >= 2))
