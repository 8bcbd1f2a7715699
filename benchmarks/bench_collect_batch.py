"""Collection cost per 1,000 dialogues: live calls vs the OpenAI Batch API (target: about 0.5).

    python benchmarks/bench_collect_batch.py [--seeds 200] [--mode turns]

Both runs collect the same seeds from the loopback OpenAI server (tests/openai_server.py), once with live chat
completions and once with `batch: true` (/v1/files + /v1/batches, polled). The tokens are the server's usage,
counted by the server itself; the price is gpt-4o-mini's list price, live $0.15 / $0.60 and batch $0.075 / $0.30
per 1M prompt / completion tokens. The ratio checks that a batch run asks for the same tokens (same dialogues,
no request paid twice) and that baize's report charges the batch price.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PRICES = {"gpt-4o-mini": {"prompt": 0.15, "completion": 0.6, "batch_prompt": 0.075, "batch_completion": 0.3}}
TOPIC = re.compile(r"topic '([^']*)'")


def responder(request):
    """A teacher that writes a two-exchange transcript, or in turns mode one question / one answer per call."""
    from openai_server import Reply

    seed = (TOPIC.search(request.prompt) or [None, "it"])[1]
    if "[Human]" in request.prompt and "Write the next statement of the human" in request.prompt:
        rounds = request.prompt.count("\n[AI] ") - 1
        return Reply("[END]" if rounds >= 3 else f"[Human] Question {rounds + 1} about {seed}, and why?")
    if "Complete the transcript" in request.prompt:
        return Reply(f"[Human] What is {seed}?\n[AI] {seed} is a topic worth a detailed answer.\n"
                     f"[Human] Why?\n[AI] Because {seed} matters to many people in many ways.")  # fmt: skip
    return Reply(f"Here is a helpful and detailed answer to: {request.last_user}")


def collect_once(server, folder: Path, seeds: Path, mode: str, batch: bool) -> tuple[dict, int]:
    from baize.collect import CollectConfig, collect

    server.reset()
    served_before = server.tokens_served
    config = CollectConfig(
        mode=mode, seeds_path=str(seeds), output_dir=str(folder / ("batch" if batch else "live")),
        base_url=server.base_url, teacher_model="gpt-4o-mini", api_key_env="BAIZE_BENCH_NO_KEY", prices=PRICES,
        max_rounds=4, concurrency=16, batch=batch, batch_poll_interval=0.05,
    )  # fmt: skip
    report = collect(config)
    return report, server.tokens_served - served_before


def main() -> None:
    from openai_server import OpenAIServer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--mode", choices=["transcript", "turns"], default="turns")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as folder, OpenAIServer(responder) as server:
        seeds = Path(folder) / "seeds.txt"
        seeds.write_text("".join(f"topic {i}\n" for i in range(args.seeds)))
        runs = {batch: collect_once(server, Path(folder), seeds, args.mode, batch) for batch in (False, True)}
    print(f"collection cost, {args.seeds} seeds, {args.mode} mode, gpt-4o-mini prices, loopback server usage:")
    per_1000 = {}
    for batch, (report, served) in runs.items():
        kept = report["kept"]
        assert kept == args.seeds and report["tokens"]["total"] == served, (report["tokens"], served)
        per_1000[batch] = report["cost_usd"] / kept * 1000
        extra = f", {report['this_run']['batch']['batches']} batches" if batch else ""
        print(f"  {'batch' if batch else 'live ':5}: {kept} dialogues, {report['tokens']['calls']:,} calls, "
              f"{served:,} tokens served{extra}, ${per_1000[batch]:.4f} per 1,000 dialogues")  # fmt: skip
    print(f"  batch / live cost per 1,000 dialogues: {per_1000[True] / per_1000[False]:.3f} (target about 0.5)")


if __name__ == "__main__":
    main()
