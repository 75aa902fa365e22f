"""abcmamba.abc: splitting, header parsing, normalization and validation."""

from __future__ import annotations

from pathlib import Path

import music21
import pytest

from abcmamba.abc import (
    HEADER_ORDER,
    AbcError,
    canonical_key,
    canonical_meter,
    canonical_tempo,
    default_unit,
    normalize,
    parse_header,
    read_abc_file,
    split_bars,
    split_tunes,
    validate,
)
from data_prep.sources import music21_corpus_dir

DATA = Path(__file__).parent / "data"


def wild_tunes() -> list[str]:
    return split_tunes(read_abc_file(DATA / "folk_wild.abc"))


def test_split_ignores_text_between_tunes():
    tunes = wild_tunes()
    assert len(tunes) == 4
    assert all(t.startswith("X:") for t in tunes)
    assert not any("This file gathers" in t for t in tunes)


def test_file_header_fields_are_inherited():
    text = "M:6/8\nL:1/8\n\nX:1\nT:a\nK:D\nABc def|gfe dcB|\n\nX:2\nM:2/4\nK:G\nAB cd|ef ga|\n"
    first, second = split_tunes(text)
    assert parse_header(first).values("M") == ["6/8"]
    assert parse_header(second).values("M") == ["2/4"]
    assert parse_header(second).values("L") == ["1/8"]


def test_parse_header_fields_in_order_and_where_the_body_starts():
    abc = "X:1\nT:One\n% a comment\nT:Two % the other title\nM:6/8\nK:D\n|:AB|\nM:2/4\n"
    header = parse_header(abc)
    assert header.fields == (
        ("X", "1"), ("T", "One"), ("T", "Two"), ("M", "6/8"), ("K", "D")
    )  # fmt: skip
    assert header.values("T") == ["One", "Two"] and header.get("M") == "6/8"
    assert "K" in header and "L" not in header and header.get("L", "1/8") == "1/8"
    assert header.closed and abc[header.end :] == "|:AB|\nM:2/4\n"
    # stray text before K: is skipped, but it ends the header of a tune being written
    stray = parse_header("X:1\nabc\nK:G\nd|")
    assert (
        stray.get("K") == "G" and stray.closed and stray.end == len("X:1\nabc\nK:G\n")
    )
    assert parse_header("X:1\nabc\n", partial=True).closed
    assert parse_header("X:1\nabc\n").end == len("X:1\n")  # no K: the body starts
    # partial: the line being written does not count yet
    writing = parse_header("X:1\nR:reel\nM:6/", partial=True)
    assert writing.fields == (("X", "1"), ("R", "reel")) and not writing.closed
    assert parse_header("X:1\nR:reel\nM:6/").get("M") == "6/"
    assert not parse_header("X:1\nK:D", partial=True).closed


def test_grammar_uses_the_package_header_order():
    from abcmamba.abc import grammar

    # grammar.py still has its own copy; it must not drift from the package's
    assert grammar.HEADER_ORDER == HEADER_ORDER == "XCRMLQVK"


def test_latin1_file_is_decoded():
    (tune,) = split_tunes(read_abc_file(DATA / "latin1.abc"))
    result = normalize(tune)
    assert result.title == "Chanson de la Tête"
    assert "C:Trad. français" in result.abc


@pytest.mark.parametrize(
    "value, expected",
    [
        ("G", "G"),
        ("G major", "G"),
        ("E minor", "Em"),
        ("F#min", "F#m"),
        ("Bb", "Bb"),
        ("A Dorian", "Ador"),
        ("D mix", "Dmix"),
        ("G clef=bass", "G clef=bass"),
        ("bass", "C clef=bass"),
        ("Bb Bass", "Bb clef=bass"),
        ("G none", "G clef=none"),
        ("D exp ^f ^c", "D exp ^f ^c"),
        ("A min -8va", "Am"),
        ("HP", "HP"),
        ("C^f^c^a", "C ^f ^c ^a"),  # glued explicit accidentals, as written in the wild
        ("Dphr^F", "Dphr ^F"),
    ],
)
def test_canonical_key(value, expected):
    assert canonical_key(value) == expected


@pytest.mark.parametrize("value", ["Es", "H", "G foo"])
def test_unknown_key_is_an_error(value):
    with pytest.raises(ValueError):
        canonical_key(value)


def test_meter_and_default_unit():
    assert canonical_meter(" 6/8 ") == "6/8"
    assert canonical_meter("C|") == "C|"
    assert default_unit("2/4") == "1/16"
    assert default_unit("3/4") == "1/8"
    assert default_unit("none") == "1/8"
    with pytest.raises(ValueError):
        canonical_meter("FREI4/4")


@pytest.mark.parametrize(
    "value,expected",
    [
        ("1/4=120", "1/4=120"),
        ('"Allegro" 1/4 = 120', '"Allegro" 1/4=120'),
        ('1/4=120 "Allegro"', '"Allegro" 1/4=120'),
        ("120", "120"),
        ("1/4=ca. 80", "1/4=80"),  # music21 and abc2midi reject "ca."
        ("1/2 1/4=100", "3/4=100"),  # abc2midi rejects several beats
        ("Allegro", '"Allegro"'),  # music21 rejects a bare word
        ("Fast", ""),  # abc2midi reads only its tempo words without a number
        ("Allegro 1/4=120", '"Allegro" 1/4=120'),
        ("1/4", ""),  # no tempo and no text
    ],
)
def test_canonical_tempo(value, expected):
    assert canonical_tempo(value) == expected


def test_tune_with_an_unreadable_tempo_is_kept_with_its_tempo_repaired():
    # real tunebooks write "Q:Fast" or "Q: Sweden"; the tune is not rejected
    tune = "X:1\nT:t\nM:4/4\nL:1/8\nQ:Allegro\nK:G\nGABc d4|\nQ:1/4\ndcBA G4|[Q:1/4=ca. 80]G8|]\n"
    abc = normalize(tune).abc
    assert 'Q:"Allegro"' in abc and "Q:1/4\n" not in abc and "[Q:1/4=80]" in abc
    # a word that is no tempo ("Q: Sweden", "Q:Fast"): abc2midi rejects it
    assert "Q:" not in normalize(tune.replace("Q:Allegro", "Q: Sweden")).abc[:30]
    music21.converter.parse(abc, format="abc")


def test_fields_between_key_and_music_hold_for_every_voice():
    # "K:G / M:3/4 / L:1/4 / C:... / V:1 ... V:2": a common header order
    tune = "X:1\nT:t\nK:G\nM:3/4\nL:1/4\nC:Someone\nV:1\nGAB|c3|\nV:2\nB,CD|E3|\n"
    normalized = normalize(tune)
    assert (normalized.meter, normalized.unit_note_length) == ("3/4", "1/4")
    assert normalized.composer == "Someone"
    assert "[L:" not in normalized.abc and normalized.n_voices == 2


def test_no_break_spaces_are_normalized_to_spaces():
    abc = normalize("X:1\nT:t\nM:4/4\nL:1/8\nK:G\nA2\u00a0B2 c4|]\n").abc
    assert abc.endswith("K:G\nA2 B2 c4|]\n")


def test_normalized_header_order_and_cleanup():
    kesh = normalize(wild_tunes()[0])
    lines = kesh.abc.split("\n")
    assert lines[:7] == [
        "X:1",
        "C:Trad.",
        "R:jig",
        "M:6/8",
        "L:1/8",
        "Q:3/8=116",
        "K:G",
    ]
    assert kesh.title == "The Kesh" and kesh.rhythm == "jig"
    for gone in ("T:", "O:", "Z:", "N:", "W:", "%%", "%"):
        assert not any(line.startswith(gone) for line in lines)
    assert "\\" not in kesh.abc  # continuation joined
    assert kesh.abc.endswith("|]\n") and "\n\n" not in kesh.abc
    assert all(line == line.rstrip() for line in lines)


def test_inline_fields_decorations_and_lyrics():
    tune = normalize(wild_tunes()[2])
    assert "[K:A]" in tune.abc and "[M:2/4]" in tune.abc
    assert "!trill!" in tune.abc and "{d}c2" in tune.abc and '"G"' in tune.abc
    assert "w:" not in tune.abc
    assert validate(tune.abc) == []


def test_old_plus_decorations_become_bang_decorations():
    abc = "X:1\nM:4/4\nL:1/8\nK:G\n+trill+G2 AB c2 BA | +fermata+G8 |\nGABc dedB | G8 |]\n"
    tune = normalize(abc)
    assert "!trill!G2" in tune.abc and "!fermata!G8" in tune.abc
    assert "+" not in tune.abc
    assert normalize(tune.abc).abc == tune.abc
    assert validate(tune.abc) == []


def test_layout_linebreak_symbol_removed():
    maggie = normalize(wild_tunes()[1])
    assert "$" not in maggie.abc
    assert "P:A" in maggie.abc and "I:" not in maggie.abc


def test_missing_unit_is_made_explicit():
    tune = normalize(wild_tunes()[3])
    assert "L:1/8" in tune.abc.split("\n")
    assert tune.unit_note_length == "1/8"


def test_clef_word_of_a_voice_reads_as_in_a_key():
    abc = "X:1\nM:2/4\nL:1/8\nV:1 Bass\nK:C\nC,D, E,F,|G,4|]\n"
    assert "\nK:C clef=bass\n" in normalize(abc).abc


def test_multivoice_is_bar_interleaved():
    (tune,) = split_tunes(read_abc_file(DATA / "multivoice.abc"))
    result = normalize(tune)
    assert result.n_voices == 2 and result.n_bars == 8
    body = result.abc.split("K:F\n")[1].strip().split("\n")
    assert len(body) == 8
    assert body[0] == "[V:1]c2 A |[V:2]F,2 F, |"
    assert "V:1 clef=treble" in result.abc and "V:2 clef=bass" in result.abc
    assert "name=" not in result.abc
    assert validate(result.abc) == []


def test_voices_with_different_bar_counts_are_rejected():
    abc = "X:1\nM:2/4\nL:1/8\nV:1\nV:2\nK:C\nV:1\nCD EF|GA Bc|\nV:2\nC,4|\n"
    with pytest.raises(AbcError, match="different numbers of bars"):
        normalize(abc)


def test_missing_bar_line_at_full_line_end_is_restored():
    # Essen-style: the phrase line ends on a full bar without writing `|`.
    abc = "X:1\nM:3/4\nL:1/4\nK:C\nC D E | F G A\nB c d | c3 |]\n"
    result = normalize(abc)
    assert "F G A |" in result.abc
    assert validate(result.abc) == []


@pytest.mark.parametrize("tune", wild_tunes(), ids=lambda t: t.split("\n")[1])
def test_normalize_is_idempotent(tune):
    once = normalize(tune)
    assert normalize(once.abc).abc == once.abc


@pytest.mark.parametrize(
    "abc, reason",
    [
        ("X:1\nM:4/4\nL:1/8\nABCD EFGA|\n", "no K: field"),
        ("X:1\nM:4/4\nL:1/8\nK:Q\nABCD EFGA|ABCD EFGA|\n", "unknown key"),
        ("X:1\nM:4/x\nL:1/8\nK:C\nABCD EFGA|ABCD EFGA|\n", "unknown meter"),
        ("X:1\nM:4/4\nL:1/8\nK:C\nABCD [EFGA|ABCD EFGA|\n", "unbalanced brackets"),
        ("X:1\nM:4/4\nL:1/8\nK:C\n(ABCD EFGA|ABCD EFGA|\n", "unbalanced slurs"),
        ("X:1\nM:4/4\nL:1/8\nK:C\nABCD EFGA|\n", "fewer than 2 bars"),
        ("X:1\nM:4/4\nL:1/8\nK:C\nABC|DEF|GAB|cde|fga|\n", "disagree with the meter"),
        ('X:1\nM:4/4\nL:1/8\nK:C\n"Am ABCD EFGA|ABCD EFGA|\n', "unclosed quote"),
    ],
)
def test_validate_reasons(abc, reason):
    assert any(reason in r for r in validate(abc))


def test_validate_accepts_pickups_tuplets_and_broken_rhythm():
    abc = "X:1\nM:2/4\nL:1/8\nK:D\nA|:d>e (3fed|c2 A>B|A2 z2|1 d3 A:|2 d3||\n"
    assert validate(abc) == []


def test_split_bars_keeps_bar_lines_with_their_bar():
    assert split_bars("|:AB cd|ef g2:|") == ["|:AB cd|", "ef g2:|"]


def _music(abc: str) -> list[tuple]:
    """(pitches, quarterLength) of every note and chord, as music21 reads it."""
    score = music21.converter.parse(abc, format="abc")
    return [
        (tuple(p.midi for p in n.pitches), float(n.quarterLength))
        for n in score.flatten().notesAndRests
        if not n.isRest
    ]


def _corpus_sample(step: int) -> list[str]:
    root = music21_corpus_dir()
    tunes = []
    for folder in ("essenFolksong", "ryansMammoth", "oneills1850"):
        for path in sorted((root / folder).glob("*.abc")):
            tunes += split_tunes(read_abc_file(path))
    return tunes[::step]


def test_normalization_keeps_the_notes_of_corpus_tunes():
    """Same pitch and duration sequence before and after, read by the same parser."""
    checked = 0
    for tune in _corpus_sample(step=300):
        try:
            result = normalize(tune)
        except AbcError:
            continue
        if result.n_voices != 1 or validate(result.abc):
            continue
        assert _music(result.abc) == _music(tune), result.abc
        checked += 1
    assert checked >= 30


def test_annotations_and_unknown_symbols_go_chord_symbols_stay():
    abc = 'X:1\nM:2/4\nL:1/8\nK:G\nuG"4"A kB"Am"c|"D.C."d4|"^rit."d"@5,5 x"B"<(" A2|]\n'
    result = normalize(abc)
    body = result.abc.split("K:G\n")[1]
    assert body.startswith('uGA B"Am"c|d4|dB A2|]'), body
    assert (
        '"Am"c' in result.abc
        and "uG" in result.abc
        and "k" not in result.abc.split("K:G")[1]
    )


def test_user_defined_symbols_are_expanded():
    abc = "X:1\nM:2/4\nL:1/8\nU:W=!wedge!\nK:G\nWG2 A2|B4|]\n"
    assert "!wedge!G2" in normalize(abc).abc


def test_bar_split_in_two_halves_is_regular():
    # Chorale style: a phrase-ending bar split into 3/4 + 1/4 around a fermata.
    abc = "X:1\nM:4/4\nL:1/4\nK:C\nC|D E F G|A B !fermata!c2|c|B A G F|E D C3|]\n"
    assert validate(abc) == []


def test_unmatched_slurs_are_dropped():
    abc = "X:1\nM:2/4\nL:1/8\nK:C\nC2) (D2|E2 (F2|G4|]\n"
    result = normalize(abc)
    assert "(" not in result.abc and ")" not in result.abc
    assert validate(result.abc) == []


def test_lyrics_under_a_continued_line_do_not_join_the_music():
    # abcm2ps files put w: lines under a line that ends with "\\"
    tune = "X:1\nM:2/4\nL:1/8\nK:C\nCDEF|\\\nw:la la la la\nGABc|\nc4|]\n"
    result = normalize(tune)
    assert "la" not in result.abc and validate(result.abc) == []
    assert "CDEF| GABc|" in result.abc.replace("\n", " ")


def test_length_divided_by_zero_is_a_reason_not_a_crash():
    # a sample of a barely trained model wrote "A/0"; evaluate crashed on it
    tune = "X:1\nM:2/4\nL:1/8\nK:C\nA/0 B c d|cdef|\n"
    assert validate(tune) == ["a note length divided by zero ('/0')"]
    with pytest.raises(AbcError, match="divided by zero"):
        normalize(tune)
