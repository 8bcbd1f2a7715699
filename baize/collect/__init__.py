"""`baize collect`: Baize self-chat collection (seeds -> teacher LLM -> parsed, cleaned dialogues -> dataset).

    python -m baize.collect --config recipes/selfchat-quora/collect.yaml [--any_recipe_key value ...]

A teacher model behind any OpenAI-compatible endpoint chats with itself about each seed question, in one of
two modes: `transcript` (Baize v1: one call writes a `[Human]`/`[AI]` transcript) or `turns` (Baize v2: a
user-simulator call and a real chat call per round). `alpaca` converts instruction data without a teacher.
Every finished dialogue is appended to a journal before it counts, so re-running the same command resumes;
the outputs are `train.jsonl` (chat `messages` + provenance + usage), a dataset card, `report.json`, and
optionally `baize.json` (the original format) and a Hub dataset. See docs/collect.md.

Modules: `config` (the recipe keys), `seeds`, `teacher` (client, rate limits, usage/cost), `selfchat` (prompts,
modes, parsing, cleaning), `journal` (crash-safe resume), `output` (report, card, push), `run` (the loop).
"""

from __future__ import annotations

import sys

from baize.collect.config import CollectConfig, parse_args
from baize.io.errors import configure_logging, one_line_errors

__all__ = ["CollectConfig", "cli", "collect", "main", "parse_args"]


def collect(config: CollectConfig) -> dict:
    from baize.collect.run import collect as run_collect

    return run_collect(config)


def main(config: CollectConfig) -> dict:

    configure_logging()  # the client's per-request lines are off: the progress bar and the report count them
    report = collect(config)
    if "plan" in report:
        print(f"plan: {config.output_dir}/plan.json (nothing was sent)")
        return report
    print(f"report: {config.output_dir}/report.json (kept {report['kept']}, dropped {report['dropped_total']})")
    return report


def cli(argv: list[str] | None = None) -> None:

    with one_line_errors("baize collect"):
        main(parse_args(argv))


if __name__ == "__main__":
    cli(sys.argv[1:])
