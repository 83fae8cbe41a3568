"""The connect options, declared once for every API that opens a session.

:func:`smtpsec.connect`, :func:`smtpsec.send`, :func:`smtpsec.connect_transport`,
:func:`smtpsec.aio.connect`, :func:`smtpsec.aio.send` and both pools take these
as keyword arguments (``**options: Unpack[ConnectOptions]``), so IDEs and type
checkers show and check each one, a misspelt keyword is a type error, and at
run time it is a :class:`TypeError` before anything is done. Code that builds
options up front can annotate them::

    from smtpsec import ConnectOptions

    opts: ConnectOptions = {"username": "ann", "password": "...", "timeout": 10.0}
    smtpsec.connect("smtp.example.com", **opts)
"""

from __future__ import annotations

from collections.abc import Mapping

from typing_extensions import TypedDict

from .auth import Token
from .policy import Policy, Security
from .tls import TLSSessionCache
from .transports import Proxy

__all__ = ["ConnectOptions", "check_options"]


class ConnectOptions(TypedDict, total=False):
    """Keyword options for opening a session (every key is optional).

    Attributes:
        security: how TLS starts; :attr:`Security.AUTO` (the default) never
            uses cleartext.
        username: user name for SMTP AUTH.
        password: password for SMTP AUTH (never logged).
        auth: a SASL mechanism name to use instead of the automatic choice.
        token: an OAuth 2 access token, or a callable returning one (XOAUTH2,
            OAUTHBEARER).
        policy: trust and minimum-security settings (:class:`Policy` defaults).
        timeout: seconds for connecting, the TLS handshake, and each whole
            reply (default 30).
        local_hostname: the EHLO name; ``[127.0.0.1]`` by default (never the
            machine's name).
        confirmed_target: for a discovered endpoint whose SRV answer was not
            DNSSEC-validated and whose target lies outside the user's domain:
            the user confirmed this target (RFC 8314 §5.1, RFC 7817 §3).
        proxy: connect through this proxy: a URL (``socks5h://user:pw@host:1080``,
            ``socks5://``, ``socks4a://``, ``http://``) or a :class:`~smtpsec.Proxy`.
            The proxy resolves the server's name; TLS is still verified against
            the server's name. See :doc:`/networks`.
        source_address: ``(host, port)`` to bind the local end of the connection
            to (port ``0``: any); with an address of one family, only the
            server's addresses of that family are tried.
        happy_eyeballs_delay: seconds between staggered connection attempts to
            the addresses of a dual-stack name (RFC 8305; default 0.25).
        tls_sessions: where TLS sessions are kept for resumption on reconnect.
            Omitted: each pool (or one call) keeps its own; a
            :class:`~smtpsec.TLSSessionCache` shares one between calls; ``None``
            never resumes.
        early_pipelining: to a server that advertised ``PIPECONNECT`` (Exim's
            early pipelining) in an earlier verified-TLS session of this
            process, send EHLO and the first AUTH line before its greeting and
            EHLO reply arrive: one round trip less per connection (default
            ``False``). The guard still checks the real replies; a server that
            stopped taking it is forgotten and connected to again normally.
            See :doc:`/performance`.
    """

    security: Security
    username: str | None
    password: str | None
    auth: str | None
    token: Token | None
    policy: Policy | None
    timeout: float
    local_hostname: str | None
    confirmed_target: bool
    proxy: str | Proxy | None
    source_address: tuple[str, int] | None
    happy_eyeballs_delay: float
    tls_sessions: TLSSessionCache | None
    early_pipelining: bool


def check_options(options: Mapping[str, object], where: str) -> None:
    """Refuse keywords that are not connect options, as Python does for a function.

    Raises:
        TypeError: ``where() got an unexpected keyword argument 'usernme'``.
    """
    known = ConnectOptions.__annotations__
    for key in options:
        if key not in known:
            raise TypeError(f"{where}() got an unexpected keyword argument {key!r}")
