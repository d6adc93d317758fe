"""A typed face on the mobilityhouse ``ocpp`` library, which ships no type information.

Everything of the library that surplus uses passes through here: the OCPP 1.6 ``ChargePoint``
base class (one per connection, on both sides), the ``on``/``after`` handler decorators, the
request and answer dataclasses, the message framing and the JSON-schema validators.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ocpp import messages as _messages  # type: ignore[import-untyped]
from ocpp import routing as _routing
from ocpp.exceptions import OCPPError  # type: ignore[import-untyped]
from ocpp.v16 import call, call_result  # type: ignore[import-untyped]

__all__ = [
    "ChargePoint",
    "OCPPError",
    "after",
    "call",
    "call_result",
    "on",
    "schema_problem",
]

_F = TypeVar("_F", bound=Callable[..., Any])

if TYPE_CHECKING:

    class ChargePoint:
        """The library's OCPP 1.6 ``ChargePoint``, as far as surplus uses it."""

        id: str
        route_map: dict[str, dict[str, Any]]
        _connection: Any

        def __init__(
            self,
            id: str,
            connection: Any,
            response_timeout: float = 30,
            logger: logging.Logger = ...,
        ) -> None: ...

        async def start(self) -> None: ...

        async def route_message(self, raw_msg: str) -> None: ...

        async def call(
            self,
            payload: Any,
            suppress: bool = True,
            unique_id: str | None = None,
            skip_schema_validation: bool = False,
        ) -> Any: ...

else:
    from ocpp.v16 import ChargePoint


def on(action: str, *, skip_schema_validation: bool = False) -> Callable[[_F], _F]:
    """Mark a method as the handler of the CALL ``action``."""
    return cast(
        Callable[[_F], _F], _routing.on(action, skip_schema_validation=skip_schema_validation)
    )


def after(action: str) -> Callable[[_F], _F]:
    """Mark a method to run once the answer to ``action`` has been sent."""
    return cast(Callable[[_F], _F], _routing.after(action))


def schema_problem(action: str, payload: object) -> str | None:
    """What is wrong with the CALL ``action`` a charger sent, by the OCPP 1.6 JSON schema, or
    None when it is valid or the action unknown. Only for charger-to-CS actions: the library
    caches the validators of the others with another float parser."""
    try:
        validator = _messages.get_validator(_messages.MessageType.Call, action, "1.6")
    except OSError:
        return None
    error = next(iter(validator.iter_errors(payload)), None)
    return None if error is None else str(error.message)
