"""Session set-up: greeting, TLS (implicit or STARTTLS), EHLO and AUTH, with the guard
asked at every checkpoint. :func:`establish` works over any Transport."""

from __future__ import annotations

import contextlib
import ssl
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Final

from . import auth as sasl
from ._io import IO, call
from ._types import QUIT_WAIT, SMTP_PORT
from ._wire import Wire
from .discovery import Endpoint, Provenance
from .errors import (
    AuthenticationError,
    CapabilityError,
    ConnectError,
    InsecureConfigurationWarning,
    InvalidArgumentError,
    PolicyError,
    RemoteProtocolError,
    ReplyError,
    ResponseInjectionError,
    SMTPSecError,
    SMTPSecWarning,
    UntrustedDiscoveryError,
)
from .errors import TimeoutError as DeadlineError
from .guard import Guard
from .identity import ReferenceIdentity, check_certificate_identity
from .policy import Attempt, Plan, Policy, Security, is_loopback, select_plan
from .report import SecurityReport
from .sansio import ClientConnection, Command, Extensions, State, ehlo_name
from .tls import TLSInfo, build_context, translate_ssl_error
from .transports import AnyTransport

if TYPE_CHECKING:
    from .client import TokenSource

__all__ = ["Established", "Recipe", "endpoint_setup", "establish"]

#: Why an out-of-domain host needs confirmation, per source (RFC 8314 §5.1, RFC 6186 §6).
_UNTRUSTED_WHY: Final[dict[Provenance, str]] = {
    Provenance.SRV_UNSIGNED: "the answer was not DNSSEC-validated, so an attacker can forge it.",
    Provenance.AUTOCONFIG_HTTPS: "the domain's web server vouches only for the domain itself.",
    Provenance.SRV_DNSSEC: "",  # never asked: a signed answer is accepted as it is
}

#: States in which QUIT cannot (or need not) be sent.
_NO_QUIT: Final = frozenset({State.CLOSED, State.TLS_PENDING, State.GREETING})


@dataclass(frozen=True, slots=True)
class Established:
    """A session that passed every checkpoint: what a Session is built from."""

    wire: Wire
    guard: Guard
    report: SecurityReport
    extensions: Extensions


@dataclass(frozen=True, slots=True)
class Recipe:
    """Everything :func:`smtpsec.connect` decides before any I/O (shared with smtpsec.aio)."""

    host: str
    plan: Plan
    policy: Policy
    helo: str
    timeout: float
    identity: ReferenceIdentity | None = None
    username: str | None = None
    password: str | None = None
    mechanism: str | None = None
    token: TokenSource | None = None

    @classmethod
    def prepare(
        cls,
        host: str | Endpoint,
        port: int | None,
        *,
        security: Security,
        username: str | None,
        password: str | None,
        auth: str | None,
        token: TokenSource | None,
        policy: Policy | None,
        timeout: float,
        local_hostname: str | None,
        confirmed_target: bool,
    ) -> Recipe:
        """Validate the arguments of ``connect()`` and choose the plan (pure)."""
        policy = policy or Policy()
        identity: ReferenceIdentity | None = None
        if isinstance(host, Endpoint):
            host, port, security, identity = endpoint_setup(
                host, port, security, policy, confirmed_target=confirmed_target
            )
        if password is not None and username is None:
            raise InvalidArgumentError("password= needs username=")
        plan = select_plan(host, port, security)
        helo = ehlo_name(local_hostname)
        if port == SMTP_PORT:
            warnings.warn(
                f"port 25 on {host} is for relay between mail servers (RFC 6409); "
                "submission belongs on 465 (implicit TLS) or 587 (STARTTLS)",
                SMTPSecWarning,
                stacklevel=3,
            )
        if security is Security.PLAINTEXT and not is_loopback(host):
            warnings.warn(
                f"Security.PLAINTEXT to {host}: everything, including the message, travels "
                "in cleartext (RFC 8314 §4.1); use Security.AUTO",
                InsecureConfigurationWarning,
                stacklevel=3,
            )
        return cls(host, plan, policy, helo, timeout, identity, username, password, auth, token)

    def guard(self, attempt: Attempt) -> Guard:
        """The guard for one attempt, after its pre-connection check."""
        guard = Guard(self.policy, attempt, self.host, user=self.username or "")
        guard.before_connect()
        return guard

    def unreachable(self, attempt: Attempt, exc: SMTPSecError, failures: list[str]) -> None:
        """Record a port that could not be reached; raise when it was the last one.

        Only an unreachable port moves on to the next attempt, never a security
        failure (no downgrade).
        """
        failures.append(str(exc))
        if attempt is not self.plan.attempts[-1]:
            return
        if len(failures) > 1:
            raise ConnectError(
                "could not reach any submission port: " + " | ".join(failures)
            ) from exc
        raise exc

    def establish(self, transport: AnyTransport, attempt: Attempt, guard: Guard) -> IO[Established]:
        """The set-up dialogue for ``attempt`` over ``transport``."""
        return establish(
            transport,
            host=self.host,
            plan=self.plan,
            attempt=attempt,
            guard=guard,
            policy=self.policy,
            timeout=self.timeout,
            helo=self.helo,
            username=self.username,
            password=self.password,
            mechanism=self.mechanism,
            token=self.token,
            identity=self.identity,
        )


def establish(
    transport: AnyTransport,
    *,
    host: str,
    plan: Plan,
    attempt: Attempt,
    guard: Guard,
    policy: Policy,
    timeout: float,
    helo: str,
    username: str | None = None,
    password: str | None = None,
    mechanism: str | None = None,
    token: TokenSource | None = None,
    identity: ReferenceIdentity | None = None,
) -> IO[Established]:
    """Run greeting, TLS, EHLO and AUTH over an already-open ``transport``.

    A generator of I/O requests: :func:`smtpsec._io.run_sync` drives it over a
    blocking transport, :func:`smtpsec._io.run_async` over an asyncio one.
    """
    context: ssl.SSLContext | None = None
    peer = f"{host}:{attempt.port}"
    pinned = False
    wire: Wire | None = None
    try:
        verify_identity: Callable[[bytes], object] | None = None
        if attempt.tls != "none":
            context = build_context(policy)
            if identity is not None:
                # RFC 7817: the reference identities (user's domain, SRV-ID, trusted
                # target) are matched after the handshake; the chain is still checked.
                context.check_hostname = False
                verify_identity = partial(check_certificate_identity, ref=identity)
        if attempt.tls == "implicit":
            assert context is not None
            transport = yield from _handshake(
                transport, context, host, attempt, timeout, implicit=True, verify=verify_identity
            )
            pinned = guard.after_handshake(_tls(transport))
        conn = ClientConnection(
            tls_active=transport.tls is not None,
            require_tls=attempt.tls in ("implicit", "starttls"),
        )
        wire = Wire(transport, conn, timeout=timeout, peer=peer)
        yield from _greeting(wire, guard, attempt)
        extensions = yield from _ehlo(wire, helo)
        if guard.after_ehlo(extensions, tls=transport.tls is not None):
            assert context is not None
            guard.after_starttls_reply((yield from wire.one(Command("STARTTLS"))))
            yield from _check_injection(wire)
            transport = yield from _handshake(
                transport, context, host, attempt, timeout, implicit=False, verify=verify_identity
            )
            wire.transport = transport
            conn.tls_started()
            pinned = guard.after_handshake(_tls(transport))
            extensions = yield from _ehlo(wire, helo)
        info = transport.tls
        if info is not None and info.verified and policy.memory is not None:
            policy.memory.record(
                guard.account,
                mode="implicit_tls" if attempt.tls == "implicit" else "starttls",
                tls_version=info.version,
            )
        used_mech = None
        external = policy.client_cert is not None and (
            mechanism == "EXTERNAL" or "EXTERNAL" in extensions.auth_mechanisms
        )
        if username is not None or token is not None or (external and info is not None):
            guard.before_auth(info)
            used_mech = yield from _authenticate(
                wire,
                extensions,
                username,
                password,
                token,
                mechanism,
                policy.client_cert is not None,
            )
    except BaseException as exc:
        # On cancellation or interrupt only close; on an error say QUIT first.
        yield from _quit_quietly(transport, wire if isinstance(exc, Exception) else None)
        raise
    report = SecurityReport(
        security=plan.security,
        mode=("implicit_tls" if attempt.tls == "implicit" else "starttls") if info else "plaintext",
        reason=plan.reason,
        host=host,
        port=attempt.port,
        tls_version=info.version if info else None,
        cipher=info.cipher if info else None,
        verified=bool(info and info.verified),
        spki_pin=info.spki_pin if info else None,
        pinned=pinned,
        confidential=guard.confidential(info),
        authenticated_as=username if used_mech else None,
        mechanism=used_mech,
    )
    return Established(wire, guard, report, extensions)


def endpoint_setup(
    endpoint: Endpoint,
    port: int | None,
    security: Security,
    policy: Policy,
    *,
    confirmed_target: bool,
) -> tuple[str, int, Security, ReferenceIdentity]:
    """Host, port, mode and RFC 7817 reference identity for a discovered endpoint.

    Raises:
        PolicyError: a conflicting mode, port or ``ssl_context`` was given.
        UntrustedDiscoveryError: an unsigned SRV answer or an autoconfig document
            points outside the domain and the user has not confirmed the host
            (RFC 8314 §5.1).
    """
    wanted = endpoint.security
    if security not in (Security.AUTO, wanted):
        raise PolicyError(
            f"this endpoint ({endpoint.source}) uses Security.{wanted.name}; drop security= "
            f"or pass Security.{wanted.name} (discovered services are never used without TLS)"
        )
    if port not in (None, endpoint.port):
        raise PolicyError("a discovered endpoint carries its own port; drop port=")
    if policy.ssl_context is not None:
        raise PolicyError(
            "discovered endpoints need smtpsec's RFC 7817 identity check; trust a private "
            "CA with Policy(cafile=...) instead of ssl_context"
        )
    if endpoint.needs_confirmation() and not confirmed_target:
        raise UntrustedDiscoveryError(
            f"{endpoint.source} for {endpoint.domain} points outside that domain, to "
            f"{endpoint.host}; {_UNTRUSTED_WHY[endpoint.provenance]} Show the host to the "
            "user and pass confirmed_target=True once they confirm it (RFC 8314 §5.1)"
        )
    identity = endpoint.reference_identity(confirmed_target=confirmed_target)
    return endpoint.host, endpoint.port, wanted, identity


def _tls(transport: AnyTransport) -> TLSInfo:
    info = transport.tls
    assert info is not None
    return info


def _handshake(
    transport: AnyTransport,
    context: ssl.SSLContext,
    host: str,
    attempt: Attempt,
    timeout: float,
    *,
    implicit: bool,
    verify: Callable[[bytes], object] | None,
) -> IO[AnyTransport]:
    try:
        tls: AnyTransport = yield from call(
            transport,
            "start_tls",
            context,
            server_hostname=host,
            timeout=timeout,
            verify_identity=verify,
        )
    except ssl.SSLError as exc:
        yield from call(transport, "close")
        raise translate_ssl_error(exc, host=host, port=attempt.port, implicit=implicit) from exc
    return tls


def _greeting(wire: Wire, guard: Guard, attempt: Attempt) -> IO[None]:
    try:
        (greeting,) = yield from wire.read(1)
    except RemoteProtocolError as exc:
        if attempt.tls in ("starttls", "opportunistic", "none"):
            raise RemoteProtocolError(
                f"{wire.peer} did not send an SMTP greeting ({exc}); if this port speaks "
                "implicit TLS (port 465), use Security.IMPLICIT_TLS or Security.AUTO"
            ) from exc
        raise
    except DeadlineError as exc:
        if wire.conn.partial_reply:
            raise DeadlineError(
                f"{wire.peer} started its greeting but did not finish it within "
                f"{wire.timeout:g}s (a stuck or deliberately slow server); raise timeout= "
                "only if the server is known to be slow"
            ) from exc
        if attempt.tls != "implicit":
            raise DeadlineError(
                f"{wire.peer} sent no greeting within {wire.timeout:g}s; port "
                f"{attempt.port} may speak implicit TLS: use Security.IMPLICIT_TLS or AUTO"
            ) from exc
        raise
    guard.after_greeting(greeting.reply, tls=wire.transport.tls is not None)


def _ehlo(wire: Wire, helo: str) -> IO[Extensions]:
    reply = yield from wire.one(Command("EHLO", helo))
    if reply.code != 250:
        # No HELO fallback: HELO cannot carry STARTTLS (R-LIB-HELO-1).
        raise ReplyError(
            f"{wire.peer} refused EHLO with {reply.code}; smtpsec does not fall back to HELO",
            code=reply.code,
            enhanced_status=str(reply.enhanced_status) if reply.enhanced_status else None,
            text=reply.text,
            server_text_authenticated=wire.transport.tls is not None,
        )
    extensions = wire.conn.extensions
    assert extensions is not None
    return extensions


def _check_injection(wire: Wire) -> IO[None]:
    pending: bytes = yield from call(wire.transport, "pending_plaintext")
    if wire.conn.injected_data or pending:
        raise ResponseInjectionError(
            f"{wire.peer} (or an attacker in the path) sent data after the 220 reply to "
            "STARTTLS and before the TLS handshake; the connection was aborted "
            "(R-EAST-BR-1). A genuine server never does this"
        )


def _authenticate(
    wire: Wire,
    extensions: Extensions,
    username: str | None,
    password: str | None,
    token: TokenSource | None,
    explicit: str | None,
    client_cert: bool,
) -> IO[str]:
    offered = extensions.auth_mechanisms
    if not offered:
        raise CapabilityError(
            f"{wire.peer} offers no AUTH after TLS, but credentials were given; refusing to "
            "send mail unauthenticated (RFC 4954 §9). Check the port (587/465) and account"
        )
    mech = sasl.choose_mechanism(
        offered,
        credentials=sasl.Credentials(username, password) if username is not None else None,
        token=token,
        client_cert=client_cert,
        explicit=explicit,
    )
    # "AUTH NAME [initial-response]"; the IR is left out when the line would be too long.
    arg = sasl.auth_command(mech).removeprefix("AUTH ")
    reply = yield from wire.one(Command("AUTH", arg, redact=True))
    first = True
    while reply.code == 334:
        first = False
        raw = reply.lines[0] if reply.lines else ""
        try:
            response = mech.respond(sasl.decode_challenge(raw))
        except SMTPSecError:
            yield from wire.one(Command("", "*"))  # R-4954-4-2: cancel, then fail
            raise
        reply = yield from wire.one(Command("", sasl.encode_response(response), redact=True))
    if reply.code == 235:
        mech.verify_success(sasl.decode_success_data(reply.lines[0] if reply.lines else ""))
        return mech.name
    if reply.code == 503 and first:
        raise RemoteProtocolError(
            f"{wire.peer} answered the first AUTH with 503 ('already authenticated'): this "
            "session was not set up by us (session fixation or injection); aborting"
        )
    enhanced = str(reply.enhanced_status) if reply.enhanced_status else None
    hint = sasl.auth_failure_hint(reply.code, enhanced, mech.name, server_error=mech.server_error)
    raise AuthenticationError(
        f"authentication with {mech.name} failed: {reply.code} {enhanced or ''} "
        f"{reply.text}; {hint}",
        code=reply.code,
        enhanced_status=enhanced,
        text=reply.text,
        hint=hint,
    )


def _quit_quietly(transport: AnyTransport, wire: Wire | None) -> IO[None]:
    # Every failure sends QUIT if the channel is usable (never mid-handshake), then closes.
    if wire is not None and wire.conn.awaiting == 0 and wire.conn.state not in _NO_QUIT:
        wire.timeout = min(wire.timeout, QUIT_WAIT)
        with contextlib.suppress(Exception):  # best effort: the original error matters
            yield from wire.one(Command("QUIT"))
    closing = [transport]
    if wire is not None and wire.transport is not transport:
        closing.append(wire.transport)
    for target in closing:
        with contextlib.suppress(Exception):  # closing a broken transport may fail too
            yield from call(target, "close")
