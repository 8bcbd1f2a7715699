"""The one place that turns chat messages into prompt text and back: the Baize template, the prompt formats,
system prompts, turn tags and stop handling. Used by train (the template), chat, SDF sampling, eval answering,
the web demo and merge, so that inference sees exactly the text the adapter was trained on.

Prompt formats:
- `baize`: the chat template saved with the adapter (baize/templates/baize.jinja): BOS, system text,
  `\\n[|Human|]...\\n[|AI|]...` turns, EOS after every AI turn. Generation stops at EOS (or a turn tag).
- `original`: how the released project-baize adapters were served by the Baize demo: the system text, the
  primer `\\n[|Human|]Hello!\\n[|AI|]Hi!`, then the turns; no EOS, generation stops at `[|Human|]` / `[|AI|]`.
  Chosen automatically when the folder has no chat template (the original adapter repos have none).
- `native`: the tokenizer's own chat template (for models that are not Baize models, e.g. to compare).

System prompt: by default the one the adapter was trained with (`baize train` records it in
`baize_prompt.json` beside the adapter); the original adapters keep the demo's guardrail prompt.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from baize import BAIZE_TEMPLATE

logger = logging.getLogger(__name__)

TURN_TAGS = ["[|Human|]", "[|AI|]"]
# A small model trained on this format sometimes opens a turn of its own invention ("[|Machine|]", "[|L|]") on a
# new line: the start of any such tag ends the answer too.
TURN_TAG_START = "\n[|"
PROMPT_FORMATS = ("auto", "baize", "original", "native")

# Our wording of the guardrail the Baize demo put in front of every conversation (its system text, in our words).
GUARDRAIL_SYSTEM_PROMPT = (
    "This is a conversation between a human and Baize, an open-source AI assistant built by researchers at UCSD "
    "and Sun Yat-Sen University. The two take turns: the human's messages begin with [|Human|] and Baize's replies "
    "begin with [|AI|]. Baize answers as thoroughly and in as much detail as it can, formatted in Markdown. Baize "
    "always declines to engage with topics, questions and instructions that are unethical, controversial or "
    "sensitive."
)
# The original demo opened every conversation with this exchange after the system text.
ORIGINAL_PRIMER = [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Hi!"}]
# A merged original adapter ships the Baize template with the original format as its default.
ORIGINAL_TEMPLATE_HEADER = '{%- set baize_format = baize_format | default("original") -%}\n'

DEFAULT_MAX_HISTORY_TOKENS = 2048


def baize_template() -> str:
    return Path(BAIZE_TEMPLATE).read_text(encoding="utf-8")


PROMPT_RECORD_FILE = "baize_prompt.json"


def most_common_system_prompt(conversations) -> str | None:
    """The system text most training conversations start with (None: most have none, so the template's header)."""
    counts = Counter(
        messages[0]["content"] if messages and messages[0]["role"] == "system" else None for messages in conversations
    )
    return counts.most_common(1)[0][0] if counts else None


def record_system_prompt(folder: str | Path, system: str | None) -> None:
    """Written beside the adapter at train time, read back by every inference path (and pushed with it)."""
    path = Path(folder) / PROMPT_RECORD_FILE
    path.write_text(json.dumps({"system": system}, indent=2) + "\n", encoding="utf-8")


def trained_system_prompt(folder: str | Path, prompt_format: str) -> str | None:
    """The system text to use by default: what the adapter was trained with; the original adapters' is the demo's
    guardrail; a Baize folder without a record (an older adapter) gets the template's plain header (None)."""
    path = Path(folder) / PROMPT_RECORD_FILE
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8")).get("system")
    return GUARDRAIL_SYSTEM_PROMPT if prompt_format == "original" else None


@dataclass
class Prompt:
    text: str
    input_ids: list[int]
    turns_kept: int  # earlier exchanges included (newest first)
    turns_total: int

    @property
    def num_tokens(self) -> int:
        return len(self.input_ids)


@dataclass
class PromptBuilder:
    """Renders conversations for one tokenizer and prompt format, and keeps the history within a token budget."""

    tokenizer: object
    prompt_format: str  # baize | original | native
    system: str | None = None  # None: the template's header (the Baize data's)
    max_history_tokens: int = DEFAULT_MAX_HISTORY_TOKENS
    chat_template: str | None = None  # the template used; defaults to the tokenizer's (or baize.jinja)

    def __post_init__(self):
        if self.prompt_format not in ("baize", "original", "native"):
            raise ValueError(f"prompt format must be baize, original or native, not {self.prompt_format!r}")
        if self.chat_template is None:
            own = getattr(self.tokenizer, "chat_template", None)
            if self.prompt_format == "native":
                if not own:
                    raise ValueError("--prompt-format native needs a tokenizer with a chat template")
                self.chat_template = own
            else:
                self.chat_template = own if own and "[|AI|]" in own else baize_template()

    @property
    def stop_strings(self) -> list[str]:
        return format_stop_strings(self.prompt_format)

    def messages(self, history: list[tuple[str, str]], question: str) -> list[dict]:
        return self.conversation(_turns(history, question))

    def conversation(self, messages: list[dict]) -> list[dict]:
        """Chat messages (an optional system message, then user/assistant turns) as this format sends them:
        the builder's system text when they have none, and in the original format the demo's primer."""
        has_system = bool(messages) and messages[0]["role"] == "system"
        head = [messages[0]] if has_system else [{"role": "system", "content": self.system}] if self.system else []
        if self.prompt_format == "original":
            if not head:  # the template would put its default header first; keep it before the primer
                head = [{"role": "system", "content": "The conversation between human and AI assistant."}]
            head = [*head, *ORIGINAL_PRIMER]
        return head + list(messages[1 if has_system else 0 :])

    def render(self, history: list[tuple[str, str]], question: str) -> str:
        return self.render_messages(_turns(history, question))

    def render_messages(self, messages: list[dict]) -> str:
        """The prompt text for chat messages ending with a user turn (see `conversation`)."""
        kwargs = {"baize_format": "original"} if self.prompt_format == "original" else {}
        return self.tokenizer.apply_chat_template(
            self.conversation(messages),
            chat_template=self.chat_template,
            add_generation_prompt=True,
            tokenize=False,
            **kwargs,
        )

    def encode_messages(self, messages: list[dict]) -> list[int]:
        """Token ids of the prompt for chat messages, exactly as `baize chat` would send them."""
        return self.encode(self.render_messages(messages))

    def encode(self, text: str) -> list[int]:
        # The Baize and native templates write BOS themselves. In the original format, the demo tokenised the
        # prompt text with the tokenizer's defaults (LLaMA adds BOS), so do the same.
        add_special = self.prompt_format == "original"
        return self.tokenizer(text, add_special_tokens=add_special)["input_ids"]

    def build(self, history: list[tuple[str, str]], question: str) -> Prompt:
        """The prompt with the newest earlier turns that fit in `max_history_tokens` (system + question included)."""
        text = self.render([], question)
        ids = self.encode(text)
        kept = 0
        if len(ids) > self.max_history_tokens:
            logger.warning(
                "system prompt + question take %d tokens, more than --max-history-tokens %d: no history included",
                len(ids),
                self.max_history_tokens,
            )
        else:
            for k in range(1, len(history) + 1):
                candidate_text = self.render(history[-k:], question)
                candidate_ids = self.encode(candidate_text)
                if len(candidate_ids) > self.max_history_tokens:
                    break
                text, ids, kept = candidate_text, candidate_ids, k
        return Prompt(text=text, input_ids=ids, turns_kept=kept, turns_total=len(history))


def _turns(history: list[tuple[str, str]], question: str) -> list[dict]:
    messages = []
    for user, assistant in history:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return [*messages, {"role": "user", "content": question}]


def cut_at_stop(text: str, stop_strings: list[str]) -> tuple[str, bool]:
    """Text before the first stop string, and whether one was found."""
    cuts = [text.find(s) for s in stop_strings if s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


def format_stop_strings(prompt_format: str) -> list[str]:
    """Where a reply in this prompt format ends besides EOS: the turn tags (native templates: EOS only)."""
    return [] if prompt_format == "native" else [*TURN_TAGS, TURN_TAG_START]


def reply_text(text: str, stop_strings: list[str]) -> str:
    """A finished reply as it is kept: cut before any stop string and any trailing start of one, stripped."""
    return text[: printable_prefix(text, stop_strings)].strip()


def printable_prefix(text: str, stop_strings: list[str]) -> int:
    """How much of streamed `text` can be shown: up to a stop string, minus any tail that may start one."""
    cut, found = cut_at_stop(text, stop_strings)
    if found:
        return len(cut)
    hold = 0
    for stop in stop_strings:
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:n]):
                hold = max(hold, n)
                break
    return len(text) - hold


def detect_prompt_format(folder: Path) -> str:
    """baize when the folder's tokenizer carries the Baize template; original when it has no chat template
    (the original project-baize adapters and merged models have none); native for any other template."""
    template = folder_chat_template(folder)
    if template is None:
        return "original"
    if "[|AI|]" in template:
        return "original" if template.startswith(ORIGINAL_TEMPLATE_HEADER) else "baize"
    return "native"


def folder_chat_template(folder: Path) -> str | None:
    """The chat template saved in a folder (chat_template.jinja, or inside tokenizer_config.json)."""
    if (folder / "chat_template.jinja").exists():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    config = folder / "tokenizer_config.json"
    if config.exists():
        template = json.loads(config.read_text()).get("chat_template")
        if isinstance(template, list):  # named templates
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        return template or None
    return None


def has_tokenizer(folder: Path) -> bool:
    return any((folder / name).exists() for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json"))
