"""Near-duplicate removal at scale (baize.data.dedup): recall and precision on planted paraphrases, speed, memory.

    python benchmarks/bench_dedup.py [--dialogues 100000] [--planted 2000] [--compare 10000]

Synthetic dialogues (two exchanges, ~90 words, drawn from a 20,000-word vocabulary with a few shared
self-chat phrases) and, for `--planted` of them, a paraphrase: `--edit_rate` of the words replaced (5 %: a word
in every sentence or two) and the order of two sentences swapped. Reports the share of planted pairs found (recall) and of the pairs found that were
planted (precision) at the default threshold, dialogues per second and the peak RSS; then the MinHash libraries
side by side on `--compare` dialogues (rensa, which baize uses, and datasketch) with the same shingles.
Targets: recall >= 0.95, precision >= 0.99, peak memory < 2 GB. Ratios are printed, never asserted.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baize.data.dedup import DEFAULT_SHINGLE_SIZE, DEFAULT_THRESHOLD, NUM_PERM, NearDuplicates, shingles  # noqa: E402

PHRASES = ["Could you explain", "in simple words", "The most important idea is", "step by step", "Thank you"]


def sentence(rng: random.Random, vocabulary: list[str], length: int) -> str:
    return " ".join(rng.choices(vocabulary, k=length)).capitalize() + "."


def dialogue(rng: random.Random, vocabulary: list[str]) -> list[str]:
    return [f"{rng.choice(PHRASES)} {sentence(rng, vocabulary, rng.randint(12, 20))}" for _ in range(5)]


def paraphrase(rng: random.Random, vocabulary: list[str], sentences: list[str], rate: float) -> list[str]:
    edited = []
    for text in sentences:
        words = text.split()
        for i in range(len(words)):
            if rng.random() < rate:
                words[i] = rng.choice(vocabulary)
        edited.append(" ".join(words))
    i = rng.randrange(len(edited) - 1)
    edited[i], edited[i + 1] = edited[i + 1], edited[i]
    return edited


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dialogues", type=int, default=100_000)
    parser.add_argument("--planted", type=int, default=2_000)
    parser.add_argument("--compare", type=int, default=10_000)
    parser.add_argument("--edit_rate", type=float, default=0.05, help="share of a paraphrase's words replaced")
    args = parser.parse_args(argv)
    rng = random.Random(0)
    vocabulary = [f"w{i:05d}" for i in range(20_000)]
    texts, planted = [], set()
    originals = rng.sample(range(args.dialogues - args.planted), args.planted)
    for _ in range(args.dialogues - args.planted):
        texts.append(dialogue(rng, vocabulary))
    for original in originals:
        planted.add((original, len(texts)))
        texts.append(paraphrase(rng, vocabulary, texts[original], args.edit_rate))
    joined = ["\n".join(t) for t in texts]

    start = time.perf_counter()
    index = NearDuplicates(DEFAULT_THRESHOLD, DEFAULT_SHINGLE_SIZE)
    found = set()
    for number, text in enumerate(joined):
        match = index.check(str(number), text)
        if match is not None:
            found.add((int(match), number))
    elapsed = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    recall = len(found & planted) / len(planted)
    precision = len(found & planted) / len(found) if found else 1.0
    print(f"{args.dialogues:,} dialogues, {args.planted:,} planted paraphrases ({args.edit_rate:.0%} of words replaced, two sentences swapped), threshold {DEFAULT_THRESHOLD}, "
          f"{DEFAULT_SHINGLE_SIZE}-word shingles, {NUM_PERM} permutations")  # fmt: skip
    print(f"  recall {recall:.3f} (target >= 0.95), precision {precision:.3f} (target >= 0.99)")
    print(
        f"  {args.dialogues / elapsed:,.0f} dialogues/s ({elapsed:.1f} s), peak RSS {peak_mb:,.0f} MB (target < 2,000)"
    )

    sample = [shingles(text) for text in joined[: args.compare]]
    timings = {}
    start = time.perf_counter()
    from rensa import RMinHash

    for words in sample:
        RMinHash(num_perm=NUM_PERM, seed=42).update(words)
    timings["rensa"] = time.perf_counter() - start
    from datasketch import MinHash

    start = time.perf_counter()
    for words in sample:
        MinHash(num_perm=NUM_PERM, seed=42).update_batch([w.encode() for w in words])
    timings["datasketch"] = time.perf_counter() - start
    print(f"  MinHash of {args.compare:,} dialogues: rensa {timings['rensa']:.2f} s, datasketch "
          f"{timings['datasketch']:.2f} s: datasketch / rensa = {timings['datasketch'] / timings['rensa']:.1f}x")  # fmt: skip
    return {"recall": recall, "precision": precision, "dialogues_per_s": args.dialogues / elapsed, "peak_mb": peak_mb,
            **{f"minhash_s_{k}": v for k, v in timings.items()}}  # fmt: skip


if __name__ == "__main__":
    main()
