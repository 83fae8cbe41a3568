"""The security suite's toolbox: canaries, trust, a connect helper and leak checks.

Every attack test follows the checklist's harness (§0.2): a scripted loopback
server from :mod:`smtpsec.testing`, canary secrets (password ``CANARY-PW-…``,
body ``CANARY-BODY-…``) and a "send nothing" check on the server's pre-TLS
capture. The :class:`Kit` fixture bundles those so each test reads as
"server does X → client raises Y, nothing leaked".
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import socket
from collections.abc import Iterable
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Final

import smtpsec
import smtpsec.aio
from smtpsec import Security
from smtpsec.testing import CA, Capture, LeafCert, SMTPServer
from smtpsec.testing.plugin import ServerFactory

USER: Final = "ann"
PASSWORD: Final = "CANARY-PW-5f0c2e9a"
BODY: Final = "CANARY-BODY-c41d7b83"
#: Short enough to keep the suite fast, long enough for a loaded CI machine.
TIMEOUT: Final = 3.0
#: Verbs that must never be seen before TLS on a TLS-required connection (§0.2 item 3).
FORBIDDEN_PRE_TLS: Final = frozenset({"AUTH", "MAIL", "RCPT", "DATA", "BDAT"})


def leaked(text: str | bytes, *canaries: str) -> list[str]:
    """Return the canaries found in ``text``, raw or inside any base64 word.

    Used for logs and exception messages, where the kit's
    :meth:`Capture.secrets_leaked` does not apply.
    """
    raw = text.encode("utf-8", "replace") if isinstance(text, str) else text
    views = [raw]
    for word in raw.replace(b"'", b" ").replace(b'"', b" ").split():
        try:
            views.append(base64.b64decode(word + b"=" * (-len(word) % 4), validate=True))
        except (binascii.Error, ValueError):
            continue
    return [c for c in canaries if any(c.encode() in view for view in views)]


class Kit:
    """What an attack test needs: servers, a trusting policy, a client, and checks.

    Attributes:
        ca: the session CA (trusted through :attr:`cafile`).
        cert: the good leaf for ``localhost``, ``127.0.0.1`` and ``::1``.
        cafile: the CA certificate as a PEM file.
    """

    user: Final = USER
    password: Final = PASSWORD
    body: Final = BODY
    timeout: Final = TIMEOUT

    def __init__(
        self,
        ca: CA,
        cert: LeafCert,
        cafile: Path,
        factory: ServerFactory,
        client: str = "sync",
    ) -> None:
        self.ca = ca
        self.cert = cert
        self.cafile = cafile
        self._factory = factory
        #: "sync" (smtpsec.connect) or "async" (smtpsec.aio.connect, same tests).
        self.client = client

    def server(self, tls: Security = Security.STARTTLS, **options: Any) -> SMTPServer:
        """Start a fake MSA that knows ``ann``/the password canary."""
        options.setdefault("users", {USER: PASSWORD})
        return self._factory(tls, **options)

    def policy(self, **options: Any) -> smtpsec.Policy:
        """A :class:`smtpsec.Policy` that trusts the test CA."""
        options.setdefault("cafile", self.cafile)
        return smtpsec.Policy(**options)

    def connect(
        self,
        srv: SMTPServer,
        security: smtpsec.Security,
        *,
        host: str = "localhost",
        username: str | None = USER,
        password: str | None = PASSWORD,
        policy: smtpsec.Policy | None = None,
        timeout: float = TIMEOUT,
        tls_sessions: smtpsec.TLSSessionCache | None = None,
    ) -> smtpsec.Session:
        """Connect to ``srv`` the way the brief prescribes (canary password, small timeout).

        With ``client == "async"`` the asyncio client does the same, behind a
        blocking facade, so every attack test runs against both clients.
        """
        kwargs: dict[str, Any] = {
            "security": security,
            "username": username,
            "password": password if username is not None else None,
            "policy": policy if policy is not None else self.policy(),
            "timeout": timeout,
        }
        if tls_sessions is not None:
            kwargs["tls_sessions"] = tls_sessions
        if self.client == "async":
            return AsyncFacade.connect(host, srv.port, **kwargs)  # type: ignore[return-value]
        return smtpsec.connect(host, srv.port, **kwargs)

    @staticmethod
    def socket_of(session: Any) -> socket.socket:
        """The OS socket under a session from :meth:`connect` (to wait for readability)."""
        if isinstance(session, AsyncFacade):
            sock: socket.socket = session._session._wire.transport._transport.get_extra_info(
                "socket"
            )
            return sock
        return session._wire.transport.socket  # type: ignore[no-any-return]

    @staticmethod
    def message() -> EmailMessage:
        """A small message whose body carries the body canary."""
        msg = EmailMessage()
        msg["From"] = "ann@example.test"
        msg["To"] = "bob@example.test"
        msg["Subject"] = "quarterly numbers"
        msg.set_content(f"Hello Bob,\n{BODY}\n")
        return msg

    @staticmethod
    def finished(srv: SMTPServer) -> Capture:
        """The first connection's capture, once the server has finished with it."""
        return srv.wait_for_connections(1, timeout=10)[0]

    @staticmethod
    def assert_nothing_leaked(capture: Capture) -> None:
        """Checklist §0.2 item 3: no AUTH/MAIL/RCPT/DATA/BDAT and no canary before TLS."""
        sent = FORBIDDEN_PRE_TLS & set(capture.commands_pre_tls)
        assert not sent, f"sent {sorted(sent)} before TLS: {capture.commands_pre_tls}"
        assert capture.secrets_leaked(PASSWORD, BODY) == []


def hosts_aliases() -> Iterable[str]:
    """Names that /etc/hosts maps to an IPv4 loopback address (no DNS involved)."""
    try:
        lines = Path("/etc/hosts").read_text(encoding="utf-8").splitlines()
    except OSError:
        return
    for line in lines:
        words = line.split("#", 1)[0].split()
        if len(words) < 2:
            continue
        try:
            address = ipaddress.ip_address(words[0])
        except ValueError:
            continue
        if isinstance(address, ipaddress.IPv4Address) and address.is_loopback:
            yield from words[1:]


class AsyncFacade:
    """Drives a :class:`smtpsec.aio.AsyncSession` on a private event loop, blocking.

    It exposes the blocking Session's surface so the attack tests need no copy.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, session: smtpsec.aio.AsyncSession) -> None:
        self._loop = loop
        self._session = session

    @classmethod
    def connect(cls, host: str, port: int, **kwargs: Any) -> AsyncFacade:
        loop = asyncio.new_event_loop()
        try:
            session = loop.run_until_complete(_aconnect(host, port, **kwargs))
        except BaseException:
            loop.close()
            raise
        return cls(loop, session)

    @property
    def report(self) -> smtpsec.SecurityReport:
        return self._session.report

    @property
    def extensions(self) -> Any:
        return self._session.extensions

    @property
    def closed(self) -> bool:
        return self._session.closed

    def send(self, *args: Any, **kwargs: Any) -> Any:
        return self._loop.run_until_complete(self._session.send(*args, **kwargs))

    def send_many(self, *args: Any, **kwargs: Any) -> Any:
        return self._loop.run_until_complete(self._session.send_many(*args, **kwargs))

    def noop(self) -> Any:
        return self._loop.run_until_complete(self._session.noop())

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._loop.run_until_complete(self._session.close())
        finally:
            self._loop.close()

    def __enter__(self) -> AsyncFacade:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _aconnect(host: str, port: int, **kwargs: Any) -> smtpsec.aio.AsyncSession:
    return await smtpsec.aio.connect(host, port, **kwargs)
