"""A simulated charger's smart charging: OCPP 1.6 charging profiles as a charger keeps them.

Rules (OCPP 1.6 edition 2, 3.13 and 5.16): ChargePointMaxProfile on connector 0 only;
TxProfile on a connector with a running transaction only (else Rejected), dropped when the
transaction ends; TxDefaultProfile on connector 0 applies to every connector unless one has
its own. A profile replaces one with the same id, or the same purpose and stack level on the
same connector. Within a purpose the highest stack level with a period now wins; a TxProfile
overrides the TxDefaultProfile; the limit is the minimum of that and the
ChargePointMaxProfile. Limits keep one decimal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from surplus.integrations.ocpp.meter import parse_time

__all__ = ["ProfileStore", "StoredProfile"]

_DAY = timedelta(days=1)
_WEEK = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class StoredProfile:
    connector_id: int
    id: int
    stack_level: int
    purpose: str
    kind: str  # Absolute, Recurring, Relative
    recurrency: str | None  # Daily, Weekly
    valid_from: datetime | None
    valid_to: datetime | None
    transaction_id: int | None
    unit: str  # A or W
    periods: tuple[tuple[float, float, int | None], ...]  # (start s, limit, phases)
    duration_s: float | None
    start_schedule: datetime | None
    installed_at: datetime

    def limit_at(self, at: datetime, tx_start: datetime | None) -> float | None:
        """This profile's limit at ``at`` (in its unit), None when it has no period then."""
        if (self.valid_from and at < self.valid_from) or (self.valid_to and at >= self.valid_to):
            return None
        start = self._start(at, tx_start)
        if start is None or at < start:
            return None
        elapsed = (at - start).total_seconds()
        if self.duration_s is not None and elapsed >= self.duration_s:
            return None
        limit = None
        for offset, value, _ in self.periods:
            if offset <= elapsed:
                limit = value
        return limit

    def _start(self, at: datetime, tx_start: datetime | None) -> datetime | None:
        if self.kind == "Relative":
            return tx_start or at
        anchor = self.start_schedule or self.valid_from or self.installed_at
        if self.kind == "Recurring":
            step = _WEEK if self.recurrency == "Weekly" else _DAY
            if at >= anchor:
                return anchor + ((at - anchor) // step) * step
        return anchor

    def boundaries(self, now: datetime, tx_start: datetime | None) -> list[datetime]:
        """The times this profile may change its limit, from ``now`` on."""
        start = self._start(now, tx_start)
        times = [t for t in (self.valid_from, self.valid_to) if t is not None]
        if start is not None:
            times += [start + timedelta(seconds=offset) for offset, _, _ in self.periods]
            if self.duration_s is not None:
                times.append(start + timedelta(seconds=self.duration_s))
            if self.kind == "Recurring":
                step = _WEEK if self.recurrency == "Weekly" else _DAY
                times += [start + step + timedelta(seconds=o) for o, _, _ in self.periods]
        return [t for t in times if t > now]


def _float(value: object) -> float:
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"not a number: {value!r}")


def parse_profile(connector_id: int, raw: Mapping[str, object], now: datetime) -> StoredProfile:
    """A profile as the library hands it over (snake_case); ValueError when malformed."""
    schedule = raw.get("charging_schedule")
    if not isinstance(schedule, Mapping):
        raise ValueError("no charging schedule")
    periods_raw = schedule.get("charging_schedule_period")
    if not isinstance(periods_raw, list) or not periods_raw:
        raise ValueError("no schedule periods")
    periods = []
    for p in periods_raw:
        if not isinstance(p, Mapping):
            raise ValueError("a malformed period")
        phases = p.get("number_phases")
        periods.append(
            (
                _float(p.get("start_period")),
                round(_float(p.get("limit")), 1),
                int(phases) if isinstance(phases, int) else None,
            )
        )
    duration = schedule.get("duration")
    transaction_id = raw.get("transaction_id")
    recurrency = raw.get("recurrency_kind")
    return StoredProfile(
        connector_id=connector_id,
        id=int(_float(raw.get("charging_profile_id"))),
        stack_level=int(_float(raw.get("stack_level"))),
        purpose=str(raw.get("charging_profile_purpose")),
        kind=str(raw.get("charging_profile_kind")),
        recurrency=None if recurrency is None else str(recurrency),
        valid_from=_time(raw.get("valid_from")),
        valid_to=_time(raw.get("valid_to")),
        transaction_id=None if transaction_id is None else int(_float(transaction_id)),
        unit=str(schedule.get("charging_rate_unit")),
        periods=tuple(sorted(periods)),
        duration_s=None if duration is None else _float(duration),
        start_schedule=_time(schedule.get("start_schedule")),
        installed_at=now,
    )


def _time(value: object) -> datetime | None:
    if value is None:
        return None
    at = parse_time(value, datetime.min)
    if at == datetime.min:
        raise ValueError(f"not a time: {value!r}")
    return at


class ProfileStore:
    def __init__(self, max_stack_level: int, units: Iterable[str], max_profiles: int = 20) -> None:
        self.max_stack_level = max_stack_level
        self.units = set(units)
        self.max_profiles = max_profiles
        self.profiles: list[StoredProfile] = []

    def install(
        self, connector_id: int, raw: Mapping[str, object], tx_id: int | None, now: datetime
    ) -> str:
        """Install a profile on ``connector_id`` (whose running transaction is ``tx_id``)."""
        try:
            profile = parse_profile(connector_id, raw, now)
        except (ValueError, TypeError):
            return "Rejected"
        if not 0 <= profile.stack_level <= self.max_stack_level or profile.unit not in self.units:
            return "Rejected"
        if profile.purpose == "ChargePointMaxProfile" and connector_id != 0:
            return "Rejected"
        if profile.purpose == "TxProfile" and (
            connector_id == 0
            or tx_id is None
            or (profile.transaction_id is not None and profile.transaction_id != tx_id)
        ):
            return "Rejected"
        if profile.purpose not in ("ChargePointMaxProfile", "TxDefaultProfile", "TxProfile"):
            return "Rejected"
        kept = [
            p
            for p in self.profiles
            if p.id != profile.id
            and not (
                p.connector_id == connector_id
                and p.purpose == profile.purpose
                and p.stack_level == profile.stack_level
            )
        ]
        if len(kept) >= self.max_profiles:
            return "Rejected"
        self.profiles = [*kept, profile]
        return "Accepted"

    def clear(
        self,
        profile_id: int | None = None,
        connector_id: int | None = None,
        purpose: str | None = None,
        stack_level: int | None = None,
    ) -> str:
        def matches(p: StoredProfile) -> bool:
            if profile_id is not None:
                return p.id == profile_id
            return (
                (connector_id is None or p.connector_id == connector_id)
                and (purpose is None or p.purpose == purpose)
                and (stack_level is None or p.stack_level == stack_level)
            )

        kept = [p for p in self.profiles if not matches(p)]
        removed = len(kept) != len(self.profiles)
        self.profiles = kept
        return "Accepted" if removed else "Unknown"

    def end_transaction(self, connector_id: int) -> None:
        self.profiles = [
            p
            for p in self.profiles
            if not (p.purpose == "TxProfile" and p.connector_id == connector_id)
        ]

    def limit_a(
        self,
        connector_id: int,
        at: datetime,
        tx_start: datetime | None,
        *,
        volts_x_phases: float,
        ignored: frozenset[str] = frozenset(),
    ) -> float | None:
        """The connector's limit in amperes at ``at``, None when no profile limits it;
        profiles of ``ignored`` purposes are held but not applied."""
        considered = [p for p in self.profiles if p.purpose not in ignored]

        def best(purpose: str, connectors: tuple[int, ...]) -> float | None:
            for connector in connectors:
                candidates = [
                    (p.stack_level, p)
                    for p in considered
                    if p.purpose == purpose and p.connector_id == connector
                ]
                for _, p in sorted(candidates, key=lambda c: -c[0]):
                    value = p.limit_at(at, tx_start)
                    if value is not None:
                        return value / volts_x_phases if p.unit == "W" else value
            return None

        tx = best("TxProfile", (connector_id,)) if tx_start is not None else None
        if tx is None:
            tx = best("TxDefaultProfile", (connector_id, 0))
        limits = [v for v in (best("ChargePointMaxProfile", (0,)), tx) if v is not None]
        return min(limits) if limits else None

    def composite(
        self,
        connector_id: int,
        now: datetime,
        duration_s: int,
        tx_start: datetime | None,
        *,
        volts_x_phases: float,
        ceiling_a: float,
    ) -> list[tuple[int, float]]:
        """(start s, limit A) periods from ``now`` for ``duration_s``, every profile held."""
        end = now + timedelta(seconds=duration_s)
        times = {now}
        for p in self.profiles:
            times.update(t for t in p.boundaries(now, tx_start) if t < end)
        periods: list[tuple[int, float]] = []
        for t in sorted(times):
            limit = self.limit_a(connector_id, t, tx_start, volts_x_phases=volts_x_phases)
            value = round(min(ceiling_a, limit if limit is not None else ceiling_a), 1)
            if not periods or periods[-1][1] != value:
                periods.append((int((t - now).total_seconds()), value))
        return periods
