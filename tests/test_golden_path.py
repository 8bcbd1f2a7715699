"""The golden path through the Hub, as one user would walk it, with the real clients over loopback servers:

seeds -> `baize collect` -> dataset repo -> `baize train` (data by Hub id) -> adapter repo -> `baize chat` and the
card's how-to in a clean cache -> `baize sdf` on the pulled v1 -> v2 repo -> `baize eval` of pulled v2 vs v1.

Every command is a subprocess in the folder a user would work in, with HF_ENDPOINT at the loopback Hub
(tests/hub_server.py) and the teacher and judge at the loopback OpenAI server (tests/openai_server.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO, hub_env
from hub_server import HubServer
from huggingface_hub import DatasetCard, ModelCard
from openai_server import OpenAIServer, Reply

USER = "baize-tester"
BASE, DATA, V1, V2, JUDGE = (f"{USER}/{name}" for name in ("tiny-llama", "med-selfchat", "med-baize", "med-baize-v2",
                                                           "tiny-judge"))  # fmt: skip
API_KEY = "sk-goldenPathKeyThatMustNeverLeak0123456789"
MEDICAL_SEEDS = [
    "What helps a sore throat heal faster?",
    "How much water should an adult drink in a day?",
    "What are early signs of dehydration?",
    "When should a fever be checked by a doctor?",
    "How can I tell a cold from the flu?",
    "Is it safe to take ibuprofen with food?",
    "What causes recurring headaches?",
    "How long does a sprained ankle take to heal?",
    "What is a normal resting heart rate?",
    "How can I lower my blood pressure without medication?",
    "What should be in a basic first-aid kit?",
    "How do I know if a cut needs stitches?",
]
TOPIC = re.compile(r"topic '([^']*)'")


def teacher_and_judge(request) -> Reply:
    """The teacher writes a two-exchange dialogue about the seed; the SDF judge scores 1-100, the eval judge 1-10."""
    if request.body["model"] == "test-teacher":
        topic = TOPIC.search(request.prompt).group(1)
        return Reply(f"[Human] {topic}\n[AI] Rest, drink fluids and see a doctor if it lasts.\n"
                     "[Human] Thanks, anything else?\n[AI] Keep track of how you feel and write it down.")  # fmt: skip
    if "Assistant 1" in request.prompt:
        return Reply("7 6\nBoth are short; the first is clearer.")
    return Reply("72\nA reasonable answer.")


def run(command: list[str], cwd: Path, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{command[:4]}:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result


def python_block(card: str) -> str:
    return re.search(r"```python\n(.*?)```", card, re.S).group(1).replace("max_new_tokens=256", "max_new_tokens=8")


def check_repo(hub, repo_id: str, repo_type: str, forbidden: list[str]) -> tuple[dict, dict]:
    """Every file of a repo: no secret, no local path; the card parses. Returns (files, card metadata)."""
    files = hub.repo_files(repo_id, repo_type=repo_type)
    for name, data in files.items():
        for value in forbidden:
            assert value.encode() not in data, f"{repo_id}/{name} contains {value!r}"
    readme = files["README.md"].decode()
    card = (DatasetCard if repo_type == "dataset" else ModelCard)(readme)
    return files, card.data.to_dict()


@pytest.mark.slow
def test_golden_path_through_the_hub(tmp_path, tiny_llama_dir):
    work = tmp_path / "project"  # where the user runs every command
    work.mkdir()
    forbidden = [API_KEY, str(tmp_path), str(Path.home()), str(REPO), "/tmp/"]
    with HubServer() as hub, OpenAIServer(teacher_and_judge) as llm:
        forbidden.append(hub.token)

        def env(home: str) -> dict:  # a user's shell: the loopback Hub, their token and key, their own HF cache
            return {**hub_env(hub, tmp_path / home, hub.token), "OPENAI_API_KEY": API_KEY, "PYTHONPATH": str(REPO),
                    "TRACKIO_DIR": str(tmp_path / "trackio")}  # fmt: skip

        # 0. The base model is on the Hub (a tiny random Llama stands in for a real one).
        run([sys.executable, "-m", "baize.push", str(tiny_llama_dir), "--repo-id", BASE, "--public",
             "--license", "apache-2.0"], work, env("home-0"))  # fmt: skip

        # 1. Collect on 12 medical seeds with the loopback teacher, pushed as a dataset repo.
        (work / "seeds.txt").write_text("\n".join(MEDICAL_SEEDS) + "\n")
        collect = {"mode": "transcript", "seeds_path": "seeds.txt", "output_dir": "runs/med-selfchat",
                   "base_url": llm.base_url, "teacher_model": "test-teacher", "push_to_hub": DATA,
                   "hub_private": False, "seeds_license": "cc-by-4.0", "max_retries": 1}  # fmt: skip
        (work / "collect.yaml").write_text(yaml.safe_dump(collect))
        run([sys.executable, "-m", "baize.collect", "--config", "collect.yaml"], work, env("home-1"))
        files, data_card = check_repo(hub, DATA, "dataset", forbidden)
        assert sum(1 for line in files["train.jsonl"].splitlines() if line.strip()) == 12
        assert not {"journal.jsonl", "collect_signature.json", "spend.jsonl", "failed_seeds.jsonl"} & set(files)
        # the seeds' licence and the teacher's terms both apply: "other", named, with the seeds' licence in the body
        assert data_card["license"] == "other" and data_card["license_name"] == "seed-dataset-and-teacher-terms"
        assert "cc-by-4.0" in files["README.md"].decode() and "baize" in data_card["tags"]

        # 2. Train from the dataset by its Hub id, in a clean cache; the adapter goes up with its card.
        sft = {"model_name_or_path": BASE, "datasets": [{"path": DATA}], "use_peft": True, "lora_r": 4,
               "lora_alpha": 8, "lora_target_modules": "all-linear", "max_length": 256, "max_steps": 2,
               "per_device_train_batch_size": 4, "learning_rate": 5e-3, "logging_steps": 1, "save_strategy": "no",
               "eval_strategy": "no", "report_to": "none", "activation_checkpointing": False,
               "dataloader_pin_memory": False, "output_dir": "runs/med-baize/sft", "push_to_hub": True,
               "hub_model_id": V1, "hub_private_repo": False}  # fmt: skip
        (work / "sft.yaml").write_text(yaml.safe_dump(sft))
        run([sys.executable, "-m", "baize.train", "--config", "sft.yaml"], work, env("home-2"))
        files, v1_card = check_repo(hub, V1, "model", forbidden)
        assert v1_card["base_model"] == BASE and v1_card["datasets"] == [DATA]
        assert v1_card["library_name"] == "peft" and v1_card["license"] == "apache-2.0"  # the base's license
        assert json.loads(files["adapter_config.json"])["base_model_name_or_path"] == BASE
        assert {"loss.png", "recipe.yaml", "baize_prompt.json", "chat_template.jinja"} <= set(files)

        # 3. In another clean cache: chat with it as a person would, and paste the card's how-to.
        import pexpect

        chat = pexpect.spawn(sys.executable, ["-m", "baize.chat", V1, "--max_new_tokens", "12", "--seed", "0"],
                             cwd=str(work), env=env("home-3"), encoding="utf-8", timeout=300)  # fmt: skip
        chat.expect_exact("[|Human|] ")
        chat.sendline("What helps a sore throat heal faster?")
        chat.expect_exact("[|AI|] ")
        chat.expect_exact("[|Human|] ")  # the answer streamed, the next prompt is up
        chat.sendline("/exit")
        chat.expect(pexpect.EOF)
        chat.close()
        assert chat.exitstatus == 0
        run([sys.executable, "-c", python_block(v1_card_text := files["README.md"].decode())], work, env("home-3b"))
        assert f'from_pretrained("{V1}")' in v1_card_text

        # 4. SDF from the pulled v1 with the loopback judge; v2 pushed.
        (work / "prompts.txt").write_text("\n".join(MEDICAL_SEEDS[:4]) + "\n")
        sdf_train = {k: v for k, v in sft.items() if k not in ("model_name_or_path", "datasets")}
        sdf_train.update(output_dir="runs/med-baize/sdf/v2", hub_model_id=V2)
        (work / "sdf-train.yaml").write_text(yaml.safe_dump(sdf_train))
        sdf = {"model_name_or_path": V1, "output_dir": "runs/med-baize/sdf", "prompts_path": "prompts.txt",
               "num_candidates": 2, "max_new_tokens": 8, "batch_size": 4, "judge_base_url": llm.base_url,
               "judge_model": JUDGE, "judge_max_tokens": 16, "max_retries": 1, "min_score": 1,
               "train_config": "sdf-train.yaml"}  # fmt: skip
        (work / "sdf.yaml").write_text(yaml.safe_dump(sdf))
        run([sys.executable, "-m", "baize.sdf", "--config", "sdf.yaml"], work, env("home-4"))
        files, v2_card = check_repo(hub, V2, "model", forbidden)
        v2_text = files["README.md"].decode()
        assert v2_card["base_model"] == BASE and v2_card["license"] == "apache-2.0"
        assert (
            f"[{V1}](https://huggingface.co/{V1})" in v2_text
            and f"[{JUDGE}](https://huggingface.co/{JUDGE})" in v2_text
        )
        lineage = json.loads(files["sdf.json"])
        assert (lineage["v1_parent"], lineage["v1_base"], lineage["judge_model"]) == (V1, BASE, JUDGE)
        assert json.loads(files["adapter_config.json"])["base_model_name_or_path"] == BASE
        run([sys.executable, "-c", python_block(v2_text)], work, env("home-4b"))  # base -> v1 merged -> v2, by hand

        # 5. Evaluate the pulled v2 against the pulled v1, in a clean cache.
        (work / "questions.jsonl").write_text(
            "".join(json.dumps({"question_id": i, "category": "health", "question": q}) + "\n"
                    for i, q in enumerate(MEDICAL_SEEDS[4:6], 1))
        )  # fmt: skip
        evaluation = {"model": V2, "model_label": "v2", "reference": V1, "reference_label": "v1",
                      "questions_path": "questions.jsonl", "output_dir": "runs/med-baize/eval", "max_new_tokens": 8,
                      "judge_base_url": llm.base_url, "judge_model": JUDGE, "judge_max_tokens": 16,
                      "max_retries": 1, "bootstrap_samples": 100}  # fmt: skip
        (work / "eval.yaml").write_text(yaml.safe_dump(evaluation))
        run([sys.executable, "-m", "baize.evaluate", "--config", "eval.yaml"], work, env("home-5"))
        results = json.loads((work / "runs/med-baize/eval/results.json").read_text())
        # this judge always prefers Assistant 1: the two orders disagree, so both questions are ties
        assert results["overall"]["questions"] == 2 and results["overall"]["tie"] == 2
        assert (work / "runs/med-baize/eval/results.md").exists()

    # What the test created (files and card headers), for the closing note.
    summary = {}
    for repo, kind in ((DATA, "dataset"), (BASE, "model"), (V1, "model"), (V2, "model")):
        files, header = check_repo(hub, repo, kind, forbidden)
        summary[repo] = {"files": sorted(files), "card": header}
    assert summary[BASE]["card"]["license"] == "apache-2.0"
    (tmp_path / "repos.json").write_text(json.dumps(summary, indent=2))
    if os.environ.get("BAIZE_TEST_ARTEFACTS"):
        Path(os.environ["BAIZE_TEST_ARTEFACTS"], "golden-path-repos.json").write_text(json.dumps(summary, indent=2))
