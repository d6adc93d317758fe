"""The simulated Enlighten cloud without HTTP: accounts, login sessions and the two token
routes, issuing tokens the simulated gateway accepts (``simtokens``).

An account may have multi-factor authentication on: its login then succeeds without a
``session_id``, as Enlighten's does. The ``cloud_down`` fault makes every route answer 503;
``tokens_route_gone`` makes entrez ``POST /tokens`` answer 404.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from surplus.integrations.envoy import models as m
from surplus.integrations.envoy.simtokens import TokenAuthority
from surplus.integrations.envoy.tokens import OWNER, read_claims
from surplus.security.vault import Secret

if TYPE_CHECKING:
    from surplus.integrations.envoy.simstate import Faults

__all__ = ["Account", "CloudError", "EnlightenSimulator"]


class CloudError(Exception):
    """An answer other than the route's data: ``status`` and a JSON ``message``."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"{status} {message}")


@dataclass(slots=True)
class Account:
    email: str
    password: Secret = field(repr=False)
    role: str = OWNER
    mfa: bool = False
    serials: set[str] = field(default_factory=set)  # the gateways it may get tokens for


class EnlightenSimulator:
    """The cloud's state; ``faults`` is shared with the gateway's (``simstate.Faults``)."""

    def __init__(
        self, authority: TokenAuthority, clock: Callable[[], datetime], faults: Faults
    ) -> None:
        self.authority = authority
        self.clock = clock
        self.faults = faults
        self.accounts: dict[str, Account] = {}
        self.requests: list[str] = []  # the routes asked, in order
        self.tokens_issued = 0
        self._sessions: dict[str, str] = {}  # session id -> email

    def add_account(
        self,
        email: str,
        password: str,
        *,
        role: str = OWNER,
        mfa: bool = False,
        serials: Iterable[str] = (),
    ) -> Account:
        account = Account(email, Secret(password), role, mfa, set(serials))
        self.accounts[email] = account
        return account

    def _up(self, route: str) -> None:
        self.requests.append(route)
        if "cloud_down" in self.faults:
            raise CloudError(503, "Service Unavailable")

    def login(self, email: str, password: str) -> m.LoginResponse:
        """``POST /login/login.json``."""
        self._up("login")
        account = self.accounts.get(email)
        if account is None or account.password != Secret(password):
            raise CloudError(401, "Invalid email or password")
        common = {"user_id": 4711, "user_name": email, "first_name": "Sim", "is_consumer": True}
        if account.mfa:
            return m.LoginResponse.model_validate(common)
        session = secrets.token_hex(16)
        self._sessions[session] = email
        return m.LoginResponse.model_validate(
            {**common, "session_id": session, "manager_token": secrets.token_hex(16)}
        )

    def token_by_entrez(self, request: m.TokenRequest) -> str:
        """``POST /tokens``: the JWT as plain text."""
        self._up("tokens")
        if "tokens_route_gone" in self.faults:
            raise CloudError(404, "Not Found")
        account = self._account(request.session_id)
        if account.email != request.username:
            raise CloudError(401, "session and username do not match")
        return self._issue(account, request.serial_num)

    def token_by_enlighten(self, session_id: str | None, serial: str) -> m.EntrezToken:
        """``GET /entrez-auth-token?serial_num=``, with the login's session cookie."""
        self._up("entrez-auth-token")
        token = self._issue(self._account(session_id), serial)
        claims = read_claims(token)
        return m.EntrezToken(
            generation_time=int(self.clock().timestamp()),
            token=token,
            expires_at=int(claims.expires_at.timestamp()),
        )

    def _account(self, session_id: str | None) -> Account:
        email = self._sessions.get(session_id) if session_id is not None else None
        if email is None:
            raise CloudError(401, "not logged in")
        return self.accounts[email]

    def _issue(self, account: Account, serial: str) -> str:
        if serial not in account.serials:
            raise CloudError(403, f"no access to gateway {serial}")
        self.tokens_issued += 1
        return self.authority.issue(
            serial=serial, role=account.role, username=account.email, now=self.clock()
        )
