"""A child process's output, read in a thread: every line kept, and lines waited for."""

from __future__ import annotations

import queue
import threading
from typing import IO


class Followed:
    """Reads ``stream`` to its end in a daemon thread."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._fresh: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._reader.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)
            self._fresh.put(line)

    def wait_for(self, prefix: str, timeout_s: float) -> str:
        """The rest of the next line that starts with ``prefix`` (blanks stripped)."""
        while True:
            line = self._fresh.get(timeout=timeout_s).strip()
            if line.startswith(prefix):
                return line.removeprefix(prefix).strip()

    def read_to_end(self, timeout_s: float) -> list[str]:
        """Every line, once the stream has ended (the child exited and closed it)."""
        self._reader.join(timeout_s)
        return self.lines
