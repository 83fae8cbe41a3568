"""Authenticate with an OAuth 2.0 access token from a token provider.

Gmail and Microsoft 365 prefer OAuth 2.0 to passwords for SMTP. Pass
``token=`` a callable instead of a fixed string: smtpsec calls it each time a
connection authenticates, so a provider that caches the token and refreshes it
before it expires keeps long-running programs working. smtpsec picks
OAUTHBEARER (RFC 7628) or XOAUTH2, whichever the server offers after TLS, and,
like a password, sends the token only over verified TLS.

How you obtain tokens is up to your OAuth library (for example ``msal`` or
``google-auth``); this script's provider fakes one. By default it runs against
smtpsec's test server on loopback. For a real server, give an access token you
obtained elsewhere (it is used as is, not refreshed)::

    SMTPSEC_HOST=smtp.gmail.com SMTPSEC_USER=ann@gmail.com \\
    SMTPSEC_TOKEN='ya29....' python examples/oauth2_token_provider.py

Optional: ``SMTPSEC_PORT`` (default 465 with implicit TLS; 587 uses required
STARTTLS), ``SMTPSEC_CAFILE``, ``SMTPSEC_TO``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import smtpsec
from smtpsec import Security
from smtpsec.testing import SMTPServer


class CachedToken:
    """A token provider: returns a cached access token, refreshing it before expiry.

    It also has ``refresh()``: when a server refuses the token anyway (revoked,
    or expired early), smtpsec calls it once and retries AUTH once with the
    new token (``smtpsec.auth.RefreshingTokenProvider``).

    Args:
        fetch: returns ``(access_token, lifetime_seconds)``; call your OAuth
            library's refresh-token grant here.
        margin: refresh this many seconds before the token expires.
    """

    def __init__(self, fetch: Callable[[], tuple[str, float]], *, margin: float = 60.0) -> None:
        self._fetch = fetch
        self._margin = margin
        self._token = ""
        self._expires = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            if time.monotonic() >= self._expires - self._margin:
                self._token, lifetime = self._fetch()
                self._expires = time.monotonic() + lifetime
            return self._token

    def refresh(self) -> str:
        with self._lock:
            self._expires = 0.0
        return self()


def send(
    host: str,
    port: int,
    user: str,
    token: Callable[[], str],
    to: str,
    cafile: str | None,
    *,
    security: smtpsec.Security = smtpsec.Security.AUTO,
) -> None:
    """Connect, authenticate with the token, send one message."""
    msg = EmailMessage()
    msg["From"] = user
    msg["To"] = to
    msg["Subject"] = "smtpsec: OAuth 2.0 example"
    msg.set_content("Authenticated with an OAuth 2.0 bearer token.")
    with smtpsec.connect(
        host,
        port,
        security=security,
        username=user,
        token=token,
        policy=smtpsec.Policy(cafile=cafile),
    ) as session:
        session.send(msg)
        print(f"authenticated as {session.report.authenticated_as} via {session.report.mechanism}")


def main() -> int:
    """Send to SMTPSEC_HOST if set, else to local test servers."""
    host = os.environ.get("SMTPSEC_HOST")
    if host:
        user = os.environ["SMTPSEC_USER"]
        fixed = os.environ["SMTPSEC_TOKEN"]
        send(
            host,
            int(os.environ.get("SMTPSEC_PORT", "465")),
            user,
            lambda: fixed,
            os.environ.get("SMTPSEC_TO", user),
            os.environ.get("SMTPSEC_CAFILE"),
        )
        return 0

    user, issued = "ann@example.test", "demo-access-token"
    fetches = 0
    grants = iter(["revoked-token", issued])  # the first one the server refuses

    def fetch() -> tuple[str, float]:
        nonlocal fetches
        fetches += 1
        return next(grants, issued), 3600.0  # what a refresh-token grant returns

    provider = CachedToken(fetch)
    # One server offering each token mechanism; the provider is shared.
    for mechanism in ("OAUTHBEARER", "XOAUTH2"):
        with (
            SMTPServer(
                tls=Security.IMPLICIT_TLS, auth_mechanisms=(mechanism,), tokens={user: issued}
            ) as server,
            tempfile.TemporaryDirectory() as tmp,
        ):
            cafile = server.ca.write_cafile(Path(tmp) / "test-ca.pem")
            # An ephemeral port is not 465: name the mode instead of AUTO.
            send(
                "localhost",
                server.port,
                user,
                provider,
                "bob@example.test",
                str(cafile),
                security=smtpsec.Security.IMPLICIT_TLS,
            )
    print(
        f"two connections, {fetches} token fetches: the first token was refused, "
        "refreshed once, and the second connection used the cached one"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
