"""What the rest of surplus asks of one charge point: ``ChargerHandle``.

Every call waits for the charger's answer (30 s at most, then ``UnavailableError``); a
CALLERROR becomes ``NotSupportedError`` (NotImplemented, NotSupported) or ``DeviceError``;
a charger that is not connected is ``UnavailableError``.

``set_current_limit`` sends SetChargingProfile and does not take "Accepted" for an answer:
it checks what the charger now offers (Current.Offered or Power.Offered in fresh meter
values, asked for with TriggerMessage), or else its composite schedule. A purpose that is
accepted but not applied (reference C.6) is followed by the next one; the purpose that
worked is tried first next time, and the profiles surplus set with other purposes are
cleared so that a stale one cannot hold the charger back later.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from websockets.exceptions import ConnectionClosed

from surplus.domain.errors import DeviceError, NotSupportedError, UnavailableError
from surplus.integrations.ocpp._lib import OCPPError, call
from surplus.integrations.ocpp.limits import (
    LimitResult,
    LimitStatus,
    Unit,
    allowed_units,
    applies,
    charging_profile,
    composite_limit,
    convert,
    one_decimal,
    profile_id,
    purpose_order,
)
from surplus.integrations.ocpp.options import Purpose
from surplus.integrations.ocpp.session import Session
from surplus.integrations.ocpp.state import AppliedLimit

__all__ = ["ChargerHandle"]


class ChargerHandle:
    """Commands for the charger ``charger_id``; valid across its reconnections."""

    def __init__(self, charger_id: str, session: Callable[[str], Session | None]) -> None:
        self.id = charger_id
        self._find = session

    def _session(self) -> Session:
        session = self._find(self.id)
        if session is None:
            raise UnavailableError(f"charger {self.id!r} is not connected")
        return session

    async def _call(self, payload: Any, session: Session | None = None) -> Any:
        session = session or self._session()
        action = type(payload).__name__
        try:
            return await session.call(
                payload, suppress=False, skip_schema_validation=session.lenient
            )
        except OCPPError as e:
            kind = (
                NotSupportedError if e.code in ("NotImplemented", "NotSupported") else DeviceError
            )
            raise kind(f"charger {self.id!r}: {action}: {e.code}: {e.description}") from e
        except TimeoutError as e:
            raise UnavailableError(f"charger {self.id!r}: no answer to {action}") from e
        except ConnectionClosed as e:
            raise UnavailableError(f"charger {self.id!r}: disconnected during {action}") from e
        except (TypeError, ValueError, KeyError) as e:
            raise DeviceError(f"charger {self.id!r}: malformed answer to {action}") from e

    async def _status(self, payload: Any) -> str:
        return str(getattr(await self._call(payload), "status", ""))

    # --- plain commands ---

    async def remote_start(
        self, id_tag: str = "surplus", connector_id: int = 1, limit_amps: float | None = None
    ) -> bool:
        """Start a transaction; with ``limit_amps`` it starts under that TxProfile."""
        session = self._session()
        if session.state.registration == "Pending":
            raise UnavailableError(f"charger {self.id!r} is Pending; it may not be started yet")
        profile = None
        if limit_amps is not None:
            stack = self._stack_level(session)
            profile = charging_profile("TxProfile", connector_id, limit_amps, "A", stack, None)
            del profile["transaction_id"]
        payload = call.RemoteStartTransaction(
            id_tag=id_tag, connector_id=connector_id, charging_profile=profile
        )
        return await self._status(payload) == "Accepted"

    async def remote_stop(self, connector_id: int = 1, transaction_id: int | None = None) -> bool:
        """Stop the transaction on ``connector_id`` (or the one given)."""
        session = self._session()
        if session.state.registration == "Pending":
            raise UnavailableError(f"charger {self.id!r} is Pending; it may not be stopped yet")
        if transaction_id is None:
            tx = session.state.connector(connector_id).transaction
            if tx is None:
                raise ValueError(f"charger {self.id!r}: no transaction on connector {connector_id}")
            transaction_id = tx.id
        payload = call.RemoteStopTransaction(transaction_id=transaction_id)
        return await self._status(payload) == "Accepted"

    async def change_availability(self, operative: bool, connector_id: int = 0) -> str:
        """Accepted, Rejected or Scheduled. A charger refusing it on connector 0 (the whole
        charger) is asked for each of its connectors instead."""
        kind = "Operative" if operative else "Inoperative"
        status = await self._status(call.ChangeAvailability(connector_id=connector_id, type=kind))
        if status != "Rejected" or connector_id != 0:
            return status
        connectors = sorted(c for c in self._session().state.connectors if c > 0) or [1]
        answers = [
            await self._status(call.ChangeAvailability(connector_id=c, type=kind))
            for c in connectors
        ]
        for worst in ("Rejected", "Scheduled"):
            if worst in answers:
                return worst
        return "Accepted"

    async def reset(self, hard: bool = False) -> str:
        return await self._status(call.Reset(type="Hard" if hard else "Soft"))

    async def unlock_connector(self, connector_id: int = 1) -> str:
        return await self._status(call.UnlockConnector(connector_id=connector_id))

    async def trigger_message(self, message: str, connector_id: int | None = None) -> str:
        payload = call.TriggerMessage(requested_message=message, connector_id=connector_id)
        return await self._status(payload)

    async def get_configuration(self, keys: Sequence[str]) -> dict[str, str | None]:
        """The values of ``keys``, asked one at a time (some chargers reboot when asked for
        all at once); an unknown key is left out."""
        values: dict[str, str | None] = {}
        for key in keys:
            answer = await self._call(call.GetConfiguration(key=[key]))
            for entry in getattr(answer, "configuration_key", None) or []:
                value = entry.get("value")
                values[str(entry["key"])] = None if value is None else str(value)
        self._session().state.configuration.update(values)
        return values

    async def change_configuration(self, key: str, value: str) -> str:
        status = await self._status(call.ChangeConfiguration(key=key, value=value))
        if status in ("Accepted", "RebootRequired"):
            self._session().state.configuration[key] = value
        return status

    async def get_composite_schedule(
        self, connector_id: int = 1, duration_s: int = 3600, unit: Unit | None = None
    ) -> Any:
        payload = call.GetCompositeSchedule(
            connector_id=connector_id, duration=duration_s, charging_rate_unit=unit
        )
        return await self._call(payload)

    async def set_charging_profile(self, connector_id: int, profile: Mapping[str, Any]) -> str:
        """Install ``profile`` (csChargingProfiles, snake_case keys) as it is: Accepted,
        Rejected or NotSupported."""
        payload = call.SetChargingProfile(
            connector_id=connector_id, cs_charging_profiles=dict(profile)
        )
        return await self._status(payload)

    async def clear_charging_profile(
        self, profile_id: int | None = None, connector_id: int | None = None
    ) -> str:
        payload = call.ClearChargingProfile(id=profile_id, connector_id=connector_id)
        return await self._status(payload)

    # --- the current limit ---

    async def set_current_limit(
        self,
        amps: float | None = None,
        *,
        watts: float | None = None,
        connector_id: int = 1,
        verify: bool = True,
    ) -> LimitResult:
        """Limit the charger to ``amps`` (per phase) or ``watts``, in the unit it takes."""
        if (amps is None) == (watts is None):
            raise ValueError("give exactly one of amps and watts")
        session = self._session()
        options = session.options
        unit, limit = self._unit_and_limit(session, amps, watts, connector_id)
        tx = session.state.connector(connector_id).transaction
        purposes = purpose_order(options, session.memory.preferred_purpose, tx is not None)
        attempts: list[tuple[Purpose, str]] = []
        accepted: Purpose | None = None
        for purpose in purposes:
            target = 0 if purpose == "ChargePointMaxProfile" else connector_id
            profile = charging_profile(
                purpose,
                target,
                limit,
                unit,
                self._stack_level(session),
                None if tx is None else tx.id,
            )
            asked = time.monotonic()
            payload = call.SetChargingProfile(connector_id=target, cs_charging_profiles=profile)
            status = await self._status(payload)
            if status != "Accepted":
                attempts.append((purpose, status.lower() or "no answer"))
                continue
            accepted = purpose
            session.memory.profiles[purpose] = (profile_id(purpose, target), target)
            evidence = (
                await self._verify(session, connector_id, limit, unit, asked) if verify else None
            )
            if evidence == "not_applied":
                attempts.append((purpose, "accepted, not applied"))
                continue
            attempts.append((purpose, "applied" if evidence else "accepted"))
            if evidence:
                session.memory.preferred_purpose = purpose
                await self._clear_others(session, purpose)
            session.state.limit = AppliedLimit(limit, unit, purpose, evidence, datetime.now(UTC))
            status_now = LimitStatus.APPLIED if evidence else LimitStatus.UNVERIFIED
            return LimitResult(status_now, limit, unit, purpose, evidence, tuple(attempts))
        final = LimitStatus.NOT_APPLIED if accepted else LimitStatus.REJECTED
        return LimitResult(final, limit, unit, None, None, tuple(attempts))

    def _stack_level(self, session: Session) -> int:
        if session.options.max_stack_level is not None:
            return session.options.max_stack_level
        configured = session.state.configuration.get("ChargeProfileMaxStackLevel")
        try:
            return max(int(str(configured).strip()), 0)
        except ValueError:
            return 1

    def _unit_and_limit(
        self, session: Session, amps: float | None, watts: float | None, connector_id: int
    ) -> tuple[Unit, float]:
        given: Unit = "A" if amps is not None else "W"
        value = amps if amps is not None else watts
        assert value is not None
        allowed = allowed_units(
            session.state.configuration.get("ChargingScheduleAllowedChargingRateUnit")
        )
        unit: Unit = given if given in allowed else sorted(allowed)[0]
        if session.options.rate_unit is not None:
            unit = session.options.rate_unit
        phases, volts = self._electrics(session, connector_id)
        return unit, one_decimal(convert(value, given, unit, phases, volts))

    def _electrics(self, session: Session, connector_id: int) -> tuple[int, float]:
        measured = [
            v.value
            for phase, v in session.state.connector(connector_id).meter.voltage_v.items()
            if phase != "total" and 180.0 <= v.value <= 260.0
        ]
        volts = sum(measured) / len(measured) if measured else session.options.voltage_v
        return session.options.phases, volts

    async def _verify(
        self, session: Session, connector_id: int, limit: float, unit: Unit, asked: float
    ) -> str | None:
        """How the limit was seen applied ("current_offered", "power_offered",
        "composite_schedule"), "not_applied", or None when the charger cannot tell."""
        meter = session.state.connector(connector_id).meter
        sampled = session.state.configuration.get("MeterValuesSampledData") or ""
        if (
            meter.offered_current_a is not None
            or meter.offered_power_w is not None
            or "Offered" in sampled
        ):
            seen = await self._verify_offered(session, connector_id, limit, unit, asked)
            if seen is not None:
                return seen
        try:
            answer = await self.get_composite_schedule(connector_id, 60, unit)
        except DeviceError:
            return None
        found = composite_limit(answer)
        if found is None:
            return None
        phases, volts = self._electrics(session, connector_id)
        target = convert(limit, unit, found[1], phases, volts)
        ceiling = convert(session.options.max_current_a, "A", found[1], phases, volts)
        return "composite_schedule" if applies(found[0], target, ceiling) else "not_applied"

    async def _verify_offered(
        self, session: Session, connector_id: int, limit: float, unit: Unit, asked: float
    ) -> str | None:
        options = session.options
        meter = session.state.connector(connector_id).meter
        phases, volts = self._electrics(session, connector_id)
        amps = convert(limit, unit, "A", phases, volts)
        since = datetime.now(UTC) - timedelta(seconds=time.monotonic() - asked)
        deadline = time.monotonic() + options.verify_timeout_s
        settle = time.monotonic() + options.verify_settle_s

        def seen() -> tuple[str, bool] | None:
            fresh = [
                (name, value)
                for name, value in (
                    ("current_offered", meter.offered_current_a),
                    ("power_offered", meter.offered_power_w),
                )
                if value is not None and value.received_at >= since
            ]
            if not fresh:
                return None
            name, value = fresh[0]
            if name == "current_offered":
                return name, applies(value.value, amps, options.max_current_a)
            ceiling = convert(options.max_current_a, "A", "W", phases, volts)
            return name, applies(value.value, amps * phases * volts, ceiling)

        while True:
            found = seen()
            now = time.monotonic()
            if found is not None and (found[1] or now >= settle):
                return found[0] if found[1] else "not_applied"
            if now >= deadline:
                return "not_applied" if found is not None else None
            with contextlib.suppress(DeviceError):
                await self.trigger_message("MeterValues", connector_id)
            await _wait_for_meter(session, min(1.0, deadline - time.monotonic()))

    async def _clear_others(self, session: Session, keep: Purpose) -> None:
        for purpose, (pid, connector) in list(session.memory.profiles.items()):
            if purpose == keep:
                continue
            try:
                await self._status(call.ClearChargingProfile(id=pid, connector_id=connector))
            except DeviceError:
                continue
            del session.memory.profiles[purpose]


async def _wait_for_meter(session: Session, timeout_s: float) -> None:
    if timeout_s <= 0:
        return
    async with session.metered:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(session.metered.wait(), timeout_s)
