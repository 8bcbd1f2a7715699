"""SDF rounds end to end on a tiny random Llama, as a user runs them (`python -m baize.sdf`), with a scripted judge
at the loopback OpenAI server: each round selects what the judge prefers, the gate decides from the verdicts it
got, a run killed (SIGKILL) in round 2's judge step resumes without asking a cached verdict again, and `baize
push` sends the best round as the stack it is, which loads from the Hub as base -> v1 -> v2 -> v3."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from helpers import REPO, hub_env, make_lora_adapter, sdf_train_recipe
from openai_server import OpenAIServer

ANSWER = re.compile(r"\[The Start of Assistant's Answer\]\n(.*?)\n\[The End of Assistant's Answer\]", re.S)
PAIR = re.compile(r"Assistant 1's Answer\]\n(.*?)\n\[The End.*?Assistant 2's Answer\]\n(.*?)\n\[The End", re.S)
ROUND_2_PROMPTS = ("Question number 3", "Question number 4", "Question number 5")


def vowel_share(text: str) -> float:
    letters = [c for c in text.lower() if c.isalpha()]
    return sum(c in "aeiou" for c in letters) / len(letters) if letters else 0.0


def score(text: str) -> int:
    """The scripted judge's taste: answers rich in vowels (any property of the text would do)."""
    return max(1, min(100, round(100 * vowel_share(text))))


class ScriptedJudge:
    """Candidates: the vowel score. The gate: the new model's answer wins whenever it differs from the parent's (it
    reads gate_answers.jsonl, which the gate writes before it asks). Blocks round 2's third candidate verdict until
    released, so that the test can kill the run there."""

    def __init__(self, root: Path):
        self.root = root
        self.block = threading.Event()
        self.release = threading.Event()
        self.round_2_candidate_prompts: list[str] = []

    def gate_roles(self) -> dict[str, str]:
        roles = {}
        for path in self.root.rglob("gate_answers.jsonl"):
            for line in path.read_text().splitlines():
                row = json.loads(line)
                roles.setdefault(row["answer"], set()).add(row["role"])
        return {answer: next(iter(r)) if len(r) == 1 else "both" for answer, r in roles.items()}

    def __call__(self, request):
        prompt = request.messages[-1]["content"]
        if "Assistant 1's Answer" in prompt:
            first, second = PAIR.search(prompt).groups()
            roles = self.gate_roles()
            if first == second or roles.get(first) == roles.get(second):
                return "5 5\nThe same."
            return "9 2\nThe first." if roles.get(first) == "new" else "2 9\nThe second."
        if any(p in prompt for p in ROUND_2_PROMPTS):
            self.round_2_candidate_prompts.append(prompt)
            if len(self.round_2_candidate_prompts) >= 3 and self.block.is_set():
                self.release.wait(120)
        return f"{score(ANSWER.search(prompt).group(1))}\nVowels."


def sdf_command(config: Path) -> list[str]:
    return [sys.executable, "-m", "baize.sdf", "--config", str(config)]


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.slow
def test_two_rounds_gate_on_their_verdicts_resume_after_sigkill_and_push_as_a_stack(tmp_path, tiny_llama_dir):
    from hub_server import HubServer

    v1 = make_lora_adapter(tmp_path / "v1", tiny_llama_dir, seed=3)
    train_yaml = sdf_train_recipe(tmp_path, tiny_llama_dir, max_steps=12, save_steps=6, learning_rate=2e-2,
                                  per_device_train_batch_size=2, output_dir=str(tmp_path / "sdf" / "v2"))  # fmt: skip
    (tmp_path / "prompts.txt").write_text("".join(f"Question number {i}: why is it so?\n" for i in range(6)))
    (tmp_path / "gate.txt").write_text("What is a cloud?\nWhy do cats purr?\nHow do tides work?\nWhat is rain?\n")
    root = tmp_path / "sdf"
    judge = ScriptedJudge(root)
    with OpenAIServer(judge) as server:
        config = {
            "output_dir": str(root), "model_name_or_path": str(v1), "prompts_path": str(tmp_path / "prompts.txt"),
            "num_candidates": 4, "max_new_tokens": 12, "batch_size": 4, "temperature": 0.7, "judge_base_url": server.base_url,
            "judge_model": "test-judge", "judge_api_key_env": "BAIZE_TEST_UNSET_KEY", "judge_concurrency": 2,
            "max_retries": 0, "timeout": 60, "min_score": 1, "train_config": str(train_yaml), "rounds": 2,
            "limit": 3, "gate_questions_path": str(tmp_path / "gate.txt"), "gate_limit": 4,
            "gate_bootstrap_samples": 200,
        }  # fmt: skip
        (tmp_path / "sdf.yaml").write_text(yaml.safe_dump(config))

        # Run 1: killed by SIGKILL in round 2's judge step, once two of its verdicts are cached.
        judge.block.set()
        process = subprocess.Popen(sdf_command(tmp_path / "sdf.yaml"), cwd=REPO, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)  # fmt: skip
        cache = root / "round-2" / "judge_cache.jsonl"
        deadline = time.monotonic() + 600
        while lines(cache) < 2 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        process.send_signal(signal.SIGKILL)
        process.wait()
        cached_at_kill = lines(cache)
        asked_before = len(judge.round_2_candidate_prompts)
        assert cached_at_kill >= 2 and not (root / "round-2" / "judged.jsonl").read_text().strip()
        judge.block.clear()
        judge.release.set()

        # Run 2: resumes in round 2's judge step; no cached verdict is asked again.
        result = subprocess.run(sdf_command(tmp_path / "sdf.yaml"), cwd=REPO, capture_output=True, text=True,
                                timeout=900)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        candidates = [json.loads(line) for line in (root / "round-2" / "candidates.jsonl").read_text().splitlines()]
        total = sum(len(row["candidates"]) for row in candidates)
        asked_after = judge.round_2_candidate_prompts[asked_before:]
        assert len(asked_after) == total - cached_at_kill  # every verdict not cached, and no cached one

        # A finished loop re-run asks and trains nothing.
        asked = len(server.requests)
        again = subprocess.run(sdf_command(tmp_path / "sdf.yaml"), cwd=REPO, capture_output=True, text=True,
                               timeout=900)  # fmt: skip
        assert again.returncode == 0 and len(server.requests) == asked
        pairwise = (root / "rounds.json").read_text()

        # Another gate for the finished rounds is refused in one line, and changes nothing...
        refused = subprocess.run([*sdf_command(tmp_path / "sdf.yaml"), "--gate_mode", "pointwise"], cwd=REPO,
                                 capture_output=True, text=True, timeout=300)  # fmt: skip
        assert refused.returncode != 0 and len(server.requests) == asked
        assert "gated with other settings (mode 'pairwise' -> 'pointwise')" in refused.stderr.strip().splitlines()[-1]
        assert (root / "rounds.json").read_text() == pairwise
        # ...and with --overwrite true every round's gate is judged again: each answer scored on its own, nothing
        # sampled, judged or trained again.
        rejudged = subprocess.run([*sdf_command(tmp_path / "sdf.yaml"), "--gate_mode", "pointwise", "--overwrite",
                                   "true"], cwd=REPO, capture_output=True, text=True, timeout=900)  # fmt: skip
        assert rejudged.returncode == 0, rejudged.stderr[-3000:]
        asked_again = [request.messages[-1]["content"] for request in server.requests[asked:]]
        assert asked_again and all(ANSWER.search(prompt) for prompt in asked_again)  # no pair prompt

    pointwise = json.loads((root / "rounds.json").read_text())
    for entry, folder in zip(pointwise["rounds"], (root, root / "round-2"), strict=True):
        pairs = {}
        for row in (json.loads(line) for line in (folder / "gate_answers.jsonl").read_text().splitlines()):
            pairs.setdefault(row["id"], {})[row["role"]] = score(row["answer"])
        outcomes = ["win" if p["new"] > p["previous"] else "loss" if p["new"] < p["previous"] else "tie"
                    for p in pairs.values()]  # fmt: skip
        gate = entry["gate"]
        assert gate["mode"] == "pointwise" and gate["flip_rate"] is None and gate["judged"] == len(pairs)
        assert (gate["win"], gate["tie"], gate["loss"]) == tuple(map(outcomes.count, ("win", "tie", "loss")))
    assert pointwise["gate_settings"]["mode"] == "pointwise"

    summary = json.loads(pairwise)
    first, second = summary["rounds"]

    # What each round selected, by the judge's scores (a 16-dim random model cannot learn the judge's taste: its
    # SFT loss moves 10.76 -> 10.41, so no shift toward it is asserted here).
    def mean_score(folder: Path) -> float:
        rows = [json.loads(line) for line in (folder / "judged.jsonl").read_text().splitlines()]
        return sum(s for row in rows for s in row["scores"]) / sum(len(row["scores"]) for row in rows)

    round_1, round_2 = mean_score(root), mean_score(root / "round-2")
    print(f"mean candidate score: round 1 {round_1:.1f}, round 2 {round_2:.1f}; selected "
          f"{first['selected_score']['mean']} -> {second['selected_score']['mean']}")  # fmt: skip
    assert first["selected_score"]["mean"] >= round_1 and second["selected_score"]["mean"] >= round_2
    # The gate's figures are the verdicts' own: the new model won every question where its answer differed.
    for entry, folder in ((first, root), (second, root / "round-2")):
        answers = [json.loads(line) for line in (folder / "gate_answers.jsonl").read_text().splitlines()]
        by_id = {}
        for row in answers:
            by_id.setdefault(row["id"], {})[row["role"]] = row["answer"]
        differing = sum(a["new"] != a["previous"] for a in by_id.values())
        gate = entry["gate"]
        assert (gate["win"], gate["tie"], gate["loss"]) == (differing, len(by_id) - differing, 0)
    assert summary["best"] == second["trained"] if second["gate"]["passed"] else summary["best"] == first["trained"]
    card = (Path(second["trained"]) / "README.md").read_text()
    assert "## Baize v3: Self-Distillation with Feedback" in card and "## SDF rounds" in card
    assert "![Adjusted win rate" in card and (Path(second["trained"]) / "rounds.png").exists()
    assert (root / "rounds.png").exists() and all(entry["seconds"] > 0 for entry in summary["rounds"])

    # The stack on the Hub: v3 with its parents v2 and v1, each sdf.json naming the repo below it.
    v3 = Path(second["trained"])
    with HubServer() as hub:
        env = hub_env(hub, tmp_path / "home-push", hub.token)
        push = [sys.executable, "-m", "baize.push"]
        for command in ([str(tiny_llama_dir), "--repo_id", "baize-tester/tiny-base"],
                        [str(root), "--round", "2", "--repo_id", "baize-tester/tiny-sdf-v3",
                         "--base_model", "baize-tester/tiny-base"]):  # fmt: skip
            pushed = subprocess.run(push + command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
            assert pushed.returncode == 0, pushed.stderr[-3000:]
        repos = {repo_id for _, repo_id in hub.repos}
        assert {"baize-tester/tiny-sdf-v1", "baize-tester/tiny-sdf-v2", "baize-tester/tiny-sdf-v3"} <= repos
        probe = (
            "import json, sys, torch\n"
            "from baize.modeling.loading import load_chat_model\n"
            "chat = load_chat_model(sys.argv[1])\n"
            "ids = chat.tokenizer('[|Human|] Why is the sky blue?', return_tensors='pt').input_ids\n"
            "with torch.no_grad():\n"
            "    print(json.dumps(chat.model(ids).logits[0, -1].tolist()))\n"
        )
        remote = subprocess.run([sys.executable, "-c", probe, "baize-tester/tiny-sdf-v3"], cwd=REPO,
                                env=hub_env(hub, tmp_path / "home-load", None), capture_output=True, text=True,
                                timeout=300)  # fmt: skip
        assert remote.returncode == 0, remote.stderr[-3000:]
    local = subprocess.run([sys.executable, "-c", probe, str(v3)], cwd=REPO, capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert local.returncode == 0, local.stderr[-3000:]
    remote_logits, local_logits = json.loads(remote.stdout), json.loads(local.stdout)
    assert max(abs(a - b) for a, b in zip(remote_logits, local_logits, strict=True)) < 1e-4


def test_a_gate_whose_judge_fails_some_questions_stops_the_run_and_the_rerun_asks_only_the_rest(tmp_path):
    """A gate decided on part of its questions would decide the loop: it fails in one line instead; every verdict
    that came is cached, so the re-run asks only the failed question's."""
    from openai_server import server_error

    from baize.io.errors import EndpointError
    from baize.sdf.config import SDFConfig
    from baize.sdf.rounds import gate, gate_questions

    (tmp_path / "gate.txt").write_text("What is a cloud?\nWhy do cats purr?\nHow do tides work?\n")
    failing = {"on": True}

    def responder(request):
        prompt = request.messages[-1]["content"]
        if failing["on"] and "cats" in prompt:
            return server_error()
        return f"{score(ANSWER.search(prompt).group(1))}\nVowels."

    with OpenAIServer(responder) as server:
        config = SDFConfig(output_dir=str(tmp_path), model_name_or_path="unused", gate_mode="pointwise",
                           gate_questions_path=str(tmp_path / "gate.txt"), gate_limit=3, gate_bootstrap_samples=50,
                           judge_base_url=server.base_url, judge_model="test-judge", max_retries=0,
                           judge_api_key_env="BAIZE_TEST_UNSET_KEY")  # fmt: skip
        answers = {"new": "A tidy answer about oceans.", "previous": "Sky stuff."}
        rows = [{"role": role, "id": q["id"], "answer": f"{text} ({q['question']})"}
                for q in gate_questions(config) for role, text in answers.items()]  # fmt: skip
        (tmp_path / "gate_answers.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        with pytest.raises(EndpointError, match=r"failed 1 of 3 gate questions .* re-run the same command"):
            gate(config, tmp_path, "v1", "v2")
        assert lines(tmp_path / "gate_cache.jsonl") == 4  # the two questions that were answered, both answers
        failing["on"] = False
        asked = len(server.requests)
        result = gate(config, tmp_path, "v1", "v2")
        assert len(server.requests) - asked == 2 and result["judged"] == 3
        assert (result["win"], result["tie"], result["loss"]) == (3, 0, 0)  # the vowel-rich answer every time


def test_rounds_at_sampling_servers_are_refused_before_any_work(tmp_path):
    """The servers at sample_base_urls serve the model they were started on: a second round would sample v1 again
    while its records said v2. Refused in one line, exit 2, nothing written."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Why is the sky blue?\n")
    out = tmp_path / "sdf"
    command = [sys.executable, "-m", "baize.sdf", "--model_name_or_path", str(tmp_path / "v1"), "--prompts_path",
               str(prompts), "--output_dir", str(out), "--rounds", "2", "--sample_base_urls",
               "http://127.0.0.1:9/v1"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "rounds > 1 with sample_base_urls but no serve_command" in lines[0]
    assert not out.exists()
