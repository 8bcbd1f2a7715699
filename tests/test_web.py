"""`baize web`: the reply streams of both backends, and the page itself in a real headless Chromium."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO, free_port, local_server, make_lora_adapter
from openai_server import OpenAIServer, Reply

from baize.modeling.loading import load_chat_model
from baize.web import EndpointBackend, LocalBackend, ReplySettings, exchanges, stream_answer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# CI installs Debian's chromium: there the browser test must run, not skip.
REQUIRE_BROWSER = os.environ.get("BAIZE_REQUIRE_BROWSER") == "1"


def collect(agen, limit: int | None = None) -> list[str]:
    async def run():
        states = []
        try:
            async for state in agen:
                states.append(state)
                if limit is not None and len(states) >= limit:
                    break
        finally:
            await agen.aclose()
        return states

    return asyncio.run(run())


def test_gradio_history_becomes_exchanges():
    history = [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "and you?"},  # a stopped reply left no answer
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": [{"type": "text", "text": "fine"}]},
    ]
    assert exchanges(history) == [("hi", "hello"), ("again", "fine")]


@pytest.fixture(scope="module")
def local_backend(tmp_path_factory, tiny_llama_dir):
    adapter = make_lora_adapter(tmp_path_factory.mktemp("web") / "adapter", tiny_llama_dir)
    return LocalBackend(load_chat_model(adapter))


def test_local_reply_streams_without_turn_tags(local_backend):
    settings = ReplySettings(max_new_tokens=48, temperature=1.0)
    history = [{"role": "user", "content": "What is tea?"}, {"role": "assistant", "content": "A drink."}]
    states = collect(stream_answer(local_backend, history, "How is it made?", settings))
    assert len(states) >= 2, states
    assert all(later.startswith(earlier) for earlier, later in zip(states[:-2], states[1:-1], strict=True))
    assert not any(tag in states[-1] for tag in ("[|Human|]", "[|AI|]"))


def test_local_stop_ends_generation(local_backend):
    """Closing the stream (what Stop in the page does) sets the interrupt: generate() returns at its next token."""
    settings = ReplySettings(max_new_tokens=4000, temperature=1.0)
    states = collect(stream_answer(local_backend, [], "Tell me a long story.", settings), limit=2)
    assert len(states) == 2
    released = local_backend.lock.acquire(timeout=30)  # held by generate() until it has stopped
    assert released, "generation went on after the stream was closed"
    local_backend.lock.release()


def test_endpoint_reply_streams_and_sends_history_within_budget():
    answer = "Steep the leaves in hot water for three minutes."
    with OpenAIServer(lambda request: Reply(answer)) as server:
        backend = EndpointBackend(server.base_url, "test-model", "BAIZE_TEST_NO_KEY", 4, "baize")
        history = [
            {"role": "user", "content": "old question " * 200},
            {"role": "assistant", "content": "old answer"},
            {"role": "user", "content": "What is tea?"},
            {"role": "assistant", "content": "A drink."},
        ]
        settings = ReplySettings(system="You are Baize.", max_history_tokens=200, temperature=0.7)
        states = collect(stream_answer(backend, history, "How is it made?", settings))
        request = server.requests[-1]
    assert states[-1] == answer
    assert len(states) >= 3 and states[0] == "Steep"  # one streamed state per word
    assert request.body["stream"] is True
    assert request.body["stop"] == ["[|Human|]", "[|AI|]", "\n[|"]
    assert request.body["temperature"] == 0.7
    assert request.messages == [  # the old exchange does not fit in 200 tokens; the newer one does
        {"role": "system", "content": "You are Baize."},
        {"role": "user", "content": "What is tea?"},
        {"role": "assistant", "content": "A drink."},
        {"role": "user", "content": "How is it made?"},
    ]


def test_endpoint_stop_closes_the_stream():
    with OpenAIServer(lambda request: Reply("word " * 400, chunk_delay=0.02)) as server:
        backend = EndpointBackend(server.base_url, "test-model", "BAIZE_TEST_NO_KEY", 4, "baize")
        states = collect(stream_answer(backend, [], "Go on and on.", ReplySettings()), limit=3)
        deadline = time.monotonic() + 10
        while server.streams_closed_early == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.streams_closed_early == 1
    assert states == ["word", "word word", "word word word"]


def test_guardrail_toggle_replaces_the_system_prompt():
    from baize.prompts import GUARDRAIL_SYSTEM_PROMPT

    assert ReplySettings(system="mine", guardrail=True).system_prompt == GUARDRAIL_SYSTEM_PROMPT
    assert ReplySettings(system="mine").system_prompt == "mine"
    assert ReplySettings(system="").system_prompt is None  # the template's plain header


# --------------------------------------------------------------------------- the page in a real browser

BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def web_server(tmp_path_factory, tiny_llama_dir):
    """`baize web` on a tiny random adapter (long replies: a random model seldom says EOS), or BAIZE_WEB_TEST_MODEL."""
    model = os.environ.get("BAIZE_WEB_TEST_MODEL") or str(
        make_lora_adapter(tmp_path_factory.mktemp("web-page") / "tiny-baize", tiny_llama_dir)
    )
    port = free_port()
    log = tmp_path_factory.mktemp("web-log") / "web.log"
    url = f"http://127.0.0.1:{port}/"
    command = [sys.executable, "-m", "baize.web", model, "--port", str(port), "--max_new_tokens", "1500"]
    with local_server(command, log, url, env={"GRADIO_ANALYTICS_ENABLED": "False"}):
        yield url


def bot_texts(page) -> list[str]:
    return [element.inner_text() for element in page.query_selector_all("[data-testid='bot']")]


def user_texts(page) -> list[str]:
    return [element.inner_text() for element in page.query_selector_all("[data-testid='user']")]


def wait_for(condition, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def streamed_states(page, count: int) -> list[str]:
    """The last reply's text as it grows, until `count` different non-empty states were seen."""
    states: list[str] = []

    def grew():
        texts = bot_texts(page)
        if texts and texts[-1].strip() and (not states or texts[-1] != states[-1]):
            states.append(texts[-1])
        return len(states) >= count

    wait_for(grew, what=f"{count} streamed states")
    return states


def stop_button(page):
    return page.query_selector("button.stop-button:visible, button[aria-label='Stop']:visible")


@pytest.mark.slow
def test_web_page_in_chromium(web_server, tmp_path):
    if CHROMIUM is None:
        if REQUIRE_BROWSER:
            pytest.fail("BAIZE_REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install chromium chromium-driver)")
        pytest.skip("no chromium on PATH (apt-get install chromium chromium-driver)")
    from playwright.sync_api import sync_playwright

    artefacts = Path(os.environ.get("BAIZE_TEST_ARTEFACTS", REPO / "runs" / "test-artefacts"))
    artefacts.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(web_server)
            page.wait_for_selector("textarea")

            # A question: the reply grows in at least two streamed states; Stop ends it mid-reply.
            page.fill("textarea", "How do I make a cup of green tea?")
            page.keyboard.press("Enter")
            states = streamed_states(page, 3)
            assert all(later.startswith(earlier.rstrip()) for earlier, later in zip(states, states[1:], strict=False))
            wait_for(lambda: stop_button(page), what="the Stop button").click()
            wait_for(lambda: stop_button(page) is None, what="the Stop button to go")
            stopped = bot_texts(page)[-1]
            time.sleep(1.5)
            assert bot_texts(page)[-1] == stopped, "the reply kept growing after Stop"
            assert len(stopped) < 4000  # far from what 1,500 tokens would have written
            page.screenshot(path=str(artefacts / "web-demo-stopped.png"), full_page=True)

            # Regenerate: a new reply to the same question.
            page.get_by_role("button", name="Retry").last.click()
            streamed_states(page, 2)
            wait_for(lambda: stop_button(page), what="the Stop button").click()
            wait_for(lambda: stop_button(page) is None, what="the Stop button to go")
            regenerated = bot_texts(page)[-1]
            assert regenerated != stopped
            assert user_texts(page) == ["How do I make a cup of green tea?"]

            # A second exchange, then Undo removes it (and only it).
            page.fill("textarea", "And black tea?")
            page.keyboard.press("Enter")
            streamed_states(page, 2)
            wait_for(lambda: stop_button(page), what="the Stop button").click()
            wait_for(lambda: stop_button(page) is None, what="the Stop button to go")
            assert user_texts(page) == ["How do I make a cup of green tea?", "And black tea?"]
            page.get_by_role("button", name="Undo").last.click()
            wait_for(lambda: len(user_texts(page)) == 1, what="Undo to remove the last exchange")
            assert bot_texts(page)[-1] == regenerated

            # A second visitor starts with an empty chat.
            other = browser.new_context().new_page()
            other.goto(web_server)
            other.wait_for_selector("textarea")
            time.sleep(1)
            assert user_texts(other) == [] and bot_texts(other) == []
            assert len(user_texts(page)) == 1

            # ... and their own reply runs to its end (EOS or max new tokens): the README's screenshot.
            other.fill("textarea", "What is a good name for a cat?")
            other.keyboard.press("Enter")
            streamed_states(other, 2)
            wait_for(lambda: stop_button(other) is None, timeout=300, what="the reply to finish")
            assert user_texts(other) == ["What is a good name for a cat?"] and bot_texts(other)[-1].strip()
            assert len(user_texts(page)) == 1
            other.screenshot(path=str(artefacts / "web-demo.png"), full_page=True)
        finally:
            browser.close()
