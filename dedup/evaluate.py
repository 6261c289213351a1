"""Scores of a clustering against gold labels: B-cubed, pairwise, ARI and NMI."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from dedup.errors import ConfigError


@dataclass(frozen=True)
class Scores:
    """Agreement between predicted and gold clusterings of the same documents."""

    bcubed_precision: float
    bcubed_recall: float
    bcubed_f1: float
    pairwise_precision: float
    pairwise_recall: float
    pairwise_f1: float
    ari: float
    nmi: float
    predicted_clusters: int
    gold_clusters: int
    documents: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def _codes(labels: Sequence[Any]) -> np.ndarray:
    """Dense integer codes, one per distinct label (``1`` and ``"1"`` stay distinct)."""
    codes: dict[tuple[type, Any], int] = {}
    return np.array([codes.setdefault((type(x), x), len(codes)) for x in labels], dtype=np.int64)


def score(predicted: Sequence[Any], gold: Sequence[Any]) -> Scores:
    """Compare two labelings of the same documents (labels of any hashable type).

    Notes
    -----
    B-cubed and pairwise scores come from the contingency table of
    (predicted, gold) label pairs, so the cost is O(n + table size), not O(n^2).
    """
    if len(predicted) != len(gold):
        raise ConfigError(f"{len(predicted)} predicted labels but {len(gold)} gold labels")
    n = len(gold)
    if n == 0:
        raise ConfigError("nothing to score: no documents")
    pred, true = _codes(predicted), _codes(gold)
    cells, counts = np.unique(np.stack([pred, true]), axis=1, return_counts=True)
    counts = counts.astype(np.float64)
    pred_size = np.bincount(pred).astype(np.float64)
    true_size = np.bincount(true).astype(np.float64)
    bp = float(np.sum(counts**2 / pred_size[cells[0]]) / n)
    br = float(np.sum(counts**2 / true_size[cells[1]]) / n)
    together = float(np.sum(counts * (counts - 1)) / 2)
    pred_pairs = float(np.sum(pred_size * (pred_size - 1)) / 2)
    true_pairs = float(np.sum(true_size * (true_size - 1)) / 2)
    pp = together / pred_pairs if pred_pairs else 1.0
    pr = together / true_pairs if true_pairs else 1.0
    return Scores(
        bcubed_precision=bp,
        bcubed_recall=br,
        bcubed_f1=_f1(bp, br),
        pairwise_precision=pp,
        pairwise_recall=pr,
        pairwise_f1=_f1(pp, pr),
        ari=float(adjusted_rand_score(true, pred)),
        nmi=float(normalized_mutual_info_score(true, pred)),
        predicted_clusters=int(pred_size.size),
        gold_clusters=int(true_size.size),
        documents=n,
    )


@dataclass(frozen=True)
class ClusterError:
    """One predicted cluster that mixes events, or one gold event split over clusters.

    Attributes
    ----------
    kind : {"merged", "split"}
        ``merged``: a predicted cluster holding several gold events;
        ``split``: a gold event spread over several predicted clusters.
    label : Any
        The predicted cluster label (merged) or the gold label (split).
    size : int
        Documents in that cluster or event.
    wrong : int
        Documents outside its largest part: the cost of the error.
    parts : tuple of (label, tuple of int)
        The parts, largest first: (gold label, member indices) for a merged
        cluster, (predicted label, member indices) for a split event.
    """

    kind: str
    label: Any
    size: int
    wrong: int
    parts: tuple[tuple[Any, tuple[int, ...]], ...]


def cluster_errors(
    predicted: Sequence[Any], gold: Sequence[Any], limit: int = 5
) -> tuple[list[ClusterError], list[ClusterError]]:
    """The worst merged clusters and the worst split events, ``limit`` of each.

    Errors are ranked by ``wrong``, the documents outside the largest part
    (ties by size, then first member), so the first entries explain most of
    the lost precision (merged) and recall (split).

    Notes
    -----
    One pass to group documents by (predicted, gold) label: O(n log n).
    """
    if len(predicted) != len(gold):
        raise ConfigError(f"{len(predicted)} predicted labels but {len(gold)} gold labels")
    cells: dict[tuple[Any, Any], list[int]] = {}
    for i, key in enumerate(zip(predicted, gold, strict=True)):
        cells.setdefault(key, []).append(i)

    def worst(kind: str, outer: int) -> list[ClusterError]:
        groups: dict[Any, list[tuple[Any, tuple[int, ...]]]] = {}
        for key, members in cells.items():
            groups.setdefault(key[outer], []).append((key[1 - outer], tuple(members)))
        errors = []
        for label, parts in groups.items():
            if len(parts) < 2:
                continue
            parts.sort(key=lambda p: (-len(p[1]), p[1][0]))
            size = sum(len(m) for _, m in parts)
            errors.append(ClusterError(kind, label, size, size - len(parts[0][1]), tuple(parts)))
        errors.sort(key=lambda e: (-e.wrong, -e.size, e.parts[0][1][0]))
        return errors[:limit]

    return worst("merged", 0), worst("split", 1)
