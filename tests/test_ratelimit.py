"""The limiter (baize.llm.ratelimit) and the endpoint client's rate-limit policy: what is sent in any minute never
exceeds the limits given, however late the loop runs; the server's headers hold sends back; 429s delay a call
(retried without a limit of attempts while `rate_limit_wait` lasts), they do not fail it."""

from __future__ import annotations

import asyncio
import random

import pytest
from openai_server import OpenAIServer, Reply, rate_limited

from baize.llm.endpoint import Endpoint
from baize.llm.prices import RoleUsage
from baize.llm.ratelimit import RateLimiter, _duration


def test_no_minute_ever_holds_more_than_the_limit_however_late_the_loop_wakes():
    now = [0.0]
    rng = random.Random(0)

    async def late_sleep(seconds):  # a busy machine: every wake-up comes 0-3 s late
        now[0] += seconds + rng.uniform(0, 3)

    tpm, rpm = 6000, 40
    limiter = RateLimiter(rpm=rpm, tpm=tpm, clock=lambda: now[0], sleep=late_sleep)
    sent = []

    async def scenario():
        for _ in range(300):
            reserved = rng.randint(50, 400)
            entry = await limiter.acquire(reserved)
            limiter.settle(entry, used=rng.randint(10, reserved))  # billed at most what was reserved
            sent.append(entry)
            if rng.random() < 0.3:  # the loop is late between sends too
                now[0] += rng.uniform(0, 5)

    asyncio.run(scenario())
    for last in sent:
        minute = [s for s in sent if last.at - 60 < s.at <= last.at]
        assert sum(s.tokens for s in minute) <= tpm and len(minute) <= rpm


def test_on_time_it_uses_the_limit_it_was_given():
    now = [0.0]

    async def sleep(seconds):
        now[0] += seconds

    limiter = RateLimiter(tpm=6000, clock=lambda: now[0], sleep=sleep)

    async def scenario():
        for _ in range(300):  # 30,000 tokens: 5 minutes at 6,000 a minute
            limiter.settle(await limiter.acquire(100), used=100)

    asyncio.run(scenario())
    assert 4.9 <= now[0] / 60 <= 5.05


def test_the_servers_remaining_tokens_hold_sends_back_until_its_reset():
    now = [0.0]

    async def sleep(seconds):
        now[0] += seconds

    limiter = RateLimiter(clock=lambda: now[0], sleep=sleep)

    async def scenario():
        limiter.observe({"x-ratelimit-remaining-tokens": "300", "x-ratelimit-reset-tokens": "2s"})
        await limiter.acquire(200)
        assert now[0] == 0.0
        await limiter.acquire(200)  # only 100 left until the reset
        assert now[0] == pytest.approx(2.0)
        limiter.observe({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1.5s"})
        await limiter.acquire(1)
        assert now[0] == pytest.approx(3.5)

    asyncio.run(scenario())
    assert (_duration("6m0s"), _duration("1.5s"), _duration("20ms"), _duration("3"), _duration("soon")) == (
        120.0, 1.5, 0.02, 3.0, None,
    )  # fmt: skip


def chat(server: OpenAIServer, **limits):
    async def run():
        limiter = RateLimiter(**limits)
        endpoint = Endpoint(server.base_url, "BAIZE_TEST_NO_KEY", limiter=limiter, max_retries=1, timeout=5)
        try:
            reply, call = await endpoint.chat(
                "m", [{"role": "user", "content": "Why is the sky blue?"}], max_tokens=20
            )
            return reply, call, endpoint.rate_limited
        finally:
            await endpoint.close()

    return asyncio.run(run())


def test_429s_beyond_the_clients_retries_delay_the_call_and_do_not_fail_it():
    def responder(request):  # five 429s, more than max_retries (1) allows, then the answer
        return rate_limited(retry_after=0.05) if request.attempt <= 5 else Reply("Rayleigh scattering.")

    with OpenAIServer(responder) as server:
        reply, call, limited = chat(server)
        assert reply.content == "Rayleigh scattering." and limited == 5 and len(server.requests) == 6
        assert isinstance(call, RoleUsage) and call.calls == 1


def test_a_rate_limit_that_outlasts_rate_limit_wait_fails_the_call_and_a_quota_error_fails_at_once():
    with OpenAIServer(lambda request: rate_limited(retry_after=0.1)) as server:
        with pytest.raises(Exception) as raised:
            chat(server, max_wait=0.5)
        assert "429" in str(raised.value) or "rate" in str(raised.value).lower()
        assert 3 <= len(server.requests) <= 12  # asked again, paced by the Retry-After, until the wait ran out
    quota = Reply(status=429, message="You exceeded your current quota", error_code="insufficient_quota")
    with OpenAIServer(lambda request: quota) as server:
        with pytest.raises(Exception, match="quota"):
            chat(server, max_wait=60)
        assert len(server.requests) == 2  # the client's own retry, then no more: waiting does not fix a quota


def test_each_http_attempt_is_counted_when_it_leaves_and_a_refused_one_is_refunded():
    def responder(request):
        return rate_limited(retry_after=0.05) if request.attempt == 1 else Reply("ok", usage={"prompt_tokens": 7,
                                                                                              "completion_tokens": 1})  # fmt: skip

    with OpenAIServer(responder) as server:

        async def run():
            limiter = RateLimiter(tpm=60_000)
            endpoint = Endpoint(server.base_url, "BAIZE_TEST_NO_KEY", limiter=limiter, max_retries=2, timeout=5)
            try:
                await endpoint.chat("m", [{"role": "user", "content": "hi"}], max_tokens=20)
            finally:
                await endpoint.close()
            return [sent.tokens for sent in limiter.window]

        assert asyncio.run(run()) == [0, 8]  # the 429'd attempt counts nothing; the answer its usage
