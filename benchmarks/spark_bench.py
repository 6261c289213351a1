"""The Spark engine against the local one on synthetic news corpora: time and agreement.

For each size it generates a corpus with ``benchmarks/corpus.py`` (cached in
``--workdir``), clusters it with the local engine (``dedup.cluster``, ``--jobs``
processes) and with the Spark engine on ``--master`` (default ``local[2]``,
reading the JSON Lines through Spark), and prints a table: documents, local
seconds (read + cluster), Spark seconds (read + cluster, result checkpointed
on the executors; the session and its Python workers are started beforehand),
their ratio and the ARI between the two partitions (1.0 when they agree).

Usage::

    python benchmarks/spark_bench.py --sizes 10000 100000 [--jobs 2] [--master local[2]]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def corpus_path(size: int, seed: int, workdir: Path) -> Path:
    from corpus import generate

    path = workdir / f"synthetic_{size}_{seed}.jsonl"
    if not path.exists():
        workdir.mkdir(parents=True, exist_ok=True)
        generate(size, seed, path)
    return path


def time_local(path: Path, jobs: int) -> tuple[float, dict[str, int]]:
    import dedup

    start = time.perf_counter()
    docs = dedup.read_documents(path)
    result = dedup.cluster(docs, jobs=jobs)
    seconds = time.perf_counter() - start
    return seconds, {d.id: int(label) for d, label in zip(docs, result.labels, strict=True)}


def time_spark(spark, path: Path) -> tuple[float, dict[str, int]]:
    from dedup import spark as dspark

    start = time.perf_counter()
    result = dspark.cluster(spark.read.json(str(path)))
    seconds = time.perf_counter() - start
    labels = {r["id"]: r["cluster"] for r in result.select("id", "cluster").toLocalIterator()}
    return seconds, labels


def start_session(master: str, partitions: int, memory: str):
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master(master)
        .appName("dedup-bench")
        .config("spark.sql.shuffle.partitions", str(partitions))
        .config("spark.driver.memory", memory)
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.pyspark.python", sys.executable)
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    # Start the Python workers (and their imports) outside the timings.
    from dedup import spark as dspark

    frame = spark.createDataFrame(
        [(str(k), f"warm up text {k}") for k in range(8)], "id string, text string"
    )
    dspark.cluster(frame).count()
    return spark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2, help="local engine worker processes")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--partitions", type=int, default=8, help="spark.sql.shuffle.partitions")
    parser.add_argument("--driver-memory", default="8g")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dedup-bench"))
    args = parser.parse_args(argv)

    from dedup.evaluate import score

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = start_session(args.master, args.partitions, args.driver_memory)
    print("| docs | local s | spark s | spark / local | ARI |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        path = corpus_path(size, args.seed, args.workdir)
        local_seconds, local = time_local(path, args.jobs)
        spark_seconds, distributed = time_spark(spark, path)
        ids = list(local)
        ari = score([local[i] for i in ids], [distributed[i] for i in ids]).ari
        ratio = spark_seconds / local_seconds
        print(f"| {size} | {local_seconds:.1f} | {spark_seconds:.1f} | {ratio:.2f} | {ari:.4f} |")
        sys.stdout.flush()
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
