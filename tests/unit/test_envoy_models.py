"""The Envoy's wire models and token claims: tolerant parsing of what firmware sends."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from surplus.integrations.envoy import models as m
from surplus.integrations.envoy.simtokens import TokenAuthority, TokenRefused
from surplus.integrations.envoy.tokens import (
    INSTALLER,
    OWNER,
    RENEW_BEFORE,
    b64url_decode,
    b64url_encode,
    read_claims,
)
from surplus.security.vault import Secret

NOW = datetime(2024, 6, 10, 12, 0, tzinfo=UTC)

INFO = b"""<?xml version='1.0' encoding='UTF-8'?>
<envoy_info><time>1718000000</time>
  <device><sn>122301012345</sn><pn>800-00654-r08</pn><software>D8.3.5167</software>
  <euaid>4c8675</euaid><imeter>true</imeter></device>
  <web-tokens>true</web-tokens><package pname="app"><version>1.2.3</version></package>
</envoy_info>"""

# The reference's production.json, shortened as the reference shows it.
PRODUCTION = {
    "production": [
        {"type": "inverters", "activeCount": 12, "readingTime": 1753703609, "wNow": 3554,
         "whLifetime": 390554},
        {"type": "eim", "activeCount": 1, "measurementType": "production",
         "readingTime": 1753703631, "wNow": 5305.2, "whLifetime": 569121.6, "whToday": 19282.6,
         "whLastSevenDays": 550554.6, "rmsVoltage": 694.5,
         "lines": [{"wNow": 2968.9, "whLifetime": 308602.8, "rmsVoltage": 237.9}]},
    ],
    "consumption": [
        {"type": "eim", "measurementType": "total-consumption", "activeCount": 1, "wNow": 324.9,
         "whLifetime": 253002.2, "lines": []},
        {"type": "eim", "measurementType": "net-consumption", "activeCount": 1, "wNow": -4980.3,
         "whLifetime": -315944.2, "lines": []},
    ],
    "storage": [{"type": "acb", "activeCount": 0, "readingTime": 0, "wNow": 0, "whNow": 0,
                 "state": "idle"}],
}  # fmt: skip


def test_info_is_parsed_and_written_back() -> None:
    info = m.parse_info(INFO)
    assert (info.serial, info.part_number, info.software) == (
        "122301012345",
        "800-00654-r08",
        "D8.3.5167",
    )
    assert info.firmware == "8.3.5167"
    assert info.version == (8, 3, 5167)
    assert info.metered and info.web_tokens
    assert m.parse_info(m.info_xml(info, 1718000000).encode()) == info


@pytest.mark.parametrize(
    "content",
    [
        b"<html>not it</html>",
        b"not xml at all",
        b"<envoy_info><device><sn>1</sn></device></envoy_info>",
        b'<!DOCTYPE x [<!ENTITY a "aaaa">]><envoy_info/>',
    ],
)
def test_info_that_is_not_one_is_refused(content: bytes) -> None:
    with pytest.raises(ValueError, match="/info"):
        m.parse_info(content)


@pytest.mark.parametrize(
    ("software", "version"),
    [("D8.2.4264", (8, 2, 4264)), ("R5.0.62", (5, 0, 62)), ("7.6.175_f1a2", (7, 6, 175)),
     ("none", ())],
)  # fmt: skip
def test_versions(software: str, version: tuple[int, ...]) -> None:
    assert m.parse_version(software) == version


def test_production_json_of_the_reference() -> None:
    p = m.Production.model_validate(PRODUCTION)
    inverters = p.inverters()
    assert inverters is not None and inverters.wNow == 3554
    production, net, total = (p.measured(k) for k in (m.PRODUCTION, m.NET, m.TOTAL))
    assert production is not None and production.lines is not None
    assert production.lines[0].wNow == 2968.9
    assert net is not None and net.wNow < 0  # exporting
    assert total is not None and total.wNow == 324.9
    assert not p.all_zero()


def test_production_without_cts_and_all_zero() -> None:
    body = json.loads(json.dumps(PRODUCTION))
    for entry in body["consumption"]:
        entry["activeCount"] = 0
    p = m.Production.model_validate(body)
    assert p.measured(m.NET) is None
    assert p.eim(m.NET) is not None
    zeros = {"production": [{"type": "inverters", "activeCount": 12, "wNow": 0, "whLifetime": 0}]}
    assert m.Production.model_validate(zeros).all_zero()


def test_error_bodies_are_recognised() -> None:
    assert m.error_of(b'{"error": "Not available"}') == "Not available"
    assert m.error_of(b"[]") is None
    assert m.error_of(b'{"production": []}') is None
    assert m.error_of(b"<html>") is None


def test_devices_key_with_its_colon() -> None:
    body = b'{"devices:": [{"serial_num": "4823", "real_power_mw": -1324000, "soc": 39}]}'
    power = m.EnsemblePower.model_validate_json(body)
    assert power.devices[0].real_power_mw == -1_324_000
    assert "devices:" in power.dump()
    assert m.EnsemblePower.model_validate(power.dump()) == power


def test_stream_frame_and_livedata_units() -> None:
    frame = m.StreamFrame.model_validate_json(
        '{"production": {"ph-a": {"p": 1000, "v": 230}, "ph-b": {"p": 500, "v": 230}},'
        ' "net-consumption": {"ph-a": {"p": -800, "v": 230}}, "total-consumption": {}}'
    )
    assert frame.production.watts == 1500
    assert frame.net_consumption.watts == -800
    assert frame.total_consumption.silent
    assert '"net-consumption"' in frame.dump_json()
    live = m.LiveData.model_validate(
        {
            "connection": {"sc_stream": "enabled"},
            "meters": {"last_update": 1, "pv": {"agg_p_mw": 29212}},
        }
    )
    assert live.meters.pv.watts == pytest.approx(29.212)


def test_extra_keys_are_ignored_and_defaults_fill_in() -> None:
    meter = m.MeterConfig.model_validate(
        {"eid": 704643328, "state": "enabled", "measurementType": "production", "newField": 1}
    )
    assert meter.enabled and meter.phaseCount == 1
    group = m.InventoryGroup.model_validate({"type": "ENPOWER", "devices": [{"serial_num": "1"}]})
    assert group.devices[0].percentFull is None


# --- token claims ---


def _jwt(payload: dict[str, object]) -> str:
    header = b64url_encode(b'{"alg":"ES256"}')
    return f"{header}.{b64url_encode(json.dumps(payload).encode())}.c2ln"


def test_claims_are_read_without_a_library() -> None:
    iat = int(NOW.timestamp())
    claims = read_claims(
        _jwt({"aud": "122301012345", "enphaseUser": OWNER, "exp": iat + 86_400 * 365, "iat": iat,
              "jti": "j-1", "username": "owner@example.com"})
    )  # fmt: skip
    assert claims.role == OWNER
    assert claims.audience == "122301012345"
    assert claims.expires_at == NOW + timedelta(days=365)
    assert claims.renew_margin == RENEW_BEFORE
    installer = read_claims(_jwt({"enphaseUser": INSTALLER, "exp": iat + 43_200, "iat": iat}))
    assert installer.renew_margin == timedelta(hours=6)  # half of its 12 hours
    assert installer.audience is None


@pytest.mark.parametrize(
    "token",
    [
        "no-dots-secret-value",
        "a.b",
        "a.!!!secret!!!.c",
        _jwt({"enphaseUser": OWNER}),
        _jwt({"exp": 1}),
    ],
)
def test_bad_tokens_are_refused_without_being_quoted(token: str) -> None:
    with pytest.raises(ValueError) as refused:
        read_claims(Secret(token))
    assert token not in str(refused.value)


def test_the_authority_signs_and_checks_like_a_gateway() -> None:
    authority = TokenAuthority()
    token = authority.issue(serial="1223", role=INSTALLER, username="i@example.com", now=NOW)
    claims = authority.verify(token, serial="1223", now=NOW + timedelta(hours=11))
    assert claims.expires_at == NOW + timedelta(hours=12)
    with pytest.raises(TokenRefused, match="expired"):
        authority.verify(token, serial="1223", now=NOW + timedelta(hours=13))
    with pytest.raises(TokenRefused, match="for gateway 1223"):
        authority.verify(token, serial="9999", now=NOW)
    with pytest.raises(TokenRefused, match="another key"):
        TokenAuthority().verify(token, serial="1223", now=NOW)
    header, payload, signature = token.split(".")
    tampered = json.dumps({**json.loads(b64url_decode(payload)), "enphaseUser": "installer2"})
    with pytest.raises(TokenRefused, match="another key"):
        authority.verify(
            f"{header}.{b64url_encode(tampered.encode())}.{signature}", serial="1223", now=NOW
        )
