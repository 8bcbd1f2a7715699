"""`baize export`: a SmolLM2 adapter as GGUF (llama.cpp's own converter) and as GGUF + Ollama Modelfile; one chat
template everywhere (baize's prompt builder, the saved tokenizer, the GGUF's template rendered by plain Jinja2, the
Ollama TEMPLATE's table); transformers' own GGUF loader and llama.cpp (through llama-cpp-python's OpenAI-compatible
server) read the file back; bad input is one line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import openai
import pytest
import torch
from helpers import REPO, llama_cpp_server, make_lora_adapter

from baize.export import gguf_metadata
from baize.modeling.loading import load_chat_model

CASES = {
    "one question": [{"role": "user", "content": "What is a cloud?"}],
    "system and two exchanges": [
        {"role": "system", "content": "You are a careful assistant."},
        {"role": "user", "content": "Name a planet."},
        {"role": "assistant", "content": "Mars."},
        {"role": "user", "content": "And one with rings?"},
        {"role": "assistant", "content": "Saturn."},
        {"role": "user", "content": "Which is larger?"},
    ],
    "no system, one exchange": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a fact."},
    ],
}
# What the Modelfile's TEMPLATE renders for each case after its BOS text (Ollama's Go template read by hand: system or
# the default header, "\n[|Human|]" + user, "\n[|AI|]" + assistant + EOS, then "\n[|AI|]").
HEADER = "The conversation between human and AI assistant."
OLLAMA_EXPECTED = {
    "one question": f"{HEADER}\n[|Human|]What is a cloud?\n[|AI|]",
    "system and two exchanges": "You are a careful assistant.\n[|Human|]Name a planet.\n[|AI|]Mars.<|im_end|>"
    "\n[|Human|]And one with rings?\n[|AI|]Saturn.<|im_end|>\n[|Human|]Which is larger?\n[|AI|]",
    "no system, one exchange": f"{HEADER}\n[|Human|]Hi\n[|AI|]Hello! How can I help?<|im_end|>\n[|Human|]Tell me a "
    "fact.\n[|AI|]",
}


def export(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "baize.export", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=900, env=env)  # fmt: skip


@pytest.fixture(scope="module")
def exported(tmp_path_factory, smol_dir) -> dict:
    """A SmolLM2 LoRA (random, non-zero) exported once as Ollama (f16) and once as GGUF q8_0."""
    root = tmp_path_factory.mktemp("export")
    adapter = make_lora_adapter(root / "adapter", smol_dir, seed=5)
    # Small LoRA updates, as training leaves them: greedy replies stay comparable across precisions.
    from safetensors.torch import load_file, save_file

    weights = load_file(adapter / "adapter_model.safetensors")
    save_file({k: v * 0.05 for k, v in weights.items()}, adapter / "adapter_model.safetensors")
    # The original project-baize adapters' shape: adapter files only, no tokenizer (the original prompt format).
    original = make_lora_adapter(root / "original-adapter", smol_dir, with_tokenizer=False, seed=6)
    done = {}
    for name, model, to, quant in (("f16", adapter, "ollama", "f16"), ("q8_0", adapter, "gguf", "q8_0"),
                                   ("original", original, "ollama", "f16"), ("native", smol_dir, "ollama", "f16")):  # fmt: skip
        result = export(str(model), "--to", to, "--quant", quant, "--output", str(root / name))
        assert result.returncode == 0, result.stderr[-3000:]
        done[name] = root / name
    return {
        "adapter": adapter,
        "models": {"baize": adapter, "original": original, "native": smol_dir},
        "root": root,
        **done,
    }


@pytest.mark.slow
@pytest.mark.parametrize("prompt_format", ["baize", "original", "native"])
def test_one_template_everywhere(exported, prompt_format):
    """The same conversations through baize's prompt builder, the saved tokenizer's apply_chat_template, the
    GGUF's stored template rendered by plain Jinja2 (no transformers), and the Ollama TEMPLATE's table: for a
    baize adapter, an original project-baize-shaped adapter and a native model (SmolLM2's own ChatML)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    folder = exported["f16" if prompt_format == "baize" else prompt_format]
    chat = load_chat_model(exported["models"][prompt_format], without_weights=True)
    assert chat.prompt_format == prompt_format
    builder = chat.prompt_builder(system=None)
    record = json.loads((folder / "export.json").read_text())
    metadata = gguf_metadata(folder / record["files"][0])
    assert metadata["eos_token_id"] == chat.tokenizer.eos_token_id and record["eos_token"] == "<|im_end|>"
    assert metadata["stop_strings"] == (None if prompt_format == "native" else ["[|Human|]", "[|AI|]", "\n[|"])
    assert "{%- generation" not in metadata["chat_template"]  # transformers' training markers are not for runtimes

    def raise_exception(message):
        raise ValueError(message)

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    environment.globals["raise_exception"] = raise_exception
    gguf_template = environment.from_string(metadata["chat_template"])
    bos = chat.tokenizer.bos_token or ""
    original = {"baize_format": "original"} if prompt_format == "original" else {}

    def render(messages):
        return gguf_template.render(messages=messages, add_generation_prompt=True, bos_token=bos,
                                    eos_token=chat.tokenizer.eos_token)  # fmt: skip

    for name, messages in CASES.items():
        # baize's prompt (for original adapters it primes the chat as the original demo did) ...
        assert render(builder.conversation(messages)) == builder.render_messages(messages), name
        # ... and a client's messages as they are, through the template saved with the model
        plain = chat.tokenizer.apply_chat_template(messages, chat_template=chat.chat_template, tokenize=False,
                                                   add_generation_prompt=True, **original)  # fmt: skip
        assert render(messages) == plain, name
        if prompt_format != "original":  # the tokenizer's own template (no baize_format keyword needed)
            assert chat.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == plain
        if prompt_format == "baize":
            assert bos + OLLAMA_EXPECTED[name] == plain, name
        elif prompt_format == "original":
            assert OLLAMA_EXPECTED[name].replace("<|im_end|>", "") == plain, name  # no BOS, no EOS in the text

    modelfile = (folder / "Modelfile").read_text()
    assert modelfile.startswith(f"FROM ./{record['files'][0]}\n")
    template = re.search(r'TEMPLATE """(.*?)"""', modelfile, re.S)
    # Token for token as training started: Ollama adds a BOS itself only where the GGUF says add_bos_token, and
    # tokenizes the rendered TEMPLATE (its BOS text included) with special tokens parsed.
    for name, messages in CASES.items():
        if template is None:  # native: Ollama renders the GGUF's own template
            ollama_text = render(messages)
        else:
            table = (
                OLLAMA_EXPECTED[name] if prompt_format == "baize" else OLLAMA_EXPECTED[name].replace("<|im_end|>", "")
            )
            ollama_text = template.group(1).split("{{", 1)[0] + table
        ollama_tokens = [chat.tokenizer.bos_token_id] if metadata["add_bos_token"] else []
        ollama_tokens += chat.tokenizer.encode(ollama_text, add_special_tokens=False)
        trained = chat.tokenizer.apply_chat_template(messages, chat_template=chat.chat_template, tokenize=True,
                                                     add_generation_prompt=True, **original)  # fmt: skip
        trained = trained["input_ids"] if hasattr(trained, "keys") else trained
        assert ollama_tokens == list(trained), name
    if prompt_format == "baize":  # the Baize template writes SmolLM2's BOS and the GGUF does not add one
        assert template.group(1).startswith(chat.tokenizer.bos_token) and not metadata["add_bos_token"]
    if prompt_format == "native":  # Ollama reads a native template from the GGUF itself
        assert template is None and 'PARAMETER stop "<|im_end|>"' in modelfile
        return
    assert ("{{ .Content }}<|im_end|>" in modelfile) == (prompt_format == "baize") and '\n[|AI|]"""' in modelfile
    for stop in ("[|Human|]", "[|AI|]", "<|im_end|>"):
        assert f"PARAMETER stop {json.dumps(stop)}" in modelfile
    assert "PARAMETER temperature" in modelfile and "PARAMETER top_p" in modelfile


@pytest.mark.slow
def test_transformers_reads_the_gguf_back_and_greedy_replies_match(exported):
    """transformers' own GGUF loader: f16 gives the merged model's greedy replies; q8_0 most of the first 32."""
    from transformers import AutoModelForCausalLM

    chat = load_chat_model(exported["adapter"], dtype=torch.float32)
    merged = chat.model.merge_and_unload()
    builder = chat.prompt_builder()
    prompts = ["Why is the sky blue?", "Give me a tip for sleeping well.", "What is 12 times 7?"]

    def greedy(model, text):
        ids = torch.tensor([builder.encode(text)])
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=32, do_sample=False,
                                 pad_token_id=chat.tokenizer.pad_token_id)  # fmt: skip
        return out[0, ids.shape[1] :].tolist()

    texts = [builder.render_messages([{"role": "user", "content": p}]) for p in prompts]
    expected = [greedy(merged, t) for t in texts]
    agreement = {}
    for quant in ("f16", "q8_0"):
        folder = exported[quant]
        name = json.loads((folder / "export.json").read_text())["files"][0]
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        replies = [greedy(model, t) for t in texts]
        same = [next((i for i, (a, b) in enumerate(zip(r, e, strict=True)) if a != b), 32)
                for r, e in zip(replies, expected, strict=True)]  # fmt: skip
        agreement[quant] = same
    print(f"greedy tokens equal before the first difference (of 32): {agreement}")
    assert agreement["f16"] == [32, 32, 32]
    assert sum(n == 32 for n in agreement["q8_0"]) >= 2


@pytest.mark.slow
def test_re_running_is_a_no_op_and_bad_input_is_one_line(exported, tmp_path):
    folder = exported["f16"]
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    again = export(str(exported["adapter"]), "--to", "ollama", "--output", str(folder))
    assert again.returncode == 0 and {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before

    def one_line(result):
        errors = [line for line in result.stderr.splitlines() if line.startswith("baize export: error:")]
        assert result.returncode != 0 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
        return errors[0]

    assert "holds another export" in one_line(export(str(exported["adapter"]), "--to", "gguf", "--quant", "q8_0",
                                                     "--output", str(folder)))  # fmt: skip
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    line = one_line(export(str(exported["adapter"]), "--quant", "q4_k_m", "--output", str(tmp_path / "q4"), env=env))
    assert "llama-quantize" in line and not (tmp_path / "q4").exists()
    assert "holds no model" in one_line(export(str(tmp_path), "--output", str(tmp_path / "none")))
    leftovers = [p.name for p in exported["root"].iterdir() if ".partial-" in p.name]
    assert not leftovers


@pytest.mark.slow
def test_llama_cpp_serves_the_export_with_its_stored_template(exported, tmp_path):
    """llama.cpp (llama-cpp-python's OpenAI-compatible server, `make llama-cpp`) loads the exported GGUF and renders
    the chat from the template stored in it: the prompt it counts is baize's prompt, token for token."""
    record = json.loads((exported["f16"] / "export.json").read_text())
    messages = CASES["system and two exchanges"]
    with llama_cpp_server(exported["f16"] / record["files"][0], tmp_path / "llama.log", "--n_ctx", "1024") as url:
        client = openai.OpenAI(base_url=url, api_key="none", max_retries=0)
        reply = client.chat.completions.create(model="baize", messages=messages, max_tokens=24, temperature=0,
                                               stop=record["stop_strings"])  # fmt: skip
    chat = load_chat_model(exported["adapter"], without_weights=True)
    expected_tokens = len(chat.prompt_builder(system=None).encode_messages(messages))
    assert reply.usage.prompt_tokens == expected_tokens
    text = reply.choices[0].message.content
    assert "[|Human|]" not in text and "[|AI|]" not in text
    assert reply.choices[0].finish_reason in ("stop", "length")


@pytest.mark.slow
def test_push_gguf_uploads_the_export_with_a_quantized_card(exported, tmp_path):
    from helpers import hub_env
    from hub_server import HubServer
    from huggingface_hub import ModelCard

    with HubServer() as hub:
        env = hub_env(hub, tmp_path / "home", hub.token)
        pushed = subprocess.run([sys.executable, "-m", "baize.push", str(exported["f16"]), "--gguf", "--repo_id",
                                 "baize-tester/smol-gguf"], cwd=REPO, env=env, capture_output=True, text=True,
                                timeout=300)  # fmt: skip
        assert pushed.returncode == 0, pushed.stderr[-3000:]
        assert ("model", "baize-tester/smol-gguf") in hub.repos
        reader = subprocess.run([sys.executable, "-c", "from huggingface_hub import hf_hub_download as d; import sys; "
                                 "print(d('baize-tester/smol-gguf', sys.argv[1])); print(d('baize-tester/smol-gguf', "
                                 "'README.md'))", json.loads((exported["f16"] / "export.json").read_text())["files"][0]],
                                cwd=REPO, env=hub_env(hub, tmp_path / "home2", None), capture_output=True, text=True,
                                timeout=300)  # fmt: skip
        assert reader.returncode == 0, reader.stderr[-3000:]
    gguf_path, card_path = reader.stdout.split()
    assert gguf_metadata(Path(gguf_path))["stop_strings"] == ["[|Human|]", "[|AI|]", "\n[|"]
    card = ModelCard.load(card_path)
    assert (
        card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and card.data.base_model_relation == "quantized"
    )
    assert "gguf" in card.data.tags and "ollama run hf.co/baize-tester/smol-gguf" in card.text
