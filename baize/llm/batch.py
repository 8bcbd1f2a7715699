"""The OpenAI Batch API (about half the price of live calls) behind the one endpoint client.

With `Endpoint.use_batches(folder)`, every `Endpoint.chat` becomes a line of a batch instead of an HTTP call, so
the stages keep their own code (prompts, parsing, cleaning, journals, re-asks): a coroutine that asks simply
waits longer. The stage runs its coroutines through `Endpoint.gather`, which here means: run them all until
every one is waiting for an answer (or done), send what they asked as one batch, wait for it, hand the answers
back, and repeat. Collection in `turns` mode thus sends one batch per step of a round; a judge's re-ask goes in
the next batch.

The batch itself is the provider's: the request JSONL (`custom_id`, `method`, `url`, `body`; the format `vllm
run-batch` also reads) is uploaded to `/v1/files`, a batch is created at `/v1/batches` with a 24 h window and
polled with back-off, and the output and error files are downloaded. Nothing here retries HTTP: the openai
client does.

Crash safety lives in `folder`:
- `requests-NNNNN.jsonl`: each batch's request file, as uploaded;
- `batches.jsonl`: a line when a file is uploaded, when its batch is created and when it ends. A restarted run
  re-attaches to a batch that has not ended (or that was created but not yet journaled: it is found by its
  input file) instead of paying for the same requests twice;
- `batch_results.jsonl`: every answer, by custom_id. A custom_id is the caller's label (a seed id, a verdict
  key) and a digest of the request body, so a restarted run that asks the same thing again gets the stored
  answer without a call, and a changed request is never answered from the store.
Requests that failed inside a batch (the provider's error file, or the batch expired before it reached them)
go into a new batch, at most `retries` times; then the coroutine gets `BatchRequestFailed`.

`offline=True` sends nothing: each batch's request file is written and the run stops (`BatchWritten`) until
an engine without the API has answered it (`vllm run-batch -i requests-NNNNN.jsonl -o results-NNNNN.jsonl`);
the next run reads every `results-*.jsonl` of the folder and goes on to the next batch.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path

from baize.io.errors import BatchFailed, BatchRequestFailed, BatchWritten, status_kind
from baize.io.jsonl import JSONLAppender, iter_jsonl, write_jsonl_atomically
from baize.io.secrets import redact

logger = logging.getLogger(__name__)

BATCH_LOG = "batches.jsonl"
RESULTS_FILE = "batch_results.jsonl"
REQUESTS_GLOB = "requests-*.jsonl"
OFFLINE_RESULTS_GLOB = "results-*.jsonl"  # offline: what `vllm run-batch -o` wrote for a request file
ENDED = ("completed", "failed", "expired", "cancelled")
CHAT_URL = "/v1/chat/completions"

# What the next request is about (a seed id, a verdict key): the readable half of its custom_id. Set by the stage
# before it asks; coroutines started from there (asyncio copies the context) inherit it.
batch_label: contextvars.ContextVar[str] = contextvars.ContextVar("batch_label", default="request")


def label_of(request_id: str) -> str:
    """The readable half of a custom_id (the seed id, the verdict key)."""
    return request_id.rsplit("-", 1)[0]


def custom_id(label: str, body: dict) -> str:
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]
    return f"{label[:40]}-{digest}"


def request_line(request_id: str, body: dict, url: str = CHAT_URL) -> dict:
    """One line of a batch input file: the OpenAI Batch API's format, which `vllm run-batch -i` reads too."""
    return {"custom_id": request_id, "method": "POST", "url": url, "body": body}


class LineError(str):
    """The error of one batch line as text (what reports and messages show), with its HTTP `status` (None for an
    error object without one, such as `batch_expired`)."""

    status: int | None = None

    def __new__(cls, text: str, status: int | None = None):
        error = super().__new__(cls, text)
        error.status = status
        return error


def read_result_line(line: dict) -> tuple[str, dict | None, LineError | None]:
    """One line of a batch output or error file (OpenAI's or `vllm run-batch -o`'s) -> (custom_id, body, error)."""
    response, error = line.get("response") or {}, line.get("error")
    if error:
        return (
            line["custom_id"],
            None,
            LineError(f"{error.get('code') or 'error'}: {error.get('message') or ''}".strip()),
        )
    status = response.get("status_code")
    body = response.get("body")
    if status != 200 or not isinstance(body, dict):
        message = ((body or {}).get("error") or {}).get("message", "") if isinstance(body, dict) else ""
        return line["custom_id"], None, LineError(f"HTTP {status}: {message}".strip(), status)
    return line["custom_id"], body, None


def read_results(text: str) -> Iterator[tuple[str, dict | None, LineError | None]]:
    """The lines of an output or error file, redacted first: an endpoint may echo a key back in a reply or an
    error, and it never reaches the store."""
    for line in redact(text).splitlines():
        if line.strip():
            yield read_result_line(json.loads(line))


class BatchLog(JSONLAppender):
    """`batches.jsonl`: uploaded -> created -> ended, one line each."""

    def __init__(self, folder: Path):
        super().__init__(folder / BATCH_LOG, writer="run with batches in this folder")
        self.events = list(iter_jsonl(self.path))  # opening cut a torn last line

    def append(self, row: dict) -> None:
        super().append(row)
        self.events.append(row)

    def open_batches(self) -> dict[str, str]:
        """{batch id: its requests file name} of the batches that were created and have not ended."""
        ended = {e["batch"] for e in self.events if e["event"] == "ended"}
        return {e["batch"]: e["requests"] for e in self.events if e["event"] == "created" and e["batch"] not in ended}

    def unbatched_uploads(self) -> dict[str, str]:
        """{file id: requests file name} of uploads with no batch journaled (killed between upload and create)."""
        batched = {e["file"] for e in self.events if e["event"] == "created"}
        return {e["file"]: e["requests"] for e in self.events if e["event"] == "uploaded" and e["file"] not in batched}


class BatchSession:
    """Requests collected while the stage's coroutines run, sent as batches when every coroutine waits."""

    def __init__(
        self,
        client,
        folder: str | Path,
        *,
        where: str,
        completion_window: str = "24h",
        poll_interval: float = 30.0,
        max_poll_interval: float = 600.0,
        max_requests: int = 50_000,
        retries: int = 2,
        keep: Callable[[str], bool] | None = None,
        offline: bool = False,
    ):
        self.client = client  # the endpoint's openai.AsyncOpenAI: its retries and time-outs
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.where = where  # the endpoint URL, for messages
        self.completion_window, self.max_requests, self.retries = completion_window, max_requests, retries
        self.poll_interval, self.max_poll_interval = poll_interval, max_poll_interval
        self.offline = offline
        self.log = BatchLog(self.folder)
        self.results: dict[str, dict] = {}
        for row in iter_jsonl(self.folder / RESULTS_FILE):
            if keep is None or keep(row["custom_id"]):  # a finished seed's answers are not needed again
                self.results[row["custom_id"]] = row["body"]
        for path in sorted(self.folder.glob(OFFLINE_RESULTS_GLOB)):  # an offline engine's answers
            for request_id, body, _ in read_results(path.read_text(encoding="utf-8")):
                if body is not None and (keep is None or keep(request_id)):
                    self.results[request_id] = body  # a failed one is written into the next request file
        self._results_file = JSONLAppender(self.folder / RESULTS_FILE, writer="run with batches in this folder")
        self.reattached: set[str] = set()  # answers of batches an earlier run sent, collected by `reattach`
        self._unused: dict[str, set[str]] = {}  # label -> stored answers this session has not handed out yet
        for request_id in self.results:
            self._unused.setdefault(label_of(request_id), set()).add(request_id)
        self.pending: dict[str, tuple[dict, list[asyncio.Future]]] = {}
        self.running = 0  # coroutines of `run` that are neither waiting for a batch nor done
        self._idle = asyncio.Event()
        self.stats = {"batches": 0, "attached": 0, "requests": 0, "replayed": 0, "failed_requests": 0}

    # ------------------------------------------------------------------ what the stage's coroutines call

    async def request(self, body: dict) -> tuple[dict, bool]:
        """The response body of one chat completion, and whether it came from the store (paid for before)."""
        request_id = custom_id(batch_label.get(), body)
        if request_id in self.results:
            if request_id not in self.reattached:
                self.stats["replayed"] += 1
            self._unused.get(label_of(request_id), set()).discard(request_id)
            return self.results[request_id], True
        future = asyncio.get_running_loop().create_future()
        self.pending.setdefault(request_id, (body, []))[1].append(future)
        self._wait_for_batch()
        return await future, False

    async def reattach(self) -> dict[str, LineError]:
        """Before anything new is asked: wait for every batch an earlier run sent that has not ended (journaled, or
        created but not journaled: found by its upload) and store its answers, so that what was paid for is
        collected before a budget decides what to start. Returns the errors of those batches by custom_id."""
        errors: dict[str, LineError] = {}
        if self.offline:
            return errors
        running = await self._running_batches()
        for batch_id in running:
            logger.info("batch %s was sent by an earlier run and has not ended: collecting it first", batch_id)
        for batch_errors in await asyncio.gather(*(self._wait(batch_id) for batch_id in running)):
            errors.update(batch_errors)
        self.stats["attached"] += len(running)
        for request_file in running.values():
            for request_id in _custom_ids(self.folder / request_file):
                if request_id in self.results:
                    self.reattached.add(request_id)
                    self._unused.setdefault(label_of(request_id), set()).add(request_id)
        return errors

    def labels_with_unused_answers(self) -> list[str]:
        return [label for label, unused in self._unused.items() if unused]

    def has_unused_answers(self, label: str) -> bool:
        """Whether answers stored for `label` (a seed id) wait to be handed out: paid for, so asked for whatever a
        budget says."""
        return bool(self._unused.get(label))

    def sent_request_ids(self) -> set[str]:
        """The custom_ids of every request file that was uploaded (only those can have been billed)."""
        names = {event["requests"] for event in self.log.events if event["event"] == "uploaded"}
        return {request_id for name in names for request_id in _custom_ids(self.folder / name)}

    def open_batches(self) -> dict[str, str]:
        return self.log.open_batches()

    async def run(self, coroutines: Iterable[Awaitable]) -> list:
        """Run every coroutine to its end, batching what they ask; results in order (exceptions propagate)."""
        coroutines = list(coroutines)
        self.running += len(coroutines)
        tasks = [asyncio.ensure_future(self._counted(c)) for c in coroutines]
        try:
            while not all(task.done() for task in tasks):
                await self._idle.wait()  # every coroutine waits for an answer or is done
                self._idle.clear()
                if self.pending:
                    await self._dispatch()
                else:
                    await asyncio.sleep(0)  # the last ones are finishing
            return [task.result() for task in tasks]
        except BaseException:  # Ctrl-C: a batch already sent keeps running, and the next run re-attaches to it
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def gather(self, *coroutines: Awaitable) -> list:
        """`asyncio.gather` inside a coroutine of `run` (a judge's verdicts on one row): the caller waits while
        its children ask. Every child runs to its end; then the first exception, if any, is raised."""
        if not coroutines:
            return []
        self.running += len(coroutines) - 1  # the caller waits, its children run
        left = len(coroutines)

        async def child(coroutine):
            nonlocal left
            try:
                return await coroutine
            finally:
                left -= 1
                if left:
                    self.running -= 1
                    self._maybe_idle()
                # else the last child hands its count back to the caller, which resumes

        results = await asyncio.gather(*(child(c) for c in coroutines), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results

    # ------------------------------------------------------------------ the bookkeeping of who waits

    async def _counted(self, coroutine):
        try:
            return await coroutine
        finally:
            self.running -= 1
            self._maybe_idle()

    def _wait_for_batch(self) -> None:
        self.running -= 1
        self._maybe_idle()

    def _maybe_idle(self) -> None:
        if self.running <= 0:
            self._idle.set()

    # ------------------------------------------------------------------ sending and collecting batches

    async def _dispatch(self) -> None:
        pending, self.pending = self.pending, {}
        errors: dict[str, LineError] = {}
        try:
            todo = list(pending)
            if self.offline:
                raise BatchWritten(self._write_requests(todo, pending), len(todo))
            for attempt in range(1 + self.retries):
                failed = await self._send_and_wait(todo, pending)
                errors.update(failed)
                # Only transient failures are sent again (the rule of live calls): a 400 such as a context too long
                # would fail in every batch, and its seed is dropped instead.
                todo = [request_id for request_id in todo if request_id in failed and _transient(failed[request_id])]
                if not todo:
                    break
                if attempt < self.retries:
                    logger.warning("%d requests failed in their batch; sending them again as a new batch", len(todo))
        except BatchWritten:  # offline: the run stops until the engine has answered
            raise
        except Exception as error:  # the batch API itself failed: every waiting coroutine hears it
            for _, futures in pending.values():
                self._resolve(futures, error=error)
            return
        for request_id, (_, futures) in pending.items():
            if request_id in self.results:
                self._resolve(futures, result=self.results[request_id])
            else:
                self.stats["failed_requests"] += 1
                error = errors.get(request_id) or LineError("no answer in the batch's output")
                message = f"request {request_id} failed in its batch at {self.where}: {error}"
                self._resolve(futures, error=BatchRequestFailed(message, error.status))

    def _resolve(self, futures: list[asyncio.Future], result=None, error: BaseException | None = None) -> None:
        for future in futures:
            if future.done():
                continue
            self.running += 1  # counted before it can run again: the loop cannot go idle in between
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

    async def _send_and_wait(self, request_ids: list[str], pending: dict) -> dict[str, LineError]:
        """Attach to running batches that hold some of these requests, send the rest in new batches, wait for all;
        returns the errors by custom_id (the answers went into self.results)."""
        wanted = set(request_ids)
        batches = []
        for batch_id, requests_name in (await self._running_batches()).items():
            held = set(_custom_ids(self.folder / requests_name))
            if held & wanted:
                logger.info("batch %s (sent by an earlier run) still holds %d of these requests: waiting for it",
                            batch_id, len(held & wanted))  # fmt: skip
                self.stats["attached"] += 1
                batches.append(batch_id)
                wanted -= held
        by_model: dict[str, list[str]] = {}  # OpenAI takes one model per batch
        for request_id in request_ids:
            if request_id in wanted:
                by_model.setdefault(pending[request_id][0].get("model", ""), []).append(request_id)
        for fresh in by_model.values():
            for start in range(0, len(fresh), self.max_requests):
                batches.append(await self._submit(fresh[start : start + self.max_requests], pending))
        errors: dict[str, LineError] = {}
        for batch_errors in await asyncio.gather(*(self._wait(batch_id) for batch_id in batches)):
            errors.update(batch_errors)
        for request_id in request_ids:
            if request_id not in self.results:
                errors.setdefault(request_id, LineError("no answer in the batch's output"))
        return errors

    async def _running_batches(self) -> dict[str, str]:
        """Journaled batches that have not ended, plus the batch of an upload that was not journaled as one."""
        running = self.log.open_batches()
        orphans = self.log.unbatched_uploads()
        if orphans:  # such a batch was created just before the kill: among the newest 100 of the account
            page = await self.client.batches.list(limit=100)
            for batch in page.data:
                if batch.input_file_id in orphans:
                    requests_name = orphans.pop(batch.input_file_id)
                    self.log.append({"event": "created", "batch": batch.id, "file": batch.input_file_id,
                                     "requests": requests_name})  # fmt: skip
                    running[batch.id] = requests_name
                if not orphans:
                    break
        return running

    def _write_requests(self, request_ids: list[str], pending: dict) -> Path:
        """The next request file; offline, the unanswered file of a run that stopped here, if it asks the same."""
        existing = sorted(self.folder.glob(REQUESTS_GLOB))
        if self.offline:
            for path in existing:
                if set(_custom_ids(path)) == set(request_ids):
                    return path
        path = self.folder / f"requests-{len(existing) + 1:05d}.jsonl"
        write_jsonl_atomically(path, [request_line(request_id, pending[request_id][0]) for request_id in request_ids])
        return path

    async def _submit(self, request_ids: list[str], pending: dict) -> str:
        import openai

        path = self._write_requests(request_ids, pending)
        try:
            uploaded = await self.client.files.create(file=(path.name, path.read_bytes()), purpose="batch")
        except openai.APIStatusError as error:
            if error.status_code not in (404, 405, 501):
                raise
            # `vllm serve`, `transformers serve` and Ollama have no files/batches routes
            raise BatchFailed(
                f"{self.where} has no Batch API (/files answered HTTP {error.status_code}): collect live without "
                "--batch, or write the request files for `vllm run-batch` with --batch_offline true"
            ) from None
        self.log.append({"event": "uploaded", "file": uploaded.id, "requests": path.name})
        batch = await self.client.batches.create(
            input_file_id=uploaded.id, endpoint=CHAT_URL, completion_window=self.completion_window
        )
        self.log.append({"event": "created", "batch": batch.id, "file": uploaded.id, "requests": path.name})
        self.stats["batches"] += 1
        self.stats["requests"] += len(request_ids)
        logger.info("batch %s: %d requests sent to %s (%s)", batch.id, len(request_ids), self.where, path)
        return batch.id

    async def _wait(self, batch_id: str) -> dict[str, LineError]:
        """Poll until the batch ends (the interval grows to max_poll_interval), then store its answers."""
        from tqdm.auto import tqdm

        delay = self.poll_interval
        bar = tqdm(desc=f"batch {batch_id}", unit="request", mininterval=0.5, leave=False)
        try:
            while True:
                batch = await self.client.batches.retrieve(batch_id)
                counts = batch.request_counts
                if counts is not None:
                    bar.total = counts.total
                    bar.n = counts.completed + counts.failed
                    bar.set_postfix_str(f"{batch.status}, failed={counts.failed}", refresh=True)
                if batch.status in ENDED:
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, self.max_poll_interval)
        finally:
            bar.close()
        if batch.status == "failed":
            reasons = "; ".join(f"{e.code}: {e.message}" for e in (batch.errors.data if batch.errors else []) or [])
            self.log.append({"event": "ended", "batch": batch_id, "status": batch.status})
            raise BatchFailed(f"batch {batch_id} at {self.where} failed: {reasons or 'no reason given'}")
        errors: dict[str, LineError] = {}
        stored = []
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            for request_id, body, error in read_results((await self.client.files.content(file_id)).text):
                if body is None:
                    errors[request_id] = error
                else:
                    self.results[request_id] = body
                    stored.append({"custom_id": request_id, "body": body})
        # ended only once its answers are stored: a kill in between re-downloads them
        self._results_file.append_rows(stored)
        counts = batch.request_counts.to_dict() if batch.request_counts else None
        self.log.append({"event": "ended", "batch": batch_id, "status": batch.status, "counts": counts})
        if batch.status != "completed":
            logger.warning("batch %s %s with %d requests unanswered", batch_id, batch.status, len(errors))
        return errors

    def close(self) -> None:
        self.log.close()
        self._results_file.close()


def _transient(error: LineError) -> bool:
    return status_kind(error.status) == "transient"


def _custom_ids(path: Path) -> list[str]:
    return [row["custom_id"] for row in iter_jsonl(path)]
