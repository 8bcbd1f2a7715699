"""Durable JSONL appends, shared by every resumable stage (collect's journal, SDF's step files).

A line is written with `os.write` on an `O_APPEND` descriptor and `fdatasync`ed before `append` returns,
so a killed process leaves only whole lines behind (the kernel finishes a write system call) and a crash
loses at most the records in flight. `GroupCommitAppender` does the same from a writer thread for code on an
event loop (collection's journal and spend ledger): the loop never waits for a sync. Should a machine crash leave a torn last line anyway, it is cut off
when the file is reopened, and that record is redone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from concurrent.futures import Future, InvalidStateError
from contextlib import contextmanager
from pathlib import Path

from baize.io.errors import BaizeError

logger = logging.getLogger(__name__)

_sync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


class JSONLAppender:
    """A JSONL file open for appending by this process alone (`writer` names it in the error for a second one)."""

    def __init__(self, path: str | Path, writer: str = "process"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        # Lock before repairing: a torn-looking last line may be another writer's line in flight.
        self._lock(writer)
        self._repair()

    def _lock(self, writer: str) -> None:
        """Two writers appending to one file would do records twice: the second one stops.
        The lock goes with the process, so a killed writer never leaves it behind."""
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks, run one writer per file
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise BaizeError(f"{self.path} is being written by another {writer}; wait for it or stop it") from None

    def _repair(self) -> None:
        """Cut a torn last line (left by a machine crash): its record was not done."""
        if self.path.stat().st_size == 0:
            return
        with self.path.open("rb+") as f:
            data = f.read()
            if data.endswith(b"\n"):
                return
            keep = data.rfind(b"\n") + 1
            logger.warning(
                "%s: removing a torn last line (%d bytes); that record will be done again", self.path, len(data) - keep
            )
            f.truncate(keep)
            os.fsync(f.fileno())

    def append(self, row: dict) -> None:
        self.append_rows([row])

    def append_rows(self, rows: list[dict]) -> None:
        """Several records in one write and one sync (a batch's answers)."""
        if not rows:
            return
        self._write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode())

    def _write(self, data: bytes) -> None:
        written = os.write(self._fd, data)
        while written < len(data):  # a short write is rare on regular files, but then finish the line
            written += os.write(self._fd, data[written:])
        _sync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> JSONLAppender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class GroupCommitAppender(JSONLAppender):
    """A `JSONLAppender` for an event loop: lines are written by one thread, and every line queued while a sync
    runs goes out with the next one (group commit: one write and one fdatasync per group, never on the loop).

    `submit` queues rows and returns a future that is done once they are on disk; `append_durably` awaits it
    (a spend reservation, which must be on disk before its request leaves); `append_soon` does not wait (a
    settlement: a kill before its sync leaves the call counted at its reservation). `append` still returns
    only once the rows are on disk. Closing writes what is queued. There is no timer: a group is whatever
    arrived during the previous sync, so a lone line waits for nothing but its own sync.
    """

    def __init__(self, path: str | Path, writer: str = "process"):
        super().__init__(path, writer)
        self._queue: list[tuple[bytes, Future]] = []
        self._wake = threading.Condition()
        self._closing = False
        self.syncs = 0  # groups written (each one write + one fdatasync)
        self._thread = threading.Thread(target=self._commit_loop, name=f"commit {self.path.name}", daemon=True)
        self._thread.start()

    def submit(self, rows: list[dict]) -> Future:
        future: Future = Future()
        data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
        with self._wake:
            if self._closing:
                raise RuntimeError(f"{self.path} is closed")
            self._queue.append((data, future))
            self._wake.notify()
        return future

    def append_rows(self, rows: list[dict]) -> None:
        if rows:
            self.submit(rows).result()

    def flush(self) -> None:
        """Return once everything queued so far is on disk."""
        self.submit([]).result()

    def append_soon(self, row: dict) -> None:
        self.submit([row])

    async def append_durably(self, row: dict) -> None:
        await asyncio.wrap_future(self.submit([row]))

    def _commit_loop(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closing:
                    self._wake.wait()
                group, self._queue = self._queue, []
                if not group:  # closing, and everything is written
                    return
            try:
                self._write(b"".join(data for data, _ in group))
            except BaseException as error:  # a full disk: every waiter hears it
                for _, future in group:
                    _settle(future, error)
            else:
                self.syncs += 1
                for _, future in group:
                    _settle(future)

    def close(self) -> None:
        if self._fd is not None:
            with self._wake:
                self._closing = True
                self._wake.notify()
            self._thread.join()
        super().close()


def _settle(future: Future, error: BaseException | None = None) -> None:
    """Tell a waiter its lines are written (or why not). A waiter that was cancelled (Ctrl-C while it awaited the
    sync: asyncio cancels the future it waited on) needs no answer; its lines are written all the same."""
    try:
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
    except InvalidStateError:
        pass


def read_jsonl(path: Path) -> list[dict]:
    """Every whole line of a JSONL file; a torn last line (a crash mid-write) is ignored."""
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_bytes().split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            logger.warning("%s:%d: torn or invalid line ignored (that prompt is redone)", path, number)
    return rows


def iter_jsonl(path: Path):
    """The records of a JSONL file one at a time, read line by line; a torn last line (a kill mid-write) is not a
    record yet. A missing file has none."""
    if not path.exists():
        return
    with path.open("rb") as f:
        for line in f:
            if line.endswith(b"\n") and line.strip():
                yield json.loads(line)


@contextmanager
def open_atomically(path: Path):
    """A text file written beside `path` and renamed over it only when the block ends without an error: a reader
    (or a crash) never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        yield f
    os.replace(tmp, path)


def write_text_atomically(path: Path, text: str) -> None:
    """A reader (or a crash) never sees half a file: write beside it, then rename over it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_jsonl_atomically(path: Path, rows: list[dict]) -> None:
    write_text_atomically(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
