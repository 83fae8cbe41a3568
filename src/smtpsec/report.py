"""The per-session security report (RFC 8314 §5: say what protection the submission hop had)."""

from __future__ import annotations

from dataclasses import dataclass

from .policy import Security

__all__ = ["SecurityReport"]


@dataclass(frozen=True, slots=True)
class SecurityReport:
    """What protected this session's *submission hop* (client → MSA) and why.

    It says nothing about later relay hops or end-to-end protection (RFC 8314 §8).

    Attributes:
        security: the requested mode.
        mode: what happened: :attr:`Security.IMPLICIT_TLS`, :attr:`Security.STARTTLS`
            or :attr:`Security.PLAINTEXT`.
        reason: why this mode and port were chosen.
        host: the server name connected to.
        port: the port connected to.
        tls_version: negotiated TLS version, or ``None`` without TLS.
        cipher: negotiated cipher suite, or ``None``.
        verified: the certificate chain and host name were validated.
        spki_pin: ``"sha256/<base64>"`` of the server key (for ``Policy(pins=...)``).
        chain_pins: every pin this session could be matched by: the server key's,
            then, when the chain was verified, each CA key above it up to the
            trust anchor (a CA key is a backup pin that survives renewals).
        pinned: a configured pin matched.
        confidential: RFC 8314 §5.2 minimum confidentiality met: TLS ≥ 1.2 with a
            verified certificate (never for plaintext or pinned-only sessions).
        authenticated_as: the user name authenticated, if any.
        mechanism: the SASL mechanism used, if any.
        address: ``"ip:port"`` the TCP connection went to, e.g. which address
            family Happy Eyeballs chose (the proxy's address when proxied;
            ``None`` over a transport the caller opened).
        proxy: the proxy the session went through, as ``scheme://host:port``
            (never its credentials), or ``None``.
        tls_resumed: the TLS handshake resumed an earlier session.
        early_pipelining: EHLO (and the first AUTH line) went out before the
            server's greeting and EHLO reply (``early_pipelining=True``, PIPECONNECT).
    """

    security: Security
    mode: Security
    reason: str
    host: str
    port: int
    tls_version: str | None = None
    cipher: str | None = None
    verified: bool = False
    spki_pin: str | None = None
    chain_pins: tuple[str, ...] = ()
    pinned: bool = False
    confidential: bool = False
    authenticated_as: str | None = None
    mechanism: str | None = None
    address: str | None = None
    proxy: str | None = None
    tls_resumed: bool = False
    early_pipelining: bool = False

    def __str__(self) -> str:
        lines = [
            f"submission hop   {self.host}:{self.port}",
            f"mode             {self.mode.value} (requested {self.security.name})",
            f"why              {self.reason}",
        ]
        if self.proxy is not None:
            lines.append(f"proxy            {self.proxy} (it resolved the server's name)")
        if self.address:
            lines.append(f"connected to     {self.address}{' (the proxy)' if self.proxy else ''}")
        if self.tls_version:
            resumed = " (resumed)" if self.tls_resumed else ""
            lines.append(f"tls              {self.tls_version} {self.cipher}{resumed}")
            lines.append(f"certificate      {'verified' if self.verified else 'NOT verified'}")
            if self.spki_pin:
                lines.append(
                    f"spki pin         {self.spki_pin}{' (matched)' if self.pinned else ''}"
                )
        else:
            lines.append("tls              none: everything was sent in cleartext")
        lines.append(f"confidential     {'yes' if self.confidential else 'NO'}")
        if self.authenticated_as is not None:
            lines.append(f"authenticated    {self.authenticated_as} via {self.mechanism}")
        return "\n".join(lines)
