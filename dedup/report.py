"""Rendering results: records and files for machines, rich views for people.

Every function here writes only to the stream or console it is given; nothing
reads files or clusters anything. The CLI is the only caller that prints.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TextIO

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from dedup import collector
from dedup.compare import Comparison
from dedup.evaluate import ClusterError, Scores
from dedup.records import Cluster, ClusterResult, Document

FIELDS = (
    "id",
    "cluster",
    "size",
    "similarity",
    "representative",
    "title",
    "source",
    "published",
    "flags",
)
"""Keys of :func:`document_records`, in the order CSV columns use."""

_TITLE_CHARS = 80


# --- records and files ------------------------------------------------------------


def document_records(result: ClusterResult) -> list[dict[str, Any]]:
    """One plain record per input document, in input order (keys: :data:`FIELDS`)."""
    with collector.paused():  # a record per document: see dedup.collector
        return _document_records(result)


def _document_records(result: ClusterResult) -> list[dict[str, Any]]:
    position: dict[int, int] = {}
    for c in result.clusters:
        position.update((member, k) for k, member in enumerate(c.members))
    records = []
    for i, doc in enumerate(result.documents):
        c = result.cluster_of(i)
        records.append(
            {
                "id": doc.id,
                "cluster": c.label,
                "size": c.size,
                "similarity": round(float(c.similarities[position[i]]), 4),
                "representative": c.representative == i,
                "title": doc.title,
                "source": doc.source,
                "published": doc.published.isoformat() if doc.published else None,
                "flags": list(result.flags[i]) if result.flags else [],
            }
        )
    return records


def cluster_records(result: ClusterResult) -> list[dict[str, Any]]:
    """One record per cluster, largest first, with member ids in input order."""
    docs = result.documents
    return [
        {
            "cluster": c.label,
            "size": c.size,
            "representative": docs[c.representative].id,
            "title": _headline(docs[c.representative]),
            "members": [docs[m].id for m in c.members],
        }
        for c in result.clusters
    ]


def write_json(result: ClusterResult, stream: TextIO) -> None:
    """The whole result as one JSON object: params, stats, clusters and documents."""
    payload = {
        "params": dict(result.params),
        "stats": {k: _number(v) for k, v in result.stats.items()},
        "clusters": cluster_records(result),
        "documents": document_records(result),
    }
    json.dump(payload, stream, ensure_ascii=False, indent=2)
    stream.write("\n")


def write_jsonl(result: ClusterResult, stream: TextIO) -> None:
    """Exactly one JSON object per input document, in input order."""
    write_records_jsonl(document_records(result), stream)


def write_csv(result: ClusterResult, stream: TextIO) -> None:
    """The document records as CSV with a header; flags are joined by ``;``."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(FIELDS)
    for record in document_records(result):
        record["flags"] = ";".join(record["flags"])
        record["representative"] = "true" if record["representative"] else "false"
        writer.writerow(["" if record[k] is None else record[k] for k in FIELDS])


def write_records_jsonl(records: Iterable[Mapping[str, Any]], stream: TextIO) -> None:
    """One compact JSON object per line."""
    for record in records:
        stream.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_object(record: Mapping[str, Any], stream: TextIO) -> None:
    """One indented JSON object."""
    json.dump(record, stream, ensure_ascii=False, indent=2)
    stream.write("\n")


def comparison_record(
    comparison: Comparison, first: str | None = None, second: str | None = None
) -> dict[str, Any]:
    """A :class:`Comparison` as a JSON-ready dict, with the names of the two documents."""
    record: dict[str, Any] = {"first": first, "second": second}
    for key, value in dataclasses.asdict(comparison).items():
        if key == "shared_terms":
            value = [{"term": t, "weight": _number(w)} for t, w in value]
        elif key != "params":
            value = _number(value)
        record[key] = value
    return record


def scores_record(scores: Scores) -> dict[str, Any]:
    return {k: _number(v) for k, v in scores.as_dict().items()}


def error_record(error: ClusterError, documents: Sequence[Document]) -> dict[str, Any]:
    """A merged or split cluster as JSON: the parts with their document ids."""
    return {
        "kind": error.kind,
        "label": error.label,
        "size": error.size,
        "wrong": error.wrong,
        "parts": [
            {"label": label, "ids": [documents[i].id for i in members]}
            for label, members in error.parts
        ],
    }


# --- the terminal -------------------------------------------------------------------


def render_clusters(
    result: ClusterResult,
    console: Console,
    *,
    max_members: int = 10,
    show_singletons: bool = False,
    singletons_hint: str = "",
) -> None:
    """Clusters largest first; singletons are listed only with ``show_singletons``."""
    groups = [c for c in result.clusters if c.size > 1]
    singles = [c for c in result.clusters if c.size == 1]
    console.print(_summary(result, len(groups), len(singles)))
    for c in groups:
        console.print()
        _render_cluster(result, c, console, max_members)
    if not singles:
        return
    console.print()
    if show_singletons:
        console.print(Text(_count(len(singles), "singleton"), style="bold"))
        table = _member_table(console, [result.documents[c.members[0]] for c in singles], True)
        for c in singles:
            i = c.members[0]
            cells = _member_cells(result.documents[i])
            if result.flags and result.flags[i]:
                cells[-1].append(f" [{', '.join(result.flags[i])}]", style="yellow")
            table.add_row(Text(f"#{c.label}", style="cyan"), *cells)
        console.print(table)
    else:
        line = Text(f"and {_count(len(singles), 'singleton')}", style="dim")
        if singletons_hint:
            line.append(f" ({singletons_hint})", style="dim")
        console.print(line)


def _summary(result: ClusterResult, groups: int, singles: int) -> Text:
    stats = result.stats
    seconds = sum(v for k, v in stats.items() if k.startswith("seconds_"))
    parts = [
        f"{_count(len(result.documents), 'document')} -> "
        f"{_count(len(result.clusters), 'cluster')} ({_count(singles, 'singleton')})"
    ]
    if "candidate_pairs" in stats:
        pairs = stats["candidate_pairs"]
        parts.append(_count(pairs, "candidate pair"))
    parts.append(f"{seconds:.2f} s")
    return Text(" · ".join(parts), style="bold")


def _member_table(console: Console, docs: Sequence[Document], show_header: bool) -> Table:
    """One document per row in explicit widths, so the title is what gives way."""
    ids = min(max(2, *(cell_len(_plain(d.id)) for d in docs)), 28)
    sources = min(max(6, *(cell_len(_plain(d.source or "")) for d in docs)), 20)
    fixed = 7 + 10 + 8  # similarity, date, and two spaces between columns
    spare = console.width - fixed - 28  # keep 28 characters for the title
    if ids + sources > spare:  # narrow terminal: the source gives way, then the id
        sources = max(spare - ids, 6)
        ids = max(min(ids, spare - sources), 8)
    longest = max(cell_len(_headline(d)) for d in docs)
    title = min(max(console.width - fixed - ids - sources, 10), longest)
    table = Table(box=None, show_header=show_header, padding=(0, 1), pad_edge=False)
    for name, width in (("", 7), ("id", ids), ("source", sources), ("published", 10)):
        table.add_column(name, no_wrap=True, overflow="ellipsis", width=width)
    table.add_column("title", no_wrap=True, overflow="ellipsis", width=title)
    return table


def _member_cells(doc: Document) -> list[Text]:
    return [_text(doc.id), _text(doc.source), Text(_day(doc)), Text(_headline(doc))]


def _render_cluster(result: ClusterResult, c: Cluster, console: Console, max_members: int) -> None:
    docs = [result.documents[m] for m in c.members]
    outlets = sorted({d.source for d in docs if d.source})
    dates = sorted(d.published for d in docs if d.published)
    head = Text(f"#{c.label} ", style="bold cyan")
    head.append(f"{c.size} documents", style="bold")
    if outlets:
        head.append(f" · {_count(len(outlets), 'outlet')}")
    if dates:
        span = dates[0].date().isoformat()
        if dates[-1].date() != dates[0].date():
            span += f" .. {dates[-1].date().isoformat()}"
        head.append(f" · {span}")
    console.print(head)
    console.print(Text(_headline(result.documents[c.representative]), style="bold"))
    if outlets:
        console.print(Text("outlets: " + ", ".join(_plain(o) for o in outlets), style="dim"))
    table = _member_table(console, docs, show_header=False)
    ranked = sorted(zip(c.members, c.similarities, strict=True), key=lambda ms: -ms[1])
    for member, sim in ranked[:max_members]:
        doc = result.documents[member]
        mark = Text("*", style="green") if member == c.representative else Text(" ")
        table.add_row(mark + f" {sim:.3f}", *_member_cells(doc))
    console.print(table)
    if len(ranked) > max_members:
        console.print(Text(f"  ... and {len(ranked) - max_members} more", style="dim"))


def render_comparison(
    comparison: Comparison, console: Console, first: str = "A", second: str = "B"
) -> None:
    """The verdict on two documents, and the evidence for it."""
    same = comparison.same_story
    console.print(Text(f"{_plain(first)} vs {_plain(second)}", style="bold"))
    line = Text("same story" if same else "different stories", style="green" if same else "red")
    relation = ">=" if same else "<"
    line.append(f": score {comparison.score:.4f} {relation} threshold {comparison.threshold:g}")
    line.append(f" (preset {comparison.params.get('preset', '?')})", style="dim")
    console.print(line)
    gap = comparison.days_apart
    for label, values in (
        ("shared names", comparison.shared_names[:12]),
        ("shared numbers", comparison.shared_numbers[:12]),
    ):
        evidence = Text(f"{label}: ", style="bold")
        evidence.append(", ".join(_plain(v) for v in values) if values else "none")
        console.print(evidence)
    published = Text("published: ", style="bold")
    published.append("dates unknown" if gap is None else f"{gap:g} days apart")
    console.print(published)
    table = Table(box=None, show_header=False, padding=(0, 2))
    table.add_column("measure", style="dim")
    table.add_column("value", justify="right")
    if comparison.cosine is not None:
        table.add_row("TF-IDF cosine", f"{comparison.cosine:.4f}")
    table.add_row("Jaccard (exact)", f"{comparison.exact_jaccard:.4f}")
    table.add_row("Jaccard (MinHash estimate)", f"{comparison.estimated_jaccard:.4f}")
    console.print(table)
    terms = Text("top shared terms: ", style="bold")
    if comparison.shared_terms:
        shown = (f"{_plain(t)} ({w:.4f})" for t, w in comparison.shared_terms)
        terms.append(", ".join(shown), style="")
    else:
        terms.append("none", style="dim")
    console.print(terms)


def render_scores(scores: Scores, console: Console) -> None:
    """Clustering quality against gold labels."""
    table = Table(title="scores against gold labels", title_justify="left", box=box.SIMPLE)
    table.add_column("metric")
    for name in ("precision", "recall", "F1"):
        table.add_column(name, justify="right")
    for name, key in (("B-cubed", "bcubed"), ("pairwise", "pairwise")):
        values = (getattr(scores, f"{key}_{part}") for part in ("precision", "recall", "f1"))
        table.add_row(name, *(f"{v:.4f}" for v in values))
    console.print(table)
    other = Table(box=box.SIMPLE, show_header=False)
    other.add_column("measure")
    other.add_column("value", justify="right")
    other.add_row("ARI", f"{scores.ari:.4f}")
    other.add_row("NMI", f"{scores.nmi:.4f}")
    other.add_row("documents", str(scores.documents))
    other.add_row("clusters (predicted)", str(scores.predicted_clusters))
    other.add_row("clusters (gold)", str(scores.gold_clusters))
    console.print(other)


def render_errors(
    errors: Sequence[ClusterError], documents: Sequence[Document], console: Console
) -> None:
    """The worst merged clusters and split events, each part with two headlines."""
    for error in errors:
        what, other = ("cluster", "event") if error.kind == "merged" else ("event", "cluster")
        head = Text(f"{error.kind}: ", style="bold")
        head.append(
            f"{what} {_plain(str(error.label))} ({_count(error.size, 'document')}, "
            f"{error.wrong} outside its largest part)"
        )
        console.print(head)
        for label, members in error.parts[:4]:
            titles = "; ".join(_headline(documents[i]) for i in members[:2])
            console.print(Text(f"  {other} {_plain(str(label))}: {len(members)} · {titles}"))
        if len(error.parts) > 4:
            console.print(Text(f"  and {len(error.parts) - 4} more parts"))


# The pipeline reports a stage when it ends; show the stage that runs next meanwhile.
_NEXT_STAGE = {
    "analyse": "vectorise",
    "vectorise": "sign",
    "sign": "candidates",
    "candidates": "cluster",  # candidates are scored as they come: verify is within
}


@contextlib.contextmanager
def stage_progress(
    console: Console, min_seconds: float = 2.0
) -> Iterator[Callable[[str, int, int], None]]:
    """A transient progress bar; yields a ``progress(stage, done, total)`` callback.

    A ``total`` of 0 means "not known yet" (the bar then only counts). Once a
    run has lasted ``min_seconds``, each stage leaves one line with its seconds
    above the bar as the next begins, so a long run shows where its time went
    and a short one stays quiet.
    """
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description:<10}"),
        BarColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
    )
    began = time.perf_counter()
    current: dict[str, Any] = {}  # the stage under way, when it began and its last count
    finished: list[str] = []  # stage lines not printed yet

    def finish() -> None:
        if current:
            seconds = time.perf_counter() - current["start"]
            finished.append(f"  {current['stage']:<10} {seconds:8.2f} s  {current['done']:>12,}")
            current.clear()
        if time.perf_counter() - began >= min_seconds:
            for line in finished:
                console.print(line, style="dim")
            finished.clear()

    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("reading", total=None, counts="")

        def update(stage: str, done: int, total: int) -> None:
            if current.get("stage") != stage:
                finish()
                current.update(stage=stage, start=time.perf_counter())
            current["done"] = done
            if total and done >= total and stage in _NEXT_STAGE:
                bar.update(task, description=_NEXT_STAGE[stage], completed=0, total=None, counts="")
            else:
                counts = f"{done:,}/{total:,}" if total else f"{done:,}"
                bar.update(
                    task, description=stage, completed=done, total=total or None, counts=counts
                )

        yield update
        finish()


# --- helpers --------------------------------------------------------------------


def _number(value: Any) -> Any:
    """JSON-safe numbers: numpy scalars become Python ones, NaN and infinities null."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _plain(value: str) -> str:
    """One line of printable text (no newlines, tabs or control characters)."""
    return "".join(ch for ch in " ".join(value.split()) if ch.isprintable())


def _text(value: str | None) -> Text:
    """User content for a table cell: plain text, never rich markup."""
    return Text(_plain(value or ""))


def _headline(doc: Document) -> str:
    """The title, or the start of the text when there is none."""
    text = _plain(doc.title or "") or _plain(doc.text[: _TITLE_CHARS * 4])
    if not text:
        return "(empty)"
    return text if len(text) <= _TITLE_CHARS else text[: _TITLE_CHARS - 3].rstrip() + "..."


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _day(doc: Document) -> str:
    return doc.published.date().isoformat() if doc.published else ""
