"""The persistent story index (dedup.index), on SQLite and, with DEDUP_TEST_REDIS, on Redis."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from click.testing import CliRunner

import dedup
from dedup import band_index
from dedup import index as index_module
from dedup.cli import cli
from dedup.index import IndexBusyError, IndexFormatError, IndexParamsError, StoryIndex
from dedup.sqlite_store import SQLiteStore
from dedup.stores import StoreUnavailableError, pack_counts, unpack_counts
from dedup.vectors import DocumentFrequencies

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "news"
REDIS = os.environ.get("DEDUP_TEST_REDIS")


@pytest.fixture(params=["sqlite", "redis"])
def location(request, tmp_path) -> str:
    """A fresh index location on each store."""
    if request.param == "sqlite":
        return str(tmp_path / "index.sqlite")
    if not REDIS:
        pytest.skip("set DEDUP_TEST_REDIS=redis://host:port/db to test the Redis store")
    import redis

    redis.Redis.from_url(REDIS).flushdb()
    return REDIS


def _examples() -> list[dedup.Document]:
    return dedup.read_documents(EXAMPLES)


def _agreement(location: str, docs: list[dedup.Document], batches: int) -> float:
    expected = dedup.cluster(docs).labels.tolist()
    order = list(range(len(docs)))
    random.Random(0).shuffle(order)
    size = -(-len(docs) // batches)
    with StoryIndex(location) as index:
        for k in range(batches):
            index.add([docs[i] for i in order[k * size : (k + 1) * size]])
        result = index.clusters()
    label = {d.id: int(x) for d, x in zip(result.documents, result.labels, strict=True)}
    return dedup.score([label[d.id] for d in docs], expected).bcubed_f1


def test_examples_in_batches_agree_with_one_run(location):
    assert _agreement(location, _examples(), 4) >= 0.97


def test_ecbplus_in_ten_batches_agrees_with_one_run(location, shared_data):
    docs = dedup.read_documents(shared_data / "ecbplus" / "ecbplus.jsonl")
    assert _agreement(location, docs, 10) >= 0.97


@pytest.mark.skipif(not os.environ.get("DEDUP_SLOW"), reason="slow: set DEDUP_SLOW=1")
def test_googlenews_in_ten_batches_agrees_with_one_run(tmp_path, shared_data):
    docs = dedup.read_documents(shared_data / "googlenews" / "googlenews_ts.jsonl")
    assert _agreement(str(tmp_path / "gn.sqlite"), docs, 10) >= 0.97


def _workers_of(index: StoryIndex) -> list:
    pool = index._workers._pool
    return [] if pool is None else list(pool._processes.values())


def test_analysis_workers_live_from_add_to_add_until_close(tmp_path, shared_data):
    docs = dedup.read_documents(shared_data / "ecbplus" / "ecbplus.jsonl")[:1000]
    with mock.patch("dedup.index.default_jobs", return_value=2):
        index = StoryIndex(tmp_path / "index.sqlite")
    assert index.query(docs[:1]) and _workers_of(index) == []  # one document: no worker
    index.add(docs[:500])  # several chunks: the workers start
    workers = _workers_of(index)
    assert len(workers) == 2
    index.add(docs[500:])
    assert _workers_of(index) == workers
    index.close()
    assert index._workers._pool is None
    assert not any(worker.is_alive() for worker in workers)


def test_a_killed_analysis_worker_is_replaced_and_the_batch_analysed_again(tmp_path, shared_data):
    docs = dedup.read_documents(shared_data / "ecbplus" / "ecbplus.jsonl")[:1000]
    with mock.patch("dedup.index.default_jobs", return_value=2):
        index = StoryIndex(tmp_path / "index.sqlite")
    with index:
        index.add(docs[:500])
        (victim, *_) = _workers_of(index)
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(10)
        added = index.add(docs[500:])
        assert [a.id for a in added] == [d.id for d in docs[500:]]
        assert all(a.status in ("new", "joined") for a in added)
        assert victim not in _workers_of(index) and len(_workers_of(index)) == 2
        assert index.stats()["documents"] == len({d.id for d in docs})  # ECB+ repeats ids


def test_readding_is_idempotent_or_an_error(location):
    docs = _examples()
    with StoryIndex(location) as index:
        first = index.add(docs[:10])
        again = index.add(docs[:12])
        assert [a.status for a in again[:10]] == ["exists"] * 10
        assert [a.cluster for a in again[:10]] == [a.cluster for a in first]
        assert index.stats()["documents"] == 12
        with pytest.raises(dedup.DuplicateIdError, match="already in the index"):
            index.add(docs[11:13], on_duplicate="error")
        assert index.stats()["documents"] == 12


def _exact_norms(index: StoryIndex, ids: list[str], everyone: list[str]) -> np.ndarray:
    """The TF-IDF norms of ``ids`` with the frequencies of ``everyone`` counted afresh."""
    from dedup.vectors import DocumentFrequencies, tfidf_norms

    stored = index.store.documents(everyone)
    frequencies = DocumentFrequencies.count([stored[i].features for i in everyone])
    chosen = [stored[i] for i in ids]
    return tfidf_norms([d.features for d in chosen], [d.counts for d in chosen], frequencies)


def test_norms_and_link_scores_are_taken_again_once_the_index_grew(location):
    # A stored document's norm and a stored link's score are kept while the index
    # grows by 10% at most; past that, those a batch meets are taken again.
    docs = _examples()
    ids = [d.id for d in docs]
    copies = [dataclasses.replace(docs[0], id=f"copy-{k}") for k in range(3)]
    with StoryIndex(location) as index:
        index.add(docs[:20])
        stored = index.store.documents(ids[:20])
        np.testing.assert_allclose(
            [stored[i].norm for i in ids[:20]], _exact_norms(index, ids[:20], ids[:20]), rtol=1e-12
        )
        assert {stored[i].norm_documents for i in ids[:20]} == {20}
        quake = stored[ids[0]].cluster
        mates = [i for i in ids[:20] if stored[i].cluster == quake]
        assert len(mates) >= 2
        assert set(index.store.cluster_links([quake]).documents.tolist()) == {20}

        def kept(records):
            return {i: (d.norm, d.norm_documents, d.cluster) for i, d in records.items()}

        index.add(docs[20:])  # 21 documents: within 10%, nothing is taken again
        assert kept(index.store.documents(ids[:20])) == kept(stored)

        index.add(copies)  # 24: the quake story's members meet the copies
        now = index.store.documents(ids[:20])
        everyone = ids + [c.id for c in copies]
        np.testing.assert_allclose(
            [now[i].norm for i in mates], _exact_norms(index, mates, everyone), rtol=1e-12
        )
        assert {now[i].norm_documents for i in mates} == {24}
        assert set(index.store.cluster_links([quake]).documents.tolist()) == {24}
        # Documents the batch did not meet keep what they had.
        untouched = [i for i in ids[:20] if now[i].cluster != quake]
        assert untouched and all(kept(now)[i] == kept(stored)[i] for i in untouched)


def test_frequencies_in_memory_equal_a_fresh_count(location, monkeypatch):
    # A writer counts its own commits in without reading them back, reads a
    # removal's run, and stores the whole table every third run; a reader
    # builds its tables from the store's runs. Both equal a count of what is stored.
    monkeypatch.setattr(index_module, "_DF_RUNS", 3)
    docs = _examples()
    with StoryIndex(location) as writer:
        for k in range(0, len(docs), 4):
            writer.add(docs[k : k + 4])
            if k == 8:
                writer.remove([docs[0].id, docs[5].id])
            with StoryIndex(location) as reader:
                for index in (writer, reader):
                    index._frequencies()
                    stored = index.store.documents([d.id for d in docs])
                    expected = DocumentFrequencies.count([d.features for d in stored.values()])
                    features, counts = index._df.whole()
                    counted = counts != 0  # a removed document's features stay, at 0
                    np.testing.assert_array_equal(features[counted], expected.features)
                    np.testing.assert_array_equal(counts[counted], expected.counts)
                    assert index._df.documents == len(stored)


def test_query_is_read_only_and_finds_the_cluster(location):
    docs = _examples()
    with StoryIndex(location) as index:
        added = {a.id: a.cluster for a in index.add(docs[1:])}
        (answer,) = index.query([dict(id="probe", text=docs[0].text, title=docs[0].title)])
        partner = next(d.id for d in docs[1:] if added[d.id] == answer.cluster)
        assert answer.cluster is not None and answer.matches and partner
        assert index.stats()["documents"] == len(docs) - 1


def test_a_copy_joins_within_days_and_not_a_year_later(location):
    # Pairs too far apart in time to reach a link are dropped before their
    # vectors are read; a near one must still be scored.
    docs = _examples()
    with StoryIndex(location) as index:
        added = {a.id: a.cluster for a in index.add(docs)}
        source = next(d for d in docs if d.published is not None)
        probe = dict(text=source.text, title=source.title)
        near, far = index.query(
            [
                dict(probe, id="near", published=source.published + timedelta(days=1)),
                dict(probe, id="far", published=source.published + timedelta(days=400)),
            ]
        )
        assert (near.id, near.status, near.cluster) == ("near", "joined", added[source.id])
        assert (far.id, far.status, far.matches) == ("far", "new", ())


def test_the_date_window_of_the_buckets_changes_no_result(tmp_path):
    # SQLite skips bucket mates dated beyond a document's reach before
    # counting them; the same stories spread over two years must cluster
    # exactly as without that window, which the ceiling filter alone gives.
    base = [d for d in _examples() if d.published is not None]
    docs = [
        dataclasses.replace(d, id=f"{d.id}+{days}", published=d.published + timedelta(days=days))
        for days in (0, 2, 90, 150, 400)
        for d in base
    ]
    random.Random(1).shuffle(docs)
    windowed = SQLiteStore.lsh_candidates
    counted = {}

    def unwindowed(self, signatures, max_bucket, min_bands=1, jobs=1, days=None, reach=None):
        counted["all"] = (
            counted.get("all", 0)
            + windowed(self, signatures, max_bucket, min_bands, jobs).owners.size
        )
        counted["windowed"] = (
            counted.get("windowed", 0)
            + windowed(self, signatures, max_bucket, min_bands, jobs, days, reach).owners.size
        )
        return windowed(self, signatures, max_bucket, min_bands, jobs)

    results = []
    for name, patch in (("window", None), ("none", unwindowed)):
        with contextlib.ExitStack() as stack:
            if patch:
                stack.enter_context(mock.patch.object(SQLiteStore, "lsh_candidates", patch))
            index = stack.enter_context(StoryIndex(tmp_path / f"{name}.sqlite"))
            added = [index.add(docs[k : k + 40]) for k in range(0, len(docs), 40)]
            queried = index.query(base[:5])
            result = index.clusters()
            results.append((added, queried, result.labels.tolist(), index.store.all_links()))
    assert results[0] == results[1]
    assert counted["windowed"] < counted["all"] / 2  # the window did drop most candidates


def test_band_runs_stay_under_the_blob_limit_with_the_same_results(tmp_path):
    # A run's keys are one blob, and SQLite refuses blobs over 1e9 bytes (a
    # million documents' keys at 128 bands). Runs stop merging at a limit and
    # a larger batch is written as several: here a limit of 4 documents.
    docs = _examples()
    results = []
    for name, limit_bytes in (("small", 4 * (4 + 12 * 128)), ("default", None)):
        with contextlib.ExitStack() as stack:
            if limit_bytes:
                stack.enter_context(mock.patch.object(band_index, "_MAX_RUN_BYTES", limit_bytes))
            path = tmp_path / f"{name}.sqlite"
            index = stack.enter_context(StoryIndex(path))
            assert index.bands == 128
            added = [index.add(docs[k : k + 6]) for k in range(0, len(docs), 6)]
            results.append((added, index.clusters().labels.tolist(), index.store.all_links()))
        runs = sqlite3.connect(path).execute("SELECT documents FROM lsh_runs").fetchall()
        if limit_bytes:
            assert max(r[0] for r in runs) <= 4 and len(runs) >= len(docs) / 4
    assert results[0] == results[1]


def test_remove_and_clusters(location):
    docs = _examples()
    with StoryIndex(location) as index:
        index.add(docs)
        assert index.remove([docs[0].id, "no-such-id"]) == [docs[0].id]
        result = index.clusters()
        assert sorted(d.id for d in result.documents) == sorted(d.id for d in docs[1:])


def test_a_removed_document_is_never_a_candidate_even_to_an_older_reader(location):
    # Its band keys stay in the store (SQLite: in a run), and the reader, open
    # from before, has never read its date and length: the docs table drops
    # it with the rows. "twin" is added last, so it is numbered past the rest.
    docs = _examples()
    twin = dataclasses.replace(docs[0], id="twin")
    with StoryIndex(location) as reader:
        reader.query(docs[:1])  # reads the store as it is: empty
        with StoryIndex(location) as writer:
            writer.add(docs[1:])
            (joined,) = writer.add([twin])
            assert joined.cluster is not None
            assert writer.remove(["twin"]) == ["twin"]
            after = writer.query(docs[:1])
        assert reader.query(docs[:1]) == after
    with StoryIndex(location) as index:
        clusters = index.clusters()
    assert "twin" not in {d.id for d in clusters.documents}
    assert {c for c, _ in after[0].matches} <= {
        d.extra["index_cluster"] for d in clusters.documents
    }
    assert after[0].matches  # its story is still there to match


@pytest.mark.skipif(not REDIS, reason="set DEDUP_TEST_REDIS to compare with the Redis store")
def test_both_stores_give_the_same_assignments_and_scores(tmp_path):
    # SQLite gives its candidates by row number, Redis by id: the index puts
    # them in one order, so every score and sum comes out bit for bit alike.
    import redis

    docs = _examples()
    results = []
    for location in (str(tmp_path / "index.sqlite"), REDIS):
        redis.Redis.from_url(REDIS).flushdb()
        with StoryIndex(location) as index:
            # Later ids first: row numbers run against id order.
            added = [index.add(docs[11:]), index.add(docs[:11:2])]
            results.append((added, index.query(docs[1:11:2] + docs[12::3])))
    assert results[0] == results[1]
    assert any(a.matches for a in results[0][1])


def test_parameters_are_fixed_at_creation(location):
    with StoryIndex(location, threshold=0.05) as index:
        index.add(_examples()[:3])
    with StoryIndex(location) as index:
        assert index.params.threshold == 0.05
    with pytest.raises(IndexParamsError, match="threshold=0.05"):
        StoryIndex(location, threshold=0.2)


def test_an_index_from_before_single_word_keywords_keeps_its_keywords(tmp_path):
    old = tmp_path / "old.sqlite"
    docs = _examples()
    with StoryIndex(old) as index:
        index.add(docs[:4])
    with sqlite3.connect(old) as db:  # as an older dedup stored them: no such field
        (stored,) = db.execute("SELECT value FROM meta WHERE key = 'params'").fetchone()
        params = json.loads(stored)
        del params["single_word_keywords"]
        db.execute("UPDATE meta SET value = ? WHERE key = 'params'", (json.dumps(params),))
    with StoryIndex(old) as index:
        assert index.params.single_word_keywords is False
        eligible = mock.patch("dedup.index.word_columns", side_effect=AssertionError)
        with eligible:  # keywords from every feature: no word columns looked up
            index.add(docs[4:])
    with pytest.raises(IndexParamsError, match="single_word_keywords=False"):
        StoryIndex(old, preset="stories")


def test_corrupt_foreign_and_old_files_are_named(tmp_path):
    garbage = tmp_path / "garbage.idx"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(IndexFormatError, match="garbage.idx: not a dedup index"):
        StoryIndex(garbage)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE people (name TEXT)")
    with pytest.raises(IndexFormatError, match="foreign.db: not a dedup index"):
        StoryIndex(foreign)
    old = tmp_path / "old.sqlite"
    StoryIndex(old).close()
    with sqlite3.connect(old) as db:
        db.execute("UPDATE meta SET value = '0' WHERE key = 'schema'")
    with pytest.raises(IndexFormatError, match="schema version 0"):
        StoryIndex(old)


def test_unreachable_redis_is_one_clear_error():
    with pytest.raises(StoreUnavailableError, match="cannot reach Redis at redis://127.0.0.1:1/0"):
        StoryIndex("redis://127.0.0.1:1/0")


def test_cli_add_query_clusters_stats_remove(tmp_path):
    runner = CliRunner()
    index = str(tmp_path / "cli.sqlite")
    out = runner.invoke(cli, ["index", "add", index, str(EXAMPLES), "--format", "jsonl"])
    assert out.exit_code == 0, out.output
    records = [json.loads(line) for line in out.output.splitlines()]
    assert len(records) == len(_examples()) and {"id", "cluster"} <= set(records[0])
    probe = tmp_path / "probe.jsonl"
    probe.write_text(json.dumps({"id": "p", "text": _examples()[0].text}) + "\n")
    out = runner.invoke(cli, ["index", "query", index, str(probe), "--format", "jsonl"])
    assert out.exit_code == 0 and json.loads(out.output)["status"] == "joined"
    out = runner.invoke(cli, ["index", "clusters", index, "--format", "jsonl"])
    assert len(out.output.splitlines()) == len(records)
    out = runner.invoke(cli, ["index", "stats", index])
    assert json.loads(out.output)["documents"] == len(records)
    out = runner.invoke(cli, ["index", "remove", index, records[0]["id"]])
    assert out.exit_code == 0 and "removed 1 of 1" in out.output
    bad = tmp_path / "bad.idx"
    bad.write_text("not an index\n" * 100)
    out = runner.invoke(cli, ["index", "stats", str(bad)])
    assert out.exit_code == 1 and out.output.count("\n") == 1 and "bad.idx" in out.output


# --- real processes ---------------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import sys, dedup
    location, start, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    timeout = float(sys.argv[4])
    docs = dedup.read_documents(sys.argv[5])
    with dedup.StoryIndex(location, timeout=timeout) as index:
        index.add(docs[:start])
        print("committed", flush=True)
        index.add(docs[start:stop])
        print("done", flush=True)
    """
)


def _writer(location: str, start: int, stop: int, path: Path, timeout: float = 30.0):
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, location, str(start), str(stop), str(timeout), str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkill_during_add_leaves_whole_batches(location, shared_data):
    path = shared_data / "ecbplus" / "ecbplus.jsonl"
    ids = [d.id for d in dedup.read_documents(path)]
    writer = _writer(location, 100, 700, path)
    assert writer.stdout.readline().strip() == "committed"
    time.sleep(1.5)  # well inside the second, 600-document batch
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    with StoryIndex(location) as index:
        present = sorted(d.id for d in index.clusters().documents)
    assert present in (sorted(ids[:100]), sorted(ids[:700]))


@pytest.mark.skipif(not REDIS, reason="set DEDUP_TEST_REDIS to test the Redis store")
def test_redis_lsh_entries_of_a_batch_that_never_committed_are_replaced():
    import redis

    from dedup.signature import to_minhash

    redis.Redis.from_url(REDIS).flushdb()
    docs = _examples()
    with StoryIndex(REDIS) as index:
        lsh = index.store.lsh
        # A writer killed between its LSH entries and its records left these.
        stray = np.full(index.params.num_perm, 7, dtype=np.uint32)
        lsh.insert(docs[0].id.encode(), to_minhash(stray, index.params.seed))
        index.add(docs[:5])
        assert len(lsh.keys.get(docs[0].id.encode())) == index.bands
        assert not lsh.query(to_minhash(stray, index.params.seed))


def test_readers_query_while_a_writer_adds(location, shared_data):
    path = shared_data / "ecbplus" / "ecbplus.jsonl"
    docs = dedup.read_documents(path)
    with StoryIndex(location) as index:
        index.add(docs[:50])
    writer = _writer(location, 100, 400, path)
    with StoryIndex(location) as index:
        while writer.poll() is None:
            for answer in index.query(docs[500:503]):
                assert answer.cluster is None or answer.cluster >= 0
            result = index.clusters()
            assert len(result.documents) in (50, 100, 400)  # whole batches only
    assert writer.returncode == 0, writer.stderr.read()


def test_two_writers_on_one_sqlite_file_serialise_or_say_busy(tmp_path, shared_data):
    path = shared_data / "ecbplus" / "ecbplus.jsonl"
    location = str(tmp_path / "shared.sqlite")
    StoryIndex(location).close()
    writers = [_writer(location, 200, 500, path, timeout=t) for t in (60.0, 0.05)]
    outputs = [w.communicate() for w in writers]
    for w, (_, err) in zip(writers, outputs, strict=True):
        assert w.returncode == 0 or "index is busy" in err, err
    assert writers[0].returncode == 0
    with StoryIndex(location) as index:
        assert index.stats()["documents"] == 500
        assert sqlite3.connect(location).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_busy_error_is_a_dedup_error():
    assert issubclass(IndexBusyError, dedup.DedupError)


def test_document_frequency_blobs_take_four_bytes_and_old_ones_still_read():
    features = np.array([1, 5, 9], np.uint32)
    counts = np.array([3, -1, 70_000], np.int64)  # a removal's run holds -1s
    packed = pack_counts(features, counts)
    assert [len(b) for b in packed] == [12, 12]
    older = (features.astype("<u4").tobytes(), counts.astype("<i8").tobytes())
    for blobs in (packed, older):
        got = unpack_counts(*blobs)
        assert got[0].tolist() == [1, 5, 9] and got[1].tolist() == [3, -1, 70_000]


@pytest.mark.skipif(not REDIS, reason="set DEDUP_TEST_REDIS to test the Redis store")
def test_redis_bulk_lsh_insert_writes_what_datasketch_insert_writes():
    import redis

    from dedup.redis_store import RedisStore
    from dedup.signature import to_minhash

    r = redis.Redis.from_url(REDIS)
    r.flushdb()
    rng = np.random.default_rng(5)
    # Few distinct values, so buckets are shared and hold several documents.
    signatures = rng.integers(0, 3, (40, 32)).astype(np.uint32)
    keys = [f"doc-{k}".encode() for k in range(len(signatures))]
    ours, theirs = RedisStore(REDIS + "?prefix=ours"), RedisStore(REDIS + "?prefix=theirs")
    for store in (ours, theirs):
        store.configure(16, 2, 1, 32)
    ours._insert_lsh(keys, signatures)
    for key, signature in zip(keys, signatures, strict=True):
        theirs.lsh.insert(key, to_minhash(signature, 1))

    def dump(prefix: str) -> dict:
        out = {}
        for name in r.scan_iter(f"{prefix}:*"):
            kind = r.type(name)
            if kind == b"hash":
                value = r.hgetall(name)
            elif kind == b"set":
                value = r.smembers(name)
            else:
                value = r.lrange(name, 0, -1)
            out[name.replace(prefix.encode(), b"P")] = repr(value).replace(prefix, "P")
        return out

    written = dump("ours")
    assert written and written == dump("theirs")
    assert ours.lsh.query(to_minhash(signatures[3], 1))
