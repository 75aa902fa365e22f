"""abcmamba.abc.grammar: the bar-length tracker and header rules behind the sampler."""

from __future__ import annotations

from fractions import Fraction

import pytest

from abcmamba.abc import validate
from abcmamba.abc.grammar import TuneGrammar, completion


def _feed(text: str, request: dict | None = None):
    grammar = TuneGrammar(request)
    state = grammar.start()
    for ch in text:  # one character at a time, as a sampler of single characters
        state = grammar.feed(state, ch)
        if state is None:
            return grammar, None
    return grammar, state


def accepted(text: str, request: dict | None = None) -> bool:
    """Whether ``text`` is a complete tune the grammar lets a sampler write."""
    grammar, state = _feed(text, request)
    ok = state is not None and grammar.accepts(state)
    if ok:  # everything the grammar accepts, the validator accepts
        assert validate(text) == [], text
    return ok


def head(meter="2/4", unit="1/8", key="D", more="") -> str:
    return f"X:1\nM:{meter}\nL:{unit}\n{more}K:{key}\n"


# hand-checked bar lengths: (body, accepted?) in 2/4 with L:1/8 (four eighths a bar)
CASES = [
    ("A>B c<d|d4|\n", True),  # broken rhythm: 3/2 + 1/2 + 1/2 + 3/2
    ("A>>B c2|d4|\n", True),  # double-dotted: 7/4 + 1/4
    ("A>B c2 d|d4|\n", False),  # five eighths
    ("(3abc d2|d4|\n", True),  # triplet: three in the time of two
    ("(3:2:2G4c2|d4|\n", True),  # (p:q:r: 3 in the time of 2, on the next 2 notes
    ("(3:2:4G2A2Bc|d4|\n", True),  # ... on the next 4 notes (6 written eighths)
    ("d4|(3abc d|d4|\n", False),  # three eighths
    ("[CEG]2 [DF]/[EG]/ z|d4|\n", True),  # chords with lengths
    ("[C2E2] [DF]2|d4|\n", True),  # a chord's first note gives its length
    ("A4-|A4|\n", True),  # a tie across the bar line
    ("A4|A4|A2|]\n", True),  # the last bar may be short at the tune's end ...
    ("A4|A2|]\n", False),  # ... of a section of at least two full bars
    ("A4|A2\n", True),  # ... (also with no bar line after it)
    ("A4|A2|A4|\n", False),  # ... not in the middle
    ("A4|A2|\n", False),  # stricter than the validator: the end must be marked
    ("A4|A4|A2:|A2|A4|\n", True),  # short bars at a repeat (section edge)
    ("A4|A2|1A2|\n", False),  # an ending does not excuse a short bar
    ("A4|A2::A2::A4|\n", False),  # nor do repeat signs around every short bar
    ("A|d2e f|d4|\n", True),  # a pickup bar
    ("A4|[M:3/4]A6|A6|\n", True),  # an inline meter change
    ("A4|[L:1/4]A2|A2|\n", True),  # an inline unit change
    ("A4|A6|\n", False),  # too long without the change
    ("A4|A4|]\n", True),
    ("A8|\n", False),  # never longer than the meter
]


@pytest.mark.parametrize("body,ok", CASES)
def test_bar_lengths(body, ok):
    assert accepted(head() + body) is ok


def test_only_the_corpus_spellings_of_lengths_and_octaves():
    assert accepted(head() + "A/B/ c// d//c3/ d|c'' C,,,3|\n")
    assert not accepted(head() + "A33/44 B|d4|\n")  # 3/4, spelled oddly
    assert not accepted(head() + "A66//88 B|d4|\n")
    assert not accepted(head() + "c''' d3|d4|\n")  # above the corpus's range
    assert not accepted(head() + "C,,,, d3|d4|\n")
    assert not accepted(head() + "c, d3|d4|\n")  # a comma on a lower-case note


def test_no_note_shorter_than_musicxml_keeps():
    # abc2xml writes notes under a 48th with the wrong length (measure overfull)
    for body in (
        "A//<B//c/d3 d2|d4|\n",
        "A/16 x15/16 c3|d4|\n",
        "(3A///B///c/// d3|d4|\n",
    ):
        assert not accepted(head() + body), body
    assert accepted(head() + "A/<B/ (3c//d//e// d/ d2|d4|\n")


def test_broken_rhythm_never_leaves_a_gap_only_a_too_short_note_fills():
    # after "d3 c/" a sixteenth is left; `A//>>` would leave a 128th for the
    # next note, which would be shorter than MIN_NOTE: a dead end, refused
    assert _feed(head() + "d3 c/ A//>>")[1] is None
    grammar, state = _feed(head() + "d3 c/ A//")
    rest = completion(grammar, state)
    assert rest is not None and accepted(head() + "d3 c/ A//" + rest)


def test_bar_lengths_agree_with_music21():
    """What the grammar counts, abc2xml + music21 count the same."""
    import warnings

    from abcmamba.convert import abc_to_score

    bodies = ["A/<B/ (3c//d//e// d/ d2|d4|", "(2AB (3c/d/e/|(5:4:5a/b/c/d/e/ f2|",
              "[CE]/>[DF]/ G3/ A/ B|d4|", "(3:2:4c2de f2|d4|"]  # fmt: skip
    for body in bodies:
        assert accepted(head() + body + "\n"), body
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            score = abc_to_score(head() + body + "\n")
        measures = score.parts[0].getElementsByClass("Measure")
        assert [m.duration.quarterLength for m in measures] == [2.0, 2.0], body


def test_units_and_meters():
    assert accepted(head(unit="1/16") + "A8|B4c4|\n")
    assert not accepted(head(unit="1/16") + "A8|B4|c4|\n")
    assert accepted(head(meter="C|") + "A8|B4c4|\n")  # alla breve: a whole note
    assert accepted(head(meter="6/8") + "A3 B2c|d6|\n")
    assert accepted(head(meter="none") + "A3 B|c|d8|\n")  # free meter: any bar


def test_multi_voice_lines_keep_voices_aligned():
    voices = "V:1\nV:2 clef=bass\n"
    good = "[V:1]c4|[V:2]C4|\n[V:1]d2e2|[V:2]D4|\n"
    assert accepted(head(more=voices) + good)
    assert accepted(head(more=voices) + "[V:1]c2|[V:2]C2|\n[V:1]d4|[V:2]D4|\n")
    assert not accepted(head(more=voices) + "[V:1]c4|[V:2]C2|\n[V:1]d4|[V:2]D4|\n")
    assert not accepted(head(more=voices) + "[V:2]C4|[V:1]c4|\n[V:1]d4|[V:2]D4|\n")
    assert not accepted(head(more=voices) + "[V:1]c4|\n[V:1]d4|[V:2]D4|\n")
    assert not accepted(head(more="V:1\n") + "c4|d4|\n")  # one V: is not two voices
    # a meter change in one voice would leave the other voices' bars no valid end
    changed = "[V:1][M:3/4]c6|[V:2]C6|\n"
    assert not accepted(head(more=voices) + "[V:1]c4|[V:2]C4|\n" + changed)
    assert accepted(head(more=voices) + "[V:1][L:1/4]c2|[V:2]C4|\n[V:1]c2|[V:2]D4|\n")


def test_header_order_and_requested_fields():
    body = "A4|B4|\n"
    assert accepted(head() + body, {"M": "2/4", "K": "D"})
    assert not accepted(head(meter="3/4") + "A6|B6|\n", {"M": "2/4"})
    assert not accepted("X:1\nL:1/8\nK:D\nA4|B4|\n", {"M": "2/4"})  # skipped M:
    assert not accepted("X:1\nM:2/4\nK:D\nA4|B4|\n")  # no L:
    assert not accepted("X:1\nL:1/8\nM:2/4\nK:D\nA4|B4|\n")  # out of order
    assert not accepted(head() + "[M:3/4]A6|B6|\n", {"M": "2/4"})  # changed in body
    assert not accepted("X:1\nM:2/4\nL:1/8\nK:Dmajor\nA4|B4|\n")  # not canonical


@pytest.mark.parametrize(
    "text",
    [
        "X:1\nM:6/",
        "X:1\nM:6/8\nL:1/8\nV:1 clef=tre",
        head() + '"G',
        head() + "(3AB",
        head() + "A>",
        head() + "!tri",
        head() + "{g",
        head() + "[CE",
        head() + "A4|B2",
        head(more="V:1\nV:2\n") + "[V:1]c2|[V:2]C",
    ],
)
def test_completion_ends_any_prefix_validly(text):
    grammar, state = _feed(text)
    assert state is not None
    rest = completion(grammar, state)
    assert rest is not None and accepted(text + rest)


def test_untrusted_text_is_refused():
    for bad in ["\x0f", "%", '"^annotation"', "y", "&", " " * 9]:
        assert _feed(head() + "A2" + bad)[1] is None, bad
    grammar, state = _feed(head() + "A2 B")
    assert not grammar.accepts(state)  # no EOS inside a bar of a one-bar tune


def test_mask_key_holds_voice_1s_bar_line():
    # voice 2 must close its bar with voice 1's bar line: two lines that differ
    # only there allow different text, so their cache keys differ
    voices = head(more="V:1\nV:2\n")
    grammar, a = _feed(voices + "[V:1]c4|[V:2]C4")
    _, b = _feed(voices + "[V:1]c4:|[V:2]C4")
    assert grammar.mask_key(a) != grammar.mask_key(b)
    assert grammar.feed(a, ":") is None and grammar.feed(b, ":") is not None


def test_mask_key_ignores_what_cannot_change_the_mask():
    grammar, a = _feed(head() + "A4|B2 ")
    _, b = _feed(head() + "c4|d2 ")
    _, c = _feed(head() + "c4|d3 ")
    assert grammar.mask_key(a) == grammar.mask_key(b)
    assert grammar.mask_key(a) != grammar.mask_key(c)
    assert a[1].fill == Fraction(2, 8) and c[1].fill == Fraction(3, 8)
