"""Tests for the ``dedup`` command line: outputs, exit codes and one-line errors."""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from dedup import __version__
from dedup.cli import cli

ROOT = Path(__file__).resolve().parents[1]
NEWS = ROOT / "examples" / "news"
SHARED_DATA = ROOT.parent / "shared" / "data"
NEWS_IDS = sorted(p.stem for p in NEWS.glob("*.txt"))


def invoke(*args: object, input: str | bytes | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


def ok(*args: object, input: str | bytes | None = None) -> Result:
    result = invoke(*args, input=input)
    assert result.exit_code == 0, result.output
    return result


def fails(*args: object, input: str | bytes | None = None) -> str:
    """Run a command that must fail on its input; return its one-line error."""
    result = invoke(*args, input=input)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def jsonl(*records: object) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def lines_of(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


STORIES = [
    {
        "id": "a1",
        "event": "quake",
        "text": "A magnitude 6 earthquake struck Izmir on Monday, killing two people and "
        "damaging dozens of buildings, officials said.",
    },
    {
        "id": "a2",
        "event": "quake",
        "text": "Two people were killed when a magnitude 6 earthquake hit Izmir on Monday; "
        "dozens of buildings were damaged, officials said.",
    },
    {
        "id": "b1",
        "event": "rates",
        "text": "The central bank kept its policy rate unchanged at 45 percent on Thursday, "
        "citing slowing inflation.",
    },
    {
        "id": "b2",
        "event": "rates",
        "text": "Citing slowing inflation, the central bank left its policy rate at 45 percent "
        "on Thursday.",
    },
    {
        "id": "c1",
        "event": "reader",
        "text": "A startup unveiled a solar-charged e-reader with a colour screen and a "
        "battery that lasts months.",
    },
]


@pytest.fixture
def stories(tmp_path: Path) -> Path:
    return write(tmp_path / "stories.jsonl", jsonl(*STORIES))


# --- cluster ------------------------------------------------------------------------


def news_metadata() -> dict[str, dict]:
    lines = (NEWS / "metadata.jsonl").read_text("utf-8").splitlines()
    return {r["id"]: r for r in map(json.loads, filter(None, lines))}


def test_cluster_jsonl_has_one_line_per_document_in_input_order():
    records = lines_of(ok("cluster", NEWS, "--format", "jsonl").stdout)
    assert len(records) == len(NEWS_IDS) == 21
    assert [r["id"] for r in records] == NEWS_IDS
    keys = {"id", "cluster", "size", "similarity", "representative", "title", "source"}
    for r in records:
        assert set(r) == keys | {"published", "flags"}
        assert isinstance(r["cluster"], int)
        assert 0.0 <= r["similarity"] <= 1.0
        assert r["flags"] == []
    sizes = Counter(r["cluster"] for r in records)
    assert all(r["size"] == sizes[r["cluster"]] for r in records)
    assert sum(r["representative"] for r in records) == len(sizes)  # one per cluster
    # metadata.jsonl supplies source and date
    metadata = news_metadata()
    for r in records:
        assert r["source"] == metadata[r["id"]]["source"]
        assert r["published"].startswith(metadata[r["id"]]["published"])


def test_cluster_json_and_csv_parse():
    payload = json.loads(ok("cluster", NEWS, "--format", "json").stdout)
    assert [d["id"] for d in payload["documents"]] == NEWS_IDS
    assert sum(c["size"] for c in payload["clusters"]) == 21
    assert [c["size"] for c in payload["clusters"]] == sorted(
        (c["size"] for c in payload["clusters"]), reverse=True
    )
    assert payload["stats"]["documents"] == 21
    assert payload["params"]["preset"] == "stories"

    rows = list(csv.DictReader(io.StringIO(ok("cluster", NEWS, "--format", "csv").stdout)))
    assert [r["id"] for r in rows] == NEWS_IDS
    assert {r["representative"] for r in rows} <= {"true", "false"}
    assert all(r["cluster"].isdigit() for r in rows)


def test_cluster_table_shows_titles_and_summarises_singletons(stories: Path):
    payload = json.loads(ok("cluster", NEWS, "--format", "json").stdout)
    out = ok("cluster", NEWS).stdout
    assert out.startswith("21 documents")
    assert payload["clusters"][0]["title"][:30] in out  # largest cluster's headline

    # a1 and a2 are one story; c1 is a singleton, listed only with --all
    out = ok("cluster", stories).stdout
    assert "Two people were killed" in out or "A magnitude 6 earthquake" in out
    assert "and 1 singleton" in out
    assert "c1" not in out
    listed = ok("cluster", stories, "--all").stdout
    assert "c1" in listed and "A startup unveiled" in listed


def test_cluster_output_file(tmp_path: Path):
    target = tmp_path / "out.jsonl"
    result = ok("cluster", NEWS, "--format", "jsonl", "--output", target)
    assert result.stdout == ""
    assert len(lines_of(target.read_text("utf-8"))) == 21


def test_cluster_stdin():
    records = lines_of(ok("cluster", "-", "--format", "jsonl", input=jsonl(*STORIES)).stdout)
    assert [r["id"] for r in records] == [s["id"] for s in STORIES]
    labels = {r["id"]: r["cluster"] for r in records}
    assert labels["a1"] == labels["a2"]
    assert labels["a1"] != labels["c1"]


def test_cluster_field_remapping(tmp_path: Path):
    renamed = [{"key": s["id"], "body": s["text"]} for s in STORIES]
    path = write(tmp_path / "renamed.jsonl", jsonl(*renamed))
    out = ok("cluster", path, "--text-field", "body", "--id-field", "key", "--format", "jsonl")
    assert [r["id"] for r in lines_of(out.stdout)] == [s["id"] for s in STORIES]


def test_cluster_duplicates_preset(stories: Path):
    copy = dict(STORIES[0], id="a1-copy")
    path = write(stories.parent / "copies.jsonl", jsonl(*STORIES, copy))
    records = lines_of(ok("cluster", path, "--preset", "duplicates", "--format", "jsonl").stdout)
    labels = {r["id"]: r["cluster"] for r in records}
    assert labels["a1"] == labels["a1-copy"]
    assert labels["a1"] != labels["b1"]


def test_cluster_options_reach_the_library(stories: Path):
    payload = json.loads(
        ok(
            "cluster",
            stories,
            "--format",
            "json",
            "--threshold",
            "0.9",
            "--num-perm",
            "64",
            "--no-stem",
            "--time-scale",
            "0",
            "--similarity",
            "jaccard",
            "--ngram-keywords",
        ).stdout
    )
    params = payload["params"]
    assert params["single_word_keywords"] is False
    assert params["threshold"] == 0.9
    assert params["num_perm"] == 64
    assert params["stem"] is False
    assert params["stopwords"] is True
    assert params["time_scale_days"] == 0
    assert params["similarity"] == "jaccard"


# --- bad input: exit 1, one line naming the file (and line) -------------------------


def test_empty_file(tmp_path: Path):
    path = write(tmp_path / "empty.jsonl", "")
    assert "empty.jsonl" in fails("cluster", path)


def test_directory_without_txt(tmp_path: Path):
    (tmp_path / "nothing").mkdir()
    assert "nothing" in fails("cluster", tmp_path / "nothing")


def test_binary_file(tmp_path: Path):
    path = write(tmp_path / "blob.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert "blob.txt" in fails("cluster", path)


def test_non_utf8_file(tmp_path: Path):
    path = write(tmp_path / "latin1.txt", "Deprem haberi\nİzmir'de güçlü sarsıntı".encode("cp1254"))
    message = fails("cluster", path)
    assert "latin1.txt:" in message
    assert "UTF-8" in message


def test_malformed_jsonl_line(tmp_path: Path):
    path = write(tmp_path / "bad.jsonl", jsonl(STORIES[0]) + '{"id": "x", "text": \n')
    assert "bad.jsonl:2:" in fails("cluster", path)


def test_duplicate_id(tmp_path: Path):
    path = write(tmp_path / "dupe.jsonl", jsonl(STORIES[0], STORIES[0]))
    message = fails("cluster", path)
    assert "dupe.jsonl:2:" in message
    assert "duplicate id" in message


def test_empty_text_fails_unless_allowed(tmp_path: Path):
    path = write(tmp_path / "blank.jsonl", jsonl(*STORIES[:2], {"id": "e", "text": "  "}))
    assert "blank.jsonl:3:" in fails("cluster", path)
    records = lines_of(ok("cluster", path, "--allow-empty", "--format", "jsonl").stdout)
    empty = records[-1]
    assert empty["id"] == "e"
    assert empty["flags"] == ["empty"]
    assert empty["size"] == 1
    assert all(r["flags"] == [] for r in records[:-1])


def test_unknown_field(stories: Path):
    message = fails("cluster", stories, "--title-field", "headline")
    assert "stories.jsonl:1:" in message
    assert "headline" in message


def test_missing_path(tmp_path: Path):
    assert "missing.jsonl" in fails("cluster", tmp_path / "missing.jsonl")


def test_unsupported_extension(tmp_path: Path):
    assert "notes.docx" in fails("cluster", write(tmp_path / "notes.docx", "x"))


def test_bad_option_values(stories: Path):
    assert "threshold" in fails("cluster", stories, "--threshold", "2")
    assert "num_perm" in fails("cluster", stories, "--num-perm", "1")
    assert "lsh_threshold" in fails("cluster", stories, "--lsh-threshold", "1")
    # type errors are click's usage errors
    result = invoke("cluster", stories, "--threshold", "high")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert invoke("cluster", stories, "--format", "xml").exit_code == 2
    assert invoke("cluster").exit_code == 2


def test_unwritable_output(stories: Path, tmp_path: Path):
    message = fails("cluster", stories, "--output", tmp_path / "no" / "such" / "dir.jsonl")
    assert "dir.jsonl" in message


# --- compare ------------------------------------------------------------------------


def test_compare_two_txt_files(tmp_path: Path):
    first = write(tmp_path / "first.txt", "Izmir quake\n\n" + STORIES[0]["text"])
    second = write(tmp_path / "second.txt", "Quake kills two\n\n" + STORIES[1]["text"])
    out = ok("compare", first, second).stdout
    assert "first vs second" in out
    assert "same story" in out
    assert "Jaccard" in out and "shared terms" in out
    other = write(tmp_path / "other.txt", STORIES[4]["text"])
    assert "different stories" in ok("compare", first, other).stdout
    # two files of the example corpus
    a, b = sorted(NEWS.glob("*.txt"))[:2]
    assert "score" in ok("compare", a, b).stdout


def test_compare_json(stories: Path):
    out = ok("compare", "--input", stories, "a1", "c1", "--format", "json").stdout
    record = json.loads(out)
    assert record["first"] == "a1" and record["second"] == "c1"
    assert 0.0 <= record["score"] <= 1.0
    assert record["same_story"] is False
    for key in ("cosine", "estimated_jaccard", "exact_jaccard", "days_apart", "shared_terms"):
        assert key in record


def test_compare_ids_in_input(stories: Path):
    out = ok("compare", "--input", stories, "a1", "a2").stdout
    assert "a1 vs a2" in out
    assert "same story" in out
    assert "izmir" in out.lower()


def test_compare_errors(stories: Path, tmp_path: Path):
    message = fails("compare", "--input", stories, "a1", "zz")
    assert "stories.jsonl" in message and "zz" in message
    # a file with several documents is not one document
    assert "stories.jsonl" in fails("compare", stories, stories)
    assert "nope.txt" in fails("compare", tmp_path / "nope.txt", stories)
    assert invoke("compare", stories).exit_code == 2
    assert invoke("compare", "--pairs", stories, "a1").exit_code == 2


def test_compare_pairs(tmp_path: Path):
    pairs = write(
        tmp_path / "pairs.jsonl",
        jsonl(
            {"pair_id": "p1", "text1": STORIES[0]["text"], "text2": STORIES[1]["text"]},
            {"pair_id": 2, "text1": STORIES[0]["text"], "text2": STORIES[4]["text"]},
            {"text1": STORIES[2]["text"], "text2": STORIES[3]["text"]},
        ),
    )
    records = lines_of(ok("compare", "--pairs", pairs).stdout)
    assert [r["pair_id"] for r in records] == ["p1", "2", None]
    for r in records:
        assert set(r) == {"pair_id", "score", "same_story"}
        assert 0.0 <= r["score"] <= 1.0
    assert records[0]["same_story"] is True
    assert records[1]["same_story"] is False
    assert records[0]["score"] > records[1]["score"]

    target = tmp_path / "scores.jsonl"
    ok("compare", "--pairs", pairs, "--output", target)
    assert len(lines_of(target.read_text("utf-8"))) == 3


def test_compare_pairs_bad_lines(tmp_path: Path):
    missing = write(
        tmp_path / "pairs.jsonl", jsonl({"text1": "a b", "text2": "b c"}, {"text1": "x"})
    )
    message = fails("compare", "--pairs", missing)
    assert "pairs.jsonl:2:" in message and "text2" in message
    wrong = write(tmp_path / "typed.jsonl", jsonl({"text1": "a", "text2": 3}))
    assert "typed.jsonl:1:" in fails("compare", "--pairs", wrong)
    assert "empty.jsonl" in fails("compare", "--pairs", write(tmp_path / "empty.jsonl", "\n"))


# --- evaluate -----------------------------------------------------------------------


def test_evaluate_table(stories: Path):
    out = ok("evaluate", stories, "--gold-field", "event").stdout
    for word in ("B-cubed", "pairwise", "ARI", "NMI", "precision", "recall"):
        assert word in out


def test_evaluate_json(stories: Path):
    scores = json.loads(ok("evaluate", stories, "--gold-field", "event", "--format", "json").stdout)
    assert scores["documents"] == 5
    assert scores["gold_clusters"] == 3
    for key in ("bcubed_precision", "bcubed_recall", "bcubed_f1", "pairwise_f1", "ari", "nmi"):
        assert 0.0 <= scores[key] <= 1.0 or key == "ari"
    assert "predicted_clusters" in scores


def test_evaluate_directory_with_metadata_gold():
    scores = json.loads(ok("evaluate", NEWS, "--gold-field", "event", "--format", "json").stdout)
    assert scores["documents"] == 21
    assert scores["gold_clusters"] == len({r["event"] for r in news_metadata().values()})


def test_evaluate_predicted(stories: Path, tmp_path: Path):
    predicted = tmp_path / "predicted.jsonl"
    perfect = [{"id": s["id"], "cluster": s["event"]} for s in STORIES]
    write(predicted, jsonl(*perfect))
    args = ("evaluate", stories, "--gold-field", "event", "--format", "json")
    scores = json.loads(ok(*args, "--predicted", predicted).stdout)
    assert scores["bcubed_f1"] == pytest.approx(1.0)
    assert scores["ari"] == pytest.approx(1.0)

    # round trip through `dedup cluster --format jsonl`
    saved = tmp_path / "saved.jsonl"
    ok("cluster", stories, "--format", "jsonl", "--output", saved)
    direct = json.loads(ok(*args).stdout)
    assert json.loads(ok(*args, "--predicted", saved).stdout) == direct

    write(predicted, jsonl(*perfect[:-1]))
    assert "c1" in fails(*args, "--predicted", predicted)
    write(predicted, jsonl(*perfect, {"id": "zz", "cluster": 9}))
    assert "zz" in fails(*args, "--predicted", predicted)


def test_evaluate_missing_gold(tmp_path: Path):
    path = write(tmp_path / "gold.jsonl", jsonl(*STORIES[:2], {"id": "n", "text": "no label"}))
    message = fails("evaluate", path, "--gold-field", "event")
    assert "gold.jsonl:3:" in message and "event" in message
    assert invoke("evaluate", path).exit_code == 2  # --gold-field is required


# --- the rest -----------------------------------------------------------------------


def test_version():
    result = ok("--version")
    assert __version__ in result.stdout


def test_help_for_every_command():
    for command in ("cluster", "compare", "evaluate"):
        out = ok(command, "--help").stdout
        assert "--preset" in out and "--output" in out


def test_main_entry_point_exits_with_error_code(monkeypatch, capsys, tmp_path: Path):
    from dedup import cli as cli_module

    monkeypatch.setattr("sys.argv", ["dedup", "cluster", str(tmp_path / "missing.txt")])
    with pytest.raises(SystemExit) as info:
        cli_module.main()
    assert info.value.code == 1
    assert capsys.readouterr().err.startswith("Error: ")


@pytest.mark.parametrize(
    ("exc", "code", "message"), [(KeyboardInterrupt, 130, "Interrupted."), (BrokenPipeError, 1, "")]
)
def test_interrupt_and_broken_pipe(monkeypatch, stories: Path, exc, code, message):
    def boom(*args, **kwargs):
        raise exc()

    monkeypatch.setattr("dedup.cli.run", boom)
    result = invoke("cluster", stories)
    assert result.exit_code == code
    assert result.stderr.strip() == message
    assert "Traceback" not in result.output


@pytest.mark.skipif(
    not (SHARED_DATA / "seeds" / "seeds.jsonl").is_file(), reason="shared data not present"
)
def test_real_seed_data():
    seeds = SHARED_DATA / "seeds" / "seeds.jsonl"
    expected = [json.loads(line)["id"] for line in seeds.read_text("utf-8").splitlines() if line]
    records = lines_of(ok("cluster", seeds, "--format", "jsonl").stdout)
    assert [r["id"] for r in records] == expected
    assert ok("cluster", seeds, "--all").stdout.count("\n") > len(expected)


def test_evaluate_shows_the_worst_errors(tmp_path: Path):
    # Two events; predictions saved by hand: one cluster mixes them, one event is split.
    docs = write(
        tmp_path / "docs.jsonl",
        jsonl(
            {"id": "a1", "title": "Quake in Izmir", "text": "quake izmir", "event": "q"},
            {"id": "a2", "title": "Izmir shaken", "text": "izmir shaken", "event": "q"},
            {"id": "b1", "title": "Bank holds rates", "text": "bank rates", "event": "r"},
            {"id": "b2", "title": "Rates unchanged", "text": "rates unchanged", "event": "r"},
        ),
    )
    saved = write(
        tmp_path / "out.jsonl",
        jsonl(
            {"id": "a1", "cluster": 0},
            {"id": "a2", "cluster": 0},
            {"id": "b1", "cluster": 0},
            {"id": "b2", "cluster": 1},
        ),
    )
    args = ("evaluate", docs, "--gold-field", "event", "--predicted", saved)
    table = ok(*args).stdout
    assert "merged: cluster 0" in table and "Quake in Izmir" in table
    assert "split: event r" in table and "Rates unchanged" in table
    errors = json.loads(ok(*args, "--format", "json").stdout)["errors"]
    assert [(e["kind"], e["wrong"]) for e in errors] == [("merged", 1), ("split", 1)]
    assert errors[0]["parts"][0] == {"label": "q", "ids": ["a1", "a2"]}
    assert "merged" not in ok(*args, "--errors", "0").stdout


def _stage_lines(min_seconds: float) -> list[tuple[str, str, str]]:
    """The (stage, seconds, count) lines a run of four stage reports leaves on a terminal."""
    from rich.console import Console

    from dedup.report import stage_progress

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, color_system=None)
    with stage_progress(console, min_seconds=min_seconds) as progress:
        progress("read", 10, 0)
        progress("analyse", 0, 10)
        progress("analyse", 10, 10)
        progress("verify", 5, 5)
    return re.findall(r"  (\w+) +([\d.]+) s +([\d,]+)\n", out.getvalue())


def test_stage_progress_leaves_one_timed_line_per_stage():
    lines = _stage_lines(min_seconds=0)
    assert [(stage, count) for stage, _, count in lines] == [
        ("read", "10"),
        ("analyse", "10"),
        ("verify", "5"),
    ]
    assert all(float(seconds) >= 0 for _, seconds, _ in lines)


def test_stage_progress_stays_quiet_on_a_short_run():
    assert _stage_lines(min_seconds=60) == []
