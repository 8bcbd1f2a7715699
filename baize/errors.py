"""The user-facing error type and the one place a command turns it into one line on stderr and an exit code.

Library code raises; `one_line_errors` (used by every stage's `cli`) prints `baize STAGE: error: MESSAGE` and
exits 1 (2 for a launch/setup problem). Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import logging
import sys


class BaizeError(Exception):
    """A problem the user can fix; the message names the file/row, key, URL or seed at fault and what to do."""

    exit_code = 1


@contextlib.contextmanager
def one_line_errors(prog: str):
    try:
        yield
    except BaizeError as error:
        if "--debug" in sys.argv or logging.getLogger().isEnabledFor(logging.DEBUG):
            raise
        print(f"{prog}: error: {error}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
