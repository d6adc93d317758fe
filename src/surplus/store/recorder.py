"""The recorder: what the service calls with every polled value.

``record`` only validates and buffers, so a poll never waits on the disk; a background
thread writes the buffer in one transaction every ``flush_interval_s``, and ``close``
writes the rest. A crash or kill -9 loses at most the samples of the last interval.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from surplus.domain.errors import StoreError
from surplus.store.series import Point, Series

_log = logging.getLogger(__name__)


class Recorder:
    """Buffers samples and flushes them in the background; safe to call from any thread.

    While flushing fails (a full disk), samples stay buffered, the oldest dropped beyond
    ``max_pending``, and each failed attempt is logged.
    """

    def __init__(
        self, series: Series, flush_interval_s: float = 1.0, max_pending: int = 100_000
    ) -> None:
        if flush_interval_s <= 0 or max_pending < 1:
            raise ValueError("flush_interval_s and max_pending must be positive")
        self._series = series
        self._interval_s = flush_interval_s
        self._max_pending = max_pending
        self._lock = threading.Lock()  # the buffer, the units, the state below
        self._pending: list[Point] = []
        self._units: dict[tuple[str, str], str] = {}
        self._flushed_until: datetime | None = None
        self._closed = False
        self._flushing = threading.Lock()  # one flush at a time: a failed batch goes back whole
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-recorder", daemon=True)
        self._thread.start()

    @property
    def flushed_until(self) -> datetime | None:
        """The time of the newest sample the latest successful flush wrote."""
        with self._lock:
            return self._flushed_until

    def record(self, device: str, quantity: str, unit: str, at: datetime, value: float) -> None:
        """Buffer one sample; a naive ``at``, a non-finite value or a changed unit is refused."""
        point = Point(device, quantity, unit, at, value)
        key = (device, quantity)
        with self._lock:
            if self._closed:
                raise StoreError(self._series.path, "the recorder is closed")
            # checked here, not at the flush, where one bad sample would sink its batch
            known = self._units.get(key) or self._series.unit(device, quantity) or unit
            if known != unit:
                raise StoreError(
                    self._series.path,
                    f"series {device}/{quantity} is recorded in {known!r}, not {unit!r}",
                )
            self._units[key] = unit
            self._pending.append(point)
            del self._pending[: -self._max_pending]

    def flush(self) -> int:
        """Write the buffer now, in one transaction; returns how many samples were new."""
        with self._flushing:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return 0
            try:
                written = self._series.write(batch)
            except BaseException:
                with self._lock:
                    self._pending[:0] = batch
                    del self._pending[: -self._max_pending]
                raise
            newest = max(point.at for point in batch)
            with self._lock:
                if self._flushed_until is None or newest > self._flushed_until:
                    self._flushed_until = newest
            return written

    def close(self) -> None:
        """Stop the background flushes and write what is buffered."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        self._thread.join()
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.flush()
            except StoreError as e:
                _log.warning("recording is behind: %s; the samples stay buffered", e)
