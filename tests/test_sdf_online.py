"""SDF rounds by GRPO (`round_method: grpo`): TRL's GRPOTrainer trains the new LoRA on the frozen parent online,
with the one judge as its reward, on a tiny random Llama with a scripted judge at the loopback OpenAI server. The
judge rewards one property (short answers): the reward rises as the policy learns it; the reward's counts and
spend match what the server saw; a budget binds mid-round in one line and the re-run goes on; a judge that fails
stops the round instead of training on missing rewards."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO, chatty_copy, make_lora_adapter
from openai_server import OpenAIServer, Reply, server_error

ANSWER = re.compile(r"\[The Start of Assistant's Answer\]\n(.*?)\n\[The End of Assistant's Answer\]", re.S)


def short_is_good(request) -> Reply:
    """The scripted judge's taste: the shorter the answer, the better (any property of the text would do)."""
    answer = ANSWER.search(request.messages[-1]["content"]).group(1)
    return Reply(f"{max(1, 100 - 2 * len(answer))}\nShorter is better.")


def grpo_recipe(tmp_path: Path, **overrides) -> Path:
    recipe = {
        "use_peft": True, "lora_r": 8, "lora_alpha": 16, "lora_target_modules": "all-linear",
        "learning_rate": 5e-2, "max_steps": 10, "per_device_train_batch_size": 8, "beta": 0.0,
        "logging_steps": 1, "save_steps": 2, "report_to": "none", "dataloader_pin_memory": False, "use_cpu": True,
        "bf16": False, "seed": 0, "output_dir": str(tmp_path / "sdf" / "v2"), **overrides,
    }  # fmt: skip
    path = tmp_path / "grpo.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def sdf_config(tmp_path: Path, v1: Path, judge_url: str, **overrides) -> dict:
    (tmp_path / "prompts.txt").write_text("".join(f"Question number {i}: why is it so?\n" for i in range(8)))
    return {
        "output_dir": str(tmp_path / "sdf"), "model_name_or_path": str(v1), "prompts_path": str(tmp_path / "prompts.txt"),
        "round_method": "grpo", "grpo_config": str(grpo_recipe(tmp_path)), "num_candidates": 4, "max_new_tokens": 12,
        "temperature": 1.0, "judge_base_url": judge_url, "judge_model": "test-judge",
        "judge_api_key_env": "BAIZE_TEST_UNSET_KEY", "max_retries": 1, "timeout": 30, **overrides,
    }  # fmt: skip


def v1_of(tmp_path: Path, tiny_llama_dir: Path) -> Path:
    """A v1 adapter over a chatty tiny Llama (a fifth of its vocabulary ends a reply: answers vary in length) whose
    final norm is scaled up: the random model's near-uniform distribution over 49k tokens (entropy ln 49152, which a
    few GRPO steps on its small hidden states do not move) becomes one that its hidden states steer, as a trained
    model's is."""
    from transformers import AutoModelForCausalLM

    base = chatty_copy(tiny_llama_dir, tmp_path / "base")
    model = AutoModelForCausalLM.from_pretrained(base)
    model.model.norm.weight.data *= 40
    model.save_pretrained(base)
    return make_lora_adapter(tmp_path / "v1", base, seed=1)


@pytest.mark.slow
def test_a_grpo_round_learns_what_the_judge_rewards_and_pays_each_verdict_once(tmp_path, tiny_llama_dir):
    from baize import sdf
    from baize.sdf.config import SDFConfig

    v1 = v1_of(tmp_path, tiny_llama_dir)
    with OpenAIServer(short_is_good) as server:
        config = SDFConfig(**sdf_config(tmp_path, v1, server.base_url))
        results = sdf.main(config)
        asked = len(server.requests)
        again = sdf.main(config)  # a finished round: nothing asked, nothing trained
        assert len(server.requests) == asked

    trained = results["train"]
    reward = trained["train"]["reward"]
    out = Path(trained["output_dir"])
    print(f"mean reward: first steps {reward['reward_first_steps']}, last steps {reward['reward_last_steps']}")
    assert reward["logged_steps"] == 10 and reward["reward_last_steps"] > reward["reward_first_steps"] + 5
    # 10 steps x 8 completions, each judged once; an answer seen before came from the cache; all parsed
    assert reward["completions"] == 80 and reward["unscored"] == 0
    assert asked == reward["requests"] == 80 - reward["cache_hits"] == reward["spent"]["calls"]
    assert trained["lineage"]["method"] == "grpo" and (out / "adapter_config.json").exists()
    card = (out / "README.md").read_text()
    assert "online GRPO" in card and "mean reward, first steps -> last steps" in card
    assert again["train"]["output_dir"] == str(out)


@pytest.mark.slow
def test_a_budget_binds_mid_round_in_one_line_and_the_rerun_goes_on_without_asking_again(tmp_path, tiny_llama_dir):
    v1 = v1_of(tmp_path, tiny_llama_dir)
    failing = {"on": False}

    def judge(request):
        if failing["on"] and "number 3" in request.messages[-1]["content"]:
            return server_error(500)
        return short_is_good(request)

    with OpenAIServer(judge) as server:
        # $10 per million tokens, prompt and completion: a verdict costs about $0.002
        config = sdf_config(tmp_path, v1, server.base_url, max_cost=0.03,
                            judge_prices={"test-judge": {"prompt": 10.0, "completion": 10.0}})  # fmt: skip
        (tmp_path / "sdf.yaml").write_text(yaml.safe_dump(config))
        command = [sys.executable, "-m", "baize.sdf", "--config", str(tmp_path / "sdf.yaml")]

        stopped = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
        lines = [line for line in stopped.stderr.splitlines() if "baize sdf: error:" in line]
        assert stopped.returncode != 0 and len(lines) == 1, stopped.stderr[-3000:]
        assert "max_cost 0.03 is spent" in lines[0] and "raise max_cost and re-run" in lines[0]
        spend = json.loads((tmp_path / "sdf" / "reward_cache_spend.json").read_text())
        assert spend["calls"] == len(server.requests) and 0.03 <= spend["cost_usd"] < 0.03 + 8 * 0.004
        checkpoints = sorted((tmp_path / "sdf" / "v2").glob("checkpoint-*"))
        assert checkpoints and not (tmp_path / "sdf" / "v2" / "adapter_model.safetensors").exists()

        # A judge failing some prompts (500 after the client's retry): the round stops rather than train on missing
        # rewards, in one line naming the judge.
        failing["on"] = True
        failed = subprocess.run([*command, "--max_cost", "100"], cwd=REPO, capture_output=True, text=True, timeout=600)
        lines = [line for line in failed.stderr.splitlines() if "baize sdf: error:" in line]
        assert failed.returncode != 0 and len(lines) == 1, failed.stderr[-3000:]
        assert "the judge at http://127.0.0.1" in lines[0] and "failed" in lines[0]
        assert server.statuses[500] >= 2  # retried, then counted
        assert not (tmp_path / "sdf" / "v2" / "adapter_model.safetensors").exists()

        # The judge back and a larger budget: the round goes on from its last checkpoint and finishes; the cached
        # verdicts are not asked again.
        failing["on"] = False
        before = len(server.requests)
        done = subprocess.run([*command, "--max_cost", "100"], cwd=REPO, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        assert (tmp_path / "sdf" / "v2" / "adapter_model.safetensors").exists()
    summary = json.loads((tmp_path / "sdf" / "reward_summary.json").read_text())
    assert summary["requests"] == len(server.requests) - before  # this run's requests, and only those
    spend = json.loads((tmp_path / "sdf" / "reward_cache_spend.json").read_text())
    cache = [json.loads(line)["key"] for line in (tmp_path / "sdf" / "reward_cache.jsonl").read_text().splitlines()]
    assert spend["calls"] == server.statuses[200] == len(cache) == len(set(cache))  # no verdict asked twice
