"""The push receiver over HTTP (ASGI in process): answers, storage, the sink, the key's
secrecy; and the ``surplus push-key`` commands that make its keys."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import Result
from starlette.applications import Starlette
from typer.testing import CliRunner

from surplus.cli import app
from surplus.integrations.push.models import PushedReading
from surplus.integrations.push.receiver import LEGACY_PATH, MAX_BODY_BYTES, PUSH_PATH, push_routes
from surplus.store import Store

T0 = datetime(2024, 6, 10, 12, 0, tzinfo=UTC)
METERS = {"production_kw": 4.2, "net_import_kw": -2.9, "consumption_kw": 1.3}


@dataclass
class Site:
    """A receiver over a store with one key, its clock set by the test, its sink recording."""

    store: Store
    key: str
    now: datetime = T0
    delivered: list[tuple[str, PushedReading | None, frozenset[str]]] = field(default_factory=list)
    client: httpx.AsyncClient | None = None

    def sink(self, source: str, reading: PushedReading | None, flags: frozenset[str]) -> None:
        self.delivered.append((source, reading, flags))

    async def push(self, body: Any, path: str = PUSH_PATH) -> httpx.Response:
        assert self.client is not None
        if isinstance(body, bytes):
            return await self.client.post(path, content=body)
        return await self.client.post(path, json=body)

    def stored(self, source: str = "pv-script") -> list[dict[str, Any]]:
        return [
            {"payload": m.payload, "flags": m.flags, "status": m.status}
            for m in reversed(self.store.push_messages.recent(source))
        ]


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    store = Store.open(tmp_path / "surplus.db", flush_interval_s=3600.0)
    site = Site(store, store.push_keys.create("pv-script", T0))
    routes = push_routes(store.push_keys, store.push_messages, site.sink, lambda: site.now)
    transport = httpx.ASGITransport(app=Starlette(routes=routes))
    async with httpx.AsyncClient(transport=transport, base_url="http://push.test") as client:
        site.client = client
        yield site
    store.close()


def accepted(payload: dict[str, Any], *flags: str) -> dict[str, Any]:
    return {"payload": payload, "flags": set(flags), "status": 200}


async def test_an_accepted_push_answers_ok_with_its_warnings(site: Site) -> None:
    meters = {**METERS, "battery_discharge_kw": 0.0, "battery_soc": 55, "battery_energy_kwh": 7.4}
    answer = await site.push({"apiKey": site.key, "siteMeters": meters, "extra": True})
    assert answer.status_code == 200
    assert answer.json() == {"success": True, "message": "OK", "warnings": ["soc_percent"]}
    [(source, reading, flags)] = site.delivered
    assert (source, flags) == ("pv-script", {"soc_percent"})
    assert reading is not None
    assert reading.at == T0
    assert reading.grid.power_w == pytest.approx(-2900.0)
    assert reading.battery is not None
    assert reading.battery.soc_pct == pytest.approx(55.0)
    assert site.stored() == [accepted({"siteMeters": meters}, "soc_percent")]


async def test_a_balance_violation_is_accepted_stored_and_flagged(site: Site) -> None:
    meters = {**METERS, "net_import_kw": 2.9}
    answer = await site.push({"apiKey": site.key, "siteMeters": meters})
    assert answer.status_code == 200
    assert answer.json()["warnings"] == ["balance"]
    assert site.stored() == [accepted({"siteMeters": meters}, "balance")]
    assert [flags for _, _, flags in site.delivered] == [{"balance"}]


async def test_an_error_push_is_stored_and_passes_no_reading(site: Site) -> None:
    answer = await site.push({"apiKey": site.key, "error": "inverter offline"})
    assert answer.status_code == 200
    assert answer.json() == {"success": True, "message": "OK", "warnings": ["error"]}
    assert site.delivered == [("pv-script", None, {"error"})]
    assert site.stored()[0]["payload"] == {"error": "inverter offline"}


@pytest.mark.parametrize(
    ("body", "field", "error"),
    [
        (b"{not json", None, "the body is not JSON"),
        (b"\xff\xfe\x00garbage", None, "the body is not JSON"),
        (b"[" * 50_000, None, "the body is not JSON"),
        (["a list"], None, "the body must be a JSON object"),
        ({"siteMeters": {"net_import_kw": "much"}}, "siteMeters.net_import_kw", None),
        ({"siteMeters": {"net_import_kw": 1, "battery_soc": 140}}, "siteMeters.battery_soc", None),
        ({"siteMeters": {"production_kw": 1.0}}, "siteMeters.net_import_kw", None),
        ({}, "siteMeters", None),
        ({"tsms": "yesterday", "error": "x"}, "tsms", None),
    ],
)
async def test_a_bad_body_is_a_400_naming_the_field_and_stores_nothing(
    site: Site, body: Any, field: str | None, error: str | None
) -> None:
    if isinstance(body, dict):
        body = {"apiKey": site.key, **body}
    answer = await site.push(body)
    assert answer.status_code == 400
    shown = answer.json()
    assert shown["success"] is False
    assert shown["field"] == field
    assert shown["error"] == error if error else shown["error"]
    assert site.stored() == []
    assert site.delivered == []


async def test_a_body_above_64_kib_is_refused(site: Site) -> None:
    big = json.dumps({"apiKey": site.key, "error": "x", "pad": "y" * MAX_BODY_BYTES}).encode()
    answer = await site.push(big)
    assert answer.status_code == 413
    assert answer.json()["success"] is False
    assert site.stored() == []


async def test_a_missing_unknown_or_revoked_key_is_a_401_and_stores_nothing(site: Site) -> None:
    bodies = [
        {"siteMeters": METERS},
        {"apiKey": "", "siteMeters": METERS},
        {"apiKey": 12345, "siteMeters": METERS},
        {"apiKey": "x" * 43, "siteMeters": METERS},
        {"apiKey": "bad", "siteMeters": {"net_import_kw": "much"}},  # the key is checked first
    ]
    for body in bodies:
        answer = await site.push(body)
        assert answer.status_code == 401, body
        assert answer.json()["success"] is False
        assert answer.json()["field"] == "apiKey"
    site.store.push_keys.revoke("pv-script", T0)
    answer = await site.push({"apiKey": site.key, "siteMeters": METERS})
    assert answer.status_code == 401
    assert answer.json()["error"] == "unknown or revoked apiKey"
    assert site.stored() == []
    assert site.delivered == []


async def test_pushing_again_within_30_s_is_a_429_with_retry_after(site: Site) -> None:
    body = {"apiKey": site.key, "siteMeters": METERS}
    assert (await site.push(body)).status_code == 200
    site.now = T0 + timedelta(seconds=10.5)
    answer = await site.push(body)
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "20"
    assert answer.json()["success"] is False
    assert answer.json()["retry_after_s"] == 20
    site.now = T0 + timedelta(seconds=30)
    assert (await site.push(body)).status_code == 200
    assert len(site.stored()) == 2
    assert len(site.delivered) == 2


async def test_the_interval_is_per_source_and_a_clock_stepped_back_is_no_reason(
    site: Site,
) -> None:
    other = site.store.push_keys.create("garage", T0)
    assert (await site.push({"apiKey": site.key, "siteMeters": METERS})).status_code == 200
    assert (await site.push({"apiKey": other, "siteMeters": METERS})).status_code == 200
    site.now = T0 - timedelta(minutes=5)
    assert (await site.push({"apiKey": site.key, "siteMeters": METERS})).status_code == 200


async def test_the_legacy_route_takes_the_key_as_site_id(site: Site) -> None:
    answer = await site.push({"siteId": site.key, "siteMeters": METERS}, LEGACY_PATH)
    assert answer.status_code == 200
    assert answer.json()["success"] is True
    assert site.stored()[0]["payload"] == {"siteMeters": METERS}
    site.now = T0 + timedelta(seconds=1)  # the same source: the same interval
    answer = await site.push({"apiKey": site.key, "siteMeters": METERS})
    assert answer.status_code == 429
    site.now = T0 + timedelta(minutes=1)
    answer = await site.push({"apiKey": site.key, "siteMeters": METERS}, LEGACY_PATH)
    assert answer.status_code == 401
    assert answer.json()["field"] == "siteId"


async def test_only_post_is_served(site: Site) -> None:
    assert (await site.client.get(PUSH_PATH)).status_code == 405


async def test_the_key_is_never_stored_logged_or_echoed(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answers = [
        await site.push({"apiKey": site.key, "siteMeters": METERS}),
        await site.push({"apiKey": site.key, "siteMeters": METERS}),  # 429
        await site.push({"apiKey": site.key + "x", "siteMeters": METERS}),  # 401
        await site.push({"apiKey": site.key, "siteMeters": {"net_import_kw": site.key}}),  # 400
        await site.push({"siteId": site.key, "siteMeters": METERS}, LEGACY_PATH),  # 429
    ]
    assert [a.status_code for a in answers] == [200, 429, 401, 400, 429]
    assert "refused (401)" in caplog.text
    for answer in answers:
        assert site.key not in answer.text
    assert site.key not in caplog.text
    assert site.key not in json.dumps(site.stored(), default=sorted)
    for file in site.store.path.parent.iterdir():
        assert site.key.encode() not in file.read_bytes()


async def test_push_key_commands_make_list_and_revoke_the_receivers_keys(tmp_path: Path) -> None:
    config = tmp_path / "surplus.toml"
    config.write_text(
        f'[service]\ndata_dir = "{tmp_path / "data"}"\n'
        '[[devices]]\ntype = "push"\nname = "pv-script"\n'
    )

    def command(*args: str) -> Result:
        return CliRunner().invoke(app, ["push-key", *args, "--config", str(config)])

    unknown = command("create", "attic")
    assert unknown.exit_code == 2
    assert 'no [[devices]] table with type = "push" and name = "attic"' in unknown.stderr
    made = command("create", "pv-script")
    assert made.exit_code == 0, made.output
    key = made.stdout.strip()
    assert len(key) == 43
    assert "shown only now" in made.stderr
    assert PUSH_PATH in made.stderr
    again = command("create", "pv-script")
    assert again.exit_code == 1
    assert "already has a valid push key" in again.stderr

    with Store.open(tmp_path / "data" / "surplus.db") as store:
        site = Site(store, key)
        routes = push_routes(store.push_keys, store.push_messages, site.sink, lambda: site.now)
        transport = httpx.ASGITransport(app=Starlette(routes=routes))
        async with httpx.AsyncClient(transport=transport, base_url="http://push.test") as client:
            site.client = client
            assert (await site.push({"apiKey": key, "error": "x"})).status_code == 200

            listed = command("list")
            assert listed.exit_code == 0
            assert listed.stdout.startswith("pv-script: created ")
            assert listed.stdout.rstrip().endswith(", valid")
            assert key not in listed.output

            revoked = command("revoke", "pv-script")
            assert revoked.exit_code == 0, revoked.output
            site.now += timedelta(minutes=1)
            assert (await site.push({"apiKey": key, "error": "x"})).status_code == 401

    assert ", revoked " in command("list").stdout
    assert command("revoke", "pv-script").exit_code == 1
    assert command("create", " ").exit_code == 2
    config.write_text("[service]\nnonsense = 1\n")
    assert command("list").exit_code == 2
