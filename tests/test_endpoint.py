"""The one endpoint client (baize.llm.endpoint) on its own: what a chat call sends and returns, text completions with
`n`, streaming, and a call's usage, with the real openai client against the loopback server."""

from __future__ import annotations

import asyncio

from openai_server import OpenAIServer, Reply

from baize.llm.endpoint import Endpoint
from baize.llm.prices import RoleUsage


def test_chat_sends_only_set_parameters_and_returns_the_completion_and_its_usage():
    reply = Reply("an answer", finish_reason="length", usage={"prompt_tokens": 12, "completion_tokens": 5})
    with OpenAIServer(lambda request: reply) as server:

        async def ask():
            endpoint = Endpoint(server.base_url, "BAIZE_TEST_NO_KEY")
            usage = RoleUsage()
            try:
                completion, call = await endpoint.chat(
                    "m", [{"role": "user", "content": "hi"}], usage, temperature=0.5, top_p=None, max_tokens=5
                )
            finally:
                await endpoint.close()
            return completion, call, usage

        completion, call, usage = asyncio.run(ask())
        body = server.requests[0].body
    assert (completion.content, completion.finish_reason, completion.completion_tokens) == ("an answer", "length", 5)
    assert (call.calls, call.prompt_tokens, call.completion_tokens) == (1, 12, 5) and usage == call
    assert body["temperature"] == 0.5 and body["max_tokens"] == 5 and "top_p" not in body


def test_text_completions_return_n_choices_in_order_and_a_stream_yields_pieces():
    with OpenAIServer(lambda request: [Reply("one"), Reply("two"), Reply("three", finish_reason="length")]) as server:

        async def ask():
            endpoint = Endpoint(server.base_url, "BAIZE_TEST_NO_KEY")
            try:
                completions, call = await endpoint.complete_text("m", "PROMPT", n=3, max_tokens=4, seed=1)
                pieces = [piece async for piece in endpoint.stream_chat("m", [{"role": "user", "content": "x"}])]
            finally:
                await endpoint.close()
            return completions, call, pieces

        completions, call, pieces = asyncio.run(ask())
        first = server.requests[0].body
    assert [(c.content, c.finish_reason) for c in completions] == [
        ("one", "stop"),
        ("two", "stop"),
        ("three", "length"),
    ]
    assert first["prompt"] == "PROMPT" and first["n"] == 3 and first["seed"] == 1 and call.calls == 1
    assert "".join(pieces).split() == ["one"]
