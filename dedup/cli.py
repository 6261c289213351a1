"""The ``dedup`` command line: a thin click layer over the library.

Every :class:`~dedup.errors.DedupError` becomes one ``Error: ...`` line on
stderr and exit code 1, in :meth:`_App.invoke` only; click's usage errors
exit with 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import click
from rich.console import Console

from dedup import __version__, report
from dedup.analysis import Progress, default_jobs
from dedup.compare import compare, score_pairs
from dedup.errors import DedupError, FieldError, InputError
from dedup.evaluate import cluster_errors, score
from dedup.io import FieldMap, iter_documents, open_output, read_documents, read_labels, read_pairs
from dedup.params import LINKAGES, PRESETS, SIMILARITIES, resolve_params
from dedup.pipeline import run
from dedup.records import Document

_READ_PROGRESS_EVERY = 1000


class _App(click.Group):
    """The command group: the one place that turns exceptions into exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DedupError as exc:
            click.echo(f"Error: {' '.join(str(exc).splitlines())}", err=True)
            ctx.exit(1)
        except BrokenPipeError:
            _silence_stdout()
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush cannot fail again."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


# --- shared options ---------------------------------------------------------------


def _stack(*decorators: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Apply click decorators so that --help lists them in the order given."""

    def apply(func: Any) -> Any:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


_PARAMS = (  # (option, Params field or "" for the option's own name, type, help)
    ("--threshold", "", float, "Score at which documents (clusters) merge."),
    ("--keywords", "", int, "Sign each document's top N TF-IDF features (0 = shingles)."),
    ("--lsh-threshold", "", float, "Jaccard level at which LSH proposes pairs."),
    ("--max-bucket", "", int, "Pair each member of a larger LSH bucket with this many (0 = all)."),
    ("--min-bands", "", int, "Keep candidate pairs that collide in at least this many bands."),
    ("--similarity", "", click.Choice(SIMILARITIES), "How pairs are scored."),
    ("--tfidf-ngrams", "", click.IntRange(1, 3), "Longest word n-gram in TF-IDF vectors."),
    ("--linkage", "", click.Choice(LINKAGES), "How links become clusters."),
    ("--shingle", "", click.Choice(["word", "char"]), "Shingle kind for MinHash."),
    ("--shingle-size", "", int, "Words (or characters) per shingle."),
    ("--num-perm", "", int, "MinHash permutations."),
    ("--seed", "", int, "Seed of the MinHash permutations."),
    ("--lang", "", str, "Force one language code (tr, en, ...) for every document."),
    ("--length-reference", "", float, "Discount cosine above this many terms (0 = off)."),
    ("--time-window", "time_window_days", float, "Days apart before scores decay."),
    ("--time-scale", "time_scale_days", float, "Decay scale in days (0 = ignore dates)."),
)
_PARAM_FIELDS = tuple(field or name[2:].replace("-", "_") for name, field, _, _ in _PARAMS)


def clustering_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--preset`` and every Params override; the command gets ``preset`` and ``options``."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        options = {field: kwargs.pop(field) for field in _PARAM_FIELDS}
        options["stem"] = False if kwargs.pop("no_stem") else None
        options["stopwords"] = False if kwargs.pop("no_stopwords") else None
        options["single_word_keywords"] = False if kwargs.pop("ngram_keywords") else None
        return func(*args, options=options, **kwargs)

    return _stack(
        click.option(
            "--preset",
            type=click.Choice(list(PRESETS)),
            default="stories",
            show_default=True,
            help="stories: reports of one event; duplicates: "
            "copies and light rewrites. The options below override it.",
        ),
        *(
            click.option(name, field, type=kind, help=f"{text}  [default: preset's]")
            for (name, _, kind, text), field in zip(_PARAMS, _PARAM_FIELDS, strict=True)
        ),
        click.option("--no-stem", is_flag=True, help="Do not stem words."),
        click.option("--no-stopwords", is_flag=True, help="Keep stopwords."),
        click.option(
            "--ngram-keywords", is_flag=True, help="Pick keywords among word n-grams too."
        ),
    )(wrapper)


_FIELD_ATTRS = ("id", "text", "title", "source", "published", "url", "lang")


def field_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--*-field`` remapping and ``--allow-empty``; the command gets ``fields``."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        names = {a: kwargs.pop(f"{a}_field") for a in _FIELD_ATTRS}
        fields = FieldMap(**{a: v for a, v in names.items() if v is not None})
        return func(*args, fields=fields, **kwargs)

    return _stack(
        *(
            click.option(
                f"--{a}-field", metavar="NAME", help=f"Input field read as the {a}.  [default: {a}]"
            )
            for a in _FIELD_ATTRS
        ),
        click.option(
            "--allow-empty",
            is_flag=True,
            help="Keep documents with empty text (as flagged singletons) instead of failing.",
        ),
    )(wrapper)


def _format(*choices: str, text: str = "Output format.") -> Callable[[Any], Any]:
    kind = click.Choice(choices)
    return click.option(
        "--format", "fmt", type=kind, default=choices[0], show_default=True, help=text
    )


_INPUTS = click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
_OUTPUT = click.option("--output", "-o", metavar="FILE", help="Write here instead of stdout.")
_JOBS = click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=default_jobs,
    show_default="the cores available",
    help="Processes for text analysis, threads for pair scores; results are the same for any.",
)
_QUIET = click.option("--quiet", "-q", is_flag=True, help="No progress bar on stderr.")


@contextlib.contextmanager
def _progress(quiet: bool) -> Iterator[Progress | None]:
    """A progress callback drawing on stderr, or None when quiet or not a terminal."""
    console = Console(stderr=True)
    if quiet or not console.is_terminal:
        yield None
        return
    with report.stage_progress(console) as update:
        yield update


def _read(
    inputs: Sequence[str], fields: FieldMap, allow_empty: bool, progress: Progress | None
) -> list[Document]:
    docs: list[Document] = []
    for doc in iter_documents(list(inputs), fields=fields, allow_empty=allow_empty):
        docs.append(doc)
        if progress and len(docs) % _READ_PROGRESS_EVERY == 0:
            progress("read", len(docs), 0)
    return docs


def _console(stream: Any) -> Console:
    return Console(file=stream, highlight=False)


# --- commands ---------------------------------------------------------------------


@click.group(cls=_App, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="dedup")
def cli() -> None:
    """Cluster news articles that report the same story."""


@cli.command("cluster")
@_INPUTS
@clustering_options
@field_options
@_format(
    "table",
    "json",
    "jsonl",
    "csv",
    text="table: for people; jsonl, csv: one row per "
    "document in input order; json: params, stats, clusters and documents.",
)
@_OUTPUT
@click.option("--all", "show_all", is_flag=True, help="Also list singletons in the table.")
@click.option(
    "--max-members",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Members shown per cluster in the table.",
)
@_JOBS
@click.option(
    "--engine",
    type=click.Choice(["local", "spark"]),
    default="local",
    show_default=True,
    help="spark: run on Apache Spark (pip install 'dedup[spark]'); needs --output "
    "(.parquet or .jsonl, by extension).",
)
@click.option(
    "--spark-master",
    metavar="URL",
    help="Spark master for --engine spark.  [default: local[*], or spark-submit's]",
)
@_QUIET
def cluster_command(
    inputs,
    preset,
    options,
    fields,
    allow_empty,
    fmt,
    output,
    show_all,
    max_members,
    jobs,
    engine,
    spark_master,
    quiet,
) -> None:
    """Group documents that report the same story.

    INPUT is a directory of .txt files (with an optional metadata.jsonl), a .txt,
    .jsonl, .csv or .parquet file, or - for JSON Lines on stdin. With --engine
    spark, INPUT is .jsonl or .parquet and --output a .parquet or .jsonl directory.
    """
    params = resolve_params(preset, **options)
    if engine == "spark":
        _cluster_on_spark(inputs, output, spark_master, preset, options, fields, allow_empty, quiet)
        return
    with _progress(quiet) as progress:
        # Streamed: texts are analysed as they are read, and only previews are kept.
        docs = iter_documents(list(inputs), fields=fields, allow_empty=allow_empty)
        result = run(docs, params, progress, jobs, keep_text=False)
    with open_output(output) as out:
        if fmt == "table":
            hint = "" if show_all else "--all lists them"
            report.render_clusters(
                result,
                _console(out),
                max_members=max_members,
                show_singletons=show_all,
                singletons_hint=hint,
            )
        else:
            writers = {"json": report.write_json, "jsonl": report.write_jsonl}
            writers.get(fmt, report.write_csv)(result, out)


def _cluster_on_spark(inputs, output, master, preset, options, fields, allow_empty, quiet) -> None:
    if output is None:
        raise click.UsageError("--engine spark needs --output FILE (.parquet or .jsonl)")
    from dedup.spark import cluster_files  # pyspark only when asked for

    counts = cluster_files(
        list(inputs), output, master, preset, fields=fields, allow_empty=allow_empty, **options
    )
    if not quiet:
        click.echo(
            f"{counts['documents']} documents, {counts['clusters']} clusters -> {output}", err=True
        )


@cli.command("compare")
@click.argument("first", required=False, metavar="A")
@click.argument("second", required=False, metavar="B")
@click.option(
    "--input",
    "input_path",
    metavar="FILE",
    help="Read documents from FILE; A and B are then ids in it.",
)
@click.option(
    "--pairs",
    metavar="FILE",
    help="Instead, score every {text1, text2, pair_id} "
    "line of this JSON Lines file and write {pair_id, score, same_story} lines.",
)
@clustering_options
@field_options
@_format("table", "json", text="Output for A and B (--pairs always writes JSON Lines).")
@_OUTPUT
def compare_command(
    first, second, input_path, pairs, preset, options, fields, allow_empty, fmt, output
) -> None:
    """Explain whether documents A and B report the same story.

    A and B are files holding one document each (.txt, or a one-record .jsonl/.csv),
    or ids of documents in --input. With --pairs, IDF is fitted on all the pairs.
    """
    if pairs is not None:
        if first is not None or input_path is not None:
            raise click.UsageError("--pairs takes no A, B or --input")
        _compare_pairs(pairs, preset, options, output)
        return
    if first is None or second is None:
        raise click.UsageError("give two documents A and B (or --pairs FILE)")
    resolve_params(preset, **options)  # fail on bad options before reading anything
    if input_path is not None:
        docs = {d.id: d for d in read_documents(input_path, fields=fields, allow_empty=allow_empty)}
        for doc_id in (first, second):
            if doc_id not in docs:
                raise InputError(f"no document with id {doc_id!r}", input_path)
        a, b = docs[first], docs[second]
    else:
        a, b = (_single_document(p, fields, allow_empty) for p in (first, second))
    comparison = compare(a, b, preset, **options)
    with open_output(output) as out:
        if fmt == "json":
            report.write_object(report.comparison_record(comparison, a.id, b.id), out)
        else:
            report.render_comparison(comparison, _console(out), a.id, b.id)


def _single_document(path: str, fields: FieldMap, allow_empty: bool) -> Document:
    docs = read_documents(path, fields=fields, allow_empty=allow_empty)
    if len(docs) != 1:
        shown = "<stdin>" if path == "-" else path
        raise InputError(f"expected one document, found {len(docs)} (see --input)", shown)
    return docs[0]


def _compare_pairs(path: str, preset: str, options: dict[str, Any], output: str | None) -> None:
    threshold = resolve_params(preset, **options).threshold
    pairs = read_pairs(path)
    scores = score_pairs([(t1, t2) for _, t1, t2 in pairs], preset, **options).tolist()
    records = (
        {"pair_id": pair_id, "score": s, "same_story": s >= threshold}
        for (pair_id, _, _), s in zip(pairs, scores, strict=True)
    )
    with open_output(output) as out:
        report.write_records_jsonl(records, out)


@cli.command("evaluate")
@_INPUTS
@click.option(
    "--gold-field",
    required=True,
    metavar="NAME",
    help="Input field holding each document's gold story label, e.g. event.",
)
@click.option(
    "--predicted",
    metavar="FILE",
    help="Score this saved `dedup cluster --format jsonl` output instead of clustering INPUT.",
)
@click.option(
    "--errors",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Show this many of the worst merged clusters and of the worst split events.",
)
@clustering_options
@field_options
@_format("table", "json")
@_OUTPUT
@_JOBS
@_QUIET
def evaluate_command(
    inputs,
    gold_field,
    predicted,
    errors,
    preset,
    options,
    fields,
    allow_empty,
    fmt,
    output,
    jobs,
    quiet,
) -> None:
    """Score clustering against gold story labels.

    Reads the gold label of each document of INPUT from --gold-field. Prints
    B-cubed and pairwise precision, recall and F1, ARI, NMI, the predicted
    and gold cluster counts, and the worst errors: predicted clusters that
    merge several events and events split over several clusters, with titles.
    """
    params = resolve_params(preset, **options)
    with _progress(quiet) as progress:
        docs = _read(inputs, fields, allow_empty, progress)
        gold = [_gold_label(doc, gold_field) for doc in docs]
        if predicted is None:
            labels: list[Any] = run(docs, params, progress, jobs).labels.tolist()
        else:
            labels = _saved_labels(predicted, docs)
    scores = score(labels, gold)
    merged, split = cluster_errors(labels, gold, errors)
    with open_output(output) as out:
        if fmt == "json":
            record = report.scores_record(scores)
            record["errors"] = [report.error_record(e, docs) for e in merged + split]
            report.write_object(record, out)
        else:
            console = _console(out)
            report.render_scores(scores, console)
            report.render_errors(merged + split, docs, console)


def _gold_label(doc: Document, gold_field: str) -> Any:
    label = doc.extra.get(gold_field)
    if label is None:
        raise FieldError(f"document {doc.id!r} has no gold field {gold_field!r}", doc.origin)
    return label


def _saved_labels(path: str, docs: Sequence[Document]) -> list[str]:
    saved = read_labels(path, label_field="cluster")
    for doc in docs:
        if doc.id not in saved:
            raise InputError(f"no prediction for document {doc.id!r}", path)
    ids = {d.id for d in docs}
    unknown = next((doc_id for doc_id in saved if doc_id not in ids), None)
    if unknown is not None:
        raise InputError(f"prediction for {unknown!r}, which is not in the input", path)
    return [saved[d.id] for d in docs]


# `dedup index` lives in dedup/cli_index.py.
from dedup.cli_index import index_group  # noqa: E402

cli.add_command(index_group)


def main() -> None:
    """Console-script entry point."""
    try:
        cli.main(prog_name="dedup")
    finally:
        # Output still buffered when a reader such as `head` has gone: drop it quietly.
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _silence_stdout()
