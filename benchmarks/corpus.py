"""Seeded synthetic news corpora with planted stories, for speed benchmarks at any size.

Every article is background text sampled from the real English word frequencies of ECB+ and
GoogleNews-TS (read at runtime from ``../shared/data``, never copied), partly from its *domain*
(the content words of one source topic or event), with words recurring as in real text. Mixed in
are phrases of its *story* (rare words, made-up names and numbers; the gold ``event``) and of its
*topic* (words and two names shared by stories dated weeks to months apart: the hard negatives).
Story vocabulary grows with the corpus, as a real archive's does: each rare word is drawn for
about six stories at any size (made-up names join the real rare words once they run short).
Story sizes are heavy-tailed, 35% of the articles are singletons and 10% are syndicated
near-copies of a story article (boilerplate header/footer, a few words substituted, or truncated;
``copy_of`` names the source, ``null`` elsewhere).

Usage::

    python benchmarks/corpus.py --size 100000 --seed 1 --output /tmp/syn_100k.jsonl

or ``generate(size, seed, path)`` / ``iter_articles(size, seed)``. The same seed and size give a
byte-identical file (with the same numpy and source data). Articles are made and written in
chunks, so memory stays flat at any size; a copy lands within ~2,200 lines of its source.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

try:
    from orjson import dumps as _dumps
except ImportError:  # same bytes as orjson for these records: compact separators, raw UTF-8

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ECBPLUS = "ecbplus/ecbplus.jsonl"
GOOGLENEWS = "googlenews/googlenews_ts.jsonl"
WORD = re.compile(r"[A-Za-z]+(?:['’-][A-Za-z]+)*")
EPOCH = date(2023, 1, 1)

SINGLETON_SHARE = 0.35  # of all articles
COPY_SHARE = 0.10  # of all articles; copies of story articles, so they never create stories
STORY_SHARE = (0.06, 0.12)  # per-article share of story tokens: B-cubed F1 ~0.9-0.95 at 2k
PHRASE_P = (0.4, 0.35, 0.25)  # story phrases of 1, 2 or 3 words
PHRASE_MEAN = sum((i + 1) * p for i, p in enumerate(PHRASE_P))
REPEAT = 0.3  # share of background tokens that repeat an earlier word of the article
DOMAIN_SHARE = 0.25  # share of background tokens drawn from the article's domain
TOPIC_SHARE = (0.08, 0.16)  # per-article share of topic tokens
WORDS = (240, 420)  # words per article (before copy headers)
DAYS = 730  # story dates spread over two years
MAX_STORY = 150  # cap of the heavy tail, so a 2k corpus is not one giant story
EVENT_SLOTS = 30  # 3 names, 2 numbers, then 13-25 rare words
RARE_REUSE = 6  # stories per rare story word, at most: what the real rare words give 10k articles
TOPIC_SLOTS = 18  # 2 names, then 16 mid-frequency words
CHUNK = 2000  # originals per chunk: bounds memory, and how far a copy can sit from its source
# Variant v of token t is glyph v * T + t: bit 0 capitalises, v >> 1 picks the punctuation
# and the separator after it (JSON-escaped: a paragraph break is the two bytes \\n).
PUNCT = (" ", ", ", ". ", ".\\n")

SYLLABLES = str.split(
    "ka ra mo ve lin dor sa ten bri ol an ze tu mar fel is go ran wel do ki nor ash ber "
    "qui lo pa ren sol ta vi gar hel mun dri es cor ul bal tor fin ne ga ros lu"
)
PAPERS = str.split(
    "Herald Times Post Gazette Tribune Courier Chronicle Observer Journal Daily Standard "
    "Review Ledger Sentinel Dispatch Register Examiner Monitor Bulletin Express"
)
LINE = (
    b'{"id":"syn%07d","title":%s,"text":"%s","source":%s,"published":"%s","lang":"en",'
    b'"event":"e%07d","topic":"t%06d","copy_of":%s}\n'
)
HEADERS = ("{SRC} — ", "By {name} {name2}, {src}\n", "{src} staff and wire reports\n", "")
FOOTERS = (
    "\nCopyright {year} {src}. All rights reserved. This material may not be published, "
    "broadcast, rewritten or redistributed.",
    "\n(Reporting by {name} {name2}; editing by {name3})",
    "\nThis story was published from a wire agency feed without modifications to the text.",
    "",
)


@dataclass(frozen=True)
class Vocabulary:
    """Surface forms of the real words and the samples that give their frequencies."""

    words: list[str]  # index = word id; case as usually written in ECB+
    background: np.ndarray  # word ids, one per occurrence: uniform draws give Zipf frequencies
    tail: np.ndarray  # rare word ids (story vocabulary)
    mid: np.ndarray  # mid-frequency content word ids (topic vocabulary)
    domains: np.ndarray  # content word ids of each source topic/event, one after another
    domain_start: np.ndarray  # where each domain's ids start in ``domains`` (and the end)


@lru_cache(maxsize=4)
def load_vocabulary(data: Path = DATA) -> Vocabulary:
    """Count the words of the shared English data; raise FileNotFoundError when it is absent."""
    import stopwordsiso  # a dedup dependency; only used to keep function words out of topics

    cased: Counter[str] = Counter()
    ecb: Counter[str] = Counter()
    groups: dict[str, list[str]] = {}  # ECB+ topic or GoogleNews event -> its lowercase words
    for line in (data / ECBPLUS).open(encoding="utf-8"):
        record = json.loads(line)
        tokens = WORD.findall(f"{record.get('title') or ''} {record['text']}")
        cased.update(tokens)
        ecb.update(lower := [t.lower() for t in tokens])
        groups.setdefault(f"ecb {record['topic']}", []).extend(lower)
    gn: Counter[str] = Counter()
    for line in (data / GOOGLENEWS).open(encoding="utf-8"):
        record = json.loads(line)
        gn.update(lower := WORD.findall(record["text"].lower()))
        groups.setdefault(f"gn {record['event']}", []).extend(lower)
    words = sorted(w for w in ecb.keys() | gn.keys() if len(w) <= 13)  # bounds glyph width
    # GoogleNews has its stopwords stripped and a few bursty stories ("kanye", "xbox"): weighting
    # ECB+ 4x and capping GoogleNews keeps a news-like share of function words (~40% of tokens,
    # ECB+ has 55%) and no story of the source data dominates the background.
    counts = np.array([4 * ecb[w] + min(gn[w], 30) for w in words])
    # The usual case of a word in running ECB+ text; GoogleNews-only words stay lowercase.
    surface = {w.lower(): w for w, _ in sorted(cased.items(), key=lambda kv: kv[1])}
    shown = [surface.get(w, w) if cased[surface.get(w, w)] > cased[w] else w for w in words]
    total = np.array([ecb[w] + gn[w] for w in words])
    ids = np.arange(len(words))
    stop = set(stopwordsiso.stopwords("en"))
    content = np.array([3 < len(w) < 13 and w.isalpha() and w not in stop for w in words])
    index = {w: i for i, w in enumerate(words)}
    keep = [[index[w] for w in groups[g] if w in index and w not in stop] for g in sorted(groups)]
    return Vocabulary(
        words=shown,
        background=np.repeat(ids, counts).astype(np.int32),
        tail=ids[content & (total <= 8)],
        mid=ids[content & (total >= 10) & (total <= 300)],
        domains=np.concatenate(keep).astype(np.int32),
        domain_start=np.cumsum([0] + [len(d) for d in keep]),
    )


def _names(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` made-up proper names of two to four syllables (4 million possible)."""
    s = len(SYLLABLES)
    codes = rng.choice(s**4, size=n, replace=False).tolist()
    return ["".join(SYLLABLES[c // s**k % s] for k in range(2 + c % 3)).title() for c in codes]


def _numbers(rng: np.random.Generator, n: int) -> list[str]:
    """Counts, years, money and percentages as they appear in news."""
    v = rng.integers(2, 1000, n)
    kinds = rng.integers(0, 5, n).tolist()
    return [
        (f"{x}", f"{x * 37 + 1000:,}", f"{1950 + x % 75}", f"${x / 10:.1f}m", f"{x % 100}%")[k]
        for x, k in zip(v.tolist(), kinds, strict=True)
    ]


class Plan:
    """Everything but the text: events, topics, dates, sizes and which article copies which."""

    def __init__(self, size: int, seed: int, vocab: Vocabulary) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        rng = np.random.default_rng([seed, 0])
        self.size, self.seed, self.vocab = size, seed, vocab
        n_copies = round(COPY_SHARE * size) if size >= 20 else 0
        n_single = min(round(SINGLETON_SHARE * size), size - n_copies)
        n_story_docs = size - n_copies - n_single
        # Heavy tail: P(size >= s) = (2 / s) ** 1.3, so most stories have 2-5 articles.
        sizes = np.minimum(2 * rng.random(n_story_docs + 1) ** (-1 / 1.3), MAX_STORY).astype(int)
        sizes = sizes[: np.searchsorted(np.cumsum(sizes), n_story_docs) + 1]
        sizes[-1] -= sizes.sum() - n_story_docs
        if sizes[-1] < 2:  # a leftover 0 or 1 article is a singleton
            n_single, sizes = n_single + sizes[-1], sizes[:-1]
        self.counts = {"stories": len(sizes), "singletons": int(n_single), "copies": n_copies}
        self.stories, self.copies = len(sizes), n_copies
        sizes = np.concatenate([sizes, np.ones(n_single, int)])
        n_events = len(sizes)
        self.event_of = rng.permutation(np.repeat(np.arange(n_events), sizes)).astype(np.int32)
        # Copies duplicate story articles; each stays in the chunk of its source (sorted order).
        story_pos = np.flatnonzero(self.event_of < self.stories)
        self.copy_src = np.sort(rng.choice(story_pos, n_copies)) if n_copies else story_pos[:0]

        # Topics of 1-8 events (singletons too) whose dates follow one another 7-90 days apart.
        tsizes = np.minimum(1 + rng.geometric(0.4, n_events), 8)
        tsizes = tsizes[: np.searchsorted(np.cumsum(tsizes), n_events) + 1]
        tsizes[-1] -= tsizes.sum() - n_events
        first = np.cumsum(tsizes) - tsizes
        by_topic = np.repeat(np.arange(len(tsizes)), tsizes)
        gaps = rng.uniform(7, 90, n_events)
        gaps[first] = 0
        offset = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[first], tsizes)
        start = rng.random(len(tsizes)) * (DAYS - np.maximum.reduceat(offset, first))
        order = rng.permutation(n_events)  # which event takes which place in which topic
        self.topic_of = np.empty(n_events, np.int32)
        self.topic_of[order] = by_topic
        self.day_of = np.empty(n_events, np.int32)
        self.day_of[order] = (start[by_topic] + offset).astype(np.int32)

        # Tokens: real words, made-up names, numbers. A story has 3 names, 2 numbers and 13-25
        # rare words; a topic 2 names (the same two leaders) and 16 mid-frequency words.
        # A real archive's vocabulary grows with it (new people, places, terms): past what the
        # real rare words cover at RARE_REUSE stories each, made-up names join them. Recycling
        # one fixed set would make a large corpus's "rare" story words common, its planted
        # stories fainter than a small corpus's, and quality across sizes incomparable.
        n_extra = max(0, n_events * (EVENT_SLOTS - 5) // RARE_REUSE - len(vocab.tail))
        v = len(vocab.words)
        n_names = max(2000, n_events // 2)
        names = _names(rng, n_names + 600 + n_extra)
        self.words = vocab.words + names[:n_names] + _numbers(rng, 4000) + names[n_names + 600 :]
        name_ids = v + rng.integers(0, n_names, (n_events, 3))
        number_ids = v + n_names + rng.integers(0, 4000, (n_events, 2))
        story_vocab = np.concatenate([vocab.tail, v + n_names + 4000 + np.arange(n_extra)])
        rare = story_vocab[rng.integers(0, len(story_vocab), (n_events, EVENT_SLOTS - 5))]
        self.event_words = np.hstack([name_ids, number_ids, rare]).astype(np.int32)
        self.event_k = rng.integers(18, EVENT_SLOTS + 1, n_events)
        topic_names = v + rng.integers(0, n_names, (len(tsizes), 2))
        topic_mid = vocab.mid[rng.integers(0, len(vocab.mid), (len(tsizes), TOPIC_SLOTS - 2))]
        self.topic_words = np.hstack([topic_names, topic_mid]).astype(np.int32)
        self.domain_of = rng.integers(0, len(vocab.domain_start) - 1, len(tsizes))  # per topic
        self.glyphs, self.glyph_len = _glyphs(self.words)
        # ~200 outlets, a few large: the source of an article or the syndicator of a copy.
        places = names[n_names:]
        self.outlets = [
            (f"The {p} {PAPERS[i % 20]}", f"{p} News", f"{p}Wire", f"{p} {PAPERS[i % 7]}")[i % 4]
            for i, p in enumerate(places[:200])
        ]
        weight = 1 / (np.arange(200) + 5)
        self.outlet_p = weight / weight.sum()
        self.outlet_json = [_dumps(o) for o in self.outlets]
        self.people = places[200:]
        self.dates = [(EPOCH + timedelta(days=d)).isoformat().encode() for d in range(DAYS + 8)]


def _glyphs(words: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Every case/punctuation variant of every token: NUL-padded UTF-8 records, and lengths.

    Gathering records and dropping the padding builds a chunk's text in a few numpy calls;
    joining Python strings token by token took most of the run time.
    """
    caps = [w[:1].upper() + w[1:] for w in words]
    forms = [(w + p).encode() for p in PUNCT for case in (words, caps) for w in case]
    width = max(map(len, forms))
    records = np.frombuffer(b"".join(f.ljust(width, b"\0") for f in forms), f"V{width}")
    return records, np.array(list(map(len, forms)), np.int8)


def _plant(
    ids: np.ndarray,
    pos: np.ndarray,
    limit: np.ndarray,
    words: np.ndarray,
    rows: np.ndarray,
    k: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Write phrases of 1-3 consecutive slots of ``words[rows]`` at ``pos`` (before ``limit``).

    A fixed slot order makes a story's bigrams recur across its articles the way "Betty Ford
    Center" does; slots are skewed to the first ones (names, numbers), the key facts.
    """
    slot = (k * rng.random(len(pos)) ** 1.5).astype(np.int64)
    run = 1 + np.searchsorted(np.cumsum(PHRASE_P), rng.random(len(pos)), side="right")
    for q in range(len(PHRASE_P)):
        ok = (run > q) & (pos + q < limit)
        ids[pos[ok] + q] = words[rows[ok], (slot[ok] + q) % k[ok]]


def _render(plan: Plan, pieces: list[np.ndarray]) -> list[bytes]:
    """JSON-escaped UTF-8 text of each token array (variant ids), without the last separator."""
    ids = np.concatenate(pieces)
    raw = plan.glyphs[ids].view(np.uint8)
    body = raw[raw != 0].tobytes()  # no token holds a NUL: only the padding goes
    ends = np.cumsum(plan.glyph_len[ids], dtype=np.int64)[np.cumsum(list(map(len, pieces))) - 1]
    return [body[a : b - 1] for a, b in zip([0, *ends[:-1].tolist()], ends.tolist(), strict=True)]


def _syndicate(
    plan: Plan, rng: np.random.Generator, pieces: list[np.ndarray], src: list[int], by: list[int]
) -> list[bytes]:
    """Append near-copies of ``pieces[s]`` for ``s`` in ``src``; return their headers and footers.

    Outlet ``by[k]`` syndicates copy k: a boilerplate header and/or footer (returned JSON-escaped),
    a few substituted words, or truncation.
    """
    T, frames = len(plan.words), []
    for s, outlet in zip(src, by, strict=True):
        tokens = pieces[s].copy()
        ops = rng.random(3)
        if ops[0] < 0.5:  # a few words substituted, keeping case and punctuation
            at = rng.integers(0, len(tokens), rng.integers(2, 9))
            fresh = plan.vocab.background[rng.integers(0, len(plan.vocab.background), len(at))]
            tokens[at] = tokens[at] // T * T + fresh
        if ops[1] < 0.3:  # truncated to 60-90%, ending on a full stop
            tokens = tokens[: int(len(tokens) * rng.uniform(0.6, 0.9))]
            tokens[-1] = tokens[-1] % T + (tokens[-1] // T & 1) * T + 4 * T
        pieces.append(tokens)
        name = [plan.people[k] for k in rng.integers(0, len(plan.people), 3).tolist()]
        name_of = plan.outlets[outlet]
        fill = dict(src=name_of, SRC=name_of.upper(), year=2023 + int(ops[2] < 0.5))
        fill |= dict(name=name[0], name2=name[1], name3=name[2])
        header, footer = HEADERS[rng.integers(0, 4)], FOOTERS[rng.integers(0, 4)]
        if ops[0] >= 0.5 and ops[1] >= 0.3 and not header + footer:
            header = HEADERS[0]  # every copy differs from its source somehow
        frames += [_dumps(header.format(**fill))[1:-1], _dumps(footer.format(**fill))[1:-1]]
    return frames


def _chunk(plan: Plan, c: int, first_id: int) -> list[bytes]:
    """JSON lines of chunk ``c``: originals ``c * CHUNK`` onwards and their copies, shuffled."""
    rng = np.random.default_rng([plan.seed, 1, c])
    vocab, T = plan.vocab, len(plan.words)
    lo, hi = c * CHUNK, min((c + 1) * CHUNK, plan.size - plan.copies)
    events, n = plan.event_of[lo:hi], hi - lo
    lengths = rng.integers(WORDS[0], WORDS[1] + 1, n)
    ends = np.cumsum(lengths)
    total = int(ends[-1])
    owner = np.repeat(np.arange(n), lengths)
    ev = events[owner]
    ids = vocab.background[rng.integers(0, len(vocab.background), total)]
    # Part of the background comes from the article's domain (the content words of one source
    # topic or event), so articles of one domain share more than the common words of news.
    pos = np.flatnonzero(rng.random(total) < DOMAIN_SHARE)
    d = plan.domain_of[plan.topic_of[ev[pos]]]
    start, stop = vocab.domain_start[d], vocab.domain_start[d + 1]
    ids[pos] = vocab.domains[start + (rng.random(len(pos)) * (stop - start)).astype(np.int64)]
    # Words recur within an article (burstiness): some tokens repeat an earlier one, which
    # keeps the distinct words per article and the overlap of unrelated articles news-like.
    pos = np.flatnonzero(rng.random(total) < REPEAT)
    since = pos - (ends - lengths)[owner[pos]]  # tokens of the article before ``pos``
    pos, since = pos[since > 0], since[since > 0]
    ids[pos] = ids[pos - 1 - (rng.random(len(pos)) * since).astype(np.int64)]
    # One uniform draw per token: start of a story phrase, of a topic phrase, or background.
    u = rng.random(total)
    story_cut = rng.uniform(*STORY_SHARE, n)[owner] / PHRASE_MEAN
    topic_cut = story_cut + rng.uniform(*TOPIC_SHARE, n)[owner] / PHRASE_MEAN
    limit = ends[owner]
    pos = np.flatnonzero((u >= story_cut) & (u < topic_cut))
    topics = plan.topic_of[ev[pos]]
    _plant(ids, pos, limit[pos], plan.topic_words, topics, np.full(len(pos), TOPIC_SLOTS), rng)
    pos = np.flatnonzero(u < story_cut)  # after topics: a story phrase wins an overlap
    _plant(ids, pos, limit[pos], plan.event_words, ev[pos], plan.event_k[ev[pos]], rng)
    # Sentences of 8-27 words, a paragraph break after ~30% of them, commas inside.
    punct = (rng.random(total) < 0.05).astype(np.int64)
    stops = np.cumsum(rng.integers(8, 28, total // 8 + 2))
    stops = stops[stops <= total] - 1
    punct[stops] = np.where(rng.random(len(stops)) < 0.3, 3, 2)
    punct[ends - 1] = 2
    cap = np.zeros(total, np.int64)
    cap[stops[stops < total - 1] + 1] = 1
    cap[ends - lengths] = 1
    ids = ids + (cap + 2 * punct) * T
    pieces = np.split(ids, ends[:-1])

    # Copies of this chunk's story articles: header/footer, substitutions or truncation.
    srcs = plan.copy_src[np.searchsorted(plan.copy_src, lo) : np.searchsorted(plan.copy_src, hi)]
    src = np.concatenate([np.arange(n), srcs - lo]).tolist()  # whose title and event it carries
    m = len(src) - n
    outlet = rng.choice(len(plan.outlets), n + m, p=plan.outlet_p).tolist()
    day = plan.day_of[events] + rng.integers(0, 4, n)
    # A copy runs the same day or the next, still within the story's 3 days.
    late = np.minimum(day[srcs - lo] + rng.integers(0, 2, m), plan.day_of[events[srcs - lo]] + 3)
    day = np.concatenate([day, late]).tolist()
    frames = [b""] * (2 * n) + _syndicate(plan, rng, pieces, src[n:], outlet[n:])
    texts = _render(plan, pieces)

    title_ids = plan.event_words[
        events[:, None], (plan.event_k[events][:, None] * rng.random((n, 8)) ** 1.5).astype(int)
    ]
    title_ids[:, 3] = plan.topic_words[plan.topic_of[events], rng.integers(2, TOPIC_SLOTS, n)]
    titles = []
    for row, size in zip(title_ids.tolist(), rng.integers(5, 9, n).tolist(), strict=True):
        title = " ".join(plan.words[t] for t in list(dict.fromkeys(row))[:size])  # distinct
        titles.append(_dumps(title[:1].upper() + title[1:]))
    order = rng.permutation(n + m)  # output slot k holds local article order[k]
    ident = np.empty(n + m, np.int64)
    ident[order] = np.arange(n + m) + first_id
    ident = ident.tolist()
    lines = []
    for i, s in enumerate(src):
        e, copy_of = int(events[s]), b'"syn%07d"' % ident[s] if i >= n else b"null"
        text = frames[2 * i] + texts[i] + frames[2 * i + 1]
        meta = (plan.outlet_json[outlet[i]], plan.dates[day[i]], e, plan.topic_of[e], copy_of)
        lines.append(LINE % (ident[i], titles[s], text, *meta))
    return [lines[k] for k in order.tolist()]


def _lines(plan: Plan) -> Iterator[bytes]:
    """Every JSON line of the corpus, chunk by chunk, ids numbered in file order."""
    done = 0
    for c in range(-(-(plan.size - plan.copies) // CHUNK)):
        lines = _chunk(plan, c, done)
        done += len(lines)
        yield from lines


def iter_articles(size: int, seed: int = 0, data: Path = DATA) -> Iterator[dict[str, Any]]:
    """Yield ``size`` synthetic articles as dicts: the parsed lines :func:`generate` writes."""
    return map(json.loads, _lines(Plan(size, seed, load_vocabulary(data))))


def generate(size: int, seed: int, path: str | Path, data: Path = DATA) -> dict[str, int]:
    """Write ``size`` articles to ``path`` as JSON Lines; return what was planted."""
    plan = Plan(size, seed, load_vocabulary(data))
    with Path(path).open("wb") as f:
        f.writelines(_lines(plan))
    return {"articles": size, **plan.counts, "topics": len(plan.topic_words)}


def main(argv: list[str] | None = None) -> None:
    """Command line: generate a corpus and print its path, counts and seconds."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    counts = generate(args.size, args.seed, args.output, args.data)
    print(args.output)
    print(", ".join(f"{k} {v}" for k, v in counts.items()), f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
