"""Redaction: replace secret values with ``********`` in any text, and in every log record.

``SecretFilter`` belongs on each *handler* (``handler.addFilter``): a filter on a logger does
not see records propagated from its child loggers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

MASK = "********"


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of any non-empty secret replaced by ``MASK``."""
    values = sorted({s for s in secrets if s}, key=len, reverse=True)
    if not values:
        return text
    # One pass, longest alternative first: a secret inside a longer one is never left half
    # masked, and a secret made of ``*`` cannot match inside a mask already written.
    return re.sub("|".join(map(re.escape, values)), MASK, text)


class SecretFilter(logging.Filter):
    """Redacts known secret values from a record's message, arguments and exception text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = frozenset(s for s in secrets if s)

    def add(self, *secrets: str) -> None:
        """Redact these values too (a token refreshed at run time)."""
        # Copy on write: a filter running in another thread keeps its snapshot.
        self._secrets = self._secrets | {s for s in secrets if s}

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self._secrets
        if not secrets:
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            # logging would print the raw arguments to stderr when formatting fails later
            message = f"{record.msg} (unformattable log arguments dropped)"
        record.msg = redact(message, secrets)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, secrets)
        # The formatter prints ``exc_text`` as is; the exception object itself could be
        # formatted again, unredacted, by any handler that looks at it.
        record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info, secrets)
        return True
