"""GPU-readiness that a CPU can show: the global batch, precision choice, sharding guards, kernels, saved adapter."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from trl import ModelConfig

from baize.io.errors import LaunchError
from baize.modeling.launch import (
    Sharding,
    attention_implementation,
    check_liger,
    check_quantization_fits_sharding,
    derive_gradient_accumulation,
    require_saved_model,
    trainable_weights_for_fp16,
)
from baize.train import parse_args

REPO = Path(__file__).resolve().parent.parent
PAPER_RECIPES = ["baize-7b", "baize-13b", "baize-30b", "baize-healthcare-7b"]
FSDP2 = Sharding(world_size=8, fsdp_version=2, fsdp_use_orig_params=True)
FSDP1_QLORA = Sharding(world_size=8, fsdp_version=1, fsdp_use_orig_params=False)
ZERO3 = Sharding(world_size=8, zero_stage=3)


def recipe(name: str) -> list[str]:
    return ["--config", str(REPO / "recipes" / name / "sft.yaml")]


def batch_settings(name: str, **overrides) -> SimpleNamespace:
    values = yaml.safe_load((REPO / "recipes" / name / "sft.yaml").read_text())
    keys = ("global_batch_size", "per_device_train_batch_size")
    return SimpleNamespace(**{k: values[k] for k in keys}, gradient_accumulation_steps=1, **overrides)


@pytest.mark.parametrize("name", PAPER_RECIPES)
@pytest.mark.parametrize("world", [1, 2, 8])
def test_global_batch_is_the_papers_64_on_any_number_of_gpus(name, world):
    settings = batch_settings(name)
    if settings.per_device_train_batch_size * world > 64:
        settings.per_device_train_batch_size = 64 // world  # what the error below tells the user to pass
    derive_gradient_accumulation(settings, Sharding(world_size=world))
    assert settings.per_device_train_batch_size * settings.gradient_accumulation_steps * world == 64
    if world == 1:  # the recipe as parsed: the paper's micro-batch x accumulation
        _, training, _, _ = parse_args(recipe(name))
        assert training.gradient_accumulation_steps == 64 // training.per_device_train_batch_size


def test_a_global_batch_that_cannot_be_reached_is_refused_with_the_fix():
    with pytest.raises(LaunchError, match=r"global_batch_size 64 .* 32 x 8 .* use --per_device_train_batch_size 8"):
        derive_gradient_accumulation(batch_settings("baize-7b"), Sharding(world_size=8))
    with pytest.raises(LaunchError, match=r"global_batch_size 64 .* 32 x 3 .* change the number of processes"):
        derive_gradient_accumulation(batch_settings("baize-7b"), Sharding(world_size=3))
    with pytest.raises(LaunchError, match="contradicts global_batch_size"):
        parse_args(recipe("baize-7b") + ["--gradient_accumulation_steps", "4"])


def test_int8_recipes_train_as_the_original_did():
    for name in PAPER_RECIPES:
        _, training, model, _ = parse_args(recipe(name))
        # fp16 compute (no bitsandbytes casts), activations recomputed; on this CPU the fp16 request becomes fp32
        assert model.load_in_8bit and model.dtype == "float16"
        assert training.activation_checkpointing
        assert (training.activation_checkpointing_kwargs or {}).get("use_reentrant") is not True
        assert yaml.safe_load((REPO / "recipes" / name / "sft.yaml").read_text())["fp16"] is True


def test_precision_and_ddp_defaults_on_a_cpu():
    _, training, _, _ = parse_args(recipe("baize-7b"))
    assert (training.bf16, training.fp16, training.mixed_precision) == (False, False, "no")
    assert training.use_cpu and training.ddp_find_unused_parameters is False


def test_accelerate_configs_leave_precision_to_the_recipe_and_save_full_state_dicts():
    for path in (REPO / "accelerate_configs").glob("*.yaml"):
        config = yaml.safe_load(path.read_text())
        assert config.get("mixed_precision") == "no", path.name
        if config["distributed_type"] == "FSDP":
            assert config["fsdp_config"]["fsdp_state_dict_type"] == "FULL_STATE_DICT", path.name
    qlora = yaml.safe_load((REPO / "accelerate_configs" / "fsdp_qlora.yaml").read_text())["fsdp_config"]
    assert qlora["fsdp_version"] == 1 and qlora["fsdp_use_orig_params"] is False


@pytest.mark.parametrize("sharding", [FSDP2, FSDP1_QLORA, ZERO3], ids=lambda s: s.describe())
def test_int8_base_is_refused_under_parameter_sharding(sharding):
    with pytest.raises(LaunchError, match="load_in_8bit cannot be sharded.*multi_gpu.yaml"):
        check_quantization_fits_sharding(ModelConfig(load_in_8bit=True), sharding)


def test_qlora_under_sharding_stores_4bit_weights_in_the_model_dtype():
    for sharding in (FSDP1_QLORA, ZERO3):
        model = ModelConfig(load_in_4bit=True, dtype="bfloat16")
        check_quantization_fits_sharding(model, sharding)
        assert model.bnb_4bit_quant_storage == "bfloat16"
    with pytest.raises(LaunchError, match="fsdp_qlora.yaml"):
        check_quantization_fits_sharding(ModelConfig(load_in_4bit=True, dtype="bfloat16"), FSDP2)
    with pytest.raises(LaunchError, match="must equal dtype"):
        check_quantization_fits_sharding(
            ModelConfig(load_in_4bit=True, dtype="bfloat16", bnb_4bit_quant_storage="uint8"), ZERO3
        )
    plain = ModelConfig(load_in_8bit=True)
    check_quantization_fits_sharding(plain, Sharding(world_size=8))  # DDP: int8 is fine
    assert plain.bnb_4bit_quant_storage is None


@pytest.mark.slow
def test_int8_under_fsdp_is_one_line_and_exit_2_before_loading_anything(tmp_path):
    env = {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "baize.train", *recipe("baize-7b"), "--output_dir", str(tmp_path / "run")],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("baize train: error:")]
    assert result.returncode == 2 and len(errors) == 1 and "Traceback" not in result.stderr
    assert "FSDP2" in errors[0] and not (tmp_path / "run").exists()


def test_fast_attention_falls_back_to_per_document_attention_when_absent(caplog):
    assert attention_implementation("sdpa") == "sdpa" and attention_implementation(None) is None
    assert attention_implementation("flash_attention_2") == "baize_packed"  # no flash-attn, no CUDA here
    assert "using baize's per-document attention" in caplog.text


def test_liger_without_the_package_is_a_clear_error():
    _, training, _, _ = parse_args(recipe("baize-7b") + ["--use_liger_kernel", "true"])
    pytest.importorskip("torch")
    try:
        import liger_kernel  # noqa: F401
    except ImportError:
        with pytest.raises(LaunchError, match=r"pip install -e '\.\[liger\]'"):
            check_liger(training)


def test_no_card_or_push_without_a_saved_adapter(tmp_path):
    with pytest.raises(LaunchError, match="no adapter was saved.*FULL_STATE_DICT"):
        require_saved_model(tmp_path, adapter=True)
    (tmp_path / "adapter_model.safetensors").write_bytes(b"x")
    assert require_saved_model(tmp_path, adapter=True).name == "adapter_model.safetensors"


def test_fp16_training_keeps_trainable_weights_in_fp32():
    # TRL casts a quantised base's adapter to bf16; fp16 loss scaling cannot unscale bf16 gradients on CUDA
    # (the int8 recipes crashed at their first step on an H200). Only trainable weights change.
    import torch

    frozen = torch.nn.Linear(4, 4).to(torch.float16).requires_grad_(False)
    adapter = torch.nn.Linear(4, 4).to(torch.bfloat16)
    model = torch.nn.Sequential(frozen, adapter)
    assert trainable_weights_for_fp16(model, SimpleNamespace(fp16=False)) == 0
    assert adapter.weight.dtype == torch.bfloat16
    assert trainable_weights_for_fp16(model, SimpleNamespace(fp16=True)) == 2
    assert adapter.weight.dtype == adapter.bias.dtype == torch.float32
    assert frozen.weight.dtype == torch.float16
