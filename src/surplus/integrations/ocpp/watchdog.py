"""Whether a charge point is healthy: ``ok``, ``stale`` or ``refused``.

A charger is stale when it has been silent longer than it promised (its heartbeat interval,
with slack), when it is disconnected, or when a transaction runs and its meter values have
stopped; refused when its latest attempt to connect was turned away.
"""

from __future__ import annotations

from datetime import datetime

from surplus.integrations.ocpp.meter import parse_number
from surplus.integrations.ocpp.options import ChargerOptions
from surplus.integrations.ocpp.state import ChargePointState, Health

__all__ = ["assess"]

DEFAULT_SAMPLE_INTERVAL_S = 60.0


def _seconds(text: str | None, default: float) -> float:
    number = parse_number(text)
    return number[0] if number is not None and number[0] > 0 else default


def assess(state: ChargePointState, options: ChargerOptions, now: datetime) -> tuple[Health, str]:
    """The health of ``state`` at ``now``, with the reason."""
    if not state.connected:
        if state.refused_at is not None and (
            state.connected_at is None or state.refused_at >= state.connected_at
        ):
            return Health.REFUSED, state.refused_reason or "refused"
        if state.connected_at is None:
            return Health.STALE, "never connected"
        return Health.STALE, "disconnected"
    heartbeat = _seconds(state.configuration.get("HeartbeatInterval"), options.heartbeat_interval_s)
    silent_after = options.stale_after_s or 2.5 * heartbeat
    seen = state.last_seen or state.connected_at
    if seen is not None and (now - seen).total_seconds() > silent_after:
        return Health.STALE, f"silent for {(now - seen).total_seconds():.0f} s"
    interval = _seconds(
        state.configuration.get("MeterValueSampleInterval"), DEFAULT_SAMPLE_INTERVAL_S
    )
    meter_after = options.meter_stale_after_s or 3.0 * interval
    for connector in state.connectors.values():
        if connector.transaction is None:
            continue
        times = [connector.meter.newest, connector.transaction.received_at]
        newest = max((t for t in times if t is not None), default=seen)
        if newest is not None and (now - newest).total_seconds() > meter_after:
            age = (now - newest).total_seconds()
            return Health.STALE, f"no meter values on connector {connector.id} for {age:.0f} s"
    return Health.OK, ""
