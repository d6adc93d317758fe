"""Redaction: replace secret values with ``********`` in any text, and in every log record.

``SecretFilter`` belongs on each *handler* (``handler.addFilter``): a filter on a logger does
not see records propagated from its child loggers.
"""

from __future__ import annotations

import json
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
        """Redact these values too (a token refreshed at run time); a secret that is a JSON
        document (a vault entry holding several tokens) also has each of its strings
        redacted on its own."""
        found = {s for s in secrets if s} | {leaf for s in secrets for leaf in _json_leaves(s)}
        # Copy on write: a filter running in another thread keeps its snapshot.
        self._secrets = self._secrets | found

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


MIN_LEAF_CHARS = 8  # shorter strings in a JSON secret (a token type, a scope) are not secret


def _json_leaves(text: str) -> set[str]:
    """The long strings inside ``text`` when it is a JSON object or array, else none."""
    if not text.startswith(("{", "[")):
        return set()
    try:
        document = json.loads(text)
    except ValueError:
        return set()
    leaves: set[str] = set()
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and len(item) >= MIN_LEAF_CHARS:
            leaves.add(item)
    return leaves
