"""Chat: prompt building (Baize and original formats), history budget, stopping, and the CLI driven with pexpect."""

from __future__ import annotations

import io
import json
import os
import re
import sys
from pathlib import Path

import pexpect
import pytest
import torch
from helpers import make_lora_adapter
from transformers import LogitsProcessor, LogitsProcessorList

from baize.chat import ChatSession
from baize.llm.generation import SamplingSettings, generate_reply
from baize.modeling.loading import load_chat_model, resolve_base
from baize.prompts import GUARDRAIL_SYSTEM_PROMPT, PromptBuilder, cut_at_stop, detect_prompt_format, printable_prefix

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def baize_adapter(tmp_path_factory, tiny_llama_dir) -> Path:
    return make_lora_adapter(tmp_path_factory.mktemp("baize-adapter"), tiny_llama_dir)


@pytest.fixture(scope="module")
def original_adapter(tmp_path_factory, tiny_llama_dir) -> Path:
    """Like project-baize/baize-lora-7B: adapter_config.json + weights, no tokenizer, a LLaMA-1 base id."""
    return make_lora_adapter(
        tmp_path_factory.mktemp("original-adapter"),
        tiny_llama_dir,
        with_tokenizer=False,
        base_name="decapoda-research/llama-7b-hf",
        seed=1,
    )


class Script(LogitsProcessor):
    """Forces the model to emit `ids` one after the other (then repeats the last one)."""

    def __init__(self, ids: list[int], prompt_len: int):
        self.ids, self.prompt_len = ids, prompt_len

    def __call__(self, input_ids, scores):
        step = input_ids.shape[1] - self.prompt_len
        forced = self.ids[min(step, len(self.ids) - 1)]
        scores = torch.full_like(scores, float("-inf"))
        scores[:, forced] = 0.0
        return scores


def scripted(chat, prompt, text: str, *, eos: bool = False, stream: list | None = None):
    ids = chat.tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = ids + [chat.tokenizer.eos_token_id] if eos else ids
    script = LogitsProcessorList(
        [Script(ids + chat.tokenizer(" tail", add_special_tokens=False)["input_ids"], prompt.num_tokens)]
    )
    settings = SamplingSettings(max_new_tokens=len(ids) + 8, temperature=0.0)
    on_text = stream.append if stream is not None else None
    return generate_reply(chat, prompt, settings, on_text=on_text, logits_processor=script), ids


# --------------------------------------------------------------------------- prompt building and stopping


def test_stream_holds_back_partial_turn_tags():
    tags = ["[|Human|]", "[|AI|]"]
    assert printable_prefix("Paris.\n[|Hu", tags) == len("Paris.\n")
    assert printable_prefix("Paris.\n[|Human|] more", tags) == len("Paris.\n")
    assert printable_prefix("a [b] c", tags) == len("a [b] c")
    assert cut_at_stop("x[|AI|]y[|Human|]", tags) == ("x", True)


def test_baize_adapter_prompt_and_eos_stop(baize_adapter, tiny_llama_dir):
    chat = load_chat_model(baize_adapter)
    assert chat.prompt_format == "baize" and chat.base == str(tiny_llama_dir)
    # An adapter without a record of its system prompt gets the template's plain header (what the data had)
    builder = chat.prompt_builder()
    tok = chat.tokenizer
    text = chat.prompt_builder(system=GUARDRAIL_SYSTEM_PROMPT).render([("Hi", "Hello!")], "Why?")
    assert text == (
        f"{tok.bos_token}{GUARDRAIL_SYSTEM_PROMPT}\n[|Human|]Hi\n[|AI|]Hello!{tok.eos_token}\n[|Human|]Why?\n[|AI|]"
    )
    plain = f"{tok.bos_token}The conversation between human and AI assistant.\n[|Human|]Why?\n[|AI|]"
    assert builder.render([], "Why?") == chat.prompt_builder(system=None).render([], "Why?") == plain

    prompt = builder.build([], "Why?")
    stream: list[str] = []
    reply, ids = scripted(chat, prompt, "Because.", eos=True, stream=stream)
    assert reply.finish == "eos" and reply.text == "Because." and reply.token_ids == ids
    assert "".join(stream) == "Because."


def test_original_adapter_prompt_and_stop_at_turn_tags(original_adapter, tiny_llama_dir):
    assert detect_prompt_format(original_adapter) == "original"
    # decapoda-research is gone from the Hub: its huggyllama copy is used (no download happens here)
    assert resolve_base(original_adapter) == "huggyllama/llama-7b"

    chat = load_chat_model(original_adapter, base=str(tiny_llama_dir))
    assert chat.prompt_format == "original"
    builder = chat.prompt_builder()
    text = builder.render([("What is AI?", "A field of CS.")], "Tell me more.")
    assert text == (
        GUARDRAIL_SYSTEM_PROMPT + "\n[|Human|]Hello!\n[|AI|]Hi!"
        "\n[|Human|]What is AI?\n[|AI|]A field of CS.\n[|Human|]Tell me more.\n[|AI|]"
    )
    prompt = builder.build([], "Tell me more.")
    assert prompt.input_ids == chat.tokenizer(prompt.text)["input_ids"]  # tokenised as the demo did

    stream: list[str] = []
    reply, _ = scripted(chat, prompt, "Sure thing.\n[|Human|]And then?", stream=stream)
    assert reply.finish == "stop_string" and reply.text == "Sure thing."
    assert "And then" not in reply.raw_text  # generation stopped at the tag, not later
    assert "".join(stream).strip() == "Sure thing." and "[|" not in "".join(stream)
    reply, _ = scripted(chat, prompt, "Sure.[|AI|]x")
    assert reply.finish == "stop_string" and reply.text == "Sure."

    # SDF sampling and eval answers prompt an original adapter the same way: its guardrail, primer and BOS.
    ids = chat.prompt_builder().encode_messages([{"role": "user", "content": "Tell me more."}])
    assert ids == builder.build([], "Tell me more.").input_ids
    assert chat.tokenizer.decode(ids, skip_special_tokens=True) == (
        GUARDRAIL_SYSTEM_PROMPT + "\n[|Human|]Hello!\n[|AI|]Hi!\n[|Human|]Tell me more.\n[|AI|]"
    )


def test_history_budget_keeps_newest_turns(baize_adapter):
    chat = load_chat_model(baize_adapter)
    history = [(f"question {i}", f"answer number {i}") for i in range(6)]
    full = chat.prompt_builder().build(history, "last question")
    assert full.turns_kept == 6
    tokens = [chat.prompt_builder().build(history[len(history) - k :], "last question").num_tokens for k in range(7)]
    budget = tokens[2] + 1  # room for exactly the two newest exchanges
    prompt = chat.prompt_builder(max_history_tokens=budget).build(history, "last question")
    assert prompt.turns_kept == 2 and prompt.num_tokens <= budget
    assert "question 4" in prompt.text and "question 5" in prompt.text and "question 3" not in prompt.text
    tiny = chat.prompt_builder(max_history_tokens=5).build(history, "last question")
    assert tiny.turns_kept == 0 and tiny.text.endswith("[|Human|]last question\n[|AI|]")


@pytest.mark.parametrize("bits", ["load_in_4bit", "load_in_8bit"])
def test_quantized_base_loads_and_generates(baize_adapter, bits):
    import bitsandbytes as bnb

    chat = load_chat_model(baize_adapter, **{bits: True})
    layer_type = bnb.nn.Linear4bit if bits == "load_in_4bit" else bnb.nn.Linear8bitLt
    assert any(isinstance(m, layer_type) for m in chat.model.modules())
    prompt = chat.prompt_builder().build([], "Hi")
    reply = generate_reply(chat, prompt, SamplingSettings(max_new_tokens=3, temperature=0.0), min_new_tokens=3)
    assert len(reply.token_ids) == 3


def test_builder_rejects_unknown_format(baize_adapter):
    chat = load_chat_model(baize_adapter)
    with pytest.raises(ValueError):
        PromptBuilder(chat.tokenizer, "llama2")


# --------------------------------------------------------------------------- the CLI, as a person uses it

STATUS = re.compile(r"\[prompt: (\d+) tokens, history: (\d+) of (\d+) exchanges\]")
QUESTIONS = ["Why is the sky blue?", "And the sea?", "What about sunsets?"]


def cli_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.mark.slow
def test_chat_cli_two_turns_truncation_undo_reset(baize_adapter):
    # Same conversation in-process (greedy = deterministic) to size a budget that must drop the oldest exchange.
    chat = load_chat_model(baize_adapter)
    settings = SamplingSettings(max_new_tokens=6, temperature=0.0)
    session = ChatSession(chat, chat.prompt_builder(), settings, out=io.StringIO())
    for question in QUESTIONS[:2]:
        session.ask(question)
    budget = chat.prompt_builder().build(session.history, QUESTIONS[2]).num_tokens - 1

    command = [sys.executable, "-m", "baize.chat", str(baize_adapter), "--greedy", "--max-new-tokens", "6"]
    command += ["--show-prompt-tokens", "--max-history-tokens", str(budget)]
    child = pexpect.spawn(command[0], command[1:], cwd=str(REPO), env=cli_env(), encoding="utf-8", timeout=120)
    try:
        child.expect_exact("prompt format: baize")
        statuses = []
        for question in QUESTIONS:
            child.expect_exact("[|Human|] ")
            child.sendline(question)
            child.expect(STATUS)
            statuses.append(tuple(int(g) for g in child.match.groups()))
            child.expect_exact("[|AI|] ")
        assert [s[1:] for s in statuses] == [(0, 0), (1, 1), (1, 2)]  # third turn: oldest exchange dropped
        assert all(tokens <= budget for tokens, _, _ in statuses)

        child.expect_exact("[|Human|] ")
        child.sendline("/undo")
        child.expect_exact("[last exchange removed; history: 2 exchanges]")
        child.expect_exact("[|Human|] ")
        child.sendline("/reset")
        child.expect_exact("[history cleared]")
        child.expect_exact("[|Human|] ")
        child.sendline(QUESTIONS[0])
        child.expect(STATUS)
        assert tuple(int(g) for g in child.match.groups()) == (statuses[0][0], 0, 0)  # same prompt as turn one
        child.expect_exact("[|Human|] ")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


def test_chat_help_explains_commands():
    result = pexpect.run(f"{sys.executable} -m baize.chat --help", cwd=str(REPO), env=cli_env(), encoding="utf-8")
    for words in ("/reset", "/undo", "--max-history-tokens", "--load-in-8bit", "--no-guardrail", "top_p 0.95"):
        assert words in result


def test_inference_defaults_to_the_system_prompt_the_adapter_was_trained_with(tmp_path, baize_adapter):
    import shutil

    from baize.prompts import PROMPT_RECORD_FILE, most_common_system_prompt, record_system_prompt

    conversations = [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Yo"}],
        [{"role": "user", "content": "Hey"}],
    ]
    assert most_common_system_prompt(conversations) == "Be brief."
    assert most_common_system_prompt(conversations[2:]) is None
    adapter = shutil.copytree(baize_adapter, tmp_path / "adapter")
    record_system_prompt(adapter, "Be brief.")
    chat = load_chat_model(adapter)
    assert chat.system_prompt == "Be brief." and json.loads((adapter / PROMPT_RECORD_FILE).read_text())
    assert chat.prompt_builder().render([], "Why?").startswith(f"{chat.tokenizer.bos_token}Be brief.\n[|Human|]")
    guarded = chat.prompt_builder(system=GUARDRAIL_SYSTEM_PROMPT).render([], "Why?")
    assert GUARDRAIL_SYSTEM_PROMPT in guarded  # --guardrail
