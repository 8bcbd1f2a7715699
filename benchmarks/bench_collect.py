"""Collection throughput against a loopback OpenAI-compatible server with injected latency, measured in one run.

    python benchmarks/bench_collect.py [--latency 0.2] [--seconds 6] [--tpm 60000] [--repeats 3]

1. Clean run: 128 seeds at concurrency 16, every call `--latency` seconds at the server: the server's span
   (first request in to last answer out) against the ideal 128 / 16 x latency, `--repeats` times.
   Target: <= 1.10 x the ideal (the spend ledger and the journal sync off the event loop).
2. Concurrency: the same transcript-mode collection at concurrency 1 and 16, in the report's own figures
   (dialogues per minute). Reports the speed-up as a share of the ideal 16x. Target: >= 0.95.
3. Rate limit: the server enforces `--tpm` tokens per minute (429 + Retry-After above it, metered from the
   usage it reports). The collector runs at concurrency 16 with the same `tpm`, `--repeats` times, then once
   without it (relying on the client's Retry-After back-off alone). Reports the share of the budget used, the
   429s and the failed seeds. Target with the limiter: >= 0.90 of the budget, 0 429s, 0 failed, every repeat.

Everything runs on this machine (tests/openai_server.py in a thread, the real openai client, the real
journal and spend ledger with fdatasync). Ratios are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

ANSWER = (
    "[Human] Could you explain {seed} in simple words?\n"
    "[AI] Sure. {seed} is a topic with a short history, a few key ideas and many practical uses.\n"
    "[Human] What is the most important idea?\n"
    "[AI] The most important idea is to start small, measure what happens, and improve step by step."
)


def responder(request):
    from openai_server import Reply

    seed = request.prompt.split("topic '", 1)[1].split("'", 1)[0]
    return Reply(ANSWER.format(seed=seed))


def run(server, workdir: Path, name: str, seeds: int, expect_all: bool = True, **settings) -> dict:
    from baize.collect import CollectConfig, collect
    from baize.io.errors import EndpointError

    seed_file = workdir / f"{name}.txt"
    seed_file.write_text("".join(f"benchmark topic {name} {i}\n" for i in range(seeds)))
    config = CollectConfig(
        mode="transcript",
        seeds_path=str(seed_file),
        output_dir=str(workdir / name),
        base_url=server.base_url,
        teacher_model="bench-teacher",
        assistant_max_tokens=200,
        timeout=30,
        max_retries=8,
        **settings,
    )
    server.reset()
    try:
        report = collect(config)
    except EndpointError:  # seeds failed after every retry: the report counts them
        report = json.loads((workdir / name / "report.json").read_text())
    if expect_all:  # every dialogue made it: the rates are real work
        assert report["kept"] == seeds, report
    return report


def server_span(server) -> float:
    """First request in to last answer out, at the server."""
    return round(max(server.answered_at) - min(request.received_at for request in server.requests), 3)


async def bare_client(base_url: str, requests: int, concurrency: int) -> None:
    """The same calls from a bare `openai.AsyncOpenAI` with a semaphore: what the client library alone costs."""
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="bench")
    slots = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with slots:
            prompt = f"Write a conversation about the topic 'benchmark topic bare {i}'."
            await client.chat.completions.create(
                model="bench-teacher", messages=[{"role": "user", "content": prompt}], max_tokens=200
            )

    try:
        await asyncio.gather(*(one(i) for i in range(requests)))
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the server takes per call")
    parser.add_argument("--seconds", type=float, default=6.0, help="target length of each concurrency run")
    parser.add_argument("--tpm", type=int, default=60_000, help="tokens-per-minute limit of the rate-limit runs")
    parser.add_argument("--tpm-seconds", type=float, default=15.0, help="target length of each rate-limit run")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the clean and the rate-limited scenarios")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("baize.collect").setLevel(logging.ERROR)  # the no-limiter run fails seeds on purpose

    from openai_server import OpenAIServer

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-collect-") as tmp, OpenAIServer(responder) as server:
        workdir = Path(tmp)
        server.latency = args.latency
        spans, bare_spans = [], []
        for repeat in range(args.repeats):
            run(server, workdir, f"clean{repeat}", 128, concurrency=16)
            spans.append(server_span(server))
            server.reset()
            asyncio.run(bare_client(server.base_url, 128, 16))
            bare_spans.append(server_span(server))
        ideal = 128 / 16 * args.latency
        results["clean"] = {
            "ideal_s": ideal,
            "server_span_s": spans,
            "ratio": [round(s / ideal, 3) for s in spans],
            "bare_client_span_s": bare_spans,
            "ratio_to_bare_client": [round(s / b, 3) for s, b in zip(spans, bare_spans, strict=True)],
        }

        per_run = max(4, int(args.seconds / args.latency))
        sequential = run(server, workdir, "c1", per_run, concurrency=1)
        parallel = run(server, workdir, "c16", 16 * per_run, concurrency=16)
        rate_1 = sequential["this_run"]["dialogues_per_minute"]
        rate_16 = parallel["this_run"]["dialogues_per_minute"]
        results["concurrency"] = {
            "latency_s": args.latency,
            "dialogues_per_minute_c1": rate_1,
            "dialogues_per_minute_c16": rate_16,
            "speedup": round(rate_16 / rate_1, 2),
            "share_of_ideal_16x": round(rate_16 / (16 * rate_1), 3),
        }

        # One dialogue is one call of ~150 tokens (server-side word counts): size the runs to ~tpm_seconds.
        tokens_per_dialogue = sequential["tokens"]["total"] / sequential["kept"]
        seeds = int(args.tpm / 60 * args.tpm_seconds / tokens_per_dialogue)
        server_limited = OpenAIServer(responder, latency=args.latency, tpm=args.tpm)
        with server_limited:
            runs = [(f"with_limiter_{repeat}", args.tpm) for repeat in range(args.repeats)]
            for label, tpm in [*runs, ("without_limiter", None)]:
                report = run(server_limited, workdir, f"tpm-{label}", seeds, expect_all=False, concurrency=16, tpm=tpm)
                elapsed = report["this_run"]["elapsed_s"]
                results[f"tpm_{label}"] = {
                    "tpm_limit": args.tpm,
                    "tokens_served": server_limited.tokens_served,
                    "elapsed_s": elapsed,
                    "budget_used": round(server_limited.tokens_served / (args.tpm / 60 * elapsed), 3),
                    "responses_429": server_limited.statuses[429],
                    "requests": len(server_limited.requests),
                    "failed_dialogues": report["failed_this_run"],
                    "dialogues_per_minute": report["this_run"]["dialogues_per_minute"],
                }

    c = results["clean"]
    print(f"\nclean run: 128 seeds, concurrency 16, {args.latency} s per call: ideal {c['ideal_s']:.2f} s")
    print(f"  server span {c['server_span_s']} s = {c['ratio']} x the ideal (target <= 1.10)")
    print(
        f"  a bare openai.AsyncOpenAI loop, same calls: {c['bare_client_span_s']} s; baize / bare client = "
        f"{c['ratio_to_bare_client']} (what baize adds to the client it wraps)"
    )
    c = results["concurrency"]
    print(f"latency {c['latency_s']} s per call, transcript mode (1 call per dialogue), the report's figures")
    print(f"  concurrency  1: {c['dialogues_per_minute_c1']:8.1f} dialogues/min")
    print(f"  concurrency 16: {c['dialogues_per_minute_c16']:8.1f} dialogues/min")
    print(f"  speed-up {c['speedup']}x = {c['share_of_ideal_16x']:.3f} of the ideal 16x (target >= 0.95)")
    for label in [*(f"with_limiter_{repeat}" for repeat in range(args.repeats)), "without_limiter"]:
        r = results[f"tpm_{label}"]
        print(
            f"server TPM limit {r['tpm_limit']:,}, collector {label.replace('_', ' ')}: "
            f"budget used {r['budget_used']:.3f} (target >= 0.90 with the limiter), "
            f"429s {r['responses_429']} of {r['requests']} requests, "
            f"{r['failed_dialogues']} dialogues failed after all retries, {r['elapsed_s']} s"
        )
    return results


if __name__ == "__main__":
    main()
