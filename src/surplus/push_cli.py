"""The push API's commands: ``surplus push-key`` and ``surplus sim push-sender``.

- ``surplus push-key create NAME`` makes the key a pushing script sends as Charge HQ's
  ``apiKey`` and prints it once, alone on standard output (the advice goes to standard
  error, so ``KEY=$(surplus push-key create …)`` works); only its hash is stored. ``list``
  shows the names and times, never a key; ``revoke`` makes a running service refuse it at
  once. All three find the store through the config file's ``service.data_dir``.
- ``surplus sim push-sender`` pushes a simulated site's meters to a receiver, as a Charge HQ
  script would, with faults on request (``integrations.push.simulator``). It behaves as a
  pushing client must: at most one push per 30 s (unless ``--unsafe-fast``), a little later
  at random; a sample that fails (no answer, a 5xx) is dropped, never sent again later; a
  429 waits its ``Retry-After``; a refused key (401 or 403) stops it with exit code 1.
"""

from __future__ import annotations

import math
import random
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from surplus.cli_config import ConfigFile, config_of, store_of
from surplus.domain.errors import SurplusError
from surplus.terminal import fail, say

if TYPE_CHECKING:
    import httpx


__all__ = ["push_key_app", "sim_push_sender"]

push_key_app = typer.Typer(
    help="The keys scripts push the site's meters with (Charge HQ's push API).",
    no_args_is_help=True,
)

SourceName = Annotated[str, typer.Argument(help="The pushing source's name.")]

MIN_INTERVAL_S = 30.0  # Charge HQ's floor for a pushing client
JITTER = 0.1  # each wait is up to this share longer, so that clients do not move in step
TIMEOUT_S = 10.0
MAX_RETRY_AFTER_S = 3600.0


def _time(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M:%S} UTC"


@push_key_app.command("create")
def push_key_create(name: SourceName, config: ConfigFile) -> None:
    """Make a push key for NAME and show it, this once."""
    from surplus.integrations.push.config import PushConfig
    from surplus.integrations.push.receiver import PUSH_PATH

    sources = [d.name for d in config_of(config).devices if isinstance(d, PushConfig)]
    if name not in sources:
        raise fail(
            f'error: {config} has no [[devices]] table with type = "push" and name ='
            f' "{name}" (push devices: {", ".join(sources) or "none"}); add one first',
            2,
        )
    try:
        with store_of(config) as store:
            key = store.push_keys.create(name, datetime.now(UTC))
    except ValueError as err:
        raise fail(f"error: {err} (surplus push-key revoke {name})") from None
    except SurplusError as err:
        raise fail(f"error: {err}") from None
    say(f"push key for {name}; it is shown only now and cannot be shown again:", err=True)
    say(key)
    say(
        f'A script sends it as "apiKey" in the JSON body of each POST to {PUSH_PATH} on'
        " surplus's API, as it would to Charge HQ.",
        err=True,
    )


@push_key_app.command("list")
def push_key_list(config: ConfigFile) -> None:
    """The push keys' names, when each was made and revoked (never the keys)."""
    try:
        with store_of(config) as store:
            keys = store.push_keys.list()
    except SurplusError as err:
        raise fail(f"error: {err}") from None
    if not keys:
        say("no push keys")
    for key in keys:
        revoked = "valid" if key.revoked_at is None else f"revoked {_time(key.revoked_at)}"
        say(f"{key.source}: created {_time(key.created_at)}, {revoked}")


@push_key_app.command("revoke")
def push_key_revoke(name: SourceName, config: ConfigFile) -> None:
    """Revoke NAME's push key: its pushes are refused (401) from now on."""
    try:
        with store_of(config) as store:
            revoked = store.push_keys.revoke(name, datetime.now(UTC))
    except SurplusError as err:
        raise fail(f"error: {err}") from None
    if not revoked:
        raise fail(f"error: {name} has no valid push key")
    say(f"{name}: push key revoked; a running service refuses it from now on")


def sim_push_sender(
    url: Annotated[
        str,
        typer.Option(
            help="The full push URL, e.g. http://127.0.0.1:8080/api/public/push-solar-data."
        ),
    ],
    key: Annotated[
        str | None,
        typer.Option(
            envvar="SURPLUS_PUSH_KEY",
            help="The push key (better from $SURPLUS_PUSH_KEY: a command line is visible to"
            " other users).",
            show_default=False,
        ),
    ] = None,
    interval_s: Annotated[
        float, typer.Option("--interval-s", help="Real seconds between pushes; at least 30.")
    ] = 60.0,
    count: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many pushes; default: Ctrl-C.")
    ] = None,
    speed: Annotated[
        float, typer.Option(help="How many times faster than real time the simulated day runs.")
    ] = 1.0,
    start: Annotated[
        str | None,
        typer.Option(
            help="The simulated time to start at, ISO 8601 with a UTC offset; default: now."
        ),
    ] = None,
    no_battery: Annotated[
        bool, typer.Option("--no-battery", help="A site without a home battery.")
    ] = False,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            "--fault",
            help="A fault in every push: bad-sign, kw-as-w, soc-percent, missing-key or outage."
            " Repeat for several.",
        ),
    ] = None,
    unsafe_fast: Annotated[
        bool,
        typer.Option(
            "--unsafe-fast", help="Allow intervals below 30 s (tests and demos on this machine)."
        ),
    ] = False,
) -> None:
    """Push a simulated site's meters to a Charge HQ push receiver, like a script would."""
    import httpx

    from surplus.integrations.push.simulator import FAULTS, SimulatedSite, payload
    from surplus.sim.day import speed_clock
    from surplus.sim.devices import HomeBattery

    faults = frozenset(fault or [])
    unknown = sorted(faults - set(FAULTS))
    if unknown:
        raise typer.BadParameter(
            f"unknown fault {unknown[0]!r}; choose from {', '.join(FAULTS)}", param_hint="--fault"
        )
    if "soc-percent" in faults and no_battery:
        raise typer.BadParameter("soc-percent needs a battery", param_hint="--fault")
    if not url.startswith(("http://", "https://")):
        raise typer.BadParameter("must be an http:// or https:// URL", param_hint="--url")
    if not key and "missing-key" not in faults:
        raise typer.BadParameter("missing (or set SURPLUS_PUSH_KEY)", param_hint="--key")
    if not interval_s > 0 or (interval_s < MIN_INTERVAL_S and not unsafe_fast):
        raise typer.BadParameter(
            f"must be at least {MIN_INTERVAL_S:g} (Charge HQ's floor) without --unsafe-fast",
            param_hint="--interval-s",
        )
    if not 0.0 < speed <= 100_000.0:
        raise typer.BadParameter("must be above 0 and at most 100000", param_hint="--speed")
    clock = speed_clock(speed, None if start is None else _start(start))
    site = SimulatedSite(None if no_battery else HomeBattery(), step_s=interval_s * speed)

    pushed = 0
    try:
        with httpx.Client(timeout=min(TIMEOUT_S, max(interval_s, 1.0))) as client:
            while count is None or pushed < count:
                pushed += 1
                sent = time.monotonic()
                at = clock()
                body = payload(site.meters(at), key, faults)
                wait_s = _push(client, url, body, f"push {pushed} [{at:%H:%M:%S} simulated]")
                if count is not None and pushed >= count:
                    break
                wait_s = max(wait_s, interval_s * (1.0 + random.uniform(0.0, JITTER)))
                time.sleep(max(0.0, sent + wait_s - time.monotonic()))
    except KeyboardInterrupt:
        pass
    say("stopped")


def _start(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise typer.BadParameter(
            "must be an ISO 8601 time with a UTC offset, e.g. 2024-06-10T12:00:00Z",
            param_hint="--start",
        )
    return at


def _push(client: httpx.Client, url: str, body: dict[str, object], what: str) -> float:
    """Send one push and say how it went; the seconds the receiver asked to wait (else 0).
    Raises ``typer.Exit(1)`` when the key is refused."""
    import httpx

    try:
        answer = client.post(url, json=body)
    except httpx.HTTPError as err:
        say(f"{what}: no answer ({type(err).__name__}: {err}); sample dropped")
        return 0.0
    status = answer.status_code
    try:
        shown = answer.json()
    except ValueError:
        shown = None
    if isinstance(shown, dict):
        message = str(shown.get("message") or shown.get("error") or "")
        warnings = shown.get("warnings")
    else:
        message, warnings = "(no JSON answer)", None
    line = f"{what}: {status} {message}".rstrip()
    if isinstance(warnings, list) and warnings:
        line += f"; warnings: {', '.join(map(str, warnings))}"
    if status in (401, 403):
        raise fail(
            f"{line}\nerror: the receiver refused the key; stopping (a revoked or wrong key:"
            " make a new one with `surplus push-key create`)"
        )
    wait_s = 0.0
    if status == 429:
        wait_s = _retry_after(answer.headers.get("Retry-After"))
        line += f"; waiting {wait_s:g} s"
    elif status >= 500:
        line += "; sample dropped"
    say(line)
    return wait_s


def _retry_after(value: str | None) -> float:
    try:
        wait_s = float(value or 0)
    except ValueError:  # an HTTP date: rare enough to wait one interval instead
        return 0.0
    return min(max(wait_s, 0.0), MAX_RETRY_AFTER_S) if math.isfinite(wait_s) else 0.0
