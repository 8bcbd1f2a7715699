"""The one sampler (baize.llm.sampling): a local model, the loopback endpoint (prompt text at /v1/completions, and
chat completions) and the Batch API transport give the same answers for the same requests, when the server runs
the same model greedily. Also: seeds per batch of request ids, grouping by temperature, n per request, the
endpoint's round robin and failures."""

from __future__ import annotations

import asyncio

import pytest
from openai_server import OpenAIServer, Reply

from baize.llm.endpoint import Endpoint
from baize.llm.generation import SamplingSettings, generate_candidates
from baize.llm.sampling import EndpointSampler, LocalSampler, SampleRequest
from baize.modeling.loading import load_chat_model

GREEDY = SamplingSettings(max_new_tokens=8, temperature=0.0, top_p=1.0, seed=7)
REQUESTS = [
    SampleRequest("q1", [{"role": "user", "content": "Why is the sky blue?"}]),
    SampleRequest("q2", [{"role": "user", "content": "How do bees make honey?"}]),
    SampleRequest(
        "q2/2",
        [
            {"role": "user", "content": "How do bees make honey?"},
            {"role": "assistant", "content": "From nectar."},
            {"role": "user", "content": "And wax?"},
        ],
    ),
]


@pytest.fixture(scope="module")
def chat(tiny_llama_dir):
    return load_chat_model(str(tiny_llama_dir), prompt_format="baize")  # turn tags as stops


def engine(chat):
    """A loopback server that answers like an engine serving `chat` greedily: the prompt text of /v1/completions
    as it is, chat messages rendered with the model's own template; the stop string left out of the text, as vLLM
    does; the generated token count in the usage."""
    builder = chat.prompt_builder()

    def respond(request) -> Reply:
        text = request.body["prompt"] if "prompt" in request.body else builder.render_messages(request.messages)
        (answer,) = generate_candidates(
            chat.model, chat.tokenizer, [builder.encode(text)], 1, max_new_tokens=request.body["max_tokens"],
            temperature=0.0, share_prefill=False, stop_strings=builder.stop_strings,
        )[0]  # fmt: skip
        usage = {"prompt_tokens": len(builder.encode(text)), "completion_tokens": answer["new_tokens"]}
        return Reply(answer["text"], finish_reason=answer["finish_reason"], usage=usage)

    return respond


def rows(sampled) -> dict:
    return {s.request.id: [(x.text, x.finish_reason) for x in s.samples] for s in sampled}


async def sample_with(sampler, requests, settings=GREEDY, concurrency: int = 4) -> tuple[list, list]:
    """The one call shape, for a local model and for endpoints: the answered requests and the failures."""
    done, failed = [], []
    try:
        await sampler.sample(requests, settings, concurrency=concurrency, on_sampled=done.append,
                             on_error=lambda r, e: failed.append((r.id, e)))  # fmt: skip
    finally:
        await sampler.close()
    return done, failed


@pytest.mark.slow
def test_local_endpoint_and_batch_give_the_same_answers(chat, tmp_path):
    local, _ = asyncio.run(sample_with(LocalSampler(chat, chat.prompt_builder(), batch_size=2), REQUESTS))
    assert [s.request.id for s in local] == ["q1", "q2", "q2/2"] and all(s.prompt_tokens for s in local)
    expected = rows(local)

    with OpenAIServer(engine(chat)) as server:
        # the builder's prompt text at /v1/completions: the endpoint is prompted exactly as the local model
        completions = EndpointSampler([Endpoint(server.base_url, "BAIZE_TEST_NO_KEY")], "m",
                                      builder=chat.prompt_builder())  # fmt: skip
        done, failed = asyncio.run(sample_with(completions, REQUESTS))
        assert not failed and rows(done) == expected
        assert {s.request.id: s.prompt_tokens for s in done} == {s.request.id: s.prompt_tokens for s in local}
        sent = [r.body for r in server.requests]
        stops = chat.prompt_builder().stop_strings or None  # the format's turn tags (none in the native format)
        assert all(body.get("stop") == stops and "top_p" not in body for body in sent)  # greedy: no top_p

        # chat completions (the server's template), live and as one Batch API batch
        live, failed = asyncio.run(sample_with(EndpointSampler([Endpoint(server.base_url, "BAIZE_TEST_NO_KEY")], "m"),
                                               REQUESTS))  # fmt: skip
        assert not failed and rows(live) == expected
        endpoint = Endpoint(server.base_url, "BAIZE_TEST_NO_KEY")
        session = endpoint.use_batches(tmp_path / "batches", poll_interval=0.02)
        batched, failed = asyncio.run(sample_with(EndpointSampler([endpoint], "m"), REQUESTS))
        assert not failed and rows(batched) == expected
        assert session.stats["batches"] == 1 and session.stats["requests"] == 3
        # and the token counts are the engine's
        local_tokens = {s.request.id: s.samples[0].new_tokens for s in local}
        assert {s.request.id: s.samples[0].new_tokens for s in batched} == local_tokens


@pytest.mark.slow
def test_local_sampler_groups_by_temperature_and_n_and_seeds_each_batch_by_its_ids(chat, monkeypatch):
    import baize.llm.sampling

    calls = []
    real = baize.llm.sampling.generate_candidates

    def spy(model, tokenizer, prompts, n, **kwargs):
        import torch

        calls.append((len(prompts), n, kwargs["temperature"], torch.initial_seed()))
        return real(model, tokenizer, prompts, n, **kwargs)

    monkeypatch.setattr(baize.llm.sampling, "generate_candidates", spy)
    requests = [
        SampleRequest("a", [{"role": "user", "content": "one"}], n=2, temperature=0.7),
        SampleRequest("b", [{"role": "user", "content": "two"}], n=1, temperature=0.0),
        SampleRequest("c", [{"role": "user", "content": "three"}], n=2, temperature=0.7),
    ]
    sampler = LocalSampler(chat, chat.prompt_builder(), batch_size=8)
    first, _ = asyncio.run(sample_with(sampler, requests, SamplingSettings(max_new_tokens=4, seed=3)))
    assert [len(s.samples) for s in first] == [1, 2, 2]  # greedy group first, then the 0.7 group with n=2
    assert [(size, n, t) for size, n, t, _ in calls] == [(1, 1, 0.0), (2, 2, 0.7)]
    again, _ = asyncio.run(sample_with(sampler, requests, SamplingSettings(max_new_tokens=4, seed=3)))
    assert [c[3] for c in calls[:2]] == [c[3] for c in calls[2:]]  # same ids, same seeds: a resumed run
    assert [[x.text for x in s.samples] for s in first] == [[x.text for x in s.samples] for s in again]


def test_endpoint_sampler_spreads_requests_over_servers_and_reports_failures(chat):
    def flaky(request) -> Reply:
        if "Broken" in request.body["prompt"]:
            return Reply(status=400, message="bad request (test)")
        return Reply("an answer", finish_reason="stop")

    with OpenAIServer(flaky) as one, OpenAIServer(flaky) as two:
        endpoints = [Endpoint(url, "BAIZE_TEST_NO_KEY", max_retries=0) for url in (one.base_url, two.base_url)]
        sampler = EndpointSampler(endpoints, "m", builder=chat.prompt_builder())
        requests = [SampleRequest(f"p{i}", [{"role": "user", "content": f"Q {i}"}], n=2) for i in range(4)]
        requests.append(SampleRequest("bad", [{"role": "user", "content": "Broken"}]))
        done, failed = asyncio.run(sample_with(sampler, requests, concurrency=2))
        assert sorted(s.request.id for s in done) == ["p0", "p1", "p2", "p3"]
        assert [request_id for request_id, _ in failed] == ["bad"]
        assert sampler.per_server == [2, 2]  # request i at server i mod 2 (the failed one counts nowhere)
        assert all([x.text for x in s.samples] == ["an answer", "an answer"] for s in done)
        tokens = len(chat.tokenizer("an answer", add_special_tokens=False)["input_ids"]) + 1  # + what ended it
        assert all(x.finish_reason == "stop" and x.new_tokens == tokens for s in done for x in s.samples)
        assert sampler.usage.calls == len(one.requests) + len(two.requests) - 1
