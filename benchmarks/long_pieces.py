"""Long multi-voice pieces: tokens, voices, and the voices MIDI and MusicXML keep.

    python benchmarks/long_pieces.py --model runs/mamba-classical-2048 \\
        --composers Palestrina,Bach,Trecento,Monteverdi -n 3 \\
        --min-new-tokens 2000 --max-new-tokens 4096 --out reports/long-pieces-check
    python benchmarks/long_pieces.py --model runs/mamba-classical-2048 \\
        --abc-dir reports/long-pieces/samples/mamba-classical-2048

Samples `-n` pieces per composer with the grammar (or reads the .abc files of
--abc-dir), writes each to MIDI and MusicXML with abcmamba.convert, parses both
files back with music21 and counts the parts that hold notes, against the
voices that hold notes in the ABC. Prints a markdown table (one row a piece)
and writes OUT/long_pieces.json. Run by hand, never in CI.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from abcmamba import UserError  # noqa: E402

logger = logging.getLogger("long_pieces")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Flags of the check."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="model or run folder")
    parser.add_argument(
        "--composers", default="", help="comma-separated C: values to ask for"
    )
    parser.add_argument("-n", type=int, default=3, help="pieces per composer")
    parser.add_argument("--min-new-tokens", type=int, default=2000)
    parser.add_argument("--max-new-tokens", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--abc-dir", help="check these .abc files instead of sampling")
    parser.add_argument("--out", default="reports/long-pieces-check")
    return parser.parse_args(argv)


def parts_with_notes(path: Path) -> int:
    """Parts of a MIDI or MusicXML file that hold at least one note (music21)."""
    import music21

    score = music21.converter.parse(str(path))
    parts = score.parts if score.parts else [score]
    return sum(1 for part in parts if len(part.recurse().notes))


def check_piece(abc: str, tokenizer) -> dict:
    """Tokens, voices with notes, and the parts with notes of its MIDI and MusicXML."""
    from abcmamba import convert
    from abcmamba.abc.header import parse_header
    from abcmamba.abc.validate import voices_with_notes

    voices = voices_with_notes(abc)
    row = {
        "composer": parse_header(abc).get("C"),
        "tokens": len(tokenizer(abc, add_special_tokens=False)["input_ids"]),
        "voices": voices,
    }
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, write in (
            ("midi", convert.abc_to_midi),
            ("musicxml", convert.abc_to_musicxml),
        ):
            path = Path(tmp) / f"piece.{'mid' if fmt == 'midi' else fmt}"
            try:
                write(abc, path)
                row[f"{fmt}_parts"] = parts_with_notes(path)
            except Exception as err:  # a converter fault is a result, not a stop
                row[f"{fmt}_parts"] = None
                row[f"{fmt}_error"] = f"{type(err).__name__}: {err}"[:200]
    row["every_voice"] = all(
        row[f"{fmt}_parts"] is not None and row[f"{fmt}_parts"] >= voices
        for fmt in ("midi", "musicxml")
    )
    return row


def main(argv: list[str] | None = None) -> int:
    """Sample or read the pieces, check each, print the table."""
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    args = parse_args(argv)
    try:
        return _run(args)
    except UserError as err:
        print(f"long_pieces.py: error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from abcmamba.generate import generate_tunes, load_model

    model, tokenizer = load_model(args.model)
    pieces: list[tuple[str, str]] = []
    if args.abc_dir:
        files = sorted(Path(args.abc_dir).glob("*.abc"))
        if not files:
            raise UserError(f"no .abc files in {args.abc_dir}")
        pieces = [(f.name, f.read_text(encoding="utf-8")) for f in files]
    else:
        composers = [c.strip() for c in args.composers.split(",") if c.strip()]
        for composer in composers or [None]:
            tunes, _ = generate_tunes(
                model, tokenizer, args.n, composer=composer, seed=args.seed,
                max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                min_new_tokens=args.min_new_tokens,
            )  # fmt: skip
            pieces += [(f"{composer or 'free'}-{t.index + 1}", t.abc) for t in tunes]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, abc in pieces:
        (out / (name if name.endswith(".abc") else f"{name}.abc")).write_text(abc)
        rows.append({"piece": name, **check_piece(abc, tokenizer)})
        logger.info("%s: %s", name, rows[-1])
    lines = [
        "| piece | C: | tokens | voices | MIDI parts | MusicXML parts | every voice |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        cells = [r["piece"], r["composer"] or "–", f"{r['tokens']:,}", r["voices"]]
        cells += [
            r["midi_parts"],
            r["musicxml_parts"],
            "yes" if r["every_voice"] else "NO",
        ]
        lines.append(
            "| " + " | ".join("–" if c is None else str(c) for c in cells) + " |"
        )
    multi = [r for r in rows if r["voices"] > 1]
    lines += [
        "",
        f"{len(rows)} pieces, {sum(r['tokens'] >= 2000 for r in rows)} of 2,000+ tokens; "
        f"{len(multi)} multi-voice, {sum(r['every_voice'] for r in multi)} of them with "
        "every voice in both MIDI and MusicXML; "
        f"{sum(r['every_voice'] for r in rows)}/{len(rows)} in all.",
    ]
    table = "\n".join(lines) + "\n"
    (out / "long_pieces.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / "long_pieces.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
