"""The Baize chat template: AI tokens (and their EOS) are exactly the trained tokens, prompts match training."""

from pathlib import Path

import pytest
from helpers import sample_dialogues
from transformers import AutoTokenizer

from baize import BAIZE_TEMPLATE
from baize.train import BaizeSFTConfig

MESSAGES = [
    {"role": "system", "content": "You are Baize."},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "4."},
    {"role": "user", "content": "And 3+3?"},
    {"role": "assistant", "content": "It is 6, since 3+3=6."},
]


@pytest.fixture(scope="module")
def tokenizer(smol_dir):
    tokenizer = AutoTokenizer.from_pretrained(smol_dir)
    tokenizer.chat_template = Path(BAIZE_TEMPLATE).read_text()
    return tokenizer


def test_rendering(tokenizer):
    eos, bos = tokenizer.eos_token, tokenizer.bos_token
    assert tokenizer.apply_chat_template(MESSAGES, tokenize=False) == (
        f"{bos}You are Baize.\n[|Human|]What is 2+2?\n[|AI|]4.{eos}\n[|Human|]And 3+3?\n[|AI|]It is 6, since 3+3=6.{eos}"
    )
    # The original project-baize adapters: no BOS/EOS, the data header as default system text.
    original = tokenizer.apply_chat_template(MESSAGES[1:3], tokenize=False, baize_format="original")
    assert original == "The conversation between human and AI assistant.\n[|Human|]What is 2+2?\n[|AI|]4."


def test_inference_prompt_is_a_prefix_of_the_training_text(tokenizer):
    prompt = tokenizer.apply_chat_template(MESSAGES[:4], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(MESSAGES, tokenize=False)
    assert full.startswith(prompt) and prompt.endswith("\n[|AI|]")
    prompt_ids = tokenizer.apply_chat_template(MESSAGES[:4], add_generation_prompt=True, return_dict=True)
    full_ids = tokenizer.apply_chat_template(MESSAGES, return_dict=True)
    assert full_ids["input_ids"][: len(prompt_ids["input_ids"])] == prompt_ids["input_ids"]


def test_unknown_role_is_rejected(tokenizer):
    with pytest.raises(Exception, match="unsupported role tool"):
        tokenizer.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def test_trainer_labels_cover_exactly_the_ai_turns(tiny_llama_dir, tmp_path):
    """Go through TRL's real preprocessing and collator, then read the labels back."""
    from datasets import Dataset
    from trl import SFTTrainer

    rows = [{"messages": MESSAGES}] + [{"messages": r["messages"]} for r in sample_dialogues(3)]
    args = BaizeSFTConfig(output_dir=str(tmp_path), max_length=None, report_to="none", packing=False)
    trainer = SFTTrainer(model=str(tiny_llama_dir), args=args, train_dataset=Dataset.from_list(rows))
    tokenizer = trainer.processing_class
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(rows))])
    for i, row in enumerate(rows):
        labels = batch["labels"][i]
        trained = tokenizer.decode(labels[labels != -100])
        expected = "".join(m["content"] + tokenizer.eos_token for m in row["messages"] if m["role"] == "assistant")
        assert trained == expected
        # and nothing of the prompt side: no tags, no user text
        assert "[|Human|]" not in trained and "[|AI|]" not in trained
