"""Speed of the persistent index: add throughput and single-document query latency.

Builds an index of ``--size`` synthetic articles (``benchmarks/corpus.py``) in
``--load-batch``-document batches (default ``--batch``), opens it again as a
new process would, and times the first query (which reads the frequencies and
band keys), adding one more ``--batch`` and ``--queries`` single-document
queries, on SQLite and (with ``--redis URL``) on Redis. Every batch's add rate
is printed too, to show how it falls as the index grows. The issue's goals are
for 1M documents: >= 2,000 added documents a second and a median query <= 5 ms
(p99 <= 50 ms) on SQLite.

The corpus spreads its articles over two years. By default they are added in
publication order, as a crawler meets them, and the queries are the next
articles; ``--order file`` adds them in file order instead, so every batch
holds articles from any date and has candidates all over the archive.

Usage::

    python benchmarks/index_bench.py --size 20000 --batch 10000 \\
        --redis redis://127.0.0.1:6390/14
    python benchmarks/index_bench.py --size 1000000 --load-batch 200000 \\
        --keep /tmp/index-1m.sqlite

``--keep PATH`` keeps the built SQLite index; a later run with the same
``--size``, ``--seed`` and ``--order`` skips the build (most of an hour at a
million) and times a copy of it.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import cProfile
import itertools
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import iter_articles  # noqa: E402

from dedup import StoryIndex  # noqa: E402


def _articles(count: int, seed: int, order: str) -> Iterator[dict[str, Any]]:
    """The corpus's articles in file order (dates at random), or in publication order."""
    articles = iter_articles(count, seed=seed)
    if order == "published":
        # As a crawler meets them: each batch is the next days' news.
        return iter(sorted(articles, key=lambda a: (a["published"], a["id"])))
    return articles


def _bench(
    location: str,
    size: int,
    batch: int,
    queries: int,
    seed: int,
    order: str,
    load_batch: int,
    profile: bool = False,
    keep: str | None = None,
) -> dict[str, Any]:
    articles = _articles(size + batch + queries, seed, order)
    growth = []  # (documents before the add, documents/s) of every batch
    if keep and os.path.exists(keep):
        last = collections.deque(itertools.islice(articles, size), maxlen=1)[0]
        _check_kept(keep, size, last["id"])
    else:
        target = keep or location
        with StoryIndex(target) as index:
            loaded = 0
            while loaded < size:
                part = list(itertools.islice(articles, min(load_batch, size - loaded)))
                growth.append((loaded, _add_rate(index, part)))
                print(f"  {target}: {loaded} + {len(part)}, {growth[-1][1]:.0f}/s", file=sys.stderr)
                loaded += len(part)
    if keep:
        shutil.copyfile(keep, location)  # timed on a copy: the kept index stays as built
    timed = list(itertools.islice(articles, batch + queries))  # made before any timer starts
    # As a new process meets it: the first query reads the frequencies and band runs.
    start = time.perf_counter()
    with StoryIndex(location) as index:
        index.query(timed[-1:])
        first_query_s = time.perf_counter() - start
        profiler = cProfile.Profile() if profile else contextlib.nullcontext()
        with profiler:
            docs_per_s = _add_rate(index, timed[:batch])
        _print_profile(profiler, f"{location}: the timed add")
        latencies = []
        profiler = cProfile.Profile() if profile else contextlib.nullcontext()
        for article in timed[batch:]:
            with profiler:
                start = time.perf_counter()
                index.query([article])
                latencies.append((time.perf_counter() - start) * 1000)
        _print_profile(profiler, f"{location}: {queries} queries")
    latencies.sort()
    return {
        "docs_per_s": docs_per_s,
        "first_query_s": first_query_s,
        "growth": growth,
        "query_median_ms": statistics.median(latencies),
        "query_p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
    }


def _check_kept(path: str, size: int, last_id: str) -> None:
    """Stop unless ``path`` holds the ``size`` documents this run would have built."""
    with StoryIndex(path) as index:
        held = index.stats()["documents"]
        if held != size or not index.store.known([last_id]):
            sys.exit(
                f"{path}: holds {held} documents, not the {size} of this --size, --seed and "
                "--order; remove it to build it again"
            )


def _print_profile(profiler: Any, title: str) -> None:
    """The dedup functions that took longest (with what they called), to stderr."""
    if isinstance(profiler, cProfile.Profile):
        print(f"\nprofile of {title} (cumulative seconds)", file=sys.stderr)
        stats = pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative")
        stats.print_stats(r"dedup[/\\](?!.*threads)", 30)


def _add_rate(index: StoryIndex, part: list[dict[str, Any]]) -> float:
    start = time.perf_counter()
    index.add(part)
    return len(part) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000, help="documents before timing")
    parser.add_argument("--batch", type=int, default=10_000, help="documents of the timed add")
    parser.add_argument(
        "--load-batch",
        type=int,
        help="documents per add while building the index (default: --batch); "
        "200000 builds a million in about half an hour",
    )
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--order",
        choices=("file", "published"),
        default="published",
        help="batches day after day (published, the default) or of any date (file)",
    )
    parser.add_argument("--redis", metavar="URL", help="also time Redis (its db is flushed)")
    parser.add_argument(
        "--keep",
        metavar="PATH",
        help="build the SQLite index at PATH and keep it; when PATH already holds it "
        "(same --size, --seed and --order), skip the build and time a copy of it",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile the timed add and queries and print where they spend their time "
        "(the profiler slows them: their figures are then not comparable)",
    )
    args = parser.parse_args()
    load_batch = args.load_batch or args.batch
    common = (args.size, args.batch, args.queries, args.seed, args.order, load_batch, args.profile)
    results = {}
    with tempfile.TemporaryDirectory(dir=os.path.dirname(args.keep) if args.keep else None) as tmp:
        path = os.path.join(tmp, "bench.sqlite")
        results["sqlite"] = _bench(path, *common, keep=args.keep)
    if args.redis:
        import redis

        redis.Redis.from_url(args.redis).flushdb()
        results["redis"] = _bench(args.redis, *common)
    print(
        f"index of {args.size} documents, one more batch of {args.batch}, "
        f"{args.queries} single-document queries"
    )
    print("| store | docs/s added | query median ms | query p99 ms | first query s |")
    print("|---|---|---|---|---|")
    for store, r in results.items():
        print(
            f"| {store} | {r['docs_per_s']:.0f} | {r['query_median_ms']:.1f} "
            f"| {r['query_p99_ms']:.1f} | {r['first_query_s']:.1f} |"
        )
    built = {store: r["growth"] for store, r in results.items() if r["growth"]}
    if "sqlite" not in built:
        print(f"\n(the SQLite index was built by an earlier run and kept at {args.keep})")
    if not built:
        return
    print(f"\nadd rate as the index grows (documents/s of each {load_batch}-document batch)")
    print("| documents before | " + " | ".join(built) + " |")
    print("|---|" + "---|" * len(built))
    for k, (before, _) in enumerate(next(iter(built.values()))):
        rates = " | ".join(f"{growth[k][1]:.0f}" for growth in built.values())
        print(f"| {before:,} | {rates} |")


if __name__ == "__main__":
    main()
