"""``Closing``: the ``async with`` of a device client, which closes it on the way out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Self

__all__ = ["Closing"]


class Closing(ABC):
    """``async with client:`` gives the client and ``aclose()``s it at the end."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @abstractmethod
    async def aclose(self) -> None:
        """Release what the client holds (connections, tasks)."""
