"""ABC <-> music21 <-> MIDI / MusicXML / Humdrum / SVG / PNG.

data_prep calls :func:`score_file_to_abc` and :func:`score_to_abc`;
`abcmamba convert` and `abcmamba generate` call the ABC-side functions.
"""

from abcmamba.convert.scores import (
    SCORE_SUFFIXES,
    ConversionError,
    score_file_to_abc,
    score_to_abc,
    xml_to_abc,
)

__all__ = [
    "SCORE_SUFFIXES",
    "ConversionError",
    "score_file_to_abc",
    "score_to_abc",
    "xml_to_abc",
]
