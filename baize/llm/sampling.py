"""One way to ask a model for answers: a conversation ending in a user turn -> N completions, each with its text,
finish reason and token count. SDF sampling, the SDF gate, eval answering, the web demo and the chat all ask
through here.

Two backends behind one call shape, `await sampler.sample(requests, settings, concurrency=, on_sampled=,
on_error=)` (`sample_all` runs it for a stage: waves, failures counted, the sampler closed), with one settings type
(baize.llm.generation.SamplingSettings):
- `LocalSampler`: a model loaded in this process (baize.modeling.loading.ChatModel), prompted by the shared prompt builder;
  several prompts x N samples per `generate` call, each prompt's prefill computed once and shared by its N
  samples (baize.llm.generation), grouped by temperature; one seed per batch, derived from the request ids, so a
  resumed run samples the same.
- `EndpointSampler`: OpenAI-compatible servers (one or several base URLs, round robin, one shared limiter)
  through the one endpoint client. With a prompt builder, the builder's prompt text goes to `/v1/completions`
  (with `n`, the turn-tag stops and a per-request seed; a server that ignores `n` is asked again for the rest),
  so an endpoint model is prompted exactly as the local one. Without one, the messages go to
  `/v1/chat/completions` and the server applies its own chat template; that path also runs as Batch API lines
  when the endpoint uses batches (baize.llm.batch).

Both also stream one reply for a chat (`stream`): the demo's history budget, stop strings and Stop button.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from baize.io.errors import requests_failed
from baize.llm.endpoint import Endpoint, describe_error, estimate_prompt_tokens
from baize.llm.generation import SamplingSettings, batch_seed, generate_candidates, generate_reply
from baize.llm.prices import RoleUsage
from baize.prompts import reply_text

logger = logging.getLogger(__name__)


@dataclass
class SampleRequest:
    """One conversation to answer `n` times. `id` keys its seed (a resumed run asks the same);
    `temperature` overrides the settings' (eval's per-category temperatures)."""

    id: str
    messages: list[dict]
    n: int = 1
    temperature: float | None = None


@dataclass
class Sample:
    text: str  # the answer, cut before any turn tag, stripped
    finish_reason: str | None  # "stop" (EOS or a turn tag) or "length"; a chat endpoint's own word otherwise
    new_tokens: int | None  # generated tokens, whatever ended the answer included; None when unknown

    def as_dict(self) -> dict:
        return {"text": self.text, "finish_reason": self.finish_reason, "new_tokens": self.new_tokens}


@dataclass
class Sampled:
    request: SampleRequest
    samples: list[Sample]
    prompt_tokens: int | None = None


class LocalSampler:
    """A model in this process, prompted by `builder` (a baize.prompts.PromptBuilder for its tokenizer)."""

    def __init__(self, chat, builder, *, batch_size: int = 8, share_prefill: bool = True):
        self.chat, self.builder = chat, builder
        self.batch_size, self.share_prefill = batch_size, share_prefill
        self.lock = threading.Lock()  # one generate() at a time on the one model (the web demo's visitors)

    async def sample(
        self, requests: list[SampleRequest], settings: SamplingSettings, *, concurrency: int = 1,
        on_sampled: Callable[[Sampled], None], on_error: Callable[[SampleRequest, BaseException], None] | None = None,
    ) -> None:  # fmt: skip
        """Every request, batch by batch in a worker thread (the event loop stays free), `on_sampled` as each batch
        is done: requests grouped by temperature and `n`, `batch_size` prompts per `generate` call. `concurrency`
        and `on_error` are the endpoint sampler's: one model generates one batch at a time, and a failed `generate`
        is a bug, not a request to retry, so it propagates."""
        groups: dict[tuple[float, int], list[SampleRequest]] = {}
        for request in requests:
            temperature = settings.temperature if request.temperature is None else request.temperature
            groups.setdefault((temperature, request.n), []).append(request)
        for (temperature, n), group in sorted(groups.items()):
            for first in range(0, len(group), self.batch_size):
                batch = group[first : first + self.batch_size]
                for sampled in await asyncio.to_thread(self._generate, batch, settings, temperature, n):
                    on_sampled(sampled)

    def _generate(self, batch: list[SampleRequest], settings: SamplingSettings, temperature: float, n: int):
        import torch

        prompts = [self.builder.encode_messages(request.messages) for request in batch]
        with self.lock:
            torch.manual_seed(batch_seed(settings.seed, [request.id for request in batch]))
            results = generate_candidates(
                self.chat.model,
                self.chat.tokenizer,
                prompts,
                n,
                max_new_tokens=settings.max_new_tokens,
                temperature=temperature,
                top_p=settings.top_p,
                share_prefill=self.share_prefill and n > 1,
                stop_strings=self.builder.stop_strings,
            )
        return [
            Sampled(request, [Sample(**sample) for sample in samples], len(ids))
            for request, ids, samples in zip(batch, prompts, results, strict=True)
        ]

    def reply(self, prompt, settings: SamplingSettings, *, stop_strings: list[str] | None = None, on_text=None,
              interrupt: threading.Event | None = None):  # fmt: skip
        """One reply to a built prompt (baize.prompts.Prompt), streamed to `on_text` as it comes (never a turn
        tag); Ctrl-C or `interrupt` ends it at its next token (`baize chat`'s turn)."""
        with self.lock:  # a stopped reply's last token, and the next reply's first
            return generate_reply(self.chat, prompt, settings, stop_strings=stop_strings, on_text=on_text,
                                  interrupt=interrupt)  # fmt: skip

    async def stream(
        self, history: list[tuple[str, str]], question: str, settings: SamplingSettings, *, system=...,
        max_history_tokens: int | None = None,
    ) -> AsyncIterator[str]:  # fmt: skip
        """One reply streamed as it is generated (never a turn tag); closing the iterator stops generation."""
        builder = self.chat.prompt_builder(system=system, max_history_tokens=max_history_tokens)
        prompt = builder.build(history, question)
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue = asyncio.Queue()
        interrupt = threading.Event()

        def generate():
            try:
                self.reply(prompt, settings, stop_strings=builder.stop_strings, interrupt=interrupt,
                           on_text=lambda text: loop.call_soon_threadsafe(chunks.put_nowait, text))  # fmt: skip
            finally:
                loop.call_soon_threadsafe(chunks.put_nowait, None)

        worker = loop.run_in_executor(None, generate)
        try:
            while (chunk := await chunks.get()) is not None:
                yield chunk
            await worker  # a generation error surfaces here
        finally:
            interrupt.set()  # Stop in the page (the task is cancelled) ends generate() at its next token

    def report(self) -> dict:
        return {}

    async def close(self) -> None:
        pass


class EndpointSampler:
    """OpenAI-compatible servers asked for `model`: the builder's prompt text at /v1/completions when a builder is
    given (prompted like the local model), else the messages at /v1/chat/completions (the server's template)."""

    def __init__(
        self, endpoints: list[Endpoint], model: str, *, builder=None, stop_strings: list[str] | None = None,
        extra_body: dict | None = None,
    ):  # fmt: skip
        """`stop_strings`: sent with every request (default: the builder's turn tags; none for chat requests)."""
        if not endpoints:
            raise ValueError("EndpointSampler needs at least one endpoint")
        self.endpoints, self.model, self.builder, self.extra_body = endpoints, model, builder, extra_body
        self.stops = list(stop_strings if stop_strings is not None else builder.stop_strings if builder else [])
        self.usage = RoleUsage()
        self.per_server = [0] * len(endpoints)

    async def ask(self, request: SampleRequest, settings: SamplingSettings, server: int = 0) -> list[Sample]:
        """`request.n` answers from one server (an openai.APIError after the client's retries propagates)."""
        temperature = settings.temperature if request.temperature is None else request.temperature
        endpoint = self.endpoints[server % len(self.endpoints)]
        if self.builder is None:  # the server's chat template; one call per answer
            samples = []
            for _ in range(request.n):
                completion, _ = await endpoint.chat(
                    self.model,
                    request.messages,
                    self.usage,
                    temperature=temperature,
                    max_tokens=settings.max_new_tokens,
                    stop=self.stops or None,
                )
                samples.append(
                    Sample(completion.content.strip(), completion.finish_reason, completion.completion_tokens)
                )
            return samples
        seed = batch_seed(settings.seed, [request.id])
        text = self.builder.render_messages(request.messages)
        completions = []
        while len(completions) < request.n:  # one call, or one per answer where the server ignores `n`
            more, _ = await endpoint.complete_text(
                self.model,
                text,
                n=request.n - len(completions),
                usage=self.usage,
                max_tokens=settings.max_new_tokens,
                stop=self.stops or None,
                temperature=temperature,
                top_p=settings.top_p if temperature > 0 else None,
                seed=seed + len(completions),
                extra_body=self.extra_body,
            )
            completions += more
        tokenizer = self.builder.tokenizer
        samples = []
        for completion in completions:
            ended = completion.finish_reason == "stop"  # EOS or a turn tag: the server ended it, counted as one
            tokens = len(tokenizer(completion.content, add_special_tokens=False)["input_ids"]) + ended
            samples.append(Sample(reply_text(completion.content, self.stops), "stop" if ended else "length", tokens))
        return samples

    async def sample(
        self,
        requests: list[SampleRequest],
        settings: SamplingSettings,
        *,
        concurrency: int,
        on_sampled: Callable[[Sampled], None],
        on_error: Callable[[SampleRequest, BaseException], None],
    ) -> None:
        """Every request, `concurrency` in flight over all servers (request i at server i mod the count);
        `on_sampled` gets each answered request as it comes, `on_error` each one that failed after the retries
        (the caller's next run asks it again)."""
        prompt_tokens = self.builder is not None

        async def one(index: int, request: SampleRequest) -> None:
            server = index % len(self.endpoints)
            try:
                samples = await self.ask(request, settings, server)
            except Exception as error:  # openai.APIError after the client's retries, a malformed reply
                logger.warning("request %s failed at %s: %s", request.id, self.endpoints[server].base_url, error)
                on_error(request, error)
                return
            self.per_server[server] += 1
            tokens = len(self.builder.encode_messages(request.messages)) if prompt_tokens else None
            on_sampled(Sampled(request, samples, tokens))

        await self.endpoints[0].gather((one(i, request) for i, request in enumerate(requests)), concurrency)

    async def stream(
        self, history: list[tuple[str, str]], question: str, settings: SamplingSettings, *, system: str | None = None,
        max_history_tokens: int = 2048,
    ) -> AsyncIterator[str]:  # fmt: skip
        """One chat reply streamed: the system text, the newest exchanges that fit in `max_history_tokens`
        (estimated), the question. Closing the iterator closes the HTTP stream (the server stops)."""
        head = [{"role": "system", "content": system}] if system else []
        tail = [{"role": "user", "content": question}]
        for user, assistant in reversed(history):
            turn = [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
            if estimate_prompt_tokens(head + turn + tail) > max_history_tokens:
                break
            tail = turn + tail
        stream = self.endpoints[0].stream_chat(
            self.model,
            head + tail,
            temperature=settings.temperature,
            top_p=settings.top_p,
            max_tokens=int(settings.max_new_tokens),
            stop=self.stops or None,
        )
        try:
            async for chunk in stream:
                yield chunk
        finally:
            await stream.aclose()

    def report(self) -> dict:
        """The servers' usage and how many requests each one answered."""
        return {"usage": self.usage.as_dict(), "per_server": self.per_server}

    async def close(self) -> None:
        for endpoint in self.endpoints:
            await endpoint.close()


def sample_all(
    sampler, requests: list[SampleRequest] | Callable[[set[str]], list[SampleRequest]], settings: SamplingSettings,
    on_sampled: Callable[[Sampled], None], *, concurrency: int = 1, failing: tuple[str, str, str] | None = None,
) -> dict:  # fmt: skip
    """The one sampler call of every stage, for a local model and for endpoints alike: every request answered,
    `on_sampled` as each comes. `requests` may be a function that gives the next wave, given the ids of the
    requests that failed so far, until it gives none (eval's later turns wait for the earlier ones). A request that
    fails after the client's retries is counted and left for the caller's next run; the sampler is closed at the
    end. With `failing` = (who, the requests' name, the keys to check), failed requests end the call in one line
    (baize.io.errors.requests_failed) once the rest are answered. Returns {request_errors, last_error, failed, and
    the sampler's report (usage, per server)}."""
    stats: dict = {"request_errors": 0, "failed": set(), "asked": 0}

    def failed(request: SampleRequest, error: BaseException) -> None:
        stats["request_errors"] += 1
        stats["last_error"] = describe_error(error)
        stats["failed"].add(request.id)

    def next_wave() -> list[SampleRequest]:
        return requests(stats["failed"]) if callable(requests) else []

    async def run() -> None:
        wave = next_wave() if callable(requests) else requests
        try:
            while wave:
                stats["asked"] += len(wave)
                await sampler.sample(wave, settings, concurrency=concurrency, on_sampled=on_sampled, on_error=failed)
                wave = next_wave()
        finally:
            await sampler.close()

    asyncio.run(run())
    if failing and stats["request_errors"]:  # what came is kept; the re-run asks only for the rest
        who, items, check = failing
        raise requests_failed(who, stats["request_errors"], stats["asked"], items, stats["last_error"], check)
    return {**stats, **sampler.report()}
