"""Clustering quality of a preset on the shared benchmark data.

Prints, for one preset with no per-dataset tuning:
- B-cubed P/R/F1, ARI and NMI on GoogleNews-TS and ECB+, with candidate pairs
  per document and seconds;
- the SemEval-2022 same-story similarity: Pearson correlation of the score
  with ``-overall`` per language, and same-story F1 (``overall <= 2``) at the
  preset's threshold;
- the Pyongyang seeds with and without dates, against their gold events;
- with ``--baselines``, beside the preset on each clustering set: union-find
  over the same LSH-plus-cosine links (what most dedup pipelines do) and dense
  average linkage over plain TF-IDF cosine (scikit-learn, O(n^2) memory, run
  where it fits), each at the best of a small threshold grid. Picking the best
  setting by the gold labels flatters the baselines; the preset gets no such help.

Usage::

    python benchmarks/quality.py [--preset stories] [--data ../shared/data] [--only ecbplus]
                                 [--baselines]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

import dedup

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
UNION_FIND_THRESHOLDS = (0.1, 0.2, 0.3, 0.5)
DENSE_DISTANCES = (0.7, 0.8, 0.9, 0.94, 0.97)
DENSE_MAX_DOCUMENTS = 20_000  # an n x n float64 matrix of 3.2 GB
CLUSTER_SETS = {
    "googlenews": "googlenews/googlenews_ts.jsonl",
    "ecbplus": "ecbplus/ecbplus.jsonl",
}


def cluster_quality(path: Path, preset: str) -> dict:
    docs = dedup.read_documents(path)
    start = time.perf_counter()
    result = dedup.cluster(docs, preset)
    seconds = time.perf_counter() - start
    scores = dedup.score(result.labels, [d.extra["event"] for d in docs])
    return {
        "documents": len(docs),
        "bcubed_p": scores.bcubed_precision,
        "bcubed_r": scores.bcubed_recall,
        "bcubed_f1": scores.bcubed_f1,
        "ari": scores.ari,
        "nmi": scores.nmi,
        "clusters": scores.predicted_clusters,
        "gold": scores.gold_clusters,
        "candidates_per_doc": result.stats["candidate_pairs"] / len(docs),
        "seconds": seconds,
    }


def baselines(path: Path, preset: str) -> list[tuple[str, str, dedup.Scores]]:
    """The best union-find and dense average-linkage clusterings of a set, by B-cubed F1."""
    docs = dedup.read_documents(path)
    gold = [d.extra["event"] for d in docs]
    union_find = [
        (
            f"threshold {t}",
            dedup.score(dedup.cluster(docs, preset, linkage="single", threshold=t).labels, gold),
        )
        for t in UNION_FIND_THRESHOLDS
    ]
    out = [("union-find over LSH + cosine links", *max(union_find, key=lambda r: r[1].bcubed_f1))]
    if len(docs) <= DENSE_MAX_DOCUMENTS:
        out.append(("dense average linkage (scikit-learn)", *_best_dense(docs, gold)))
    return out


def _best_dense(docs, gold) -> tuple[str, dedup.Scores]:
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = [f"{d.title}\n{d.text}" if d.title else d.text for d in docs]
    vectors = TfidfVectorizer(sublinear_tf=True).fit_transform(texts)
    distances = np.clip(1.0 - (vectors @ vectors.T).toarray(), 0.0, None)
    runs = []
    for cut in DENSE_DISTANCES:
        model = AgglomerativeClustering(
            n_clusters=None, metric="precomputed", linkage="average", distance_threshold=cut
        )
        runs.append((f"distance {cut}", dedup.score(model.fit_predict(distances), gold)))
    return max(runs, key=lambda r: r[1].bcubed_f1)


def semeval_quality(path: Path, preset: str) -> tuple[dict[str, dict], float]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    pairs = [
        ({"text": r["text1"], "lang": r["lang"]}, {"text": r["text2"], "lang": r["lang"]})
        for r in rows
    ]
    start = time.perf_counter()
    scores = dedup.score_pairs(pairs, preset)
    seconds = time.perf_counter() - start
    threshold = dedup.resolve_params(preset).threshold
    by_lang: dict[str, list[int]] = defaultdict(list)
    for k, r in enumerate(rows):
        by_lang[r["lang"]].append(k)
    by_lang["all"] = list(range(len(rows)))
    out = {}
    for lang, idx in sorted(by_lang.items(), key=lambda kv: -len(kv[1])):
        s = scores[idx]
        overall = np.array([rows[k]["overall"] for k in idx], dtype=float)
        same = overall <= 2
        predicted = s >= threshold
        tp = int(np.sum(predicted & same))
        precision = tp / max(int(predicted.sum()), 1)
        recall = tp / max(int(same.sum()), 1)
        f1 = 0.0 if tp == 0 else 2 * precision * recall / (precision + recall)
        out[lang] = {
            "pairs": len(idx),
            "pearson": float(np.corrcoef(s, -overall)[0, 1]),
            "same_story_f1": f1,
        }
    return out, seconds


def seeds_quality(data: Path, preset: str) -> dict[str, str]:
    gold_rows = (data / "seeds" / "gold.jsonl").read_text(encoding="utf-8").splitlines()
    gold = {json.loads(line)["id"]: json.loads(line)["event"] for line in gold_rows}
    out = {}
    for name, source in (("with dates", "seeds/seeds.jsonl"), ("no dates (.txt)", "seeds")):
        docs = dedup.read_documents(data / source)
        labels = dedup.cluster(docs, preset).labels
        groups = defaultdict(list)
        for doc, label in zip(docs, labels.tolist(), strict=True):
            groups[label].append(doc.id[:3])
        predicted = sorted(sorted(g) for g in groups.values())
        gold_groups = defaultdict(list)
        for doc in docs:
            gold_groups[gold[doc.id]].append(doc.id[:3])
        exact = predicted == sorted(sorted(g) for g in gold_groups.values())
        out[name] = " ".join("{" + ",".join(g) + "}" for g in predicted) + (
            "  exact" if exact else ""
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="stories")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--only", choices=[*CLUSTER_SETS, "semeval", "seeds"], action="append")
    parser.add_argument("--baselines", action="store_true", help="also run the baselines")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"error: no benchmark data at {args.data}", file=sys.stderr)
        return 1
    wanted = set(args.only or [*CLUSTER_SETS, "semeval", "seeds"])
    print(f"preset: {args.preset}  {dedup.resolve_params(args.preset)}\n")
    header = "| dataset | docs | B3 P | B3 R | B3 F1 | ARI | NMI | clusters (gold) | cand/doc | s |"
    print(header)
    print("|" + "---|" * header.count(" | ") + "---|")
    for name, rel in CLUSTER_SETS.items():
        if name not in wanted:
            continue
        q = cluster_quality(args.data / rel, args.preset)
        print(
            f"| {name} | {q['documents']} | {q['bcubed_p']:.3f} | {q['bcubed_r']:.3f} "
            f"| {q['bcubed_f1']:.3f} | {q['ari']:.3f} | {q['nmi']:.3f} "
            f"| {q['clusters']} ({q['gold']}) | {q['candidates_per_doc']:.1f} "
            f"| {q['seconds']:.1f} |",
            flush=True,
        )
        if args.baselines:
            for method, setting, b in baselines(args.data / rel, args.preset):
                print(
                    f"| {name}: {method}, {setting} | | {b.bcubed_precision:.3f} "
                    f"| {b.bcubed_recall:.3f} | {b.bcubed_f1:.3f} | {b.ari:.3f} | {b.nmi:.3f} "
                    f"| {b.predicted_clusters} ({b.gold_clusters}) | | |",
                    flush=True,
                )
    if "semeval" in wanted:
        langs, seconds = semeval_quality(
            args.data / "semeval2022" / "pairs_train.jsonl", args.preset
        )
        print(f"\nSemEval-2022 same-story pairs ({seconds:.1f} s)\n")
        print("| lang | pairs | Pearson(score, -overall) | same-story F1 |")
        print("|---|---|---|---|")
        for lang, q in langs.items():
            print(f"| {lang} | {q['pairs']} | {q['pearson']:.3f} | {q['same_story_f1']:.3f} |")
    if "seeds" in wanted:
        print("\nPyongyang seeds (gold: {000,004} {001,003} {002})\n")
        for name, line in seeds_quality(args.data, args.preset).items():
            print(f"- {name}: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
