"""Tests for abcmamba.convert: scores -> ABC, ABC -> music21/MIDI/MusicXML/SVG/PNG.

Each music21 ABC-reader fault the converter fixes has a tiny hand-written tune
with the pitches (MIDI numbers) and lengths it must play.
"""

from __future__ import annotations

import argparse
import random
import re
from pathlib import Path

import music21
import pytest

from abcmamba import UserError
from abcmamba.abc.text import split_tunes
from abcmamba.convert import (
    ConversionError,
    abc_to_midi,
    abc_to_musicxml,
    abc_to_score,
    abc_to_svg,
    add_arguments,
    compare_with_abc2midi,
    expand_repeats,
    propagate_accidentals,
    run,
    score_file_to_abc,
    score_to_abc,
    svg_to_png,
)
from abcmamba.convert.abcread import abc_to_musicxml_text, percussion_parts
from abcmamba.convert.reference import (
    abc2midi_available,
    abc2midi_notes,
    notes_from_midi,
    reference_abc,
)

DATA = Path(__file__).parent / "data"
CORPUS = Path(music21.__file__).parent / "corpus"
needs_abc2midi = pytest.mark.skipif(
    not abc2midi_available(), reason="abc2midi (Debian package abcmidi) not installed"
)


def tune(body: str, header: str = "M:4/4\nL:1/8\nK:C") -> str:
    """A minimal tune around a body."""
    return f"X:1\nT:t\n{header}\n{body}\n"


def midi_notes(abc: str, tmp_path: Path) -> list[tuple[float, int, float]]:
    """(onset, pitch, duration) of our MIDI for a tune, in quarter notes."""
    return notes_from_midi(abc_to_midi(abc, tmp_path / "t.mid"))


def sounding(part: music21.stream.Stream) -> list[int]:
    """MIDI pitches of a part's notes and chords (chord symbols are not notes)."""
    return [
        p.midi
        for n in part.recurse().notes
        if not isinstance(n, music21.harmony.ChordSymbol)
        for p in n.pitches
    ]


def pitches(abc: str, tmp_path: Path) -> list[int]:
    return [n[1] for n in midi_notes(abc, tmp_path)]


def agrees_with_abc2midi(abc: str) -> None:
    if abc2midi_available():
        result = compare_with_abc2midi(abc)
        assert result, result.reason


# --- music21 ABC-reader faults, one tune each --------------------------------


def test_accidental_carries_through_the_bar(tmp_path):
    # music21 plays the second F natural; the sharp holds to the bar line.
    abc = tune("^F G F A | F4 z4 |")
    assert pitches(abc, tmp_path) == [66, 67, 66, 69, 65]
    agrees_with_abc2midi(abc)


def test_accidental_carries_to_other_octaves_like_abc2midi(tmp_path):
    # abc2midi's default %%propagate-accidentals is "pitch": every octave.
    abc = tune("=D6 d2 | d8 |", "M:4/4\nL:1/8\nK:E")
    assert pitches(abc, tmp_path) == [62, 74, 75]
    assert propagate_accidentals(abc).splitlines()[-1] == "=D6 =d2 | d8 |"
    agrees_with_abc2midi(abc)


def test_invisible_rest_is_silence_not_a_note(tmp_path):
    abc = tune("C2 x2 D2 z2 | E8 |")
    assert midi_notes(abc, tmp_path) == [(0.0, 60, 1.0), (2.0, 62, 1.0), (4.0, 64, 4.0)]
    agrees_with_abc2midi(abc)


def test_header_voice_line_adds_no_empty_part():
    score = abc_to_score(tune("CDEF GABc|", "M:4/4\nL:1/8\nV:1 clef=treble\nK:C"))
    assert len(score.parts) == 1
    assert len(score.parts[0].recurse().notes) == 8


def test_bar_interleaved_voices_become_parts_with_all_notes(tmp_path):
    abc = (DATA / "convert_folk.abc").read_text().split("X:4", 1)[1]
    abc = "X:4" + abc
    score = abc_to_score(abc)
    assert len(score.parts) == 2
    upper, lower = sounding(score.parts[0]), sounding(score.parts[1])
    # ^c then d then =c in F major; chord symbol "F" is not a note.
    assert upper == [69, 70, 72, 73, 74, 72, 77]
    assert lower == [53, 57, 60, 57, 53]
    assert len(midi_notes(abc, tmp_path)) == 12
    agrees_with_abc2midi(abc)


def test_chord_symbols_are_not_played(tmp_path):
    abc = tune('"G"GABc "D7"d4|')
    assert pitches(abc, tmp_path) == [67, 69, 71, 72, 74]
    agrees_with_abc2midi(abc)


def test_grace_notes_take_no_time(tmp_path):
    # music21 gave the grace note the length of the rest of the bar in MIDI.
    abc = tune("{B}A>G G2 {gf}e4 |")
    assert midi_notes(abc, tmp_path) == [
        (0.0, 69, 0.75),
        (0.75, 67, 0.25),
        (1.0, 67, 1.0),
        (2.0, 76, 2.0),
    ]
    agrees_with_abc2midi(abc)


def test_grace_note_after_broken_rhythm_keeps_the_rhythm(tmp_path):
    # abc2xml lost the ">" of "d>{f}e", shifting every later note.
    abc = tune("d>{f}e d2 c4 |")
    assert [n[2] for n in midi_notes(abc, tmp_path)] == [0.75, 0.25, 1.0, 2.0]
    agrees_with_abc2midi(abc)


def test_default_unit_length_follows_the_meter(tmp_path):
    # No L: and M:2/4 (below 3/4) means L:1/16; abc2xml assumed 1/8.
    abc = "X:1\nT:t\nM:2/4\nK:G\nB>c d2 e4 |\n"
    assert [n[2] for n in midi_notes(abc, tmp_path)] == [0.375, 0.125, 0.5, 1.0]
    agrees_with_abc2midi(abc)


def test_decoration_before_the_first_bar_line_is_not_a_bar_of_rest(tmp_path):
    abc = tune("!segno!|] CDEF GABc | c8 |]")
    assert midi_notes(abc, tmp_path)[0] == (0.0, 60, 0.5)
    agrees_with_abc2midi(abc)


def test_staccato_notes_sound_half_their_length(tmp_path):
    # as abc2midi plays `.A` and `.[C2E2]`; abc2midi's full-length `.[CE]2`
    # is written around in the reference (convert/reference.py)
    abc = tune(".A2 .B2 c2 .d2 | .[CEG]4 z4 |")
    assert [n[2] for n in midi_notes(abc, tmp_path)] == [0.5, 0.5, 1.0, 0.5, 1, 1, 1]
    agrees_with_abc2midi(abc)
    assert "[C4E4G4]" in reference_abc(abc)


def test_ties_join_notes_across_the_bar(tmp_path):
    abc = tune("A4 B4- | B2 c6 |")
    assert midi_notes(abc, tmp_path) == [(0.0, 69, 2.0), (2.0, 71, 3.0), (5.0, 72, 3.0)]
    agrees_with_abc2midi(abc)


def test_ties_join_chord_notes_one_by_one(tmp_path):
    # a tie joins each note to the next of its pitch, into and out of chords;
    # music21 ties whole chords (one tied chord note held them all)
    abc = tune("C2-[CE]2 [CE-]2[CE]2 | [CE]2-C2 [C-E]2[CE]2 |")
    assert midi_notes(abc, tmp_path) == [
        (0.0, 60, 2.0),
        (1.0, 64, 1.0),
        (2.0, 60, 1.0),
        (2.0, 64, 2.0),
        (3.0, 60, 1.0),
        (4.0, 60, 2.0),
        (4.0, 64, 1.0),
        (6.0, 60, 2.0),
        (6.0, 64, 1.0),
        (7.0, 64, 1.0),
    ]
    agrees_with_abc2midi(abc)


def test_tie_follows_its_voice_from_bar_to_bar():
    # abc2xml writes a staff's lone voice straight into the measure and the
    # same voice as <voice>2 in a bar it shares: the tie still holds
    from abcmamba.convert.render import sounding_parts

    tied, held, upper = (
        music21.note.Note("E4", quarterLength=4),
        music21.note.Note("E4", quarterLength=4),
        music21.note.Note("C5", quarterLength=4),
    )
    tied.tie, held.tie = music21.tie.Tie("start"), music21.tie.Tie("stop")
    first, second = music21.stream.Measure(number=1), music21.stream.Measure(number=2)
    first.append(tied)
    second.insert(0, music21.stream.Voice([upper], id="1"))
    second.insert(0, music21.stream.Voice([held], id="2"))
    part = music21.stream.Part()
    part.append([first, second])
    score = sounding_parts(music21.stream.Score([part]))
    played = sorted(
        (n.getOffsetInHierarchy(score), n.pitch.midi, n.quarterLength)
        for n in score.recurse().notes
    )
    assert played == [(0.0, 64, 8.0), (4.0, 72, 4.0)]


def test_tie_written_after_a_slur_end_ties_the_note(tmp_path):
    # "c6)-" ties c to the next c for abc2midi; abc2xml dropped the tie
    abc = tune("(c6)- | c2 (A2 B2)- B2 |", "M:6/8\nL:1/8\nK:C")
    assert midi_notes(abc, tmp_path) == [(0.0, 72, 4.0), (4.0, 69, 1.0), (5.0, 71, 2.0)]
    agrees_with_abc2midi(abc)


def test_tie_written_after_the_bar_line_ties_the_note(tmp_path):
    # "G3|-G2" (and "|!2!-G2", a fingering between) ties for abc2midi
    abc = tune('"D"BA>G | G3 |-G2 A | B3 | !2!-B2 "A-B"c |', "M:3/4\nL:1/8\nK:G")
    assert midi_notes(abc, tmp_path)[3:] == [
        (1.5, 67, 2.5),
        (4.0, 69, 0.5),
        (4.5, 71, 2.5),
        (7.0, 72, 0.5),
    ]
    agrees_with_abc2midi(abc)


def test_remark_symbol_and_macro_lines_are_not_music(tmp_path):
    # abc2xml read the letters of "r:remark" as notes; abc2midi skips s: and
    # d: lines and does not expand m: macros; "+:" continues a text field
    lines = "r: 32\nr:remark\ns: * * !p!\nd: * !f!\nm: ~G2 = GAGF\nW:a verse\n+:goes on"
    abc = tune(f"CDEF GABc |\n{lines}\n~G2 c2 e4 |", "r:header\nM:4/4\nL:1/8\nK:C")
    assert pitches(abc, tmp_path) == [60, 62, 64, 65, 67, 69, 71, 72, 67, 72, 76]
    agrees_with_abc2midi(abc)


def test_rest_longer_than_its_bar_keeps_its_length(tmp_path):
    # music21 gives a lone whole or breve rest the bar's length: "z8" in a
    # bar of 4 beats (as Humdrum-derived tunes write it) lasted 4
    abc = tune("V:1\nc4 | c4 | c4 |\nV:2\nz8 | C4 |", "M:C|\nL:1/4\nK:C")
    assert midi_notes(abc, tmp_path)[-2:] == [(8.0, 60, 4.0), (8.0, 72, 4.0)]
    agrees_with_abc2midi(abc)
    abc = tune("c3 | z4 | c3 | z3 | c3 |", "M:3/4\nL:1/4\nK:C")
    assert [n[0] for n in midi_notes(abc, tmp_path)] == [0.0, 7.0, 13.0]
    agrees_with_abc2midi(abc)


def test_tuplets_and_chords(tmp_path):
    abc = tune("(3ABc d2 [CEG]4 |")
    notes = midi_notes(abc, tmp_path)
    assert [n[1] for n in notes] == [69, 71, 72, 74, 60, 64, 67]
    assert notes[1][0] == pytest.approx(1 / 3)
    assert notes[3][0] == pytest.approx(1.0)
    agrees_with_abc2midi(abc)


def test_broken_rhythm_both_ways(tmp_path):
    abc = tune("A>B c<d A2>B2 z4|")
    durations = [n[2] for n in midi_notes(abc, tmp_path)]
    assert durations == [0.75, 0.25, 0.25, 0.75, 1.5, 0.5]
    agrees_with_abc2midi(abc)


def test_repeats_and_endings_play_like_abc2midi(tmp_path):
    abc = tune("|: C2 D2 E4 |1 F8 :|2 G8 || A8 |")
    assert pitches(abc, tmp_path) == [60, 62, 64, 65, 60, 62, 64, 67, 69]
    agrees_with_abc2midi(abc)


def test_repeat_without_start_sign_goes_back_to_previous_repeat(tmp_path):
    abc = tune("C8 :| D8 | E8 :|")
    assert pitches(abc, tmp_path) == [60, 60, 62, 64, 62, 64]
    agrees_with_abc2midi(abc)


def test_missing_repeat_start_is_placed_only_in_a_tune_of_one_voice(tmp_path):
    # "C8 :| D8 | E8 :|": one voice repeats D E (abc2midi places the missing
    # |: after the first :|); with two voices abc2midi places none
    assert pitches(tune("C8 :| D8 | E8 :|"), tmp_path) == [60, 60, 62, 64, 62, 64]
    two = tune("V:1\nC8 :| D8 | E8 :|\nV:2\nC,8 :| D,8 | E,8 :|")
    assert [p for p in pitches(two, tmp_path) if p >= 60] == [60, 60, 62, 64]
    agrees_with_abc2midi(two)


def test_sloppy_repeats_play_like_abc2midi(tmp_path):
    # A part without |: after a second ending: abc2midi goes back to the tune
    # start once more and then skips both endings.
    abc = tune("C2 D2 |1 E4 :|2 F4 || G4 A4 :||")
    assert pitches(abc, tmp_path) == [60, 62, 64, 60, 62, 65, 67, 69, 60, 62, 67, 69]
    agrees_with_abc2midi(abc)


def test_first_ending_without_start_repeat(tmp_path):
    # The second part has endings but no |:; it repeats from after the :|.
    abc = tune("C4 D4 :| E4 |[1 F4 :|[2 G4 |]")
    assert pitches(abc, tmp_path) == [60, 62, 60, 62, 64, 65, 64, 67]
    agrees_with_abc2midi(abc)


def test_tie_into_endings_joins_the_next_note_of_the_text(tmp_path):
    # abc2midi ties G3- to the first ending's G on both passes: on the second
    # the G is held into the second ending, whose own G sounds again; the
    # first ending's G is a rest wherever it is not played after the tie.
    abc = tune("|: B3 | G3- |1 G D G :|2 G B c | d3 |]", "M:3/4\nL:1/4\nK:G")
    assert midi_notes(abc, tmp_path)[3:8] == [
        (8.0, 67, 1.0),
        (9.0, 71, 3.0),
        (12.0, 67, 4.0),
        (15.0, 67, 1.0),
        (16.0, 71, 1.0),
    ]
    agrees_with_abc2midi(abc)
    back = tune("|: c2 d2 |[1 [ce]4- :|[2 e4 | f4 |]", "M:4/4\nL:1/4\nK:C")
    assert midi_notes(back, tmp_path) == [
        (0.0, 72, 2.0),
        (2.0, 74, 2.0),
        (4.0, 72, 4.0),
        (4.0, 76, 8.0),
        (8.0, 72, 2.0),
        (10.0, 74, 2.0),
        (16.0, 77, 4.0),
    ]
    agrees_with_abc2midi(back)
    # a chain of ties holds for all its notes; a broken rhythm sets the length
    for body in (
        "|:eAA e2d|[1 c6-:|[2 c6-|c6|]",
        "|:eAA e2d|c3 c3-|1 c>BA z3:|2 c3 A3|]",
    ):
        agrees_with_abc2midi(tune(body, "M:6/8\nL:1/8\nK:Ador"))
    # a staccato note is neither tied on nor held
    staccato = tune("|:B6|.G6-|1G2 D2 G2:|2G2 B2 c2|d6|]", "M:3/4\nL:1/8\nK:G")
    agrees_with_abc2midi(staccato)


def test_header_part_order_is_played(tmp_path):
    # P:ABA in the header: abc2midi plays part A, part B, part A again.
    abc = tune("P:A\nC8 :|\nP:B\nD8 |]", "M:4/4\nL:1/8\nP:ABA\nK:C")
    assert pitches(abc, tmp_path) == [60, 60, 62, 60, 60]
    agrees_with_abc2midi(abc)


def test_part_order_skips_undefined_parts_and_plays_the_intro_first(tmp_path):
    # as abc2midi: P:(AABC)2 without a part C plays AAB twice; music before
    # the first P: is played first
    abc = tune("G8 |]\nP:A\nC8 |]\nP:B\nD8 |]", "M:4/4\nL:1/8\nP:(AABC)2\nK:C")
    assert pitches(abc, tmp_path) == [67, 60, 60, 62, 60, 60, 62]
    agrees_with_abc2midi(abc)


def test_sections_inside_ordered_parts_repeat_like_abc2midi(tmp_path):
    # With a header P: order abc2midi does not repeat a second section that
    # lacks its |: (without P: it does, see the test above).
    abc = tune("P:A\nC8 :|\nD8 | E8 :|\nP:B\nF8 |]", "M:4/4\nL:1/8\nP:AB\nK:C")
    assert pitches(abc, tmp_path) == [60, 60, 62, 64, 65]
    agrees_with_abc2midi(abc)


def test_part_played_again_keeps_its_own_key(tmp_path):
    abc = tune("P:A\nB8 |]\nP:B\nK:Gm\nB8 |]", "M:4/4\nL:1/8\nP:ABA\nK:G")
    assert pitches(abc, tmp_path) == [71, 70, 71]
    agrees_with_abc2midi(abc)


def test_da_capo_words_are_not_played_twice(tmp_path):
    # music21's MIDI writer acts on "D.C."/"Fine" and plays the tune again.
    abc = tune('C8 | "Fine"D8 | E8 | "D.C."F8 |]')
    assert pitches(abc, tmp_path) == [60, 62, 64, 65]


def test_expand_repeats_writes_out_each_voice():
    abc = "X:1\nL:1/4\nV:1\nV:2\nK:C\n[V:1] |:ab:|[V:2] |:cd:|\n"
    lines = expand_repeats(abc).splitlines()
    assert lines[-4:] == ["V:1", " ab|ab|", "V:2", " cd|cd|"]


def test_free_text_header_fields_are_never_music(tmp_path):
    # abc2xml read part of this tune's long N: notes as notes (g b a g ...).
    path = CORPUS / "essenFolksong" / "han1.abc"
    if not path.exists():
        pytest.skip("music21 corpus without essenFolksong/han1.abc")
    text = path.read_text(encoding="latin-1")
    abc = next(c for c in re.split(r"(?m)^(?=X:)", text) if c.startswith("X:279\n"))
    assert pitches(abc, tmp_path)[:4] == [72, 72, 74, 67]
    agrees_with_abc2midi(abc)


def test_wedge_is_not_played_staccato(tmp_path):
    # music21's Staccatissimo is a Staccato; abc2midi shortens only the dot.
    abc = tune("!wedge!A2 .B2 c4 | c8 |")
    assert [n[2] for n in midi_notes(abc, tmp_path)] == [1.0, 0.5, 2.0, 4.0]
    agrees_with_abc2midi(abc)


def test_staccato_note_cuts_its_tie(tmp_path):
    # abc2midi shortens the staccato note and sounds the note it was tied to
    abc = tune(".E2-E2 G4 | c8 |")
    assert midi_notes(abc, tmp_path)[:2] == [(0.0, 64, 0.5), (1.0, 64, 1.0)]
    agrees_with_abc2midi(abc)


def test_key_accidentals_without_spaces(tmp_path, caplog):
    # abc2midi drops the accidental glued to the tonic (the C sharp) and MIDI
    # plays it so, with a warning; MusicXML keeps the key as written
    abc = tune("c2 g2 a2 A2 | c8 |", "M:4/4\nL:1/8\nK:C^c^a")
    assert pitches(abc, tmp_path) == [72, 79, 82, 70, 72]
    assert "glued to the tonic" in caplog.text
    agrees_with_abc2midi(abc)
    assert "<fifths>" not in abc_to_musicxml_text(abc)
    assert abc_to_musicxml_text(abc).count("<key-alter>1</key-alter>") == 2
    assert pitches(tune("c2 g2 A4 |", "M:4/4\nL:1/8\nK:Am^g"), tmp_path) == [72, 80, 69]


def test_grace_note_accidental_is_its_own(tmp_path):
    # abc2xml carries it to later notes, abc2midi does not: the key's own
    # accidental (here none, in D major F sharp) is written on them
    abc = tune("c2 {^d}c2 d2 c2 | d8 |")
    assert propagate_accidentals(abc).splitlines()[-1] == "c2 {^d}c2 =d2 c2 | d8 |"
    assert pitches(abc, tmp_path) == [72, 72, 74, 72, 74]
    agrees_with_abc2midi(abc)
    abc = tune("A2 {=f}A2 f2 A2 | f8 |", "M:4/4\nL:1/8\nK:D")
    assert pitches(abc, tmp_path) == [69, 69, 78, 69, 78]
    agrees_with_abc2midi(abc)


def test_accidentals_do_not_carry_under_nobarlines(tmp_path):
    # %%MIDI nobarlines (and %%propagate-accidentals not): an accidental is
    # the note's own, as in a tune written without bar lines
    abc = tune("_B2 B2 =f2 f2 c8 B8", "%%MIDI nobarlines\nM:none\nL:1/8\nK:F")
    assert pitches(abc, tmp_path) == [70, 70, 77, 77, 72, 70]
    abc = tune("^c2 c2 _B2 B2 | c8 |", "%%MIDI nobarlines\nM:4/4\nL:1/8\nK:D")
    assert pitches(abc, tmp_path) == [73, 73, 70, 71, 73]
    agrees_with_abc2midi(abc)


def test_repeat_plays_in_the_key_of_its_start(tmp_path):
    # a key change inside a repeated section: the repeat starts in the old key
    abc = tune("|: F2 G2 A2 B2 | [K:Bb] B2 A2 G2 F2 :|", "M:4/4\nL:1/8\nK:G")
    assert pitches(abc, tmp_path)[4:8] == [70, 69, 67, 65]
    assert pitches(abc, tmp_path)[8:12] == [66, 67, 69, 71]
    agrees_with_abc2midi(abc)


def test_tuplet_with_empty_q(tmp_path):
    # "(3::2" is "(3:2:2": abc2xml read it as no notes, and ":" as a repeat
    abc = tune("(3::2 c4d2 c2 z2 z2 | c8 |")
    assert [n[2] for n in midi_notes(abc, tmp_path)][:2] == [4 / 3, 2 / 3]
    agrees_with_abc2midi(abc)


def test_text_blocks_are_not_music(tmp_path):
    abc = tune("%%begintext\nA tune text; not ABC.\n%%endtext\nc8 | c8 |")
    assert pitches(abc, tmp_path) == [72, 72]
    agrees_with_abc2midi(abc)


def test_double_bar_is_where_a_missing_start_repeat_goes(tmp_path):
    # abc2midi places a missing |: after the last :|, or a || after that one
    abc = tune("C8 :| D8 || E8 | F8 :|")
    assert pitches(abc, tmp_path) == [60, 60, 62, 64, 65, 64, 65]
    agrees_with_abc2midi(abc)
    abc = tune("C8 | D8 || E8 | F8 :|")  # no :| before: from the start
    assert pitches(abc, tmp_path) == [60, 62, 64, 65] * 2
    agrees_with_abc2midi(abc)


def test_key_of_explicit_accidentals_plays(tmp_path):
    # "K:D Phr ^F" is a key signature music21's MIDI writer could not write
    abc = tune("D_EFG A_Bcd | d8 |", "M:4/4\nL:1/8\nK:D Phr ^F")
    assert pitches(abc, tmp_path)[:4] == [62, 63, 66, 67]
    agrees_with_abc2midi(abc)


def test_aeolian_and_ionian_modes(tmp_path):
    # ABC 2.1 names seven modes; abc2xml reads "aeo" and "ion" as major
    abc = tune("G2 c2 [K:Dion] c2 f2 |", "M:4/4\nL:1/8\nK:EAeo")
    assert pitches(abc, tmp_path) == [67, 72, 73, 78]
    agrees_with_abc2midi(abc)


def test_explicit_key_plays_only_its_written_accidentals(tmp_path):
    # K:D exp _b ^f: B flat and F sharp, C natural (abc2xml kept D's C sharp)
    abc = tune("B2 c2 f2 b2 |", "M:4/4\nL:1/8\nK:D exp _b ^f")
    assert pitches(abc, tmp_path) == [70, 72, 78, 82]
    agrees_with_abc2midi(abc)


def test_bagpipe_key_sounds_f_and_c_sharp(tmp_path):
    abc = tune("A2 c2 f2 g2 | a8 |", "M:4/4\nL:1/8\nK:HP")
    assert pitches(abc, tmp_path) == [69, 73, 78, 79, 81]
    agrees_with_abc2midi(abc)


def test_key_none_in_the_body_plays_no_accidentals(tmp_path):
    # abc2xml would keep the earlier key's signature through a K:none
    abc = tune("F2 c2 [K:none] F2 c2 |\nK:none\nF8 |", "M:4/4\nL:1/8\nK:D")
    assert pitches(abc, tmp_path) == [66, 73, 65, 72, 65]
    agrees_with_abc2midi(abc)


def test_meter_without_denominator_counts_whole_notes(tmp_path):
    # abc2midi reads M:2 as 2/1: a multi-bar rest Z2 lasts four whole notes
    abc = tune("Z2 | C4 G4 |", "M:2\nL:1/4\nK:C")
    assert [onset for onset, _, _ in midi_notes(abc, tmp_path)] == [16.0, 20.0]
    agrees_with_abc2midi(abc)


def test_unit_length_before_the_first_voice_holds_for_every_voice(tmp_path):
    # "K:G / L:1/4 / V:1 ... V:2 ...": both voices count in quarter notes (their
    # bars fit the meter so); abc2midi gives the L: to its voice 1 only, and
    # the reference moves it into the header for abc2midi
    abc = tune("L:1/4\nV:1\nG A B c |\nV:2\nB, C D E |", "M:4/4\nK:G")
    assert {n[2] for n in midi_notes(abc, tmp_path)} == {1.0}
    assert "L:1/4\nK:G" in reference_abc(abc)
    agrees_with_abc2midi(abc)


def test_midi_transpose_directive(tmp_path):
    abc = tune("C2 E2 G2 c2 | C8 |", "M:4/4\nL:1/8\n%%MIDI transpose -2\nK:C")
    assert pitches(abc, tmp_path) == [58, 62, 65, 70, 58]
    agrees_with_abc2midi(abc)
    later = tune("|: C8 |\n%%MIDI transpose 5\nC8 :|\n%%MIDI transpose 0\nC8 |")
    # as abc2midi: a transpose holds on through the jump back
    assert pitches(later, tmp_path) == [60, 65, 65, 65, 60]
    agrees_with_abc2midi(later)
    # "t=" is abc2xml's short form of transpose=; abc2midi ignores it
    short = tune("c8 |", "M:4/4\nL:1/8\nK:C t=8")
    assert pitches(short, tmp_path) == [72]
    agrees_with_abc2midi(short)
    # music21 guesses an alto sax from the program, which it would play a
    # sixth lower; abc2midi plays the written notes
    sax = tune("C2 E2 G2 c2 | C8 |", "M:4/4\nL:1/8\n%%MIDI program 65\nK:C")
    assert pitches(sax, tmp_path) == [60, 64, 67, 72, 60]
    keyed = tune("c8 |\nK:C transpose=-2\nc8 |\nV:1 transpose=3\nc8 |")
    assert pitches(keyed, tmp_path) == [72, 70, 75]
    agrees_with_abc2midi(keyed)


def test_header_midi_transpose_shifts_every_voice(tmp_path):
    # abc2midi transposes all voices by a header %%MIDI transpose, on top of a
    # voice's own transpose=; abc2xml applied it to no voice
    head = "L:1/4\n%%MIDI transpose -2\nV:1\nK:C"
    abc = tune("V:1\nCE|\nV:2 transpose=1\nCE|\n[V:3]CE|", head)
    assert sorted(pitches(abc, tmp_path)) == [58, 58, 59, 62, 62, 63]
    agrees_with_abc2midi(abc)


def test_drum_voice_goes_to_channel_10_and_voices_get_own_channels(tmp_path):
    abc = tune("V:1\nd2f2 a2f2 | d8 |]\nV:2\nd2f2 a2f2 | d8 |]\nV:3\n"
               "%%MIDI channel 10\nF2F2 F2F2 | F8 |]", "M:4/4\nL:1/8\nK:D")  # fmt: skip
    path = abc_to_midi(abc, tmp_path / "t.mid")
    mf = music21.midi.MidiFile()
    mf.open(str(path))
    mf.read()
    mf.close()
    channels = [{e.channel for e in t.events if e.isNoteOn()} for t in mf.tracks]
    assert channels == [set(), {1}, {2}, {10}]
    # the drums are not compared; the two unison voices are two notes each time
    assert len(notes_from_midi(path)) == 10
    agrees_with_abc2midi(abc)


def test_overfull_bar_on_a_shared_staff_moves_only_its_voice(tmp_path):
    # voice 2's first bar is an eighth too long: abc2midi plays each voice
    # on; one part for the staff (%%score) would start voice 1's bars late
    abc = tune(
        "V:1\nC4 D4 | E8 | F8 |\nV:2\nC,4 D,4 E,2 | G,8 | A,8 |",
        "M:4/4\nL:1/8\n%%score (1 2)\nK:C",
    )
    assert [n for n in midi_notes(abc, tmp_path) if n[1] > 60] == [
        (2.0, 62, 2.0),
        (4.0, 64, 4.0),
        (8.0, 65, 4.0),
    ]
    agrees_with_abc2midi(abc)


def test_two_voices_on_one_staff_keep_their_unisons(tmp_path):
    head = "M:4/4\nL:1/8\n%%score (1 2)\nK:G"
    abc = tune("V:1\nxD3-D4 | G8 |]\nV:2\nz2D2 B,4 | G,8 |]", head)
    notes = midi_notes(abc, tmp_path)
    assert [n for n in notes if n[1] == 62] == [(0.5, 62, 3.5), (1.0, 62, 1.0)]
    agrees_with_abc2midi(abc)


def test_voice_ids_abc2midi_runs_together_are_renamed_for_it():
    # abc2midi numbers named voices 1, 2, ... (V:s is its voice 1) and stops
    # an id at "_" (P1_1 and P1_2 are one voice P1): both would be played
    # one voice after the other
    head = "M:4/4\nL:1/4\nK:C"
    for ids in (("s", "1"), ("P1_1", "P1_2")):
        abc = tune(f"V:{ids[0]}\nCDEF|\nV:{ids[1]}\nGABc|\n[V:{ids[0]}]EFGA|", head)
        agrees_with_abc2midi(abc)
        assert len(re.findall(r"(?m)^V:voice\d", reference_abc(abc))) == 2
    abc = tune("V:1\nCDEF|\nV:2\nGABc|", head)
    assert reference_abc(abc).count("V:voice") == 0


def test_user_defined_trill_is_not_played_out_by_the_reference():
    # abc2midi realises a trill defined as a symbol (U:W = !trill!) as notes;
    # like !trill!, it is left out of the comparison
    abc = tune(
        "WC UD .E2 | tF4 |", "U:W = !trill!\nU: t=!trill!\nU:U = !fermata!\nL:1/4\nK:C"
    )
    assert "WC" not in reference_abc(abc) and "UD" in reference_abc(abc)
    agrees_with_abc2midi(abc)


def test_old_style_trill_is_not_played_out_by_the_reference():
    abc = tune("+trill+A2 +fermata+B2 +mordent+c4 |")
    assert reference_abc(abc).splitlines()[-1] == "A2 +fermata+B2 c4 |"
    agrees_with_abc2midi(abc)


def test_double_bar_repeat_start_repeats_from_there(tmp_path):
    # "||:" starts a repeat (abc2midi since 2024; the reference writes "|:"
    # for the older abc2midi that read a double bar)
    abc = tune("C8 ||: D8 :|")
    assert pitches(abc, tmp_path) == [60, 62, 62]
    assert reference_abc(abc).splitlines()[-1] == "C8 |: D8 :|"
    agrees_with_abc2midi(abc)
    both = tune("|: C8 :||: D8 :|")
    assert pitches(both, tmp_path) == [60, 60, 62, 62]
    assert reference_abc(both).splitlines()[-1] == "|: C8 :||: D8 :|"
    agrees_with_abc2midi(both)


def test_broken_rhythm_after_a_staccato_note(tmp_path):
    # ".c2<e2": the standard's broken rhythm and staccato on c; abc2midi
    # ignores the "<" there, so the reference writes the lengths out
    abc = tune(".c2<e2 z4 |")
    assert midi_notes(abc, tmp_path) == [(0.0, 72, 0.25), (0.5, 76, 1.5)]
    assert reference_abc(abc).splitlines()[-1] == ".c1 e3 z4 |"
    agrees_with_abc2midi(abc)


def test_chord_lengths_inside_and_out_multiply(tmp_path):
    # ABC 2.1: [C2E2G2]3 is [CEG]6; abc2midi ignores the inner length, so
    # the reference writes the product on every note
    abc = tune("[C2E2G2]3 z2 | [C/E/]3 z5/ [CE]3/ z/ |")
    assert [n[2] for n in midi_notes(abc, tmp_path)] == [
        3,
        3,
        3,
        0.75,
        0.75,
        0.75,
        0.75,
    ]
    assert (
        reference_abc(abc).splitlines()[-1]
        == "[C6E6G6] z2 | [C3/2E3/2] z5/ [CE]3/ z/ |"
    )
    agrees_with_abc2midi(abc)


def test_part_starts_in_the_key_an_inline_field_left(tmp_path):
    # P:B follows an inline [K:F] in the text: it is in F, played first or not
    abc = tune("P:A\nC2 [K:F] B2|\nP:B\nB2 c2|", "M:2/4\nL:1/8\nP:BA\nK:D")
    assert pitches(abc, tmp_path) == [70, 72, 61, 70]
    agrees_with_abc2midi(abc)


@needs_abc2midi
def test_tune_abc2midi_plays_nothing_of_has_no_reference():
    # abc2midi stops at "d/3" (a length it cannot read) and writes an empty
    # MIDI file: no reference to compare with, not a disagreement
    result = compare_with_abc2midi(tune("d/3c/3B/3 c2 z4|"))
    assert not result and result.reference_failed
    assert "played no notes" in result.reason
    # a tune neither plays a note of is still identical
    assert compare_with_abc2midi(tune("x8 | z/3 |"))
    # with two voices it writes a broken MIDI file instead
    broken = compare_with_abc2midi(tune("V:1\ne/3f/3e/3 d2 c4 z|\nV:2\nC8|"))
    assert not broken and broken.reference_failed
    assert "broken MIDI" in broken.reason


CONFORMANCE = split_tunes((DATA / "conformance.abc").read_text(encoding="utf-8"))


@needs_abc2midi
@pytest.mark.parametrize(
    "abc",
    CONFORMANCE,
    ids=[
        t.split("\n")[1][2:].split(" ")[0] + "-" + t.split("\n")[0][2:]
        for t in CONFORMANCE
    ],
)
def test_conformance_suite_plays_like_abc2midi(abc, tmp_path):
    """Each ABC 2.1 feature of tests/data/conformance.abc: our MIDI, note for note."""
    result = compare_with_abc2midi(abc)
    assert result, result.reason
    # the same tune as MusicXML re-parses with music21 with the MIDI's notes
    # (as sounding pitches; grace notes, chord symbols and drums aside), and engraves
    xml = abc_to_musicxml(abc, tmp_path / "t.musicxml")
    score = music21.converter.parse(xml, format="musicxml").toSoundingPitch()
    drums = percussion_parts(xml.read_text())
    written = {
        pitch.midi
        for index, part in enumerate(score.parts)
        if index not in drums
        for note in part.recurse().notes
        if not note.duration.isGrace and not isinstance(note, music21.harmony.Harmony)
        for pitch in note.pitches
    }
    assert written == {pitch for _, pitch, _ in result.ours}
    assert "<svg" in abc_to_svg(abc, tmp_path / "t.svg").read_text()


# --- ABC outputs ---------------------------------------------------------------


def test_musicxml_svg_png_outputs(tmp_path):
    abc = (DATA / "convert_folk.abc").read_text().split("X:2", 1)[0]
    xml = abc_to_musicxml(abc, tmp_path / "kesh.musicxml")
    reread = music21.converter.parse(xml)
    assert len(reread.recurse().notes) == 92
    assert re.findall(r"<sign>(\w)</sign>", xml.read_text()) == ["G"]  # default clef
    svg = abc_to_svg(abc, tmp_path / "kesh.svg")
    assert svg.read_text().lstrip().startswith(("<?xml", "<svg"))
    assert 'class="clef' in svg.read_text()  # engraved with a clef
    try:
        import cairosvg  # noqa: F401
    except (ImportError, OSError) as err:  # OSError: no libcairo2 on the system
        pytest.skip(f"cairosvg unusable: {err}")
    png = svg_to_png(svg, tmp_path / "kesh.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_explicit_clefs_are_kept_and_none_added():
    abc = "X:1\nM:4/4\nL:1/4\nV:1\nV:2 clef=bass\nK:C\n[V:1]c d e f|[V:2]C, D, E, F,|\n"
    xml = abc_to_musicxml_text(abc)
    assert re.findall(r"<sign>(\w)</sign>", xml) == ["G", "F"]


def test_tune_without_key_is_a_conversion_error(tmp_path):
    with pytest.raises(ConversionError, match="K:"):
        abc_to_midi("X:1\nT:no key\nM:4/4\nCDEF|\n", tmp_path / "x.mid")


# --- scores -> ABC -------------------------------------------------------------


def test_musicxml_chorale_to_abc():
    (abc,) = score_file_to_abc(DATA / "convert_chorale.musicxml")
    assert "K:F#min" in abc
    assert len(re.findall(r"(?m)^V:\d", abc)) == 8  # 4 definitions + 4 bodies
    assert len(abc_to_score(abc).parts) == 4


def test_midi_of_a_real_tune_to_abc():
    (abc,) = score_file_to_abc(DATA / "convert_kesh.mid")
    score = abc_to_score(abc)
    # abc2midi wrote the repeats out: 2 x 92 notes, quantized back exactly.
    assert "M:6/8" in abc and "K:G" in abc
    assert "T:Title" not in abc  # xml2abc's placeholder for a score with no title
    assert len(score.recurse().notes) == 184
    assert sounding(score)[:6] == [67, 69, 67, 67, 69, 71]


def _type0_midi_with_drums() -> bytes:
    """A type-0 file as keyboards and sequencers write them: melody and chords on
    channel 1, a drum beat on channel 10, all in one track, played off the grid."""
    rng = random.Random(1)
    tpq, events = 480, [(0, b"\xff\x51\x03\x07\xa1\x20")]  # tempo 120
    scale = [62, 64, 66, 67, 69, 71, 73, 74]
    for i, pitch in enumerate(scale + scale[::-1]):
        on = max(0, i * tpq // 2 + rng.randint(-15, 15))
        events += [(on, bytes([0x90, pitch, 80])), (on + 200, bytes([0x80, pitch, 0]))]
        if i % 4 == 0:
            for low in (50, 54, 57):
                events += [
                    (on, bytes([0x90, low, 70])),
                    (on + 900, bytes([0x80, low, 0])),
                ]
    for beat in range(0, 8 * tpq, tpq):
        events += [(beat, b"\x99\x24\x64"), (beat + 60, b"\x89\x24\x00")]
    body, last = b"", 0
    for tick, event in sorted(events, key=lambda e: (e[0], e[1][0] & 0xF0 == 0x90)):
        delta, tick_bytes = tick - last, []
        tick_bytes.append(delta & 0x7F)
        while delta > 0x7F:
            delta >>= 7
            tick_bytes.append(0x80 | (delta & 0x7F))
        body += bytes(reversed(tick_bytes)) + event
        last = tick
    body += b"\x00\xff\x2f\x00"
    header = (
        b"MThd" + (6).to_bytes(4, "big") + b"\x00\x00\x00\x01" + tpq.to_bytes(2, "big")
    )
    return header + b"MTrk" + len(body).to_bytes(4, "big") + body


def test_type0_midi_drums_dropped_and_no_music21_placeholders(tmp_path):
    path = tmp_path / "type0.mid"
    path.write_bytes(_type0_midi_with_drums())
    (abc,) = score_file_to_abc(path)
    assert "Music21" not in abc  # no made-up title or composer
    pitches = [p.midi for n in abc_to_score(abc).recurse().notes for p in n.pitches]
    assert 36 not in pitches  # the bass drum is gone
    assert sorted(set(pitches)) == [50, 54, 57, 62, 64, 66, 67, 69, 71, 73, 74]
    melody = [n.pitch.midi for n in abc_to_score(abc).recurse().notes if n.isNote]
    assert melody[:8] == [62, 64, 66, 67, 69, 71, 73, 74]


def test_humdrum_to_abc():
    krn = CORPUS / "bach" / "bwv277.krn"
    if not krn.exists():
        pytest.skip("music21 corpus without bach/bwv277.krn")
    (abc,) = score_file_to_abc(krn)
    assert len(abc_to_score(abc).parts) == 4


def test_music21_score_to_abc():
    score = music21.converter.parse("tinyNotation: 4/4 c4 d e f g1")
    (abc,) = score_to_abc(score)
    assert [n.pitch.midi for n in abc_to_score(abc).recurse().notes] == [
        60,
        62,
        64,
        65,
        67,
    ]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("convert_random.mid", "not a MIDI file"),
        ("convert_truncated.mid", "truncated MIDI"),
    ],
)
def test_broken_midi_raises_with_reason(name, reason):
    with pytest.raises(ConversionError, match=reason):
        score_file_to_abc(DATA / name)


def test_time_limit_stops_a_slow_conversion():
    import time

    from abcmamba.convert.scores import time_limit

    with pytest.raises(ConversionError, match="timed out"), time_limit(0.2):
        time.sleep(2)


def test_musicxml_without_notes_raises(tmp_path):
    measure = music21.stream.Measure(
        [music21.meter.TimeSignature("4/4"), music21.note.Rest(quarterLength=4)]
    )
    path = tmp_path / "rests.musicxml"
    music21.stream.Score([music21.stream.Part([measure])]).write("musicxml", fp=path)
    with pytest.raises(ConversionError, match="no notes"):
        score_file_to_abc(path)


def test_midi_without_notes_raises(tmp_path):
    mf = music21.midi.translate.streamToMidiFile(
        music21.stream.Stream([music21.tempo.MetronomeMark(number=100)])
    )
    path = tmp_path / "silent.mid"
    mf.open(str(path), "wb")
    mf.write()
    mf.close()
    with pytest.raises(ConversionError, match="no notes"):
        score_file_to_abc(path)


# --- abcmamba convert ----------------------------------------------------------


def convert(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return run(parser.parse_args(argv))


def test_cli_converts_good_tunes_and_reports_the_bad_one(tmp_path, caplog, capsys):
    code = convert(
        [str(DATA / "convert_folk.abc"), "--to", "mid,musicxml", "--out", str(tmp_path)]
    )
    assert code == 1
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "speed-the-plough.mid",
        "speed-the-plough.musicxml",
        "the-kesh.mid",
        "the-kesh.musicxml",
        "two-voices-bar-interleaved.mid",
        "two-voices-bar-interleaved.musicxml",
    ]
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert (
        "convert_folk.abc: tune 3 (Broken tune without a key): no K: field" in errors[0]
    )
    assert "3 converted, 1 failed" in capsys.readouterr().out


def test_cli_scores_to_abc_and_bad_midi(tmp_path):
    code = convert(
        [
            str(DATA / "convert_chorale.musicxml"),
            str(DATA / "convert_random.mid"),
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 1
    assert "V:4" in (tmp_path / "convert_chorale.abc").read_text()


def test_cli_missing_file_and_bad_format(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        convert([str(tmp_path / "missing.abc")])
    with pytest.raises(UserError, match="unknown --to format"):
        convert([str(DATA / "convert_folk.abc"), "--to", "wav"])


# --- agreement with abc2midi on real folk tunes --------------------------------


def folk_sample(n: int, seed: int = 0) -> list[str]:
    tunes = []
    for collection in ("essenFolksong", "ryansMammoth"):
        for path in sorted((CORPUS / collection).glob("*.abc"))[:60]:
            text = path.read_text(encoding="latin-1")
            tunes += [c for c in re.split(r"(?m)^(?=X:)", text) if c.startswith("X:")]
    random.Random(seed).shuffle(tunes)
    return tunes[:n]


@needs_abc2midi
def test_agreement_with_abc2midi_on_folk_tunes():
    tunes = folk_sample(40)
    assert len(tunes) == 40
    results = [compare_with_abc2midi(t) for t in tunes]
    failures = [r.reason for r in results if not r]
    assert len(failures) <= 1, failures


@needs_abc2midi
def test_comparison_detects_a_wrong_note():
    abc = tune("CDEF GABc|")
    reference = abc2midi_notes(abc)
    assert compare_with_abc2midi(abc)
    from abcmamba.convert.reference import compare_notes

    wrong = [(o, p + (i == 3), d) for i, (o, p, d) in enumerate(reference)]
    result = compare_notes(wrong, reference)
    assert not result and "pitch 66 vs abc2midi 65" in result.reason


def test_broken_rhythm_of_three_signs(tmp_path):
    # abc2xml read "c>>>e" as two eighths
    abc = tune("c>>>e f2 c<<<[ce] f2 | c8 |")
    lengths = [n[2] for n in midi_notes(abc, tmp_path)]
    assert lengths[:2] == pytest.approx([15 / 16, 1 / 16], abs=1e-3)
    agrees_with_abc2midi(abc)


def test_percussion_clef_sounds_its_notes_as_abc2midi(tmp_path):
    abc = tune("^a^f c2 E2 z2 | c8 |", "M:4/4\nL:1/8\nK:C clef=perc")
    assert pitches(abc, tmp_path) == [82, 78, 72, 64, 72]
    agrees_with_abc2midi(abc)


def test_tab_before_a_comment_in_a_voice_line(tmp_path):
    abc = tune("V:1\t% melody\nc8 | c8 |\nV:2\nC8 | C8 |", "M:4/4\nL:1/8\nK:C")
    assert sorted(pitches(abc, tmp_path)) == [60, 60, 72, 72]
    agrees_with_abc2midi(abc)


def test_microtone_in_a_grace_note_or_chord_is_not_a_note(tmp_path, caplog):
    abc = tune("{_/E} DDDF2 _/E2 | D8 |")
    assert pitches(abc, tmp_path) == [62, 62, 62, 65, 64, 62]
    assert "without abc2midi's pitch bend" in caplog.text
    agrees_with_abc2midi(abc)
    # abc2xml read "[C_22/100EG]" as three notes one after the other
    abc = tune("[C_22/100EG]8 | [CEG]8 |")
    assert midi_notes(abc, tmp_path)[:3] == [
        (0.0, 60, 4.0),
        (0.0, 64, 4.0),
        (0.0, 67, 4.0),
    ]
    agrees_with_abc2midi(abc)


def test_clef_middle_does_not_move_the_notes(tmp_path):
    # abc2midi plays the notes as written; abc2xml moved them an octave
    for key in ("K:C bass middle=d", "K:C treble middle=B"):
        assert pitches(tune("CDEF GABc |", f"M:4/4\nL:1/8\n{key}"), tmp_path) == [
            60,
            62,
            64,
            65,
            67,
            69,
            71,
            72,
        ]
        agrees_with_abc2midi(tune("CDEF GABc |", f"M:4/4\nL:1/8\n{key}"))


def test_bracketed_additive_meter(tmp_path):
    # abc2xml wrote "(2+3+2)/8" as a time signature music21 could not read
    abc = tune("CDE FG ABc | [M:(3+2)/8] cBA GF |", "M:(2+3+2)/8\nL:1/8\nK:C")
    assert len(pitches(abc, tmp_path)) == 13
    agrees_with_abc2midi(abc)


def test_compare_notes_keeps_both_lists():
    from abcmamba.convert.reference import compare_notes

    result = compare_notes([(0.0, 60, 1.0)], [(0.0, 62, 1.0)])
    assert not result and not result.reference_failed
    assert result.ours == [(0.0, 60, 1.0)] and result.reference == [(0.0, 62, 1.0)]
    assert result.reason == "pitch 60 vs abc2midi 62 at 0"


def test_tie_between_different_pitches_is_no_tie(tmp_path):
    # "c-=c" in D major ties C sharp to C natural: abc2midi sounds both notes
    abc = tune("c2 c-=c z4 | c2-c2 z4 |", "M:4/4\nL:1/8\nK:D")
    assert midi_notes(abc, tmp_path) == [
        (0.0, 73, 1.0),
        (1.0, 73, 0.5),
        (1.5, 72, 0.5),
        (4.0, 73, 2.0),
    ]
    agrees_with_abc2midi(abc)
    # without its own accidental the tied note keeps the pitch across the bar
    abc = tune("z4 z2 =c2- | c4 z4 |", "M:4/4\nL:1/8\nK:D")
    assert midi_notes(abc, tmp_path) == [(3.0, 72, 3.0)]
    agrees_with_abc2midi(abc)
    # with its own accidental too: abc2midi holds the first pitch on
    abc = tune("z4 z2 _B2- | =B2 B2 z4 |", "M:4/4\nL:1/8\nK:C")
    assert midi_notes(abc, tmp_path) == [(3.0, 70, 2.0), (5.0, 71, 1.0)]
    agrees_with_abc2midi(abc)


def test_tied_unison_double_stop_holds_both_notes(tmp_path):
    # "[ee]2-[ee]2": each e tied to its own (abc2xml tied one into the other)
    abc = tune("[ee]2-[ee]2 d4 | [F2A2]-[A2A2]-[A2A2] z2 |", "M:4/4\nL:1/8\nK:G")
    assert midi_notes(abc, tmp_path) == [
        (0.0, 76, 2.0),
        (0.0, 76, 2.0),
        (2.0, 74, 2.0),
        (4.0, 66, 1.0),
        (4.0, 69, 3.0),
        (5.0, 69, 2.0),
    ]
    agrees_with_abc2midi(abc)
    # a chord holding a pitch twice, tied and untied ([C-C] C: game exports)
    abc = tune("[C-C]2 C2 z4 |")
    assert midi_notes(abc, tmp_path) == [(0.0, 60, 1.0), (0.0, 60, 2.0)]
    agrees_with_abc2midi(abc)


def test_chord_tie_holds_only_the_notes_that_keep_their_pitch(tmp_path):
    # fiddle double stops: "[G_B]2-[G=B]2" ties the G, the B flat and the
    # B natural both sound (abc2xml tied the B flat on over the B natural)
    abc = tune("[G_B]2-[G=B]2 c4 |", "M:4/4\nL:1/8\nK:G")
    assert midi_notes(abc, tmp_path) == [
        (0.0, 67, 2.0),
        (0.0, 70, 1.0),
        (1.0, 71, 1.0),
        (2.0, 72, 2.0),
    ]
    agrees_with_abc2midi(abc)


def test_apostrophe_before_a_note_is_a_staccato(tmp_path):
    # Nottingham Music Database: "'A" is a staccato to abc2midi, not an
    # octave mark of the note before it ("B 'c")
    # before a chord only when no length follows it ("'[ce]", not "'[ce]2")
    abc = tune("'A B 'c d | ('[ce]2 f g | '[ce] f g a |", "M:4/4\nL:1/4\nK:D")
    assert midi_notes(abc, tmp_path)[:4] == [
        (0.0, 69, 0.5),
        (1.0, 71, 1.0),
        (2.0, 73, 0.5),
        (3.0, 74, 1.0),
    ]
    agrees_with_abc2midi(abc)


def test_chord_symbol_left_open_ends_with_its_line(tmp_path):
    # abc2midi ends an unclosed "..." at the end of the line; abc2xml would
    # read the next line's notes as text up to its first quote
    abc = tune('"G c d e f |\n"C"g a b c\' |', "M:4/4\nL:1/4\nK:G")
    assert pitches(abc, tmp_path) == [79, 81, 83, 84]
    agrees_with_abc2midi(abc)


def test_broken_rhythm_between_unequal_notes_is_not_played(tmp_path, caplog):
    # abc2midi ignores ">" between notes of different written lengths
    # ("A>B/" in a Yankee Doodle of the folk corpus); equal ones are dotted
    abc = tune("A>B/ AG A2>B z | A>B A2>B2 z2 |")
    assert [n[2] for n in midi_notes(abc, tmp_path)][:5] == [0.5, 0.25, 0.5, 0.5, 1.0]
    assert "broken rhythm between unequal notes" in caplog.text
    agrees_with_abc2midi(abc)


def test_no_break_space_is_a_space(tmp_path, caplog):
    # tune archives exported from HTML put U+00A0 between notes
    abc = tune("A2\u00a0B2 c4 |]")
    assert pitches(abc, tmp_path) == [69, 71, 72]
    assert "misplaced" not in caplog.text
    agrees_with_abc2midi(abc)


def test_what_abc2xml_cannot_read_is_named_in_a_warning(tmp_path, caplog):
    abc = tune("CDEF |", "M:2/4 3/4\nL:1/4\nK:C")
    midi_notes(abc, tmp_path)
    assert "error in M:2/4 3/4" in caplog.text and "X:1 't'" in caplog.text


def test_clef_after_an_octave_clef_keeps_its_octave(tmp_path, caplog):
    # abc2midi holds the header's treble-8 through later clefs of K: fields
    abc = tune(
        "C2 E2 G4 |\nK:clef=treble\nC2 E2 G4 | [K:bass]C8 |",
        "M:4/4\nL:1/8\nK:C treble-8",
    )
    assert pitches(abc, tmp_path) == [48, 52, 55, 48, 52, 55, 48]
    assert "after the header's octave clef" in caplog.text
    agrees_with_abc2midi(abc)


def test_more_voices_than_abc2midi_plays_are_named_in_a_warning(tmp_path, caplog):
    body = "\n".join(f"V:{v}\nC4 |" for v in range(1, 18))
    assert len(midi_notes(tune(body), tmp_path)) == 17
    assert "17 voices: abc2midi plays only the first 16" in caplog.text


def test_part_without_final_bar_line_then_a_new_meter(tmp_path):
    # part A ends mid-line and part B starts in another meter: abc2xml ran
    # the two into one measure and music21 kept the first of its two meters
    abc = tune("P:A\n[M:3/4]CDE|FGA\nP:B\n[M:4/4]z4|GABc|", "M:4/4\nL:1/4\nP:ABA\nK:C")
    assert [n[0] for n in midi_notes(abc, tmp_path)][3:8] == [3.0, 4.0, 5.0, 10.0, 11.0]
    agrees_with_abc2midi(abc)


def test_tie_across_a_part_is_named_in_a_warning(tmp_path, caplog):
    # abc2midi ties F- to the first F of the next part in the text, on every
    # pass; parts are written out one by one here, so it is only warned
    abc = tune("P:A\nCDEF-|\nP:B\nFGAB|c4|", "M:4/4\nL:1/4\nP:ABA\nK:C")
    midi_notes(abc, tmp_path)
    assert "a tie across a P: part" in caplog.text


def test_tuplet_of_five_takes_the_time_its_meter_gives(tmp_path, caplog):
    # (5 is in the time of 3 in 9/8 (abc2xml took 2 everywhere), and in 3/4
    # too as abc2midi plays it (the standard says 2), with a warning
    for meter in ("9/8", "3/4"):
        abc = tune("(5ABcde f4 z2 z|", f"M:{meter}\nL:1/16\nK:C")
        assert midi_notes(abc, tmp_path)[1][0] == pytest.approx(0.15)
        agrees_with_abc2midi(abc)
    assert "in the time of 3, as abc2midi" in caplog.text
    assert (
        midi_notes(tune("(5ABcde f4 z2|", "M:2/4\nL:1/16\nK:C"), tmp_path)[1][0] == 0.1
    )


def test_tie_after_a_grace_group_and_staccato_before_a_slur_end(tmp_path):
    # "B {c}-B" ties the two Bs; "(B>.)A": the dot is dropped (abc2midi);
    # "d>"4".e": abc2midi's reading of ">" before a dot is written around
    abc = tune('B {c}-B A2 z4 | (B>.)"^x"AF>D z4 | d>"4".e d2 z4 |')
    notes = midi_notes(abc, tmp_path)
    assert notes[0] == (0.0, 71, 1.0) and notes[3] == (4.75, 69, 0.25)
    agrees_with_abc2midi(abc)
