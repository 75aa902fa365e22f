"""`abcmamba generate`: sample tunes, write ABC, MIDI, MusicXML and sheet music."""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import torch

from abcmamba.generate.conditions import field_conditions, load_known_values
from abcmamba.generate.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_RETRIES,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_K,
    DEFAULT_TOP_P,
)
from abcmamba.generate.loading import load_model
from abcmamba.generate.sampling import generate_tunes

logger = logging.getLogger(__name__)
FORMATS = ("mid", "musicxml", "svg", "png")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `abcmamba generate`."""
    parser.add_argument(
        "--model",
        required=True,
        help="model folder, run folder (uses its final/) or Hub id OWNER/NAME",
    )
    parser.add_argument(
        "--composer",
        help="C: field, matched case-insensitively to the training corpus, e.g. bach",
    )
    parser.add_argument("--rhythm", help="R: field, e.g. jig, reel")
    parser.add_argument("--meter", help="M: field, e.g. 6/8, C, 3/4")
    parser.add_argument("--unit", help="L: field (unit note length), e.g. 1/8")
    parser.add_argument("--key", help="K: field, e.g. D, Em, Ador, Gmix")
    parser.add_argument("--tempo", help="Q: field, e.g. 1/4=120")
    parser.add_argument(
        "--unconstrained",
        action="store_true",
        help="sample the model's own text (header kept in order); by default a "
        "grammar makes every tune valid ABC and honours every requested field",
    )
    parser.add_argument(
        "--prompt", help="raw ABC the tunes start with (escapes like \\n allowed)"
    )
    parser.add_argument("-n", type=int, default=8, help="number of tunes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--temperature",
        type=float,
        help="default: the model's generation_config, else 1.0",
    )
    parser.add_argument(
        "--top-p",
        type=float,
        help="nucleus sampling; default: generation_config, else 0.95",
    )
    parser.add_argument(
        "--top-k", type=int, help="0 disables; default: generation_config, else 0"
    )
    parser.add_argument(
        "--max-new-tokens", type=int, help="default: generation_config, else 1024"
    )
    parser.add_argument(
        "--min-new-tokens",
        type=int,
        default=0,
        help="a tune may not end before this many new tokens (long pieces: e.g. "
        "2000 with --max-new-tokens 4096); the end of text is masked until then",
    )
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument(
        "--retries",
        type=int,
        default=DEFAULT_RETRIES,
        help="re-samples per invalid tune",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (small models decode fastest on 1)",
    )
    parser.add_argument("--out", required=True, help="output folder")


def _setting(value, generation_config, name: str, default):
    if value is not None:
        return value
    configured = getattr(generation_config, name, None)
    return configured if configured is not None else default


def write_formats(abc: str, stem: Path) -> tuple[list[str], dict[str, str]]:
    """Write ``stem``.mid/.musicxml/.svg/.png; returns (written, {format: reason skipped})."""
    from abcmamba import convert

    written, skipped = [], {}
    steps = {
        "mid": lambda: convert.abc_to_midi(abc, stem.with_suffix(".mid")),
        "musicxml": lambda: convert.abc_to_musicxml(abc, stem.with_suffix(".musicxml")),
        "svg": lambda: convert.abc_to_svg(abc, stem.with_suffix(".svg")),
        "png": lambda: convert.svg_to_png(
            stem.with_suffix(".svg"), stem.with_suffix(".png")
        ),
    }
    for fmt, step in steps.items():
        if fmt == "png" and "svg" not in written:
            skipped[fmt] = "no SVG to render"
            continue
        try:
            step()
            written.append(fmt)
        except Exception as err:  # any converter fault: skip this format, keep the rest
            reason = (
                str(err).strip().splitlines()[0]
                if str(err).strip()
                else type(err).__name__
            )
            skipped[fmt] = reason
            logger.warning("%s: no .%s: %s", stem.name, fmt, reason)
    return written, skipped


def run(args: argparse.Namespace) -> int:
    """`abcmamba generate`: sample, validate, write ABC + MIDI/MusicXML/SVG/PNG + summary."""
    out = Path(args.out)
    prompt = args.prompt.encode().decode("unicode_escape") if args.prompt else None
    # check the flags before the (slow) model load
    known = load_known_values(args.model) if Path(args.model).is_dir() else None
    field_conditions(
        args.composer, args.rhythm, args.meter, args.unit, args.key, args.tempo, known
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.model)
    gc = getattr(model, "generation_config", None)
    settings = {
        "model": args.model,
        "composer": args.composer,
        "rhythm": args.rhythm,
        "meter": args.meter,
        "unit": args.unit,
        "key": args.key,
        "tempo": args.tempo,
        "prompt": prompt,
        "n": args.n,
        "seed": args.seed,
        "temperature": _setting(
            args.temperature, gc, "temperature", DEFAULT_TEMPERATURE
        ),
        "top_p": _setting(args.top_p, gc, "top_p", DEFAULT_TOP_P),
        "top_k": _setting(args.top_k, gc, "top_k", DEFAULT_TOP_K),
        "max_new_tokens": _setting(
            args.max_new_tokens, gc, "max_new_tokens", DEFAULT_MAX_NEW_TOKENS
        ),
        "min_new_tokens": args.min_new_tokens,
        "batch_size": args.batch_size,
        "retries": args.retries,
        "constrained": not args.unconstrained,
    }
    start = time.perf_counter()
    tunes, reasons = generate_tunes(
        model, tokenizer, args.n,
        known=known,
        **{k: settings[k] for k in ("composer", "rhythm", "meter", "unit", "key", "tempo",
                                    "prompt", "seed", "temperature", "top_p", "top_k",
                                    "max_new_tokens", "min_new_tokens", "batch_size", "retries",
                                    "constrained")},
    )  # fmt: skip
    seconds = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    width = len(str(args.n))
    records = []
    for tune in tunes:
        stem = out / f"tune_{tune.index + 1:0{width}d}"
        stem.with_suffix(".abc").write_text(tune.abc, encoding="utf-8")
        if tune.valid:
            written, skipped = write_formats(tune.abc, stem)
        else:
            written, skipped = [], dict.fromkeys(FORMATS, "invalid tune")
        record = asdict(tune)
        record.update(
            file=stem.name + ".abc", formats=["abc", *written], skipped=skipped
        )
        records.append(record)
    valid = sum(t.valid for t in tunes)
    summary = {
        "settings": settings,
        "counts": {
            "requested": args.n,
            "valid": valid,
            "invalid": args.n - valid,
            "attempts": sum(t.attempts for t in tunes),
            "rejected_attempts": sum(t.attempts for t in tunes) - valid,
        },
        "retry_reasons": dict(reasons.most_common()),
        "seconds": round(seconds, 2),
        "new_tokens_last_attempts": sum(t.new_tokens for t in tunes),
        "tunes": records,
    }
    (out / "summary.json").write_text(
        json.dumps(summary, indent=2) + "\n", encoding="utf-8"
    )
    print(f"{'tune':<{width + 10}} {'valid':<6} {'bars':>5}  {'key':<8} {'meter':<6}")
    for r in records:
        bars = "" if r["n_bars"] is None else r["n_bars"]
        print(
            f"{r['file']:<{width + 10}} {'yes' if r['valid'] else 'no':<6} {bars:>5}  {r['key'] or '-':<8} {r['meter'] or '-':<6}"
        )
    print(
        f"{valid}/{args.n} valid after {summary['counts']['attempts']} attempts; wrote {out}"
    )
    return 0
