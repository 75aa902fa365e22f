"""One ABC tune to MIDI, MusicXML, SVG (verovio) and PNG (cairosvg) files."""

from __future__ import annotations

import logging
from pathlib import Path

from abcmamba.convert.abcread import abc_to_musicxml_text, abc_to_score, playable
from abcmamba.convert.abctext import propagate_accidentals

logger = logging.getLogger(__name__)

# Verovio page: one tall page so a tune is one SVG; width in 1/10 mm.
VEROVIO_OPTIONS = {
    "pageWidth": 2100,
    "pageHeight": 60000,
    "adjustPageHeight": True,
    "scale": 40,
    "breaks": "auto",
    "footer": "none",
    "header": "auto",
}


def abc_to_midi(abc: str, path: str | Path) -> Path:
    """Write one ABC tune as MIDI, repeats played out as abc2midi does."""
    import music21

    score = playable(abc_to_score(abc, expand=True))
    mf = music21.midi.translate.streamToMidiFile(score)
    mf.open(str(path), "wb")
    try:
        mf.write()
    finally:
        mf.close()
    return Path(path)


def abc_to_musicxml(abc: str, path: str | Path) -> Path:
    """Write one ABC tune as MusicXML (repeats kept as repeat signs)."""
    path = Path(path)
    path.write_text(abc_to_musicxml_text(propagate_accidentals(abc)), encoding="utf-8")
    return path


def abc_to_svg(abc: str, path: str | Path) -> Path:
    """Engrave one ABC tune as SVG sheet music with verovio (from MusicXML)."""
    import verovio

    verovio.enableLog(verovio.LOG_OFF)
    toolkit = verovio.toolkit()
    toolkit.setOptions(VEROVIO_OPTIONS)
    if not toolkit.loadData(abc_to_musicxml_text(propagate_accidentals(abc))):
        raise ValueError("verovio could not load the MusicXML")
    path = Path(path)
    path.write_text(toolkit.renderToSVG(1), encoding="utf-8")
    if toolkit.getPageCount() > 1:
        logger.warning("%s: only page 1 of %d engraved", path, toolkit.getPageCount())
    return path


def svg_to_png(svg_path: str | Path, png_path: str | Path, scale: float = 1.0) -> Path:
    """Rasterize an SVG to PNG on a white background with cairosvg."""
    import cairosvg

    cairosvg.svg2png(
        url=str(svg_path), write_to=str(png_path), scale=scale, background_color="white"
    )
    return Path(png_path)


def abc_to_png(abc: str, path: str | Path) -> Path:
    """Engrave one ABC tune straight to PNG."""
    svg = Path(path).with_suffix(".svg.tmp")
    try:
        abc_to_svg(abc, svg)
        return svg_to_png(svg, path)
    finally:
        svg.unlink(missing_ok=True)
