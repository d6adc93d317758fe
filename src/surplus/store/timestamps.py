"""The store's one time format: integer milliseconds since the Unix epoch, UTC.

Every datetime crossing the store's API must be timezone-aware; a naive one is refused,
since guessing its zone would silently shift history by hours.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_ms(at: datetime, name: str = "at") -> int:
    """``at`` as epoch milliseconds (floored); ``name`` is the argument named in the error."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(
            f"{name} must be a timezone-aware UTC datetime, got naive {at.isoformat()}"
        )
    return (at - EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    """Epoch milliseconds as a UTC datetime."""
    return EPOCH + ms * _MS
