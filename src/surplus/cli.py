"""The ``surplus`` command line."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import tempfile
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from surplus.credentials_cli import pin, secret_app
from surplus.domain.errors import ConfigError, SurplusError
from surplus.envoy_cli import auth_app, sim_envoy
from surplus.ocpp_cli import ca_app, charger_app, sim_ocpp_charger
from surplus.push_cli import push_key_app, sim_push_sender
from surplus.terminal import console, err_console, fail, say
from surplus.tesla_cli import auth_tesla, sim_tesla
from surplus.wallbox_cli import sim_wallbox

if TYPE_CHECKING:
    from surplus.config import ServiceConfig
    from surplus.demo import Demo
    from surplus.integrations.powerwall.simulator import ServedSimulator
    from surplus.integrations.registry import DeviceConfig

app = typer.Typer(
    help="surplus: a self-hosted home energy manager.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
sim_app = typer.Typer(
    help="Serve a simulated device on this machine, to try surplus without the hardware.",
    no_args_is_help=True,
)
app.add_typer(sim_app, name="sim")
app.add_typer(secret_app, name="secret")
app.command("pin")(pin)
app.add_typer(auth_app, name="auth")
sim_app.command("envoy")(sim_envoy)
app.add_typer(push_key_app, name="push-key")
sim_app.command("push-sender")(sim_push_sender)
app.add_typer(ca_app, name="ca")
app.add_typer(charger_app, name="charger")
sim_app.command("ocpp-charger")(sim_ocpp_charger)
sim_app.command("tesla")(sim_tesla)
auth_app.command("tesla")(auth_tesla)
sim_app.command("wallbox")(sim_wallbox)

LOG_LEVELS = ("debug", "info", "warning", "error")
LogLevel = Annotated[str, typer.Option(help=f"Logging to stderr: {', '.join(LOG_LEVELS)}.")]


@app.callback()
def main() -> None:
    """surplus: charge the car from solar surplus and the cheapest hours."""


@app.command()
def bench(
    track: Annotated[
        list[str] | None,
        typer.Option(
            "--track",
            help="Track to replay: nl-2024 (Dutch day-ahead prices 2024, Amsterdam weather, "
            "15-min steps) or payerne-1min (BSRN Payerne June 2016, 1-min steps). "
            "Repeat for several; default both.",
        ),
    ] = None,
    pattern: Annotated[
        list[str] | None,
        typer.Option(
            "--pattern",
            help="Plug-in pattern: commuter, home-office, stochastic or home-day. Repeat for "
            "several; default: the track's own (nl-2024: commuter and home-office; "
            "payerne-1min: home-day).",
        ),
    ] = None,
    weather: Annotated[
        Path | None,
        typer.Option(
            help="Any TMY2/TMY3/EPW weather file pvlib reads, instead of the track's weather "
            "(placed on the price year by month, day and hour).",
        ),
    ] = None,
    prices: Annotated[
        Path | None,
        typer.Option(
            help="CSV of day-ahead prices (timestamp, price per MWh), instead of the track's.",
        ),
    ] = None,
    days: Annotated[
        int | None, typer.Option(min=1, help="Replay only the first N days of each track.")
    ] = None,
    strategy: Annotated[
        list[str] | None,
        typer.Option(
            help="Strategies to compare: surplus, naive, evcc, evcc-1p3p, chargehq (the "
            "optimum always runs). Default all.",
        ),
    ] = None,
    json_out: Annotated[
        Path | None,
        typer.Option(
            "--json",
            help="Write {track: {pattern: {strategy: {figure: value}}}} to this file.",
        ),
    ] = None,
    plot_out: Annotated[
        Path | None, typer.Option("--plot", help="Draw a PNG comparing the strategies.")
    ] = None,
    forecast: Annotated[
        str,
        typer.Option(
            help="The solar forecast surplus plans with: weather (an emulated weather-service "
            "forecast, with the errors of one) or persistence (made from the past only).",
        ),
    ] = "weather",
    jobs: Annotated[
        int, typer.Option(min=1, help="Replays run in parallel (default: 2, one per core).")
    ] = 2,
) -> None:
    """Replay real data through surplus's controller, the baselines and the LP optimum."""
    from surplus.bench import report, runner, strategies, tracks
    from surplus.sim.patterns import PATTERNS
    from surplus.sim.world import FORECASTS

    names = track or list(tracks.TRACKS)
    chosen = strategy or list(strategies.STRATEGIES)
    try:
        for name in names:
            if name not in tracks.TRACKS:
                raise typer.BadParameter(f"unknown track {name!r}", param_hint="--track")
        for p in pattern or []:
            if p not in PATTERNS:
                raise typer.BadParameter(f"unknown pattern {p!r}", param_hint="--pattern")
        for s in chosen:
            if s not in strategies.STRATEGIES:
                raise typer.BadParameter(f"unknown strategy {s!r}", param_hint="--strategy")
        if "naive" not in chosen:
            chosen.append("naive")  # cost-gap closure is measured from it
        if forecast not in FORECASTS:
            raise typer.BadParameter(
                f"unknown forecast {forecast!r}; choose one of {', '.join(FORECASTS)}",
                param_hint="--forecast",
            )
        for path, flag in ((weather, "--weather"), (prices, "--prices")):
            if path is not None and not path.is_file():
                raise SurplusError(f"{flag} {path}: no such file")
        started = time.perf_counter()
        with console.status("reading weather, prices and load..."):
            built = [
                tracks.build(n, weather=weather, prices=prices, days=days, forecast=forecast)
                for n in names
            ]
        plan = {t.name: tuple(pattern) if pattern else t.patterns for t in built}
        total = sum(len(plan[t.name]) * (len(chosen) + 1) for t in built)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("replaying", total=total)

            def done(t: str, p: str, s: str, f: object) -> None:
                progress.update(task, advance=1, description=f"{t} / {p} / {s} done")

            results = runner.run(built, plan, chosen, jobs=jobs, on_done=done)
    except SurplusError as err:
        err_console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    report.print_tables(results, console)
    console.print(f"whole benchmark: {time.perf_counter() - started:.1f} s")
    if json_out:
        report.write_json(results, json_out)
        console.print(f"figures written to {json_out}")
    if plot_out:
        report.plot(results, plot_out)
        console.print(f"plot written to {plot_out}")


@app.command("check-config")
def check_config(
    file: Annotated[Path, typer.Argument(help="The service's TOML config file.")],
) -> None:
    """Check a config file: every problem on a line of its own, named by its key path."""
    from surplus.config import load_config

    try:
        config = load_config(file)
    except ConfigError as err:
        raise fail(str(err), 2) from None
    for line in [f"{file}: ok", *_summary(config)]:
        say(line)


def _reached(device: DeviceConfig) -> str:
    """Where surplus reaches ``device``, or that it comes to surplus."""
    from surplus.integrations.registry import is_polled
    from surplus.integrations.tesla.config import TeslaConfig
    from surplus.integrations.wallbox.config import WallboxConfig

    if is_polled(device):
        return device.host
    if isinstance(device, TeslaConfig):
        return f"Fleet API {device.base_url}"
    if isinstance(device, WallboxConfig):
        return f"Wallbox cloud {device.api_url}"
    return "connects to surplus"


def _summary(config: ServiceConfig) -> list[str]:
    service = config.service
    devices = [f"{d.name} ({d.type}, {_reached(d)})" for d in config.devices]
    loadpoints = [f"{lp.name} ({lp.mode})" for lp in config.loadpoints]
    return [
        f"  API on {service.api_host}:{service.api_port}, data in {service.data_dir}",
        f"  devices: {', '.join(devices) or 'none'}",
        f"  loadpoints: {', '.join(loadpoints) or 'none'}",
    ]


@app.command()
def run(
    config: Annotated[Path, typer.Option("--config", help="The service's TOML config file.")],
    log_level: LogLevel = "info",
) -> None:
    """Run the service: poll the devices, decide, record, answer the API; Ctrl-C stops it."""
    from surplus.config import load_config
    from surplus.runtime.service import Service, until_signalled

    _logging(log_level)
    try:
        service = Service(load_config(config), on_ready=_say_running)
    except ConfigError as err:
        raise fail(str(err), 2) from None
    _run_until_stopped(lambda: until_signalled(service.run()))


def _say_running(url: str) -> None:
    say(f"surplus is running: {url}/api/v1/state  (Ctrl-C stops it)")


@app.command()
def demo(
    data: Annotated[
        Path | None,
        typer.Option(
            help="Keep the demo's store, vault and config file here; default: a temporary"
            " directory, removed at exit."
        ),
    ] = None,
    speed: Annotated[
        float, typer.Option(help="How many times faster than real time the simulated day runs.")
    ] = 60.0,
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="The API's port on 127.0.0.1; 0 picks a free one.")
    ] = 8080,
    poll_s: Annotated[
        float, typer.Option("--poll-s", help="Seconds between two polls of the gateway.")
    ] = 2.0,
    site: Annotated[
        str,
        typer.Option(
            help="The simulated site: powerwall (a Powerwall 2 gateway), envoy (an Enphase"
            " IQ Gateway and its cloud) or push (an inverter script posting Charge HQ's push"
            " API)."
        ),
    ] = "powerwall",
    charger: Annotated[
        str | None,
        typer.Option(
            help="A simulated charger too, its car plugged in by day: ocpp (an OCPP 1.6J"
            " wallbox connecting to surplus's central system), wallbox (a Wallbox through its"
            " cloud) or tesla (a Tesla through the Fleet API)."
        ),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            help="The simulated local time of day the demo begins at, HH:MM (e.g. 07:00 to"
            " watch a whole day of charging); default: now.",
            show_default=False,
        ),
    ] = None,
    log_level: LogLevel = "warning",
) -> None:
    """Run surplus against a simulated site on this machine; Ctrl-C stops it."""
    from surplus.demo import CHARGERS, SITES, run_demo

    if site not in SITES:
        raise typer.BadParameter(f"choose one of {', '.join(SITES)}", param_hint="--site")
    if charger is not None and charger not in CHARGERS:
        raise typer.BadParameter(f"choose one of {', '.join(CHARGERS)}", param_hint="--charger")

    if not 0.0 < speed <= 100_000.0:
        raise typer.BadParameter("must be above 0 and at most 100000", param_hint="--speed")
    if not 0.0 < poll_s <= 3600.0:
        raise typer.BadParameter("must be above 0 and at most 3600", param_hint="--poll-s")
    begins = None if start is None else _time_today(start)
    _logging(log_level)
    with contextlib.ExitStack() as stack:
        if data is None:
            data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="surplus-demo-")))
        data_dir = data.resolve()
        _run_until_stopped(
            lambda: run_demo(
                data_dir,
                speed=speed,
                poll_s=poll_s,
                port=port,
                on_ready=_say_demo_ready,
                site=site,
                charger=charger,
                start=begins,
            )
        )


def _time_today(hh_mm: str) -> datetime:
    """Today at ``hh_mm`` local time, or a clear error naming ``--start``."""
    try:
        at = datetime.strptime(hh_mm, "%H:%M")
    except ValueError:
        raise typer.BadParameter(f"{hh_mm!r} is not HH:MM", param_hint="--start") from None
    return (
        datetime.now().astimezone().replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
    )


@app.command("bench-service")
def bench_service(
    minutes: Annotated[
        float, typer.Option(help="How long to measure, once the demo's API answers.")
    ] = 5.0,
    poll_s: Annotated[
        float, typer.Option("--poll-s", help="Seconds between two polls of the gateway.")
    ] = 10.0,
    speed: Annotated[
        float, typer.Option(help="How many times faster than real time the simulated day runs.")
    ] = 1.0,
) -> None:
    """Run the demo and print its resident memory and CPU share (target: under 150 MB and
    2 % of one core)."""
    from surplus.bench.service import measure

    if not 0.0 < minutes <= 24 * 60:
        raise typer.BadParameter("must be above 0 and at most a day", param_hint="--minutes")
    say(
        f"surplus demo, gateway polled every {poll_s:g} s, {speed:g}x real time,"
        f" for {minutes:g} min"
    )
    say(f"{'time s':>8} {'rss MB':>8} {'peak MB':>8} {'cpu %':>7}")
    try:
        result = measure(
            minutes=minutes,
            poll_s=poll_s,
            speed=speed,
            on_row=lambda r: say(
                f"{r.elapsed_s:8.1f} {r.rss_mb:8.1f} {r.peak_mb:8.1f} {r.cpu_pct:7.2f}"
            ),
        )
    except (SurplusError, OSError) as err:
        raise fail(f"error: {err}", 1) from None
    say(f"integrations at the end: {result.integrations}")
    say(result.summary())


SITE_NAMES = {"powerwall": "Powerwall", "envoy": "Enphase Envoy", "push": "push API"}


def _say_demo_ready(running: Demo) -> None:
    api = f"{running.api_url}/api/v1"
    since = datetime.now(UTC).replace(microsecond=0)
    day = [(since + timedelta(days=d)).isoformat().replace("+00:00", "Z") for d in (0, 1)]
    for line in [
        f"surplus demo is running: a simulated {SITE_NAMES[running.site]} site,"
        f" {running.speed:g}x real time",
        f"  state:    {api}/state",
        f"  history:  {api}/history?series={running.device}.solar_w"
        f"&from={day[0]}&to={day[1]}&step=60",
        f"  sessions: {api}/sessions",
        f"  data:     {running.data_dir}",
        "Ctrl-C stops it.",
    ]:
        say(line)


def _run_until_stopped(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run the service's coroutine; its errors end the command with exit code 1."""
    try:
        asyncio.run(main())
    except KeyboardInterrupt:  # Ctrl-C before the service's own handlers were in place
        pass
    except (SurplusError, OSError) as err:
        raise fail(f"error: {err}", 1) from None
    say("stopped")


def _logging(level: str) -> None:
    if level not in LOG_LEVELS:
        raise typer.BadParameter(
            f"{level!r} is none of {', '.join(LOG_LEVELS)}", param_hint="--log-level"
        )
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if level != "debug":  # a line per request to every device otherwise
        logging.getLogger("httpx").setLevel(logging.WARNING)


@sim_app.command("powerwall")
def sim_powerwall(
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port to listen on; 0 picks a free one.")
    ] = 8443,
    password: Annotated[
        str | None,
        typer.Option(help="The customer password; default: a random one, printed at start."),
    ] = None,
    host: Annotated[str, typer.Option(help="IPv4 address to listen on.")] = "127.0.0.1",
    firmware: Annotated[
        str,
        typer.Option(
            help="Firmware generation to mimic: 21.44 or 1.45 (vitals present), 23.44 (vitals"
            " gone, busy bursts, 3 logins a minute) or pw3 (a Powerwall 3: no /api/status,"
            " only meters, soe and grid status readable)."
        ),
    ] = "21.44",
    fault: Annotated[
        list[str] | None,
        typer.Option(
            "--fault",
            help="A fault active from the start; repeat for several. Faults can also be "
            'changed while it runs: POST /sim/faults {"add": [...], "remove": [...]}.',
        ),
    ] = None,
    http_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="Also serve plain HTTP on this port (0 picks a free one), answering 301 to"
            " HTTPS like a gateway.",
        ),
    ] = None,
    lockout_after: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Lock logins after this many failures in a row, until POST /sim/toggle.",
        ),
    ] = None,
    busy_rate: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Chance that a request starts a burst of 503 busy answers; default: the"
            " firmware's (0.05 on 23.44, else 0).",
        ),
    ] = None,
) -> None:
    """Serve a simulated Powerwall gateway (a Powerwall 3 with --firmware pw3) over HTTPS until
    Ctrl-C.
    """
    from surplus.integrations.powerwall.simstate import FAULTS, FIRMWARE, PowerwallSimulator
    from surplus.integrations.powerwall.simulator import serve
    from surplus.sim_cli import check_faults, listed, say_ready

    if firmware not in FIRMWARE:
        raise typer.BadParameter(
            f"unknown firmware {firmware!r}; choose one of {', '.join(FIRMWARE)}",
            param_hint="--firmware",
        )
    faults = check_faults(fault, FAULTS)
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        raise typer.BadParameter(
            f"{host!r} is not an IPv4 address (the certificate names the address)",
            param_hint="--host",
        ) from None
    if password == "":
        raise typer.BadParameter("must not be empty", param_hint="--password")
    password = password or secrets.token_urlsafe(9)
    sim = PowerwallSimulator(
        password, firmware=firmware, lockout_after=lockout_after, busy_rate=busy_rate
    )
    sim.faults.add(*faults)

    def ready(served: ServedSimulator) -> None:
        say_ready(
            f"Powerwall simulator (firmware {served.sim.firmware.version}) is ready",
            [
                ("url", served.url),
                *([("http", served.http_url)] if served.http_url else []),
                ("password", password),
                ("fingerprint", served.fingerprint),
                ("faults", listed(served.sim.faults)),
            ],
        )

    try:
        serve(sim, host=host, port=port, http_port=http_port, ready=ready)
    except OSError as err:
        ports = f"{port}" if http_port is None else f"{port} and {http_port}"
        raise fail(f"error: cannot serve on {host}:{ports} ({err.strerror or err})", 2) from None
    say("stopped")


if __name__ == "__main__":
    app()
