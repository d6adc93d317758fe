"""OCPP security profiles 1, 2 and 3 on the central system: each connects, and every
refusal (a wrong key, an unknown id, a client certificate we did not issue, a missing
subprotocol, ...) happens before the upgrade while an already-connected charger keeps
being served."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from surplus.integrations.ocpp.ca import CertificateAuthority
from surplus.integrations.ocpp.state import Health
from surplus.integrations.ocpp.tls import client_context
from tests.ocpp_kit import Site, basic, central, running, served, simulated

PROFILES = (1, 2, 3)
QUIET = logging.getLogger("tests.ocpp.client")
QUIET.setLevel(logging.INFO)


def write_pems(
    tmp_path: Path, ca: CertificateAuthority, charger_id: str
) -> tuple[Path, Path, Path]:
    """(CA file, client certificate, client key) for ``charger_id``."""
    issued = ca.issue_client(charger_id)
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.cert_pem)
    cert, key = tmp_path / f"{charger_id}.pem", tmp_path / f"{charger_id}.key"
    cert.write_bytes(issued.cert_pem)
    key.write_text(issued.key_pem.reveal())
    return ca_file, cert, key


async def test_profiles_1_2_and_3_connect(tmp_path: Path) -> None:
    async with central(tmp_path, profiles=PROFILES) as site:
        assert site.ca is not None
        ca_file, cert, key = write_pems(tmp_path, site.ca, "CP-3")
        site.register("CP-3")
        sims = [
            simulated(site, "CP-1", 1),
            simulated(site, "CP-2", 2, ca_file=ca_file),
            # profile 3 sends no Basic credentials: the certificate is the credential
            simulated(site, "CP-3", 3, key=None, ca_file=ca_file, cert_file=cert, key_file=key),
        ]
        async with running(sims[0]), running(sims[1]), running(sims[2]):
            assert site.cs.urls[1].startswith("ws://")
            assert site.cs.urls[2].startswith("wss://") and site.cs.urls[3].startswith("wss://")
            for profile in PROFILES:
                state = site.cs.state(f"CP-{profile}")
                assert state is not None and state.connected
                assert state.security_profile == profile
                assert state.boot is not None and state.boot.vendor == "surplus"
                await served(site, f"CP-{profile}")


async def refuse_wrong_key(site: Site, tmp_path: Path) -> int:
    site.register("CP-X")
    return await handshake_status(site.cs.urls[1] + "/CP-X", headers=basic("CP-X", "0" * 40))


async def refuse_missing_key(site: Site, tmp_path: Path) -> int:
    site.register("CP-X")
    return await handshake_status(site.cs.urls[1] + "/CP-X")


async def refuse_key_of_another(site: Site, tmp_path: Path) -> int:
    site.register("CP-X")
    # a valid key, but presented for another id
    return await handshake_status(
        site.cs.urls[1] + "/CP-X", headers=basic("CP-A", site.keys["CP-A"])
    )


async def refuse_unknown_id(site: Site, tmp_path: Path) -> int:
    return await handshake_status(site.cs.urls[1] + "/CP-NOBODY", headers=basic("CP-NOBODY", "k"))


async def refuse_revoked(site: Site, tmp_path: Path) -> int:
    key = site.register("CP-X")
    site.store.chargers.revoke("CP-X")
    return await handshake_status(site.cs.urls[1] + "/CP-X", headers=basic("CP-X", key))


async def refuse_missing_subprotocol(site: Site, tmp_path: Path) -> int:
    key = site.register("CP-X")
    return await handshake_status(
        site.cs.urls[1] + "/CP-X", headers=basic("CP-X", key), subprotocols=None
    )


async def refuse_wrong_subprotocol(site: Site, tmp_path: Path) -> int:
    key = site.register("CP-X")
    return await handshake_status(
        site.cs.urls[1] + "/CP-X", headers=basic("CP-X", key), subprotocols=["ocpp2.0.1"]
    )


async def refuse_untrusted_certificate(site: Site, tmp_path: Path) -> int:
    assert site.ca is not None
    site.register("CP-X")
    stranger = CertificateAuthority.ephemeral("someone else's CA")
    _, cert, key = write_pems(tmp_path, stranger, "CP-X")
    ca_file = tmp_path / "ours.pem"
    ca_file.write_bytes(site.ca.cert_pem)
    ctx = client_context(ca_file, cert_file=cert, key_file=key)
    return await handshake_status(site.cs.urls[3] + "/CP-X", ssl_context=ctx)


async def refuse_certificate_of_another_id(site: Site, tmp_path: Path) -> int:
    assert site.ca is not None
    site.register("CP-X")
    ca_file, cert, key = write_pems(tmp_path, site.ca, "CP-OTHER")
    ctx = client_context(ca_file, cert_file=cert, key_file=key)
    return await handshake_status(site.cs.urls[3] + "/CP-X", ssl_context=ctx)


async def refuse_no_certificate(site: Site, tmp_path: Path) -> int:
    assert site.ca is not None
    key = site.register("CP-X")
    ca_file = tmp_path / "ours.pem"
    ca_file.write_bytes(site.ca.cert_pem)
    # profile 2's credentials on profile 3's port: a mismatched profile
    ctx = client_context(ca_file)
    return await handshake_status(
        site.cs.urls[3] + "/CP-X", headers=basic("CP-X", key), ssl_context=ctx
    )


async def handshake_status(
    url: str,
    *,
    headers: dict[str, str] | None = None,
    subprotocols: list[str] | None = ["ocpp1.6"],  # noqa: B006
    ssl_context: ssl.SSLContext | None = None,
) -> int:
    """The HTTP status refusing the handshake; 0 when TLS itself refused it."""
    try:
        async with connect(
            url,
            subprotocols=subprotocols,  # type: ignore[arg-type]
            additional_headers=headers or {},
            ssl=ssl_context,
            open_timeout=5,
            logger=QUIET,  # this client's own debug log would show the credentials it sends
        ):
            pass
    except InvalidStatus as e:
        return e.response.status_code
    except (ssl.SSLError, OSError, InvalidHandshake, EOFError):
        return 0
    raise AssertionError(f"{url} was not refused")


REFUSALS: dict[str, tuple[Callable[[Site, Path], Awaitable[int]], int]] = {
    "wrong key": (refuse_wrong_key, 401),
    "missing key": (refuse_missing_key, 401),
    "key of another id": (refuse_key_of_another, 401),
    "unknown id": (refuse_unknown_id, 404),
    "revoked": (refuse_revoked, 401),
    "missing subprotocol": (refuse_missing_subprotocol, 400),
    "wrong subprotocol": (refuse_wrong_subprotocol, 400),
    "untrusted client certificate": (refuse_untrusted_certificate, 0),
    "certificate of another id": (refuse_certificate_of_another_id, 401),
    "no client certificate": (refuse_no_certificate, 0),
}


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_refused_before_the_upgrade_while_others_are_served(
    case: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    refuse, expected = REFUSALS[case]
    caplog.set_level(logging.DEBUG)
    async with central(tmp_path, profiles=PROFILES) as site:
        site.register("CP-A")
        async with running(simulated(site, "CP-A")):
            assert await refuse(site, tmp_path) == expected
            await served(site, "CP-A")
            assert site.cs.connected() == ["CP-A"]
            refused = site.cs.state("CP-X")
            if expected == 401:
                assert refused is not None and refused.health is Health.REFUSED
                assert refused.refused_reason
            state = site.cs.state("CP-A")
            assert state is not None and state.health is Health.OK
    for charger_id, key in site.keys.items():
        assert key not in caplog.text
        assert basic(charger_id, key)["Authorization"][6:] not in caplog.text
