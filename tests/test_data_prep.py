"""data_prep: sources, bad input, splits and the saved corpus."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from abcmamba.abc import (
    AbcError,
    normalize,
    parse_header,
    read_abc_file,
    split_tunes,
    validate,
)
from data_prep.__main__ import main
from data_prep.build import COLUMNS, abc2midi_errors, split_of
from data_prep.sources import music21_corpus_dir

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
needs_abc2midi = pytest.mark.skipif(
    shutil.which("abc2midi") is None, reason="abc2midi (Debian abcmidi) not installed"
)


def run(*args: str) -> int:
    return main([*args, "--num-proc", "1"])


def read_rejects(out: Path) -> list[dict]:
    return [
        json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()
    ]


@pytest.fixture(scope="module")
def mixed_corpus(tmp_path_factory) -> Path:
    """A folder as a user might have it: ABC, MusicXML, MIDI, broken files, junk."""
    src = tmp_path_factory.mktemp("mixed")
    for name in ("folk_wild.abc", "multivoice.abc", "latin1.abc"):
        shutil.copy(DATA / name, src / name)
    (src / "scores").mkdir()
    shutil.copy(DATA / "convert_chorale.musicxml", src / "scores" / "chorale.musicxml")
    shutil.copy(DATA / "convert_kesh.mid", src / "scores" / "kesh.mid")
    shutil.copy(DATA / "convert_random.mid", src / "scores" / "random.mid")
    shutil.copy(DATA / "convert_truncated.mid", src / "scores" / "truncated.mid")
    (src / "notes.txt").write_text("not music")
    out = tmp_path_factory.mktemp("out") / "corpus"
    assert run(str(src), "--out", str(out)) == 0
    return out


def test_output_format(mixed_corpus):
    dd = datasets.load_from_disk(str(mixed_corpus))
    assert set(dd) == {"train", "validation", "test"}
    for split in dd.values():
        assert split.column_names == COLUMNS
    rows = [row for split in dd.values() for row in split]
    formats = {row["origin_format"] for row in rows}
    assert formats == {"abc", "musicxml", "midi"}
    assert all(
        row["abc"].startswith("X:1\n") and validate(row["abc"]) == [] for row in rows
    )
    chorale = next(row for row in rows if row["origin_format"] == "musicxml")
    assert chorale["n_voices"] == 4 and "[V:4]" in chorale["abc"]


def test_manifest_counts_everything(mixed_corpus):
    manifest = json.loads((mixed_corpus / "manifest.json").read_text())
    dd = datasets.load_from_disk(str(mixed_corpus))
    assert manifest["counts"]["total"] == sum(len(s) for s in dd.values())
    assert manifest["counts"]["splits"] == {k: len(v) for k, v in dd.items()}
    assert manifest["skipped_file_types"] == {".txt": 1}
    assert manifest["rejects"]["total"] == len(read_rejects(mixed_corpus))
    assert "music21" in manifest["versions"]


def test_broken_midi_files_are_rejected_with_reason(mixed_corpus):
    rejects = read_rejects(mixed_corpus)
    by_file = {r["file"]: r["reason"] for r in rejects}
    assert "scores/random.mid" in by_file and "scores/truncated.mid" in by_file
    assert "notes.txt" in by_file and "unsupported file type" in by_file["notes.txt"]
    assert all(r["reason"] for r in rejects)


def test_latin1_tune_is_kept(mixed_corpus):
    dd = datasets.load_from_disk(str(mixed_corpus))
    titles = {row["title"] for split in dd.values() for row in split}
    assert "Chanson de la Tête" in titles


def test_missing_path_is_one_line_error(tmp_path, capsys):
    assert run(str(tmp_path / "nope"), "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such file or folder" in err and "nope" in err


def test_empty_folder_is_one_line_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert run(str(tmp_path / "empty"), "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no tunes found in" in err


def test_unknown_hf_dataset_is_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert run("hf:nobody/no-such-abc-dataset", "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no-such-abc-dataset" in err


def test_hf_source_from_a_saved_dataset(tmp_path):
    tunes = split_tunes(read_abc_file(DATA / "folk_wild.abc"))
    datasets.Dataset.from_dict({"abc": tunes}).save_to_disk(str(tmp_path / "hfdata"))
    out = tmp_path / "o"
    assert run(f"hf:{tmp_path / 'hfdata'}", "--out", str(out)) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["total"] == len(tunes)


def test_existing_output_is_refused_then_replaced(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    assert run(str(DATA / "latin1.abc"), "--out", str(out)) == 2
    assert (out / "keep.txt").exists()
    assert "--overwrite" in capsys.readouterr().err
    assert run(str(DATA / "latin1.abc"), "--out", str(out), "--overwrite") == 0
    assert not (out / "keep.txt").exists() and (out / "manifest.json").exists()
    assert not [
        p for p in tmp_path.iterdir() if p.name.startswith(".o.")
    ]  # no temp left


def _valid_corpus_tunes(n: int) -> list[str]:
    """n distinct real folk tunes that pass every check."""
    seen, tunes = set(), []
    for path in sorted((music21_corpus_dir() / "oneills1850").glob("*.abc")):
        for tune in split_tunes(read_abc_file(path)):
            try:
                result = normalize(tune)
            except AbcError:
                continue
            if validate(result.abc) or result.abc in seen:
                continue
            seen.add(result.abc)
            tunes.append(tune)
    if shutil.which("abc2midi"):
        errors = abc2midi_errors([normalize(t).abc for t in tunes])
        tunes = [t for t, e in zip(tunes, errors, strict=True) if not e]
    assert len(tunes) >= n
    return tunes[:n]


@needs_abc2midi
def test_one_garbage_tune_in_a_thousand(tmp_path):
    tunes = _valid_corpus_tunes(999)
    garbage = "X:501\nT:garbage\nM:4/4\nK:Q\nthis is not music at all }}}\n"
    tunes.insert(500, garbage)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "big.abc").write_text("\n\n".join(tunes), encoding="utf-8")
    out = tmp_path / "o"
    assert main([str(tmp_path / "src"), "--out", str(out), "--num-proc", "2"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["total"] == 999
    (reject,) = read_rejects(out)
    assert reject["file"] == "big.abc" and reject["tune_index"] == 500
    assert "unknown key" in reject["reason"]


def test_split_is_deterministic_and_duplicates_share_a_split():
    tunes = [
        normalize(t).abc for t in split_tunes(read_abc_file(DATA / "folk_wild.abc"))
    ]
    # another process with another string hash seed puts every tune where we do
    code = (
        "import json, sys; from data_prep.build import split_of; "
        "print(json.dumps([split_of(t) for t in json.load(sys.stdin)]))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(tunes),
        env={**os.environ, "PYTHONHASHSEED": "1", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(other.stdout) == [split_of(t) for t in tunes]
    retitled = tunes[0].replace("C:Trad.\n", "C:Someone else\n")
    assert retitled != tunes[0]
    assert split_of(retitled) == split_of(tunes[0])  # same music, same split


def test_duplicates_removed_and_logged(tmp_path):
    (tmp_path / "src").mkdir()
    text = (DATA / "folk_wild.abc").read_text()
    (tmp_path / "src" / "a.abc").write_text(text)
    (tmp_path / "src" / "b.abc").write_text(text)
    out = tmp_path / "o"
    assert run(str(tmp_path / "src"), "--out", str(out)) == 0
    dd = datasets.load_from_disk(str(out))
    abcs = [row["abc"] for split in dd.values() for row in split]
    assert len(abcs) == len(set(abcs)) == 4
    duplicates = [
        r for r in read_rejects(out) if r["reason"].startswith("duplicate of")
    ]
    assert len(duplicates) == 4 and all(r["file"] == "b.abc" for r in duplicates)


def test_same_music_under_another_header_is_kept_in_the_same_split(tmp_path):
    """Not a duplicate (the text differs), but a copy all the same: never split apart."""
    (tmp_path / "src").mkdir()
    text = (DATA / "folk_wild.abc").read_text()
    (tmp_path / "src" / "a.abc").write_text(text)
    (tmp_path / "src" / "b.abc").write_text(text.replace("\nR: ", "\nR: other "))
    out = tmp_path / "o"
    assert run(str(tmp_path / "src"), "--out", str(out)) == 0
    dd = datasets.load_from_disk(str(out))
    splits_by_body: dict[str, list[str]] = {}
    for name, split in dd.items():
        for row in split:
            assert split_of(row["abc"]) == name
            body = row["abc"][parse_header(row["abc"]).end :]
            splits_by_body.setdefault(body, []).append(name)
    # the three tunes with an R: line come twice; the fourth is a duplicate
    assert sorted(len(names) for names in splits_by_body.values()) == [1, 2, 2, 2]
    assert all(len(set(names)) == 1 for names in splits_by_body.values())


@needs_abc2midi
def test_abc2midi_check_maps_errors_to_tunes():
    good = "X:1\nM:2/4\nL:1/8\nK:C\nCD EF|GA Bc|\n"
    bad = "X:1\nM:2/4\nL:1/8\nK:C\nCD EF|GA B[c|\n"
    errors = abc2midi_errors([good, bad, good])
    assert errors[0] == "" and errors[2] == ""
    assert errors[1].startswith("abc2midi:")
