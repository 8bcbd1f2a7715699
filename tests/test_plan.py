"""`baize collect --plan true`: what a collection would send and cost, with nothing sent; and the run's own figures
beside the plan afterwards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openai_server import openai_server_fixture  # noqa: F401
from test_collect import config_for, seed_of

from baize.collect import collect

PRICES = {"test-teacher": {"prompt": 1.0, "completion": 2.0}}


def responder(request):
    topic = seed_of(request)
    return f"[Human] What about {topic}?\n[AI] Here is a short answer about {topic} for you."


def test_a_plan_from_the_recipes_limits_sends_nothing_and_says_what_max_cost_fits(openai_server, tmp_path):
    openai_server.responder = responder
    config = config_for(openai_server, tmp_path, [f"topic {i}" for i in range(40)], plan=True, prices=PRICES,
                        assistant_max_tokens=100, max_cost=0.002, rpm=60)  # fmt: skip
    plan = collect(config)["plan"]
    assert not openai_server.requests
    assert sorted(path.name for path in Path(config.output_dir).iterdir()) == ["plan.json"]  # nothing else written
    assert plan["seeds_to_collect"] == 40 and plan["requests"] == 40 and plan["completion_tokens"] == 4000
    per = plan["per_dialogue"]
    assert per["cost_usd_live"] == pytest.approx((per["prompt_tokens"] * 1.0 + 100 * 2.0) / 1e6)
    assert plan["cost_usd_batch"] == pytest.approx(plan["cost_usd_live"] / 2, rel=1e-3)
    assert plan["wall_minutes_at_limits"] == pytest.approx(40 / 60, abs=0.05)
    assert plan["seeds_within_max_cost"] == int(0.002 / per["cost_usd_live"])
    assert json.loads(Path(config.output_dir, "plan.json").read_text()) == plan


def test_a_plan_from_the_dialogues_already_collected_matches_the_run_within_15_percent(openai_server, tmp_path):
    openai_server.responder = responder
    first = config_for(openai_server, tmp_path, [f"topic {i}" for i in range(10)], prices=PRICES)
    collect(first)
    more = [f"topic {i}" for i in range(40)]
    plan = collect(config_for(openai_server, tmp_path, more, prices=PRICES, plan=True))["plan"]
    assert plan["seeds_to_collect"] == 30 and plan["basis"].startswith("measured: the mean of the 10 dialogues")
    report = collect(config_for(openai_server, tmp_path, more, prices=PRICES))
    ratios = report["plan_vs_actual"]["actual_over_planned"]
    assert set(ratios) == {"calls", "prompt_tokens", "completion_tokens"}
    assert all(0.85 <= value <= 1.15 for value in ratios.values()), ratios
    billed_this_run = report["this_run_usage"]
    assert billed_this_run["calls"] == 30


def test_sdf_and_eval_plan_their_judge_requests_without_sending_any(tmp_path):
    from test_eval import judged_config

    from baize import evaluate, sdf
    from baize.sdf import SDFConfig

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Why is the sky blue?\nWhat is rain?\n")
    config = SDFConfig(output_dir=str(tmp_path / "sdf"), model_name_or_path="unused", prompts_path=str(prompts),
                       num_candidates=3, max_new_tokens=50, judge_model="judge", judge_max_tokens=100, plan=True,
                       judge_prices='{"judge": {"prompt": 1.0, "completion": 2.0}}')  # fmt: skip
    plan = sdf.main(config)["plan"]
    assert plan["requests"] == 6 and plan["completion_tokens_at_most"] == 600  # 2 prompts x 3 pointwise verdicts
    assert plan["cost_usd_live"] == pytest.approx((plan["prompt_tokens"] + 2 * 600) / 1e6, abs=1e-4)
    assert [path.name for path in (tmp_path / "sdf").iterdir()] == ["plan.json"]  # nothing sampled, nothing sent

    from openai_server import OpenAIServer

    with OpenAIServer(lambda request: "7 5") as server:
        config = judged_config(tmp_path / "eval", server, plan=True)
        before = {path for path in (tmp_path / "eval").rglob("*")}
        plan = evaluate.main(config)["plan"]
        assert plan["requests"] == 12 and not server.requests  # 6 questions, both orders
        assert {path for path in (tmp_path / "eval").rglob("*")} - before == {Path(config.output_dir, "plan.json")}
        config.plan = False
        evaluate.judge_step(config)
        config.plan = True
        assert evaluate.main(config)["plan"]["requests"] == 0  # every verdict is cached now
