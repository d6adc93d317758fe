"""Charge HQ's push API, served: the routes a pushing script sends its site's meters to.

    POST /api/public/push-solar-data   {"apiKey": "…", "siteMeters": {…}} (or "error": "…")
    POST /api/site-meters              the legacy route: the key travels as "siteId"

Both look the key up in the store's push keys. Charge HQ documents no answers (its clients
treat any non-2xx as a failure); these are surplus's:

    200  {"success": true, "message": "OK", "warnings": [flag, ...]}
    400  {"success": false, "error": "...", "field": "siteMeters.battery_soc"}  not JSON, or
         not a payload; "field" is null for the body as a whole
    401  {"success": false, "error": "...", "field": "apiKey"}  the key is missing, unknown
         or revoked: 401 for all three, since no identity was established (403 would say
         one was, and was not allowed)
    413  {"success": false, "error": "...", "field": null}  a body above 64 KiB
    429  {"success": false, "error": "...", "retry_after_s": n} and ``Retry-After: n``: the
         source pushed sooner than ``min_interval_s`` after its last accepted push

The checks run in that order: JSON, key, payload, interval. Only a 200 stores the push (with
its flags, ``models.Flag``) and then passes it to the sink on the event loop: the source's
name, its reading (None for an error push) and the flags. The key is never logged, stored or
echoed; log lines name the source, or the client's address when the key is not known.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from surplus.integrations.push.models import PayloadError, PushedReading, parse_payload, to_reading
from surplus.store.push import PushKeys, PushMessages

__all__ = ["LEGACY_PATH", "MAX_BODY_BYTES", "PUSH_PATH", "Sink", "push_routes"]

log = logging.getLogger(__name__)

PUSH_PATH = "/api/public/push-solar-data"
LEGACY_PATH = "/api/site-meters"
MAX_BODY_BYTES = 64 * 1024

Sink = Callable[[str, PushedReading | None, frozenset[str]], None]


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: dict[str, object]
    headers: dict[str, str] = field(default_factory=dict)
    delivery: tuple[str, PushedReading | None, frozenset[str]] | None = None


def _refused(status: int, error: str, field: str | None) -> _Answer:
    return _Answer(status, {"success": False, "error": error, "field": field})


class _Receiver:
    """The blocking part of a push (the store), run off the event loop."""

    def __init__(
        self,
        keys: PushKeys,
        messages: PushMessages,
        now: Callable[[], datetime],
        min_interval_s: float,
    ) -> None:
        self._keys = keys
        self._messages = messages
        self._now = now
        self._min_interval_s = min_interval_s
        # two pushes of a source at once must not both pass the interval check
        self._lock = threading.Lock()

    def handle(self, body: bytes, key_field: str) -> _Answer:
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            return _refused(400, "the body is not JSON", None)
        if not isinstance(data, dict):
            return _refused(400, "the body must be a JSON object", None)
        key = data.get(key_field)
        if not isinstance(key, str) or not key:
            return _refused(401, f"missing {key_field}", key_field)
        source = self._keys.source_of(key)
        if source is None:
            return _refused(401, f"unknown or revoked {key_field}", key_field)
        try:
            payload = parse_payload(data)
        except PayloadError as err:
            return _refused(400, err.message, err.field)
        with self._lock:
            received_at = self._now()
            last = self._messages.recent(source, 1)
            if last:
                elapsed_s = (received_at - last[0].received_at).total_seconds()
                # a clock stepped back gives a negative gap, which is no reason to refuse
                if 0.0 <= elapsed_s < self._min_interval_s:
                    wait_s = max(1, math.ceil(self._min_interval_s - elapsed_s))
                    return _Answer(
                        429,
                        {
                            "success": False,
                            "error": f"too soon: at most one push every {self._min_interval_s:g} s",
                            "retry_after_s": wait_s,
                        },
                        {"Retry-After": str(wait_s)},
                    )
            reading, flags = to_reading(payload, received_at)
            self._messages.append(
                source,
                received_at,
                tsms=payload.tsms,
                payload=payload.redacted(),
                flags=flags,
                status=200,
            )
        return _Answer(
            200,
            {"success": True, "message": "OK", "warnings": sorted(flags)},
            delivery=(source, reading, flags),
        )


async def _body(request: Request) -> bytes | None:
    """The request's body; None once it grows beyond ``MAX_BODY_BYTES``."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def push_routes(
    keys: PushKeys,
    messages: PushMessages,
    sink: Sink,
    now: Callable[[], datetime],
    *,
    min_interval_s: float = 30.0,
) -> list[Route]:
    """The push API's two routes; ``now`` stamps each push (timezone-aware)."""
    receiver = _Receiver(keys, messages, now, min_interval_s)

    def endpoint(key_field: str) -> Callable[[Request], Awaitable[Response]]:
        async def receive(request: Request) -> Response:
            body = await _body(request)
            if body is None:
                answer = _refused(413, f"the body is larger than {MAX_BODY_BYTES} bytes", None)
            else:
                answer = await run_in_threadpool(receiver.handle, body, key_field)
            if answer.delivery is not None:
                source, reading, flags = answer.delivery
                log.debug("push from %s accepted; warnings: %s", source, sorted(flags))
                sink(source, reading, flags)
            else:
                client = request.client.host if request.client else "unknown"
                log.log(
                    logging.WARNING if answer.status == 401 else logging.INFO,
                    "push from %s refused (%d): %s",
                    client,
                    answer.status,
                    answer.body["error"],
                )
            return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)

        return receive

    return [
        Route(PUSH_PATH, endpoint("apiKey"), methods=["POST"]),
        Route(LEGACY_PATH, endpoint("siteId"), methods=["POST"]),
    ]
