"""The speed options a recipe can turn on (baize.modeling.speed; off by default until a GPU run measures them): each one is
applied, and the loss matches the default's within a stated tolerance, on a tiny Llama on CPU."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from helpers import train, write_recipe


def first_loss(tmp_path, tiny_llama_dir, chat_jsonl, name: str, **overrides) -> dict:
    (tmp_path / name).mkdir()
    recipe = write_recipe(tmp_path / name, tiny_llama_dir, chat_jsonl, max_steps=2, test_split_size=None,
                          save_strategy="no", output_dir=str(tmp_path / name / "run"), **overrides)  # fmt: skip
    return train(recipe)


@pytest.mark.slow
def test_regional_compile_and_selective_checkpointing_match_the_default_loss(tmp_path, tiny_llama_dir, chat_jsonl):
    default = first_loss(tmp_path, tiny_llama_dir, chat_jsonl, "default")
    compiled = first_loss(tmp_path, tiny_llama_dir, chat_jsonl, "compiled", compile_layers=True)
    selective = first_loss(tmp_path, tiny_llama_dir, chat_jsonl, "selective", activation_checkpointing=True,
                           selective_checkpointing=True)  # fmt: skip
    layers = json.loads((tiny_llama_dir / "config.json").read_text())["num_hidden_layers"]
    assert compiled["speed_options"]["compiled_layers"] == layers  # every decoder layer, nothing else
    assert selective["speed_options"]["selectively_checkpointed_layers"] == layers
    assert "speed_options" not in default
    for run in (compiled, selective):
        assert run["loss_first"] == pytest.approx(default["loss_first"], rel=1e-4)
        assert run["loss_last"] == pytest.approx(default["loss_last"], rel=1e-3)


def test_compute_dtype_adapters_are_bf16_and_give_the_same_loss(tiny_llama_dir):
    """adapter_dtype: compute under bf16: every LoRA matrix in bf16 (none left in fp32), the loss within 1 % of
    PEFT's fp32 adapters; ignored (with a warning) without bf16."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from baize.modeling.speed import apply_speed_options

    def model():
        torch.manual_seed(0)
        base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.bfloat16)
        return get_peft_model(base, LoraConfig(r=8, target_modules="all-linear", init_lora_weights=False))

    ids = torch.randint(5, 1000, (2, 16))
    fp32_adapters, compute = model(), model()
    assert apply_speed_options(fp32_adapters, SimpleNamespace(adapter_dtype="compute", compile_layers=False,
                                                              bf16=False)) == {}  # fmt: skip
    applied = apply_speed_options(compute, SimpleNamespace(adapter_dtype="compute", compile_layers=False, bf16=True))
    lora = {n: p.dtype for n, p in compute.named_parameters() if "lora_" in n}
    assert lora and set(lora.values()) == {torch.bfloat16} and applied["adapter_dtype"].startswith("bfloat16")
    assert {p.dtype for n, p in fp32_adapters.named_parameters() if "lora_" in n} == {torch.float32}
    losses = [m(input_ids=ids, labels=ids).loss for m in (fp32_adapters, compute)]
    losses[1].backward()
    assert losses[1].item() == pytest.approx(losses[0].item(), rel=1e-2)
    assert all(p.grad is not None and p.grad.dtype == torch.bfloat16 for n, p in compute.named_parameters()
               if "lora_" in n)  # fmt: skip
