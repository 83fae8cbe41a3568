"""The one proxy handshake, sans I/O: exact bytes per protocol, any chunking, garbage.

The real proxies are in test_proxies.py; this file pins what the handshake
writes (SOCKS5 RFC 1928/1929, SOCKS4a, HTTP CONNECT RFC 9110 §9.3.6) and that
nothing but :class:`smtpsec.ProxyError` comes out of bytes from a proxy.
"""

from __future__ import annotations

import ast
import base64
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import smtpsec
from smtpsec import Proxy, ProxyScheme
from smtpsec.transports import ProxyHandshake

SOCKS5_OK = b"\x05\x00" + b"\x05\x00\x00\x01\x7f\x00\x00\x01\x04\x38"


def _run(handshake: ProxyHandshake, replies: list[bytes]) -> list[bytes]:
    sent = [handshake.start()]
    for chunk in replies:
        out = handshake.receive(chunk)
        if out:
            sent.append(out)
    return sent


def test_socks5_no_auth_sends_the_name_for_the_proxy_to_resolve() -> None:
    hs = ProxyHandshake(Proxy.from_url("socks5://127.0.0.1:1080"), "smtp.example.com", 465)
    sent = _run(hs, [SOCKS5_OK])
    assert sent == [b"\x05\x01\x00", b"\x05\x01\x00\x03\x10smtp.example.com\x01\xd1"]
    assert hs.done and hs.leftover == b""


def test_socks5_user_password() -> None:
    hs = ProxyHandshake(Proxy.from_url("socks5h://ann:s%40cret@h:1080"), "[::1]", 587)
    sent = _run(hs, [b"\x05\x02", b"\x01\x00", b"\x05\x00\x00\x04" + bytes(16) + b"\x00\x00"])
    assert sent == [
        b"\x05\x02\x00\x02",
        b"\x01\x03ann\x06s@cret",
        b"\x05\x01\x00\x04" + bytes(15) + b"\x01" + (587).to_bytes(2, "big"),
    ]
    assert hs.done


def test_socks4a_name_form_and_user_id() -> None:
    hs = ProxyHandshake(Proxy.from_url("socks4a://ann@h:1080"), "mx.example", 25)
    assert hs.start() == b"\x04\x01\x00\x19\x00\x00\x00\x01ann\x00mx.example\x00"
    assert hs.receive(b"\x00\x5a" + bytes(6) + b"220 hi\r\n") == b""
    assert hs.done and hs.leftover == b"220 hi\r\n"


def test_socks4_ipv4_literal() -> None:
    hs = ProxyHandshake(Proxy.from_url("socks4a://h:1080"), "127.0.0.1", 25)
    assert hs.start() == b"\x04\x01\x00\x19\x7f\x00\x00\x01\x00"


def test_http_connect_with_basic_credentials_and_leftover() -> None:
    hs = ProxyHandshake(Proxy.from_url("http://ann:pw@h:3128"), "smtp.example.com", 587)
    request = hs.start()
    token = base64.b64encode(b"ann:pw").decode()
    assert (
        request
        == (
            "CONNECT smtp.example.com:587 HTTP/1.1\r\nHost: smtp.example.com:587\r\n"
            f"Proxy-Authorization: Basic {token}\r\n\r\n"
        ).encode()
    )
    hs.receive(b"HTTP/1.0 200 Connection established\r\nProxy-agent: x\r\n\r\n220 ready\r\n")
    assert hs.done and hs.leftover == b"220 ready\r\n"


@given(st.integers(min_value=1, max_value=len(SOCKS5_OK)))
def test_any_chunking_gives_the_same_result(size: int) -> None:
    hs = ProxyHandshake(Proxy.from_url("socks5h://h:1"), "a.example", 465)
    hs.start()
    for start in range(0, len(SOCKS5_OK), size):
        hs.receive(SOCKS5_OK[start : start + size])
    assert hs.done and hs.leftover == b""


@given(
    st.sampled_from(["socks5h", "socks4a", "http"]),
    st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=6),
)
def test_garbage_gives_only_proxy_errors(scheme: str, chunks: list[bytes]) -> None:
    hs = ProxyHandshake(Proxy.from_url(f"{scheme}://u@h:1"), "a.example", 465)
    hs.start()
    failure: smtpsec.ProxyError | None = None
    try:
        for chunk in chunks:
            hs.receive(chunk)
    except smtpsec.ProxyError as exc:
        failure = exc
    assert failure is None or failure.proxy == f"{scheme}://h:1"


@pytest.mark.parametrize(
    ("reply", "words", "unreachable"),
    [
        (b"\x05\xff", "none of the offered authentication methods", False),
        (b"\x05\x00\x05\x05\x00\x01" + bytes(6), "connection refused", True),
        (b"\x05\x00\x05\x02\x00\x01" + bytes(6), "not allowed", False),
        (b"\x04\x00", "did not answer as a SOCKS5 proxy", False),
    ],
)
def test_socks5_failures(reply: bytes, words: str, unreachable: bool) -> None:
    hs = ProxyHandshake(Proxy.from_url("socks5h://h:1"), "a.example", 465)
    hs.start()
    with pytest.raises(smtpsec.ProxyError, match=words) as caught:
        hs.receive(reply)
    assert caught.value.target_unreachable is unreachable
    assert str(caught.value).startswith("the SOCKS5 proxy socks5h://h:1 ")


def test_closed_during_handshake() -> None:
    hs = ProxyHandshake(Proxy.from_url("http://h:1"), "a.example", 465)
    hs.start()
    with pytest.raises(smtpsec.ProxyError, match="closed the connection"):
        hs.receive(b"")


def test_http_head_is_bounded() -> None:
    hs = ProxyHandshake(Proxy.from_url("http://h:1"), "a.example", 465)
    hs.start()
    with pytest.raises(smtpsec.ProxyError, match="longer than 16 KiB"):
        hs.receive(b"HTTP/1.1 200 OK\r\n" + b"X: " + b"a" * 20000)


@pytest.mark.parametrize("host", ["a b.example", "a\r\nHost: evil", "", "x:y"])
def test_unsendable_host_names_are_refused(host: str) -> None:
    with pytest.raises(smtpsec.InvalidArgumentError):
        ProxyHandshake(Proxy.from_url("http://h:1"), host, 465)


def test_socks4a_cannot_reach_ipv6() -> None:
    with pytest.raises(smtpsec.PolicyError, match="socks5h"):
        ProxyHandshake(Proxy.from_url("socks4a://h:1"), "::1", 465)


# ---------------------------------------------------------------------------- the value


def test_repr_and_display_never_show_credentials() -> None:
    proxy = Proxy.from_url("socks5h://ann:CANARY-PW@[::1]:1080")
    assert proxy.scheme is ProxyScheme.SOCKS5H and proxy.host == "::1"
    assert proxy.display == "socks5h://[::1]:1080"
    assert "CANARY" not in repr(proxy) and "ann" not in repr(proxy)
    assert "credentials=<hidden>" in repr(proxy)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("socks4://u:CANARY-PW@h:1", "DNS leak"),
        ("https://u:CANARY-PW@h:1", "not supported"),
        ("ftp://u:CANARY-PW@h:1", "not supported"),
        ("socks5h://u:CANARY-PW@h", "needs a host and a port"),
        ("socks5h://u:CANARY-PW@h:99999", "malformed"),
        ("socks5h://u:CANARY-PW@h:1/path", "no path"),
        ("socks4a://u:CANARY-PW@h:1", "no passwords"),
        ("http://a%3Ab:CANARY-PW@h:1", "cannot contain ':'"),
    ],
)
def test_bad_urls_never_echo_the_password(url: str, words: str) -> None:
    with pytest.raises(smtpsec.PolicyError, match=words) as caught:
        Proxy.from_url(url)
    assert "CANARY" not in str(caught.value)


def test_connect_checks_the_proxy_before_any_io() -> None:
    with pytest.raises(smtpsec.PolicyError):
        smtpsec.connect("localhost", 465, proxy="socks4://127.0.0.1:1")
    with pytest.raises(smtpsec.PolicyError):
        smtpsec.connect("localhost", 465, proxy=42)  # type: ignore[typeddict-item]


def test_connect_transport_refuses_network_options() -> None:
    from smtpsec.transports import MemoryTransport

    with pytest.raises(smtpsec.PolicyError, match="your own transport"):
        smtpsec.connect_transport(
            MemoryTransport([]), "localhost", 465, proxy="socks5h://127.0.0.1:1"
        )


def test_the_handshake_module_does_no_io() -> None:
    """Sans I/O like smtpsec.sansio: no socket, ssl, time, logging or asyncio."""
    import smtpsec.transports._proxy as module

    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 0
    }
    assert not imported & {"socket", "ssl", "time", "logging", "asyncio", "selectors"}
