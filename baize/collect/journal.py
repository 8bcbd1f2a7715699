"""The journal: one JSON line per finished seed (kept or dropped), appended durably, never twice.

A line is written with a single `os.write` on an `O_APPEND` descriptor and `fdatasync`ed before the
dialogue counts as done. A killed process therefore leaves only whole lines behind (the kernel finishes
a write system call), so a crash loses at most the dialogues in flight. Should a machine crash leave a
torn last line anyway, it is cut off when the journal is reopened and that seed is collected again.
Failed seeds (API errors after all retries) are not written, so the next run retries them.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from baize.collect.config import CollectConfig
from baize.collect.teacher import Usage

logger = logging.getLogger(__name__)

JOURNAL_GLOB = "journal*.jsonl"
_sync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


def journal_name(config: CollectConfig) -> str:
    if config.num_shards == 1:
        return "journal.jsonl"
    return f"journal-{config.shard_index:05d}-of-{config.num_shards:05d}.jsonl"


def read_journals(output_dir: Path) -> list[dict]:
    """Every entry of every shard's journal in `output_dir`, first occurrence of a seed id only."""
    entries, seen = [], set()
    for path in sorted(Path(output_dir).glob(JOURNAL_GLOB)):
        with path.open("rb") as f:
            lines = f.read().split(b"\n")
        # The last element is b"" for a complete file, or a torn line (another shard's file still being written).
        for number, line in enumerate(lines[:-1], 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: corrupt journal line ({error})") from None
            if entry["id"] not in seen:
                seen.add(entry["id"])
                entries.append(entry)
    return entries


@dataclass
class JournalState:
    """What the journals say has been done: the resume set, kept dialogues' hashes, and the money spent."""

    done: set[str] = field(default_factory=set)
    kept_hashes: set[str] = field(default_factory=set)
    spent: Usage = field(default_factory=Usage)

    @classmethod
    def from_entries(cls, entries: list[dict]) -> JournalState:
        state = cls()
        for entry in entries:
            state.done.add(entry["id"])
            if entry["status"] == "kept":
                state.kept_hashes.add(entry["hash"])
            state.spent.merge(Usage.from_by_role(entry.get("usage_by_role")))
        return state


class Journal:
    """This shard's journal file, open for appending."""

    def __init__(self, output_dir: Path, config: CollectConfig):
        self.path = Path(output_dir) / journal_name(config)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock()
        self._repair()

    def _lock(self) -> None:
        """Two collectors appending to one journal would collect seeds twice: the second one stops.
        The lock goes with the process, so a killed collector never leaves it behind."""
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks, run one collector per output dir
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise SystemExit(
                f"{self.path} is being written by another `baize collect`; wait for it or stop it"
            ) from None

    def _repair(self) -> None:
        """Cut a torn last line (left by a machine crash): its seed was not done."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with self.path.open("rb+") as f:
            data = f.read()
            if data.endswith(b"\n"):
                return
            keep = data.rfind(b"\n") + 1
            logger.warning(
                "%s: removing a torn last line (%d bytes); that seed will be collected again",
                self.path,
                len(data) - keep,
            )
            f.truncate(keep)
            os.fsync(f.fileno())

    def append(self, entry: dict) -> None:
        line = (json.dumps(entry, ensure_ascii=False) + "\n").encode()
        written = os.write(self._fd, line)
        while written < len(line):  # a short write is rare on regular files, but then finish the line
            written += os.write(self._fd, line[written:])
        _sync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
