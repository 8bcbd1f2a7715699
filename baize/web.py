"""`baize web`: the Baize chat demo in the browser (Gradio), for a local model or an OpenAI-compatible endpoint.

    baize web runs/baize-smol/sft                          # an adapter folder written by `baize train`
    baize web me/baize-smol                                 # an adapter repo on the Hub
    baize web project-baize/baize-lora-7B --load_in_8bit    # an original Baize adapter
    baize web --endpoint http://127.0.0.1:8000/v1 --model runs/baize-smol/merged   # `vllm serve` / `transformers serve`

The page is gradio's ChatInterface: replies stream in, Stop ends one, and the chat's own buttons regenerate
(retry), undo the last exchange and clear. Each browser session keeps its own history; requests queue as
gradio queues them (one generation at a time on a local model, `--concurrency` at once on an endpoint).
Prompts come from baize.prompts and every reply from the one sampler (baize.llm.sampling), as SDF and eval answer.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from baize.hub.ids import hub_model_id
from baize.io.arguments import StageParser
from baize.io.errors import UsageError, configure_logging, run_command
from baize.llm.endpoint import Endpoint
from baize.llm.generation import DEFAULT_MAX_NEW_TOKENS, DEFAULT_TEMPERATURE, DEFAULT_TOP_P, SamplingSettings
from baize.llm.sampling import EndpointSampler, LocalSampler
from baize.modeling.loading import add_chat_model_arguments, chat_model_from_args, resolve_model_name
from baize.prompts import (
    DEFAULT_MAX_HISTORY_TOKENS,
    GUARDRAIL_SYSTEM_PROMPT,
    format_stop_strings,
    printable_prefix,
    reply_text,
    trained_system_prompt,
)

logger = logging.getLogger(__name__)


@dataclass
class ReplySettings(SamplingSettings):
    """What the page's controls set for one reply (the original demo's controls, the paper's defaults): the
    sampling settings, plus the system text, the guardrail and the history budget."""

    system: str | None = None
    guardrail: bool = False
    max_history_tokens: int = DEFAULT_MAX_HISTORY_TOKENS

    @property
    def system_prompt(self) -> str | None:
        return GUARDRAIL_SYSTEM_PROMPT if self.guardrail else (self.system or None)


def message_text(content) -> str:
    """A gradio chat message's text (a string, or a list of content parts in gradio 6)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return content.get("text") or ""
    if isinstance(content, list | tuple):
        return "".join(message_text(part) for part in content)
    return ""


def exchanges(history: list[dict]) -> list[tuple[str, str]]:
    """gradio's message list as (question, answer) pairs; an unanswered question (a stopped reply) is dropped."""
    pairs, question = [], None
    for message in history:
        text = message_text(message.get("content"))
        if message.get("role") == "user":
            question = text
        elif message.get("role") == "assistant" and question is not None:
            pairs.append((question, text))
            question = None
    return pairs


class SamplerBackend:
    """A reply streamed from the backend's sampler (baize.llm.sampling: a local model or an endpoint, one shape)."""

    sampler: LocalSampler | EndpointSampler

    def reply(self, history: list[tuple[str, str]], question: str, settings: ReplySettings):
        return self.sampler.stream(
            history, question, settings, system=settings.system_prompt, max_history_tokens=settings.max_history_tokens
        )


class LocalBackend(SamplerBackend):
    """A model loaded in this process."""

    concurrency = 1  # one generate() at a time on the one model; other users wait in gradio's queue

    def __init__(self, chat):
        self.chat = chat
        self.sampler = LocalSampler(chat, chat.prompt_builder())
        self.lock = self.sampler.lock  # held while a reply is being generated
        self.name = str(chat.source)
        self.trained_system = chat.system_prompt
        self.stops = format_stop_strings(chat.prompt_format)
        base = (hub_model_id(chat.base) or Path(chat.base).name) if chat.base else None
        self.description = f"{'adapter on ' + base if base else 'model'}, prompt format {chat.prompt_format}"


class EndpointBackend(SamplerBackend):
    """An OpenAI-compatible server (vLLM, `transformers serve`, Ollama); the server applies the model's chat
    template (a merged Baize model carries the Baize one)."""

    def __init__(self, base_url: str, model: str, api_key_env: str, concurrency: int, prompt_format: str):
        self.stops = format_stop_strings(prompt_format)
        self.sampler = EndpointSampler(
            [Endpoint(base_url, api_key_env)], resolve_model_name(model), stop_strings=self.stops
        )
        self.model = self.sampler.model
        self.name = f"{model} at {base_url}"
        self.concurrency = concurrency
        folder = Path(self.model)
        self.trained_system = trained_system_prompt(folder, "baize") if folder.is_dir() else None
        self.description = "OpenAI-compatible endpoint"


async def stream_answer(backend, history: list[dict], message: str, settings: ReplySettings):
    """The growing answer, as ChatInterface shows it: never a turn tag nor the start of one, no leading space."""
    text = ""
    async for chunk in backend.reply(exchanges(history), message, settings):
        text += chunk
        shown = text[: printable_prefix(text, backend.stops)].lstrip()
        if shown:
            yield shown
    final = reply_text(text, backend.stops)
    yield final or "(no answer: the model ended its turn at once; Regenerate to sample again)"


def build_app(backend, *, title: str | None = None, defaults: ReplySettings | None = None):
    """The Gradio Blocks of the demo for `backend` (LocalBackend or EndpointBackend)."""
    import gradio as gr

    defaults = defaults or ReplySettings(system=backend.trained_system)

    async def respond(message, history, system, guardrail, top_p, temperature, max_new_tokens, max_history_tokens):
        settings = ReplySettings(int(max_new_tokens), temperature, top_p, system=system, guardrail=guardrail,
                                 max_history_tokens=max_history_tokens)  # fmt: skip
        async for answer in stream_answer(backend, history, message, settings):
            yield answer

    controls = [
        gr.Textbox(
            value=defaults.system or "",
            label="System prompt (default: the one the model was trained with; empty: the template's header)",
            lines=2,
        ),
        gr.Checkbox(
            value=defaults.guardrail, label="Guardrail: the Baize demo's system prompt (declines sensitive topics)"
        ),
        gr.Slider(0.0, 1.0, value=defaults.top_p, step=0.05, label="Top-p"),
        gr.Slider(0.0, 2.0, value=defaults.temperature, step=0.1, label="Temperature (0: greedy)"),
        gr.Slider(1, 2048, value=defaults.max_new_tokens, step=1, label="Max new tokens"),
        gr.Slider(128, 4096, value=defaults.max_history_tokens, step=64, label="Max history tokens"),
    ]
    return gr.ChatInterface(
        respond,
        chatbot=gr.Chatbot(label="Baize", height=480, buttons=["copy"], render_markdown=True),
        additional_inputs=controls,
        additional_inputs_accordion=gr.Accordion("Settings", open=False),
        title=title or f"Baize: {backend.name}",
        description=f"{backend.description}. Replies stream in; Stop ends one. The chat's buttons regenerate, "
        "undo and clear. Each visitor has their own history.",
        concurrency_limit=backend.concurrency,
        fill_height=True,
    )


# --------------------------------------------------------------------------- the CLI

DESCRIPTION = """\
The Baize chat demo in the browser: a Gradio page with streamed replies, Stop, Regenerate, Undo and Clear, and
the original demo's controls (top-p, temperature, max new tokens, max history tokens; the paper's defaults).

MODEL is what `baize chat` takes: an adapter folder from `baize train`, an adapter repo on the Hub (yours or an
original project-baize one), or a merged model. With --endpoint, replies come from an OpenAI-compatible server
instead (`vllm serve MERGED`, `transformers serve`), and --model names the model there.

The system prompt defaults to the one the adapter was trained with; the page has a guardrail toggle.
Open the printed URL in a browser; Ctrl-C stops the server.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = StageParser("baize web", DESCRIPTION)
    parser.add_argument("adapter_or_model", metavar="MODEL", nargs="?", help="local folder or Hub repo id")
    add_chat_model_arguments(parser)  # as `baize chat`
    remote = parser.add_argument_group("endpoint")
    remote.add_argument("--endpoint", help="base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    remote.add_argument("--model", help="the model name at --endpoint (a served folder's path for transformers serve)")
    remote.add_argument(
        "--api_key_env", default="OPENAI_API_KEY", help="variable holding the key (default: %(default)s)"
    )
    remote.add_argument(
        "--concurrency", type=int, default=8, help="replies generated at once at the endpoint (default: %(default)s)"
    )
    page = parser.add_argument_group("page")
    page.add_argument(
        "--system", help="default system prompt in the page (default: the one the model was trained with)"
    )
    page.add_argument("--guardrail", action="store_true", help="start with the guardrail toggle on")
    page.add_argument("--top_p", type=float, default=DEFAULT_TOP_P, help="default: %(default)s")
    page.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE, help="default: %(default)s")
    page.add_argument("--max_new_tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS, help="default: %(default)s")
    page.add_argument(
        "--max_history_tokens", type=int, default=DEFAULT_MAX_HISTORY_TOKENS, help="default: %(default)s"
    )
    page.add_argument("--title", help="page title (default: Baize: MODEL)")
    server = parser.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve the network (default: %(default)s)")
    server.add_argument("--port", type=int, default=7860, help="default: %(default)s")
    server.add_argument("--share", action="store_true", help="a temporary public gradio.live link")
    return parser


def make_backend(args: argparse.Namespace):
    if args.endpoint:
        if not args.model:
            raise UsageError("--endpoint needs --model: the model's name at that server")
        return EndpointBackend(args.endpoint, args.model, args.api_key_env, args.concurrency, args.prompt_format)
    if not args.adapter_or_model:
        raise UsageError("give MODEL (an adapter or model folder or Hub id) or --endpoint URL --model NAME")
    chat = chat_model_from_args(args)
    return LocalBackend(chat)


def cli(argv: list[str] | None = None) -> None:
    run_command("baize web", build_parser, main, argv)


def check_port_free(host: str, port: int) -> None:
    """Before the model is loaded: a port another server holds is one line naming --port, not gradio's traceback."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise UsageError(
                f"cannot serve on {host}:{port} ({error.strerror or error}): another server holds it; pass --port "
                "with a free port, or stop that server"
            ) from None


def main(args: argparse.Namespace) -> None:
    configure_logging(logging.WARNING, timestamps=False)
    check_port_free(args.host, args.port)
    backend = make_backend(args)
    defaults = ReplySettings(
        system=args.system if args.system is not None else backend.trained_system,
        guardrail=args.guardrail,
        top_p=args.top_p,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        max_history_tokens=args.max_history_tokens,
    )
    app = build_app(backend, title=args.title, defaults=defaults)
    app.queue()
    try:
        app.launch(
            server_name=args.host, server_port=args.port, share=args.share, show_error=True, quiet=True,
            prevent_thread_lock=True,
        )  # fmt: skip
    except OSError as error:  # taken between the check and now
        raise UsageError(f"cannot serve on {args.host}:{args.port} ({error}): pass --port with a free port") from None
    print(f"Baize web demo for {backend.name}: http://{args.host}:{args.port} (Ctrl-C stops it)", flush=True)
    app.block_thread()


if __name__ == "__main__":
    cli(sys.argv[1:])
