"""A big collection's memory: resuming a 100,000-dialogue journal, writing its outputs, and a 1M-seed source.

    python benchmarks/bench_collect_resume.py [--dialogues 100000] [--seeds 1000000]

Writes a journal of --dialogues kept dialogues shaped like Baize's (4 exchanges of ~230 characters a turn,
~2.3 KB a line) plus its spend ledger into a temporary folder, then, in a fresh process each, measures time
and peak RSS of:
- the resume state `baize collect` reads (done seed ids, kept-dialogue hashes, what was spent); targets: under
  5 s and under 1 GB;
- the outputs written at the end of a run (report, train.jsonl, card) streamed from the journal, against
  loading every entry whole as earlier versions did;
- a .txt source of --seeds seeds streamed as `baize collect` reads it (two passes: count, then collect),
  against holding them as a list.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

MEASURE = """
import json, os, resource, sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
folder, what = Path({folder!r}), {what!r}
start = time.perf_counter()
if what == "state":
    from baize.collect.journal import JournalState
    count = len(JournalState.read(folder).done)
elif what == "whole":
    from baize.collect.journal import read_journals
    count = len(read_journals(folder))
elif what == "outputs":
    from baize.collect import CollectConfig
    from baize.collect.journal import iter_journals
    from baize.collect.output import build_report, write_outputs
    config = CollectConfig(mode="transcript", output_dir=str(folder), seeds_path="seeds.txt")
    report = build_report(iter_journals(folder), config, {{}}, {{}})
    write_outputs(iter_journals(folder), config, report)
    count = report["kept"]
else:
    from baize.collect import CollectConfig
    from baize.collect.seeds import load_seeds, seed_table, stream_seeds
    from baize.data.seeds import SeedStats
    config = CollectConfig(mode="transcript", seeds_path=str(folder / "seeds.txt"))
    if what == "seeds-list":
        count = len(load_seeds(config)[0])
    else:
        table, stats = seed_table(config), SeedStats()
        sum(1 for _ in stream_seeds(config, table, stats))
        count = sum(1 for _ in stream_seeds(config, table, SeedStats()))
elapsed = time.perf_counter() - start
print(json.dumps({{"seconds": elapsed, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   "entries": count}}))
"""


def write_journal(folder: Path, dialogues: int) -> int:
    turn = "This is a fairly typical sentence of a self-chat dialogue about a Quora question, " * 3
    with (folder / "journal.jsonl").open("w") as journal, (folder / "spend.jsonl").open("w") as ledger:
        for i in range(dialogues):
            messages = []
            for j in range(4):
                messages += [{"role": "user", "content": f"{i}.{j} {turn}"}, {"role": "assistant", "content": turn}]
            usage = {
                "calls": 1,
                "prompt_tokens": 150,
                "completion_tokens": 450,
                "total_tokens": 600,
                "cost_usd": 0.0003,
            }
            by_role = {key: usage[key] for key in ("calls", "prompt_tokens", "completion_tokens", "cost_usd")}
            entry = {"id": f"{i:016x}", "seed": f"Question {i}?", "source": "quora", "teacher": "gpt-4o-mini",
                     "mode": "transcript", "usage": usage, "usage_by_role": {"transcript": by_role}, "status": "kept",
                     "messages": messages, "stop": "end", "hash": f"{i:032x}"}  # fmt: skip
            journal.write(json.dumps(entry) + "\n")
            ledger.write(json.dumps({"call": i, "role": "teacher", "reserved_tokens": 2600}) + "\n")
            ledger.write(json.dumps({"call": i, "role": "teacher", "prompt_tokens": 150, "completion_tokens": 450,
                                     "cost_usd": 0.0003}) + "\n")  # fmt: skip
    return (folder / "journal.jsonl").stat().st_size


def write_seeds(folder: Path, seeds: int) -> None:
    with (folder / "seeds.txt").open("w") as f:
        for i in range(seeds):
            f.write(f"How do I learn topic number {i} well, and what should I read first?\n")


def measure(folder: Path, what: str) -> dict:
    code = MEASURE.format(repo=str(REPO), folder=str(folder), what=what)
    env = {**os.environ, "HF_DATASETS_CACHE": str(folder / "datasets-cache"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dialogues", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        size = write_journal(folder, args.dialogues)
        runs = {what: measure(folder, what) for what in ("state", "whole", "outputs")}
        write_seeds(folder, args.seeds)
        measure(folder, "seeds-stream")  # the first read converts the .txt to Arrow once (datasets' cache)
        runs.update({what: measure(folder, what) for what in ("seeds-stream", "seeds-list")})
    assert runs["state"]["entries"] == runs["whole"]["entries"] == runs["outputs"]["entries"] == args.dialogues
    assert runs["seeds-stream"]["entries"] == runs["seeds-list"]["entries"] == args.seeds
    rows = {
        "state": "resume state (done ids, kept hashes, spend)",
        "whole": "every entry loaded whole (outputs before)",
        "outputs": "report + train.jsonl + card, streamed (outputs now)",
        "seeds-stream": f"{args.seeds:,} seeds streamed, counted then collected (now)",
        "seeds-list": f"{args.seeds:,} seeds held as a list (before)",
    }
    print(f"\nA journal of {args.dialogues:,} kept dialogues ({size / 2**20:,.0f} MiB) + its spend ledger; a .txt "
          f"source of {args.seeds:,} seeds\n")  # fmt: skip
    print("| read | seconds | peak RSS (MB) |\n|---|---|---|")
    for what, label in rows.items():
        print(f"| {label} | {runs[what]['seconds']:.2f} | {runs[what]['peak_rss_mb']:,.0f} |")
    state = runs["state"]
    print(f"\nresume: {state['seconds']:.2f} s (target < 5 s), {state['peak_rss_mb']:,.0f} MB (target < 1,000 MB)")
    for name, now, before in (("outputs", "outputs", "whole"), ("seeds", "seeds-stream", "seeds-list")):
        ratio = runs[now]["peak_rss_mb"] / runs[before]["peak_rss_mb"]
        print(f"{name}: peak RSS streamed / held whole = {ratio:.2f}")


if __name__ == "__main__":
    main()
