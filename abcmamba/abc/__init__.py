"""ABC text toolkit: split files into tunes, parse headers, normalize, validate."""

from abcmamba.abc.header import (
    ACCEPTED_KEYS,
    ACCEPTED_METERS,
    HEADER_ORDER,
    ORDER,
    Header,
    canonical_key,
    canonical_meter,
    canonical_tempo,
    default_unit,
    parse_header,
)
from abcmamba.abc.normalize import AbcError, NormalizedTune, normalize, split_bars
from abcmamba.abc.text import read_abc_file, split_tunes, tokenize_music
from abcmamba.abc.validate import validate

__all__ = [
    "ACCEPTED_KEYS",
    "ACCEPTED_METERS",
    "HEADER_ORDER",
    "ORDER",
    "AbcError",
    "Header",
    "NormalizedTune",
    "canonical_key",
    "canonical_meter",
    "canonical_tempo",
    "default_unit",
    "normalize",
    "parse_header",
    "read_abc_file",
    "split_bars",
    "split_tunes",
    "tokenize_music",
    "validate",
]
