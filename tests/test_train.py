"""End-to-end SFT on a tiny random Llama: LoRA (fp32, 4-bit, 8-bit), reload, resume, multi-process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import sample_dialogues, train, write_jsonl, write_recipe
from huggingface_hub import ModelCard
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

REPO = Path(__file__).resolve().parent.parent
SECRET = "hf_baizeTestSecretTokenThatMustNeverBeWritten"


def last_token_logits(model, tokenizer) -> torch.Tensor:
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Why is the sky blue?"}], add_generation_prompt=True, return_tensors="pt"
    )
    with torch.no_grad():
        return model(input_ids=ids["input_ids"] if hasattr(ids, "keys") else ids).logits[0, -1].float()


@pytest.fixture(scope="module")
def default_run(tmp_path_factory, tiny_llama_dir) -> tuple[Path, dict]:
    """One 3-step run of the default test recipe, shared by the tests that only read it (or re-run it unchanged)."""
    folder = tmp_path_factory.mktemp("default-run")
    recipe = write_recipe(folder, tiny_llama_dir, write_jsonl(folder / "chat.jsonl", sample_dialogues()))
    return recipe, train(recipe)


@pytest.mark.parametrize(
    "quantization", [pytest.param(q, marks=pytest.mark.slow) for q in (None, "load_in_4bit", "load_in_8bit")]
)
def test_lora_sft_adapter_reloads_and_changes_the_model(tmp_path, tiny_llama_dir, chat_jsonl, quantization, request):
    if quantization is None:  # the shared fp32 run
        recipe, summary = request.getfixturevalue("default_run")
        out = recipe.parent / "run"
    else:
        summary = train(write_recipe(tmp_path, tiny_llama_dir, chat_jsonl, **{quantization: True}))
        out = tmp_path / "run"

    assert summary["global_step"] == 3 and summary["loss_first"] > 0 and summary["tokens_per_second"] > 0
    for name in ("adapter_config.json", "adapter_model.safetensors", "README.md", "run_summary.json"):
        assert (out / name).exists(), name
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    # all-linear: o_proj included (the original Baize missed it)
    assert {name.rsplit(".", 1)[-1] for name in adapter_config["target_modules"]} == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "peft" and "baize" in card.data.tags
    assert "| steps trained | 3 steps |" in card.text
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert "[|AI|]" in tokenizer.chat_template  # the Baize template travels with the adapter

    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    before = last_token_logits(base, tokenizer)
    tuned = PeftModel.from_pretrained(base, out)
    after = last_token_logits(tuned, tokenizer)
    assert not torch.allclose(before, after, atol=1e-4)


@pytest.mark.slow
def test_resume_continues_from_last_checkpoint(tmp_path, tiny_llama_dir, chat_jsonl):
    recipe = write_recipe(tmp_path, tiny_llama_dir, chat_jsonl, max_steps=2, save_steps=1)
    train(recipe)
    assert (tmp_path / "run" / "checkpoint-2").is_dir()
    first = json.loads((tmp_path / "run" / "run_summary.json").read_text())
    summary = train(recipe, "--max_steps", "4")
    assert summary["global_step"] == 4
    assert summary["this_run"]["train_tokens"] < 1.5 * first["train_tokens"]  # this run's own two steps
    # the summary covers the whole run: its tokens and the first run's training seconds too (from checkpoint-2)
    assert summary["train_tokens"] > 1.5 * first["train_tokens"] and summary["tokens_per_second"]
    assert summary["train_runtime_s"] > first["train_runtime_s"] > 0 and summary["this_run"]["resumed_from_step"] == 2
    assert (tmp_path / "run" / "checkpoint-2" / "baize_runtime.json").exists()
    state = json.loads((tmp_path / "run" / "checkpoint-4" / "trainer_state.json").read_text())
    steps = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert steps == [1, 2, 3, 4]  # restored history + two new steps, none repeated


@pytest.mark.slow
def test_rerunning_a_finished_run_changes_nothing(default_run, capsys):
    recipe, first = default_run
    out = recipe.parent / "run"
    files = ("adapter_model.safetensors", "run_summary.json", "README.md", "run_signature.json")
    before = {name: (out / name).read_bytes() for name in files}
    checkpoints = sorted(p.name for p in out.glob("checkpoint-*"))

    again = train(recipe)
    assert again == first and "already complete (3 steps): nothing to do" in capsys.readouterr().out
    assert {name: (out / name).read_bytes() for name in files} == before
    assert sorted(p.name for p in out.glob("checkpoint-*")) == checkpoints


@pytest.mark.slow
def test_other_settings_are_refused_in_the_same_folder_unless_overwrite(tmp_path, tiny_llama_dir, chat_jsonl, capsys):
    from baize.train import cli

    recipe = write_recipe(tmp_path, tiny_llama_dir, chat_jsonl, max_steps=2, save_steps=1)
    train(recipe)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli(["--config", str(recipe), "--learning_rate", "1e-3", "--lora_r", "4"])
    error = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(error) == 1
    assert (
        "learning_rate: 0.005 -> 0.001" in error[0] and "lora_r: 8 -> 4" in error[0] and "--overwrite true" in error[0]
    )

    summary = train(recipe, "--learning_rate", "1e-3", "--overwrite", "true")
    assert summary["global_step"] == 2  # started over: no checkpoint of the old run was resumed
    signature = json.loads((tmp_path / "run" / "run_signature.json").read_text())
    assert signature["complete"] and signature["settings"]["training"]["learning_rate"] == 1e-3


@pytest.mark.slow
def test_hub_token_never_lands_in_artifacts(tmp_path, tiny_llama_dir, chat_jsonl):
    recipe = write_recipe(tmp_path, tiny_llama_dir, chat_jsonl, max_steps=2, save_steps=1)
    previous = os.environ.get("HF_TOKEN")
    try:
        train(recipe, "--hub_token", SECRET)
    finally:
        os.environ.pop("HF_TOKEN", None) if previous is None else os.environ.__setitem__("HF_TOKEN", previous)
    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert any(p.name == "training_args.bin" for p in files)
    assert not [p for p in files if SECRET.encode() in p.read_bytes()]


@pytest.mark.slow  # two processes and a gloo rendezvous
def test_two_process_accelerate_launch_on_cpu(tmp_path, tiny_llama_dir, chat_jsonl):
    recipe = write_recipe(tmp_path, tiny_llama_dir, chat_jsonl, max_steps=2, per_device_train_batch_size=2)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file"]
    command += [str(REPO / "accelerate_configs" / "multi_cpu.yaml"), "-m", "baize.train", "--config", str(recipe)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((tmp_path / "run" / "run_summary.json").read_text())
    assert summary["num_processes"] == 2 and summary["global_step"] == 2


@pytest.mark.slow
def test_smol_recipe_runs_a_few_steps(tmp_path):
    """`make train RECIPE=baize-smol` as a newcomer runs it, shortened to two steps."""
    out = tmp_path / "smol"
    args = f"--max_steps 2 --eval_strategy no --output_dir {out}"
    result = subprocess.run(
        ["make", "train", "RECIPE=baize-smol", f"ARGS={args}", f"PYTHON={sys.executable}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["global_step"] == 2 and summary["loss_first"] > 0
    assert (out / "adapter_model.safetensors").exists()


@pytest.mark.slow
def test_run_writes_loss_plot_recipe_and_trackio_curves(tmp_path, tiny_llama_dir, chat_jsonl):
    """`baize train` as a user runs it (from the project folder, relative output_dir, default trackio): a loss
    plot in the card, the resolved recipe without secrets, curves that `trackio` lists, a how-to that runs."""
    import re

    import yaml

    recipe = write_recipe(
        tmp_path, tiny_llama_dir, chat_jsonl, output_dir="runs/tiny-baize/sft", report_to="trackio",
        project="tiny-baize", eval_strategy="steps", eval_steps=2, max_steps=4,
    )  # fmt: skip
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path / "trackio"), "HF_TOKEN": SECRET, "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, "-m", "baize.train", "--config", str(recipe)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "trackio show --project tiny-baize" in run.stdout
    out = tmp_path / "runs" / "tiny-baize" / "sft"

    # trackio's own CLI lists the run, named after the model, and its loss curve
    def trackio(*args):
        cli = Path(sys.executable).parent / "trackio"  # the console script of the environment running the tests
        listed = subprocess.run([str(cli), *args], env=env, capture_output=True, text=True, timeout=120)
        assert listed.returncode == 0, listed.stderr[-2000:]
        return listed.stdout

    assert "tiny-baize" in trackio("list", "runs", "--project", "tiny-baize")
    metrics = trackio("list", "metrics", "--project", "tiny-baize", "--run", "tiny-baize")
    assert "train/loss" in metrics and "eval/loss" in metrics

    # the loss plot, embedded in the card
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = (out / "README.md").read_text()
    assert "](loss.png)" in card
    # units, rounded losses, no local paths, license of the base (its card's, or "other")
    assert "| training length | 4 steps |" in card and "| steps trained | 4 steps |" in card
    first_last = re.search(r"\| training loss, first -> last step \| (\S+) -> (\S+) \|", card)
    assert first_last and all(re.fullmatch(r"\d+\.\d{3}", value) for value in first_last.groups())
    assert str(tmp_path) not in card and str(Path.home()) not in card
    assert ModelCard(card).data.license == "other" and ModelCard(card).data.license_name == "base-model-license"

    # the resolved recipe: every key, no secret, and `--config recipe.yaml` reads it back as the same run
    resolved = yaml.safe_load((out / "recipe.yaml").read_text())
    assert SECRET not in (out / "recipe.yaml").read_text()
    assert resolved["max_steps"] == 4 and resolved["report_to"] == ["trackio"] and "hub_token" not in resolved
    from baize.train import parse_args

    _, training_args, model_args, dataset_args = parse_args(["--config", str(out / "recipe.yaml")])
    assert (training_args.learning_rate, model_args.lora_r) == (5.0e-3, 8)
    assert dataset_args.datasets[0].data_files == str(chat_jsonl)

    # the card's how-to, pasted into Python where the run was started, loads the adapter and generates
    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1).replace("max_new_tokens=256", "max_new_tokens=8")
    pasted = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert pasted.returncode == 0, pasted.stderr[-2000:]
