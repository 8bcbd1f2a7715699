"""Resuming a big collection: the time and peak memory to read back what a 100,000-dialogue journal says is done.

    python benchmarks/bench_collect_resume.py [--dialogues 100000]

Writes a journal of --dialogues kept dialogues shaped like Baize's (4 exchanges of ~230 characters a turn,
~2.3 KB a line) plus its spend ledger into a temporary folder, then, in a fresh process each, reads it back
as `baize collect` does when it resumes: the resume state (done seed ids, kept-dialogue hashes, what was
spent). Targets: under 5 s and under 1 GB peak RSS. For comparison it also times loading every entry whole
(what writing the outputs at the end of a run does).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

MEASURE = """
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
from baize.collect.journal import JournalState, read_journals, read_ledgers
folder = Path({folder!r})
start = time.perf_counter()
if {whole!r}:
    entries = read_journals(folder)
    count = len(entries)
else:
    state = JournalState.read(folder)
    count = len(state.done)
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
            entry = {"id": f"{i:016x}", "seed": f"Question {i}?", "source": "quora", "teacher": "gpt-4o-mini",
                     "mode": "transcript", "usage": usage, "usage_by_role": {"teacher": usage}, "status": "kept",
                     "messages": messages, "stop": "end", "hash": f"{i:032x}"}  # fmt: skip
            journal.write(json.dumps(entry) + "\n")
            ledger.write(json.dumps({"call": i, "role": "teacher", "reserved_tokens": 2600}) + "\n")
            ledger.write(json.dumps({"call": i, "role": "teacher", "prompt_tokens": 150, "completion_tokens": 450,
                                     "cost_usd": 0.0003}) + "\n")  # fmt: skip
    return (folder / "journal.jsonl").stat().st_size


def measure(folder: Path, whole: bool) -> dict:
    code = MEASURE.format(repo=str(REPO), folder=str(folder), whole=whole)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dialogues", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        size = write_journal(folder, args.dialogues)
        state = measure(folder, whole=False)
        whole = measure(folder, whole=True)
    assert state["entries"] == whole["entries"] == args.dialogues
    print(f"\nResuming a journal of {args.dialogues:,} kept dialogues ({size / 2**20:,.0f} MiB) + its spend ledger\n")
    print("| read | seconds | peak RSS (MB) |\n|---|---|---|")
    print(f"| resume state (done ids, kept hashes, spend) | {state['seconds']:.2f} | {state['peak_rss_mb']:,.0f} |")
    print(f"| every entry whole (outputs at the end) | {whole['seconds']:.2f} | {whole['peak_rss_mb']:,.0f} |")
    print(f"\nresume: {state['seconds']:.2f} s (target < 5 s), {state['peak_rss_mb']:,.0f} MB (target < 1,000 MB)")


if __name__ == "__main__":
    main()
