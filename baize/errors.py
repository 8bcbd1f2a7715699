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


class BaizeError(Exception):
    """A problem the user can fix; the message names the file/row, key, URL or seed at fault and what to do."""

    exit_code = 1


class UsageError(BaizeError, ValueError):
    """A bad recipe key, flag, value or input file: exit 2, like argparse."""

    exit_code = 2


class MissingColumn(UsageError, KeyError):
    """A dataset lacks the column a setting names."""

    __str__ = Exception.__str__  # KeyError would quote the message


@contextlib.contextmanager
def one_line_errors(prog: str):
    try:
        yield
    except BaizeError as error:
        if os.environ.get("BAIZE_DEBUG") or logging.getLogger().isEnabledFor(logging.DEBUG):
            raise  # BAIZE_DEBUG=1 (or `baize --debug <stage>`): the traceback too
        from baize.secrets import redact

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
    from baize.secrets import redact_logs

    prefix = "%(asctime)s " if timestamps else ""
    logging.basicConfig(format=prefix + "%(levelname)s %(name)s: %(message)s", level=level)
    for noisy in ("httpx", "httpx2", "httpcore", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    redact_logs()
