"""A Wallbox charger as the control engine's ``SteeredCharger``.

``WallboxCharger.run()`` keeps the charger's status fresh within the account's read budget
(the client's bucket paces it); ``reading()``, ``session()``, ``health`` and ``detail`` answer
from the last status without a call. ``apply()`` carries out a ``ChargerCommand``: disable
pauses, enable resumes, a current sets the maximum charging current (6 A at least: a limit
cannot pause a Wallbox). Writes are sent only on change and not awaited: the cloud applies
them seconds later, and the reads to come confirm them (or show them refused). "Change" is
against what the charger will do: a pause or a limit written and not yet read back counts
over the last read, and the reading's ``enabled`` follows it too. A write the charger
accepted and did not apply is sent again by ``run()``, after a wait that doubles each time
it is still not applied (never a write per read against a charger that ignores them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from surplus.capabilities import ApiUsage
from surplus.control.state import ChargerCommand
from surplus.domain.errors import AuthenticationError, DeviceError
from surplus.domain.readings import ChargerState, ChargerStatus, SessionProgress
from surplus.integrations.wallbox.client import MIN_CURRENT_A, WallboxClient, Write
from surplus.integrations.wallbox.models import WallboxStatus
from surplus.integrations.wallbox.statuses import StatusGroup

__all__ = ["WallboxCharger"]

_LONGEST_RESEND_WAIT_S = 3600.0
_ENABLED_GROUPS = frozenset({StatusGroup.CHARGING, StatusGroup.WAITING, StatusGroup.DISCHARGING})


class WallboxCharger:
    """The charger ``charger_id`` of ``client``'s account; ``phases`` and ``voltage_v`` are
    what it is wired for (the cloud reports neither)."""

    def __init__(
        self,
        client: WallboxClient,
        charger_id: int,
        *,
        phases: int = 3,
        poll_interval_s: float = 60.0,
        stale_after_s: float | None = None,
        now: Callable[[], datetime],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.client = client
        self.charger_id = charger_id
        self.phases = phases
        self.poll_interval_s = poll_interval_s
        # a read waits for the budget; three missed reads make the reading stale
        self.stale_after = timedelta(seconds=stale_after_s or 3 * max(poll_interval_s, 60.0))
        self._now = now
        self._sleep = sleep
        self._enabled = True  # a Wallbox charges a car plugged in unless paused
        self._current_a: float | None = None
        self._error: str | None = None  # the last read's failure, until one succeeds
        self._resend_at: datetime | None = None  # when unapplied writes are sent again
        self._resend_wait_s = client.confirm_timeout_s
        self._resent: list[str] = []  # sent again and not yet seen applied
        self._applying = asyncio.Lock()  # the loop's commands and the resend, one at a time

    def __repr__(self) -> str:
        return f"WallboxCharger({self.charger_id})"

    @property
    def status(self) -> WallboxStatus | None:
        return self.client.last_status(self.charger_id)

    # --- reading ---

    async def run(self) -> None:
        """Read the status every ``poll_interval_s`` (or as the budget allows) until the
        account needs re-authentication (the runtime then waits for new credentials)."""
        while self.client.needs_reauth is None:
            await self.refresh()
            if self.client.needs_reauth is not None:
                return
            await self._send_unapplied_again()
            await self._sleep(self.poll_interval_s)

    async def _send_unapplied_again(self) -> None:
        """Send again what the charger accepted and did not apply, once the wait is over."""
        if not self.client.unapplied(self.charger_id):
            self._resend_at = None
            if not self.client.pending(self.charger_id):  # applied: the next wait is short
                self._resend_wait_s = self.client.confirm_timeout_s
                self._resent = []
            return
        now = self._now()
        if self._resend_at is None:
            self._resend_at = now + timedelta(seconds=self._resend_wait_s)
        if now < self._resend_at:
            return
        self._resend_at = None
        self._resent = self.client.unapplied(self.charger_id)
        self._resend_wait_s = min(2 * self._resend_wait_s, _LONGEST_RESEND_WAIT_S)
        try:
            async with self._applying:  # what is wanted once the loop's command is done
                wanted = ChargerCommand("", enable=self._enabled, current_a=self._current_a)
                await self._apply(wanted)
        except DeviceError as err:
            self._error = str(err)

    async def refresh(self) -> None:
        """One read of the status; a failure is kept for ``health`` (never raised)."""
        try:
            await self.client.status(self.charger_id)
        except DeviceError as err:
            self._error = str(err)
        else:
            self._error = None

    def reading(self) -> ChargerState | None:
        status = self.status
        if status is None:
            return None
        group = status.group
        if group is StatusGroup.CHARGING:
            state = ChargerStatus.CHARGING
        elif status.car_connected:
            state = ChargerStatus.CONNECTED
        elif group in (StatusGroup.ERROR, StatusGroup.UNKNOWN):
            state = ChargerStatus.ERROR
        else:
            state = ChargerStatus.DISCONNECTED
        enabled = group in _ENABLED_GROUPS if status.car_connected else self._enabled
        paused = self.client.on_its_way(self.charger_id, "pause")
        if paused is not None and status.car_connected:
            enabled = not paused  # written, not read back yet: what the charger will do
        at = status.read_at
        if status.last_sync is not None:
            at = min(at, status.last_sync)
        return ChargerState(
            status=state,
            enabled=enabled,
            offered_current_a=float(status.max_charging_current_a or 0),
            power_w=(status.charging_power_w or 0.0) if state is ChargerStatus.CHARGING else 0.0,
            phases=self.phases,
            at=at,
        )

    def api_usage(self) -> ApiUsage:
        """The charger-API calls made so far (Wallbox bills none; its limits count them)."""
        return ApiUsage(reads=self.client.reads, commands=self.client.writes)

    def session(self) -> SessionProgress:
        """A session runs while a car is plugged in; its energy is the charger's count."""
        status = self.status
        if status is None or not status.car_connected:
            return SessionProgress(active=False)
        return SessionProgress(active=True, energy_wh=status.added_energy_wh)

    @property
    def health(self) -> str:
        return self._health()[0]

    @property
    def detail(self) -> str:
        return self._health()[1]

    def _health(self) -> tuple[str, str]:
        reauth = self.client.needs_reauth
        if reauth is not None:
            return "refused", f"needs re-authentication: {reauth}"
        unapplied = self.client.unapplied(self.charger_id)
        if unapplied:
            again = (
                ""
                if self._resend_at is None
                else f"; sending it again at {self._resend_at:%H:%M:%S}"
            )
            return (
                "stale",
                f"the charger accepted {', '.join(unapplied)} but did not apply it{again}",
            )
        if set(self._resent) & set(self.client.pending(self.charger_id)):
            return "stale", f"the charger did not apply {', '.join(self._resent)}: sent again"
        status = self.status
        if self._error is not None:
            return "stale", self._error
        if status is None:
            return "stale", f"charger {self.charger_id}: no status yet"
        described = f"{status.label} ({status.status_id})"
        if status.offline:
            return "stale", f"charger {self.charger_id} is {described.lower()}"
        if status.group is StatusGroup.UNKNOWN:
            return "stale", f"charger {self.charger_id}: unknown status code {status.status_id}"
        reading = self.reading()
        if reading is not None and self._now() - reading.at > self.stale_after:
            return "stale", f"charger {self.charger_id}: last synced {reading.at:%H:%M:%S} UTC"
        return "ok", f"charger {self.charger_id}: {described}"

    # --- commands ---

    async def apply(self, command: ChargerCommand) -> str:
        """Carry out ``command``: "ok", with what happened after semicolons. A failure
        raises the client's ``DeviceError`` (``AuthenticationError`` when it needs the owner)."""
        async with self._applying:
            return await self._apply(command)

    async def _apply(self, command: ChargerCommand) -> str:
        reauth = self.client.needs_reauth
        if reauth is not None:
            raise AuthenticationError(f"needs re-authentication: {reauth}")
        notes: list[str] = []
        if command.phases is not None and command.phases != self.phases:
            notes.append(f"{command.phases}-phase charging ignored: no switching here")
        if command.current_a is not None:
            self._current_a = command.current_a
        if command.enable is False:
            self._enabled = False
            notes.append(_told("pause", await self.client.pause(self.charger_id, confirm=False)))
        elif command.enable or (command.current_a is not None and self._enabled):
            self._enabled = True
            if self._current_a is not None:
                notes += await self._limit(self._current_a)
            resumed = await self.client.resume(self.charger_id, confirm=False)
            notes.append(_told("resume", resumed))
        elif command.current_a is not None:
            notes.append(f"{command.current_a:g} A kept until charging is enabled")
        return "; ".join(["ok", *notes])

    async def _limit(self, amps: float) -> list[str]:
        notes = []
        if amps < MIN_CURRENT_A:
            notes.append(f"{amps:g} A raised to {MIN_CURRENT_A} A, the charger's minimum")
        written = await self.client.set_max_current(self.charger_id, amps, confirm=False)
        return [*notes, _told(f"{max(amps, MIN_CURRENT_A):g} A", written)]


def _told(what: str, written: Write) -> str:
    return f"{what} {written.value}"
