"""Static type checks of the network options (issue 15; run by mypy --strict and pyright).

Never called: mypy and pyright verify every ``assert_type`` and every
``type: ignore`` below (an option of the wrong type is a type error).
"""

from __future__ import annotations

import ssl

from typing_extensions import assert_type

import smtpsec
import smtpsec.aio
from smtpsec import smtplib


def _check_proxy_values() -> None:  # pragma: no cover - type-checked only
    proxy = smtpsec.Proxy.from_url("socks5h://u:p@127.0.0.1:1080")
    assert_type(proxy, smtpsec.Proxy)
    assert_type(proxy.scheme, smtpsec.ProxyScheme)
    assert_type(proxy.display, str)
    assert_type(proxy.username, "str | None")
    built = smtpsec.Proxy(smtpsec.ProxyScheme.HTTP, "proxy.example", 3128, "u", "p")
    assert_type(built.port, int)
    cache = smtpsec.TLSSessionCache(maxsize=8)
    assert_type(len(cache), int)
    assert_type(cache.take(ssl.create_default_context(), "h", 465), "ssl.SSLSession | None")


def _check_options() -> None:  # pragma: no cover - type-checked only
    opts: smtpsec.ConnectOptions = {
        "proxy": "socks5h://127.0.0.1:1080",
        "source_address": ("192.0.2.10", 0),
        "happy_eyeballs_delay": 0.1,
        "tls_sessions": smtpsec.TLSSessionCache(),
    }
    session = smtpsec.connect("smtp.example.test", 465, **opts)
    assert_type(session.report.address, "str | None")
    assert_type(session.report.proxy, "str | None")
    assert_type(session.report.tls_resumed, bool)
    smtpsec.connect("h", proxy=smtpsec.Proxy.from_url("http://p:3128"), tls_sessions=None)
    smtpsec.connect("h", proxy=1080)  # type: ignore[arg-type]
    smtpsec.connect("h", source_address="192.0.2.10")  # type: ignore[arg-type]
    smtpsec.aio.Pool("h", proxy="socks4a://p:1080", source_address=("::", 0))
    failure = smtpsec.ProxyError("the proxy failed", proxy="socks5h://p:1")
    assert_type(failure.proxy, str)
    assert_type(failure.target_unreachable, bool)
    connect_error: smtpsec.ConnectError = failure  # a ProxyError is a ConnectError
    del connect_error


async def _check_aio() -> None:  # pragma: no cover - type-checked only
    async with smtpsec.aio.connect("h", 587, proxy="http://p:3128", happy_eyeballs_delay=0) as s:
        assert_type(s.report.address, "str | None")


def _check_dropin() -> None:  # pragma: no cover - type-checked only
    smtplib.SMTP("h", 587, proxy="socks5h://127.0.0.1:1080")
    smtplib.SMTP_SSL("h", 465, proxy=smtpsec.Proxy.from_url("http://p:3128"))
