"""``smtpsec probe``: gather the facts of a submission server's RFC 8314 posture.

The probe speaks only ``EHLO``, ``STARTTLS`` and ``QUIT``: it never sends
``AUTH`` or ``MAIL``, so no credential or message can leak (R-8314-5.1-7). Its
verdict is computed from these facts by :mod:`smtpsec._cli._probe_verdict`.

The dialogue is the engine's (greeting, EHLO, the STARTTLS switch with its
injection check, the handshake), asked through the same guard as a client,
with fixes worded for the CLI. What differs is explicit and only here:
besides the verifying handshake, the probe opens *inspection* connections
(see :mod:`smtpsec._cli._probe_tls`) that read a certificate which failed
validation and find which TLS versions the server accepts; those connections
never carry anything but EHLO and QUIT.
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from .._advice import CLI
from .._engine import IO, Wire, phases, run_sync
from ..errors import (
    CertificateError,
    ConnectError,
    RemoteProtocolError,
    SMTPSecError,
)
from ..errors import TimeoutError as DeadlineError
from ..guard import Guard
from ..modes import Security
from ..policy import Attempt, Policy
from ..sansio import ClientConnection, Extensions, Reply, ehlo_name
from ..tls import ChainKey, TLSInfo, describe_chain
from ..transports import DIRECT, Route, open_route
from ._probe_tls import (
    CertificateFacts,
    certificate_facts,
    classify_handshake_error,
    inspection_context,
)

__all__ = [
    "DEFAULT_PORTS",
    "TLS_VERSIONS",
    "PortFacts",
    "ProbeFacts",
    "detect_mode",
    "probe",
    "probe_port",
]

#: What a probe without ``--port`` checks: RFC 8314's two submission ports,
#: and the relay port for information.
DEFAULT_PORTS: Final[tuple[tuple[int, Security], ...]] = (
    (465, Security.IMPLICIT_TLS),
    (587, Security.STARTTLS),
    (25, Security.STARTTLS),
)
#: Versions tried one at a time (minimum = maximum), oldest first.
TLS_VERSIONS: Final = (
    ("TLSv1", ssl.TLSVersion.TLSv1),
    ("TLSv1.1", ssl.TLSVersion.TLSv1_1),
    ("TLSv1.2", ssl.TLSVersion.TLSv1_2),
    ("TLSv1.3", ssl.TLSVersion.TLSv1_3),
)
#: On a port of unknown mode, a server that says nothing for this long is
#: waiting for a TLS ClientHello (implicit TLS); an SMTP server greets at once.
GREETING_WAIT: Final = 2.0


@dataclass(frozen=True, slots=True)
class PortFacts:
    """Everything learnt about one port.

    Attributes:
        port: the port number.
        mode: :attr:`Security.IMPLICIT_TLS` or :attr:`Security.STARTTLS`.
        reachable: a TCP connection could be made.
        error: why the verifying dialogue failed (``None`` when it worked).
        verify_error: the certificate validation failure, if that was the cause.
        greeting: the server's greeting, code and text (``"220 mail.example.com ESMTP"``).
        starttls_offered: whether EHLO before TLS listed STARTTLS (STARTTLS mode).
        auth_before_tls: SASL mechanisms offered before TLS (should be empty).
        tls_version: negotiated version of the verifying (or inspection) handshake.
        cipher: negotiated cipher suite.
        verified: chain and host name were validated with the probe's trust.
        extensions: EHLO keywords after TLS, with their parameters.
        certificate: the leaf certificate, when one was seen.
        versions: TLS version -> ``"accepted"``, ``"refused"``,
            ``"not testable"`` (this machine's OpenSSL cannot offer it) or
            ``"error: ..."``; empty when TLS never started.
        certificate_error: why a certificate that was seen could not be read.
        chain: the keys of the verified chain (leaf, intermediates, root), with
            their pins; empty when the chain did not verify, since only a
            verified chain's CA keys can satisfy a pin.
    """

    port: int
    mode: Security
    reachable: bool
    error: str | None = None
    verify_error: str | None = None
    greeting: str | None = None
    starttls_offered: bool | None = None
    auth_before_tls: tuple[str, ...] = ()
    tls_version: str | None = None
    cipher: str | None = None
    verified: bool = False
    extensions: tuple[tuple[str, tuple[str, ...]], ...] | None = None
    certificate: CertificateFacts | None = None
    versions: tuple[tuple[str, str], ...] = ()
    certificate_error: str | None = None
    chain: tuple[ChainKey, ...] = ()

    @property
    def auth_after_tls(self) -> tuple[str, ...]:
        """SASL mechanisms offered inside TLS."""
        for keyword, params in self.extensions or ():
            if keyword == "AUTH":
                return params
        return ()


@dataclass(frozen=True, slots=True)
class ProbeFacts:
    """The whole probe.

    Attributes:
        host: the server name certificates were checked against.
        trust: which trust anchors were used (``"certifi"`` or the CA file).
        ports: one entry per probed port, in probe order.
        explicit_port: the user chose the port (no default scan).
        proxy: the proxy the probe went through (no credentials), or ``None``.
    """

    host: str
    trust: str
    ports: tuple[PortFacts, ...]
    explicit_port: bool
    proxy: str | None = None


@dataclass(frozen=True, slots=True)
class _Dialogue:
    """The outcome of one EHLO/STARTTLS/EHLO/QUIT dialogue."""

    connected: bool
    handshake_failed: bool = False
    error: SMTPSecError | None = None
    greeting: Reply | None = None
    before_tls: Extensions | None = None
    tls: TLSInfo | None = None
    after_tls: Extensions | None = None


# --------------------------------------------------------------------------- progress


def _progress(text: str) -> None:
    # Slow steps are announced on stderr so stdout stays clean for --json.
    print(f"smtpsec probe: {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- dialogue


def _ehlo(wire: Wire) -> IO[Extensions]:
    reply = yield from phases.hello(wire, ehlo_name(None))
    extensions = wire.conn.extensions
    if reply.code != 250 or extensions is None:
        raise RemoteProtocolError(f"{wire.peer} refused EHLO: {reply.code} {reply.text}")
    return extensions


class _Collect:
    """Mutable notes taken during one dialogue, frozen into :class:`_Dialogue` at the end."""

    def __init__(self) -> None:
        self.handshake_failed = False
        self.greeting: Reply | None = None
        self.before_tls: Extensions | None = None
        self.after_tls: Extensions | None = None
        self.tls: TLSInfo | None = None

    def freeze(self, error: SMTPSecError | None) -> _Dialogue:
        return _Dialogue(
            connected=True,
            handshake_failed=self.handshake_failed,
            error=error,
            greeting=self.greeting,
            before_tls=self.before_tls,
            tls=self.tls,
            after_tls=self.after_tls,
        )


def _dialogue(
    host: str,
    port: int,
    mode: Security,
    context: ssl.SSLContext,
    timeout: float,
    *,
    handshake_only: bool = False,
    route: Route = DIRECT,
) -> _Dialogue:
    """Connect along ``route``, reach TLS the way ``mode`` says, EHLO inside TLS, QUIT.

    Never raises for server behaviour: failures come back in ``error``, with
    whatever was learnt before them.
    """
    try:
        transport, _address = open_route(host, port, timeout=timeout, route=route)
    except (ConnectError, DeadlineError) as exc:  # ProxyError is a ConnectError
        return _Dialogue(connected=False, error=exc)
    notes = _Collect()
    wire = Wire(
        transport,
        ClientConnection(tls_active=False, require_tls=True),
        timeout=timeout,
        host=host,
        port=port,
        advice=CLI,
    )
    try:
        run_sync(_converse(notes, wire, mode, context, handshake_only=handshake_only))
    except SMTPSecError as exc:
        return notes.freeze(exc)
    finally:
        run_sync(phases.abandon(wire))
    return notes.freeze(None)


def _converse(
    notes: _Collect, wire: Wire, mode: Security, context: ssl.SSLContext, *, handshake_only: bool
) -> IO[None]:
    # The guard judges the server as a client would (required STARTTLS, the TLS
    # floor); an inspection context (CERT_NONE) only changes what is accepted
    # as a certificate, which the verdict then reports as unverified.
    guard = Guard(Policy(), Attempt(wire.port, mode), wire.host, advice=CLI)
    if mode is Security.IMPLICIT_TLS:
        notes.handshake_failed = True
        notes.tls = yield from phases.implicit_tls(wire, context, verify_identity=None)
        notes.handshake_failed = False
        if handshake_only:
            return
    notes.greeting = greeting = yield from phases.greeting(
        wire, implicit=mode is Security.IMPLICIT_TLS
    )
    if greeting.code != 220:
        raise RemoteProtocolError(f"{wire.peer} greeted with {greeting.code} {greeting.text}")
    extensions = yield from _ehlo(wire)
    if mode is Security.STARTTLS:
        notes.before_tls = extensions
        guard.after_ehlo(extensions, tls=False)
        yield from phases.ask_starttls(wire, guard)
        notes.handshake_failed = True
        notes.tls = yield from phases.switch_to_tls(wire, context, verify_identity=None)
        notes.handshake_failed = False
        if handshake_only:
            return
        extensions = yield from _ehlo(wire)
    notes.after_tls = extensions
    yield from phases.quit_quietly(wire)


# --------------------------------------------------------------------------- ports


def detect_mode(host: str, port: int, timeout: float, route: Route = DIRECT) -> Security:
    """Guess how a port of unknown mode starts TLS: a greeting means STARTTLS.

    Args:
        host: the server.
        port: the port.
        timeout: the probe's timeout (the wait is at most :data:`GREETING_WAIT`).
        route: how to reach it (directly or through a proxy).

    Returns:
        :attr:`Security.STARTTLS` when the server greets (or cannot be reached:
        the dialogue then reports why), :attr:`Security.IMPLICIT_TLS` when it
        stays silent.
    """
    try:
        transport, _address = open_route(host, port, timeout=timeout, route=route)
    except (ConnectError, DeadlineError):
        return Security.STARTTLS
    try:
        transport.read(timeout=min(timeout, GREETING_WAIT))
    except DeadlineError:
        return Security.IMPLICIT_TLS  # silence: a ClientHello is awaited
    except ConnectError:
        pass  # a reset is left for the dialogue to report
    finally:
        transport.close()
    return Security.STARTTLS


def _versions(
    host: str, port: int, mode: Security, timeout: float, route: Route
) -> tuple[tuple[str, str], ...]:
    results = []
    for name, version in TLS_VERSIONS:
        try:
            ctx = inspection_context(version)
        except (ValueError, ssl.SSLError):
            results.append((name, "not testable"))
            continue
        attempt = _dialogue(host, port, mode, ctx, timeout, handshake_only=True, route=route)
        if attempt.tls is not None:
            results.append((name, "accepted"))
        elif attempt.handshake_failed:
            results.append(
                (name, classify_handshake_error(attempt.error and attempt.error.__cause__))
            )
        else:
            results.append((name, f"error: {attempt.error}"))
    return tuple(results)


def _flatten(extensions: Extensions | None) -> tuple[tuple[str, tuple[str, ...]], ...] | None:
    return None if extensions is None else tuple(extensions.items())


def probe_port(
    host: str,
    port: int,
    mode: Security,
    context: ssl.SSLContext,
    timeout: float,
    route: Route = DIRECT,
) -> PortFacts:
    """Probe one port: the verifying dialogue, inspection if needed, TLS versions.

    Args:
        host: the server name (certificates are checked against it).
        port: the port.
        mode: how TLS starts there.
        context: the verifying client context (the probe's trust).
        timeout: seconds for each connect, handshake and reply.
        route: how to reach it (directly or through a proxy).

    Returns:
        The :class:`PortFacts`.
    """
    label = "implicit TLS" if mode is Security.IMPLICIT_TLS else "STARTTLS"
    _progress(f"{host}:{port} ({label}): verifying handshake")
    verifying = _dialogue(host, port, mode, context, timeout, route=route)
    if not verifying.connected:
        return PortFacts(port=port, mode=mode, reachable=False, error=str(verifying.error))
    seen = verifying
    if verifying.handshake_failed:
        # The verifying handshake failed: look again without verification to
        # report the certificate and what the server offers inside TLS.
        _progress(f"{host}:{port}: inspecting the certificate without verification")
        seen = _dialogue(host, port, mode, inspection_context(), timeout, route=route)
    versions: tuple[tuple[str, str], ...] = ()
    if seen.tls is not None:
        _progress(f"{host}:{port}: trying TLS 1.0, 1.1, 1.2 and 1.3 one at a time")
        versions = _versions(host, port, mode, timeout, route)
    greeting = seen.greeting or verifying.greeting
    before = seen.before_tls or verifying.before_tls
    der = seen.tls.peer_certificate if seen.tls is not None else None
    certificate, certificate_error = _read_certificate(der)
    error = verifying.error
    verified = verifying.tls is not None and verifying.tls.verified
    return PortFacts(
        port=port,
        mode=mode,
        reachable=True,
        error=None if error is None else str(error),
        verify_error=str(error) if isinstance(error, CertificateError) else None,
        greeting=f"{greeting.code} {greeting.text}" if greeting is not None else None,
        starttls_offered=None if before is None else "STARTTLS" in before,
        auth_before_tls=tuple(sorted(before.auth_mechanisms)) if before is not None else (),
        tls_version=seen.tls.version if seen.tls is not None else None,
        cipher=seen.tls.cipher if seen.tls is not None else None,
        verified=verified,
        extensions=_flatten(seen.after_tls),
        certificate=certificate,
        versions=versions,
        certificate_error=certificate_error,
        chain=describe_chain(verifying.tls) if verifying.tls is not None and verified else (),
    )


def _read_certificate(der: bytes | None) -> tuple[CertificateFacts | None, str | None]:
    """The certificate's facts, or why even the lenient reader could not read it."""
    if not der:
        return None, None
    try:
        return certificate_facts(der), None
    except CertificateError as exc:
        return None, str(exc)


def probe(
    host: str,
    *,
    ports: Sequence[tuple[int, Security | None]],
    context: ssl.SSLContext,
    trust: str,
    timeout: float,
    explicit_port: bool,
    route: Route = DIRECT,
) -> ProbeFacts:
    """Probe ``host`` on each of ``ports``.

    Args:
        host: the server name.
        ports: ``(port, mode)`` pairs; a ``None`` mode is detected.
        context: the verifying client context.
        trust: a description of the trust anchors, for the report.
        timeout: seconds for each connect, handshake and reply.
        explicit_port: the user chose the port (changes the verdict rules).
        route: how to reach the server (directly or through a proxy, which
            then resolves the name: no DNS query leaves this machine).

    Returns:
        The :class:`ProbeFacts`.
    """
    results = []
    for port, mode in ports:
        chosen = mode or detect_mode(host, port, timeout, route)
        results.append(probe_port(host, port, chosen, context, timeout, route))
    proxy = route.proxy.display if route.proxy is not None else None
    return ProbeFacts(
        host=host, trust=trust, ports=tuple(results), explicit_port=explicit_port, proxy=proxy
    )
