"""Merge: the merged folder generates the same greedy tokens as base + adapter, and carries what servers need."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import yaml
from helpers import make_lora_adapter
from transformers import AutoModelForCausalLM, AutoTokenizer

from baize.hub import HubError
from baize.llm.generation import SamplingSettings, generate_reply
from baize.modeling.loading import load_chat_model
from baize.modeling.merging import merge_adapter
from baize.prompts import ORIGINAL_TEMPLATE_HEADER, detect_prompt_format


def greedy_tokens(chat, question: str = "Why is the sky blue?", n: int = 16) -> list[int]:
    prompt = chat.prompt_builder().build([], question)
    # turn tags off (random weights could emit one); EOS as configured, the same for both models
    settings = SamplingSettings(max_new_tokens=n, temperature=0.0)
    return generate_reply(chat, prompt, settings, stop_strings=[], eos_token_id=None).token_ids


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, tiny_llama_dir):
    return make_lora_adapter(tmp_path_factory.mktemp("merge-adapter"), tiny_llama_dir, seed=3)


def test_merged_model_generates_like_base_plus_adapter(tmp_path, adapter, tiny_llama_dir):
    out = merge_adapter(adapter, tmp_path / "merged")

    names = {p.name for p in out.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "README.md"} <= names
    assert "chat_template.jinja" in names and not any(n.startswith("adapter_") for n in names)
    generation = json.loads((out / "generation_config.json").read_text())
    assert (generation["top_p"], generation["temperature"], generation["max_new_tokens"]) == (0.95, 1.0, 512)
    header = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert header["library_name"] == "transformers" and "baize" in header["tags"]

    unmerged = load_chat_model(adapter)
    merged = load_chat_model(out)
    assert merged.base is None and merged.prompt_format == "baize"
    assert greedy_tokens(merged) == greedy_tokens(unmerged)
    base_only = load_chat_model(tiny_llama_dir, prompt_format="baize")
    assert greedy_tokens(base_only) != greedy_tokens(unmerged)  # the adapter matters: the test can fail

    # A plain transformers load (what `transformers serve` / vLLM do) sees merged weights, no PEFT modules.
    model = AutoModelForCausalLM.from_pretrained(out)
    assert not any("lora" in name for name, _ in model.named_parameters())
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Why is the sky blue?"}], add_generation_prompt=True, return_dict=True
    )["input_ids"]
    assert ids == unmerged.prompt_builder(system=None).build([], "Why is the sky blue?").input_ids
    with torch.no_grad():
        output = model.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False, eos_token_id=None)
    no_guardrail = unmerged.prompt_builder(system=None).build([], "Why is the sky blue?")
    expected = generate_reply(
        unmerged,
        no_guardrail,
        SamplingSettings(max_new_tokens=16, temperature=0.0),
        stop_strings=[],
        eos_token_id=None,
    ).token_ids
    assert output[0, len(ids) :].tolist() == expected


def test_merged_original_adapter_defaults_to_the_original_format(tmp_path, tiny_llama_dir):
    adapter = make_lora_adapter(tmp_path / "orig", tiny_llama_dir, with_tokenizer=False, seed=4)
    out = merge_adapter(adapter, tmp_path / "merged-orig", base=str(tiny_llama_dir))
    assert (out / "chat_template.jinja").read_text().startswith(ORIGINAL_TEMPLATE_HEADER)
    assert detect_prompt_format(out) == "original"
    tokenizer = AutoTokenizer.from_pretrained(out)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False
    )
    assert text == "The conversation between human and AI assistant.\n[|Human|]Hi\n[|AI|]"  # no BOS, as the original


def test_merge_refuses_to_overwrite(tmp_path, adapter):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("x")
    with pytest.raises(HubError, match="not empty"):
        merge_adapter(adapter, tmp_path / "busy")


def test_merge_cli_help():
    result = subprocess.run([sys.executable, "-m", "baize.merge", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "transformers serve" in result.stdout and "--output" in result.stdout
