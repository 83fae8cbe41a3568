"""Connection security modes, the frozen Policy, and the pure mode-selection function.

:func:`select_plan` is the one place that decides which port(s) to try and how
TLS is started; its :class:`Plan` (and the reason in words) ends up in the
session's :class:`~smtpsec.report.SecurityReport`.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Final

from typing_extensions import assert_never

from ._types import SMTP_PORT, SUBMISSION_PORT, SUBMISSIONS_PORT
from .errors import InvalidArgumentError, PolicyError
from .memory import TLSMemory
from .modes import Security

__all__ = [
    "DEFAULT_POLICY",
    "DEFAULT_SCRAM_MAX_ITERATIONS",
    "SCRAM_MIN_ITERATIONS",
    "Attempt",
    "Plan",
    "Policy",
    "Security",
    "is_loopback",
    "select_plan",
    "split_host_port",
]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One port to try and how to start TLS on it.

    Attributes:
        port: the port.
        tls: :attr:`Security.IMPLICIT_TLS`, :attr:`Security.STARTTLS` (required),
            :attr:`Security.OPPORTUNISTIC` or :attr:`Security.PLAINTEXT`; never
            :attr:`Security.AUTO`, which :func:`select_plan` resolves.
    """

    port: int
    tls: Security

    def __post_init__(self) -> None:
        if self.tls is Security.AUTO:
            raise PolicyError("an attempt starts TLS one definite way; AUTO is resolved by a plan")

    @property
    def requires_tls(self) -> bool:
        """Whether this attempt must end in TLS (implicit or required STARTTLS)."""
        return self.tls in (Security.IMPLICIT_TLS, Security.STARTTLS)


@dataclass(frozen=True, slots=True)
class Plan:
    """What :func:`select_plan` decided, and why (shown in the security report).

    Attempts are tried in order, but only a *connection* failure moves on to the
    next one; a security failure on any attempt ends the plan (no downgrade).
    """

    security: Security
    attempts: tuple[Attempt, ...]
    reason: str


#: RFC 7677 §4: servers must use at least 4,096 iterations.
SCRAM_MIN_ITERATIONS: Final = 4096
#: The default bound on what a server may ask (see ``Policy.scram_max_iterations``).
DEFAULT_SCRAM_MAX_ITERATIONS: Final = 1_000_000

#: Matched with fullmatch: "$" alone would also accept a trailing newline.
_PIN_RE: Final = re.compile(r"sha256/[A-Za-z0-9+/]{43}=")


@dataclass(frozen=True, slots=True)
class Policy:
    """Trust and minimum-security settings for connections (frozen).

    Args:
        cafile: PEM file of CA certificates to trust *instead of* the certifi
            roots (a private CA: the usual reason people wrongly disable
            verification).
        cadata: PEM text (or DER bytes) of CA certificates, like ``cafile``.
        ssl_context: a fully configured :class:`ssl.SSLContext` to use as given.
            One that does not verify certificates and host names is refused
            unless ``allow_unverified_context`` is also true.
        min_tls_version: lowest TLS version accepted (default TLS 1.2, RFC 8997).
            Lower only with ``allow_legacy_tls=True``.
        allow_legacy_tls: explicit opt-in for a floor below TLS 1.2.
        client_cert: ``(certfile, keyfile)`` or ``(certfile, keyfile, password)``
            presented when the server asks (RFC 8314 §5.5).
        pins: a set of SPKI SHA-256 pins (``"sha256/<base64>"``); the session
            passes when *any* of them matches the server's own key or the key
            of a CA certificate in the chain OpenSSL verified (an intermediate,
            or the root from the trust store). Pins add to chain validation
            (RFC 8314 §5.4). Keep at least two: a key change at a certificate
            renewal then leaves a backup (the next key, or a CA key, which
            survives renewals); a lone pin on the server's own key warns.
            :attr:`SecurityReport.chain_pins <smtpsec.SecurityReport.chain_pins>`
            and ``smtpsec probe`` show the candidates.
        pinned_instead_of_ca: accept a certificate that matches ``pins`` without
            chain validation (self-signed server, RFC 8314 §5.4). Only the
            server's own key can match then: no chain is verified, so no CA key
            can vouch for it. Such a session is never *confidential* and AUTH
            over it still needs ``allow_cleartext_auth``.
        memory: a :class:`~smtpsec.memory.TLSMemory` that remembers where
            verified TLS worked and refuses a weaker session later.
        allow_cleartext_auth: permit credentials without verified TLS (loopback
            test servers). Emits a warning; never the default.
        allow_unverified_context: acknowledge that ``ssl_context`` does not verify.
        scram_max_iterations: the most PBKDF2 iterations a server may ask of
            SCRAM (RFC 7677 §4). Each costs client CPU before the password is
            even checked, so a hostile server could stall the client; the
            default (1,000,000, about a quarter of a second of CPU on a current
            machine) is far above what real servers use (4,096 to 600,000). A
            server asking more fails with an
            :class:`~smtpsec.errors.AuthenticationError`, after the exchange is
            cancelled.
    """

    cafile: str | os.PathLike[str] | None = None
    cadata: str | bytes | None = None
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False)
    min_tls_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    allow_legacy_tls: bool = False
    client_cert: tuple[str, str] | tuple[str, str, str] | None = None
    pins: AbstractSet[str] = frozenset()
    pinned_instead_of_ca: bool = False
    memory: TLSMemory | None = field(default=None, compare=False)
    allow_cleartext_auth: bool = False
    allow_unverified_context: bool = False
    scram_max_iterations: int = DEFAULT_SCRAM_MAX_ITERATIONS
    #: TLS contexts built from this policy, shared by its connections (a frozen
    #: policy always builds the same context; loading the trust store costs
    #: tens of milliseconds). Filled lazily by :func:`smtpsec.tls.build_context`.
    _contexts: dict[tuple[bool, str | None], ssl.SSLContext] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.min_tls_version < ssl.TLSVersion.TLSv1_2 and not self.allow_legacy_tls:
            raise PolicyError(
                f"min_tls_version={self.min_tls_version.name} is below TLS 1.2, which "
                "RFC 8996/8997 forbid; upgrade the server, or pass allow_legacy_tls=True "
                "if you must reach it anyway"
            )
        if self.ssl_context is not None and not self.allow_unverified_context:
            ctx = self.ssl_context
            if ctx.verify_mode != ssl.CERT_REQUIRED or not ctx.check_hostname:
                raise PolicyError(
                    "the ssl_context given does not verify certificates and host names; "
                    "trust a private CA with Policy(cafile=...) instead, or pass "
                    "allow_unverified_context=True to accept an unauthenticated server"
                )
        if self.ssl_context is not None and (self.cafile or self.cadata):
            raise PolicyError(
                "give either ssl_context or cafile/cadata, not both: load the CA into "
                "your context with ctx.load_verify_locations(...)"
            )
        given: object = self.pins  # annotated as a set, but callers pass any iterable
        if isinstance(given, (str, bytes)):
            # frozenset("sha256/...") would be a set of characters: say what was meant.
            raise PolicyError(
                "pins must be a set of 'sha256/<base64>' strings, e.g. "
                "Policy(pins={session.report.spki_pin}), not one string"
            )
        # Accept any iterable of pins (a set, a list) but store it frozen.
        object.__setattr__(self, "pins", frozenset(self.pins))
        for pin in self.pins:
            if not isinstance(pin, str) or not _PIN_RE.fullmatch(pin):
                raise PolicyError(
                    f"pin {pin!r} is not an SPKI SHA-256 pin; use the 'sha256/<base64>' "
                    "string shown in Session.report.spki_pin"
                )
        if self.pinned_instead_of_ca and not self.pins:
            raise PolicyError("pinned_instead_of_ca=True needs at least one pin in pins=")
        if self.client_cert is not None and len(self.client_cert) not in (2, 3):
            raise PolicyError("client_cert must be (certfile, keyfile[, password])")
        if not self.scram_max_iterations >= SCRAM_MIN_ITERATIONS:
            raise PolicyError(
                f"scram_max_iterations={self.scram_max_iterations} is below the "
                f"{SCRAM_MIN_ITERATIONS} iterations RFC 7677 requires servers to use; "
                "no server could authenticate with SCRAM"
            )

    @property
    def verifies(self) -> bool:
        """True when certificates are chain-validated and host names checked."""
        if self.pinned_instead_of_ca:
            return False
        if self.ssl_context is not None:
            return (
                self.ssl_context.verify_mode == ssl.CERT_REQUIRED
                and self.ssl_context.check_hostname
            )
        return True


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback address literals."""
    name = host.strip("[]").lower()
    # Only the name itself: "*.localhost" is loopback by RFC 6761, but many
    # resolvers send it to DNS, where an attacker could answer.
    if name in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


#: The policy of every connection that names none: one shared value, so its
#: TLS context (certifi's trust store, tens of milliseconds and hundreds of KiB
#: to load) is built once per process, not once per connection.
DEFAULT_POLICY: Final = Policy()


def split_host_port(
    host: str, port: int | None, *, host_name: str = "host", port_name: str = "port="
) -> tuple[str, int | None]:
    """Accept ``"host:port"`` (as smtplib does) and return the host and the one port.

    ``"smtp.example.com:587"`` and ``"[2001:db8::1]:587"`` carry a port;
    ``"smtp.example.com"``, ``"[::1]"`` and a bare IPv6 literal such as ``"::1"``
    do not (a bare literal's colons are the address's own). A port in ``host``
    and a ``port`` argument must agree: which of two different ports was meant
    cannot be guessed. Pure: no I/O.

    Args:
        host: the host as the caller wrote it.
        port: the port argument, or ``None``.
        host_name: how the caller's API names the host, for messages (the CLI
            says ``--host``).
        port_name: how it names the port, followed by where the number goes
            (``port=``; the CLI says ``--port``).

    Returns:
        ``(host, port)``; the host keeps its brackets (``"[::1]"``).

    Raises:
        InvalidArgumentError: the port part is not a number, a bracket is not
            closed, or the two ports disagree.
    """
    if host.startswith("["):
        name, bracket, rest = host.partition("]")
        name += bracket
        if not bracket or (rest and not rest.startswith(":")):
            raise InvalidArgumentError(
                f"{host_name} {host!r} is not an address literal: write an IPv6 address "
                f"as [address] and the port as {port_name}N"
            )
        tail = rest[1:] if rest else None
    elif host.count(":") == 1:
        name, _, tail = host.partition(":")
    else:
        return host, port  # a name, or a bare IPv6 literal: no port in it
    if tail is None:
        return host, port
    if not name.strip("[]"):
        raise InvalidArgumentError(f"{host_name} {host!r} names no host")
    if not (tail.isascii() and tail.isdigit()):
        raise InvalidArgumentError(
            f"{host_name} {host!r} does not end in a port number; give the host alone "
            f"and the port as {port_name}N"
        )
    given = int(tail)
    if port is not None and port != given:
        raise InvalidArgumentError(
            f"{host_name} {host!r} names port {given}, but {port_name}{port} was given "
            "too; give the port only once"
        )
    return name, given


def select_plan(host: str, port: int | None, security: Security) -> Plan:
    """Decide which port(s) to try and how TLS starts on each.

    Pure: no I/O. The rules are RFC 8314's (implicit TLS preferred, STARTTLS
    only as required TLS) and smtpsec's (no cleartext unless named).

    Args:
        host: the server name (only used to explain loopback plaintext).
        port: the port, or ``None`` to let the mode choose.
        security: the requested :class:`Security` mode.

    Returns:
        The :class:`Plan`.

    Raises:
        PolicyError: for an out-of-range port.
    """
    if port is not None and not 0 < port < 65536:
        raise PolicyError(f"port {port} is out of range; submission uses 465 or 587")
    match security:
        case Security.AUTO:
            return _auto_plan(port)
        case Security.IMPLICIT_TLS:
            p = SUBMISSIONS_PORT if port is None else port
            return Plan(security, (Attempt(p, security),), "implicit TLS requested")
        case Security.STARTTLS:
            p = SUBMISSION_PORT if port is None else port
            return Plan(security, (Attempt(p, security),), "STARTTLS requested (required)")
        case Security.OPPORTUNISTIC:
            p = SUBMISSION_PORT if port is None else port
            return Plan(
                security,
                (Attempt(p, security),),
                "opportunistic STARTTLS requested: cleartext if the server offers no STARTTLS",
            )
        case Security.PLAINTEXT:
            p = SMTP_PORT if port is None else port
            where = "loopback" if is_loopback(host) else "a network host"
            return Plan(
                security, (Attempt(p, security),), f"plaintext requested explicitly ({where})"
            )
        case _:
            assert_never(security)


def _auto_plan(port: int | None) -> Plan:
    """:attr:`Security.AUTO`: implicit TLS on 465, required STARTTLS elsewhere, never cleartext."""
    auto = Security.AUTO
    if port is None:
        return Plan(
            auto,
            (
                Attempt(SUBMISSIONS_PORT, Security.IMPLICIT_TLS),
                Attempt(SUBMISSION_PORT, Security.STARTTLS),
            ),
            "no port given: trying 465 with implicit TLS first (RFC 8314 §3.3), then 587 "
            "with required STARTTLS if 465 cannot be reached",
        )
    if port == SUBMISSIONS_PORT:
        return Plan(
            auto,
            (Attempt(port, Security.IMPLICIT_TLS),),
            "port 465 is 'submissions': implicit TLS (RFC 8314 §3.3, §7.3)",
        )
    note = " (port 25 is for relay; submission belongs on 465 or 587)" if port == SMTP_PORT else ""
    return Plan(
        auto,
        (Attempt(port, Security.STARTTLS),),
        f"port {port}: STARTTLS, required; cleartext is never used (RFC 8314 §3.3){note}",
    )
