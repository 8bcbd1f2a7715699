"""The judge as a TRL reward function (baize.judging.reward): TRL's `reward_funcs` signature, the verdict cache
(a completion is never paid twice, across instances), None for a verdict that does not parse, the one-line failure;
against the loopback server with the real openai client."""

from __future__ import annotations

import json
import re

import pytest
from openai_server import OpenAIServer, Reply, server_error

from baize.io.errors import EndpointError
from baize.judging.client import JudgeArguments
from baize.judging.reward import JudgeReward

ANSWER = re.compile(r"\[The Start of Assistant's Answer\]\n(.*?)\n\[The End of Assistant's Answer\]", re.S)


def scripted_judge(request):
    """Rewards answers that say "blue"; cannot make sense of "gibberish"; fails on "broken"."""
    answer = ANSWER.search(request.messages[1]["content"]).group(1)  # the rubric prompt (a re-ask adds a reminder)
    if "broken" in answer:
        return server_error(500)
    if "gibberish" in answer:
        return Reply("I cannot rate this.")
    return Reply("90\nIt names the colour." if "blue" in answer else "10\nIt does not say.")


def arguments(server: OpenAIServer, **overrides) -> JudgeArguments:
    values = {"judge_model": "judge", "judge_base_url": server.base_url, "judge_api_key_env": "BAIZE_TEST_NO_KEY",
              "max_retries": 0, "timeout": 10, "judge_parse_retries": 1, **overrides}  # fmt: skip
    return JudgeArguments(**values)


def test_rewards_in_trls_shape_cached_and_none_where_the_verdict_does_not_parse(tmp_path):
    prompts = [[{"role": "user", "content": "What colour is the sky?"}]] * 3 + ["What colour is the sea?"]
    completions = [[{"role": "assistant", "content": "It is blue."}], [{"role": "assistant", "content": "Grey."}],
                   [{"role": "assistant", "content": "gibberish"}], "Blue-green, mostly blue."]  # fmt: skip
    with OpenAIServer(scripted_judge) as server:
        reward = JudgeReward(arguments(server), tmp_path / "reward_cache.jsonl")
        assert reward.__name__ == "judge_pointwise"
        assert reward(prompts=prompts, completions=completions, completion_ids=None) == [90.0, 10.0, None, 90.0]
        asked = len(server.requests)
        assert asked == 5  # one request a completion, and the re-ask of the one that did not parse
        assert reward.counts == {"completions": 4, "unscored": 1, "cache_hits": 0, "requests": 5}
        # the next training step with the same completions: the verdicts it kept in memory, nothing asked
        assert reward(prompts, completions) == [90.0, 10.0, None, 90.0] and len(server.requests) == asked
        assert reward.counts == {"completions": 8, "unscored": 2, "cache_hits": 4, "requests": 5}

        # the same completions again, even from a new reward function on the same cache: nothing is asked
        again = JudgeReward(arguments(server), tmp_path / "reward_cache.jsonl")
        assert again(prompts, completions) == [90.0, 10.0, None, 90.0]
        assert len(server.requests) == asked and again.counts["cache_hits"] == 4


def test_a_judge_that_fails_ends_the_step_in_one_line_and_keeps_what_came(tmp_path):
    prompts = ["Why is the sky blue?"] * 3
    completions = ["Because of blue light.", "broken", "No reason."]
    with OpenAIServer(scripted_judge) as server:
        reward = JudgeReward(arguments(server), tmp_path / "reward_cache.jsonl")
        with pytest.raises(
            EndpointError, match=rf"the judge at {re.escape(server.base_url)} failed 1 of 3 completions"
        ):
            reward(prompts, completions)
        server.reset()
        # the re-run asks only for what failed (the judge answers this time)
        assert JudgeReward(arguments(server), tmp_path / "reward_cache.jsonl")(prompts[:1] + prompts[2:],
                                                                            completions[:1] + completions[2:]) == [90.0, 10.0]  # fmt: skip
        assert not server.requests


@pytest.mark.slow
def test_grpo_trains_with_the_judge_as_its_reward(tmp_path, tiny_llama_dir):
    """TRL's GRPOTrainer takes the judge as one of its reward_funcs: every completion is judged once, TRL logs the
    judge's scores under the function's name, and the server saw exactly the requests the reward counted."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    def judge(request):  # 60 for a completion with an "e" in it, 20 otherwise: real, scripted verdicts
        answer = ANSWER.search(request.messages[1]["content"]).group(1)
        return Reply("60\nHas an e." if "e" in answer else "20\nNo e.")

    with OpenAIServer(judge) as server:
        reward = JudgeReward(arguments(server), tmp_path / "reward_cache.jsonl")
        prompts = Dataset.from_list([{"prompt": [{"role": "user", "content": f"Question {i}?"}]} for i in range(4)])
        config = GRPOConfig(output_dir=str(tmp_path / "grpo"), per_device_train_batch_size=4, num_generations=2,
                            max_completion_length=8, max_steps=2, logging_steps=1, report_to="none", use_cpu=True,
                            save_strategy="no", bf16=False)  # fmt: skip
        trainer = GRPOTrainer(model=str(tiny_llama_dir), reward_funcs=[reward], args=config, train_dataset=prompts)
        trainer.train()
        requests = len(server.requests)
    logged = [entry["rewards/judge_pointwise/mean"] for entry in trainer.state.log_history if "reward" in entry]
    assert len(logged) == 2 and all(20.0 <= value <= 60.0 for value in logged)
    assert reward.counts["completions"] == 8 and reward.counts["unscored"] == 0
    assert requests == reward.counts["requests"] == 8 - reward.counts["cache_hits"]  # an equal completion: cached


def test_each_process_scores_into_its_own_cache_and_the_budget_counts_them_all(tmp_path):
    """Under `accelerate launch` every process calls the reward on its own completions: two rewards on one folder
    (ranks 0 and 1) each keep a cache and a spend file (no second writer on one file), equal completions in one call
    are asked once, and max_cost adds up both processes' spend: the call after it is spent stops in one line."""
    from baize.io.errors import BudgetReached

    prices = {"judge": {"prompt": 10.0, "completion": 10.0}}  # USD per million tokens
    with OpenAIServer(lambda request: Reply("70\nGood.")) as server:
        args = arguments(server, judge_prices=prices)
        ranks = [JudgeReward(args, tmp_path / "reward_cache.jsonl", max_cost=1.0, process_index=i) for i in (0, 1)]
        assert ranks[0](["Why?"] * 3, ["Same answer."] * 3) == [70.0] * 3
        assert len(server.requests) == 1 and ranks[0].counts["cache_hits"] == 2  # equal completions: asked once
        one = json.loads((tmp_path / "reward_cache_spend.json").read_text())["cost_usd"]
        for reward in ranks:  # spent after three verdicts, not after one
            reward.max_cost = round(2.5 * one, 6)
        assert ranks[1](["Why?", "How?"], ["Same answer.", "Other answer."]) == [70.0, 70.0]
        assert len(server.requests) == 3  # rank 1 has a cache of its own
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            "reward_cache.jsonl", "reward_cache.rank1.jsonl", "reward_cache.rank1_spend.json",
            "reward_cache_spend.json",
        ]  # fmt: skip
        with pytest.raises(BudgetReached, match=r"max_cost [\d.]+ is spent: \$0\.\d+ and \d+ tokens on 3 requests"):
            ranks[0](["When?"], ["A third answer."])
        assert len(server.requests) == 3
