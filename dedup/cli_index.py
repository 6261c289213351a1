"""``dedup index``: a persistent, incremental story index on the command line.

INDEX is a SQLite file (created on first ``add``) or ``redis://host:port/db``.
Errors are :class:`~dedup.errors.DedupError` s, printed as one line by the
main group.
"""

from __future__ import annotations

import json
from typing import Any

import click

from dedup import report
from dedup.index import StoryIndex
from dedup.io import iter_documents, open_output

_INDEX = click.argument("index", metavar="INDEX")
_TIMEOUT = click.option(
    "--timeout",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds to wait for another writer before 'index is busy'.",
)


def _options(func: Any) -> Any:
    from dedup.cli import clustering_options, field_options  # dedup.cli imports this module

    return clustering_options(field_options(func))


def _write_assignments(assignments: list[Any], fmt: str, output: str | None) -> None:
    with open_output(output) as out:
        if fmt == "jsonl":
            for a in assignments:
                out.write(json.dumps(a.as_dict(), ensure_ascii=False) + "\n")
        else:
            out.write("id\tcluster\tstatus\tscore\tsize\n")
            for a in assignments:
                cluster = "-" if a.cluster is None else a.cluster
                out.write(f"{a.id}\t{cluster}\t{a.status}\t{a.score:.4f}\t{a.size}\n")


def _open(index: str, preset: str, options: dict[str, Any], timeout: float) -> StoryIndex:
    asked = {k: v for k, v in options.items() if v is not None}
    chosen = preset if (asked or preset != "stories") else None
    return StoryIndex(index, chosen, timeout=timeout, **asked)


@click.group("index")
def index_group() -> None:
    """A persistent index that grows: add, query, list clusters, remove."""


@index_group.command("add")
@_INDEX
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option(
    "--on-duplicate",
    type=click.Choice(["skip", "error"]),
    default="skip",
    show_default=True,
    help="An id already indexed: leave it (status 'exists') or fail.",
)
@_options
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl"]), default="table")
@click.option("--output", "-o", metavar="FILE", help="Write here instead of stdout.")
@_TIMEOUT
def add_command(
    index, inputs, on_duplicate, preset, options, fields, allow_empty, fmt, output, timeout
) -> None:
    """Add documents; each joins a cluster or starts one. Creates INDEX on first use.

    Parameters (preset and options) are fixed when the index is created.
    """
    docs = list(iter_documents(list(inputs), fields=fields, allow_empty=allow_empty))
    with _open(index, preset, options, timeout) as story_index:
        assignments = story_index.add(docs, on_duplicate=on_duplicate)
    _write_assignments(assignments, fmt, output)


@index_group.command("query")
@_INDEX
@click.argument("input_path", metavar="INPUT")
@_options
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl"]), default="table")
@click.option("--output", "-o", metavar="FILE", help="Write here instead of stdout.")
def query_command(index, input_path, preset, options, fields, allow_empty, fmt, output) -> None:
    """Which clusters the documents of INPUT would join, with scores; read-only."""
    docs = list(iter_documents([input_path], fields=fields, allow_empty=allow_empty))
    with _open(index, preset, options, 30.0) as story_index:
        assignments = story_index.query(docs)
    _write_assignments(assignments, fmt, output)


@index_group.command("clusters")
@_INDEX
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json", "jsonl", "csv"]), default="table"
)
@click.option("--output", "-o", metavar="FILE", help="Write here instead of stdout.")
@click.option("--all", "show_all", is_flag=True, help="Also list singletons in the table.")
def clusters_command(index, fmt, output, show_all) -> None:
    """Print the index's clusters, in the formats of `dedup cluster`."""
    with StoryIndex(index) as story_index:
        result = story_index.clusters()
    with open_output(output) as out:
        if fmt == "table":
            from rich.console import Console

            report.render_clusters(
                result, Console(file=out, highlight=False), show_singletons=show_all
            )
        else:
            writers = {"json": report.write_json, "jsonl": report.write_jsonl}
            writers.get(fmt, report.write_csv)(result, out)


@index_group.command("stats")
@_INDEX
def stats_command(index) -> None:
    """Documents, clusters, links and parameters of INDEX, as JSON."""
    with StoryIndex(index) as story_index:
        click.echo(json.dumps(story_index.stats(), indent=2))


@index_group.command("remove")
@_INDEX
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
@_TIMEOUT
def remove_command(index, ids, timeout) -> None:
    """Remove documents by id (their clusters shrink; they are not split)."""
    with StoryIndex(index, timeout=timeout) as story_index:
        removed = story_index.remove(list(ids))
    click.echo(f"removed {len(removed)} of {len(ids)}")
