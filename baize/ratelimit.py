"""Client-side rate limiting shared by every call of a run: requests- and tokens-per-minute token buckets and a
shared pause after a 429 (baize.endpoint applies it to every request)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


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
