"""The one OpenAI-compatible client wrapper: `openai.AsyncOpenAI` behind a shared RPM/TPM limiter, one usage type,
and a bounded gather. The collection teacher, the judge and eval's endpoint answers all go through `Endpoint`.

Retries (429, 5xx, time-outs, connection errors; Retry-After honoured) are the openai client's own. What
it cannot do, because each request retries on its own, is make the *other* requests back off: a response
hook sees every 429/503 with Retry-After and pauses the limiter, so a rate limit does not turn into a
storm of 429s from all the concurrent requests. Every HTTP attempt (the client's retries too) acquires the
limiter in httpx's request hook, when it leaves (baize.llm.ratelimit). 429s are not a seed's failure while the
limiter's `max_wait` lasts: after the client's own retries, the call waits out the shared pause and asks again.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import math
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterable, Iterator
from dataclasses import dataclass, field

from baize.io.errors import EndpointError, MalformedReply
from baize.io.secrets import redact, register_key_variable
from baize.llm.batch import BatchSession, batch_label, custom_id
from baize.llm.prices import RoleUsage
from baize.llm.ratelimit import RateLimiter, Sent

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the client


@dataclass
class Completion:
    content: str
    finish_reason: str | None
    completion_tokens: int | None = None  # None when the server sends no usage
    replayed: bool = False  # a stored batch answer: its cost was counted before (when it was received or re-attached)
    unusable: int = 0  # 200 answers before this one that the client could not use (billed: counted in its usage)
    first_token_logprobs: dict[str, float] | None = None  # {token: log-probability} when asked with top_logprobs


@dataclass
class EndpointArguments:
    """How any endpoint is called, the same keys for collection's teacher, the SDF and eval judges and their
    answer and sampling servers; stage configs subclass it (their own keys come first in --help)."""

    timeout: float = field(default=120.0, metadata={"help": "Seconds before one API call times out (then retried)."})
    max_retries: int = field(
        default=6,
        metadata={
            "help": "Retries per call by the openai client on 408/409/429/5xx, connection errors and time-outs, "
            "with exponential back-off or the server's Retry-After."
        },
    )
    rpm: float | None = field(default=None, metadata={"help": "Requests-per-minute limit (all calls)."})
    tpm: float | None = field(
        default=None,
        metadata={
            "help": "Tokens-per-minute limit. Each HTTP attempt counts when it leaves, at its prompt estimate + "
            "max_tokens until its usage settles it; what was sent in any minute never exceeds the limit."
        },
    )

    rate_limit_wait: float = field(
        default=300.0,
        metadata={
            "help": "Seconds one call may keep waiting out rate limits (429s, retried without a limit of attempts "
            "until then, every request pausing for the server's Retry-After) before it fails."
        },
    )

    def rate_limiter(self) -> RateLimiter:
        return RateLimiter(self.rpm, self.tpm, max_wait=self.rate_limit_wait)


def chat_body(model: str, messages: list[dict], params: dict) -> dict:
    """A chat-completions request body; None parameters are not sent."""
    return {
        "model": model,
        "messages": messages,
        **{name: value for name, value in params.items() if value is not None},
    }


def estimate_prompt_tokens(messages: list[dict]) -> int:
    """A generous guess before the call (3 characters a token); the usage fields settle the difference."""
    return sum(len(m["content"]) // 3 + 4 for m in messages) + 3


def prompt_tokens_at_most(messages: list[dict]) -> int:
    """An upper bound of the prompt tokens a provider can bill: a byte-level BPE or SentencePiece token (with byte
    fallback) covers at least one UTF-8 byte, plus 8 tokens a message for the chat format's special tokens and 8
    for the reply's priming (OpenAI's format takes 3-4 and 3). What a budget reserves, so that it holds."""
    return sum(len((m.get("content") or "").encode()) + 8 for m in messages) + 8


def first_token_logprobs(choice) -> dict[str, float] | None:
    """{token: log-probability} of the first generated token's alternatives, when the request asked for
    `logprobs` / `top_logprobs` and the server sent them (OpenAI, vLLM); else None."""
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if not content:
        return None
    return {alternative.token: alternative.logprob for alternative in content[0].top_logprobs or []} or None


def billed_usage(usage, reserved: RoleUsage) -> RoleUsage:
    """What the provider billed for an answer the client could not use: its `usage` (an object or a dict) when it
    has one, else the call's reservation."""
    if isinstance(usage, dict):
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    else:
        prompt, completion = getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None)
    if isinstance(prompt, int) and isinstance(completion, int) and prompt + completion > 0:
        return RoleUsage(1, prompt, completion)
    return RoleUsage(1, reserved.prompt_tokens, reserved.completion_tokens)


def retry_after_seconds(headers) -> float:
    """The server's requested pause (`retry-after-ms` as OpenAI sends it, or `retry-after` seconds); else 1 s."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            seconds = float(headers.get(name)) / scale
        except (TypeError, ValueError):  # absent, or an HTTP date: the client's own back-off handles those
            continue
        if math.isfinite(seconds):
            return min(max(seconds, 0.0), 120.0)
    return 1.0


def resolve_api_key(api_key_env: str, base_url: str | None, needed: bool = True) -> str:
    register_key_variable(api_key_env)  # its value is redacted from every message and log line from now on
    key = os.environ.get(api_key_env)
    if key:
        return key
    if base_url is None and needed:
        raise EndpointError(f"set the {api_key_env} environment variable (the API key is read from it only)")
    return "not-needed"  # local servers (transformers serve, vLLM) accept any key


def describe_error(error: BaseException) -> str:
    """`Type: message` for reports and files, with any key an endpoint echoed back redacted."""
    return redact(f"{type(error).__name__}: {error}")


def describe_url(base_url: str | None) -> str:
    return base_url or "https://api.openai.com/v1"


class CallMeter:
    """One call's reservation, and the limiter entries of its HTTP attempts (the client's retries included)."""

    def __init__(self, held: int):
        self.held = held
        self.attempts: list[Sent] = []


# The call in progress in this task: httpx's request hook, awaited in the same task, finds its reservation here.
_CALL: contextvars.ContextVar[CallMeter | None] = contextvars.ContextVar("baize_call", default=None)


@contextlib.contextmanager
def metering(held: int) -> Iterator[CallMeter]:
    """The HTTP attempts made inside the block count `held` tokens each (the request hook acquires them)."""
    meter = CallMeter(held)
    token = _CALL.set(meter)
    try:
        yield meter
    finally:
        _CALL.reset(token)


class Endpoint:
    """One base URL: chat completions through the shared limiter, usage charged to a `RoleUsage`."""

    def __init__(
        self,
        base_url: str | None,
        api_key_env: str,
        *,
        limiter: RateLimiter | None = None,
        max_retries: int = 6,
        timeout: float = 120.0,
        offline: bool = False,
    ):
        """`offline`: nothing will be sent (Batch API files for an engine without the API), so no key is needed."""
        import openai

        self.base_url = base_url
        self.max_retries = max_retries
        self.limiter = limiter or RateLimiter()
        self.rate_limited = 0  # 429 answers seen (retries included)
        self.calls_without_usage = 0
        self.unusable_replies = 0  # 200 answers that were not a completion (billed: counted at usage or reservation)
        self.batch = None  # a baize.llm.batch.BatchSession once use_batches() is called
        self.client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=resolve_api_key(api_key_env, base_url, needed=not offline),
            max_retries=max_retries,
            timeout=timeout,
            http_client=openai.DefaultAsyncHttpxClient(
                event_hooks={"request": [self._before_request], "response": [self._on_response]}
            ),
        )

    async def _before_request(self, request) -> None:
        """Every HTTP attempt, the client's own retries included, acquires the limiter as it leaves: it waits out a
        shared pause (a 429's Retry-After) and the limits, and is counted at its call's reservation."""
        meter = _CALL.get()
        if meter is not None:
            meter.attempts.append(await self.limiter.acquire(meter.held))
            return
        wait = self.limiter.paused_until - self.limiter.clock()  # a request outside a metered call (preflight)
        while wait > 0:
            await self.limiter.sleep(wait)
            wait = self.limiter.paused_until - self.limiter.clock()

    async def _on_response(self, response) -> None:
        self.limiter.observe(response.headers)
        # A 429 (or a 503 that says when to come back) is about everyone's load: every request pauses. A bare 503
        # is one request's bad luck: only that request is retried, by the client.
        overloaded = response.status_code == 503 and any(
            h in response.headers for h in ("retry-after", "retry-after-ms")
        )
        if response.status_code != 429 and not overloaded:
            return
        meter = _CALL.get()
        if meter is not None and meter.attempts:  # refused: it used none of the limit
            self.limiter.refund(meter.attempts[-1])
        self.rate_limited += response.status_code == 429
        self.limiter.pause(retry_after_seconds(response.headers))

    def use_batches(self, folder, **options):
        """From now on `chat` goes into OpenAI Batch API batches kept in `folder` (baize.llm.batch.BatchSession's
        options), and `gather` runs coroutines batch by batch."""

        self.batch = BatchSession(self.client, folder, where=describe_url(self.base_url), **options)
        return self.batch

    def call_id(self, model: str, messages: list[dict], **params) -> str:
        """An id for a spend ledger: a fresh one per live call; in a batch, the request's custom_id, the same for the
        same request in a restarted run (so its reservation and its settlement meet)."""
        if self.batch is None:
            return uuid.uuid4().hex

        return custom_id(batch_label.get(), chat_body(model, messages, params))

    async def gather(self, coroutines: Iterable[Awaitable], limit: int) -> list:
        """Run the stage's coroutines: `limit` at a time against a live endpoint, all of them batch by batch."""
        if self.batch is not None:
            return await self.batch.run(coroutines)
        return await gather_bounded(coroutines, limit)

    async def together(self, *coroutines: Awaitable) -> list:
        """`asyncio.gather` for the calls of one coroutine of `gather` (several verdicts on one prompt)."""
        if self.batch is not None:
            return await self.batch.gather(*coroutines)
        return await asyncio.gather(*coroutines)

    async def chat(
        self, model: str, messages: list[dict], usage: RoleUsage | None = None, retries: int | None = None, **params
    ) -> tuple[Completion, RoleUsage]:
        """One chat completion (first choice); returns it and this call's usage (also added to `usage`).
        `retries` overrides the client's max_retries for this call; `params`: temperature, top_p, max_tokens, stop,
        seed... (None values are not sent)."""
        params = {name: value for name, value in params.items() if value is not None}
        if self.batch is not None:
            return await self._batch_chat(model, messages, usage, params)
        reserved = RoleUsage(1, estimate_prompt_tokens(messages), params.get("max_tokens", 0))
        retries = self.max_retries if retries is None else retries
        request = self._create(model, messages, params, retries, reserved)
        response, unusable, call = await self._metered(reserved, usage, request)
        choice = response.choices[0]
        tokens = call.completion_tokens - unusable.completion_tokens if response.usage is not None else None
        completion = Completion(choice.message.content or "", choice.finish_reason, tokens, unusable=unusable.calls)
        completion.first_token_logprobs = first_token_logprobs(choice)
        return completion, call

    async def _batch_chat(self, model: str, messages: list[dict], usage: RoleUsage | None, params: dict):
        """`chat` as a line of the next batch: the same Completion and usage from the batch's output line."""
        from openai.types.chat import ChatCompletion

        body, replayed = await self.batch.request(chat_body(model, messages, params))
        reserved = RoleUsage(1, estimate_prompt_tokens(messages), params.get("max_tokens", 0))
        try:
            response = ChatCompletion.model_validate(body)
        except ValueError as error:  # pydantic's ValidationError: not a chat completion, but billed all the same
            raise MalformedReply(
                f"{describe_url(self.base_url)} sent a malformed batch answer ({error})",
                billed_usage(body.get("usage"), reserved),
                unusable=1,
            ) from None
        if not response.choices:
            raise MalformedReply(
                f"{describe_url(self.base_url)} sent a batch answer without choices",
                billed_usage(body.get("usage"), reserved),
                unusable=1,
            )
        call = self._usage_of(response)
        if usage is not None:
            usage.add(call)
        choice = response.choices[0]
        tokens = call.completion_tokens if response.usage is not None else None
        completion = Completion(choice.message.content or "", choice.finish_reason, tokens, replayed)
        completion.first_token_logprobs = first_token_logprobs(choice)
        return completion, call

    async def complete_text(
        self, model: str, prompt: str, n: int = 1, usage: RoleUsage | None = None, **params
    ) -> tuple[list[Completion], RoleUsage]:
        """`n` completions of a raw prompt text (`/v1/completions`, as `vllm serve` offers it): the caller built
        the text with its chat template, so the server adds none. `params`: max_tokens, stop, temperature, top_p,
        seed... (None values are not sent). Each Completion's token count is unknown here (usage is per call)."""
        params = {name: value for name, value in params.items() if value is not None}
        reserved = RoleUsage(1, estimate_prompt_tokens([{"content": prompt}]), n * params.get("max_tokens", 0))
        response, _, call = await self._metered(reserved, usage, self._create_text(model, prompt, n, params))
        choices = sorted(response.choices or [], key=lambda choice: choice.index)
        if not choices:
            raise MalformedReply(f"{describe_url(self.base_url)} sent a completion without choices")
        # Fewer than n: a server that ignores `n` (transformers serve); the caller asks again for the rest.
        return [Completion(choice.text or "", choice.finish_reason) for choice in choices[:n]], call

    async def stream_chat(self, model: str, messages: list[dict], **params) -> AsyncIterator[str]:
        """One chat completion streamed (the web demo): yields the text as it arrives. Closing the iterator (a
        Stop in the page) closes the HTTP stream, which is what tells the server to stop generating."""
        params = {name: value for name, value in params.items() if value is not None}
        used = 0
        with metering(estimate_prompt_tokens(messages) + params.get("max_tokens", 0)) as meter:
            # the request leaves inside `metering`; the text arrives after it (a generator's yields leave the task)
            stream = await self.client.chat.completions.create(model=model, messages=messages, stream=True, **params)
        try:
            async with stream:
                async for chunk in stream:
                    if chunk.usage is not None:
                        used = (chunk.usage.prompt_tokens or 0) + (chunk.usage.completion_tokens or 0)
                    if chunk.choices and chunk.choices[0].delta.content:
                        yield chunk.choices[0].delta.content
        finally:
            self.limiter.settle(meter.attempts[-1], used or meter.held)

    async def _metered(self, reserved: RoleUsage, usage: RoleUsage | None, request: Awaitable):
        """Await one request under the limiter: each HTTP attempt is counted at `reserved` as it leaves (the
        request hook), and the last one settles at the call's usage. `request` gives the response and what unusable
        200 answers before it were billed (`_create`); returns the response, what was unusable, and this call's
        usage with both counted (also added to `usage`)."""
        call = RoleUsage(calls=1)  # an HTTP error after the retries was not billed
        with metering(reserved.prompt_tokens + reserved.completion_tokens) as meter:
            try:
                response, unusable = await request
                call = self._usage_of(response)
                call.prompt_tokens += unusable.prompt_tokens
                call.completion_tokens += unusable.completion_tokens
            except MalformedReply as error:
                if error.billed is not None:  # billed all the same: charged to the caller's usage too
                    call = error.billed
                    if usage is not None:
                        usage.add(call)
                raise
            finally:
                if meter.attempts:
                    self.limiter.settle(meter.attempts[-1], call.prompt_tokens + call.completion_tokens)
        if usage is not None:
            usage.add(call)
        return response, unusable, call

    def _usage_of(self, response) -> RoleUsage:
        """One call's usage from its response (a server that sends none is counted, and costs 0 tokens here)."""
        call = RoleUsage(calls=1)
        if response.usage is None:
            self.calls_without_usage += 1
        else:
            call.prompt_tokens = response.usage.prompt_tokens or 0
            call.completion_tokens = response.usage.completion_tokens or 0
        return call

    async def _create_text(self, model: str, prompt: str, n: int, params: dict):
        response = await self._rate_limited(self.client.completions.create, model=model, prompt=prompt, n=n, **params)
        return response, RoleUsage(calls=0)

    async def _rate_limited(self, create, **request):
        """`create(**request)`, asked again after the client's own retries end in a 429, for as long as the
        limiter's `max_wait` lasts: a rate limit delays a call, it does not fail it (the shared pause spaces the
        attempts). A 429 that is not a rate limit (an exhausted quota) fails at once."""
        import openai

        deadline = None
        while True:
            try:
                return await create(**request)
            except openai.RateLimitError as error:
                if getattr(error, "code", None) == "insufficient_quota":
                    raise
                now = self.limiter.clock()
                deadline = deadline if deadline is not None else now + self.limiter.max_wait
                if now >= deadline:
                    raise
                await self.limiter.sleep(max(self.limiter.paused_until - now, 0.0) + 0.05)

    async def _create(self, model: str, messages: list[dict], params: dict, retries: int, reserved: RoleUsage):
        """The request and what unusable answers before it were billed. A 200 whose body is not a completion (no
        choices, cut or malformed JSON) is retried like a transient error, which the client only does for HTTP
        errors; the provider bills such an answer all the same: at its `usage` where the body has one, else
        (a cut body) at the call's reservation, never at 0."""
        import openai

        client = self.client if retries == self.max_retries else self.client.with_options(max_retries=retries)
        unusable = RoleUsage(calls=0)
        for attempt in range(retries + 1):
            try:
                response = await self._rate_limited(client.chat.completions.create, model=model, messages=messages,
                                                    **params)  # fmt: skip
                if response.choices:
                    return response, unusable
                problem = "a completion without choices"
                billed = billed_usage(response.usage, reserved)
            except openai.APIResponseValidationError as error:
                problem = f"a malformed completion ({error})"
                billed = billed_usage(error.body.get("usage") if isinstance(error.body, dict) else None, reserved)
            except json.JSONDecodeError as error:
                problem = f"a malformed completion ({error})"
                billed = billed_usage(None, reserved)
            unusable.add(billed)
            self.unusable_replies += 1
            if attempt < retries:
                await self.limiter.sleep(min(8.0, 0.5 * 2**attempt))
        total = RoleUsage(1, unusable.prompt_tokens, unusable.completion_tokens)
        raise MalformedReply(
            f"{describe_url(self.base_url)} sent {problem}, {retries + 1} times", total, unusable=unusable.calls
        )

    async def close(self) -> None:
        if self.batch is not None:
            self.batch.close()
        await self.client.close()


async def gather_bounded(coroutines: Iterable[Awaitable], limit: int) -> list:
    """`asyncio.gather` with at most `limit` awaiting at once; results in order (an exception propagates: the
    callers handle the request errors they expect, anything else is a bug)."""
    semaphore = asyncio.Semaphore(max(1, limit))

    async def bounded(coroutine):
        async with semaphore:
            return await coroutine

    return await asyncio.gather(*(bounded(c) for c in coroutines))
