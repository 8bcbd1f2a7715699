"""A plan before paying against what the run then spent: `baize collect --plan true` on the loopback teacher.

    python benchmarks/bench_plan.py [--first 20] [--then 200]

Collects `--first` seeds in `turns` mode, plans the next `--then` from them (the measured basis), collects them,
and prints the run's requests, tokens and cost over the plan's. Target: within 15 %. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--first", type=int, default=20)
    parser.add_argument("--then", type=int, default=200)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from openai_server import OpenAIServer
    from test_collect import turns_responder

    from baize.collect import CollectConfig, collect

    prices = {"bench-teacher": {"prompt": 0.15, "completion": 0.60}}
    with tempfile.TemporaryDirectory() as tmp, OpenAIServer(turns_responder) as server:
        seeds = Path(tmp) / "seeds.txt"

        def config(count: int, **extra) -> CollectConfig:
            seeds.write_text("".join(f"long seed {i}\n" for i in range(count)))
            return CollectConfig(mode="turns", max_rounds=3, seeds_path=str(seeds), output_dir=f"{tmp}/out",
                                 base_url=server.base_url, teacher_model="bench-teacher", prices=prices,
                                 concurrency=8, **extra)  # fmt: skip

        collect(config(args.first))
        plan = collect(config(args.first + args.then, plan=True))["plan"]
        billed_before = collect(config(args.first))["billed"]
        report = collect(config(args.first + args.then))
    spent = {
        "requests": report["billed"]["calls"] - billed_before["calls"],
        "tokens": report["billed"]["total_tokens"] - billed_before["total_tokens"],
        "cost": report["billed"]["cost_usd"] - billed_before["cost_usd"],
    }
    planned = {"requests": plan["requests"], "tokens": plan["prompt_tokens"] + plan["completion_tokens"],
               "cost": plan["cost_usd_live"]}  # fmt: skip
    ratios = {key: round(spent[key] / planned[key], 3) for key in planned}
    print(f"plan from {args.first} dialogues for {args.then} more (turns mode, 3 rounds): actual / planned = "
          f"requests {ratios['requests']}, tokens {ratios['tokens']}, cost {ratios['cost']} (target within 0.85-1.15)")  # fmt: skip
    return ratios


if __name__ == "__main__":
    main()
