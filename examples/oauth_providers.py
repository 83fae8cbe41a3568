"""Token providers for Microsoft 365 (MSAL, client credentials) and Google (service account).

Microsoft 365 turned SMTP basic authentication (passwords) off by default for
existing tenants at the end of December 2026 (``550 5.7.30``); Google Workspace
has refused plain passwords since September 2024. Both take OAuth 2.0 tokens
with XOAUTH2. The two classes below wrap the providers' own libraries as
``smtpsec.auth.RefreshingTokenProvider`` values: calling one gives the cached
token, and ``refresh()`` gets a new one, which smtpsec asks for once if the
server refuses a token.

Neither library is a dependency of smtpsec. This script skips (exit 0) when
the one it needs is not installed, or when its settings are not given:

Microsoft 365 (an Entra app with the ``SMTP.SendAsApp`` permission, and the
mailbox allowed to send through it)::

    pip install msal
    M365_TENANT=... M365_CLIENT_ID=... M365_CLIENT_SECRET=... \\
    M365_MAILBOX=ann@contoso.com python examples/oauth_providers.py microsoft

Google Workspace (a service account with domain-wide delegation for the
``https://mail.google.com/`` scope)::

    pip install google-auth requests
    GOOGLE_SERVICE_ACCOUNT_FILE=sa.json GOOGLE_MAILBOX=ann@example.com \\
    python examples/oauth_providers.py google

``SMTPSEC_HOST`` and ``SMTPSEC_PORT`` replace the provider's submission server
(``smtp.office365.com`` / ``smtp.gmail.com``, port 587 with STARTTLS).
There is no local run: these tokens only mean something to the providers.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from email.message import EmailMessage
from typing import Any, ClassVar

import smtpsec
from smtpsec.auth import RefreshingTokenProvider


class MicrosoftClientCredentials:
    """Microsoft 365 tokens for an app (client-credentials flow), cached by MSAL."""

    SCOPES: ClassVar[list[str]] = ["https://outlook.office365.com/.default"]

    def __init__(self, tenant: str, client_id: str, secret: str) -> None:
        msal: Any = importlib.import_module("msal")  # optional: imported only when used
        self._app: Any = msal.ConfidentialClientApplication(
            client_id,
            authority=f"https://login.microsoftonline.com/{tenant}",
            client_credential=secret,
        )
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:  # MSAL answers from its cache while the token is valid
            result = self._app.acquire_token_for_client(scopes=self.SCOPES)
        if "access_token" not in result:
            raise RuntimeError(f"Microsoft refused the token request: {result.get('error')}")
        return str(result["access_token"])

    def refresh(self) -> str:
        with self._lock:
            self._app.remove_tokens_for_client()  # drop the refused token from the cache
        return self()


class GoogleServiceAccount:
    """Google Workspace tokens for a mailbox, through a delegated service account."""

    SCOPES: ClassVar[list[str]] = ["https://mail.google.com/"]

    def __init__(self, key_file: str, mailbox: str) -> None:
        requests: Any = importlib.import_module("google.auth.transport.requests")
        service_account: Any = importlib.import_module("google.oauth2.service_account")
        self._request: Any = requests.Request()
        self._credentials: Any = service_account.Credentials.from_service_account_file(
            key_file, scopes=self.SCOPES, subject=mailbox
        )
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            if not self._credentials.valid:
                self._credentials.refresh(self._request)
            return str(self._credentials.token)

    def refresh(self) -> str:
        with self._lock:
            self._credentials.refresh(self._request)
            return str(self._credentials.token)


def _send(host: str, port: int, mailbox: str, provider: RefreshingTokenProvider) -> None:
    host = os.environ.get("SMTPSEC_HOST", host)
    port = int(os.environ.get("SMTPSEC_PORT", str(port)))
    msg = EmailMessage()
    msg["From"] = msg["To"] = mailbox
    msg["Subject"] = "smtpsec: OAuth 2.0 with a refreshing token provider"
    msg.set_content("Sent with an OAuth 2.0 token over verified TLS.")
    with smtpsec.connect(
        host, port, security=smtpsec.Security.STARTTLS, username=mailbox, token=provider
    ) as session:
        session.send(msg)
        print(session.report)


def _missing(module: str, settings: list[str]) -> str | None:
    try:
        importlib.import_module(module)
    except ImportError:
        return f"the {module!r} package is not installed"
    unset = [name for name in settings if not os.environ.get(name)]
    return f"{', '.join(unset)} not set" if unset else None


def main(argv: list[str]) -> int:
    which = argv[0] if argv else "microsoft"
    if which == "microsoft":
        names = ["M365_TENANT", "M365_CLIENT_ID", "M365_CLIENT_SECRET", "M365_MAILBOX"]
        why = _missing("msal", names)
        if why is not None:
            print(f"skipped: {why} (see the module docstring)")
            return 0
        provider: RefreshingTokenProvider = MicrosoftClientCredentials(
            os.environ["M365_TENANT"],
            os.environ["M365_CLIENT_ID"],
            os.environ["M365_CLIENT_SECRET"],
        )
        _send("smtp.office365.com", 587, os.environ["M365_MAILBOX"], provider)
        return 0
    if which == "google":
        names = ["GOOGLE_SERVICE_ACCOUNT_FILE", "GOOGLE_MAILBOX"]
        why = _missing("google.oauth2", names)
        if why is not None:
            print(f"skipped: {why} (see the module docstring)")
            return 0
        provider = GoogleServiceAccount(
            os.environ["GOOGLE_SERVICE_ACCOUNT_FILE"], os.environ["GOOGLE_MAILBOX"]
        )
        _send("smtp.gmail.com", 587, os.environ["GOOGLE_MAILBOX"], provider)
        return 0
    print("usage: oauth_providers.py [microsoft|google]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
