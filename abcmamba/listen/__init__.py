"""`abcmamba listen` serves a blind listening test; `abcmamba listen-report` analyses it.

abcmamba listen --samples runs/mamba/samples --samples data/real=real --db results.sqlite
abcmamba listen-report --db results.sqlite --out listen_report
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from abcmamba import UserError

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `abcmamba listen`."""
    parser.add_argument(
        "--samples",
        action="append",
        required=True,
        metavar="DIR[=LABEL]",
        help="folder of samples (repeatable); LABEL (default: the folder name) names the "
        "model, and 'real' or 'human' marks tunes written by people",
    )
    parser.add_argument(
        "--db", default="results.sqlite", help="SQLite file for the answers"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument(
        "--port", type=int, default=8000, help="port (0: any free port)"
    )
    parser.add_argument(
        "--pieces", type=int, default=0, help="pieces rated per participant (0: all)"
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=4,
        help="'which is human' pairs per participant (0: none)",
    )
    parser.add_argument(
        "--render-audio",
        action="store_true",
        help="pre-render WAV with FluidSynth and a General MIDI soundfont "
        "instead of the in-browser synthesizer (every source with the same settings)",
    )
    parser.add_argument(
        "--soundfont", help="soundfont for --render-audio; unset: a Debian GM one"
    )
    parser.add_argument(
        "--cache-dir",
        help="where made MIDI/WAV/SVG files go; unset: DB_media next to --db",
    )


def run(args: argparse.Namespace) -> int:
    """Serve the listening test until interrupted."""
    import shutil

    from abcmamba.listen.db import ResultsDB
    from abcmamba.listen.samples import find_samples, find_soundfont, parse_samples_arg
    from abcmamba.listen.server import ListenApp, ListenConfig, make_server

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: must be 0-65535")
    if args.pieces < 0 or args.pairs < 0:
        raise UserError("--pieces and --pairs must be >= 0")
    samples = find_samples([parse_samples_arg(v) for v in args.samples])
    soundfont = None
    if args.render_audio:
        if shutil.which("fluidsynth") is None:
            raise UserError(
                "--render-audio needs fluidsynth (apt-get install fluidsynth)"
            )
        soundfont = find_soundfont(args.soundfont)
        if soundfont is None:
            raise UserError(
                "--render-audio needs a soundfont: --soundfont FILE, or "
                "apt-get install timgm6mb-soundfont (or fluid-soundfont-gm)"
            )
    db_path = Path(args.db)
    cache = (
        Path(args.cache_dir)
        if args.cache_dir
        else db_path.with_name(db_path.stem + "_media")
    )
    config = ListenConfig(
        samples=samples,
        db=ResultsDB(db_path),
        cache_dir=cache,
        pieces_per_participant=args.pieces,
        pairs_per_participant=args.pairs,
        render_audio=args.render_audio,
        soundfont=soundfont,
    )
    app = ListenApp(config)
    sources: dict[str, int] = {}
    for s in app.by_id.values():
        sources[s.source] = sources.get(s.source, 0) + 1
    logger.info("samples per source: %s", sources)
    try:
        server = make_server(app, args.host, args.port)
    except OSError as err:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {err}") from err
    host, port = server.server_address[:2]
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("listening on %s: reachable by other machines", args.host)
    logger.info("listening test at http://%s:%d/ (Ctrl-C stops)", host, port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        logger.info("stopped; answers so far: %s", config.db.counts())
    finally:
        server.server_close()
    return 0


def add_listen_report_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `abcmamba listen-report`."""
    parser.add_argument(
        "--db", required=True, help="SQLite file written by `abcmamba listen`"
    )
    parser.add_argument(
        "--out", default="listen_report", help="folder for report and plots"
    )
    parser.add_argument(
        "--confidence", type=float, default=0.95, help="confidence level"
    )


def run_listen_report(args: argparse.Namespace) -> int:
    """Write report.json, report.md and plots for a listening-test database."""
    from abcmamba.listen.report import make_report, write_report

    if not 0 < args.confidence < 1:
        raise UserError(f"--confidence {args.confidence}: must be between 0 and 1")
    report = make_report(args.db, confidence=args.confidence)
    paths = write_report(report, args.out)
    for path in paths:
        logger.info("wrote %s", path)
    return 0
