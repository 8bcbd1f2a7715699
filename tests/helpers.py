"""Helpers shared by the tests (importable as `helpers`: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import json
from pathlib import Path


def make_tiny_llama(path: Path, tokenizer_dir: Path, seed: int = 0) -> Path:
    """A 2-layer random Llama with the SmolLM2 tokenizer: real tokenisation, trainable in seconds."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def sample_dialogues(n: int = 24) -> list[dict]:
    """Short dialogues of varied length in the chat schema (1-3 exchanges)."""
    rows = []
    for i in range(n):
        messages = []
        for j in range(1 + i % 3):
            messages.append({"role": "user", "content": f"Question {i}.{j}: why is the sky blue on day {i}?"})
            answer = "Because of Rayleigh scattering of sunlight by air molecules. " * (1 + (i * 7 + j) % 5)
            messages.append({"role": "assistant", "content": answer.strip()})
        rows.append({"messages": messages, "seed": f"seed {i}", "source": "test", "teacher": "test", "mode": "turns"})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path
