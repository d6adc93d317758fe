"""Charging sessions as the control loop sees them: opened, added to each tick, closed.

Each tick ``SessionTracker.observe`` is told, per driven loadpoint, whether a charging
session is under way and what flowed. It opens a session in the store when one starts
(continuing the open one after a restart), adds the energy charged since the last tick and
closes the session when it ends.

The energy of a tick is the rise of the charger's own session count when it gives one,
else the car's power over the time since the last tick, at most ``MAX_GAP``. It is split
by the benchmark's rule (``surplus.bench.accounting``) on the tick's flows: solar serves
the house first, then the car; the battery's discharge serves the house next, then the
car; the rest is grid energy, priced at the import price of the slot holding the tick.
A rise the charger reports while its last reading shows the car drawing nothing (a cloud
charger's count comes with a read that caught the end of the charge) is split as the last
tick the car drew was.

The tracker remembers only the last tick per loadpoint, in memory: the first tick after a
restart, and the tick that opens a session, only set the base the next tick counts from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from surplus.domain.errors import StoreError
from surplus.domain.tariff import Rates
from surplus.store.sessions import EnergySplit, Session, Sessions

__all__ = ["MAX_GAP", "SessionTracker"]

log = logging.getLogger(__name__)

# A longer silence between two ticks is a service outage: the car's power then says
# nothing about what it drew meanwhile.
MAX_GAP = timedelta(minutes=5)


@dataclass(slots=True)
class _Seen:
    """The last tick of one loadpoint."""

    session_id: int | None  # the open session, None when none is
    at: datetime
    energy_wh: float | None  # the charger's session count then, the base of the next rise
    shares: tuple[float, float] | None = None  # solar and battery shares of the car's power


class SessionTracker:
    """Keeps the store's charging sessions in step with what the chargers report."""

    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions
        # A loadpoint without an entry is yet to be matched with the store: the first tick,
        # or the one after a store error.
        self._seen: dict[str, _Seen] = {}

    def observe(
        self,
        loadpoint: str,
        at: datetime,
        *,
        charging_session: bool,
        session_energy_wh: float | None,
        ev_w: float,
        pv_w: float,
        home_w: float,
        battery_w: float,
        rates: Rates | None,
    ) -> Session | None:
        """Record one tick of ``loadpoint``; the session as it stands after it.

        The session is the open one, or the one this tick closed (its ``end`` set); None
        when no session is open. A store error is logged and the tick goes on: the
        loadpoint is matched with the store again next tick.
        """
        try:
            seen = self._seen.get(loadpoint)
            if seen is None:
                return self._match(loadpoint, at, charging_session, session_energy_wh)
            wh = _energy_wh(seen, at, session_energy_wh, ev_w)
            seen.at, seen.energy_wh = at, session_energy_wh
            if seen.session_id is None:
                if not charging_session:
                    return None
                # What moved before the session started is not the session's.
                session = self._sessions.open(loadpoint, at)
                seen.session_id, seen.shares = session.id, None
                return session
            seen.shares = _shares(ev_w, pv_w, home_w, battery_w) or seen.shares
            increment = _split(wh, seen.shares, _price(rates, at))
            session = self._sessions.add(seen.session_id, at, increment)
            if not charging_session:
                seen.session_id, seen.shares = None, None
                # A clock set back must not end a session before its start.
                session = self._sessions.close(session.id, max(at, session.start))
            return session
        except StoreError as err:
            log.warning("%s: charging session not recorded this tick: %s", loadpoint, err)
            self._seen.pop(loadpoint, None)
            return None

    def _match(
        self, loadpoint: str, at: datetime, charging_session: bool, energy_wh: float | None
    ) -> Session | None:
        """The first tick of ``loadpoint``: continue the store's open session, or end it."""
        if charging_session:
            session = self._sessions.open(loadpoint, at)
            self._seen[loadpoint] = _Seen(session.id, at, energy_wh)
            return session
        left = self._sessions.current(loadpoint)
        if left is not None:
            # It ended while the service was not watching: the last tick that saw it (each
            # one moves ``last_at``) is the best estimate of its end.
            left = self._sessions.close(left.id, left.last_at)
        self._seen[loadpoint] = _Seen(None, at, energy_wh)
        return left


def _energy_wh(seen: _Seen, at: datetime, session_energy_wh: float | None, ev_w: float) -> float:
    """The energy charged since the last tick ``seen``."""
    if session_energy_wh is not None:
        # Without a base (the count is new) or after a drop (the charger restarted its
        # count) this value is only the base of the next rise.
        if seen.energy_wh is None or session_energy_wh < seen.energy_wh:
            return 0.0
        return session_energy_wh - seen.energy_wh
    elapsed = at - seen.at
    if elapsed <= timedelta(0):
        return 0.0
    return max(ev_w, 0.0) * min(elapsed, MAX_GAP).total_seconds() / 3600.0


def _shares(
    ev_w: float, pv_w: float, home_w: float, battery_w: float
) -> tuple[float, float] | None:
    """The shares of the car's power ``ev_w`` that solar and the battery serve; None when
    the car draws nothing."""
    ev = max(ev_w, 0.0)
    if ev == 0.0:
        return None
    solar = min(ev, max(pv_w - home_w, 0.0))
    battery = min(ev - solar, max(battery_w - max(home_w - pv_w, 0.0), 0.0))
    return solar / ev, battery / ev


def _split(wh: float, shares: tuple[float, float] | None, price: float) -> EnergySplit:
    """``wh`` divided by ``shares`` (all grid without them), the grid part priced."""
    if wh <= 0.0:
        return EnergySplit()
    if shares is None:
        return EnergySplit(grid_wh=wh, cost_eur=wh / 1000.0 * price)
    solar_wh, battery_wh = wh * shares[0], wh * shares[1]
    grid_wh = max(wh - solar_wh - battery_wh, 0.0)  # not below 0 by rounding
    return EnergySplit(solar_wh, battery_wh, grid_wh, grid_wh / 1000.0 * price)


def _price(rates: Rates | None, at: datetime) -> float:
    """The import price (EUR/kWh) of the slot holding ``at``; 0 without one."""
    if rates is None:
        return 0.0
    slot = rates.slot_index(at)
    return float(rates.import_eur_per_kwh[slot]) if 0 <= slot < len(rates) else 0.0
