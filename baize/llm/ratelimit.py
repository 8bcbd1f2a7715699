"""Client-side rate limiting shared by every call of a run (baize.llm.endpoint applies it to every HTTP attempt).

A request is counted when it leaves, not when its coroutine is scheduled: the endpoint client acquires in httpx's
request hook, so a late event loop, a slow disk sync before the send, or the client's own retries cannot turn
into requests that leave uncounted or all at once. Three limits hold together:
- a requests- and a tokens-per-minute token bucket holding one second's worth: sends are paced, never bunched;
- a 60-second window of what was sent (a request in flight at its reservation, prompt estimate + max_tokens; a
  settled one at its billed usage): the tokens and requests sent in any minute never exceed the limits given,
  however the loop runs;
- what the server says: a 429's Retry-After pauses every request (not only the one refused), and the
  `x-ratelimit-remaining-*` / `x-ratelimit-reset-*` headers hold sends back until the server's own reset.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable

WINDOW_SECONDS = 60.0


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


class Sent:
    """One HTTP attempt in the window: when it left and what it counts (its reservation until it settles)."""

    __slots__ = ("at", "tokens", "in_window")

    def __init__(self, at: float, tokens: float):
        self.at, self.tokens, self.in_window = at, tokens, False


class RateLimiter:
    """Requests- and tokens-per-minute limits shared by every call, a shared pause after a 429, the server's own
    remaining budget, and how long one call may keep waiting out 429s (`max_wait` seconds)."""

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable] = asyncio.sleep,
        max_wait: float = 300.0,
    ):
        self.rpm, self.tpm = rpm, tpm
        self.requests = TokenBucket(rpm, clock) if rpm else None
        self.tokens = TokenBucket(tpm, clock) if tpm else None
        self.clock, self.sleep = clock, sleep
        self.max_wait = max_wait
        self.paused_until = 0.0
        self.window: deque[Sent] = deque()
        self.window_tokens = 0.0  # what the window's entries count, kept as they come, settle and leave
        self.server_tokens: list[float] | None = None  # [tokens the server said remain, when its count resets]
        self._lock = asyncio.Lock()  # waiters are served in order

    def _window_wait(self, tokens: float, now: float) -> float:
        """Seconds until `tokens` more fit in the last minute's sends (0: now)."""
        while self.window and self.window[0].at <= now - WINDOW_SECONDS:
            gone = self.window.popleft()
            gone.in_window = False
            self.window_tokens -= gone.tokens
        wait = 0.0
        if self.rpm and len(self.window) + 1 > self.rpm:
            wait = self.window[len(self.window) - int(self.rpm)].at + WINDOW_SECONDS - now
        if self.tpm and self.window:
            excess = self.window_tokens + min(tokens, self.tpm) - self.tpm
            for sent in self.window:  # the oldest sends leave the window first
                if excess <= 0:
                    break
                excess -= sent.tokens
                wait = max(wait, sent.at + WINDOW_SECONDS - now)
        return max(wait, 0.0)

    def _server_wait(self, tokens: float, now: float) -> float:
        if self.server_tokens is None:
            return 0.0
        remaining, reset_at = self.server_tokens
        if now >= reset_at:
            self.server_tokens = None
            return 0.0
        return reset_at - now if tokens > remaining else 0.0

    async def acquire(self, tokens: float) -> Sent:
        """Wait until `tokens` may be sent now; the returned entry is settled (or refunded) when the answer comes."""
        async with self._lock:
            while True:
                now = self.clock()
                wait = max(
                    self.paused_until - now,
                    self.requests.wait_time(1) if self.requests else 0.0,
                    self.tokens.wait_time(tokens) if self.tokens else 0.0,
                    self._window_wait(tokens, now),
                    self._server_wait(tokens, now),
                )
                if wait <= 0:
                    break
                await self.sleep(wait)
            if self.requests:
                self.requests.level -= 1
            if self.tokens:
                self.tokens.level -= tokens
            if self.server_tokens is not None:
                self.server_tokens[0] -= tokens
            sent = Sent(self.clock(), tokens)
            if self.rpm or self.tpm:
                self.window.append(sent)
                sent.in_window = True
                self.window_tokens += tokens
            return sent

    def settle(self, sent: Sent, used: float) -> None:
        """An attempt counted at its reservation and its usage says `used`: the window counts `used` from now on,
        and the bucket gets back (or is charged) the difference. Settling again with the same figure changes
        nothing (a refused attempt is refunded, then settled at its call's usage of 0)."""
        difference, sent.tokens = sent.tokens - used, used
        if sent.in_window:
            self.window_tokens -= difference
        if self.tokens:
            self.tokens.refill()
            self.tokens.level = min(self.tokens.capacity, self.tokens.level + difference)

    def refund(self, sent: Sent) -> None:
        """An attempt the server refused (429): it used none of the limit. Its request slot stays counted."""
        self.settle(sent, 0)

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, self.clock() + seconds)

    def observe(self, headers) -> None:
        """The server's `x-ratelimit-remaining-*` / `x-ratelimit-reset-*` headers (OpenAI's names), where it sends
        them: no requests left pauses everyone until the reset; the tokens left bound what is sent until then."""
        now = self.clock()
        requests_left = _number(headers.get("x-ratelimit-remaining-requests"))
        requests_reset = _duration(headers.get("x-ratelimit-reset-requests"))
        if requests_left is not None and requests_left <= 0 and requests_reset:
            self.pause(requests_reset)
        tokens_left = _number(headers.get("x-ratelimit-remaining-tokens"))
        tokens_reset = _duration(headers.get("x-ratelimit-reset-tokens"))
        if tokens_left is not None and tokens_reset:
            self.server_tokens = [tokens_left, now + tokens_reset]


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(value) -> float | None:
    """A reset header as seconds: OpenAI's "1s", "6m0s", "20ms", or a plain number of seconds (capped at 120 s:
    a header from a misconfigured server must not stall a run for hours)."""
    if value is None:
        return None
    seconds = _number(value)
    if seconds is None:
        parts = _DURATION.findall(str(value))
        if not parts or "".join(f"{n}{u}" for n, u in parts) != str(value).strip():
            return None
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    return min(max(seconds, 0.0), 120.0)
