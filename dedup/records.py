"""Immutable records that flow through the pipeline: documents in, clusters out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

import numpy as np


def parse_published(value: Any) -> datetime | None:
    """A naive UTC datetime from an ISO 8601 string, a date or a datetime.

    ``None`` and blank strings give ``None``; a trailing ``Z`` means UTC;
    aware times are converted to UTC; a date becomes midnight.

    Raises
    ------
    ValueError
        For anything else.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    moment = value
    if isinstance(value, str):
        text = value.strip()
        if text[-1] in "Zz":  # fromisoformat only accepts "Z" from Python 3.11 on
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            moment = None
    if isinstance(moment, date) and not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day)
    if not isinstance(moment, datetime):
        raise ValueError(f"invalid published date {value!r}")
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


@dataclass(frozen=True)
class Document:
    """One news article.

    Attributes
    ----------
    id : str
        Unique within a run.
    text : str
        The body; may include the title.
    title, source, url, lang : str or None
        Optional metadata. ``lang`` is an ISO 639-1 code such as ``"tr"``;
        when absent it is detected from the text.
    published : datetime or None
        Publication time as a naive UTC datetime (a date becomes midnight).
    extra : Mapping
        Every other field of the input record (for example a gold label).
    origin : str or None
        Where the record was read from, as ``"path:line"``, for messages.
    """

    id: str
    text: str
    title: str | None = None
    source: str | None = None
    published: datetime | None = None
    url: str | None = None
    lang: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)
    origin: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Cluster:
    """A group of documents judged to report the same story.

    Attributes
    ----------
    label : int
        The cluster's number, ``0`` for the largest.
    members : tuple of int
        Indices into :attr:`ClusterResult.documents`, in input order.
    similarities : tuple of float
        For each member, its mean similarity to the other members (1.0 for a
        singleton); a pair that scored under a quarter of the threshold, or
        was never a candidate, counts as 0.
    representative : int
        Index of the member most similar to the rest.
    """

    label: int
    members: tuple[int, ...]
    similarities: tuple[float, ...]
    representative: int

    @property
    def size(self) -> int:
        return len(self.members)


@dataclass(frozen=True)
class ClusterResult:
    """What :func:`dedup.cluster` returns.

    Attributes
    ----------
    documents : tuple of Document
        The input, in input order.
    labels : ndarray of int, shape (n_documents,)
        Cluster label of each document; ``clusters[labels[i]]`` holds ``i``.
    clusters : tuple of Cluster
        Largest first; ties broken by the first member's input position.
    flags : tuple of tuple of str
        Per document, warnings such as ``"empty"`` (no usable words, so kept
        as a singleton).
    params : Mapping
        The resolved options the run used.
    stats : Mapping
        Counts and per-stage seconds (candidate pairs, links, timings).
    """

    documents: tuple[Document, ...]
    labels: np.ndarray
    clusters: tuple[Cluster, ...]
    flags: tuple[tuple[str, ...], ...]
    params: Mapping[str, Any] = field(default_factory=dict)
    stats: Mapping[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.documents)

    def cluster_of(self, index: int) -> Cluster:
        """The cluster holding document ``index``."""
        return self.clusters[int(self.labels[index])]


@dataclass(frozen=True)
class Assignment:
    """Where one document went (``add``) or would go (``query``).

    Attributes
    ----------
    id : str
        The document.
    cluster : int or None
        Its cluster in the index; for ``query``, None when it would start a new one.
    status : str
        ``"new"`` (started a cluster), ``"joined"`` (joined an existing one),
        ``"exists"`` (already indexed; left as it was) or, for ``query``,
        ``"new"`` / ``"joined"`` as it would be.
    score : float
        Mean link score to the other members of the cluster (0 for a singleton).
    size : int
        The cluster's size afterwards.
    matches : tuple of (int, float)
        For ``query``: existing clusters it links to, with the mean score, best first.
    """

    id: str
    cluster: int | None
    status: str
    score: float
    size: int
    matches: tuple[tuple[int, float], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": self.id,
            "cluster": self.cluster,
            "status": self.status,
            "score": round(self.score, 4),
            "size": self.size,
        }
        if self.matches:
            record["matches"] = [{"cluster": c, "score": round(s, 4)} for c, s in self.matches]
        return record
