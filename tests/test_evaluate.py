"""Tests for dedup.evaluate: the contingency-table scores against hand and brute-force values."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from dedup.errors import ConfigError
from dedup.evaluate import Scores, score


def assert_same_scores(first: Scores, second: Scores) -> None:
    """Equal up to float summation order (the contingency table's order follows the labels)."""
    assert first.as_dict() == pytest.approx(second.as_dict(), abs=1e-12)


def test_hand_computed_example():
    # predicted: P0 = {0, 1, 2, 3}, P1 = {4}
    # gold:      G0 = {0, 1}, G1 = {2, 3}, G2 = {4}
    # B-cubed precision: items 0-3 share their predicted cluster of 4 with 2 of the same
    #   gold: 2/4 each; item 4: 1/1. (4 * 0.5 + 1) / 5 = 0.6
    # B-cubed recall: every gold cluster lies inside one predicted cluster: 1.0
    # B-cubed F1: 2 * 0.6 * 1 / 1.6 = 0.75
    # Pairwise: predicted pairs C(4,2) = 6; gold pairs 1 + 1 = 2; together {0,1}, {2,3} = 2
    #   precision 2/6, recall 2/2, F1 2 * (1/3) * 1 / (4/3) = 0.5
    s = score([0, 0, 0, 0, 1], [0, 0, 1, 1, 2])
    assert s.bcubed_precision == pytest.approx(0.6)
    assert s.bcubed_recall == pytest.approx(1.0)
    assert s.bcubed_f1 == pytest.approx(0.75)
    assert s.pairwise_precision == pytest.approx(1 / 3)
    assert s.pairwise_recall == pytest.approx(1.0)
    assert s.pairwise_f1 == pytest.approx(0.5)
    assert (s.predicted_clusters, s.gold_clusters, s.documents) == (2, 3, 5)


def test_hand_computed_example_swapped():
    # Swapping predicted and gold swaps precision and recall.
    s = score([0, 0, 1, 1, 2], [0, 0, 0, 0, 1])
    assert s.bcubed_precision == pytest.approx(1.0)
    assert s.bcubed_recall == pytest.approx(0.6)
    assert s.pairwise_precision == pytest.approx(1.0)
    assert s.pairwise_recall == pytest.approx(1 / 3)
    assert (s.predicted_clusters, s.gold_clusters) == (3, 2)


def test_perfect_clustering_scores_one_everywhere():
    s = score(["x", "x", "y", "z", "z", "z"], [5, 5, 9, 1, 1, 1])
    for name in (
        "bcubed_precision",
        "bcubed_recall",
        "bcubed_f1",
        "pairwise_precision",
        "pairwise_recall",
        "pairwise_f1",
        "ari",
        "nmi",
    ):
        assert getattr(s, name) == pytest.approx(1.0), name


def test_all_singletons_have_full_precision():
    gold = [0, 0, 0, 1, 1, 2]
    s = score(list(range(6)), gold)
    assert s.bcubed_precision == 1.0
    assert s.pairwise_precision == 1.0
    # B-cubed recall: (3 * 1/3 + 2 * 1/2 + 1) / 6 = 0.5; no gold pair is found.
    assert s.bcubed_recall == pytest.approx(0.5)
    assert s.pairwise_recall == 0.0
    assert s.pairwise_f1 == 0.0


def test_one_big_cluster_has_full_recall():
    s = score([0] * 5, [0, 0, 1, 2, 2])
    assert s.bcubed_recall == 1.0
    assert s.pairwise_recall == 1.0
    # Pairwise precision: (1 + 1) / C(5, 2) = 0.2
    assert s.pairwise_precision == pytest.approx(0.2)


def test_label_types_do_not_matter():
    as_ints = score([0, 0, 1, 2, 2, 2], [1, 1, 1, 2, 2, 3])
    as_strs = score(["a", "a", "b", "c", "c", "c"], ["e1", "e1", "e1", "e2", "e2", "e3"])
    as_mixed = score([None, None, 1.5, (1, 2), (1, 2), (1, 2)], [True, True, True, 7, 7, "q"])
    assert_same_scores(as_ints, as_strs)
    assert_same_scores(as_ints, as_mixed)


def test_sklearn_scores_are_consistent():
    rng = np.random.default_rng(4)
    predicted = rng.integers(0, 4, size=40).tolist()
    gold = rng.integers(0, 5, size=40).tolist()
    s = score(predicted, gold)
    assert s.ari == pytest.approx(adjusted_rand_score(gold, predicted))
    assert s.nmi == pytest.approx(normalized_mutual_info_score(gold, predicted))


def test_length_mismatch_and_nothing_to_score():
    with pytest.raises(ConfigError):
        score([0, 1], [0, 1, 2])
    with pytest.raises(ConfigError):
        score([], [])


def test_as_dict():
    s = score([0, 1], [0, 1])
    d = s.as_dict()
    assert isinstance(s, Scores)
    assert d["documents"] == 2 and d["bcubed_f1"] == 1.0
    assert set(d) == {
        "bcubed_precision",
        "bcubed_recall",
        "bcubed_f1",
        "pairwise_precision",
        "pairwise_recall",
        "pairwise_f1",
        "ari",
        "nmi",
        "predicted_clusters",
        "gold_clusters",
        "documents",
    }


def brute_force(predicted, gold):
    """O(n^2) definitions straight from the papers."""
    n = len(gold)
    same_p = [[predicted[i] == predicted[j] for j in range(n)] for i in range(n)]
    same_g = [[gold[i] == gold[j] for j in range(n)] for i in range(n)]
    bp = sum(
        sum(same_p[i][j] and same_g[i][j] for j in range(n)) / sum(same_p[i]) for i in range(n)
    )
    br = sum(
        sum(same_p[i][j] and same_g[i][j] for j in range(n)) / sum(same_g[i]) for i in range(n)
    )
    pairs = list(itertools.combinations(range(n), 2))
    pp_n = sum(same_p[i][j] for i, j in pairs)
    pg_n = sum(same_g[i][j] for i, j in pairs)
    both = sum(same_p[i][j] and same_g[i][j] for i, j in pairs)
    return bp / n, br / n, both / pp_n if pp_n else 1.0, both / pg_n if pg_n else 1.0


@settings(max_examples=100, deadline=None)
@given(labels=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=30))
def test_scores_equal_brute_force(labels):
    predicted = [p for p, _ in labels]
    gold = [g for _, g in labels]
    s = score(predicted, gold)
    bp, br, pp, pr = brute_force(predicted, gold)
    assert s.bcubed_precision == pytest.approx(bp)
    assert s.bcubed_recall == pytest.approx(br)
    assert s.pairwise_precision == pytest.approx(pp)
    assert s.pairwise_recall == pytest.approx(pr)
    f1 = 0.0 if bp + br == 0 else 2 * bp * br / (bp + br)
    assert s.bcubed_f1 == pytest.approx(f1)
    assert s.ari == pytest.approx(adjusted_rand_score(gold, predicted))
    assert s.nmi == pytest.approx(normalized_mutual_info_score(gold, predicted))
    assert s.predicted_clusters == len(set(predicted))
    assert s.gold_clusters == len(set(gold))
    # Renaming the clusters changes nothing.
    renamed = score([f"p{x * 7}" for x in predicted], [-g for g in gold])
    assert_same_scores(renamed, s)


def test_distinct_labels_with_equal_str_stay_distinct():
    s = score([1, "1"], ["a", "b"])
    assert s.predicted_clusters == 2
    assert s.bcubed_precision == 1.0


def test_cluster_errors_rank_merged_and_split_by_documents_outside_the_largest_part():
    from dedup.evaluate import cluster_errors

    # predicted cluster 0 merges events a (3) and b (1); event c is split 2 + 2 + 1.
    predicted = [0, 0, 0, 0, 1, 1, 2, 2, 3, 4]
    gold = ["a", "a", "a", "b", "c", "c", "c", "c", "c", "d"]
    merged, split = cluster_errors(predicted, gold)
    assert [(e.label, e.size, e.wrong) for e in merged] == [(0, 4, 1)]
    assert merged[0].parts == (("a", (0, 1, 2)), ("b", (3,)))
    assert [(e.label, e.size, e.wrong) for e in split] == [("c", 5, 3)]
    assert split[0].parts == ((1, (4, 5)), (2, (6, 7)), (3, (8,)))
    assert cluster_errors(predicted, gold, limit=0) == ([], [])
    assert cluster_errors(gold, gold) == ([], [])  # a perfect clustering has no errors
    with pytest.raises(ConfigError):
        cluster_errors([0], ["a", "b"])
