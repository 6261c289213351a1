"""Speed and memory of ``dedup cluster`` on synthetic news corpora, and of the signature stage.

For each size it generates a corpus with ``benchmarks/corpus.py`` (cached in
``--workdir``), then runs the whole pipeline in a fresh subprocess so that
peak RSS is that run's alone, and prints documents per second, seconds per
stage, peak RSS, candidate pairs per document and B-cubed F1 on the planted
stories. ``--signatures N`` also times the signature stage, raw text to
signatures, for N ECB+-length articles: the per-shingle ``MinHash.update``
loop most users write, datasketch's ``MinHash.bulk``, rensa (where it
installs) and dedup, all fed by the same Python analysis and shingling, and
prints the ratios measured in that one run.

Usage::

    python benchmarks/speed.py --sizes 10000 100000 [--jobs 2] [--signatures 2000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# "analyse" includes reading: the input is streamed to the workers as dedup cluster does.
STAGES = ("analyse", "vectorise", "sign", "candidates", "verify", "cluster")


def run_one(path: Path, jobs: int) -> dict:
    """The whole pipeline on one corpus, in this process, as ``dedup cluster`` runs it."""
    import dedup
    from dedup import report

    start = time.perf_counter()
    result = dedup.cluster(dedup.iter_documents(path), jobs=jobs, keep_text=False)
    total_seconds = time.perf_counter() - start
    start = time.perf_counter()
    with open("/dev/null", "w", encoding="utf-8") as sink:
        report.write_jsonl(result, sink)
    write_seconds = time.perf_counter() - start
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with path.open(encoding="utf-8") as lines:  # gold stories, after the run and its peak
        scores = dedup.score(result.labels, [json.loads(line)["event"] for line in lines])
    stages = {s: result.stats.get(f"seconds_{s}", 0.0) for s in STAGES}
    stages.update(write=write_seconds)
    return {
        "documents": len(result),
        "seconds": total_seconds + write_seconds,
        "stages": stages,
        "candidates_per_doc": result.stats["candidate_pairs"] / len(result),
        "bcubed_f1": scores.bcubed_f1,
        "bcubed_precision": scores.bcubed_precision,
        "bcubed_recall": scores.bcubed_recall,
        "peak_rss_mb": peak_rss_mb,
    }


def measure_size(size: int, seed: int, jobs: int, workdir: Path) -> dict:
    corpus = workdir / f"synthetic_{size}_{seed}.jsonl"
    if not corpus.exists():
        subprocess.run(
            [
                sys.executable,
                str(HERE / "corpus.py"),
                "--size",
                str(size),
                "--seed",
                str(seed),
                "--output",
                str(corpus),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    # A child process per size: its peak RSS (children's rusage) is its own.
    out = subprocess.run(
        [sys.executable, __file__, "--one", str(corpus), "--jobs", str(jobs)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def signature_race(count: int, jobs: int, num_perm: int = 128) -> list[tuple[str, float]]:
    """Documents per second, raw text to signatures of word 3-shingles, for each implementation.

    datasketch and rensa are driven the way their users drive them: terms
    from dedup's Python analyser, shingles built as Python strings. dedup
    runs its own path, as the duplicates preset does: compiled
    tokenising and hashing, batched shingles and signatures, in one process
    and in ``jobs``.
    """
    import numpy as np
    from datasketch import MinHash

    import dedup
    from dedup.analysis import _term_hasher, analyse_documents, hashed_analysis
    from dedup.normalize import Analyzer
    from dedup.params import resolve_params
    from dedup.shingle import shingles
    from dedup.signature import signatures

    data = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    docs = dedup.read_documents(data / "ecbplus" / "ecbplus.jsonl")
    texts = [docs[k % len(docs)].text for k in range(count)]
    # The terms the other contenders shingle: stemmed, without stopwords.
    params = resolve_params("duplicates", lang="en", stem=True, stopwords=True, num_perm=num_perm)
    items = [(text, None, None) for text in texts]

    def analysed():
        analyzer = Analyzer("en")  # the same Python analysis feeds the other contenders
        return (analyzer.terms(t) for t in texts)

    def naive():
        for terms in analysed():
            m = MinHash(num_perm=num_perm, seed=1)
            for s in shingles(terms, "word", 3):
                m.update(s.encode("utf-8"))

    def bulk():
        MinHash.bulk(
            ([s.encode("utf-8") for s in shingles(terms, "word", 3)] for terms in analysed()),
            num_perm=num_perm,
        )

    def ours():
        _term_hasher.cache_clear()  # its token tables start empty, as in a new run
        signatures([a.shingles for a in hashed_analysis(items, params).documents], num_perm, 1)

    def ours_jobs():
        _term_hasher.cache_clear()  # so that the workers do not inherit warm tables
        analysed = analyse_documents(items, params, jobs).documents
        signatures([a.shingles for a in analysed], num_perm, 1, jobs)

    # Once-per-process costs (numba loading its compiled kernels, the character
    # table) are paid before timing, as imports are for the other contenders.
    hashed_analysis(items[:1], params)

    contenders = [("datasketch update loop", naive), ("datasketch MinHash.bulk", bulk)]
    try:
        from rensa import RMinHash

        def rensa_run():
            for terms in analysed():
                m = RMinHash(num_perm=num_perm, seed=1)
                m.update(shingles(terms, "word", 3))
                m.digest()

        contenders.append(("rensa RMinHash", rensa_run))
    except ImportError:
        print("rensa is not installed: pip install rensa to include it", file=sys.stderr)
    contenders.append(("dedup, 1 process", ours))
    contenders.append((f"dedup, --jobs {jobs}", ours_jobs))
    rates = []
    for name, func in contenders:
        start = time.perf_counter()
        func()
        rates.append((name, count / (time.perf_counter() - start)))
    assert np.isfinite([r for _, r in rates]).all()
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dedup-bench"))
    parser.add_argument("--signatures", type=int, default=0, metavar="N")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.jobs)))
        return 0
    if args.signatures:
        rates = signature_race(args.signatures, args.jobs)
        naive_rate = rates[0][1]
        print(f"Signature stage, raw text to signatures, {args.signatures} ECB+ articles\n")
        print("| implementation | docs/s | x naive loop |")
        print("|---|---|---|")
        for name, rate in rates:
            print(f"| {name} | {rate:,.0f} | {rate / naive_rate:.1f} |")
        print()
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        figures = measure_size(size, args.seed, args.jobs, args.workdir)
        rows.append(figures)
        print(json.dumps(figures), file=sys.stderr, flush=True)
    if rows:
        header = ["docs", "s", "docs/s", *STAGES, "write", "RSS MB", "cand/doc", "B3 F1"]
        print(f"dedup cluster, default preset, --jobs {args.jobs}\n")
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for r in rows:
            cells = [
                f"{r['documents']:,}",
                f"{r['seconds']:.1f}",
                f"{r['documents'] / r['seconds']:,.0f}",
            ]
            cells += [f"{r['stages'][s]:.1f}" for s in (*STAGES, "write")]
            cells += [
                f"{r['peak_rss_mb']:,.0f}",
                f"{r['candidates_per_doc']:.1f}",
                f"{r['bcubed_f1']:.3f}",
            ]
            print("| " + " | ".join(cells) + " |")
        for small, large in zip(rows, rows[1:], strict=False):
            ratio = large["seconds"] / small["seconds"]
            growth = large["documents"] / small["documents"]
            print(
                f"\ntime({large['documents']:,}) / time({small['documents']:,}) = {ratio:.1f}"
                f" for {growth:.0f}x the documents"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
