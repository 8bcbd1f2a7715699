"""The OpenAI Batch API path (baize.llm.batch): the real openai client uploads files and creates and polls batches at
the loopback server's `/v1/files` and `/v1/batches`; collection, the SDF judge and the eval judge run through it.
Kills while a batch runs, expired batches, failed requests, a budget at batch prices, and the request file's
format (which `vllm run-batch` reads) are checked here."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from openai_server import OpenAIServer, Reply, openai_server_fixture  # noqa: F401
from test_collect import REPO, config_for, is_simulator, journal, seed_of, turns_responder, write_seeds

from baize.collect import CollectConfig, collect
from baize.io.errors import EndpointError
from baize.llm.batch import BATCH_LOG, RESULTS_FILE, BatchSession, batch_label, read_result_line, request_line
from baize.llm.endpoint import Endpoint

PRICES = {"test-teacher": {"prompt": 1.0, "completion": 2.0}}


def transcript_responder(request):
    return f"[Human] about {seed_of(request)}\n[AI] an answer about {seed_of(request)}"


def batch_config(server, tmp_path, seeds, **overrides) -> CollectConfig:
    settings = {"batch": True, "batch_poll_interval": 0.02, "prices": PRICES, **overrides}
    return config_for(server, tmp_path, seeds, **settings)


def batch_events(config: CollectConfig) -> list[dict]:
    return [json.loads(line) for line in Path(config.output_dir, "batches", BATCH_LOG).read_text().splitlines()]


# --------------------------------------------------------------------------- collection


def test_transcript_mode_is_one_batch_at_half_the_price_and_a_rerun_asks_nothing(openai_server, tmp_path):
    openai_server.responder = transcript_responder
    seeds = [f"topic {i}" for i in range(6)]
    live = collect(config_for(openai_server, tmp_path, seeds, prices=PRICES, output_dir=str(tmp_path / "live")))
    assert not openai_server.batches
    config = batch_config(openai_server, tmp_path, seeds, output_dir=str(tmp_path / "batch"))
    report = collect(config)
    assert len(openai_server.batches) == 1 and report["kept"] == 6
    # the same dialogues, parsed and journaled by the same code, at the batch price (half, no batch_* prices given)
    assert {e["seed"]: e["messages"] for e in journal(config)} == {
        e["seed"]: e["messages"]
        for e in journal(config_for(openai_server, tmp_path, seeds, output_dir=str(tmp_path / "live")))
    }
    assert report["tokens"]["total"] == live["tokens"]["total"] and report["tokens"]["calls"] == 6
    assert report["cost_usd"] == pytest.approx(live["cost_usd"] / 2)
    assert report["billed"]["cost_usd"] == pytest.approx(live["billed"]["cost_usd"] / 2)
    assert report["this_run"]["batch"]["batches"] == 1 and report["this_run"]["batch"]["requests"] == 6
    assert [e["event"] for e in batch_events(config)] == ["uploaded", "created", "ended"]

    # the request file is what was uploaded, one line per seed, custom_id = seed id + request digest
    requests = [json.loads(line) for line in Path(config.output_dir, "batches", "requests-00001.jsonl").open()]
    uploaded = next(f for f in openai_server.files.values() if f["purpose"] == "batch")
    assert uploaded["data"] == Path(config.output_dir, "batches", "requests-00001.jsonl").read_bytes()
    ids = {e["id"] for e in journal(config)}
    assert {r["custom_id"].rsplit("-", 1)[0] for r in requests} == ids

    before = len(openai_server.requests)
    report = collect(config)
    assert report["kept"] == 6 and len(openai_server.batches) == 1 and len(openai_server.requests) == before


def test_turns_mode_sends_one_batch_per_step_and_matches_live_dialogues(openai_server, tmp_path):
    openai_server.responder = turns_responder
    seeds = ["short seed", "long seed", "long other"]
    live = config_for(openai_server, tmp_path, seeds, mode="turns", max_rounds=3, output_dir=str(tmp_path / "live"),
                      user_model="simulator-model")  # fmt: skip
    collect(live)
    config = batch_config(openai_server, tmp_path, seeds, mode="turns", max_rounds=3, output_dir=str(tmp_path / "b"),
                          user_model="simulator-model")  # fmt: skip
    report = collect(config)
    assert report["kept"] == 3
    assert {e["seed"]: (e["messages"], e["stop"]) for e in journal(config)} == {
        e["seed"]: (e["messages"], e["stop"]) for e in journal(live)
    }
    # round by round: simulator, AI, simulator, AI, simulator ([END] for short), AI for the two long ones
    sizes = [len(Path(config.output_dir, "batches", f"requests-{n:05d}.jsonl").read_text().splitlines())
             for n in range(1, len(openai_server.batches) + 1)]  # fmt: skip
    assert sizes == [3, 3, 3, 3, 3, 2]
    roles = [{is_simulator(r) for r in requests_of(openai_server, batch)} for batch in openai_server.batches.values()]
    assert roles == [{True}, {False}] * 3
    models = [{r.body["model"] for r in requests_of(openai_server, batch)} for batch in openai_server.batches.values()]
    assert models == [{"simulator-model"}, {"test-teacher"}] * 3  # one model a batch, as OpenAI requires


def requests_of(server: OpenAIServer, batch: dict):
    from openai_server import ChatRequest

    data = server.files[batch["input_file_id"]]["data"]
    return [ChatRequest(json.loads(line)["body"], {}, 1, 0.0) for line in data.splitlines()]


def test_an_expired_batch_sends_only_what_it_did_not_reach(openai_server, tmp_path):
    openai_server.responder = transcript_responder
    openai_server.expire_after = 4  # every batch stops after 4 requests, as if its 24 h window ran out
    config = batch_config(openai_server, tmp_path, [f"topic {i}" for i in range(6)])
    report = collect(config)
    assert report["kept"] == 6
    first, second = openai_server.batches.values()
    assert first["status"] == "expired" and first["request_counts"] == {"total": 6, "completed": 4, "failed": 2}
    assert second["request_counts"]["total"] == 2  # only the two the first one did not reach
    assert len(openai_server.requests) == 6
    assert [e.get("status") for e in batch_events(config) if e["event"] == "ended"] == ["expired", "completed"]


def test_requests_failing_in_every_batch_fail_their_seed_and_the_next_run_retries_only_them(openai_server, tmp_path):
    broken = {"topic 2"}

    def responder(request):
        if seed_of(request) in broken:
            return Reply(status=500, message="The server had an error (test)")
        return transcript_responder(request)

    openai_server.responder = responder
    config = batch_config(openai_server, tmp_path, [f"topic {i}" for i in range(5)], batch_retries=2)
    with pytest.raises(EndpointError, match="1 seeds failed"):
        collect(config)
    assert [b["request_counts"]["total"] for b in openai_server.batches.values()] == [5, 1, 1]  # 1 try + 2 retries
    assert [row["seed"] for row in map(json.loads, Path(config.output_dir, "failed_seeds.jsonl").open())] == [
        "topic 2"
    ]
    assert len(journal(config)) == 4
    broken.clear()
    assert collect(config)["kept"] == 5
    assert list(openai_server.batches.values())[-1]["request_counts"]["total"] == 1


def test_max_cost_holds_at_batch_prices(openai_server, tmp_path):
    """Every seed of a batch starts at once: each reserves its estimate first, so the seeds after the budget is
    reserved do not start, and what was billed stays under max_cost."""
    openai_server.responder = transcript_responder
    prices = {"test-teacher": {"prompt": 1.0, "completion": 2.0, "batch_prompt": 0.4, "batch_completion": 0.8}}
    config = batch_config(openai_server, tmp_path, [f"topic {i}" for i in range(20)], prices=prices,
                          assistant_max_tokens=100, max_cost=0.0005)  # fmt: skip
    report = collect(config)
    assert 0 < report["kept"] < 20 and report["stopped"] == "max_cost"
    assert report["billed"]["cost_usd"] <= 0.0005
    usage = journal(config)[0]["usage"]
    assert usage["cost_usd"] == pytest.approx((usage["prompt_tokens"] * 0.4 + usage["completion_tokens"] * 0.8) / 1e6)


def test_max_cost_holds_exactly_when_the_teacher_bills_more_prompt_tokens_than_the_character_estimate(
    openai_server, tmp_path
):
    """A teacher that bills a token per two characters (a third more than the 3-characters-a-token estimate): each
    reservation is an upper bound of what its call can be billed, so no run, and no re-run, spends past max_cost."""

    def responder(request):
        text = transcript_responder(request)
        prompt_chars = sum(len(m["content"]) for m in request.messages)
        return Reply(text, usage={"prompt_tokens": prompt_chars // 2, "completion_tokens": len(text.split())})

    openai_server.responder = responder
    prices = {"test-teacher": {"prompt": 1.0, "completion": 2.0, "batch_prompt": 1.0, "batch_completion": 2.0}}
    seeds = [f"topic {i}" for i in range(30)]
    config = batch_config(openai_server, tmp_path, seeds, prices=prices, assistant_max_tokens=60, max_cost=0.0015)
    first = collect(config)
    assert 0 < first["kept"] < 30 and first["stopped"] == "max_cost"
    kept = [first["kept"]]
    for _ in range(8):  # re-runs start a seed where what is really billed left room for its reservation
        report = collect(batch_config(openai_server, tmp_path, seeds, prices=prices, assistant_max_tokens=60,
                                      max_cost=0.0015))  # fmt: skip
        assert report["billed"]["cost_usd"] <= 0.0015
        kept.append(report["kept"])
        if kept[-1] == kept[-2]:
            break
    assert kept[-1] == kept[-2] and kept[-1] < 30  # until nothing more fits
    lines = [json.loads(line) for line in (tmp_path / "out" / "spend.jsonl").read_text().splitlines()]
    assert sum(line["cost_usd"] for line in lines if "prompt_tokens" in line) <= 0.0015


def test_a_key_echoed_back_in_batch_answers_never_lands_in_a_file(openai_server, tmp_path, monkeypatch):
    secret = "my-batch-key-" + "7c1e" * 6  # not token-shaped: only its value identifies it
    monkeypatch.setenv("BAIZE_TEST_BATCH_KEY", secret)
    openai_server.responder = lambda r: f"[Human] {seed_of(r)}?\n[AI] the key is {r.headers['authorization']}"
    config = batch_config(openai_server, tmp_path, ["one", "two"], api_key_env="BAIZE_TEST_BATCH_KEY")
    assert collect(config)["kept"] == 2
    assert "the key is Bearer ***" in (tmp_path / "out" / "train.jsonl").read_text()  # the server did echo it
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), path


@pytest.mark.slow
def test_a_batch_that_fails_validation_or_a_server_without_batches_stops_the_run_with_one_line(
    openai_server, tmp_path
):
    openai_server.responder = transcript_responder
    openai_server.fail_batches = "model test-teacher does not exist"
    seeds = write_seeds(tmp_path / "seeds.txt", ["one", "two"])
    command = [sys.executable, "-m", "baize.collect", "--mode", "transcript", "--base_url", openai_server.base_url,
               "--seeds_path", str(seeds), "--teacher_model", "test-teacher", "--output_dir", str(tmp_path / "out"),
               "--batch", "true", "--batch_poll_interval", "0.02"]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    errors = [line for line in result.stderr.splitlines() if line.startswith("baize collect: error:")]
    assert result.returncode == 1 and len(errors) == 1, result.stderr[-2000:]
    assert "model test-teacher does not exist" in errors[0] and "Traceback" not in result.stderr

    # a server without the Batch API (vllm serve): one line saying so and what to do instead
    openai_server.fail_batches, openai_server.batch_api = None, False
    command[command.index("--output_dir") + 1] = str(tmp_path / "out2")
    result = subprocess.run(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    errors = [line for line in result.stderr.splitlines() if line.startswith("baize collect: error:")]
    assert result.returncode == 1 and len(errors) == 1, result.stderr[-2000:]
    assert "has no Batch API (/files answered HTTP 404)" in errors[0] and "--batch_offline true" in errors[0]
    assert "Traceback" not in result.stderr and (tmp_path / "out2" / "journal.jsonl").exists()


@pytest.mark.slow
def test_killed_while_a_batch_runs_then_the_rerun_reattaches_instead_of_paying_twice(openai_server, tmp_path):
    openai_server.responder = transcript_responder
    openai_server.batch_delay = 0.25  # 8 requests: 2 s in progress
    seeds = write_seeds(tmp_path / "seeds.txt", [f"topic {i}" for i in range(8)])
    output = tmp_path / "out"
    command = [sys.executable, "-m", "baize.collect", "--mode", "transcript", "--base_url", openai_server.base_url,
               "--seeds_path", str(seeds), "--teacher_model", "test-teacher", "--output_dir", str(output),
               "--batch", "true", "--batch_poll_interval", "0.05", "--prices", json.dumps(PRICES)]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 120
    while not any(b["status"] == "in_progress" for b in openai_server.batches.values()):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    (batch,) = openai_server.batches.values()
    assert batch["request_counts"]["completed"] < 8  # killed mid-batch

    config = CollectConfig(mode="transcript", seeds_path=str(seeds), output_dir=str(output), teacher_model="test-teacher",
                           base_url=openai_server.base_url, batch=True, batch_poll_interval=0.05, prices=PRICES)  # fmt: skip
    report = collect(config)
    assert report["kept"] == 8 and len(openai_server.batches) == 1  # waited for the same batch
    assert report["this_run"]["batch"] == {
        "batches": 0,
        "attached": 1,
        "requests": 0,
        "replayed": 0,
        "failed_requests": 0,
    }
    assert len(openai_server.requests) == 8
    # the killed run's reservations and this run's settlements are the same calls: billed once
    assert report["billed"]["calls"] == 8 and report["billed"]["cost_usd"] == pytest.approx(report["cost_usd"])


@pytest.mark.slow
def test_turns_mode_killed_in_a_later_step_pays_for_no_request_twice(openai_server, tmp_path):
    """Killed while round 2's simulator batch runs: the re-run replays round 1 from the store, re-attaches to the
    running batch and goes on; the server answers each request of the collection once."""
    openai_server.responder = turns_responder
    seeds = [f"long seed {i}" for i in range(4)]
    live = config_for(openai_server, tmp_path, seeds, mode="turns", max_rounds=2, output_dir=str(tmp_path / "live"))
    collect(live)
    live_calls = len(openai_server.requests)
    openai_server.reset()
    openai_server.batch_delay = 0.2
    output = tmp_path / "out"
    command = [sys.executable, "-m", "baize.collect", "--mode", "turns", "--max_rounds", "2", "--base_url",
               openai_server.base_url, "--seeds_path", str(tmp_path / "seeds.txt"), "--teacher_model", "test-teacher",
               "--output_dir", str(output), "--batch", "true", "--batch_poll_interval", "0.05"]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while len(openai_server.batches) < 3 or list(openai_server.batches.values())[2]["status"] != "in_progress":
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    openai_server.batch_delay = 0.0
    config = CollectConfig(mode="turns", max_rounds=2, seeds_path=str(tmp_path / "seeds.txt"), output_dir=str(output),
                           teacher_model="test-teacher", base_url=openai_server.base_url, batch=True,
                           batch_poll_interval=0.02)  # fmt: skip
    report = collect(config)
    assert report["kept"] == 4 and report["this_run"]["batch"]["attached"] == 1
    assert report["this_run"]["batch"]["replayed"] == 8  # round 1: 4 questions and 4 answers from the store
    assert len(openai_server.batches) == 4 and len(openai_server.requests) == live_calls == 16
    assert {e["seed"]: e["messages"] for e in journal(config)} == {e["seed"]: e["messages"] for e in journal(live)}


def test_a_batch_created_but_not_journaled_is_found_by_its_input_file(openai_server, tmp_path):
    """A kill between `batches.create` and its journal line: the upload was journaled, and the batch is found in
    the provider's batch list by that file."""
    openai_server.responder = lambda r: f"answer to {r.last_user}"
    folder = tmp_path / "batches"

    async def ask(questions):
        endpoint = Endpoint(openai_server.base_url, "BAIZE_TEST_NO_KEY")
        session = endpoint.use_batches(folder, poll_interval=0.02)

        async def one(question):
            return (await endpoint.chat("m", [{"role": "user", "content": question}]))[0].content

        try:
            return await endpoint.gather([one(q) for q in questions], 1), session.stats
        finally:
            await endpoint.close()

    # what the killed run did: wrote the request file, uploaded it, journaled the upload, created the batch
    bodies = [{"model": "m", "messages": [{"role": "user", "content": q}]} for q in ("a", "b")]
    from baize.llm.batch import custom_id

    lines = [request_line(custom_id("request", body), body) for body in bodies]
    folder.mkdir()
    (folder / "requests-00001.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    uploaded = openai_server.add_file((folder / "requests-00001.jsonl").read_bytes(), "batch", "requests-00001.jsonl")
    openai_server.create_batch({"input_file_id": uploaded["id"], "endpoint": "/v1/chat/completions",
                                "completion_window": "24h"})  # fmt: skip
    (folder / BATCH_LOG).write_text(json.dumps({"event": "uploaded", "file": uploaded["id"],
                                                "requests": "requests-00001.jsonl"}) + "\n")  # fmt: skip

    answers, stats = asyncio.run(ask(["a", "b"]))
    assert answers == ["answer to a", "answer to b"]
    assert len(openai_server.batches) == 1 and stats["attached"] == 1 and stats["batches"] == 0


def test_nested_calls_and_reasks_go_into_the_next_batch_and_answers_are_stored(openai_server, tmp_path):
    """A coroutine's parallel calls (endpoint.together) share a batch; a follow-up call waits for the next one;
    a second session in the same folder answers everything from the store."""
    openai_server.responder = lambda r: f"answer to {r.last_user}"

    async def run():
        endpoint = Endpoint(openai_server.base_url, "BAIZE_TEST_NO_KEY")
        endpoint.use_batches(tmp_path / "b", poll_interval=0.02)

        async def row(i):
            batch_label.set(f"row{i}")
            first = await endpoint.together(
                *(endpoint.chat("m", [{"role": "user", "content": f"{i}.{k}"}]) for k in range(3))
            )
            again, _ = await endpoint.chat("m", [{"role": "user", "content": f"again {first[0][0].content}"}])
            return again.content

        try:
            return await endpoint.gather([row(i) for i in range(4)], 1), endpoint.batch.stats
        finally:
            await endpoint.close()

    answers, stats = asyncio.run(run())
    assert answers == [f"answer to again answer to {i}.0" for i in range(4)]
    assert [b["request_counts"]["total"] for b in openai_server.batches.values()] == [12, 4]
    answers_again, stats = asyncio.run(run())
    assert answers_again == answers and stats["replayed"] == 16 and len(openai_server.batches) == 2
    stored = [json.loads(line) for line in (tmp_path / "b" / RESULTS_FILE).open()]
    assert len(stored) == 16 and all(row["custom_id"].startswith("row") for row in stored)


def test_one_round_asking_two_models_sends_one_batch_per_model(openai_server, tmp_path):
    openai_server.responder = lambda r: f"{r.body['model']} says {r.last_user}"

    async def run():
        endpoint = Endpoint(openai_server.base_url, "BAIZE_TEST_NO_KEY")
        endpoint.use_batches(tmp_path / "b", poll_interval=0.02)

        async def ask(model, question):
            return (await endpoint.chat(model, [{"role": "user", "content": question}]))[0].content

        try:
            return await endpoint.gather([ask(m, q) for m in ("judge-a", "judge-b") for q in ("x", "y")], 1)
        finally:
            await endpoint.close()

    assert asyncio.run(run()) == ["judge-a says x", "judge-a says y", "judge-b says x", "judge-b says y"]
    assert [b["request_counts"]["total"] for b in openai_server.batches.values()] == [2, 2]


# --------------------------------------------------------------------------- the file format


def test_request_and_result_lines_are_the_openai_batch_format_that_vllm_run_batch_reads():
    """vLLM's `run-batch` reads OpenAI's batch input format (BatchRequestInput: custom_id, method, url, body) and
    writes OpenAI's output format (BatchRequestOutput: id, custom_id, response {status_code, request_id, body},
    error); both are checked here field by field."""
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    line = request_line("seed-0123", body)
    assert line == {"custom_id": "seed-0123", "method": "POST", "url": "/v1/chat/completions", "body": body}
    completion = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m", "usage": None,
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
                               "finish_reason": "stop"}]}  # fmt: skip
    vllm_output = {"id": "vllm-5b1c", "custom_id": "seed-0123", "error": None,
                   "response": {"status_code": 200, "request_id": "vllm-batch-9e2f", "body": completion}}  # fmt: skip
    assert read_result_line(vllm_output) == ("seed-0123", completion, None)
    openai_error = {"id": "batch_req_1", "custom_id": "seed-0124", "response": None,
                    "error": {"code": "batch_expired", "message": "not executed before the window expired"}}  # fmt: skip
    assert read_result_line(openai_error) == (
        "seed-0124",
        None,
        "batch_expired: not executed before the window expired",
    )
    http_error = {"id": "batch_req_2", "custom_id": "seed-0125", "error": None,
                  "response": {"status_code": 400, "body": {"error": {"message": "context too long"}}}}  # fmt: skip
    assert read_result_line(http_error) == ("seed-0125", None, "HTTP 400: context too long")


def test_batch_settings_are_refused_for_alpaca_and_batch_folders_never_pushed(tmp_path):
    from baize.collect.run import RESUME_STATE as COLLECT_STATE
    from baize.hub import plan_upload
    from baize.io.runs import claim_step
    from baize.sdf.sample import RESUME_STATE as SDF_STATE

    with pytest.raises(ValueError, match="alpaca"):
        CollectConfig(mode="alpaca", batch=True)
    # each stage declares its resume state in its signature, and a push leaves it home
    assert "batches/**" in COLLECT_STATE and "judge-batches/**" in SDF_STATE
    claim_step(tmp_path, "collect_signature.json", {"mode": "turns"}, [], overwrite=False, what="dialogues",
               resume_state=COLLECT_STATE)  # fmt: skip
    for name in ("train.jsonl", "batches/requests-00001.jsonl", "batches/batches.jsonl", "journal.jsonl"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}\n")
    assert plan_upload(tmp_path, "me/data", repo_type="dataset").upload == ["train.jsonl"]
    assert BatchSession.__doc__


# --------------------------------------------------------------------------- the judges


def test_sdf_judge_batches_verdicts_and_sends_reasks_in_the_next_batch(tmp_path):
    from test_sdf import ANSWER, config_for, run_judge

    from baize import sdf

    def responder(request):
        answer = ANSWER.search(request.messages[1]["content"]).group(1)
        if answer == "good":
            return "85\nAccurate and detailed."
        if answer == "malformed":  # fixed by the format reminder
            return "Score: 40/100\nThin." if len(request.messages) > 2 else "Rating: meh, somewhat helpful"
        return "I'm sorry, I can't help with rating that."

    rows = [
        {"id": f"p{i}", "messages": [{"role": "user", "content": f"q{i}?"}],
         "candidates": [{"text": t} for t in ("good", "malformed", "refuse")]}
        for i in range(2)
    ]  # fmt: skip
    with OpenAIServer(responder) as server:
        config = config_for(tmp_path, tmp_path, ["q"], judge_base_url=server.base_url, judge_parse_retries=1)
        live = run_judge(config, rows)
        server.reset()
        config.judge_batch, config.judge_batch_poll_interval = True, 0.02

        stats = run_judge(config, rows)  # a fresh cache: every verdict is asked again, as batches
        sizes = [b["request_counts"]["total"] for b in server.batches.values()]
    assert [r["scores"] for r in stats["rows"]] == [r["scores"] for r in live["rows"]] == [[85.0, 40.0, None]] * 2
    assert sizes == [6, 4]  # every first ask in one batch, the re-asks (malformed, refused) in the next
    assert stats["usage"]["calls"] == live["usage"]["calls"] == 10
    assert stats["parse_errors"] == live["parse_errors"]
    stored = [json.loads(line) for line in (Path(config.output_dir) / "judge-batches" / RESULTS_FILE).open()]
    keys = {row["key"][:16] for row in sdf.read_jsonl(Path(config.output_dir) / sdf.JUDGE_CACHE_FILE)}
    assert {row["custom_id"].rsplit("-", 1)[0] for row in stored} == keys  # a custom_id starts with its verdict key


def test_eval_judge_batch_gives_the_live_verdicts_and_a_rerun_replays_them(tmp_path):
    from test_eval import judge_responder, judged_config

    from baize import evaluate

    with OpenAIServer(judge_responder) as server:
        live = evaluate.judge_step(judged_config(tmp_path / "live", server))
        live_rows = evaluate.read_jsonl(Path(tmp_path / "live" / "eval" / "judgements.jsonl"))
        calls = len(server.requests)
        server.reset()
        config = judged_config(tmp_path / "batch", server, judge_batch=True, judge_batch_poll_interval=0.02)
        stats = evaluate.judge_step(config)
        rows = evaluate.read_jsonl(Path(config.output_dir) / "judgements.jsonl")
        assert len(server.batches) == 2 and len(server.requests) == calls  # asks, then re-asks
        assert stats["judged"] == live["judged"] == 6
        assert {r["question_id"]: r["outcome"] for r in rows} == {r["question_id"]: r["outcome"] for r in live_rows}
        assert (Path(config.output_dir) / "judge-batches" / BATCH_LOG).exists()
        # without the verdict cache, a re-run gets every answer from the batch store: nothing is sent again
        (Path(config.output_dir) / "judge_cache.jsonl").unlink()
        again = evaluate.judge_step(config)
        assert again["judged"] == 6 and again["cache_misses"] == 12
        assert len(server.batches) == 2 and len(server.requests) == calls
        rerun = evaluate.read_jsonl(Path(config.output_dir) / "judgements.jsonl")
        assert {r["question_id"]: r["outcome"] for r in rerun} == {r["question_id"]: r["outcome"] for r in rows}


# --------------------------------------------------------------------------- offline: vllm run-batch


def run_batch_offline(requests: Path, results: Path, responder) -> None:
    """What `vllm run-batch -i requests -o results` writes: one BatchRequestOutput line per request (vLLM cannot
    run here; its output format is the one checked in test_request_and_result_lines_...)."""
    from openai_server import ChatRequest

    server = OpenAIServer(responder)  # not started: only its completion builder is used
    lines = []
    for number, line in enumerate(map(json.loads, requests.open())):
        request = ChatRequest(line["body"], {}, 1, 0.0)
        reply = responder(request)
        completion = server._completion(request, Reply(reply) if isinstance(reply, str) else reply)
        lines.append({"id": f"vllm-{number}", "custom_id": line["custom_id"], "error": None,
                      "response": {"status_code": 200, "request_id": f"vllm-batch-{number}", "body": completion}})  # fmt: skip
    results.write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_offline_batches_stop_for_the_engine_and_go_on_with_its_results(openai_server, tmp_path, monkeypatch):
    """batch_offline: no endpoint and no key; each run writes the next request file and stops (exit 0) until the
    file's results are in the folder; the dialogues are those of a live run."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    openai_server.responder = turns_responder
    seeds = ["short seed", "long seed"]
    live = config_for(openai_server, tmp_path, seeds, mode="turns", max_rounds=3, output_dir=str(tmp_path / "live"))
    collect(live)
    config = CollectConfig(mode="turns", max_rounds=3, seeds_path=str(tmp_path / "seeds.txt"), base_url=None,
                           teacher_model="test-teacher", output_dir=str(tmp_path / "offline"), batch_offline=True)  # fmt: skip
    folder = tmp_path / "offline" / "batches"
    cycles = 0
    while (report := collect(config))["stopped"] == "waiting_for_batch_results":
        cycles += 1
        newest = sorted(folder.glob("requests-*.jsonl"))[-1]
        if cycles == 1:  # a re-run before the engine answered writes nothing new
            assert collect(config)["stopped"] == "waiting_for_batch_results"
            assert sorted(folder.glob("requests-*.jsonl")) == [newest]
        run_batch_offline(newest, newest.with_name(newest.name.replace("requests-", "results-")), turns_responder)
    assert cycles == 6 and report["kept"] == 2  # simulator, AI, x3 (the short seed ends in round 3)
    assert {e["seed"]: e["messages"] for e in journal(config)} == {e["seed"]: e["messages"] for e in journal(live)}
    assert len(openai_server.requests) == 11 and not openai_server.batches  # the live run's calls; offline sent none
