"""A simulated charger's offline queue: the transaction messages (StartTransaction,
MeterValues, StopTransaction) it could not deliver, replayed in order once connected again.

A transaction started offline has no id from the central system yet: it runs under a
negative placeholder, replaced in the charger and in the queued messages once the replayed
StartTransaction is answered. A message the central system keeps refusing is given up after
``TransactionMessageAttempts``.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["OfflineQueue", "Queued"]


@dataclass(slots=True)
class Queued:
    payload: Any  # a request dataclass of the ocpp library
    placeholder: int | None = None  # a StartTransaction's local id, until the real one is known


class OfflineQueue:
    def __init__(self) -> None:
        self._items: collections.deque[Queued] = collections.deque()
        self._placeholders = itertools.count(-1, -1)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Queued]:
        return iter(self._items)

    def placeholder(self) -> int:
        """A local transaction id, for a transaction whose StartTransaction may be queued."""
        return next(self._placeholders)

    def append(self, payload: Any, placeholder: int | None = None) -> None:
        self._items.append(Queued(payload, placeholder))

    def _first(self) -> Queued:
        item = self._items[0]
        tx = getattr(item.payload, "transaction_id", None)
        if isinstance(tx, int) and tx < 0:
            # its StartTransaction was given up on: the central system will adopt this one
            item.payload.transaction_id = -tx
        return item

    def _done(self, answer: Any, learn: Callable[[int, int], None]) -> None:
        """The first message is delivered (``answer``: its answer; None: given up)."""
        item = self._items.popleft()
        if item.placeholder is None or answer is None:
            return
        real = int(answer.transaction_id)
        for queued in self._items:
            if getattr(queued.payload, "transaction_id", None) == item.placeholder:
                queued.payload.transaction_id = real
        learn(item.placeholder, real)

    async def replay(
        self,
        send: Callable[[Any], Awaitable[Any]],
        *,
        attempts: int,
        retry: Callable[[], Awaitable[None]],
        learn: Callable[[int, int], None],
        give_up: Callable[[Queued, Exception], None],
        failures: tuple[type[Exception], ...],
    ) -> None:
        """Deliver the queue through ``send``; ``failures`` count as an attempt (others, such
        as a closed connection, end the replay with the message still queued)."""
        tried = 0
        while self._items:
            item = self._first()
            try:
                answer = await send(item.payload)
            except failures as e:
                tried += 1
                if tried < attempts:
                    await retry()
                    continue
                give_up(item, e)
                answer = None
            tried = 0
            self._done(answer, learn)
