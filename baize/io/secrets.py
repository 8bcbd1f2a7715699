"""Secrets (API keys, HF tokens) never land in an artifact or a log: the values this process may use, and one
redaction applied to every error message and log line baize writes (an endpoint may echo a key back)."""

from __future__ import annotations

import logging
import os
import re

# Token shapes of the Hub and of OpenAI-compatible teachers.
SECRET_REGEX = re.compile(r"\bhf_[A-Za-z0-9]{30,}\b|\bsk-(?:proj-)?[A-Za-z0-9_\-]{32,}\b")
# Environment variables that hold keys: the defaults, plus every `*api_key_env` a command was told to read.
KEY_VARIABLES = {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY"}
REDACTED = "***"


def register_key_variable(name: str) -> None:
    """An environment variable a command reads a key from (collect's api_key_env, the judge's, ...)."""
    KEY_VARIABLES.add(name)


def known_secret_values() -> list[str]:
    """The keys and tokens this process could use (the HF token of `hf auth login` too)."""
    values = {os.environ.get(name) for name in KEY_VARIABLES}
    try:
        from huggingface_hub import get_token

        values.add(get_token())
    except Exception:  # no huggingface_hub configuration at all: nothing more to hide
        pass
    return sorted((v for v in values if v and len(v) >= 8), key=len, reverse=True)


def redact(text: str) -> str:
    for value in known_secret_values():
        text = text.replace(value, REDACTED)
    return SECRET_REGEX.sub(REDACTED, text)


class RedactingFilter(logging.Filter):
    """On a handler: the formatted message and any exception text go out redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def redact_logs() -> None:
    """Every handler of the root logger redacts (call after logging.basicConfig)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
