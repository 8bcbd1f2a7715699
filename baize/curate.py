"""`baize data`: check a dataset a recipe trains on before training on it.

    baize data dedup data/quora.jsonl -o data/quora.dedup.jsonl                   # near-duplicates (MinHash LSH)
    baize data dedup quora_chat_data.json -o quora.jsonl --over human_turns --threshold 0.7
    baize data decontaminate data/quora.jsonl -o data/quora.clean.jsonl --against project mt_bench

Any file a recipe trains on: chat JSONL (`messages`), the original Baize JSON (`[{topic, input}]`) or Alpaca JSON.
The output is chat JSONL of the rows kept, in their order; a report beside it (`OUTPUT.report.json`) lists every
row dropped, its reason and the row it near-duplicates or the eval sets it overlaps (1-based rows).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from baize.data.decontaminate import Contamination
from baize.data.dedup import DEFAULT_SHINGLE_SIZE, DEFAULT_THRESHOLD, dialogue_text, near_duplicate_clusters
from baize.io.arguments import StageParser
from baize.io.errors import UsageError, configure_logging, run_command
from baize.io.jsonl import write_jsonl_atomically, write_text_atomically


def read_chat_rows(path: str) -> list[dict]:
    import datasets

    from baize.data.formats import ConversionReport, to_chat_dataset

    source = Path(path)
    builder = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}.get(source.suffix)
    if not source.is_file():
        raise UsageError(f"{path}: no such file (relative to {Path.cwd()})")
    if builder is None:
        raise UsageError(f"{path}: unsupported file type {source.suffix!r} (use .json, .jsonl or .parquet)")
    raw = datasets.load_dataset(builder, data_files=str(source), split="train")
    return list(to_chat_dataset(raw, str(source), "error", ConversionReport()))


def write_result(output: str, rows: list[dict], dropped: list[dict], summary: dict) -> None:
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl_atomically(out, rows)
    report = out.with_name(out.name + ".report.json")
    write_text_atomically(report, json.dumps({**summary, "dropped": dropped}, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out}: kept {len(rows)}, dropped {len(dropped)} ({report})")


def dedup(args: argparse.Namespace) -> dict:
    rows = read_chat_rows(args.input)
    items = [(str(number), dialogue_text(row["messages"], args.over)) for number, row in enumerate(rows, 1)]
    clusters = near_duplicate_clusters(items, args.threshold, args.shingle_size)
    kept = [row for number, row in enumerate(rows, 1) if str(number) not in clusters]
    dropped = [{"row": int(row), "reason": "near_duplicate", "of_row": int(of)} for row, of in clusters.items()]
    summary = {"input": args.input, "rows": len(rows), "kept": len(kept), "near_duplicate": len(dropped),
               "threshold": args.threshold, "shingle_size": args.shingle_size, "over": args.over}  # fmt: skip
    write_result(args.output, kept, dropped, summary)
    return summary


def decontaminate(args: argparse.Namespace) -> dict:
    rows = read_chat_rows(args.input)
    contamination = Contamination(args.against)
    kept, dropped, by_set = [], [], {name: 0 for name in args.against}
    for number, row in enumerate(rows, 1):
        sets = contamination.match(dialogue_text(row["messages"]))
        if sets:
            dropped.append({"row": number, "reason": "contaminated", "eval_sets": sorted(sets)})
            for name in sets:
                by_set[name] += 1
        else:
            kept.append(row)
    if rows and len(dropped) / len(rows) > args.max_fraction:
        raise UsageError(
            f"{args.input}: {len(dropped)} of {len(rows)} rows overlap {args.against} (over --max_fraction "
            f"{args.max_fraction}): check the eval sets named; nothing was written"
        )
    summary = {"input": args.input, "rows": len(rows), "kept": len(kept), "contaminated": len(dropped),
               "by_eval_set": by_set, "ngram": contamination.n}  # fmt: skip
    write_result(args.output, kept, dropped, summary)
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = StageParser("baize data", __doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{dedup,decontaminate}")
    near = commands.add_parser("dedup", help="drop near-duplicate dialogues (the first of a cluster is kept)",
                               description="Drop near-duplicate dialogues: MinHash LSH over word shingles "
                               "(baize.data.dedup); the first dialogue of a cluster is kept.")  # fmt: skip
    clean = commands.add_parser("decontaminate", help="drop dialogues that overlap evaluation sets",
                                description="Drop dialogues sharing an 8-word n-gram with an eval set's questions, "
                                "turns or references (baize.data.decontaminate).")  # fmt: skip
    for sub in (near, clean):
        sub.add_argument("input", help="chat JSONL, original Baize JSON or Alpaca JSON")
        sub.add_argument("-o", "--output", required=True, help="chat JSONL of the rows kept")
    near.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                      help="Jaccard similarity of word shingles at which two dialogues are near-duplicates")  # fmt: skip
    near.add_argument("--shingle_size", type=int, default=DEFAULT_SHINGLE_SIZE, help="words per shingle")
    near.add_argument("--over", choices=["dialogue", "human_turns"], default="dialogue", help="what is compared")
    clean.add_argument("--against", nargs="+", default=["project"],
                       help="eval sets: project (baize's own questions), mt_bench, or files")  # fmt: skip
    clean.add_argument("--max_fraction", type=float, default=0.5,
                       help="stop, writing nothing, when more than this share of the rows match")  # fmt: skip
    return parser


def main(args: argparse.Namespace) -> dict:
    configure_logging(timestamps=False)
    if args.command == "dedup" and not 0 < args.threshold <= 1:
        raise UsageError(f"--threshold must be in (0, 1], got {args.threshold}")
    return dedup(args) if args.command == "dedup" else decontaminate(args)


def cli(argv: list[str] | None = None) -> None:
    run_command("baize data", build_parser, main, argv)


if __name__ == "__main__":
    cli(sys.argv[1:])
