"""The `abcmamba` console script.

Each subcommand lives in its own module, which provides
``add_arguments(parser)`` and ``run(args) -> int`` (for `listen-report`:
``add_listen_report_arguments`` and ``run_listen_report``). Modules are
imported only when their subcommand runs, so `abcmamba --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from abcmamba import UserError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "tokenizer": ("abcmamba.tokenizer", "train the BPE tokenizer on a corpus"),
    "convert": ("abcmamba.convert", "convert ABC to MIDI/MusicXML/SVG/PNG and back"),
    "generate": ("abcmamba.generate", "sample tunes from a model"),
    "evaluate": ("abcmamba.evaluate", "measure models: bpc, validity, music metrics"),
    "listen": ("abcmamba.listen", "serve a blind listening test"),
    "listen-report": ("abcmamba.listen", "analyse listening-test results"),
}


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="abcmamba", description="Mamba language models for music in ABC notation."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        cmd = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        if name == command:
            cmd.add_argument("-v", "--verbose", action="store_true", help="debug logs")
            module = importlib.import_module(module_name)
            suffix = name.replace("-", "_")
            add = (
                getattr(module, f"add_{suffix}_arguments", None) or module.add_arguments
            )
            add(cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `abcmamba` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    if command is None:
        _parser().parse_args(argv)  # prints help or an "invalid choice" error
        _parser().print_help()
        return 0
    args = _parser(command).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    module = importlib.import_module(COMMANDS[command][0])
    suffix = command.replace("-", "_")
    run = getattr(module, f"run_{suffix}", None) or module.run
    try:
        return int(run(args) or 0)
    except UserError as err:
        print(f"abcmamba {command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
