"""Tests for the public pipeline: cluster, StoryClusterer, compare, score_pairs, as_documents."""

from __future__ import annotations

import gc
import json
import pickle
import random
from datetime import datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dedup
import dedup.analysis as analysis_module
from dedup import (
    ConfigError,
    DedupError,
    Document,
    DuplicateIdError,
    StoryClusterer,
    cluster,
    compare,
    score_pairs,
)
from dedup.params import resolve_params
from dedup.pipeline import as_documents

ARTICLE = (
    "A strong earthquake struck the western coast of Turkey on Friday afternoon, shaking "
    "buildings in Izmir and sending residents running into the streets. The disaster agency "
    "said the quake had a magnitude of six point six and was centred in the Aegean Sea north "
    "of the island of Samos. Rescue teams searched collapsed apartment blocks through the "
    "night, and hospitals treated hundreds of injured people. Officials confirmed that at "
    "least twenty people had died, and warned that the toll could rise as crews reached "
    "damaged villages near the coast."
)
ONE_WORD_CHANGED = ARTICLE.replace("hundreds of injured", "dozens of injured")
UNRELATED = (
    "The central bank left its benchmark interest rate unchanged on Thursday, saying that "
    "inflation was easing more slowly than expected and that policy would stay tight for "
    "longer. Markets had priced in a small cut, and the currency strengthened after the "
    "announcement. Economists said the decision reflected worries about energy prices and "
    "wage growth, and most now expect the first reduction in borrowing costs only late next "
    "year, once the committee sees firmer evidence that price pressures are fading across "
    "the economy."
)

WORDS = ["quake", "izmir", "rescue", "bank", "rates", "inflation", "election", "vote", "storm"]


def partition_by_id(result) -> set[frozenset[str]]:
    return {frozenset(result.documents[i].id for i in c.members) for c in result.clusters}


def check_result_shape(result, docs: list[Document]) -> None:
    """Every input document exactly once, in input order, with consistent labels."""
    n = len(docs)
    assert len(result) == n
    assert result.labels.shape == (n,)
    assert [d.id for d in result.documents] == [d.id for d in docs]
    assert list(result.documents) == docs
    members = sorted(i for c in result.clusters for i in c.members)
    assert members == list(range(n))
    for label, c in enumerate(result.clusters):
        assert c.label == label
        assert list(c.members) == sorted(c.members)
        assert c.representative in c.members
        assert len(c.similarities) == c.size
        assert all(result.labels[i] == label for i in c.members)
        assert result.cluster_of(c.members[0]) is c
    sizes = [(-c.size, c.members[0]) for c in result.clusters]
    assert sizes == sorted(sizes)  # largest first, ties by first member
    assert len(result.flags) == n


@st.composite
def documents(draw, max_size=10):
    n = draw(st.integers(0, max_size))
    ids = draw(
        st.lists(
            st.text("abcdefgh0123", min_size=1, max_size=4), min_size=n, max_size=n, unique=True
        )
    )
    docs = []
    for doc_id in ids:
        words = draw(st.lists(st.sampled_from(WORDS), max_size=12))
        docs.append(Document(id=doc_id, text=" ".join(words), lang="en"))
    return docs


@settings(max_examples=50, deadline=None)
@given(docs=documents(), preset=st.sampled_from(["stories", "duplicates"]))
def test_every_document_appears_exactly_once(docs, preset):
    result = cluster(docs, preset)
    check_result_shape(result, docs)


@settings(max_examples=50, deadline=None)
@given(docs=documents(), preset=st.sampled_from(["stories", "duplicates"]), seed=st.randoms())
def test_partition_does_not_depend_on_input_order(docs, preset, seed):
    shuffled = list(docs)
    seed.shuffle(shuffled)
    first, second = cluster(docs, preset), cluster(shuffled, preset)
    check_result_shape(second, shuffled)
    assert partition_by_id(first) == partition_by_id(second)


@settings(max_examples=30, deadline=None)
@given(docs=documents(), seed=st.integers(0, 2**32 - 1))
def test_deterministic_for_a_seed(docs, seed):
    first = cluster(docs, seed=seed)
    second = cluster(docs, seed=seed)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert first.clusters == second.clusters


def test_strings_dicts_and_documents_are_accepted():
    result = cluster(
        [
            ARTICLE,
            {"id": "copy", "text": ARTICLE, "title": "Quake", "published": datetime(2020, 10, 30)},
            Document(id="other", text=UNRELATED),
        ]
    )
    assert [d.id for d in result.documents] == ["0", "copy", "other"]
    assert result.documents[1].title == "Quake"
    assert result.labels[0] == result.labels[1] != result.labels[2]


def test_as_documents():
    docs = as_documents(["a", {"text": "b", "id": 7, "section": "world"}, Document("x", "c")])
    assert [d.id for d in docs] == ["0", "7", "x"]
    assert docs[1].extra == {"section": "world"}
    with pytest.raises(ConfigError):
        as_documents([3])
    with pytest.raises(ConfigError):
        as_documents([{"id": "no text"}])


@pytest.mark.parametrize(
    "docs",
    [
        [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}],
        [Document("1", "x"), "y"],  # a string's id is its position: "1"
    ],
)
def test_duplicate_ids_are_rejected(docs):
    with pytest.raises(DuplicateIdError):
        cluster(docs)
    with pytest.raises(DedupError):
        as_documents(docs)


def test_text_with_no_usable_words_is_an_empty_singleton():
    result = cluster(["!!!", "", ARTICLE, ONE_WORD_CHANGED, "   "])
    assert result.flags[0] == ("empty",)
    assert result.flags[1] == ("empty",)
    assert result.flags[4] == ("empty",)
    assert result.flags[2] == result.flags[3] == ()
    for i in (0, 1, 4):
        assert result.cluster_of(i).members == (i,)
    assert result.labels[2] == result.labels[3]


@pytest.mark.parametrize("enabled", [True, False])
def test_the_garbage_collector_is_paused_during_a_run_and_restored(enabled):
    docs = ["Putin visits Pyongyang for talks with Kim", "Putin in Pyongyang for talks with Kim"]
    seen = []
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        dedup.cluster(docs, progress=lambda *_: seen.append(gc.isenabled()), jobs=1)
        assert gc.isenabled() == enabled
        with pytest.raises(dedup.ConfigError):
            dedup.cluster(docs, jobs=0)
        assert gc.isenabled() == enabled
    finally:
        gc.enable() if was else gc.disable()
    assert seen and not any(seen)


def test_no_documents():
    result = cluster([])
    assert len(result) == 0 and result.clusters == () and result.labels.size == 0


@pytest.mark.parametrize(
    "options",
    [
        {"bogus": 1},
        {"threshold": 0.0},
        {"linkage": "complete"},
        {"shingle": "line"},
        {"single_word_keywords": "yes"},
    ],
)
def test_bad_options_are_config_errors(options):
    with pytest.raises(ConfigError):
        cluster(["a b c"], **options)
    with pytest.raises(ConfigError):
        StoryClusterer(**options).fit(["a b c"])


def test_unknown_preset():
    with pytest.raises(ConfigError):
        cluster(["a b c"], "nonsense")


def test_duplicates_preset_groups_copies_and_light_edits():
    assert len(ARTICLE.split()) >= 75
    result = cluster([ARTICLE, UNRELATED, ARTICLE, ONE_WORD_CHANGED], "duplicates")
    assert result.labels[0] == result.labels[2] == result.labels[3]
    assert result.labels[1] != result.labels[0]
    assert result.cluster_of(1).members == (1,)
    assert result.params["preset"] == "duplicates"


def test_stories_preset_groups_copies_and_keeps_unrelated_apart():
    result = cluster([ARTICLE, UNRELATED, ONE_WORD_CHANGED])
    assert result.labels[0] == result.labels[2] != result.labels[1]


def test_high_lsh_threshold_with_few_permutations():
    result = cluster([ARTICLE, ARTICLE, UNRELATED], num_perm=8, lsh_threshold=0.9)
    assert result.labels[0] == result.labels[1] != result.labels[2]


def test_story_clusterer():
    docs = [ARTICLE, UNRELATED, ONE_WORD_CHANGED, "!!!"]
    model = StoryClusterer("duplicates", seed=3)
    assert model.fit(docs) is model
    np.testing.assert_array_equal(model.labels_, cluster(docs, "duplicates", seed=3).labels)
    assert len(model.result_) == 4
    np.testing.assert_array_equal(model.fit_predict(docs), model.labels_)
    np.testing.assert_array_equal(StoryClusterer().fit(docs).labels_, cluster(docs).labels)


def test_compare_identical_short_texts():
    text = "Strong earthquake hits Izmir, rescue teams search collapsed buildings"
    result = compare(text, text)
    assert result.score == pytest.approx(1.0)
    assert result.same_story is True
    assert result.cosine == pytest.approx(1.0)
    assert result.estimated_jaccard == 1.0
    assert result.exact_jaccard == 1.0
    assert result.days_apart is None
    assert result.shared_terms


def test_compare_identical_long_texts_are_discounted_but_cosine_one():
    result = compare(ARTICLE, ARTICLE)
    assert result.cosine == pytest.approx(1.0)
    assert 0.0 < result.score < 1.0  # length_factor: more distinct terms than the reference
    assert compare(ARTICLE, ARTICLE, length_reference=0.0).score == pytest.approx(1.0)


def test_compare_unrelated_texts():
    result = compare(ARTICLE, UNRELATED)
    assert result.score < 0.05
    assert result.same_story is False
    assert result.exact_jaccard < 0.05


def test_compare_reports_days_apart_and_applies_time_factor():
    first = {"text": ARTICLE, "published": datetime(2020, 1, 1)}
    late = {"text": ARTICLE, "published": datetime(2020, 7, 1)}
    near = {"text": ARTICLE, "published": datetime(2020, 1, 2)}
    far_result = compare(first, late, length_reference=0.0)
    near_result = compare(first, near, length_reference=0.0)
    assert near_result.days_apart == pytest.approx(1.0, abs=0.05)
    assert near_result.score == pytest.approx(1.0)
    assert far_result.days_apart > 150
    assert far_result.score < 0.01


def test_score_pairs_matches_compare_for_one_pair():
    pairs = [(ARTICLE, ONE_WORD_CHANGED)]
    got = score_pairs(pairs)
    assert got.shape == (1,)
    assert got[0] == pytest.approx(compare(ARTICLE, ONE_WORD_CHANGED).score)
    both = score_pairs([(ARTICLE, ONE_WORD_CHANGED), (ARTICLE, UNRELATED)], "duplicates")
    assert both[0] > 0.5 > both[1]


# --- Real data -----------------------------------------------------------------------


def test_seeds_jsonl_matches_gold_events(shared_data):
    seeds = shared_data / "seeds"
    docs = dedup.read_documents(seeds / "seeds.jsonl")
    gold = {}
    with open(seeds / "gold.jsonl", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            gold[record["id"]] = record["event"]
    assert sorted(gold) == sorted(d.id for d in docs)
    result = cluster(docs)
    expected: dict[str, set[str]] = {}
    for doc_id, event in gold.items():
        expected.setdefault(event, set()).add(doc_id)
    assert partition_by_id(result) == {frozenset(g) for g in expected.values()}


def test_seeds_directory(shared_data):
    docs = dedup.read_documents(shared_data / "seeds")
    assert len(docs) == 5
    result = cluster(docs)
    position = {d.id[:3]: i for i, d in enumerate(result.documents)}
    assert result.cluster_of(position["002"]).size == 1
    assert result.labels[position["001"]] == result.labels[position["003"]]


def test_shuffled_real_data_gives_the_same_partition(shared_data):
    docs = dedup.read_documents(shared_data / "seeds" / "seeds.jsonl")
    shuffled = list(docs)
    random.Random(5).shuffle(shuffled)
    assert partition_by_id(cluster(docs)) == partition_by_id(cluster(shuffled))


def test_shuffled_input_gives_each_document_the_same_similarity_and_representative(shared_data):
    docs = dedup.read_documents(shared_data / "ecbplus" / "ecbplus.jsonl")[:300]
    shuffled = list(docs)
    random.Random(7).shuffle(shuffled)

    def by_id(result):
        out = {}
        for c in result.clusters:
            for member, similarity in zip(c.members, c.similarities, strict=True):
                doc_id = result.documents[member].id
                out[doc_id] = (similarity, result.documents[c.representative].id)
        return out

    first, second = by_id(cluster(docs)), by_id(cluster(shuffled))
    assert first == second
    assert any(similarity < 1.0 for similarity, _ in first.values())


@pytest.mark.parametrize("single_words", [True, False])
def test_stories_keywords_are_single_words(shared_data, monkeypatch, single_words):
    import dedup.pipeline as pipeline_module
    from dedup.analysis import analyse_terms
    from dedup.shingle import term_hashes

    docs = dedup.read_documents(shared_data / "ecbplus" / "ecbplus.jsonl")[:200]
    chosen: list[np.ndarray] = []
    top_features = pipeline_module.top_features

    def spy(*args):
        chosen.extend(top_features(*args))
        return chosen

    monkeypatch.setattr(pipeline_module, "top_features", spy)
    cluster(docs, jobs=2, single_word_keywords=single_words)
    keywords = np.concatenate(chosen)
    items = [(d.text, d.title, d.lang) for d in docs]
    words = np.concatenate([term_hashes(t) for t in analyse_terms(items, None, True, True)])
    is_word = np.isin(keywords, words)
    assert len(chosen) == len(docs) and keywords.size > 20 * len(docs)
    # Without the rule, bigrams are a good share of the keywords.
    assert is_word.all() if single_words else is_word.mean() < 0.8


def test_worker_processes_give_the_same_result(monkeypatch):
    # Small chunks so that three worker tasks run even on a small input.
    monkeypatch.setattr(analysis_module, "_ANALYSE_CHUNK", (7, 7))
    words = [
        "quake",
        "izmir",
        "rates",
        "bank",
        "summit",
        "seoul",
        "fire",
        "forest",
        "transfer",
        "club",
    ]
    rng = np.random.default_rng(3)
    docs = [" ".join(rng.choice(words, size=12)) + f" item{k % 5}" for k in range(20)]
    one = dedup.cluster(docs, jobs=1)
    two = dedup.cluster(docs, jobs=2)
    np.testing.assert_array_equal(one.labels, two.labels)
    assert one.stats["candidate_pairs"] == two.stats["candidate_pairs"]
    assert len({int(x) for x in one.labels}) < len(docs)  # something was grouped


def test_a_stream_clusters_as_a_list_does_and_keep_text_false_keeps_previews(
    shared_data, monkeypatch
):
    # Small chunks: the stream is read in many pieces while workers analyse.
    monkeypatch.setattr(analysis_module, "_ANALYSE_CHUNK", (50, 50))
    path = shared_data / "ecbplus" / "ecbplus.jsonl"
    docs = dedup.read_documents(path)
    listed = dedup.cluster(docs, jobs=2)
    read = []

    def stream():
        for doc in dedup.iter_documents(path):
            read.append(doc.id)
            yield doc

    streamed = dedup.cluster(stream(), jobs=2, keep_text=False)
    assert read == [d.id for d in docs]  # read once, in order
    np.testing.assert_array_equal(listed.labels, streamed.labels)
    assert listed.stats["links"] == streamed.stats["links"]
    assert [c.similarities for c in listed.clusters] == [c.similarities for c in streamed.clusters]
    for full, kept in zip(docs, streamed.documents, strict=True):
        assert (kept.id, kept.title, kept.published) == (full.id, full.title, full.published)
        assert kept.text == full.text[:200] and kept.extra == {}
    assert pickle.loads(pickle.dumps(streamed)).labels.tolist() == streamed.labels.tolist()
    assert any(len(d.text) > 200 for d in docs)


def test_a_bad_record_in_a_stream_raises_its_error(tmp_path):
    path = tmp_path / "docs.jsonl"
    lines = [json.dumps({"id": str(k), "text": f"story {k}"}) for k in range(3000)]
    path.write_text("\n".join(lines[:2500] + ["{broken"] + lines[2500:]) + "\n")
    with pytest.raises(dedup.InputError, match="docs.jsonl:2501"):
        dedup.cluster(dedup.iter_documents(path), jobs=2)


def test_jobs_must_be_positive():
    with pytest.raises(ConfigError):
        dedup.cluster(["a b c"], jobs=0)


def test_compare_puts_shared_names_numbers_and_dates_first():
    first = {
        "text": "Officials said Vladimir Putin met Kim Jong Un in Pyongyang. "
        "The two leaders signed 12 agreements in 2024.",
        "published": "2024-06-19",
    }
    second = {
        "text": "Talks between Putin and Kim ended in Pyongyang with 12 agreements, "
        "officials said.",
        "published": "2024-06-20",
    }
    comparison = compare(first, second)
    assert comparison.shared_names == ("Putin", "Kim", "Pyongyang")
    assert comparison.shared_numbers == ("12",)
    assert comparison.days_apart == 1.0


WORDS = ["kim", "jong", "putin", "pyongyang", "visit", "summit", "rates", "bank", "the", "a"]


@settings(max_examples=60, deadline=None)
@given(
    texts=st.lists(
        st.lists(st.sampled_from(WORDS), max_size=9).map(" ".join), min_size=1, max_size=8
    ),
    shingle=st.sampled_from(["word", "char"]),
    shingle_size=st.integers(1, 4),
    ngrams=st.integers(1, 3),
    similarity=st.sampled_from(["cosine", "jaccard"]),
)
def test_batched_analysis_equals_the_per_document_functions(
    texts, shingle, shingle_size, ngrams, similarity
):
    from dedup.analysis import analyse_terms, hashed_analysis
    from dedup.shingle import shingle_hashes, term_hashes
    from dedup.vectors import counted, feature_hashes

    params = resolve_params(
        lang="en",
        shingle=shingle,
        shingle_size=shingle_size,
        tfidf_ngrams=ngrams,
        similarity=similarity,
    )
    items = [(text, None, None) for text in texts]
    got, words = hashed_analysis(items, params)
    term_lists = analyse_terms(items, "en", True, True)
    # Keywords are picked among single words only where the run signs keywords.
    all_words = [term_hashes(terms) for terms in term_lists] if similarity == "cosine" else []
    want_words = np.unique(np.concatenate([np.empty(0, np.uint32), *all_words]))
    np.testing.assert_array_equal(words, want_words)
    assert words.dtype == np.uint32
    for terms, (hash_set, features, counts, distinct) in zip(term_lists, got, strict=True):
        np.testing.assert_array_equal(hash_set, shingle_hashes(terms, shingle, shingle_size))
        want = feature_hashes(terms, ngrams) if similarity == "cosine" else np.empty(0)
        want_features, want_counts = counted(want)
        np.testing.assert_array_equal(features, want_features)
        np.testing.assert_array_equal(counts, want_counts)
        assert distinct == len(set(terms))


def test_pairs_a_year_apart_are_never_proposed():
    text = "Quake hits Izmir, killing two; rescuers search the rubble in Bayrakli"
    start = datetime(2024, 1, 1)
    docs = [
        {"id": str(k), "text": f"{text} (report {k})", "published": start + timedelta(days=400 * k)}
        for k in range(4)
    ]
    result = dedup.cluster(docs, jobs=1)
    # The same words, but the date decay alone rules a link out: LSH skips them.
    assert result.stats["candidate_pairs"] == result.stats["scored_pairs"] == 0
    assert len(set(result.labels.tolist())) == 4
    undated = dedup.cluster(docs, jobs=1, time_scale_days=0)  # dates ignored: all pair
    assert undated.stats["candidate_pairs"] == 6 and len(set(undated.labels.tolist())) == 1
    near = [{**doc, "published": start} for doc in docs]
    together = dedup.cluster(near, jobs=1)
    assert together.stats["scored_pairs"] == 6 and len(set(together.labels.tolist())) == 1
