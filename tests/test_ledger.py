"""Money is never lost: the spend ledger (group commit off the event loop), batches a killed run left at the
provider re-attached and settled before any budget decision, billed-but-unusable answers settled at what the
provider charged, non-transient batch errors dropped like live ones, and seeds rows that are no seeds said out
loud. The real openai client against the loopback server (tests/openai_server.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from openai_server import Reply, openai_server_fixture  # noqa: F401
from test_collect import REPO, config_for, journal, seed_of, write_seeds

from baize.collect import CollectConfig, collect
from baize.collect.journal import read_ledger_calls, read_ledgers
from baize.io.errors import BatchRequestFailed, MissingColumn, request_error_kind
from baize.io.jsonl import GroupCommitAppender, iter_jsonl
from baize.llm.endpoint import estimate_prompt_tokens

# one price for every token, so that what the server billed is its token count times it
FLAT = {"test-teacher": {"prompt": 2.0, "completion": 2.0, "batch_prompt": 1.0, "batch_completion": 1.0}}


def transcript_responder(request):
    return f"[Human] about {seed_of(request)}\n[AI] an answer about {seed_of(request)}"


# --------------------------------------------------------------------------- the group-commit writer


def test_group_commit_writes_what_many_threads_queue_in_few_syncs_and_everything_on_close(tmp_path):
    path = tmp_path / "ledger.jsonl"
    appender = GroupCommitAppender(path)
    futures = []

    def writer(n):
        for i in range(200):
            futures.append(appender.submit([{"writer": n, "i": i}]))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    appender.append_soon({"last": True})  # not waited for: closing writes it
    appender.close()
    rows = list(iter_jsonl(path))
    assert len(rows) == 801 and rows[-1] == {"last": True}
    assert all(future.done() and future.exception() is None for future in futures)
    for n in range(4):  # each writer's lines in its own order
        assert [row["i"] for row in rows if row.get("writer") == n] == list(range(200))
    assert appender.syncs < 801  # lines queued during a sync went out together


def test_a_durable_append_does_not_block_the_event_loop(tmp_path):
    """While a reservation waits for its sync, other coroutines run (the ledger used to fsync on the loop)."""
    appender = GroupCommitAppender(tmp_path / "ledger.jsonl")
    ticks = []

    async def ticker():
        for _ in range(20):
            ticks.append(time.perf_counter())
            await asyncio.sleep(0)

    async def scenario():
        await asyncio.gather(ticker(), *(appender.append_durably({"call": i}) for i in range(50)))

    asyncio.run(scenario())
    appender.close()
    assert len(ticks) == 20 and len(list(iter_jsonl(tmp_path / "ledger.jsonl"))) == 50


def test_a_waiter_cancelled_by_ctrl_c_does_not_stop_the_writer(tmp_path):
    """Ctrl-C cancels the coroutines awaiting their sync, and asyncio cancels the futures they awaited: the writer
    thread writes those lines all the same and goes on with the next ones (it used to die with a traceback)."""
    appender = GroupCommitAppender(tmp_path / "ledger.jsonl")
    cancelled = appender.submit([{"call": "in flight"}])
    cancelled.cancel()
    appender.append_rows([{"call": "next"}])
    appender.close()
    assert list(iter_jsonl(tmp_path / "ledger.jsonl")) == [{"call": "in flight"}, {"call": "next"}]


# --------------------------------------------------------------------------- one rule for failed requests


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, "rejected"), (413, "rejected"), (401, "fatal"), (404, "fatal"), (408, "transient"), (429, "transient"),
     (500, "transient"), (503, "transient"), (None, "transient")],
)  # fmt: skip
def test_one_rule_says_which_failed_requests_are_sent_again(status, kind):
    assert request_error_kind(BatchRequestFailed("a line of an error file", status)) == kind


def test_a_400_in_a_batch_error_file_is_dropped_as_api_error_and_never_sent_again(openai_server, tmp_path):
    def responder(request):
        if seed_of(request) == "topic 1":
            return Reply(status=400, message="This model's maximum context length is 8192 tokens (test)")
        return transcript_responder(request)

    openai_server.responder = responder
    config = config_for(openai_server, tmp_path, [f"topic {i}" for i in range(4)], batch=True, batch_retries=2,
                        batch_poll_interval=0.02, prices=FLAT)  # fmt: skip
    report = collect(config)  # not a failure of the run: that request can never succeed
    assert report["kept"] == 3 and report["dropped"]["api_error"] == 1 and report["failed_this_run"] == 0
    assert [b["request_counts"]["total"] for b in openai_server.batches.values()] == [4]  # no retry batch
    dropped = next(e for e in journal(config) if e["seed"] == "topic 1")
    assert dropped["reason"] == "api_error" and "maximum context length" in dropped["detail"]
    assert collect(config)["kept"] == 3 and len(openai_server.batches) == 1  # and the next run does not ask again


# --------------------------------------------------------------------------- billed but unusable


def test_a_200_the_client_cannot_use_is_settled_at_its_usage_or_its_reservation(openai_server, tmp_path):
    no_choices = {"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": [],
                  "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}  # fmt: skip

    def responder(request):
        if request.attempt == 1:  # billed, usage in the body, no choices
            return Reply(raw=json.dumps(no_choices).encode())
        if request.attempt == 2:  # billed, the body cut off: nothing to read the usage from
            return Reply(raw=b'{"id": "x", "object": "chat.completion", "choi')
        return Reply(transcript_responder(request), usage={"prompt_tokens": 30, "completion_tokens": 20})

    openai_server.responder = responder
    config = config_for(openai_server, tmp_path, ["flaky"], max_retries=2, assistant_max_tokens=64, prices=FLAT)
    report = collect(config)
    assert report["kept"] == 1 and report["this_run"]["unusable_replies"] == 2
    calls = list(read_ledger_calls(Path(config.output_dir)).values())
    # the first pass tries once (no choices: its usage); the second pass gets the cut body and then the answer
    assert [call.get("unusable") for call in calls] == [1, 1]
    prompt = [{"role": "user", "content": openai_server.requests[0].messages[0]["content"]}]
    reservation = estimate_prompt_tokens(prompt) + 64
    assert calls[0]["prompt_tokens"] + calls[0]["completion_tokens"] == 18
    assert calls[1]["prompt_tokens"] + calls[1]["completion_tokens"] == reservation + 50  # never 0
    billed = read_ledgers(Path(config.output_dir)).summary()
    assert billed["total_tokens"] == 18 + reservation + 50
    assert report["billed"]["total_tokens"] == billed["total_tokens"]


# --------------------------------------------------------------------------- batch before budget


def server_billed_tokens(server) -> int:
    """What the loopback provider billed for batches: the usage of every line of its output files."""
    total = 0
    for file in server.files.values():
        if file["purpose"] == "batch_output":
            for line in file["data"].decode().splitlines():
                body = (json.loads(line).get("response") or {}).get("body") or {}
                total += (body.get("usage") or {}).get("total_tokens", 0)
    return total


@pytest.mark.slow
def test_killed_while_polling_under_a_binding_max_cost_then_the_rerun_collects_what_was_paid(openai_server, tmp_path):
    """The reservations of the killed run's batch fill the budget: the re-run must re-attach to that batch and
    settle it from the provider's answers before the budget decides anything (it used to stop at once with
    `stopped: max_cost`, kept 0, exit 0, and the paid batch was never collected)."""
    openai_server.responder = transcript_responder
    openai_server.batch_delay = 0.2
    seeds = write_seeds(tmp_path / "seeds.txt", [f"topic {i}" for i in range(30)])
    output = tmp_path / "out"
    # a reservation is the prompt's upper bound (its UTF-8 bytes + format tokens) + 100 tokens at $1/M: max_cost lets
    # about 6 seeds start
    settings = ["--mode", "transcript", "--base_url", openai_server.base_url, "--seeds_path", str(seeds),
                "--teacher_model", "test-teacher", "--output_dir", str(output), "--batch", "true",
                "--batch_poll_interval", "0.05", "--prices", json.dumps(FLAT), "--assistant_max_tokens", "100",
                "--max_cost", "0.0055"]  # fmt: skip
    process = subprocess.Popen([sys.executable, "-m", "baize.collect", *settings], cwd=REPO,
                               env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while not any(b["status"] == "in_progress" for b in openai_server.batches.values()):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    (first,) = openai_server.batches.values()
    paid = first["request_counts"]["total"]
    assert 2 <= paid < 30
    while first["status"] != "completed":  # the provider finishes (and bills) the batch without its client
        time.sleep(0.05)
    # the killed run's reservations alone are over the budget
    assert read_ledgers(output).total.cost_usd > 0.0055 * 0.5

    openai_server.batch_delay = 0.0
    config = CollectConfig(mode="transcript", seeds_path=str(seeds), output_dir=str(output), teacher_model="test-teacher",
                           base_url=openai_server.base_url, batch=True, batch_poll_interval=0.02, prices=FLAT,
                           assistant_max_tokens=100, max_cost=0.0055)  # fmt: skip
    report = collect(config)
    assert report["kept"] >= paid and report["this_run"]["batch"]["attached"] == 1
    kept_seeds = {e["seed"] for e in journal(config) if e["status"] == "kept"}
    assert {f"topic {i}" for i in range(paid)} <= kept_seeds  # every dialogue paid for is kept
    calls = read_ledger_calls(output)
    assert all("prompt_tokens" in call for call in calls.values())  # nothing left at its reservation
    # billed: what the server billed, to the token (and so to the cent), and within the budget
    assert report["billed"]["total_tokens"] == server_billed_tokens(openai_server)
    assert report["billed"]["cost_usd"] == pytest.approx(server_billed_tokens(openai_server) / 1e6)
    assert report["billed"]["cost_usd"] <= 0.0055 + 1e-9
    # a run stopped by its budget may go on where the settled costs left room; the budget still holds
    again = collect(config)
    assert again["kept"] >= report["kept"] and again["billed"]["cost_usd"] <= 0.0055 + 1e-9
    assert again["billed"]["total_tokens"] == server_billed_tokens(openai_server)


# --------------------------------------------------------------------------- seeds rows that are no seeds


def test_a_seeds_row_without_the_column_is_counted_and_said_or_stops_with_its_row(openai_server, tmp_path, caplog):
    openai_server.responder = transcript_responder
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text('{"text": "topic a"}\n{"question": "topic b"}\n{"text": "topic c"}\n')
    config = config_for(openai_server, tmp_path, [], seeds_path=str(seeds))
    with caplog.at_level(logging.INFO, logger="baize.collect"):
        report = collect(config)
    assert report["kept"] == 2 and report["seeds"]["missing_column"] == 1 and report["seeds"]["first_missing_row"] == 2
    summary = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("kept 2"))
    assert "1 seeds rows without 'text' skipped (first: row 2 of" in summary

    strict = config_for(openai_server, tmp_path, [], seeds_path=str(seeds), on_bad_row="error",
                        output_dir=str(tmp_path / "strict"))  # fmt: skip
    with pytest.raises(MissingColumn, match=r"seeds.jsonl: row 2: no 'text' value"):
        collect(strict)
    assert not Path(strict.output_dir, "journal.jsonl").exists() or not journal(strict)
