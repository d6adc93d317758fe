"""The store's upkeep while the service runs: retention pruning, at start and then hourly.

``prune_periodically`` deletes what each level of the series keeps no longer
(``Series.prune``) and the push API's messages older than ``PUSH_MESSAGES_KEPT``, off the
event loop, and logs how many rows went. A failed prune (a full
or locked disk) is logged and tried again at the next interval; it never stops the service.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from surplus.domain.errors import StoreError
from surplus.store import Store

__all__ = ["PRUNE_INTERVAL_S", "prune_periodically"]

log = logging.getLogger(__name__)

PRUNE_INTERVAL_S = 3600.0
PUSH_MESSAGES_KEPT = timedelta(days=30)


def prune(store: Store, at: datetime) -> int:
    """Delete what the store keeps no longer at ``at``; how many rows went."""
    return store.series.prune(at) + store.push_messages.prune(at - PUSH_MESSAGES_KEPT)


async def prune_periodically(
    store: Store, now: Callable[[], datetime], interval_s: float = PRUNE_INTERVAL_S
) -> None:
    """Prune ``store`` at ``now()`` at once and then every ``interval_s``, until cancelled."""
    if interval_s <= 0:
        raise ValueError(f"interval_s must be positive, not {interval_s}")
    while True:
        try:
            deleted = await asyncio.to_thread(prune, store, now())
        except StoreError as err:
            log.warning("retention pruning failed: %s; trying again in %g s", err, interval_s)
        else:
            log.info("retention pruning deleted %d rows from %s", deleted, store.path)
        await asyncio.sleep(interval_s)
