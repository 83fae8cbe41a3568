"""One adapter per client library, so every scenario drives each library the same way.

Each adapter opens a verified TLS session and logs in (implicit TLS or
STARTTLS), sends one message, sends a batch on the same connection, and sends a
big message from a file. Every library gets the same verifying
:class:`ssl.SSLContext` (CERT_REQUIRED, hostname check) and the same EHLO name,
so none pays for a DNS lookup of the local host name.

* smtpsec: ``smtpsec.connect`` / ``Session.send`` / ``Session.send_many``.
* smtplib: ``SMTP_SSL`` or ``SMTP`` + ``starttls()``, ``login``, ``send_message``
  (a loop for a batch; ``sendmail`` with the file's bytes for the big message,
  since smtplib cannot stream).
* aiosmtplib: ``SMTP(use_tls=… / start_tls=…, validate_certs=True, tls_context=…)``
  driven on a private event loop (a loop for a batch, ``sendmail`` for the file).
"""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Final, Protocol

import aiosmtplib

import smtpsec

from .servers import Target

__all__ = ["LIBRARIES", "SMTPSEC_PLAIN", "Adapter", "aiosmtplib_client", "make_adapter"]

#: The libraries in the order they appear in every table.
LIBRARIES: Final = ("smtpsec", "smtplib", "aiosmtplib")
#: smtpsec told to use AUTH PLAIN, to separate the cost of its mechanism choice
#: (it prefers SCRAM, which takes two more round trips) from the client itself.
SMTPSEC_PLAIN: Final = "smtpsec-plain"
#: The EHLO name every library sends.
EHLO_NAME: Final = "bench.localhost"
TIMEOUT: Final = 60.0


class Adapter(Protocol):
    """What a scenario needs from a client library."""

    name: str
    mechanism: str | None

    def connect(self, target: Target, port: int, *, implicit: bool) -> None:
        """Open a verified TLS session to ``target.host:port`` and log in."""

    def send(self, message: EmailMessage) -> None:
        """Send one message on the open session."""

    def send_many(self, messages: Sequence[EmailMessage]) -> None:
        """Send ``messages`` on the open session (the library's best way)."""

    def send_file(self, path: Path, sender: str, recipients: Sequence[str]) -> None:
        """Send the RFC 5322 message stored at ``path``."""

    def close(self) -> None:
        """QUIT and close."""


class SmtpsecAdapter:
    """smtpsec: pipelined, BDAT, streaming from files."""

    def __init__(self, *, auth: str | None = None) -> None:
        self.name = "smtpsec" if auth is None else f"smtpsec auth={auth}"
        self.mechanism: str | None = None
        self._auth = auth
        self._session: smtpsec.Session | None = None

    def connect(self, target: Target, port: int, *, implicit: bool) -> None:
        """Open the session; ``Security`` is chosen explicitly because ports are ephemeral."""
        security = smtpsec.Security.IMPLICIT_TLS if implicit else smtpsec.Security.STARTTLS
        self._session = smtpsec.connect(
            target.host,
            port,
            security=security,
            username=target.username,
            password=target.password,
            auth=self._auth,
            policy=smtpsec.Policy(cafile=target.cafile),
            timeout=TIMEOUT,
            local_hostname=EHLO_NAME,
        )
        self.mechanism = self._session.report.mechanism

    def _open(self) -> smtpsec.Session:
        assert self._session is not None, "connect() first"
        return self._session

    def send(self, message: EmailMessage) -> None:
        """``Session.send``."""
        self._open().send(message)

    def send_many(self, messages: Sequence[EmailMessage]) -> None:
        """``Session.send_many``; any per-message failure is re-raised."""
        for outcome in self._open().send_many(messages):
            if isinstance(outcome, Exception):
                raise outcome

    def send_file(self, path: Path, sender: str, recipients: Sequence[str]) -> None:
        """Stream the open file (smtpsec never holds the whole message)."""
        with path.open("rb") as fp:
            self._open().send(fp, sender=sender, recipients=recipients)

    def close(self) -> None:
        """``Session.close``."""
        if self._session is not None:
            self._session.close()
            self._session = None


class SmtplibAdapter:
    """The standard library's blocking client."""

    name = "smtplib"

    def __init__(self) -> None:
        self.mechanism: str | None = None
        self._smtp: smtplib.SMTP | None = None

    def connect(self, target: Target, port: int, *, implicit: bool) -> None:
        """``SMTP_SSL`` or ``SMTP`` + ``starttls``, then ``login``."""
        ctx = target.client_context()
        if implicit:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                target.host, port, local_hostname=EHLO_NAME, timeout=TIMEOUT, context=ctx
            )
        else:
            smtp = smtplib.SMTP(target.host, port, local_hostname=EHLO_NAME, timeout=TIMEOUT)
            smtp.starttls(context=ctx)
        smtp.login(target.username, target.password)
        self._smtp = smtp
        self.mechanism = _first_offered(smtp.esmtp_features.get("auth", ""), _SMTPLIB_ORDER)

    def _open(self) -> smtplib.SMTP:
        assert self._smtp is not None, "connect() first"
        return self._smtp

    def send(self, message: EmailMessage) -> None:
        """``send_message``."""
        self._open().send_message(message)

    def send_many(self, messages: Sequence[EmailMessage]) -> None:
        """smtplib has no batch API: a loop of ``send_message``."""
        smtp = self._open()
        for message in messages:
            smtp.send_message(message)

    def send_file(self, path: Path, sender: str, recipients: Sequence[str]) -> None:
        """smtplib cannot stream: read the file and ``sendmail`` the bytes."""
        self._open().sendmail(sender, list(recipients), path.read_bytes())

    def close(self) -> None:
        """``quit``, then ``close`` (best effort: the server may already be gone)."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                smtp.quit()
            smtp.close()


class AiosmtplibAdapter:
    """aiosmtplib, each call run to completion on the adapter's own event loop."""

    name = "aiosmtplib"

    def __init__(self) -> None:
        self.mechanism: str | None = None
        self._loop = asyncio.new_event_loop()
        self._smtp: aiosmtplib.SMTP | None = None

    def connect(self, target: Target, port: int, *, implicit: bool) -> None:
        """``SMTP(...).connect()`` logs in by itself when given credentials."""
        smtp = aiosmtplib_client(
            target.host,
            port,
            username=target.username,
            password=target.password,
            context=target.client_context(),
            implicit=implicit,
        )
        self._loop.run_until_complete(smtp.connect())
        self._smtp = smtp
        self.mechanism = _first_offered(
            " ".join(smtp.server_auth_methods).upper(), _AIOSMTPLIB_ORDER
        )

    def _open(self) -> aiosmtplib.SMTP:
        assert self._smtp is not None, "connect() first"
        return self._smtp

    def send(self, message: EmailMessage) -> None:
        """``send_message``."""
        self._loop.run_until_complete(self._open().send_message(message))

    def send_many(self, messages: Sequence[EmailMessage]) -> None:
        """aiosmtplib has no batch API and cannot pipeline: a loop of ``send_message``."""
        smtp = self._open()

        async def loop() -> None:
            for message in messages:
                await smtp.send_message(message)

        self._loop.run_until_complete(loop())

    def send_file(self, path: Path, sender: str, recipients: Sequence[str]) -> None:
        """aiosmtplib cannot stream a file: ``sendmail`` the bytes."""
        data = path.read_bytes()
        self._loop.run_until_complete(self._open().sendmail(sender, list(recipients), data))

    def close(self) -> None:
        """``quit``, then keep the loop running until the socket is really closed."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                self._loop.run_until_complete(_quit_and_wait(smtp))
            smtp.close()
        self._loop.close()


def aiosmtplib_client(
    host: str,
    port: int,
    *,
    username: str,
    password: str,
    context: ssl.SSLContext,
    implicit: bool = True,
) -> aiosmtplib.SMTP:
    """An ``aiosmtplib.SMTP`` set up as every benchmark gives it: verifying ``context``,
    the common EHLO name and timeout; its ``connect()`` also logs in."""
    return aiosmtplib.SMTP(
        hostname=host,
        port=port,
        username=username,
        password=password,
        local_hostname=EHLO_NAME,
        use_tls=implicit,
        start_tls=not implicit,
        validate_certs=True,
        tls_context=context,
        timeout=TIMEOUT,
    )


async def _quit_and_wait(smtp: aiosmtplib.SMTP, timeout: float = 5.0) -> None:
    # quit() only starts closing: the TLS shutdown (close_notify both ways) runs
    # on the event loop afterwards, as it would in a long-running application.
    # Without this wait the stopped loop would leave the connection half-open.
    sock = smtp.get_transport_info("socket")
    await smtp.quit()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while sock is not None and sock.fileno() != -1 and loop.time() < deadline:
        await asyncio.sleep(0.001)


_SMTPLIB_ORDER: Final = ("CRAM-MD5", "PLAIN", "LOGIN")
_AIOSMTPLIB_ORDER: Final = ("CRAM-MD5", "PLAIN", "LOGIN")


def _first_offered(offered: str, order: Sequence[str]) -> str | None:
    """The mechanism a library with preference ``order`` picks from an AUTH line."""
    names = set(offered.upper().split())
    return next((name for name in order if name in names), None)


def make_adapter(name: str) -> Adapter:
    """Return a fresh adapter for library ``name`` (one of :data:`LIBRARIES`)."""
    if name == "smtpsec":
        return SmtpsecAdapter()
    if name == SMTPSEC_PLAIN:
        return SmtpsecAdapter(auth="PLAIN")
    if name == "smtplib":
        return SmtplibAdapter()
    if name == "aiosmtplib":
        return AiosmtplibAdapter()
    raise ValueError(f"unknown library {name!r}; choose from {', '.join(LIBRARIES)}")
