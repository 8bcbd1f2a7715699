"""Collection under a provider's TPM limit on a busy machine, measured in one run.

    python benchmarks/bench_collect_load.py [--tpm 60000] [--seconds 15] [--repeats 10] [--quiet-repeats 3]

A loopback server (tests/openai_server.py, in this process) enforces `--tpm` tokens per minute as a provider does
(each request reserves its prompt + max_tokens, the usage settles it; 429 + Retry-After above it). The collector
runs 128-style transcript collections at concurrency 16 with the same `tpm`:
- `--quiet-repeats` times on a quiet machine: the share of the limit used (target >= 0.90);
- `--repeats` times while two processes keep both cores busy and a third writes to the output's disk, calling
  fsync after every megabyte (the spend ledger's and the journal's syncs wait behind it), as on a shared machine.
  Target: 0 429s and 0 failed seeds in every run.
Ratios and counts are printed, never asserted.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "benchmarks"), str(REPO / "tests")]
os.environ.setdefault("TQDM_DISABLE", "1")


def burn(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def write_and_sync(folder: str, stop) -> None:
    """A disk writer that syncs every megabyte: the slow fsync every durable append then waits behind."""
    block = os.urandom(1 << 20)
    path = Path(folder) / "disk-writer.bin"
    with path.open("wb") as f:
        written = 0
        while not stop.is_set():
            f.write(block)
            f.flush()
            os.fsync(f.fileno())
            written += 1
            if written % 64 == 0:  # keep the file small: rewrite it from the start
                f.seek(0)
    path.unlink(missing_ok=True)


class Load:
    """Two CPU burners and a syncing disk writer while the block runs."""

    def __init__(self, folder: Path):
        self.stop = multiprocessing.Event()
        self.processes = [multiprocessing.Process(target=burn, args=(self.stop,)) for _ in range(2)]
        self.processes.append(multiprocessing.Process(target=write_and_sync, args=(str(folder), self.stop)))

    def __enter__(self):
        for process in self.processes:
            process.start()
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for process in self.processes:
            process.join(timeout=10)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tpm", type=int, default=60_000, help="tokens-per-minute limit of the server")
    parser.add_argument("--seconds", type=float, default=15.0, help="target length of each run at the limit")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the server takes per call")
    parser.add_argument("--repeats", type=int, default=10, help="runs on the busy machine")
    parser.add_argument("--quiet-repeats", type=int, default=3, help="runs on the quiet machine")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("baize.collect").setLevel(logging.ERROR)

    from bench_collect import responder, run
    from openai_server import OpenAIServer

    results = {"quiet": [], "busy": []}
    with tempfile.TemporaryDirectory(prefix="bench-collect-load-", dir=REPO) as tmp:
        workdir = Path(tmp)
        # one dialogue is one call of ~150 tokens (server-side word counts): size the runs to ~`seconds`
        seeds = int(args.tpm / 60 * args.seconds / 150)
        with OpenAIServer(responder, latency=args.latency, tpm=args.tpm) as server:
            plan = [("quiet", i) for i in range(args.quiet_repeats)] + [("busy", i) for i in range(args.repeats)]
            for kind, repeat in plan:
                name = f"{kind}{repeat}"
                if kind == "busy":
                    with Load(workdir):
                        report = run(server, workdir, name, seeds, expect_all=False, concurrency=16, tpm=args.tpm)
                else:
                    report = run(server, workdir, name, seeds, expect_all=False, concurrency=16, tpm=args.tpm)
                elapsed = report["this_run"]["elapsed_s"]
                row = {
                    "budget_used": round(server.tokens_served / (args.tpm / 60 * elapsed), 3),
                    "responses_429": server.statuses[429],
                    "failed_seeds": report["failed_this_run"],
                    "kept": report["kept"],
                    "elapsed_s": elapsed,
                }
                results[kind].append(row)
                print(f"{name}: {row}", flush=True)
    for kind in ("quiet", "busy"):
        rows = results[kind]
        if not rows:
            continue
        clean = sum(r["responses_429"] == 0 and r["failed_seeds"] == 0 for r in rows)
        used = [r["budget_used"] for r in rows]
        print(
            f"{kind}: {clean} of {len(rows)} runs with 0 429s and 0 failed seeds; 429s per run "
            f"{[r['responses_429'] for r in rows]}, failed {[r['failed_seeds'] for r in rows]}; share of the TPM "
            f"limit used {min(used):.3f}-{max(used):.3f} (target >= 0.90 quiet)"
        )
    return results


if __name__ == "__main__":
    main()
