"""``decide``: one tick of the control engine, a pure function of its inputs.

(snapshot, settings, state, now) -> commands, new state, and a reason per loadpoint that a
person can read. The same function runs in the service and in ``surplus bench``.

Order of a tick: readings too old put a loadpoint in its safe state and nothing else is
decided from them; the plan is renewed when new information arrived; the battery mode
follows the plan; the surplus is computed once for the site and shared among loadpoints
(``allocate``); each loadpoint's wish passes the hysteresis and contactor protection
(``hysteresis``), becomes phases and a current (``setpoint``), and is sent only when it
changed and the device's command budget allows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

import numpy as np

from surplus.control.allocate import Demand, allocate
from surplus.control.hysteresis import duration, gate, stopped
from surplus.control.planner import make_plan, slot_of, stale_plan, vehicle_energy_wh
from surplus.control.prices import PriceMemory
from surplus.control.setpoint import (
    choose_phases,
    current_a,
    highest_phases,
    lowest_phases,
    power_w,
    voltage,
)
from surplus.control.settings import LoadpointSettings, Mode, SiteSettings
from surplus.control.state import (
    BatteryCommand,
    BatteryMode,
    ChargerCommand,
    Command,
    ControlState,
    Decision,
    LoadpointState,
    Plan,
)
from surplus.domain.readings import (
    BatteryState,
    ChargerStatus,
    LoadpointSnapshot,
    SiteSnapshot,
)
from surplus.domain.tariff import SLOT_S

_CONNECTED = (ChargerStatus.CONNECTED, ChargerStatus.CHARGING)
RUN_SLOTS = 16  # a solar run is judged by what the plan gives the car over 4 hours
SOLAR_RUN_LEAN = 0.5  # a planned solar run may lean on the battery for this much of its minimum


def _age(reading: object, now: datetime) -> float | None:
    at = getattr(reading, "at", None)
    return None if at is None else (now - at).total_seconds()


def _kw(watts: float) -> str:
    return f"{watts / 1000:.1f} kW"


def decide(
    snapshot: SiteSnapshot, settings: SiteSettings, state: ControlState, now: datetime
) -> Decision:
    """Decide one tick; see the module docstring."""
    commands: list[Command] = []
    reasons: dict[str, str] = {}
    lp_states = dict(state.loadpoints)

    grid_age = _age(snapshot.grid, now)
    grid_fresh = grid_age is not None and grid_age <= settings.stale.grid_max_age_s
    battery_age = _age(snapshot.battery, now)
    battery = (
        snapshot.battery
        if battery_age is not None and battery_age <= settings.stale.battery_max_age_s
        else None
    )

    prices = state.prices.fold(snapshot.rates) if snapshot.rates is not None else state.prices
    plan, plan_note = _renew_plan(snapshot, settings, state, grid_fresh, now, prices)
    slot = slot_of(plan, now) if plan is not None else None

    # --- the battery follows the plan -------------------------------------------------
    battery_mode, battery_power, reasons["battery"] = _battery_mode(
        plan, slot, battery, settings, grid_fresh
    )
    if plan_note:
        reasons["battery"] += f" (re-planned: {plan_note})"
    if (
        battery is not None
        and grid_fresh
        and settings.battery.controllable
        and (
            battery_mode != state.battery_mode or abs(battery_power - state.battery_power_w) > 500.0
        )
    ):
        commands.append(BatteryCommand(battery_mode, battery_power))
    elif battery is None or not grid_fresh:
        battery_mode, battery_power = state.battery_mode, state.battery_power_w

    # --- the site's surplus ---------------------------------------------------------------
    views = {lp.name: snapshot.loadpoints.get(lp.name) for lp in settings.loadpoints}
    fresh = {
        name: view is not None
        and (a := _age(view.charger, now)) is not None
        and a <= settings.stale.charger_max_age_s
        for name, view in views.items()
    }
    ev_w = sum(v.charger.power_w for n, v in views.items() if v is not None and fresh[n])
    grid_w = snapshot.grid.power_w if snapshot.grid is not None else 0.0
    battery_w = battery.power_w if battery is not None else 0.0
    available = ev_w - grid_w - battery_w - settings.residual_w
    # what the battery may lend the cars: all of it to a started charge above the buffer
    # SoC; below it only a planned solar run's shortfall (``_demand``)
    allowance, buffer_ok, start_on_battery = 0.0, False, False
    if battery is not None:
        charging_from_solar = battery_mode in (BatteryMode.NORMAL, BatteryMode.HOLD)
        if battery.soc_pct < settings.battery.priority_soc_pct and charging_from_solar:
            available -= battery.max_charge_w
        elif battery_mode == BatteryMode.NORMAL:
            allowance = min(settings.battery.max_battery_to_ev_w, battery.max_discharge_w)
            soc, policy = battery.soc_pct, settings.battery
            buffer_ok = soc >= policy.buffer_soc_pct
            start_on_battery = buffer_ok and soc >= policy.buffer_start_soc_pct
    home_w = snapshot.home_w() or 0.0
    pv_w = snapshot.pv.power_w if snapshot.pv is not None else 0.0
    volts_site = 230.0
    cap_w = settings.site_max_current_a * volts_site * 3 - max(0.0, home_w - pv_w)

    # --- each loadpoint's wish --------------------------------------------------------------
    demands: list[Demand] = []
    forced_off: dict[str, str] = {}
    for lp in settings.loadpoints:
        view = views[lp.name]
        st = lp_states.get(lp.name) or LoadpointState(phases=highest_phases(lp.charger))
        if not grid_fresh or not fresh[lp.name]:
            what = (
                f"grid reading {grid_age:.0f} s old"
                if grid_age is not None and not grid_fresh
                else "no grid reading"
                if not grid_fresh
                else "no charger reading"
                if view is None
                else f"charger reading {_age(view.charger, now):.0f} s old"
            )
            st, cmd, reasons[lp.name] = _fallback(lp, st, settings, what, now)
            st = spent(st, cmd)
            commands.extend(cmd)
            lp_states[lp.name] = st
            continue
        assert view is not None
        plugged = view.charger.status != ChargerStatus.DISCONNECTED
        known = vehicle_energy_wh(snapshot, lp)
        trips = st.trips.observe(plugged, None if known is None else known[0], now)
        # a running charge the surplus alone no longer carries leans on the battery, since
        short = st.on and available < view.charger.power_w - lp.charger.deadband_w
        lp_states[lp.name] = replace(
            st,
            connected=view.charger.status in _CONNECTED,
            session_commands=st.session_commands if plugged else 0,
            trips=trips,
            short_of_sun_since=(st.short_of_sun_since or now) if short else None,
        )
        why_off = _forced_off(lp, view, snapshot)
        if why_off:
            forced_off[lp.name] = why_off
            continue
        carry = buffer_ok and (
            lp.mode != Mode.SOLAR
            or (now - (lp_states[lp.name].short_of_sun_since or now)).total_seconds()
            < settings.battery.buffer_carry_s
        )
        demands.append(
            _demand(snapshot, lp, view, lp_states[lp.name], plan, slot, carry, start_on_battery)
        )

    grants = allocate(available, demands, cap_w=cap_w, allowance_w=allowance)

    # --- apply delays, protection, phases, currents and the command budget -------------
    for lp in settings.loadpoints:
        name = lp.name
        view = views[name]
        st = lp_states[name]
        if name in forced_off:
            if st.on or (view is not None and view.charger.enabled):
                commands.append(ChargerCommand(name, enable=False))
                st = spent(st, commands[-1:])
                if st.on:
                    st = stopped(st, now)
            lp_states[name] = st
            reasons[name] = forced_off[name]
            continue
        demand = next((d for d in demands if d.name == name), None)
        if demand is None or view is None:
            continue
        volts = voltage(view.charger, lp.charger)
        grant = grants.get(name, 0.0)
        forced = demand.forced_w > 0
        planned = forced and lp.mode in (Mode.PLAN, Mode.NOW)
        # a start must leave its stop in the session's command budget
        startable = st.on or _commands_left(lp, st) >= _START + _STOP
        # a planned block that just ended stops at once: no surplus delay for planned energy
        g = gate(
            st,
            grant > 0 and startable,
            lp.contactor,
            now,
            immediate=forced or _block_ended(plan, name, slot),
        )
        starting = g.on and not st.on
        # a starting charger picks its phases freely (no switch under load, no extra start)
        phases, picked, phase_note = choose_phases(
            grant,
            replace(g.state, on=False) if starting else g.state,
            lp.charger,
            lp.contactor,
            volts,
            now,
            force_max=planned and grant >= power_w(lp.charger.min_current_a, 3, volts),
        )
        st = replace(picked, on=g.state.on)
        # planned energy must arrive in full: round up there; surplus is never exceeded
        amps = (
            current_a(grant, phases, volts, lp.charger, up=planned)
            if grant > 0
            else lp.charger.min_current_a
        )
        was_on = lp_states[name].on
        if planned and g.on and lp.mode == Mode.PLAN:
            st = replace(st, trips=replace(st.trips, topped_up=True))
        lean = min(allowance, demand.lean_w) if demand.running else 0.0
        cmd, st, budget_note = _commands(lp, st, was_on, g.on, amps, phases, grant, lean, now, view)
        if grant > 0 and not startable:
            budget_note = _used_up(lp, st)
        st = spent(st, cmd)
        commands.extend(cmd)
        lp_states[name] = st
        reasons[name] = _reason(
            lp, g.on, grant, st, phases, forced, g.reason, phase_note, budget_note, snapshot, now
        )

    new_state = ControlState(
        loadpoints=lp_states,
        plan=plan,
        battery_mode=battery_mode,
        battery_power_w=battery_power,
        prices=prices,
    )
    return Decision(tuple(commands), new_state, reasons)


def _renew_plan(
    snapshot: SiteSnapshot,
    settings: SiteSettings,
    state: ControlState,
    grid_fresh: bool,
    now: datetime,
    prices: PriceMemory,
) -> tuple[Plan | None, str]:
    rates = snapshot.rates
    wanted = any(lp.mode == Mode.PLAN for lp in settings.loadpoints) or (
        settings.battery.controllable and snapshot.battery is not None
    )
    if rates is None or len(rates) == 0 or not wanted:
        return None, ""
    plan = state.plan
    if not grid_fresh:
        return plan, ""  # never plan from stale readings; keep what we had
    why = stale_plan(plan, snapshot, settings, rates, now)
    if why is None:
        return plan, ""
    trips = {name: st.trips for name, st in state.loadpoints.items()}
    return make_plan(snapshot, settings, rates, now, trips=trips, prices=prices), why


def _battery_mode(
    plan: Plan | None,
    slot: int | None,
    battery: BatteryState | None,
    settings: SiteSettings,
    grid_fresh: bool,
) -> tuple[BatteryMode, float, str]:
    if battery is None:
        return BatteryMode.NORMAL, 0.0, "no fresh battery reading: not steering it"
    if not grid_fresh:
        return BatteryMode.NORMAL, 0.0, "grid reading stale: battery left as it is"
    if not settings.battery.controllable or plan is None or slot is None:
        return BatteryMode.NORMAL, 0.0, "self-consumption"
    charge = float(plan.battery_charge_w[slot])
    discharge = float(plan.battery_discharge_w[slot])
    imported = float(plan.grid_import_w[slot])
    deficit = float(plan.deficit_w[slot])
    if charge > 200.0 and imported > 200.0 and charge > max(-deficit, 0.0) + 200.0:
        return (
            BatteryMode.CHARGE,
            round(charge, -2),
            f"charging from the grid at {_kw(charge)} for dearer hours",
        )
    if discharge > max(deficit, 0.0) + 500.0:
        return (
            BatteryMode.DISCHARGE,
            round(discharge, -2),
            f"discharging at {_kw(discharge)}: selling to the grid pays now",
        )
    in_block = any(block[slot] > 0 for block in plan.ev_grid_w.values())
    if in_block and _battery_feeds_cars_wh(plan) > 500.0:
        return BatteryMode.NORMAL, 0.0, "helping the planned car charge, as planned"
    if deficit < -200.0 and charge < 0.3 * -deficit:
        return BatteryMode.IDLE, 0.0, "leaving room to store solar when export pays less"
    # (a car's grid block may run faster than the plan's car power: compare with what the
    # battery could give, not with the whole deficit)
    if deficit > 200.0 and discharge < 0.5 * min(deficit, battery.max_discharge_w):
        return BatteryMode.HOLD, 0.0, "holding its charge for dearer hours"
    return BatteryMode.NORMAL, 0.0, "self-consumption"


def _block_ended(plan: Plan | None, name: str, slot: int | None) -> bool:
    block = plan.ev_grid_w.get(name) if plan is not None else None
    if block is None or slot is None:
        return False
    return bool(slot > 0 and block[slot - 1] > 0)


def _battery_feeds_cars_wh(plan: Plan) -> float:
    """The energy the plan moves from the home battery into cars (it charges a car's grid
    block from the battery where it discharges while a car charges)."""
    cars = sum((w for w in plan.ev_w.values()), np.zeros(len(plan.deficit_w)))
    return float(np.minimum(plan.battery_discharge_w, cars).sum()) * SLOT_S / 3600.0


def _forced_off(lp: LoadpointSettings, view: LoadpointSnapshot, snapshot: SiteSnapshot) -> str:
    if view.charger.status not in _CONNECTED:
        return (
            "no car plugged in" if view.charger.status != ChargerStatus.ERROR else "charger error"
        )
    if lp.mode == Mode.OFF:
        return "mode off"
    known = vehicle_energy_wh(snapshot, lp)
    if known is not None and known[0] >= lp.limit_soc_pct / 100.0 * known[1] - 1.0:
        return f"limit of {lp.limit_soc_pct:.0f}% reached"
    return ""


def _solar_will_last(snapshot: SiteSnapshot, lp: LoadpointSettings, min_w: float) -> bool:
    forecast = snapshot.forecast
    if forecast is None or lp.solar_lookahead_s <= 0:
        return True
    first = max(0, int((snapshot.at - forecast.start).total_seconds() // forecast.step_s))
    count = max(1, int(lp.solar_lookahead_s // forecast.step_s))
    pv = forecast.pv_w[first : first + count]
    load = forecast.load_w[first : first + count]
    if len(pv) == 0:
        return True
    return float((pv - load).mean()) >= min_w


def _plan_charges(plan: Plan | None, lp: LoadpointSettings, slot: int | None, min_w: float) -> bool:
    """Does the plan (when it has the car) charge it now or in the next slot, and enough
    over the next hours to be worth a contactor start?"""
    if plan is None or slot is None or lp.name not in plan.ev_w:
        return True
    ahead = plan.ev_w[lp.name][slot : slot + RUN_SLOTS]
    return (
        float(ahead[:2].max()) >= 0.3 * min_w
        and float(ahead.sum()) * SLOT_S / 3600.0 >= lp.min_solar_run_wh
    )


def _solar_run(plan: Plan | None, lp: LoadpointSettings, slot: int | None, min_w: float) -> bool:
    """Does the plan give the car so much sun over the next four hours (``min_solar_run_wh``)
    that it may run at its minimum, the home battery filling in what the sun lacks? The
    plan routes that sun to the car, not the battery; the LP charges at any power, a
    charger not below its minimum."""
    if lp.mode != Mode.PLAN or plan is None or slot is None or lp.name not in plan.ev_w:
        return False
    window = slice(slot, slot + RUN_SLOTS)
    ahead = np.minimum(plan.ev_w[lp.name][window], plan.solar_w[window])
    return float(ahead.sum()) * SLOT_S / 3600.0 >= lp.min_solar_run_wh


def _demand(
    snapshot: SiteSnapshot,
    lp: LoadpointSettings,
    view: LoadpointSnapshot,
    st: LoadpointState,
    plan: Plan | None,
    slot: int | None,
    buffer_ok: bool,
    start_on_battery: bool,
) -> Demand:
    cfg = lp.charger
    volts = voltage(view.charger, cfg)
    # while charging, phases that cannot change under load bound what it can take
    kept = st.on and not lp.contactor.switch_under_load
    min_w = power_w(cfg.min_current_a, st.phases if kept else lowest_phases(cfg), volts)
    max_w = power_w(cfg.max_current_a, highest_phases(cfg), volts)
    start_w = min_w if st.on else min_w + cfg.deadband_w
    block = plan.ev_grid_w.get(lp.name) if plan is not None else None
    # sun that replaces energy still to be bought is worth a start at once; other sun
    # must last, and go to the car when the plan finds it worth more there than exported
    to_buy = block is not None and slot is not None and float(block[slot:].sum()) > 0
    # a planned solar run, or sun that replaces bought energy, may lean on the battery
    run = _solar_run(plan, lp, slot, min_w) or (to_buy and lp.mode == Mode.PLAN)
    if (
        not st.on
        and not to_buy
        and not run
        and not (_plan_charges(plan, lp, slot, min_w) and _solar_will_last(snapshot, lp, min_w))
    ):
        start_w = max_w + 1.0  # nothing idle can start on surplus now
    forced = 0.0
    if lp.mode == Mode.NOW:
        forced = max_w
    elif lp.mode == Mode.MINSOLAR:
        forced = min_w
    elif (
        # what solar is not expected to cover comes from the grid or the battery, as planned
        lp.mode == Mode.PLAN
        and slot is not None
        and block is not None
        and block[slot] > 0.5 * min_w
    ):
        forced = min(max(float(block[slot]), min_w), max_w)
    return Demand(
        lp.name,
        lp.priority,
        min_w=start_w,
        max_w=max_w,
        forced_w=forced,
        running=st.on or start_on_battery or run,
        lean_w=_lean_w(st, buffer_ok, start_on_battery, run, min_w),
    )


def _lean_w(
    st: LoadpointState,
    buffer_ok: bool,
    start_on_battery: bool,
    run: bool,
    min_w: float,
) -> float:
    """How much of the battery's allowance a charge may lean on: above the buffer SoC a
    started charge as much as it needs (in ``solar`` mode through a cloud, not longer); a
    planned solar run its shortfall."""
    if buffer_ok and (st.on or start_on_battery):
        return float("inf")
    return SOLAR_RUN_LEAN * min_w if run else 0.0


def _fallback(
    lp: LoadpointSettings, st: LoadpointState, settings: SiteSettings, what: str, now: datetime
) -> tuple[LoadpointState, list[Command], str]:
    """Stale data: the configured safe state, and nothing computed from the stale values."""
    cmds: list[Command] = []
    if not st.on:
        return st, cmds, f"{what}: safe fallback (stay off)"
    if settings.stale.fallback == "stop":
        cmds.append(ChargerCommand(lp.name, enable=False))
        return stopped(st, now), cmds, f"{what}: safe fallback (stopped)"
    low = lp.charger.min_current_a
    if st.current_a != low:
        if _commands_left(lp, st) <= _STOP:
            return st, cmds, f"{what}: safe fallback, but {_used_up(lp, st)}"
        cmds.append(ChargerCommand(lp.name, current_a=low))
        st = replace(st, current_a=low, current_at=now)
    return st, cmds, f"{what}: safe fallback (holding {low:g} A)"


def _commands(
    lp: LoadpointSettings,
    st: LoadpointState,
    was_on: bool,
    on: bool,
    amps: float,
    phases: int,
    grant: float,
    allowance: float,
    now: datetime,
    view: LoadpointSnapshot,
) -> tuple[list[Command], LoadpointState, str]:
    name = lp.name
    switchable = lp.charger.phases == "auto"
    if on and not was_on:
        cmd = ChargerCommand(
            name, enable=True, current_a=amps, phases=phases if switchable else None
        )
        return [cmd], replace(st, current_a=amps, current_at=now), ""
    if not on:
        # also a charger found enabled behind our back (a restart, a lost command), once
        # a reading newer than our last switch shows it
        rogue = view.charger.enabled and (
            st.switched_at is None or view.charger.at > st.switched_at
        )
        return ([ChargerCommand(name, enable=False)] if was_on or rogue else []), st, ""
    left = _commands_left(lp, st)
    if (
        switchable
        and phases != view.charger.phases
        and st.phase_switched_at == now
        and left > _STOP
    ):
        cmd = ChargerCommand(name, current_a=amps, phases=phases)
        return [cmd], replace(st, current_a=amps, current_at=now), ""
    if abs(amps - st.current_a) < max(lp.budget.deadband_a, lp.charger.resolution_a) - 1e-9:
        return [], st, ""
    if left <= _STOP:
        return [], st, _used_up(lp, st)
    waited = float("inf") if st.current_at is None else (now - st.current_at).total_seconds()
    volts = voltage(view.charger, lp.charger)
    overdraw = power_w(st.current_a, phases, volts) - grant
    urgent = amps < st.current_a and overdraw > allowance
    if waited >= lp.budget.min_interval_s or urgent:
        return (
            [ChargerCommand(name, current_a=amps)],
            replace(st, current_a=amps, current_at=now),
            "",
        )
    left = lp.budget.min_interval_s - waited
    return [], st, f"next change in {duration(left)} (command budget)"


_START, _STOP = 2, 1  # commands a start (its current, then enable) and a stop count for


def _commands_left(lp: LoadpointSettings, st: LoadpointState) -> float:
    """What is left of the session's command budget (infinite without one)."""
    cap = lp.budget.max_per_session
    return float("inf") if cap is None else cap - st.session_commands


def spent(st: LoadpointState, cmds: Iterable[Command]) -> LoadpointState:
    """``st`` with the charger commands ``cmds`` counted against the session's budget."""
    n = sum(
        (c.enable is not None) + (c.current_a is not None)
        for c in cmds
        if isinstance(c, ChargerCommand)
    )
    return replace(st, session_commands=st.session_commands + n) if n else st


def _used_up(lp: LoadpointSettings, st: LoadpointState) -> str:
    return (
        f"session command budget used ({st.session_commands} of"
        f" {lp.budget.max_per_session}, the last kept for the stop)"
    )


def _reason(
    lp: LoadpointSettings,
    on: bool,
    grant: float,
    st: LoadpointState,
    phases: int,
    forced: bool,
    gate_note: str,
    phase_note: str,
    budget_note: str,
    snapshot: SiteSnapshot,
    now: datetime,
) -> str:
    notes = ", ".join(n for n in (gate_note, phase_note, budget_note) if n and n != "started")
    if on:
        if forced and lp.mode == Mode.PLAN:
            price = ""
            if snapshot.rates is not None:
                i = snapshot.rates.slot_index(now)
                if 0 <= i < len(snapshot.rates):
                    price = f" at {snapshot.rates.import_eur_per_kwh[i]:.3f} EUR/kWh"
            head = f"planned grid charging {st.current_a:g} A x {phases}p{price}"
        elif forced:
            head = f"{lp.mode.value}: charging {st.current_a:g} A x {phases}p"
        elif grant > 0:
            head = f"charging {st.current_a:g} A x {phases}p from surplus"
        else:
            head = f"holding {st.current_a:g} A"
    else:
        head = "waiting for surplus" if grant > 0 or not notes else "idle"
        if grant <= 0 and not notes:
            head = "not enough surplus to start"
    return f"{head}, {notes}" if notes else head
