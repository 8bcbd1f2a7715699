"""Helpers shared by the tests (importable as `helpers`: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


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


def chatty_copy(tiny_llama_dir: Path, dest: Path) -> Path:
    """A copy of the tiny random Llama that ends replies by itself: a random model almost never says EOS, so a
    fifth of the vocabulary is made to end a reply, like a chat model would. Sampling on by default."""
    import shutil

    from transformers import GenerationConfig

    model_dir = Path(shutil.copytree(tiny_llama_dir, dest))
    generation = GenerationConfig.from_pretrained(model_dir)
    generation.eos_token_id = [generation.eos_token_id, *range(1000, 49_152, 5)]
    generation.do_sample = True
    generation.save_pretrained(model_dir)
    return model_dir


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def local_server(command: list[str], log_path: Path, ready_url: str, *, ready_timeout: float = 120.0,
                 env: dict | None = None, stop_signal=None):  # fmt: skip
    """A server process started with `command` (output to `log_path`), waited for until `ready_url` answers, and
    stopped afterwards (SIGTERM, or `stop_signal`; killed when it does not stop within 15 s)."""
    import os
    import signal
    import subprocess
    import time
    import urllib.request

    log = log_path.open("w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            assert server.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, f"{command[2]} did not become ready in {ready_timeout:.0f} s"
            try:
                urllib.request.urlopen(ready_url, timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        yield
    finally:
        server.send_signal(stop_signal or signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@contextmanager
def transformers_serve(log_path: Path, ready_timeout: float = 90.0):
    """A real `transformers serve` on a free loopback port (it loads whatever model a request names);
    yields its OpenAI base URL and stops it afterwards."""
    import signal
    import sys

    port = free_port()
    command = [sys.executable, "-m", "transformers.cli.transformers", "serve", "--device", "cpu", "--host",
               "127.0.0.1", "--port", str(port), "--default-seed", "0"]  # fmt: skip
    with local_server(command, log_path, f"http://127.0.0.1:{port}/health", ready_timeout=ready_timeout,
                      env={"HF_HUB_OFFLINE": "1"}, stop_signal=signal.SIGINT):  # fmt: skip
        yield f"http://127.0.0.1:{port}/v1"


@contextmanager
def llama_cpp_server(model: Path, log_path: Path, *extra: str, ready_timeout: float = 120.0):
    """llama-cpp-python's OpenAI-compatible server (llama.cpp) on a GGUF file, on a free loopback port; yields its
    base URL. Skips the test when llama-cpp-python is absent, except under CI, where `make llama-cpp` installs it."""
    import os
    import sys

    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            raise
        import pytest

        pytest.skip("llama-cpp-python is not installed: `make llama-cpp` builds it (about 7 minutes on 2 cores)")
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1", "--port",
               str(port), *extra]  # fmt: skip
    with local_server(command, log_path, f"http://127.0.0.1:{port}/v1/models", ready_timeout=ready_timeout):
        yield f"http://127.0.0.1:{port}/v1"


LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "gate_proj", "up_proj", "down_proj"]  # the original Baize set


def make_lora_adapter(
    path: Path, base_dir: Path, *, with_tokenizer: bool = True, base_name: str | None = None, seed: int = 0
) -> Path:
    """A random (non-zero) LoRA adapter over `base_dir`, saved like `baize train` does (with the tokenizer and
    the Baize template), or like the original project-baize repos (`with_tokenizer=False`: adapter files only,
    optionally naming another base, e.g. decapoda-research/llama-7b-hf)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(
        r=8, lora_alpha=16, target_modules=LORA_TARGETS, init_lora_weights=False, task_type="CAUSAL_LM"
    )
    get_peft_model(base, config).save_pretrained(path)
    if base_name:
        config_path = path / "adapter_config.json"
        config_json = json.loads(config_path.read_text())
        config_json["base_model_name_or_path"] = base_name
        config_path.write_text(json.dumps(config_json, indent=2))
    if with_tokenizer:
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
        from baize.prompts import baize_template

        tokenizer.chat_template = baize_template()
        tokenizer.save_pretrained(path)
    return path


def write_recipe(tmp_path: Path, model_dir: Path, data_file: Path, **overrides) -> Path:
    recipe = {
        "model_name_or_path": str(model_dir),
        "use_peft": True,
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.0,
        "lora_target_modules": "all-linear",
        "datasets": [{"path": "json", "data_files": str(data_file)}],
        "test_split_size": 4,
        "max_length": 256,
        "output_dir": str(tmp_path / "run"),
        "max_steps": 3,
        "per_device_train_batch_size": 4,
        "learning_rate": 5.0e-3,
        "logging_steps": 1,
        "eval_strategy": "no",
        "save_strategy": "steps",
        "save_steps": 2,
        "report_to": "none",
        "activation_checkpointing": False,
        "dataloader_pin_memory": False,
        **overrides,
    }
    path = tmp_path / "sft.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def sdf_train_recipe(tmp_path: Path, model_dir: Path, **overrides) -> Path:
    """An SFT recipe for SDF's train step: SDF sets its model and data, so it names neither (nor a test split)."""
    path = write_recipe(tmp_path, model_dir, tmp_path / "unused.jsonl", **overrides)
    recipe = yaml.safe_load(path.read_text())
    for key in ("model_name_or_path", "datasets", "test_split_size"):
        recipe.pop(key)
    path.write_text(yaml.safe_dump(recipe))
    return path


def train(recipe: Path, *extra: str) -> dict:
    from baize.train import main, parse_args

    return main(*parse_args(["--config", str(recipe), *extra]))


def hub_env(hub, home: Path, token: str | None) -> dict:
    """A user's environment: no HF_* variables of ours, the loopback endpoint, a fresh HF_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env.update(
        HF_ENDPOINT=hub.endpoint,
        HF_HOME=str(home),
        HF_HUB_OFFLINE="0",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONPATH=str(REPO),
    )
    if token is not None:
        env["HF_TOKEN"] = token
    return env
