"""`baize pull REPO_ID`: download an adapter or model (and the base model an adapter names) into the HF cache, so
that `baize chat` and `baize merge` work offline later; prints the local folders."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from baize.hub import pull, redundant_weight_patterns
from baize.hub.ids import LEGACY_BASE_MODELS, is_repo_id
from baize.io.arguments import StageParser
from baize.io.errors import run_command


def build_parser():
    """`baize pull REPO_ID`: download an adapter/model (and the base model it names) into the HF cache."""
    import argparse

    parser = StageParser(
        formatter_class=argparse.HelpFormatter,
        prog="baize pull",
        description="Download an adapter or model repo into the Hugging Face cache (HF_HOME / HF_HUB_CACHE) so that "
        "`baize chat` and `baize merge` work offline later, and print its local folder. For an adapter, its "
        "base model (from adapter_config.json, or --base) is downloaded too.",
    )
    parser.add_argument("repo", help="Hub repo id (user/name) or local folder")
    parser.add_argument("--revision", help="branch, tag or commit (default: main)")
    parser.add_argument("--repo_type", choices=["model", "dataset"], default="model")
    parser.add_argument("--base", help="base model to fetch instead of the one adapter_config.json names")
    parser.add_argument("--no_base", action="store_true", help="only download the adapter itself")
    parser.add_argument("--include_checkpoints", action="store_true", help="also download checkpoint-*/ folders")
    return parser


def cli(argv: list[str] | None = None) -> None:
    run_command("baize pull", build_parser, main, argv)


def main(args) -> None:
    folder = pull(
        args.repo, revision=args.revision, repo_type=args.repo_type, include_checkpoints=args.include_checkpoints
    )
    print(folder)
    config_path = folder / "adapter_config.json"
    if args.repo_type == "model" and config_path.exists() and not args.no_base:
        base = args.base or json.loads(config_path.read_text()).get("base_model_name_or_path")
        base = LEGACY_BASE_MODELS.get(base, base)
        if base and not Path(base).exists() and is_repo_id(base):
            print(pull(base, ignore_patterns=redundant_weight_patterns(base)))


if __name__ == "__main__":
    cli(sys.argv[1:])
