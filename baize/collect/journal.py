"""The journal: one JSON line per finished seed (kept or dropped), appended durably, never twice.

Appends go through `baize.io.jsonl.GroupCommitAppender` (a writer thread: one write + fdatasync per group of lines,
never on the event loop; a torn last line cut on reopening; one writer at a time), and a dialogue counts as done
only once its line is on disk. Failed seeds (API errors after all retries) are not written, so the next run retries them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from baize.collect.config import CollectConfig
from baize.data.dedup import NearDuplicates, dialogue_text
from baize.io.errors import UsageError
from baize.io.jsonl import GroupCommitAppender, iter_jsonl
from baize.llm.prices import RoleUsage, Usage

logger = logging.getLogger(__name__)

JOURNAL_GLOB = "journal*.jsonl"
LEDGER_GLOB = "spend*.jsonl"


def journal_name(config: CollectConfig, stem: str = "journal") -> str:
    if config.num_shards == 1:
        return f"{stem}.jsonl"
    return f"{stem}-{config.shard_index:05d}-of-{config.num_shards:05d}.jsonl"


def read_ledger_calls(output_dir: Path) -> dict[str, dict]:
    """Every call of the ledgers, its reservation and settlement lines merged (a settled call has `prompt_tokens`)."""
    calls: dict[str, dict] = {}
    for path in sorted(Path(output_dir).glob(LEDGER_GLOB)):
        for entry in iter_jsonl(path):  # a torn last line (a kill mid-write) is ignored
            calls.setdefault(entry["call"], {}).update(entry)
    return calls


def read_ledgers(output_dir: Path) -> Usage:
    """Everything the endpoint may have billed this output dir, by role: every settled call at its usage, and every
    call that was sent but never settled (the process was killed while it ran) at its reservation, so that
    max_tokens / max_cost hold across kills and restarts."""
    spent = Usage()
    for call in read_ledger_calls(output_dir).values():
        if "prompt_tokens" in call:  # settled
            usage = RoleUsage(1, call["prompt_tokens"], call["completion_tokens"], call.get("cost_usd", 0.0))
        else:
            usage = RoleUsage(1, call["reserved_tokens"], 0, call.get("reserved_cost_usd", 0.0))
        spent.add(call["role"], usage)
    return spent


def read_journals(output_dir: Path) -> list[dict]:
    """Every entry of every shard's journal in `output_dir`, first occurrence of a seed id only."""
    return list(iter_journals(output_dir))


def iter_journals(output_dir: Path):
    """The entries of read_journals one at a time, read line by line."""
    seen = set()
    for path in sorted(Path(output_dir).glob(JOURNAL_GLOB)):
        with path.open("rb") as f:
            for number, line in enumerate(f, 1):
                # A line without its newline is torn (another shard's file still being written): not an entry yet.
                if not line.endswith(b"\n") or not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError as error:
                    raise UsageError(f"{path}:{number}: corrupt journal line ({error})") from None
                if entry["id"] not in seen:
                    seen.add(entry["id"])
                    yield entry


@dataclass
class JournalState:
    """What the output dir says has been done: the resume set and kept dialogues' hashes (journals), and what the
    endpoint may have billed (ledgers)."""

    done: set[str] = field(default_factory=set)
    kept_hashes: set[str] = field(default_factory=set)
    spent: Usage = field(default_factory=Usage)

    @classmethod
    def read(cls, output_dir: Path) -> JournalState:
        """The state of `output_dir` read line by line, keeping only ids and hashes: resuming a 100,000-dialogue
        collection does not hold its dialogues in memory (benchmarks/bench_collect_resume.py)."""
        state = cls(spent=read_ledgers(output_dir))
        for entry in iter_journals(output_dir):
            state.done.add(entry["id"])
            if entry["status"] == "kept":
                state.kept_hashes.add(entry["hash"])
        return state


class Ledger(GroupCommitAppender):
    """This shard's spend ledger: a line when a call is sent (its reservation, on disk before the request
    leaves), a line when it is settled (written with the next group: a kill before that leaves the call counted
    at its reservation)."""

    def __init__(self, output_dir: Path, config: CollectConfig):
        super().__init__(Path(output_dir) / journal_name(config, "spend"), writer="`baize collect`")


class Journal(GroupCommitAppender):
    """This shard's journal file, open for appending (by one collector at a time)."""

    def __init__(self, output_dir: Path, config: CollectConfig):
        super().__init__(Path(output_dir) / journal_name(config), writer="`baize collect`")


def kept_index(output_dir: Path, config: CollectConfig) -> NearDuplicates:
    """The near-duplicate index of every dialogue kept so far (a resumed run compares new ones with them too)."""
    index = NearDuplicates(config.near_duplicate_threshold)
    for entry in iter_journals(output_dir):
        if entry["status"] == "kept":
            index.add(entry["id"], dialogue_text(entry["messages"], config.near_duplicate_over))
    return index
