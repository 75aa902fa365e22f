"""data_prep sources: labels (SOURCE prefix, metadata files) and Hugging Face score datasets."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import datasets
import pytest

from abcmamba.abc import parse_header, validate
from data_prep.__main__ import main
from data_prep.hf import sniff_score
from data_prep.labels import set_header_field

DATA = Path(__file__).parent / "data"
KESH = DATA / "convert_kesh.mid"  # The Kesh, a jig: one voice
CHORALE = DATA / "sources_chorale.mid"  # bars 0-4 of music21's bwv66.6, written to MIDI


def run(*args: str) -> int:
    return main([*args, "--num-proc", "1"])


def rows(out: Path) -> list[dict]:
    dd = datasets.load_from_disk(str(out))
    return sorted(
        (row for split in dd.values() for row in split), key=lambda r: r["id"]
    )


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def rejects(out: Path) -> list[dict]:
    return [
        json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()
    ]


def header(abc: str) -> dict[str, str]:
    return dict(parse_header(abc).fields)


@pytest.fixture
def folder(tmp_path) -> Path:
    """folk_wild.abc (4 tunes: two with a C: line, three with an R: line) and a MIDI file."""
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    shutil.copy(DATA / "folk_wild.abc", src / "a" / "folk.abc")
    shutil.copy(KESH, src / "kesh.mid")
    return src


def test_label_prefix_fills_composer_and_logs_conflicts(folder, tmp_path, caplog):
    out = tmp_path / "o"
    with caplog.at_level(logging.WARNING):
        assert run(f"composer=Chopin:{folder}", "--out", str(out)) == 0
    got = {row["id"].split(":", 1)[1]: row for row in rows(out)}
    assert len(got) == 5
    composers = sorted(row["composer"] for row in got.values())
    assert composers == ["Chopin", "Chopin", "Chopin", "Trad.", "Turlough O'Carolan"]
    for row in got.values():
        assert header(row["abc"])["C"] == row["composer"] and not validate(row["abc"])
        assert row["abc"].startswith(f"X:1\nC:{row['composer']}\n")
    midi = next(row for row in got.values() if row["origin_format"] == "midi")
    assert midi["composer"] == "Chopin"
    labels = manifest(out)["labels"][f"composer=Chopin:{folder}"]
    assert labels["labels"] == {"composer": "Chopin"}
    assert labels["conflicts"] == {"composer": 2}
    assert "the file says composer 'Trad.', its label 'Chopin'" in caplog.text


def test_labels_win_replaces_the_files_values(folder, tmp_path):
    out = tmp_path / "o"
    spec = f"composer=Chopin:rhythm=waltz:{folder}"
    assert run(spec, "--out", str(out), "--labels-win") == 0
    for row in rows(out):
        assert (row["composer"], row["rhythm"]) == ("Chopin", "waltz")
        assert row["abc"].startswith("X:1\nC:Chopin\nR:waltz\nM:")
    assert manifest(out)["labels"][spec]["conflicts"] == {"composer": 2, "rhythm": 3}


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_metadata_file_labels_each_file(folder, tmp_path, kind):
    table = [
        {"file_name": "a/folk.abc", "composer": "Carolan", "title": "", "rhythm": ""},
        {
            "file_name": "kesh.mid",
            "composer": "Trad.",
            "title": "The Kesh",
            "rhythm": "jig",
        },
    ]
    if kind == "csv":
        lines = ["file_name,composer,title,rhythm"]
        lines += [",".join(row.values()) for row in table]
        (folder / "metadata.csv").write_text("\n".join(lines) + "\n")
    else:  # the jsonl lives beside the ABC file: file_name is relative to it
        table[0]["file_name"] = "folk.abc"
        (folder / "a" / "metadata.jsonl").write_text(json.dumps(table[0]) + "\n")
        table[1]["year"] = 1850  # columns that are not labels are ignored
        (folder / "metadata.jsonl").write_text(json.dumps(table[1]) + "\n")
    out = tmp_path / "o"
    assert run(str(folder), "--out", str(out)) == 0
    got = rows(out)
    midi = next(row for row in got if row["origin_format"] == "midi")
    assert (midi["composer"], midi["title"], midi["rhythm"]) == (
        "Trad.",
        "The Kesh",
        "jig",
    )
    assert header(midi["abc"])["R"] == "jig" and "T:" not in midi["abc"]
    folk = sorted(row["composer"] for row in got if row["origin_format"] == "abc")
    assert folk == ["Carolan", "Carolan", "Trad.", "Turlough O'Carolan"]
    labels = manifest(out)["labels"][str(folder)]
    assert labels["labelled_files"] == 2
    assert labels["files_without_metadata_row"]["count"] == 0
    assert labels["metadata_rows_without_file"]["count"] == 0
    assert labels["conflicts"] == {"composer": 2}  # Trad., O'Carolan vs Carolan
    assert rejects(out) == []


def test_missing_file_and_missing_row_are_reported(folder, tmp_path, caplog):
    (folder / "metadata.csv").write_text(
        "file_name,composer\nkesh.mid,Trad.\ngone.mid,Nobody\n"
    )
    out = tmp_path / "o"
    with caplog.at_level(logging.WARNING):
        assert run(str(folder), "--out", str(out)) == 0
    (reject,) = rejects(out)
    assert reject["file"] == "gone.mid"
    assert reject["reason"] == "metadata.csv line 3 names a file that is not there"
    labels = manifest(out)["labels"][str(folder)]
    assert labels["metadata_rows_without_file"] == {"count": 1, "files": ["gone.mid"]}
    assert labels["files_without_metadata_row"] == {"count": 1, "files": ["a/folk.abc"]}
    assert len(rows(out)) == 5  # the unlabelled file's tunes are kept
    assert "1 files have no metadata row" in caplog.text and "a/folk.abc" in caplog.text
    assert "1 metadata rows name files that are not there: gone.mid" in caplog.text


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("metadata.csv", b"name,composer\nkesh.mid,Trad.\n", "has no file_name column"),
        ("metadata.csv", b"", "has no file_name column (columns: none)"),
        ("metadata.csv", b"file_name,composer\nkesh.mid,Trad.,x\n", "unreadable CSV"),
        ("metadata.csv", b'file_name\n"kesh.mid\n', "unreadable CSV"),
        ("metadata.csv", b"file_name\n\xff\xfe\x00kesh.mid\n", "not UTF-8"),
        ("metadata.jsonl", b'{"file_name": "kesh.mid"\n', "line 1: not JSON"),
        ("metadata.csv", b"file_name\nkesh.mid\nkesh.mid\n", "named twice"),
    ],
)
def test_bad_metadata_is_one_line_error(
    folder, tmp_path, capsys, name, content, message
):
    (folder / name).write_bytes(content)
    assert run(str(folder), "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err and name in err


def test_unknown_label_is_one_line_error(folder, tmp_path, capsys):
    assert run(f"meter=3/4:{folder}", "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown label 'meter'" in err and "composer" in err


def test_hf_dataset_of_midi_bytes(tmp_path):
    data = {
        "midi": [KESH.read_bytes(), CHORALE.read_bytes(), b"not music at all"],
        "composer": ["", "Bach", "Nobody"],
    }
    datasets.Dataset.from_dict(data).save_to_disk(str(tmp_path / "ds"))
    out = tmp_path / "o"
    assert run(f"composer=Trad.:hf:{tmp_path / 'ds'}", "--out", str(out)) == 0
    got = rows(out)
    assert [(r["composer"], r["n_voices"], r["origin_format"]) for r in got] == [
        ("Trad.", 1, "midi"),  # the source's label fills a row with no composer
        ("Bach", 4, "midi"),
    ]
    assert all(header(r["abc"])["C"] == r["composer"] for r in got)
    (reject,) = rejects(out)
    assert reject["file"] == "data/2" and "not MIDI, MusicXML" in reject["reason"]


def test_hf_audio_column_and_label_column_option(tmp_path):
    ds = datasets.Dataset.from_dict(
        {
            "audio": [{"bytes": CHORALE.read_bytes(), "path": "bwv66.6.mid"}],
            "artist": ["J. S. Bach"],
        }
    ).cast_column(
        "audio", datasets.Audio()
    )  # as audiofolder would type it
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "ds"))
    out = tmp_path / "o"
    spec = f"hf:{tmp_path / 'ds'}:train"
    assert run(spec, "--out", str(out), "--label-column", "composer=artist") == 0
    (row,) = rows(out)
    assert row["composer"] == "J. S. Bach" and row["n_voices"] == 4
    assert manifest(out)["labels"][spec] == {"label_columns": {"composer": "artist"}}


def test_hf_dataset_of_paths(tmp_path):
    ds_dir = tmp_path / "ds"
    names = [str(CHORALE), "kesh.mid", "missing.mid", str(DATA / "latin1.abc")]
    datasets.Dataset.from_dict({"file_name": names}).save_to_disk(str(ds_dir))
    shutil.copy(KESH, ds_dir / "kesh.mid")  # relative paths: from the dataset folder
    out = tmp_path / "o"
    assert run(f"hf:{ds_dir}", "--out", str(out)) == 0
    got = rows(out)
    assert [(r["id"].rsplit("/", 2)[-2:], r["origin_format"]) for r in got] == [
        (["data", "0#0"], "midi"),
        (["data", "1#0"], "midi"),
        (["data", "3#0"], "abc"),
    ]
    (reject,) = rejects(out)
    assert (
        reject["file"] == "data/2" and reject["reason"] == "no such file: missing.mid"
    )


def test_set_header_field_keeps_canonical_order():
    abc = "X:1\nC:Someone\nM:4/4\nL:1/8\nK:C\nCDEF GABc|\n"
    assert set_header_field(abc, "R", "reel") == (
        "X:1\nC:Someone\nR:reel\nM:4/4\nL:1/8\nK:C\nCDEF GABc|\n"
    )
    assert set_header_field(abc, "C", "Other").startswith("X:1\nC:Other\nM:4/4\n")


def test_sniff_score():
    assert sniff_score(KESH.read_bytes()) == ".mid"
    assert sniff_score((DATA / "convert_chorale.musicxml").read_bytes()) == ".musicxml"
    assert sniff_score(b"X:1\nK:C\nCDE|\n") is None
    assert sniff_score(b"\x00\x01", "piece.krn") == ".krn"
