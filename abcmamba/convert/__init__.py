"""ABC <-> music21 <-> MIDI / MusicXML / Humdrum / SVG / PNG.

data_prep calls :func:`score_file_to_abc` and :func:`score_to_abc`;
`abcmamba convert` (:func:`add_arguments`, :func:`run`) and `abcmamba
generate` call the ABC-side functions.
"""

from abcmamba.convert.abcread import abc_to_musicxml_text, abc_to_score, playable
from abcmamba.convert.abctext import expand_repeats, propagate_accidentals
from abcmamba.convert.cli import add_arguments, run
from abcmamba.convert.reference import Comparison, compare_with_abc2midi
from abcmamba.convert.render import (
    abc_to_midi,
    abc_to_musicxml,
    abc_to_png,
    abc_to_svg,
    svg_to_png,
)
from abcmamba.convert.scores import (
    SCORE_SUFFIXES,
    ConversionError,
    score_file_to_abc,
    score_to_abc,
    xml_to_abc,
)

__all__ = [
    "SCORE_SUFFIXES",
    "Comparison",
    "ConversionError",
    "abc_to_midi",
    "abc_to_musicxml",
    "abc_to_musicxml_text",
    "abc_to_png",
    "abc_to_score",
    "abc_to_svg",
    "add_arguments",
    "compare_with_abc2midi",
    "expand_repeats",
    "playable",
    "propagate_accidentals",
    "run",
    "score_file_to_abc",
    "score_to_abc",
    "svg_to_png",
    "xml_to_abc",
]
