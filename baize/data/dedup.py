"""Near-duplicate detection: MinHash LSH (the `rensa` library: Rust, ~40x faster than datasketch here, see
benchmarks/bench_dedup.py) over word shingles, with every candidate the index returns checked against the
threshold by its estimated Jaccard similarity. Deterministic: the first text of a cluster, in the order texts are
offered, is kept and the later ones are its near-duplicates.

Defaults, and why (measured by benchmarks/bench_dedup.py on planted paraphrases): shingles of 3 words within each
turn (reordered turns are the same set; two dialogues about different topics share almost none), Jaccard 0.5: a
paraphrase replacing one word in twenty and swapping two sentences keeps ~0.7 of its shingles, one replacing a
word in ten ~0.55, and at 0.5 the benchmark finds 0.99 resp. 0.77 of them with no false pair (0.7, or 5-word
shingles as common for web documents, find 0.73 resp. 0.13). 128 permutations in 32 bands of 4: an S-curve that
brings pairs from ~0.4 up to the exact Jaccard check.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

DEFAULT_THRESHOLD = 0.5
DEFAULT_SHINGLE_SIZE = 3
NUM_PERM, NUM_BANDS, SEED = 128, 32, 42

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """Lower-cased words, punctuation and spacing dropped: what counts as the same text."""
    return _WORD.findall(text.casefold())


def shingles(text: str, size: int = DEFAULT_SHINGLE_SIZE) -> list[str]:
    """Overlapping runs of `size` words within each line (a dialogue's turns are its lines: reordering them does
    not change the set); a line shorter than that is one shingle."""
    found: set[str] = set()
    for line in text.splitlines() or [text]:
        tokens = words(line)
        if 0 < len(tokens) <= size:
            found.add(" ".join(tokens))
        found.update(" ".join(tokens[i : i + size]) for i in range(len(tokens) - size + 1))
    return sorted(found)


def dialogue_text(messages: list[dict], over: str = "dialogue") -> str:
    """The text compared: every turn (`dialogue`), or only the human turns (`human_turns`)."""
    roles = ("user",) if over == "human_turns" else ("user", "assistant")
    return "\n".join(m["content"] for m in messages if m["role"] in roles)


class NearDuplicates:
    """An index of the texts kept so far. `check(key, text)` returns the key of a kept near-duplicate (and does
    not add the text), or None after adding it."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, shingle_size: int = DEFAULT_SHINGLE_SIZE):
        from rensa import RMinHashLSH

        if not 0 < threshold <= 1:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
        if shingle_size < 1:
            raise ValueError(f"shingle size must be >= 1, got {shingle_size}")
        self.threshold, self.shingle_size = threshold, shingle_size
        self.index = RMinHashLSH(threshold=threshold, num_perm=NUM_PERM, num_bands=NUM_BANDS)
        self.sketches: dict[int, object] = {}
        self.keys: list[str] = []

    def sketch(self, text: str):
        from rensa import RMinHash

        sketch = RMinHash(num_perm=NUM_PERM, seed=SEED)
        sketch.update(shingles(text, self.shingle_size) or [""])
        return sketch

    def find(self, text: str) -> str | None:
        """The key of a kept text this one near-duplicates, or None."""
        sketch = self.sketch(text)
        for candidate in sorted(self.index.query(sketch)):
            if sketch.jaccard(self.sketches[candidate]) >= self.threshold:
                return self.keys[candidate]
        return None

    def add(self, key: str, text: str) -> None:
        number = len(self.keys)
        sketch = self.sketch(text)
        self.index.insert(number, sketch)
        self.sketches[number] = sketch
        self.keys.append(key)

    def check(self, key: str, text: str) -> str | None:
        match = self.find(text)
        if match is None:
            self.add(key, text)
        return match


def near_duplicate_clusters(
    items: Iterable[tuple[str, str]], threshold: float = DEFAULT_THRESHOLD, shingle_size: int = DEFAULT_SHINGLE_SIZE
) -> dict[str, str]:
    """{key of a dropped text: key of the kept text it near-duplicates} over (key, text) pairs, in their order."""
    index = NearDuplicates(threshold, shingle_size)
    dropped = {}
    for key, text in items:
        match = index.check(key, text)
        if match is not None:
            dropped[key] = match
    return dropped
