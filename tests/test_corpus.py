"""The synthetic benchmark corpus (benchmarks/corpus.py): shape, ground truth and determinism."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections import defaultdict
from datetime import date
from difflib import SequenceMatcher
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIELDS = {"id", "title", "text", "source", "published", "lang", "event", "topic", "copy_of"}


@pytest.fixture(scope="module")
def corpus() -> ModuleType:
    """benchmarks/corpus.py as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("synthetic_corpus", ROOT / "benchmarks/corpus.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    if (
        not (module.DATA / module.ECBPLUS).is_file()
        or not (module.DATA / module.GOOGLENEWS).is_file()
    ):
        pytest.skip(f"shared data not found at {module.DATA}")
    return module


@pytest.fixture(scope="module")
def articles(corpus: ModuleType) -> list[dict]:
    """1,200 articles in chunks of 150, so copies and ids cross several chunk boundaries."""
    chunk, corpus.CHUNK = corpus.CHUNK, 150
    try:
        return list(corpus.iter_articles(1200, seed=7))
    finally:
        corpus.CHUNK = chunk


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def test_same_seed_same_bytes_other_seed_other_bytes(corpus: ModuleType, tmp_path: Path) -> None:
    paths = [tmp_path / f"{k}.jsonl" for k in range(3)]
    counts = [corpus.generate(200, seed, path) for seed, path in zip((1, 1, 2), paths, strict=True)]
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()
    assert counts[0] == counts[1] and counts[0]["articles"] == 200


def test_iter_articles_are_the_written_lines(corpus: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    corpus.generate(250, 3, path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == list(corpus.iter_articles(250, 3))


@pytest.mark.parametrize("size", [1, 2, 20, 333])
def test_requested_size_is_produced(corpus: ModuleType, size: int) -> None:
    assert sum(1 for _ in corpus.iter_articles(size, seed=size)) == size


def test_every_article_has_the_fields(articles: list[dict]) -> None:
    assert len(articles) == 1200
    for a in articles:
        assert set(a) == FIELDS
        assert a["lang"] == "en" and a["title"] and a["source"]
        assert 800 < len(a["text"]) < 4000  # news length; truncated copies are the short ones
        date.fromisoformat(a["published"])
    ids = [a["id"] for a in articles]
    assert len(set(ids)) == len(ids)
    assert sorted(ids) == ids  # numbered in file order
    assert 150 < len({a["source"] for a in articles}) <= 200


def test_stories_are_heavy_tailed_with_singletons(articles: list[dict]) -> None:
    sizes = defaultdict(int)
    for a in articles:
        sizes[a["event"]] += 1
    singletons = sum(1 for n in sizes.values() if n == 1)
    assert 0.3 < singletons / len(articles) < 0.4
    assert sum(1 for n in sizes.values() if 2 <= n <= 5) > 20
    assert max(sizes.values()) >= 15
    topics = defaultdict(set)
    for a in articles:
        topics[a["topic"]].add(a["event"])
    assert sum(1 for events in topics.values() if len(events) > 1) > 20


def test_same_event_articles_within_three_days(articles: list[dict]) -> None:
    days = defaultdict(list)
    for a in articles:
        days[a["event"]].append(date.fromisoformat(a["published"]))
    assert all((max(d) - min(d)).days <= 3 for d in days.values())
    spread = [min(d) for d in days.values()]
    assert (max(spread) - min(spread)).days > 365  # stories spread over the years


def test_copies_are_near_identical_to_their_source(articles: list[dict]) -> None:
    by_id = {a["id"]: a for a in articles}
    copies = [a for a in articles if a["copy_of"]]
    assert 0.08 < len(copies) / len(articles) < 0.12
    for copy in copies:
        source = by_id[copy["copy_of"]]
        assert source["copy_of"] is None
        assert (copy["event"], copy["topic"], copy["title"]) == (
            source["event"],
            source["topic"],
            source["title"],
        )
        assert copy["text"] != source["text"]
        a, b = _words(copy["text"]), _words(source["text"])
        assert len(a & b) / len(a | b) > 0.5
        # The copy is the source's running text: a truncated copy is a prefix, and beyond a
        # boilerplate header/footer at most 8 words differ.
        x, y = copy["text"].split(), source["text"].split()
        blocks = SequenceMatcher(None, x, y, autojunk=False).get_matching_blocks()
        assert sum(b.size for b in blocks) > 0.75 * min(len(x), len(y))


def test_story_articles_share_story_words(articles: list[dict]) -> None:
    """Two reports of one story overlap far more than two articles of different stories."""
    by_event = defaultdict(list)
    for a in articles:
        if not a["copy_of"]:
            by_event[a["event"]].append(_words(a["text"]))
    pairs = [docs[:2] for docs in by_event.values() if len(docs) >= 2]
    loners = [docs[0] for docs in by_event.values()]

    def jaccard(x: set[str], y: set[str]) -> float:
        return len(x & y) / len(x | y)

    same = sum(jaccard(x, y) for x, y in pairs) / len(pairs)
    other = sum(jaccard(x, y) for x, y in zip(loners, loners[1:], strict=False)) / (len(loners) - 1)
    assert same > other + 0.04, (same, other)


@pytest.mark.parametrize("size", [10_000, 200_000])
def test_story_words_stay_rare_as_the_corpus_grows(corpus: ModuleType, size: int) -> None:
    # Each rare story word is drawn for about RARE_REUSE stories at any size, not for more
    # and more of them: a large corpus's stories are as distinct as a small one's.
    plan = corpus.Plan(size, 1, corpus.load_vocabulary())
    rare = plan.event_words[:, 5:]
    per_word = rare.size / len(set(rare.ravel().tolist()))
    assert per_word <= corpus.RARE_REUSE + 1
    names = plan.event_words[:, :3]
    assert names.size / len(set(names.ravel().tolist())) <= 8
