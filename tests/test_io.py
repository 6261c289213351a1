"""Tests for dedup.io: every input kind, field mapping, and every bad-input error."""

from __future__ import annotations

import io
import json
import sys
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dedup.errors import (
    DedupError,
    DuplicateIdError,
    EmptyDocumentError,
    FieldError,
    InputError,
)
from dedup.io import FieldMap, iter_documents, open_output, read_documents, read_labels

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def jsonl(*records: object) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def check_error(exc: BaseException, path: Path | str, line: int | None) -> None:
    """The message names the file and, when given, the line, on one line."""
    message = str(exc)
    name = path.name if isinstance(path, Path) else path
    assert name in message
    if line is not None:
        assert f":{line}:" in message
    assert "\n" not in message


# --- FieldMap -------------------------------------------------------------------


def test_fieldmap_remapped_lists_only_changed_fields():
    assert FieldMap().remapped() == {}
    assert FieldMap(text="body", title="headline").remapped() == {
        "text": "body",
        "title": "headline",
    }


# --- directories and .txt files -------------------------------------------------


def test_directory_of_txt_files_sorted_by_name(tmp_path):
    write(tmp_path / "b.txt", "\n  Second title  \nBody of b.\n")
    write(tmp_path / "a.txt", b"\xef\xbb\xbfFirst title\nBody of a.")
    write(tmp_path / "notes.md", "ignored")
    write(tmp_path / "data.jsonl", jsonl({"id": "x", "text": "ignored too"}))
    docs = read_documents(tmp_path)
    assert [d.id for d in docs] == ["a", "b"]
    assert docs[0].text == "First title\nBody of a."  # BOM stripped
    assert docs[0].title == "First title"
    assert docs[1].title == "Second title"
    assert docs[1].text == "\n  Second title  \nBody of b.\n"
    assert docs[0].origin == f"{tmp_path / 'a.txt'}:1"
    assert docs[0].published is None and docs[0].extra == {}


def test_directory_with_metadata(tmp_path):
    write(tmp_path / "a.txt", "First line\nBody.")
    write(tmp_path / "b.txt", "Other\nBody.")
    write(
        tmp_path / "metadata.jsonl",
        jsonl(
            {"id": "a", "title": "Real title", "source": "NTV", "published": "2024-06-19"},
            {"id": "b", "lang": "tr", "event": "e1", "title": None},
        ),
    )
    a, b = read_documents(tmp_path)
    assert (a.title, a.source, a.published) == ("Real title", "NTV", datetime(2024, 6, 19))
    assert a.text == "First line\nBody."
    assert (b.title, b.lang, b.extra) == ("Other", "tr", {"event": "e1"})


def test_metadata_id_without_txt_file(tmp_path):
    write(tmp_path / "a.txt", "Title\nBody.")
    write(tmp_path / "metadata.jsonl", jsonl({"id": "a"}, {"id": "ghost", "title": "x"}))
    with pytest.raises(InputError, match="ghost") as info:
        read_documents(tmp_path)
    check_error(info.value, "metadata.jsonl", 2)


def test_metadata_bad_date_is_located(tmp_path):
    write(tmp_path / "a.txt", "Title\nBody.")
    write(tmp_path / "metadata.jsonl", "\n" + jsonl({"id": "a", "published": "soon"}))
    with pytest.raises(InputError, match="invalid published date 'soon'") as info:
        read_documents(tmp_path)
    check_error(info.value, "metadata.jsonl", 2)


def test_directory_without_txt_files(tmp_path):
    write(tmp_path / "notes.md", "nothing")
    with pytest.raises(InputError, match="no .txt files in directory") as info:
        read_documents(tmp_path)
    check_error(info.value, str(tmp_path), None)


def test_single_txt_file(tmp_path):
    path = write(tmp_path / "story.txt", "Headline\n\nText.")
    (doc,) = read_documents(path)
    assert (doc.id, doc.title, doc.text, doc.origin) == (
        "story",
        "Headline",
        "Headline\n\nText.",
        f"{path}:1",
    )


def test_empty_txt_file(tmp_path):
    path = write(tmp_path / "blank.txt", "  \n\n")
    with pytest.raises(EmptyDocumentError, match="empty text in document 'blank'") as info:
        read_documents(path)
    check_error(info.value, path, 1)
    (doc,) = read_documents(path, allow_empty=True)
    assert (doc.id, doc.text, doc.title) == ("blank", "", None)


# --- JSON Lines, CSV, Parquet, stdin ------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".ndjson", ".json"])
def test_json_lines(tmp_path, suffix):
    content = "\n" + jsonl(
        {"id": "a", "text": "Alpha", "title": "T", "source": "S", "url": "http://x", "lang": "en"},
        {"id": 7, "text": "Beta", "title": "", "event": 3, "tags": ["x"]},
    )
    path = write(tmp_path / f"docs{suffix}", content)
    a, b = read_documents(path)
    assert (a.id, a.text, a.title, a.source, a.url, a.lang) == (
        "a",
        "Alpha",
        "T",
        "S",
        "http://x",
        "en",
    )
    assert a.origin == f"{path}:2"
    assert (b.id, b.title, b.extra, b.origin) == (
        "7",
        None,
        {"event": 3, "tags": ["x"]},
        f"{path}:3",
    )


def test_jsonl_with_bom_and_crlf(tmp_path):
    path = write(tmp_path / "d.jsonl", b'\xef\xbb\xbf{"text": "x"}\r\n{"text": "y"}\r\n')
    assert [d.text for d in read_documents(path)] == ["x", "y"]


def test_jsonl_is_streamed(tmp_path):
    path = write(tmp_path / "d.jsonl", jsonl({"text": "ok"}) + "{broken\n")
    docs = iter_documents(path)
    assert next(docs).text == "ok"  # yielded before the bad line is read
    with pytest.raises(InputError, match="malformed JSON") as info:
        next(docs)
    check_error(info.value, path, 2)


def test_csv(tmp_path):
    content = (
        'id,text,title,published,event\n"a","line one\nline two",T,2024-01-02,e1\n\n,Beta,,,e2\n'
    )
    path = write(tmp_path / "docs.csv", content)
    a, b = read_documents(path)
    assert (a.id, a.text, a.title, a.published) == (
        "a",
        "line one\nline two",
        "T",
        datetime(2024, 1, 2),
    )
    assert a.extra == {"event": "e1"} and a.origin == f"{path}:2"
    # Empty cells mean "absent": the id is generated from the physical line.
    assert (b.id, b.title, b.published, b.origin) == ("docs.csv:5", None, None, f"{path}:5")


def test_csv_wrong_column_count(tmp_path):
    path = write(tmp_path / "docs.csv", "id,text\na,x\nb,y,z\n")
    with pytest.raises(InputError, match="expected 2 columns, got 3") as info:
        read_documents(path)
    check_error(info.value, path, 3)


def test_parquet(tmp_path):
    table = pa.table(
        {
            "id": pa.array([1, 2]),
            "text": ["Alpha", "Beta"],
            "published": pa.array(
                [1718794800_000000000, None], pa.timestamp("ns", tz="+03:00")
            ),  # 2024-06-19 14:00 +03:00 = 11:00 UTC
            "day": pa.array([date(2024, 1, 2), None], pa.date32()),
            "score": [0.5, 1.5],
        }
    )
    path = tmp_path / "docs.parquet"
    pq.write_table(table, path, row_group_size=1)
    a, b = read_documents(path, fields=FieldMap())
    assert (a.id, a.text, a.origin) == ("1", "Alpha", f"{path}:1")
    assert a.published == datetime(2024, 6, 19, 11, 0)
    assert a.extra == {"day": date(2024, 1, 2), "score": 0.5}
    assert (b.id, b.published, b.origin) == ("2", None, f"{path}:2")


def test_parquet_date_column_as_published(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["x"], "day": pa.array([date(2024, 1, 2)])}), path)
    (doc,) = read_documents(path, fields=FieldMap(published="day"))
    assert (doc.id, doc.published) == ("d.parquet:1", datetime(2024, 1, 2))


def test_stdin():
    data = io.BytesIO(jsonl({"text": "from stdin"}, {"id": "z", "text": "two"}).encode())
    a, b = read_documents("-", stdin=data)
    assert (a.id, a.text, a.origin) == ("stdin:1", "from stdin", "<stdin>:1")
    assert b.id == "z"


def test_stdin_errors_name_stdin():
    data = io.BytesIO(b'{"text": "a"}\n[1, 2]\n')
    with pytest.raises(InputError, match="expected a JSON object, got list") as info:
        read_documents(["-"], stdin=data)
    check_error(info.value, "<stdin>", 2)


def test_several_inputs_in_order(tmp_path):
    one = write(tmp_path / "one.jsonl", jsonl({"id": "a", "text": "x"}))
    two = write(tmp_path / "d" / "b.txt", "y")
    assert [d.id for d in read_documents([one, str(two.parent)])] == ["a", "b"]


# --- field mapping and ids ---------------------------------------------------------


def test_field_remapping(tmp_path):
    path = write(
        tmp_path / "d.jsonl",
        jsonl({"key": "k1", "body": "Text", "headline": "H", "title": "other", "text": "t"}),
    )
    (doc,) = read_documents(path, fields=FieldMap(id="key", text="body", title="headline"))
    assert (doc.id, doc.text, doc.title) == ("k1", "Text", "H")
    assert doc.extra == {"title": "other", "text": "t"}


def test_remapped_field_must_exist(tmp_path):
    path = write(tmp_path / "d.jsonl", jsonl({"text": "a", "headline": "h"}, {"text": "b"}))
    with pytest.raises(FieldError, match="unknown field 'headline'") as info:
        read_documents(path, fields=FieldMap(title="headline"))
    check_error(info.value, path, 2)


def test_missing_text(tmp_path):
    path = write(tmp_path / "d.jsonl", jsonl({"id": "a", "title": "no text"}))
    with pytest.raises(FieldError, match="missing field 'text'") as info:
        read_documents(path)
    check_error(info.value, path, 1)


def test_missing_remapped_text_names_it(tmp_path):
    path = write(tmp_path / "d.jsonl", jsonl({"text": "a"}))
    with pytest.raises(FieldError, match="'body'") as info:
        read_documents(path, fields=FieldMap(text="body"))
    check_error(info.value, path, 1)


def test_generated_and_numeric_ids(tmp_path):
    path = write(
        tmp_path / "d.jsonl",
        jsonl({"text": "a"}, {"id": None, "text": "b"}, {"id": 3, "text": "c"}),
    )
    assert [d.id for d in read_documents(path)] == ["d.jsonl:1", "d.jsonl:2", "3"]


def test_empty_id(tmp_path):
    path = write(tmp_path / "d.jsonl", jsonl({"id": "", "text": "a"}))
    with pytest.raises(FieldError, match="'id'") as info:
        read_documents(path)
    check_error(info.value, path, 1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-06-19", datetime(2024, 6, 19)),
        ("2024-06-19T10:30:00", datetime(2024, 6, 19, 10, 30)),
        ("2024-06-19 10:30", datetime(2024, 6, 19, 10, 30)),
        ("2024-06-19T10:30:00Z", datetime(2024, 6, 19, 10, 30)),
        ("2024-06-19T13:30:00+03:00", datetime(2024, 6, 19, 10, 30)),
        ("2024-06-19T00:30:00-02:00", datetime(2024, 6, 19, 2, 30)),
        (None, None),
        ("", None),
    ],
)
def test_published(tmp_path, value, expected):
    path = write(tmp_path / "d.jsonl", jsonl({"text": "a", "published": value}))
    (doc,) = read_documents(path)
    assert doc.published == expected
    assert doc.published is None or doc.published.tzinfo is None


@pytest.mark.parametrize("value", ["xyz", "2024-13-01", 2024])
def test_invalid_published(tmp_path, value):
    path = write(tmp_path / "d.jsonl", jsonl({"text": "a"}, {"text": "b", "published": value}))
    with pytest.raises(InputError, match="invalid published date") as info:
        read_documents(path)
    check_error(info.value, path, 2)


# --- text ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   \n\t", None])
def test_empty_text(tmp_path, text):
    path = write(tmp_path / "d.jsonl", jsonl({"text": "ok"}, {"id": "e", "text": text}))
    with pytest.raises(EmptyDocumentError, match="empty text in document 'e'") as info:
        read_documents(path)
    check_error(info.value, path, 2)
    docs = read_documents(path, allow_empty=True)
    assert [d.text for d in docs] == ["ok", ""]


def test_text_must_be_string(tmp_path):
    path = write(tmp_path / "d.jsonl", jsonl({"text": ["a", "b"]}))
    with pytest.raises(InputError, match="'text' must be a string, got list") as info:
        read_documents(path)
    check_error(info.value, path, 1)


# --- duplicates ----------------------------------------------------------------------


def test_duplicate_id_in_one_file(tmp_path):
    path = write(tmp_path / "d.jsonl", jsonl({"id": "a", "text": "x"}, {"id": "a", "text": "y"}))
    with pytest.raises(
        DuplicateIdError, match=r"duplicate id 'a' \(first seen at .*d.jsonl:1\)"
    ) as info:
        read_documents(path)
    check_error(info.value, path, 2)


def test_duplicate_id_across_inputs(tmp_path):
    first = write(tmp_path / "one.jsonl", jsonl({"id": "x", "text": "a"}))
    second = write(tmp_path / "two.csv", "id,text\ny,b\nx,c\n")
    with pytest.raises(DuplicateIdError, match="one.jsonl:1") as info:
        read_documents([first, second])
    check_error(info.value, second, 3)


def test_same_file_twice_is_a_duplicate(tmp_path):
    path = write(tmp_path / "d.jsonl", jsonl({"text": "a"}))
    with pytest.raises(DuplicateIdError, match="d.jsonl:1"):
        read_documents([path, path])


def test_duplicate_txt_stem_and_jsonl_id(tmp_path):
    write(tmp_path / "dir" / "a.txt", "x")
    other = write(tmp_path / "d.jsonl", jsonl({"id": "a", "text": "y"}))
    with pytest.raises(DuplicateIdError, match="a.txt:1") as info:
        read_documents([tmp_path / "dir", other])
    check_error(info.value, other, 1)


# --- bad files -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("d.jsonl", b""),
        ("d.jsonl", b"\n  \n\n"),
        ("d.csv", b""),
        ("d.csv", b"id,text\n"),
        ("d.parquet", b""),
    ],
)
def test_empty_file(tmp_path, name, content):
    path = write(tmp_path / name, content)
    with pytest.raises(InputError, match="empty file") as info:
        read_documents(path)
    check_error(info.value, path, None)


def test_empty_parquet_table(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), path)
    with pytest.raises(InputError, match="empty file"):
        read_documents(path)


@pytest.mark.parametrize("name", ["d.jsonl", "d.csv", "d.txt"])
def test_binary_file(tmp_path, name):
    path = write(tmp_path / name, b'{"text": "a"}\n\x00\x01\x02\n')
    with pytest.raises(InputError, match="binary file, expected UTF-8 text") as info:
        read_documents(path)
    check_error(info.value, path, 2)


def test_utf16_file_is_binary(tmp_path):
    path = write(tmp_path / "d.jsonl", jsonl({"text": "a"}).encode("utf-16"))
    with pytest.raises(InputError, match="binary file"):
        read_documents(path)


@pytest.mark.parametrize("name", ["d.jsonl", "d.csv", "d.txt"])
def test_not_utf8(tmp_path, name):
    head = b"text\n" if name.endswith(".csv") else b""
    body = b'{"text": "a"}\n{"text": "b"}\n{"text": "caf\xe9"}\n'
    if name.endswith(".csv"):
        body = b"a\nb\ncaf\xe9\n"
    path = write(tmp_path / name, head + body)
    line = 4 if name.endswith(".csv") else 3
    with pytest.raises(InputError, match=r"not valid UTF-8 \(byte 0xe9") as info:
        read_documents(path)
    check_error(info.value, path, line)


def test_malformed_json(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"text": "a"}\n\n{"text": "b",}\n')
    with pytest.raises(InputError, match="malformed JSON: ") as info:
        read_documents(path)
    check_error(info.value, path, 3)


@pytest.mark.parametrize(("value", "kind"), [("[1]", "list"), ('"s"', "str"), ("null", "null")])
def test_json_not_an_object(tmp_path, value, kind):
    path = write(tmp_path / "d.jsonl", f'{{"text": "a"}}\n{value}\n')
    with pytest.raises(InputError, match=f"expected a JSON object, got {kind}") as info:
        read_documents(path)
    check_error(info.value, path, 2)


def test_unreadable_parquet(tmp_path):
    path = write(tmp_path / "d.parquet", b"this is not parquet at all")
    with pytest.raises(InputError) as info:
        read_documents(path)
    check_error(info.value, path, None)


def test_unknown_extension(tmp_path):
    path = write(tmp_path / "d.xml", "<doc/>")
    with pytest.raises(InputError, match="unsupported input type '.xml'") as info:
        read_documents(path)
    check_error(info.value, path, None)


def test_missing_path(tmp_path):
    path = tmp_path / "nope.jsonl"
    with pytest.raises(InputError, match="no such file") as info:
        read_documents(path)
    check_error(info.value, path, None)


def test_no_paths():
    with pytest.raises(InputError):
        read_documents([])


# --- labels and output ----------------------------------------------------------------


def test_read_labels(tmp_path):
    path = write(
        tmp_path / "out.jsonl", jsonl({"id": "a", "cluster": 0}, {"id": 2, "cluster": "x"})
    )
    assert read_labels(path) == {"a": "0", "2": "x"}
    gold = write(tmp_path / "gold.jsonl", jsonl({"doc": "a", "event": "e"}))
    assert read_labels(gold, id_field="doc", label_field="event") == {"a": "e"}


def test_read_labels_errors(tmp_path):
    missing = write(tmp_path / "m.jsonl", jsonl({"id": "a", "cluster": 1}, {"id": "b"}))
    with pytest.raises(FieldError, match="missing field 'cluster'") as info:
        read_labels(missing)
    check_error(info.value, missing, 2)
    dup = write(tmp_path / "d.jsonl", jsonl({"id": "a", "cluster": 1}, {"id": "a", "cluster": 2}))
    with pytest.raises(DuplicateIdError) as info:
        read_labels(dup)
    check_error(info.value, dup, 2)
    with pytest.raises(InputError, match="empty file"):
        read_labels(write(tmp_path / "e.jsonl", b""))


def test_open_output_file(tmp_path):
    path = tmp_path / "out.jsonl"
    with open_output(path) as out:
        out.write("ç\n")
    assert path.read_bytes() == "ç\n".encode()


@pytest.mark.parametrize("target", [None, "-"])
def test_open_output_stdout(target):
    with open_output(target) as out:
        assert out is sys.stdout
    assert not sys.stdout.closed


def test_open_output_unwritable(tmp_path):
    target = tmp_path / "no" / "such" / "dir.jsonl"
    with pytest.raises(DedupError, match="cannot write"), open_output(target):
        pass


# --- real data -------------------------------------------------------------------------


def test_shared_seeds():
    seeds = SHARED_DATA / "seeds"
    if not seeds.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    from_jsonl = read_documents(seeds / "seeds.jsonl")
    from_dir = read_documents(seeds)
    assert len(from_jsonl) == len(from_dir) == 5
    stems = sorted(p.stem for p in seeds.glob("*.txt"))
    assert [d.id for d in from_dir] == stems
    assert sorted(d.id for d in from_jsonl) == stems
    assert all(d.lang == "tr" and d.published is not None for d in from_jsonl)
    by_id = {d.id: d for d in from_jsonl}
    for doc in from_dir:
        assert doc.title == by_id[doc.id].title
