"""`baize train --plan true` / `baize dpo --plan true`: the plan of a 7B recipe from a folder holding nothing but the
model's config.json (so no weights can have been read), on this CPU; only train_plan.json is written."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml
from helpers import REPO, sample_dialogues, write_jsonl


def llama_7b_config_folder(path):
    from transformers import LlamaConfig

    LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                num_key_value_heads=32, vocab_size=32000).save_pretrained(path)  # fmt: skip
    assert sorted(p.name for p in path.iterdir()) == ["config.json"]
    return path


def run(module: str, recipe, *args):
    command = [sys.executable, "-m", module, "--config", str(recipe), "--plan", "true", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_a_7b_int8_plan_from_its_config_alone_writes_only_the_plan(tmp_path):
    recipe = yaml.safe_load((REPO / "recipes" / "baize-7b" / "sft.yaml").read_text())
    out = tmp_path / "out"
    recipe.update(
        model_name_or_path=str(llama_7b_config_folder(tmp_path / "llama-7b")), output_dir=str(out), test_split_size=4,
        datasets=[{"path": "json", "data_files": str(write_jsonl(tmp_path / "chat.jsonl", sample_dialogues(40)))}],
    )  # fmt: skip
    (tmp_path / "sft.yaml").write_text(yaml.safe_dump(recipe))
    result = run("baize.train", tmp_path / "sft.yaml", "--gpu", "a100-40")
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.rglob("*")) == ["train_plan.json"]
    plan = json.loads((out / "train_plan.json").read_text())
    memory = plan["memory_gib"]
    # int8 7B: ~6.5 GiB of weights, a few MB of LoRA, checkpointed activations of 32 x 512 tokens
    assert 6.0 < memory["weights"] < 7.5 and memory["lora"] < 0.2 and memory["recompute"] > 0
    assert 12 < memory["peak_allocated"] < 40
    assert plan["shape"]["quantization"] == "int8" and plan["shape"]["checkpointing"] is True
    cards = {row["card"]: row for row in plan["cards"]}
    assert cards["h100-80"]["fits"] and not cards["t4"]["fits"]
    # the largest micro-batch divides the per-GPU batch of 64, and accumulation keeps it
    for row in plan["cards"]:
        if row["largest_micro_batch"]:
            assert 64 % row["largest_micro_batch"] == 0
            assert row["largest_micro_batch"] * row["gradient_accumulation"] == 64
    # time and cost from the data's 36 training rows, padded per micro-batch
    assert cards["a100-40"]["epoch_tokens"] <= 36 * 512 and cards["a100-40"]["epoch_cost_usd"] > 0
    assert "36 training rows, tokens estimated as characters / 4" in plan["source"]["data"]  # no tokenizer there
    assert plan["plan_seconds"] > 0  # the < 30 s target is checked by benchmarks/bench_plan_train.py
    assert "a100-40*" in result.stdout and "peak allocated" in result.stdout
    # the same command again leaves the plan as it was (its own seconds are not a change)
    written = (out / "train_plan.json").read_bytes()
    again = run("baize.train", tmp_path / "sft.yaml", "--gpu", "a100-40")
    assert again.returncode == 0 and (out / "train_plan.json").read_bytes() == written


def test_a_plan_under_zero3_on_8_gpus_shards_weights_and_states(tmp_path):
    recipe = yaml.safe_load((REPO / "recipes" / "baize-qwen2.5-7b" / "sft.yaml").read_text())
    recipe.update(model_name_or_path=str(llama_7b_config_folder(tmp_path / "m")), output_dir=str(tmp_path / "one"))
    (tmp_path / "sft.yaml").write_text(yaml.safe_dump(recipe))
    one = run("baize.train", tmp_path / "sft.yaml", "--plan_rows", "1000")
    eight = run("baize.train", tmp_path / "sft.yaml", "--plan_rows", "1000", "--num_gpus", "8", "--sharding",
                "zero3", "--output_dir", str(tmp_path / "eight"))  # fmt: skip
    assert one.returncode == 0 and eight.returncode == 0, one.stderr[-2000:] + eight.stderr[-2000:]
    single = json.loads((tmp_path / "one" / "train_plan.json").read_text())
    sharded = json.loads((tmp_path / "eight" / "train_plan.json").read_text())
    assert sharded["memory_gib"]["weights"] < single["memory_gib"]["weights"] / 2
    assert sharded["memory_gib"]["activations"] == single["memory_gib"]["activations"]
    hours = [plan["cards"][0]["epoch_hours"] for plan in (single, sharded)]
    assert hours[1] < hours[0] / 6  # 8 GPUs at the stated 95 % each


def test_dpo_plan_counts_chosen_and_rejected(tmp_path):
    pairs = [{"prompt": f"Question {i}?", "chosen": "A good answer. " * 20, "rejected": "No."} for i in range(10)]
    recipe = yaml.safe_load((REPO / "recipes" / "baize-v2-7b" / "dpo.yaml").read_text())
    recipe.update(model_name_or_path=str(llama_7b_config_folder(tmp_path / "m")), output_dir=str(tmp_path / "out"),
                  datasets=[{"path": "json", "data_files": str(write_jsonl(tmp_path / "pairs.jsonl", pairs))}])  # fmt: skip
    (tmp_path / "dpo.yaml").write_text(yaml.safe_dump(recipe))
    result = run("baize.dpo", tmp_path / "dpo.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    plan = json.loads((tmp_path / "out" / "train_plan.json").read_text())
    assert plan["shape"]["sequences_per_row"] == 2 and plan["shape"]["reference_forward"] is True
    assert plan["source"]["data"].startswith("10 training rows")


def test_a_model_whose_config_is_not_here_is_one_line_naming_the_download(tmp_path):
    result = run(
        "baize.train", REPO / "recipes" / "baize-qwen2.5-7b" / "sft.yaml", "--output_dir", str(tmp_path / "o")
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Qwen/Qwen2.5-7B" in lines[0] and "hf download" in lines[0], result.stderr
    assert not (tmp_path / "o").exists()


def test_an_unknown_card_is_refused_naming_the_known_ones(tmp_path):
    result = run("baize.train", REPO / "recipes" / "baize-smol" / "sft.yaml", "--gpu", "h100",
                 "--output_dir", str(tmp_path / "o"))  # fmt: skip
    assert result.returncode == 2 and "--gpu: invalid choice: 'h100'" in result.stderr and "h100-80" in result.stderr
    assert not (tmp_path / "o").exists()
