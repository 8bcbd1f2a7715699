"""`baize convert`: data files between the original Baize format and chat `messages` JSONL."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from baize.io.arguments import StageParser
from baize.io.errors import UsageError, run_command

OUTPUT_FORMATS = {".jsonl": "messages", ".json": "baize"}


def build_parser() -> argparse.ArgumentParser:
    parser = StageParser(
        formatter_class=argparse.HelpFormatter,
        prog="baize convert",
        description="Convert a data file. Input may be the original Baize JSON ({topic, input} with "
        "[|Human|]/[|AI|] tags), Alpaca JSON (instruction/input/output) or chat JSONL (messages); "
        "output is chat JSONL (--to messages) or the original Baize JSON list (--to baize). Without --to, the "
        "output file's extension decides: .jsonl -> messages, .json -> baize.",
        epilog="example: baize convert quora_chat_data.json data/quora.jsonl --to messages",
    )
    parser.add_argument("src", help="input file (.json, .jsonl or .parquet)")
    parser.add_argument("dst", help="output file")
    parser.add_argument(
        "--to", choices=["messages", "baize"], help="output format (default: from the extension of dst)"
    )
    parser.add_argument(
        "--on_bad_row",
        choices=["error", "skip"],
        default="error",
        help="stop at the first malformed row (naming it), or skip such rows and report how many",
    )
    return parser


def main(args: argparse.Namespace) -> None:
    from baize.data.formats import convert_file

    if not Path(args.src).is_file():
        raise UsageError(f"{args.src}: no such file (relative to {Path.cwd()})")
    to = args.to or OUTPUT_FORMATS.get(Path(args.dst).suffix.lower())
    if to is None:
        raise UsageError(f"{args.dst}: cannot tell the output format from its extension: name a .jsonl or .json file, "
                         "or pass --to messages|baize")  # fmt: skip
    if to == "messages" and Path(args.dst).suffix.lower() == ".json" or to == "baize" and args.dst.endswith(".jsonl"):
        raise UsageError(f"{args.dst}: --to {to} writes {'chat JSONL' if to == 'messages' else 'a JSON list'}; "
                         f"name the file {'.jsonl' if to == 'messages' else '.json'}")  # fmt: skip
    report = convert_file(args.src, args.dst, to=to, on_bad_row=args.on_bad_row)
    print(f"wrote {args.dst}: {report.summary()}")


def cli(argv: list[str] | None = None) -> None:
    run_command("baize convert", build_parser, main, argv)


if __name__ == "__main__":
    cli(sys.argv[1:])
