"""A loopback OpenAI-compatible chat-completions server for tests and benchmarks (stdlib only).

The real `openai` client talks HTTP to it, so retries, time-outs and usage parsing are the client's own.
What it answers is scripted by a *responder*: a function that receives each request and returns a
`Reply` (or just a string). Faults are replies too:

    from openai_server import OpenAIServer, Reply, rate_limited, server_error, hang

    def responder(request):
        if request.attempt == 1 and "flaky" in request.prompt:
            return rate_limited(retry_after=0.2)     # 429 + Retry-After, then the retry succeeds
        return Reply("[Human] hi\\n[AI] hello", finish_reason="stop", usage={"prompt_tokens": 9, "completion_tokens": 4})

    with OpenAIServer(responder, latency=0.2, tpm=30_000) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test")

- `request.attempt` counts identical request bodies: 1 the first time, 2 for the client's first retry, ...
- `latency` delays every reply; `Reply(delay=...)` one reply (a delay past the client's timeout is a hang).
- `rpm` / `tpm` enforce rate limits like a provider: a request reserves its prompt words + `max_tokens`
  when it arrives and the reply's usage settles it; over the limit the server answers 429 with
  `Retry-After` and `retry-after-ms`. `tokens_served` sums the usage of the 200 answers.
- Usage defaults to whitespace word counts of the prompt messages and the reply.
- `Reply(first_token_probabilities={"8": 0.6, "9": 0.4})` answers a request with `logprobs: true` with those
  top log-probabilities for the first token.
- A request with `"stream": true` gets the reply as server-sent events, one word a chunk (`Reply.chunk_delay`
  apart), then a usage chunk and `[DONE]`; `server.streams_closed_early` counts streams the client hung up on.
- `server.requests` lists every request received (429s included); `server.statuses` counts answers by status;
  `server.answered_at` holds when each 200 chat answer went out (the server's span of a run).

The Batch API (`/v1/files`, `/v1/batches`) runs a batch's lines through the same responder in a thread, one
request every `batch_delay` seconds, and writes OpenAI's output and error files. Faults: a responder's error
reply becomes a line of the error file; `expire_after=K` ends every batch as `expired` after K requests (the
rest go to the error file with `batch_expired`, as OpenAI does); `fail_batches="why"` fails validation;
`batch_api = False` answers 404 there, like a server without the Batch API.
`server.batches` holds every batch created, `server.files` every file.

The pytest fixture `openai_server` yields a started server with an echo responder: import
`openai_server_fixture` into a test module (that registers the fixture) and set `openai_server.responder`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Reply:
    """One answer of the server: a completion (status 200) or an error status."""

    content: str | None = ""
    finish_reason: str = "stop"
    usage: dict | None = None  # {"prompt_tokens": .., "completion_tokens": ..}; default: word counts
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering, on top of the server's latency
    message: str = ""  # error message for status >= 400
    error_code: str | None = None  # the error's `code` (e.g. OpenAI's "insufficient_quota" on a 429)
    raw: bytes | None = None  # a 200 with this body as it is (a malformed or empty reply from a flaky provider)
    chunk_delay: float = 0.0  # with `stream: true`, seconds between the streamed pieces (one word each)
    # {token: probability} of the reply's first token, sent as `logprobs` when the request asks for them (as
    # OpenAI and vLLM do: `logprobs: true, top_logprobs: K`)
    first_token_probabilities: dict[str, float] | None = None


def rate_limited(retry_after: float = 1.0) -> Reply:
    """429 with both `Retry-After` (whole seconds, the standard) and `retry-after-ms` (what OpenAI sends)."""
    return Reply(
        status=429,
        message="Rate limit reached (test server)",
        headers={"retry-after": str(max(1, math.ceil(retry_after))), "retry-after-ms": str(int(retry_after * 1000))},
    )


def server_error(status: int = 500) -> Reply:
    return Reply(status=status, message="The server had an error while processing your request (test server)")


def hang(seconds: float = 30.0) -> Reply:
    """Answer only after `seconds` (ends early when the server stops): longer than the client's timeout."""
    return Reply(content="too late", delay=seconds)


@dataclass
class ChatRequest:
    body: dict
    headers: dict[str, str]
    attempt: int
    received_at: float

    @property
    def messages(self) -> list[dict]:
        return self.body.get("messages", [])

    @property
    def prompt(self) -> str:
        """All message contents joined (or a /v1/completions prompt): convenient for matching in a responder."""
        if "prompt" in self.body:
            return str(self.body["prompt"])
        return "\n".join(str(m.get("content") or "") for m in self.messages)

    @property
    def last_user(self) -> str:
        return next((str(m.get("content") or "") for m in reversed(self.messages) if m.get("role") == "user"), "")


Responder = Callable[[ChatRequest], "Reply | str"]


def echo(request: ChatRequest) -> Reply:
    return Reply(f"You said: {request.last_user}")


def word_count(text: str | None) -> int:
    return len((text or "").split())


class _Bucket:
    """Provider-style limit: `per_minute` refilled continuously, `burst_seconds` worth may be spent at once."""

    def __init__(self, per_minute: float, burst_seconds: float):
        self.rate = per_minute / 60.0
        self.capacity = self.rate * burst_seconds
        self.level = self.capacity
        self.updated = time.monotonic()

    def refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait_needed(self, cost: float) -> float:
        """0 when `cost` can be spent now (the bucket may go into debt by one request), else seconds to wait."""
        self.refill()
        if self.level > 0 and (self.level >= cost or self.level >= self.capacity):
            return 0.0
        return (min(cost, self.capacity) - self.level) / self.rate


class OpenAIServer:
    """`/v1/chat/completions` (also streamed), `/v1/completions` (`n` choices), `/v1/models` and `/health` on
    127.0.0.1, in a thread. `capacity` limits the replies in progress at once (a replica's throughput)."""

    def __init__(
        self,
        responder: Responder | None = None,
        latency: float = 0.0,
        rpm: float | None = None,
        tpm: float | None = None,
        burst_seconds: float = 2.0,
        model: str = "test-model",
        capacity: int | None = None,
    ):
        self.responder = responder or echo
        self.latency = latency
        self.model = model
        self.requests: list[ChatRequest] = []
        self.statuses: Counter = Counter()
        self.tokens_served = 0  # prompt + completion tokens of the 200 answers
        self.answered_at: list[float] = []  # time.monotonic() of every 200 chat answer sent (server span)
        self.streams_closed_early = 0  # streamed replies the client stopped reading (a Stop in the web demo)
        self._rpm = _Bucket(rpm, burst_seconds) if rpm else None
        self._tpm = _Bucket(tpm, burst_seconds) if tpm else None
        self._attempts: Counter = Counter()
        # a replica's throughput: at most `capacity` replies in progress (the rest wait), like one GPU server
        self._capacity = threading.Semaphore(capacity) if capacity else None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        # the Batch API
        self.files: dict[str, dict] = {}  # id -> {"purpose", "filename", "data"}
        self.batches: dict[str, dict] = {}  # id -> the batch object as the API shows it
        self.batch_delay = 0.0
        self.expire_after: int | None = None
        self.fail_batches: str | None = None
        self.batch_api = True  # False: /v1/files and /v1/batches answer 404, as `vllm serve` does
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> OpenAIServer:
        server = self

        class Handler(_Handler):
            owner = server

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # a real server's listen backlog, not the stdlib's 5: bursts of connections

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="openai-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes up replies that are hanging
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.statuses.clear()
            self._attempts.clear()
            self.tokens_served = 0
            self.answered_at.clear()

    # ------------------------------------------------------------------ request handling

    def _admit(self, body: dict, headers: dict[str, str]) -> tuple[ChatRequest, Reply | None, int]:
        """Count the request; under a rate limit, reserve its tokens (prompt + max_tokens) like a provider."""
        key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        reserved = sum(word_count(m.get("content")) for m in body.get("messages", [])) + (body.get("max_tokens") or 0)
        with self._lock:
            self._attempts[key] += 1
            request = ChatRequest(body, headers, self._attempts[key], time.monotonic())
            self.requests.append(request)
            waits = [
                bucket.wait_needed(cost)
                for bucket, cost in ((self._rpm, 1), (self._tpm, reserved))
                if bucket is not None
            ]
            wait = max(waits, default=0.0)
            if wait > 0:
                return request, rate_limited(retry_after=wait), 0
            if self._rpm is not None:
                self._rpm.level -= 1
            if self._tpm is not None:
                self._tpm.level -= reserved
        return request, None, reserved

    def _settle(self, reserved: int, used: int) -> None:
        """After the answer: meter what the usage says, give back the rest of the reservation."""
        with self._lock:
            self.tokens_served += used
            if self._tpm is not None:
                self._tpm.refill()
                self._tpm.level = min(self._tpm.capacity, self._tpm.level + reserved - used)

    def _completion(self, request: ChatRequest, reply: Reply) -> dict:
        usage = dict(reply.usage or {})
        usage.setdefault("prompt_tokens", sum(word_count(m.get("content")) for m in request.messages))
        usage.setdefault("completion_tokens", word_count(reply.content))
        usage.setdefault("total_tokens", usage["prompt_tokens"] + usage["completion_tokens"])
        choice = {"index": 0, "message": {"role": "assistant", "content": reply.content},
                  "finish_reason": reply.finish_reason}  # fmt: skip
        if request.body.get("logprobs") and reply.first_token_probabilities:
            top = [{"token": token, "logprob": math.log(p), "bytes": None}
                   for token, p in reply.first_token_probabilities.items()][: request.body.get("top_logprobs") or 1]  # fmt: skip
            first = max(reply.first_token_probabilities, key=reply.first_token_probabilities.get)
            choice["logprobs"] = {"content": [{"token": first, "logprob": math.log(reply.first_token_probabilities[first]),
                                               "bytes": None, "top_logprobs": top}]}  # fmt: skip
        return {
            "id": f"chatcmpl-test-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.body.get("model", self.model),
            "choices": [choice],
            "usage": usage,
        }

    # ------------------------------------------------------------------ the Batch API

    def add_file(self, data: bytes, purpose: str, filename: str) -> dict:
        file_id = f"file-test-{next(self._ids)}"
        with self._lock:
            self.files[file_id] = {"purpose": purpose, "filename": filename, "data": data}
        return self.file_object(file_id)

    def file_object(self, file_id: str) -> dict:
        file = self.files[file_id]
        return {"id": file_id, "object": "file", "bytes": len(file["data"]), "created_at": int(time.time()),
                "filename": file["filename"], "purpose": file["purpose"], "status": "processed"}  # fmt: skip

    def create_batch(self, body: dict, headers: dict[str, str] | None = None) -> dict:
        batch_id = f"batch-test-{next(self._ids)}"
        batch = {
            "id": batch_id, "object": "batch", "endpoint": body.get("endpoint"), "errors": None,
            "input_file_id": body.get("input_file_id"), "completion_window": body.get("completion_window"),
            "status": "validating", "output_file_id": None, "error_file_id": None, "created_at": int(time.time()),
            "request_counts": {"total": 0, "completed": 0, "failed": 0}, "metadata": body.get("metadata"),
        }  # fmt: skip
        with self._lock:
            self.batches[batch_id] = batch
        # the batch's requests carry the creating request's headers (its API key), as the provider sees them
        args = (batch, headers or {})
        threading.Thread(target=self._run_batch, args=args, name=f"batch {batch_id}", daemon=True).start()
        return dict(batch)

    def _run_batch(self, batch: dict, headers: dict[str, str]) -> None:
        """Validate the input file like OpenAI, then answer its lines one by one through the responder."""
        lines, problem = [], self.fail_batches
        file = self.files.get(batch["input_file_id"])
        if file is None:
            problem = problem or f"no file {batch['input_file_id']}"
        else:
            lines = [json.loads(line) for line in file["data"].splitlines() if line.strip()]
            ids = [line.get("custom_id") for line in lines]
            if len(set(ids)) != len(ids) or None in ids:
                problem = problem or "custom_id values must be unique and present"
            if len({line.get("body", {}).get("model") for line in lines}) > 1:
                problem = problem or "a batch takes requests for one model only"
            for line in lines:
                if line.get("method") != "POST" or line.get("url") != batch["endpoint"] or "model" not in line["body"]:
                    problem = (
                        problem or f"line {line.get('custom_id')}: method POST, url {batch['endpoint']}, body.model"
                    )
        if problem:
            batch.update(
                status="failed", errors={"object": "list", "data": [{"code": "invalid_file", "message": problem}]}
            )
            return
        batch["request_counts"]["total"] = len(lines)
        batch["status"] = "in_progress"
        output, errors = [], []
        for number, line in enumerate(lines):
            if self._stopping.wait(self.batch_delay):
                return
            if self.expire_after is not None and number >= self.expire_after:
                errors.append({"id": f"batch_req_{next(self._ids)}", "custom_id": line["custom_id"], "response": None,
                               "error": {"code": "batch_expired", "message": "This request could not be executed "
                                         "before the completion window expired."}})  # fmt: skip
                batch["request_counts"]["failed"] += 1
                continue
            request = ChatRequest(line["body"], headers, 1, time.monotonic())
            with self._lock:
                self.requests.append(request)
            reply = self.responder(request)
            reply = Reply(reply) if isinstance(reply, str) else reply
            if reply.status >= 400:
                response = {"status_code": reply.status, "request_id": f"req_{number}",
                            "body": {"error": {"message": reply.message, "type": "server_error"}}}  # fmt: skip
                errors.append({"id": f"batch_req_{next(self._ids)}", "custom_id": line["custom_id"],
                               "response": response, "error": None})  # fmt: skip
                batch["request_counts"]["failed"] += 1
                continue
            completion = self._completion(request, reply)
            with self._lock:
                self.tokens_served += completion["usage"]["total_tokens"]
                self.statuses[200] += 1
            output.append({"id": f"batch_req_{next(self._ids)}", "custom_id": line["custom_id"],
                           "response": {"status_code": 200, "request_id": f"req_{number}", "body": completion},
                           "error": None})  # fmt: skip
            batch["request_counts"]["completed"] += 1
        batch["status"] = "finalizing"
        for key, rows in (("output_file_id", output), ("error_file_id", errors)):
            if rows:
                data = "".join(json.dumps(row) + "\n" for row in rows).encode()
                batch[key] = self.add_file(data, "batch_output", f"{batch['id']}_{key}.jsonl")["id"]
        batch["status"] = "expired" if self.expire_after is not None and errors else "completed"


class _Handler(BaseHTTPRequestHandler):
    owner: OpenAIServer
    protocol_version = "HTTP/1.1"  # keep-alive, like a real provider
    # TCP_NODELAY, as uvicorn and every production server set it: without it the headers and the body go out as
    # two small writes and the second waits for the client's delayed ACK (~40 ms a reply on loopback)
    disable_nagle_algorithm = True

    def log_message(self, format, *args) -> None:  # quiet: pytest shows failures, not access logs
        pass

    def _send(self, status: int, payload: dict | bytes, headers: dict[str, str] | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout): nothing to answer
            self.close_connection = True

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/health":
            self._send(200, {"status": "ok"})
        elif self.path.rstrip("/") == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": self.owner.model, "object": "model"}]})
        elif self.path.startswith(("/v1/files", "/v1/batches")):
            self._batch_api_get(self.path.split("?")[0].rstrip("/"))
        else:
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def _batch_api_get(self, route: str) -> None:
        owner, parts = self.owner, route.split("/")[2:]  # ["files", id, "content"] or ["batches", id]
        if parts[0] == "files" and len(parts) >= 2 and parts[1] in owner.files:
            if parts[-1] == "content":
                data = owner.files[parts[1]]["data"]
                self._send(200, data, {"Content-Type": "application/octet-stream"})
            else:
                self._send(200, owner.file_object(parts[1]))
        elif parts == ["batches"]:
            data = [dict(b) for b in reversed(list(owner.batches.values()))]
            first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
            self._send(200, {"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": False})
        elif parts[0] == "batches" and len(parts) == 2 and parts[1] in owner.batches:
            self._send(200, dict(owner.batches[parts[1]]))
        else:
            self._send(404, {"error": {"message": f"no such object {route}", "type": "invalid_request_error"}})

    def _upload(self, data: bytes) -> None:
        """POST /v1/files: multipart form with `purpose` and `file`, as the openai client sends it."""
        from email.parser import BytesParser
        from email.policy import HTTP

        message = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + data
        )
        fields = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[name] = (part.get_filename(), part.get_payload(decode=True))
        filename, content = fields["file"]
        self._send(200, self.owner.add_file(content, fields["purpose"][1].decode(), filename or "upload.jsonl"))

    def do_POST(self) -> None:
        owner = self.owner
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        route = self.path.rstrip("/")
        if route in ("/v1/files", "/v1/batches") and not owner.batch_api:
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        if route == "/v1/files":
            self._upload(data)
            return
        body = json.loads(data or b"{}")
        if route == "/v1/batches":
            self._send(200, owner.create_batch(body, {k.lower(): v for k, v in self.headers.items()}))
            return
        if route not in ("/v1/chat/completions", "/v1/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        request, limited, reserved = owner._admit(body, {k.lower(): v for k, v in self.headers.items()})
        reply = limited
        if reply is None:
            if owner._capacity is not None:
                owner._capacity.acquire()
            try:
                reply = owner.responder(request)
                replies = [
                    Reply(r) if isinstance(r, str) else r for r in (reply if isinstance(reply, list) else [reply])
                ]
                reply = replies[0]
                if owner._stopping.wait(owner.latency + reply.delay):
                    return
            finally:
                if owner._capacity is not None:
                    owner._capacity.release()
            if route == "/v1/completions" and reply.status < 400:
                self._text_completion(request, replies, reserved)
                return
        with owner._lock:
            owner.statuses[reply.status] += 1
        if reply.status >= 400:
            owner._settle(reserved, 0)
            error_type = "rate_limit_exceeded" if reply.status == 429 else "server_error"
            error = {
                "message": reply.message,
                "type": error_type,
                **({"code": reply.error_code} if reply.error_code else {}),
            }
            self._send(reply.status, {"error": error}, reply.headers)
            return
        if reply.raw is not None:
            owner._settle(reserved, 0)
            self._send(200, reply.raw, reply.headers)
            return
        payload = owner._completion(request, reply)
        owner._settle(reserved, payload["usage"]["total_tokens"])
        if body.get("stream"):
            self._stream(payload, reply)
        else:
            self._send(200, payload, reply.headers)
        with owner._lock:
            owner.answered_at.append(time.monotonic())

    def _text_completion(self, request: ChatRequest, replies: list[Reply], reserved: int) -> None:
        """/v1/completions: `n` choices (the responder's list, or its one reply repeated), usage summed."""
        owner = self.owner
        n = int(request.body.get("n") or 1)
        replies = (replies * n)[:n] if len(replies) < n else replies[:n]
        completion = sum(word_count(r.content) for r in replies)
        usage = {"prompt_tokens": word_count(request.prompt), "completion_tokens": completion}
        usage["total_tokens"] = usage["prompt_tokens"] + completion
        with owner._lock:
            owner.statuses[200] += 1
        owner._settle(reserved, usage["total_tokens"])
        choices = [
            {"index": i, "text": r.content, "finish_reason": r.finish_reason, "logprobs": None}
            for i, r in enumerate(replies)
        ]
        self._send(200, {"id": f"cmpl-test-{len(owner.requests)}", "object": "text_completion",
                         "created": int(time.time()), "model": request.body.get("model", owner.model),
                         "choices": choices, "usage": usage})  # fmt: skip

    def _stream(self, payload: dict, reply: Reply) -> None:
        """The completion as OpenAI streams it: role, one word a chunk, finish reason, usage, [DONE]."""
        base = {k: payload[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}

        def chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> bytes:
            choices = [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]
            return b"data: " + json.dumps(base | {"choices": choices, "usage": usage}).encode() + b"\n\n"

        words = re.findall(r"\s*\S+", reply.content or "")
        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": word}) for word in words]
        events += [chunk({}, reply.finish_reason), chunk({}, usage=payload["usage"]), b"data: [DONE]\n\n"]
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            for event in events:
                self.wfile.write(event)
                self.wfile.flush()
                if reply.chunk_delay and self.owner._stopping.wait(reply.chunk_delay):
                    return
        except (BrokenPipeError, ConnectionResetError):
            with self.owner._lock:
                self.owner.streams_closed_early += 1
        self.close_connection = True


@pytest.fixture(name="openai_server")
def openai_server_fixture():
    """A started loopback server (echo responder); set `.responder`, `.latency` in the test."""
    with OpenAIServer() as server:
        yield server
