"""The teacher: `openai.AsyncOpenAI` behind a shared RPM/TPM limiter, with usage and cost accounting.

Retries (429, 5xx, time-outs, connection errors; Retry-After honoured) are the openai client's own. What
it cannot do, because each request retries on its own, is make the *other* requests back off: a response
hook sees every 429/503 with Retry-After and pauses the limiter, so a rate limit does not turn into a
storm of 429s from all the concurrent dialogues.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from baize.collect.config import CollectConfig

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- rate limiting


class TokenBucket:
    """`per_minute` refilled continuously; at most one second's worth is spent in a burst.

    Providers enforce per-minute limits over shorter windows too, so the bucket is kept small. A cost
    larger than the bucket is let through when the bucket is full (it then goes into debt), so no
    request waits forever.
    """

    def __init__(self, per_minute: float, clock: Callable[[], float]):
        self.rate = per_minute / 60.0
        self.capacity = self.rate  # one second's worth
        self.level = self.capacity
        self.clock = clock
        self.updated = clock()

    def refill(self) -> None:
        now = self.clock()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait_time(self, cost: float) -> float:
        self.refill()
        needed = min(cost, self.capacity)
        return 0.0 if self.level >= needed else (needed - self.level) / self.rate


class RateLimiter:
    """Requests- and tokens-per-minute limits shared by every call, and a shared pause after a 429."""

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable] = asyncio.sleep,
    ):
        self.requests = TokenBucket(rpm, clock) if rpm else None
        self.tokens = TokenBucket(tpm, clock) if tpm else None
        self.clock, self.sleep = clock, sleep
        self.paused_until = 0.0
        self._lock = asyncio.Lock()  # waiters are served in order

    async def acquire(self, tokens: int) -> None:
        async with self._lock:
            while True:
                wait = max(
                    self.paused_until - self.clock(),
                    self.requests.wait_time(1) if self.requests else 0.0,
                    self.tokens.wait_time(tokens) if self.tokens else 0.0,
                )
                if wait <= 0:
                    break
                await self.sleep(wait)
            if self.requests:
                self.requests.level -= 1
            if self.tokens:
                self.tokens.level -= tokens

    def settle(self, reserved: int, used: int) -> None:
        """A call reserved `reserved` tokens and its usage says `used`: give back (or charge) the difference."""
        if self.tokens:
            self.tokens.refill()
            self.tokens.level = min(self.tokens.capacity, self.tokens.level + reserved - used)

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, self.clock() + seconds)


# --------------------------------------------------------------------------- usage and cost


@dataclass
class RoleUsage:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def add(self, other: RoleUsage) -> None:
        self.calls += other.calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cost_usd += other.cost_usd


@dataclass
class Usage:
    """Token usage and cost by role (`user` simulator, `assistant` turns / `transcript` calls)."""

    roles: dict[str, RoleUsage] = field(default_factory=dict)

    def add(self, role: str, usage: RoleUsage) -> None:
        self.roles.setdefault(role, RoleUsage()).add(usage)

    def merge(self, other: Usage) -> None:
        for role, usage in other.roles.items():
            self.add(role, usage)

    @property
    def total(self) -> RoleUsage:
        total = RoleUsage()
        for usage in self.roles.values():
            total.add(usage)
        return total

    def summary(self) -> dict:
        """The `usage` column: totals over both roles."""
        total = self.total
        return {
            "calls": total.calls,
            "prompt_tokens": total.prompt_tokens,
            "completion_tokens": total.completion_tokens,
            "total_tokens": total.prompt_tokens + total.completion_tokens,
            "cost_usd": round(total.cost_usd, 8),
        }

    def by_role(self) -> dict:
        return {role: dict(usage.__dict__) for role, usage in self.roles.items()}

    @classmethod
    def from_by_role(cls, data: dict) -> Usage:
        return cls({role: RoleUsage(**values) for role, values in (data or {}).items()})


# --------------------------------------------------------------------------- the client


@dataclass
class Completion:
    content: str
    finish_reason: str | None


def estimate_prompt_tokens(messages: list[dict]) -> int:
    """A generous guess before the call (3 characters a token); the usage fields settle the difference."""
    return sum(len(m["content"]) // 3 + 4 for m in messages) + 3


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


def resolve_api_key(config: CollectConfig) -> str:
    key = os.environ.get(config.api_key_env)
    if key:
        return key
    if config.base_url is None:
        raise SystemExit(f"Set the {config.api_key_env} environment variable (the API key is read from it only).")
    return "not-needed"  # local servers (transformers serve, vLLM) accept any key


def resolve_model_name(config: CollectConfig) -> str:
    """`pkg:NAME` + GGUF -> the converted local folder, which is the model name `transformers serve` loads."""
    if config.teacher_model.startswith("pkg:") or config.teacher_gguf_file:
        from baize.models import resolve_model_path

        return resolve_model_path(config.teacher_model, config.teacher_gguf_file)
    return config.teacher_model


class Teacher:
    """Chat calls by role, each through the limiter, with usage charged to the dialogue and to the run."""

    def __init__(self, config: CollectConfig, limiter: RateLimiter, spent: Usage):
        import openai

        self.config = config
        self.limiter = limiter
        self.spent = spent  # everything this output dir has spent: journal totals + this run's calls
        self.rate_limited = 0  # 429 answers seen (retries included)
        self.calls_without_usage = 0
        self.unpriced: set[str] = set()
        model = resolve_model_name(config)
        self.models = {"assistant": model, "transcript": model, "user": config.user_model or model}
        self.client = openai.AsyncOpenAI(
            base_url=config.base_url,
            api_key=resolve_api_key(config),
            max_retries=config.max_retries,
            timeout=config.timeout,
            http_client=openai.DefaultAsyncHttpxClient(event_hooks={"response": [self._on_response]}),
        )

    async def _on_response(self, response) -> None:
        if response.status_code not in (429, 503):
            return
        self.rate_limited += response.status_code == 429
        self.limiter.pause(retry_after_seconds(response.headers))

    def sampling(self, role: str) -> dict:
        prefix = "user" if role == "user" else "assistant"
        params = {
            "temperature": getattr(self.config, f"{prefix}_temperature"),
            "top_p": getattr(self.config, f"{prefix}_top_p"),
            "max_tokens": getattr(self.config, f"{prefix}_max_tokens"),
        }
        return {name: value for name, value in params.items() if value is not None}

    async def chat(self, role: str, messages: list[dict], usage: Usage, stop: list[str] | None = None) -> Completion:
        params = self.sampling(role)
        reserved = estimate_prompt_tokens(messages) + params.get("max_tokens", 0)
        await self.limiter.acquire(reserved)
        used = 0
        try:
            response = await self.client.chat.completions.create(
                model=self.models[role], messages=messages, **params, **({"stop": stop} if stop else {})
            )
            used = self.charge(role, response, usage)
        finally:
            self.limiter.settle(reserved, used)
        choice = response.choices[0]
        return Completion(choice.message.content or "", choice.finish_reason)

    def charge(self, role: str, response, usage: Usage) -> int:
        if response.usage is None:
            self.calls_without_usage += 1
            call = RoleUsage(calls=1)
        else:
            call = RoleUsage(1, response.usage.prompt_tokens or 0, response.usage.completion_tokens or 0)
            name = self.config.user_model if role == "user" and self.config.user_model else self.config.teacher_model
            price = self.config.price(name)
            if price is None:
                self.unpriced.add(name)
            else:
                call.cost_usd = (
                    call.prompt_tokens * price.get("prompt", 0.0)
                    + call.completion_tokens * price.get("completion", 0.0)
                ) / 1e6
        usage.add(role, call)
        self.spent.add(role, call)
        return call.prompt_tokens + call.completion_tokens

    async def close(self) -> None:
        await self.client.close()
