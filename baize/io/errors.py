"""The user-facing error type and the one place a command turns it into one line on stderr and an exit code.

Library code raises; `one_line_errors` (used by every stage's `cli`) prints `baize STAGE: error: MESSAGE` and
exits 1 (2 for a usage error: a bad key, flag, value, file, or a launch that cannot work). Any other exception is a
bug and keeps its traceback; BAIZE_DEBUG=1 shows the traceback of a BaizeError too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

from baize.io.secrets import redact, redact_logs


class BaizeError(Exception):
    """A problem the user can fix; the message names the file/row, key, URL or seed at fault and what to do."""

    exit_code = 1


class UsageError(BaizeError, ValueError):
    """A bad recipe key, flag, value or input file: exit 2, like argparse."""

    exit_code = 2


class MissingColumn(UsageError, KeyError):
    """A dataset lacks the column a setting names."""

    __str__ = Exception.__str__  # KeyError would quote the message


class HubError(BaizeError, RuntimeError):
    """A Hub operation failed for a reason the user can fix; the message says how."""


class EndpointError(BaizeError, RuntimeError):
    """An endpoint that cannot be used (no API key, unreachable): the message names the URL and what to do."""


def requests_failed(
    who: str, failed: int, total: int, items: str, last_error: str | None, check: str
) -> EndpointError:
    """The one line of a step some of whose requests failed after the client's retries (the judge, a sampler, an
    answering endpoint): what came is kept, so re-running the same command asks only for the rest."""
    return EndpointError(
        f"{who} failed {failed} of {total} {items} ({last_error}): check {check} and that the server is up, then "
        "re-run the same command"
    )


class Rejected(Exception):
    """A collected dialogue that is not kept (not a failure of the run); `reason` is one of collect's drop reasons
    (baize.collect.config.REASONS), counted in its report."""

    def __init__(self, reason: str, detail: str = "", raw: str | None = None):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail, self.raw = reason, detail, raw


class BudgetReached(BaizeError):
    """A call whose reservation would take the spend past `max_cost` / `max_tokens` is not sent; `reason` names the
    budget. Not a failure: the seed waits for a run with a larger budget."""

    def __init__(self, reason: str, message: str | None = None):
        super().__init__(message or f"{reason} reached: this call's reservation does not fit what is left")
        self.reason = reason


class MalformedReply(EndpointError):
    """HTTP 200, but not a usable completion, after the retries: a transient provider fault (the request is retried
    by the next run). `billed`: what the provider may have charged for the unusable answers (a
    baize.llm.endpoint.RoleUsage: their usage where the body had one, else the call's reservation)."""

    def __init__(self, message: str, billed=None, unusable: int = 0):
        super().__init__(message)
        self.billed, self.unusable = billed, unusable


class BatchFailed(EndpointError):
    """A whole batch was rejected (its file did not validate, the model does not exist): no request of it ran."""


class BatchRequestFailed(MalformedReply):
    """One request failed inside its batch (retries included, where its error is transient); `status_code` is the
    HTTP status of its line in the error file, None for a request the batch never reached."""

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


# One rule for a failed request, live or in a batch, by its HTTP status (the openai client retries the transient
# ones by the same rule before a live call gives up):
FATAL_STATUSES = (401, 403, 404, 422)  # every request would fail the same way: stop the run
TRANSIENT_STATUSES = (408, 409, 429)  # and every 5xx: ask again (a batch sends it again, a live run retries)


class BatchWritten(BaizeError):
    """offline: a request file is written and waits for an engine's answers; the run stops here, on purpose."""

    def __init__(self, requests: Path, count: int):
        self.requests, self.count = requests, count
        results = requests.with_name(requests.name.replace("requests-", "results-"))
        super().__init__(
            f"wrote {requests} ({count} requests) for an offline engine: run `vllm run-batch -i {requests} -o "
            f"{results} --model MODEL`, then this command again"
        )


class DataFormatError(UsageError):
    """A row that cannot be turned into a chat. The message names the dataset and its 1-based row."""


class LaunchError(BaizeError, ValueError):
    """A recipe / accelerate-config combination that cannot work; the message says what does."""

    exit_code = 2


class SettingsChanged(BaizeError, ValueError):
    """A re-run in an output folder that holds a run made with other settings."""

    exit_code = 2  # a usage error, like a bad flag


def request_error_kind(error: BaseException) -> str:
    """'fatal' (stop the run), 'rejected' (this request can never succeed: e.g. a 400 for too long a context; drop
    it, do not pay for it again) or 'transient' (retry: connection errors, time-outs, 408/409/429/5xx, malformed
    200s). `error` is an openai.APIError or one of the endpoint errors above."""
    if isinstance(error, BatchFailed):
        return "fatal"
    return status_kind(getattr(error, "status_code", None))  # openai.APIStatusError, BatchRequestFailed


def status_kind(status: int | None) -> str:
    """request_error_kind by HTTP status alone (None: no status, e.g. a connection error or an expired batch)."""
    if status is None or status in TRANSIENT_STATUSES or status >= 500:
        return "transient"
    return "fatal" if status in FATAL_STATUSES else "rejected"


@contextlib.contextmanager
def one_line_errors(prog: str):
    try:
        yield
    except BaizeError as error:
        if os.environ.get("BAIZE_DEBUG") or logging.getLogger().isEnabledFor(logging.DEBUG):
            raise  # BAIZE_DEBUG=1 (or `baize --debug <stage>`): the traceback too

        message = " ".join(redact(str(error)).split())  # one line, whatever a wrapped library's message held
        print(f"{prog}: error: {message}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
    except KeyboardInterrupt:  # what was finished is on disk (every stage appends as it goes)
        if os.environ.get("BAIZE_DEBUG"):
            raise
        print(f"{prog}: interrupted; what was done is kept: re-run the same command to continue", file=sys.stderr)
        raise SystemExit(130) from None


def configure_logging(level: int = logging.INFO, timestamps: bool = True) -> None:
    """A command's logging: one format, no line per HTTP request (progress bars count them), secrets redacted."""

    prefix = "%(asctime)s " if timestamps else ""
    logging.basicConfig(format=prefix + "%(levelname)s %(name)s: %(message)s", level=level)
    for noisy in ("httpx", "httpx2", "httpcore", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    redact_logs()


def run_command(prog: str, build_parser, main, argv: list[str] | None = None) -> None:
    """A stage without a recipe (chat, web, merge, push, pull, convert, data): its flags parsed (argparse's own
    usage errors), then `main(args)` under the one error handler."""
    args = build_parser().parse_args(argv)
    with one_line_errors(prog):
        main(args)
