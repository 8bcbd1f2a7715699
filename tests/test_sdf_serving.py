"""SDF rounds where the models are served: baize starts a real `transformers serve` on each round's merged model
(`serve_command`), samples the round's candidates and answers the gate's questions there, and stops it. Run as a
user runs it (`python -m baize.sdf`), killed with SIGKILL in round 2's sampling and again in its gate: each re-run
starts the server again and asks only what was not answered, and no server outlives a run. With temperature 0 the
served answers are the models' own greedy answers in this process, token for token."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import REPO, free_port, make_lora_adapter, sdf_train_recipe
from openai_server import OpenAIServer

SERVE = f"{sys.executable} -m transformers.cli.transformers serve --device cpu --host {{host}} --port {{port}}"
MAX_NEW_TOKENS = 24


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing


def served_pids(root: Path) -> list[int]:
    state = root / "serving.json"
    return [entry["pid"] for entry in json.loads(state.read_text())["processes"]] if state.exists() else []


def assert_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + 15
    while any(map(alive, pids)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(map(alive, pids)), f"server processes outlived the run: {[p for p in pids if alive(p)]}"


def run_until(command: list[str], done, what: str) -> None:
    """Start `command`, SIGKILL it once `done()` is true (it must still be running then)."""
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while not done() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, f"the run ended before {what}: " + process.stderr.read().decode()[-3000:]
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()


def greedy(model: Path, contexts: list[list[dict]], max_new_tokens: int) -> list[str]:
    """The model's own greedy answers in this process (one prompt at a time: no padding)."""
    from baize.llm.generation import SamplingSettings
    from baize.llm.sampling import LocalSampler, SampleRequest, sample_all
    from baize.modeling.loading import load_chat_model

    chat = load_chat_model(str(model))
    sampler = LocalSampler(chat, chat.prompt_builder(), batch_size=1)
    answers = {}
    requests = [SampleRequest(str(i), messages) for i, messages in enumerate(contexts)]
    sample_all(sampler, requests, SamplingSettings(max_new_tokens, 0.0, 1.0, 0),
               lambda sampled: answers.update({sampled.request.id: sampled.samples[0].text}))  # fmt: skip
    return [answers[str(i)] for i in range(len(contexts))]


def judge(request):  # every candidate acceptable, every gate pair a tie: the loop runs both rounds
    return "5 5\nThe same." if "Assistant 1's Answer" in request.messages[-1]["content"] else "50\nFine."


def served_rounds_recipe(tmp_path: Path, tiny_llama_dir: Path, judge_url: str, serve: str, prompts: int) -> Path:
    """Two SDF rounds of `prompts` prompts each, greedy (temperature 0), every model served by `serve`: sdf.yaml."""
    v1 = make_lora_adapter(tmp_path / "v1", tiny_llama_dir, seed=3)
    train_yaml = sdf_train_recipe(tmp_path, tiny_llama_dir, max_steps=3, save_steps=3, learning_rate=5e-2,
                                  per_device_train_batch_size=2, output_dir=str(tmp_path / "sdf" / "v2"))  # fmt: skip
    (tmp_path / "prompts.txt").write_text("".join(f"Question number {i}: why is it so?\n" for i in range(12)))
    (tmp_path / "gate.txt").write_text("".join(f"Gate question {i}: what is a cloud?\n" for i in range(6)))
    config = {
        "output_dir": str(tmp_path / "sdf"), "model_name_or_path": str(v1), "base_model": str(tiny_llama_dir),
        "prompts_path": str(tmp_path / "prompts.txt"), "num_candidates": 2, "max_new_tokens": MAX_NEW_TOKENS,
        "temperature": 0.0, "sample_concurrency": 1, "sample_base_urls": [f"http://127.0.0.1:{free_port()}/v1"],
        "serve_command": serve, "serve_timeout": 120, "judge_base_url": judge_url, "judge_model": "test-judge",
        "judge_api_key_env": "BAIZE_TEST_UNSET_KEY", "max_retries": 0, "timeout": 120, "min_score": 1,
        "train_config": str(train_yaml), "rounds": 2, "limit": prompts, "gate_questions_path": str(tmp_path / "gate.txt"),
        "gate_limit": 6, "gate_bootstrap_samples": 100,
    }  # fmt: skip
    (tmp_path / "sdf.yaml").write_text(yaml.safe_dump(config))
    return tmp_path / "sdf.yaml"


@pytest.mark.slow
def test_rounds_at_served_models_sample_and_gate_on_their_own_model_and_resume_after_sigkill(tmp_path, tiny_llama_dir):
    root, max_new_tokens = tmp_path / "sdf", MAX_NEW_TOKENS
    with OpenAIServer(judge) as server:
        recipe = served_rounds_recipe(tmp_path, tiny_llama_dir, server.base_url, SERVE, prompts=6)
        v1 = Path(yaml.safe_load(recipe.read_text())["model_name_or_path"])
        command = [sys.executable, "-m", "baize.sdf", "--config", str(recipe)]
        round_2 = root / "round-2"

        # Run 1: killed in round 2's sampling, once one prompt's candidates are in.
        run_until(command, lambda: len(rows(round_2 / "candidates.jsonl")) >= 1, "round 2 sampled")
        sampled_at_kill = rows(round_2 / "candidates.jsonl")
        assert 1 <= len(sampled_at_kill) < 6
        assert_gone(served_pids(root))

        # Run 2: resumes round 2's sampling at a server it starts again; killed in round 2's gate.
        def new_model_answering() -> bool:
            return any(row["role"] == "new" for row in rows(round_2 / "gate_answers.jsonl"))

        run_until(command, new_model_answering, "round 2's gate answered")
        assert rows(round_2 / "candidates.jsonl")[: len(sampled_at_kill)] == sampled_at_kill
        gated_at_kill = rows(round_2 / "gate_answers.jsonl")
        assert sum(row["role"] == "new" for row in gated_at_kill) < 6
        assert_gone(served_pids(root))

        # Run 3: finishes round 2's gate.
        finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
        assert finished.returncode == 0, finished.stderr[-3000:]
        assert not (root / "serving.json").exists()
        starts = sum(log.read_text().count("=== baize:") for log in (root / "serve-logs").iterdir())

        # Run 4: a finished loop asks, trains and serves nothing.
        asked = len(server.requests)
        v3_weights = (round_2 / "v3" / "adapter_model.safetensors").stat().st_mtime_ns
        again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
        assert again.returncode == 0, again.stderr[-3000:]
        assert len(server.requests) == asked
        assert sum(log.read_text().count("=== baize:") for log in (root / "serve-logs").iterdir()) == starts
        assert (round_2 / "v3" / "adapter_model.safetensors").stat().st_mtime_ns == v3_weights

    summary = json.loads((root / "rounds.json").read_text())
    first, second = summary["rounds"]
    v2, v3 = Path(first["trained"]), Path(second["trained"])
    assert second["model"] == str(v2) and v3 == round_2 / "v3"
    assert first["served"]["sampled"]["model"] == str(root / "v1-merged")
    assert second["served"]["sampled"]["model"] == str(round_2 / "v2-merged")
    assert second["served"]["new"]["model"] == str(root / "round-3" / "v3-merged")
    assert {"merge", "sample", "judge", "select", "train", "gate"} <= set(second["timings"])
    assert "transformers serve" in (v3 / "README.md").read_text()

    # Every prompt sampled once and every gate question answered once per role, across the kills...
    candidates = rows(round_2 / "candidates.jsonl")
    assert len(candidates) == 6 and len({row["id"] for row in candidates}) == 6
    for folder in (root, round_2):
        gate_rows = rows(folder / "gate_answers.jsonl")
        assert len(gate_rows) == 12 and len({(row["role"], row["id"]) for row in gate_rows}) == 12
    # ...by the model of its round: with temperature 0, the served answers are each model's own greedy answers.
    contexts = [row["messages"] for row in candidates]
    v2_greedy = greedy(v2, contexts, max_new_tokens)
    assert [[c["text"] for c in row["candidates"]] for row in candidates] == [[text, text] for text in v2_greedy]
    assert v2_greedy != greedy(v1, contexts, max_new_tokens)  # v1's answers would not pass for v2's
    from baize.sdf.config import SDFConfig
    from baize.sdf.rounds import gate_questions

    questions = gate_questions(SDFConfig(gate_questions_path=str(tmp_path / "gate.txt"), gate_limit=6))
    contexts = [[{"role": "user", "content": q["question"]}] for q in questions]
    for folder, previous, new in ((root, v1, v2), (round_2, v2, v3)):
        answered = {(row["role"], row["id"]): row["answer"] for row in rows(folder / "gate_answers.jsonl")}
        for role, model in (("previous", previous), ("new", new)):
            assert [answered[(role, q["id"])] for q in questions] == greedy(model, contexts, max_new_tokens)


@pytest.mark.slow
def test_rounds_served_by_llama_cpp_from_each_rounds_gguf(tmp_path, tiny_llama_dir):
    """`{gguf}`: each round's merged model converted once to a GGUF file, served by llama-cpp-python's server."""
    import os

    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("llama-cpp-python is not installed: `make llama-cpp` builds it (about 7 minutes on 2 cores)")
    serve = f"{sys.executable} -m llama_cpp.server --model {{gguf}} --host {{host}} --port {{port}} --n_ctx 512"
    with OpenAIServer(judge) as server:
        recipe = served_rounds_recipe(tmp_path, tiny_llama_dir, server.base_url, serve, prompts=2)
        done = subprocess.run([sys.executable, "-m", "baize.sdf", "--config", str(recipe)], cwd=REPO,
                              capture_output=True, text=True, timeout=900)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
    root = tmp_path / "sdf"
    first, second = json.loads((root / "rounds.json").read_text())["rounds"]
    v2_gguf = root / "round-2" / "v2-merged.gguf"
    assert first["served"]["sampled"]["model"] == str(root / "v1-merged.gguf")
    assert first["served"]["new"]["model"] == second["served"]["sampled"]["model"] == str(v2_gguf)
    assert v2_gguf.stat().st_size > 0 and not (root / "serving.json").exists()
    logs = "".join(log.read_text() for log in (root / "serve-logs").iterdir())
    assert f"--model {v2_gguf}" in logs and f"--model {root / 'round-3' / 'v3-merged.gguf'}" in logs
    candidates = rows(root / "round-2" / "candidates.jsonl")
    assert len(candidates) == 2 and all(c["new_tokens"] >= 1 for row in candidates for c in row["candidates"])


# --------------------------------------------------------------------------- the servers' lifecycle (real processes)

# A server that answers GET /v1/models, after forking a worker that sleeps (like vLLM's engine processes): stopping
# the server must stop the worker too. Its pid and the worker's go to PIDS_FILE.
FAKE_ENGINE = r"""
import http.server, json, os, subprocess, sys, time
port, pids_file = int(sys.argv[1]), sys.argv[2]
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open(pids_file, "a").write(json.dumps([os.getpid(), worker.pid]) + "\n")
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"object": "list", "data": [{"id": sys.argv[3], "object": "model"}]}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *args):
        print("request", *args, flush=True)
time.sleep(0.5)
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def fake_engine(tmp_path: Path) -> tuple[str, Path]:
    script = tmp_path / "engine.py"
    script.write_text(FAKE_ENGINE)
    return f"{sys.executable} {script} {{port}} {tmp_path / 'pids.jsonl'} {{model}} --api-key sk-secret-value", (
        tmp_path / "pids.jsonl"
    )


def test_served_models_start_once_per_model_and_stop_with_every_process_they_forked(tmp_path):
    from baize.llm.serving import Engines

    template, pids_file = fake_engine(tmp_path)
    urls = [f"http://127.0.0.1:{free_port()}/v1", f"http://127.0.0.1:{free_port()}/v1"]
    with Engines(template, urls, tmp_path / "serving.json", tmp_path / "logs", ready_timeout=60) as engines:
        assert engines.serve("/models/v2-merged") == urls
        assert engines.serve("/models/v2-merged") == urls and engines.starts == 1  # kept up for the same model
        first = [pid for line in pids_file.read_text().splitlines() for pid in json.loads(line)]
        assert len(first) == 4 and all(map(alive, first))
        assert sorted(served_pids(tmp_path)) == sorted(
            json.loads(line)[0] for line in pids_file.read_text().splitlines()
        )
        engines.serve("/models/v3-merged")  # another model: the old servers and their workers stop first
        assert_gone(first)
        second = [pid for line in pids_file.read_text().splitlines()[2:] for pid in json.loads(line)]
    assert_gone(second)
    assert not (tmp_path / "serving.json").exists() and engines.starts == 2
    logs = "".join(log.read_text() for log in (tmp_path / "logs").iterdir())
    assert logs.count("=== baize:") == 4 and "sk-secret-value" not in logs and "--api-key '***'" in logs


def test_a_run_killed_with_sigkill_takes_its_servers_along_and_a_rerun_stops_any_left(tmp_path):
    """The parent-death signal ends the server itself; a worker it forked that outlived it is stopped by the next
    run, from the process group recorded in serving.json."""
    template, pids_file = fake_engine(tmp_path)
    url = f"http://127.0.0.1:{free_port()}/v1"
    starter = (
        "import sys, time\nfrom pathlib import Path\nfrom baize.llm.serving import Engines\n"
        f"engines = Engines({template!r}, [{url!r}], Path(sys.argv[1]) / 'serving.json', Path(sys.argv[1]) / 'logs')\n"
        "engines.serve('v2')\nprint('up', flush=True)\ntime.sleep(600)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", starter, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE)
    assert process.stdout.readline().strip() == b"up"
    server, worker = json.loads(pids_file.read_text())
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stdout.close()
    assert_gone([server])  # the server died with its parent...
    assert alive(worker)  # ...its worker did not (it holds the GPU in real life)
    from baize.llm.serving import Engines

    with Engines(template, [url], tmp_path / "serving.json", tmp_path / "logs"):
        assert_gone([worker])  # the next run stopped it before starting anything


def test_a_serve_command_that_fails_is_one_line_naming_its_log(tmp_path):
    from baize.io.errors import EndpointError, UsageError
    from baize.llm.serving import Engines

    url = f"http://127.0.0.1:{free_port()}/v1"
    failing = f"{sys.executable} -c \"import sys; print('CUDA out of memory'); sys.exit(3)\" {{port}}"
    with Engines(failing, [url], tmp_path / "serving.json", tmp_path / "logs") as engines:
        with pytest.raises(EndpointError, match=r"exited with code 3 .*CUDA out of memory.*serve-\d+\.log"):
            engines.serve("v2")
    with Engines("no-such-engine-binary {model} --port {port}", [url], tmp_path / "s.json", tmp_path / "logs") as e:
        with pytest.raises(UsageError, match="cannot start 'no-such-engine-binary'"):
            e.serve("v2")
    with Engines("vllm serve {model} --port {gpu}", [url], tmp_path / "s.json", tmp_path / "logs") as e:
        with pytest.raises(UsageError, match=r"'gpu' is not a placeholder"):
            e.serve("v2")
    with Engines(
        "vllm serve {model} --port {port}", ["http://127.0.0.1/v1"], tmp_path / "s.json", tmp_path / "l"
    ) as e:
        with pytest.raises(UsageError, match="names no port"):
            e.serve("v2")


def test_serve_command_without_sampling_urls_is_refused_before_any_work(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Why is the sky blue?\n")
    out = tmp_path / "sdf"
    command = [sys.executable, "-m", "baize.sdf", "--model_name_or_path", str(tmp_path / "v1"), "--prompts_path",
               str(prompts), "--output_dir", str(out), "--rounds", "2", "--serve_command", "vllm serve {model}"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "serve_command needs sample_base_urls" in lines[0] and not out.exists()
