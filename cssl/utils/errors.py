"""Errors whose message is the whole story: bad input, bad settings, a full disk.

A :class:`UserError` names the file, key or resource at fault and what to do about it.
Commands (``cssl ...``, and ``python -m pretrain`` or ``python -m finetune``) print its
message alone and exit with status 2; any other exception is a defect and keeps its
traceback. ``--debug`` (or ``CSSL_DEBUG=1``) shows the traceback of user errors too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable


class UserError(Exception):
    """An error caused by input, settings or the machine; the message says what to do."""


class UsageError(UserError, ValueError):
    """An argument or setting a command cannot use (a bad pattern, shares that do not add up)."""


class DataError(UserError, ValueError):
    """Data that cannot be used as a whole: nothing left to train on or to score."""


class OutputError(UserError, OSError):
    """An output that cannot be written: no space left, no permission, read-only folder."""


def run_reporting(prog: str, body: Callable[[], int], debug: bool = False) -> int:
    """Runs ``body``; a user error is printed as one message (exit 2) unless ``debug`` (the command's
    ``--debug``) or ``CSSL_DEBUG`` (set, not 0) asks for the traceback."""
    if debug or os.environ.get("CSSL_DEBUG", "") not in ("", "0"):
        return body()
    try:
        return body()
    except (UserError, FileNotFoundError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
