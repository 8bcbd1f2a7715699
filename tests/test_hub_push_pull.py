"""Push and pull through a loopback Hub (tests/hub_server.py) with the real huggingface_hub client.

Every Hub call runs in a subprocess with HF_ENDPOINT pointing at the loopback server, as a user's shell
would: huggingface_hub reads the endpoint when it is imported, and the download goes to a fresh HF_HOME.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import hub_env, make_lora_adapter, sample_dialogues, train, write_jsonl, write_recipe
from hub_server import HubServer
from huggingface_hub import ModelCard

from baize.hub import HubError, find_secrets, plan_adapter_push, push_plan
from baize.hub.cards import dataset_card
from baize.llm.generation import SamplingSettings, generate_reply
from baize.modeling.loading import load_chat_model
from baize.push import cli as push_cli

REPO = Path(__file__).resolve().parent.parent
REPO_ID = "baize-tester/tiny-baize"
BASE_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what the tiny base stands in for, written into card and config
QUESTION = "Why is the sky blue?"
EXPECTED_FILES = {
    ".gitattributes",
    "README.md",
    "adapter_config.json",
    "adapter_model.safetensors",
    "baize_prompt.json",  # the system prompt it was trained with: inference uses it by default
    "chat_template.jinja",
    "loss.png",  # the loss plot the card embeds
    "recipe.yaml",  # the resolved recipe, secrets removed
    "run_summary.json",
    "tokenizer.json",
    "tokenizer_config.json",
}


def run(command: list[str], env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def card_header(readme: bytes | str) -> dict:
    text = readme.decode() if isinstance(readme, bytes) else readme
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


@pytest.fixture(scope="module")
def hub():
    with HubServer() as server:
        yield server


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_llama_dir) -> Path:
    """A real `baize train` output: adapter, tokenizer + template, card, checkpoints, training_args.bin."""
    tmp = tmp_path_factory.mktemp("hub-train")
    data = write_jsonl(tmp / "chat.jsonl", sample_dialogues())
    train(write_recipe(tmp, tiny_llama_dir, data, max_steps=2, save_steps=1))
    out = tmp / "run"
    assert (out / "checkpoint-2" / "optimizer.pt").exists() and (out / "training_args.bin").exists()
    return out


@pytest.fixture(scope="module")
def pushed(hub, run_dir, tmp_path_factory) -> subprocess.CompletedProcess:
    """`baize push` of the run to a private repo, branch v1."""
    env = hub_env(hub, tmp_path_factory.mktemp("push-home"), hub.token)
    command = [sys.executable, "-m", "baize.push", str(run_dir), "--repo-id", REPO_ID, "--private"]
    command += ["--revision", "v1", "--base-model", BASE_ID, "--license", "apache-2.0"]
    command += ["--dataset", "baize-tester/selfchat-smol"]
    result = run(command, env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_push_uploads_adapter_without_resume_state(hub, run_dir, pushed):
    files = hub.repo_files(REPO_ID, "v1")
    assert set(files) == EXPECTED_FILES  # no checkpoint-*/, optimizer/scheduler/RNG states, training_args.bin
    assert files["adapter_model.safetensors"] == (run_dir / "adapter_model.safetensors").read_bytes()
    assert set(hub.repo_files(REPO_ID, "main")) == {".gitattributes"}  # pushed to the branch only
    assert hub.repo(REPO_ID).private
    assert "checkpoint-1/" in pushed.stdout and "training_args.bin" in pushed.stdout  # reported as left out

    # The uploaded config names the Hub base; the local folder is untouched.
    assert json.loads(files["adapter_config.json"])["base_model_name_or_path"] == BASE_ID
    assert json.loads((run_dir / "adapter_config.json").read_text())["base_model_name_or_path"] != BASE_ID


def test_pushed_card_metadata_and_body(hub, run_dir, pushed):
    readme = hub.repo_files(REPO_ID, "v1")["README.md"]
    header = card_header(readme)
    assert header["base_model"] == BASE_ID
    assert header["library_name"] == "peft"
    assert header["license"] == "apache-2.0"
    assert header["datasets"] == ["baize-tester/selfchat-smol"]
    assert {"baize", "lora", "peft"} <= set(header["tags"])
    assert ModelCard(readme.decode()).data.base_model == BASE_ID  # huggingface_hub parses it too
    body = readme.decode()
    assert f'from_pretrained("{REPO_ID}")' in body and str(run_dir) not in body  # how-to names the repo
    assert "| steps trained | 2 steps |" in body and "LoRA r / alpha / dropout" in body  # metrics, hyperparameters
    assert f"baize chat {REPO_ID}" in body


PULL_SCRIPT = """
import json, sys
from baize.llm.generation import SamplingSettings, generate_reply
from baize.modeling.loading import load_chat_model
from baize.hub import HubError
repo, base, question = sys.argv[1:4]
chat = load_chat_model(repo, revision="v1", base=base)
prompt = chat.prompt_builder().build([], question)
settings = SamplingSettings(max_new_tokens=12, temperature=0.0)
reply = generate_reply(chat, prompt, settings, stop_strings=[], min_new_tokens=12)
errors = {}
for name, kwargs in {"missing": dict(adapter_or_model="baize-tester/no-such-adapter"),
                     "revision": dict(adapter_or_model=repo, revision="v9")}.items():
    try:
        load_chat_model(**kwargs, base=base)
    except HubError as error:
        errors[name] = str(error)
print(json.dumps({"tokens": reply.token_ids, "source": str(chat.source), "format": chat.prompt_format,
                  "model": type(chat.model).__name__, "errors": errors}))
"""


@pytest.mark.slow
def test_pull_into_clean_cache_generates_like_local(hub, run_dir, pushed, tiny_llama_dir, tmp_path):
    home = tmp_path / "clean-hf-home"
    env = hub_env(hub, home, hub.token)
    result = run([sys.executable, "-c", PULL_SCRIPT, REPO_ID, str(tiny_llama_dir), QUESTION], env)
    assert result.returncode == 0, result.stderr[-3000:]
    remote = json.loads(result.stdout.strip().splitlines()[-1])

    source = Path(remote["source"])
    assert source.is_relative_to(home) and (source / "adapter_model.safetensors").exists()
    assert not list(source.glob("checkpoint-*"))
    assert remote["model"] == "PeftModelForCausalLM" and remote["format"] == "baize"

    local = load_chat_model(run_dir)  # base from the local adapter_config.json: the same tiny model
    prompt = local.prompt_builder().build([], QUESTION)
    settings = SamplingSettings(max_new_tokens=12, temperature=0.0)
    expected = generate_reply(local, prompt, settings, stop_strings=[], min_new_tokens=12).token_ids
    assert remote["tokens"] == expected and len(expected) == 12

    assert "baize-tester/no-such-adapter" in remote["errors"]["missing"]
    assert "not found" in remote["errors"]["missing"]
    assert "revision 'v9' not found" in remote["errors"]["revision"]


def test_private_repo_needs_the_token_and_missing_repo_is_clear(hub, pushed, tmp_path):
    command = [sys.executable, "-m", "baize.pull", REPO_ID, "--revision", "v1", "--no-base"]
    anonymous = run(command, hub_env(hub, tmp_path / "anon", None))
    assert anonymous.returncode == 1 and "not found" in anonymous.stderr and "Traceback" not in anonymous.stderr
    assert "hf auth login" in anonymous.stderr

    authorised = run(command, hub_env(hub, tmp_path / "auth", hub.token))
    assert authorised.returncode == 0, authorised.stderr[-2000:]
    assert (Path(authorised.stdout.strip().splitlines()[-1]) / "adapter_config.json").exists()

    missing = run([sys.executable, "-m", "baize.pull", "baize-tester/nope"], hub_env(hub, tmp_path / "m", hub.token))
    assert missing.returncode == 1 and "'baize-tester/nope' not found" in missing.stderr
    assert "Traceback" not in missing.stderr


@pytest.mark.slow
def test_pull_fetches_the_base_from_the_hub_then_chat_works_offline(hub, tiny_llama_dir, tmp_path):
    """A full model repo as the base, an adapter naming it: `baize pull` gets both, `baize chat` runs offline."""
    import shutil

    base = tmp_path / "tiny-base"
    shutil.copytree(tiny_llama_dir, base)
    (base / "pytorch_model.bin").write_bytes(b"duplicate weights in another format")
    adapter = make_lora_adapter(tmp_path / "tiny-adapter", tiny_llama_dir)
    env = hub_env(hub, tmp_path / "home", hub.token)
    push = [sys.executable, "-m", "baize.push"]
    for command in (
        [*push, str(base), "--repo-id", "baize-tester/tiny-base"],
        [*push, str(adapter), "--repo-id", "baize-tester/tiny-adapter", "--base-model", "baize-tester/tiny-base"],
    ):
        result = run(command, env)
        assert result.returncode == 0, result.stderr[-2000:]
    assert "model.safetensors" in hub.repo_files("baize-tester/tiny-base")

    result = run([sys.executable, "-m", "baize.pull", "baize-tester/tiny-adapter"], env)
    assert result.returncode == 0, result.stderr[-2000:]
    adapter_dir, base_dir = (Path(line) for line in result.stdout.strip().splitlines()[-2:])
    assert (adapter_dir / "adapter_model.safetensors").exists() and (base_dir / "model.safetensors").exists()
    assert not (base_dir / "pytorch_model.bin").exists()  # safetensors present: other formats skipped

    chat = [sys.executable, "-m", "baize.chat", "baize-tester/tiny-adapter", "--greedy", "--max-new-tokens", "3"]
    result = run([*chat, "-m", "Hello?"], {**env, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "adapter on baize-tester/tiny-base" in result.stdout and "[|AI|] " in result.stdout


def test_bad_or_missing_token_is_a_clear_error(hub, run_dir, tmp_path):
    bad = "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0000"
    command = [sys.executable, "-m", "baize.push", str(run_dir), "--repo-id", "baize-tester/other"]
    result = run(command, hub_env(hub, tmp_path / "bad", bad))
    assert result.returncode == 1
    assert "rejected the token" in result.stderr and "hf auth login" in result.stderr
    assert "Traceback" not in result.stderr and bad not in result.stdout + result.stderr
    assert ("model", "baize-tester/other") not in hub.repos

    result = run(command, hub_env(hub, tmp_path / "none", None))
    assert result.returncode == 1 and "no Hugging Face token found" in result.stderr


def test_push_again_is_a_no_op_and_public_flag_applies(hub, run_dir, pushed, tmp_path):
    commits = len(hub.repo(REPO_ID).commits)
    command = [sys.executable, "-m", "baize.push", str(run_dir), "--repo-id", REPO_ID, "--revision", "v1"]
    command += ["--base-model", BASE_ID, "--license", "apache-2.0", "--dataset", "baize-tester/selfchat-smol"]
    result = run([*command, "--public"], hub_env(hub, tmp_path / "again", hub.token))
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(hub.repo(REPO_ID).commits) == commits  # unchanged files: no new commit
    assert not hub.repo(REPO_ID).private


def test_recipe_push_to_hub_uses_hub_settings(hub, run_dir, tmp_path):
    """What `push_to_hub: true` in a recipe calls at the end of training."""
    script = (
        "import sys; from types import SimpleNamespace as NS; from baize.hub import push_training_output; "
        "r = push_training_output(NS(output_dir=sys.argv[1], hub_model_id='baize-tester/from-recipe', "
        "hub_private_repo=True, hub_revision=None), NS(model_name_or_path=sys.argv[2])); print(r.commit_url)"
    )
    result = run([sys.executable, "-c", script, str(run_dir), BASE_ID], hub_env(hub, tmp_path, hub.token))
    assert result.returncode == 0, result.stderr[-2000:]
    assert set(hub.repo_files("baize-tester/from-recipe")) == EXPECTED_FILES
    assert hub.repo("baize-tester/from-recipe").private
    assert card_header(hub.repo_files("baize-tester/from-recipe")["README.md"])["base_model"] == BASE_ID


def test_dataset_push_with_card(hub, tmp_path):
    data = tmp_path / "sdf"
    data.mkdir()
    write_jsonl(data / "train.jsonl", sample_dialogues(4))
    write_jsonl(data / "scores.jsonl", [{"prompt": "q", "candidate": i, "score": 50 + i} for i in range(4)])
    (data / "journal.jsonl").write_text('{"seed": "resume state"}\n')
    card = dataset_card(
        pretty_name="Baize SDF scores (test)",
        description="Candidates scored 1-100 by a judge; the best per question is kept.",
        sections={"Scoring": "helpfulness, relevance, accuracy and level of detail"},
        size_categories=["n<1K"],
    )
    card.save(data / "README.md")
    command = [sys.executable, "-m", "baize.push", str(data), "--repo-type", "dataset"]
    command += ["--repo-id", "baize-tester/sdf-scores", "--private"]
    result = run(command, hub_env(hub, tmp_path / "home", hub.token))
    assert result.returncode == 0, result.stderr[-2000:]

    files = hub.repo_files("baize-tester/sdf-scores", repo_type="dataset")
    assert set(files) == {".gitattributes", "README.md", "train.jsonl", "scores.jsonl"}  # journal stays home
    header = card_header(files["README.md"])
    assert header["pretty_name"] == "Baize SDF scores (test)" and "baize" in header["tags"]
    assert header["license"] == "other" and header["size_categories"] == ["n<1K"]
    assert "## Scoring" in files["README.md"].decode()
    assert hub.repo("baize-tester/sdf-scores", "dataset").private


def test_secrets_are_never_uploaded(run_dir, tmp_path, monkeypatch):
    folder = tmp_path / "adapter"
    folder.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors", "README.md"):
        (folder / name).write_bytes((run_dir / name).read_bytes())
    (folder / "notes.txt").write_text("push with hf_" + "a1B2" * 9 + "\n")
    (folder / ".env").write_text("OPENAI_API_KEY=whatever\n")
    plan = plan_adapter_push(folder, REPO_ID)
    assert ".env" in plan.excluded and ".env" not in plan.upload
    with pytest.raises(HubError, match="notes.txt"):
        push_plan(plan)  # refused before any network call
    assert "notes.txt" not in plan_adapter_push(folder, REPO_ID, exclude=["notes.txt"]).upload

    assert find_secrets(folder, ["notes.txt", "README.md"]) == {"notes.txt": "token-shaped text"}

    monkeypatch.setenv("HF_TOKEN", "my-current-token-value")
    (folder / "notes.txt").write_text("token: my-current-token-value")
    assert find_secrets(folder, ["notes.txt"]) == {"notes.txt": "token value"}
    with pytest.raises(HubError, match="notes.txt"):  # the real token: refused even when shapes are allowed
        push_plan(plan_adapter_push(folder, REPO_ID), allow_token_shaped_text=True)


def test_dry_run_shows_plan_and_card(run_dir, capsys):
    push_cli([str(run_dir), "--repo-id", REPO_ID, "--dry-run", "--base-model", BASE_ID])
    out = capsys.readouterr().out
    assert "+ adapter_model.safetensors" in out and "- checkpoint-2/" in out and "- training_args.bin" in out
    assert "library_name: peft" in out and f"base_model: {BASE_ID}" in out


def test_push_help_is_for_newcomers():
    result = subprocess.run([sys.executable, "-m", "baize.push", "--help"], capture_output=True, text=True, cwd=REPO)
    for words in ("hf auth login", "HF_TOKEN", "--include-checkpoints", "--private", "--revision", "dataset"):
        assert words in result.stdout


@pytest.mark.slow
def test_push_space_runs_baize_web_on_the_adapter(hub, pushed, tmp_path):
    """`baize push REPO --space SPACE`: a Gradio Space whose app is `baize web REPO`, pinned, no secrets."""
    from baize.web import build_parser

    space_id = "baize-tester/tiny-baize-chat"
    env = hub_env(hub, tmp_path / "home", hub.token) | {"OPENAI_API_KEY": "sk-spaceTestKey0123456789abcdefghij"}
    command = [sys.executable, "-m", "baize.push", REPO_ID, "--space", space_id, "--base-model", BASE_ID]
    result = run(command + ["--license", "apache-2.0"], env)
    assert result.returncode == 0, result.stderr[-3000:]
    files = hub.repo_files(space_id, repo_type="space")
    assert {"app.py", "requirements.txt", "README.md", "baize/web.py", "baize/prompts.py"} <= set(files)
    assert not any(name.endswith(".pyc") for name in files)
    header = card_header(files["README.md"])
    assert header["sdk"] == "gradio" and header["app_file"] == "app.py"
    assert header["models"] == [REPO_ID, BASE_ID] and header["license"] == "apache-2.0"
    # the app is `baize web REPO` on the Space's port, with arguments the web command accepts
    app = files["app.py"].decode()
    argv = ast.literal_eval(app.split("cli(", 1)[1].rsplit(")", 1)[0])  # the list written into app.py
    args = build_parser().parse_args(argv)
    assert (args.adapter_or_model, args.host, args.port) == (REPO_ID, "0.0.0.0", 7860)
    requirements = files["requirements.txt"].decode().split()
    assert "gradio==6.31.0" in requirements and "transformers==5.23.0" in requirements
    assert all("==" in r or ">=" in r for r in requirements)  # pinned
    for name, data in files.items():  # neither the Hub token nor an API key from the environment
        assert hub.token.encode() not in data and b"sk-spaceTestKey" not in data, name
