"""Real proxies (microsocks, dante, tinyproxy) in front of the real Postfix.

Every client (native, asyncio, pool, drop-in, CLI) sends through each kind
of proxy and the message must land in Postfix's maildir; the session must be
verified against the *mail server's* name; every proxy failure is a
:class:`smtpsec.ProxyError` (a ``ConnectError``) that names the proxy and
never its credentials.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import uuid
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from interop_harness import PostfixServer

import smtpsec
import smtpsec.aio
from conftest import Proxies
from netutil import start_aiosmtpd
from smtpsec import Security
from smtpsec import smtplib as dropin
from smtpsec._cli import main
from smtpsec.testing import CA, SMTPServer

TIMEOUT = 10.0


def _message(postfix: PostfixServer, marker: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = postfix.user
    msg["To"] = postfix.user
    msg["Subject"] = f"through a proxy {marker}"
    msg.set_content(f"body {marker}\n")
    return msg


def _kinds(p: Proxies) -> dict[str, str]:
    return {
        "socks5h-microsocks": p.url("socks5h", p.socks5),
        "socks5-microsocks-userpass": p.url("socks5", p.socks5_auth, auth=True),
        "socks5h-dante": p.url("socks5h", p.dante),
        "socks4a-dante-ipv4": p.url("socks4a", p.dante),
        "socks4a-openssh-name": p.url("socks4a", p.ssh_socks),
        "socks5h-openssh": p.url("socks5h", p.ssh_socks),
        "http-tinyproxy": p.url("http", p.http),
        "http-tinyproxy-basic": p.url("http", p.http_auth, auth=True),
    }


KINDS = list(_kinds(Proxies("", 0, 0, 0, 0, 0, 0, "", "")))


def _host(kind: str) -> str:
    # dante has no SOCKS4a: it resolves nothing itself, so its SOCKS4 gets the
    # address. OpenSSH's ssh -D speaks SOCKS4a: it gets the name, and resolves it.
    return "127.0.0.1" if kind == "socks4a-dante-ipv4" else "localhost"


@pytest.mark.parametrize("kind", KINDS)
def test_native_send_through_each_proxy(
    kind: str, proxies: Proxies, postfix: PostfixServer
) -> None:
    """R-LIB-SNI-1 holds through a tunnel: TLS is checked against the mail server's name."""
    url = _kinds(proxies)[kind]
    marker = uuid.uuid4().hex
    with smtpsec.connect(
        _host(kind),
        postfix.implicit_port,
        security=Security.IMPLICIT_TLS,
        username=postfix.user,
        password=postfix.password,
        policy=smtpsec.Policy(cafile=str(postfix.cafile)),
        proxy=url,
        timeout=TIMEOUT,
    ) as session:
        session.send(_message(postfix, marker))
        report = session.report
    postfix.wait_for_delivery(marker)
    assert report.verified and report.confidential
    assert report.proxy == url.replace(f"{proxies.user}:{proxies.password}@", "")
    # The TCP connection went to the proxy, never to Postfix directly.
    assert report.address == f"{proxies.host}:{url.rsplit(':', 1)[1]}"
    assert proxies.password not in repr(report) and proxies.password not in str(report)


@pytest.mark.parametrize("kind", KINDS)
def test_asyncio_send_through_each_proxy(
    kind: str, proxies: Proxies, postfix: PostfixServer
) -> None:
    url = _kinds(proxies)[kind]
    marker = uuid.uuid4().hex

    async def run() -> smtpsec.SecurityReport:
        async with smtpsec.aio.connect(
            _host(kind),
            postfix.starttls_port,
            security=Security.STARTTLS,
            username=postfix.user,
            password=postfix.password,
            policy=smtpsec.Policy(cafile=str(postfix.cafile)),
            proxy=url,
            timeout=TIMEOUT,
        ) as session:
            await session.send(_message(postfix, marker))
            return session.report

    report = asyncio.run(run())
    postfix.wait_for_delivery(marker)
    assert report.verified and report.mode is Security.STARTTLS
    assert report.address == f"{proxies.host}:{url.rsplit(':', 1)[1]}"


@pytest.mark.parametrize("kind", ["socks5-microsocks-userpass", "http-tinyproxy-basic"])
def test_dropin_send_through_a_proxy(kind: str, proxies: Proxies, postfix: PostfixServer) -> None:
    url = _kinds(proxies)[kind]
    marker = uuid.uuid4().hex
    context = postfix.ssl_context()
    with dropin.SMTP("localhost", postfix.starttls_port, timeout=TIMEOUT, proxy=url) as client:
        client.starttls(context=context)
        client.login(postfix.user, postfix.password)
        client.send_message(_message(postfix, marker))
    with dropin.SMTP_SSL(
        "localhost", postfix.implicit_port, context=context, timeout=TIMEOUT, proxy=url
    ) as client:
        client.login(postfix.user, postfix.password)
        client.send_message(_message(postfix, marker + "-ssl"))
    postfix.wait_for_delivery(marker)
    postfix.wait_for_delivery(marker + "-ssl")


class _LMTPInbox:
    def __init__(self) -> None:
        self.delivered: list[tuple[str, bytes]] = []

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        self.delivered += [(rcpt, envelope.content) for rcpt in envelope.rcpt_tos]
        return "250 2.0.0 ok"


@pytest.mark.parametrize("kind", ["socks5-microsocks-userpass", "http-tinyproxy-basic"])
def test_dropin_lmtp_through_a_proxy(kind: str, proxies: Proxies, tmp_path: Path) -> None:
    """``LMTP(host, port, proxy=...)`` reaches an LMTP server (aiosmtpd) through the real
    proxy; a Unix socket path with proxy= is refused before anything is opened."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.lmtp import LMTP as LMTPServer

    class LMTPController(Controller):  # type: ignore[misc]
        def factory(self) -> LMTPServer:
            return LMTPServer(self.handler, **self.SMTP_kwargs)

    inbox = _LMTPInbox()
    controller = start_aiosmtpd(inbox, controller=LMTPController)
    try:
        url = _kinds(proxies)[kind]
        with dropin.LMTP("127.0.0.1", controller.port, timeout=TIMEOUT, proxy=url) as client:
            refused = client.sendmail(
                "ann@example.test", ["bob@example.test"], b"Subject: lmtp\r\n\r\nhi\r\n"
            )
        assert refused == {}
        assert inbox.delivered == [("bob@example.test", b"Subject: lmtp\r\n\r\nhi\r\n")]
    finally:
        controller.stop()
    with pytest.raises(smtpsec.InvalidArgumentError, match="Unix socket"):
        dropin.LMTP(str(tmp_path / "lmtp.sock"), proxy=_kinds(proxies)[kind])


def test_aio_pool_through_a_proxy(proxies: Proxies, postfix: PostfixServer) -> None:
    markers = [uuid.uuid4().hex for _ in range(4)]

    async def run() -> None:
        async with smtpsec.aio.Pool(
            "localhost",
            postfix.implicit_port,
            size=2,
            security=Security.IMPLICIT_TLS,
            username=postfix.user,
            password=postfix.password,
            policy=smtpsec.Policy(cafile=str(postfix.cafile)),
            proxy=proxies.url("socks5h", proxies.socks5_auth, auth=True),
            timeout=TIMEOUT,
        ) as pool:
            await asyncio.gather(*(pool.send(_message(postfix, m)) for m in markers))

    asyncio.run(run())
    for marker in markers:
        postfix.wait_for_delivery(marker)


def test_cli_send_through_a_proxy(
    proxies: Proxies,
    postfix: PostfixServer,
    tmp_path: object,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pathlib import Path

    marker = uuid.uuid4().hex
    eml = Path(str(tmp_path)) / "m.eml"
    eml.write_bytes(_message(postfix, marker).as_bytes())
    monkeypatch.setenv("SMTPSEC_TEST_PW", postfix.password)
    monkeypatch.setenv("SMTPSEC_TEST_PROXY", proxies.url("socks5h", proxies.socks5_auth, auth=True))
    args = [
        "send",
        "--host", "localhost",
        "--port", str(postfix.implicit_port),
        "--security", "implicit_tls",
        "--from", postfix.user,
        "--to", postfix.user,
        "--user", postfix.user,
        "--password-env", "SMTPSEC_TEST_PW",
        "--cafile", str(postfix.cafile),
        "--proxy-env", "SMTPSEC_TEST_PROXY",
        str(eml),
    ]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr()
    assert "socks5h://127.0.0.1" in out.out
    assert proxies.password not in out.out + out.err
    postfix.wait_for_delivery(marker)
    # A password in --proxy itself would be visible in the process list: refused.
    refused = [*args[:-3], "--proxy", proxies.url("socks5h", proxies.socks5_auth, auth=True)]
    assert main([*refused, str(eml)]) == 2
    err = capsys.readouterr().err
    assert "--proxy-env" in err and proxies.password not in err


@pytest.mark.parametrize("kind", ["socks5h", "http"])
def test_cli_probe_through_a_proxy(
    kind: str,
    proxies: Proxies,
    postfix: PostfixServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``smtpsec probe --proxy-env``: the verifying dialogue and the mode detection (a port
    the probe does not know) go through the proxy; the report names it, never its password."""
    port = proxies.socks5_auth if kind == "socks5h" else proxies.http_auth
    monkeypatch.setenv("SMTPSEC_TEST_PROXY", proxies.url(kind, port, auth=True))
    for target in (postfix.implicit_port, postfix.starttls_port):
        args = ["probe", f"localhost:{target}", "--cafile", str(postfix.cafile), "--json"]
        code = main([*args, "--proxy-env", "SMTPSEC_TEST_PROXY"])
        out = capsys.readouterr()
        report = json.loads(out.out)
        assert proxies.password not in out.out + out.err
        assert report["proxy"] == f"{kind}://{proxies.host}:{port}"
        (facts,) = report["ports"]
        assert facts["verified"] is True, facts
        assert facts["mode"] == (
            "implicit_tls" if target == postfix.implicit_port else "starttls"
        ), facts
        assert code in (0, 1), report["findings"]  # PASS or WARN, never FAIL


# ---------------------------------------------------------------------------- trust
# ---------------------------------------------------------------------------- trust


def test_tls_is_verified_against_the_mail_servers_name(proxies: Proxies) -> None:
    """The proxy cannot vouch for anything: a certificate for another name fails,
    and the SNI sent through the tunnel is the mail server's name (R-LIB-SNI-1)."""
    ca = CA.create()
    wrong = ca.issue("other.example.test")
    with SMTPServer(wrong, tls=Security.IMPLICIT_TLS) as srv:
        with pytest.raises(smtpsec.CertificateError, match="localhost"):
            smtpsec.connect(
                "localhost",
                srv.port,
                security=Security.IMPLICIT_TLS,
                policy=smtpsec.Policy(cadata=ca.cert_pem.decode()),
                proxy=proxies.url("socks5h", proxies.socks5),
                timeout=TIMEOUT,
            )
        capture = srv.wait_for_connections(1)[0]
    assert capture.sni == "localhost"


# ---------------------------------------------------------------------------- failures


@pytest.fixture
def password_logged(caplog: pytest.LogCaptureFixture) -> Callable[[str], bool]:
    caplog.set_level(logging.DEBUG, logger="smtpsec")
    return lambda secret: secret in caplog.text


def _connect_via(url: str, port: int = 465, host: str = "localhost") -> smtpsec.Session:
    return smtpsec.connect(host, port, security=Security.IMPLICIT_TLS, proxy=url, timeout=5.0)


def test_socks5_wrong_password_is_a_proxy_error(
    proxies: Proxies, postfix: PostfixServer, password_logged: Callable[[str], bool]
) -> None:
    secret = "CANARY-PROXY-PW-1"
    url = proxies.url("socks5h", proxies.socks5_auth, auth=True, password=secret)
    with pytest.raises(smtpsec.ProxyError) as caught:
        _connect_via(url, postfix.implicit_port)
    exc = caught.value
    assert isinstance(exc, smtpsec.ConnectError)
    assert "refused the proxy user name or password" in str(exc)
    assert exc.proxy == f"socks5h://{proxies.host}:{proxies.socks5_auth}"
    assert str(postfix.implicit_port) not in exc.proxy
    assert secret not in str(exc) and secret not in repr(exc) and not password_logged(secret)


def test_socks5_needs_credentials(proxies: Proxies, postfix: PostfixServer) -> None:
    with pytest.raises(smtpsec.ProxyError, match="may need a user and password"):
        _connect_via(proxies.url("socks5h", proxies.socks5_auth), postfix.implicit_port)


def test_http_proxy_credentials_required_and_refused(
    proxies: Proxies, postfix: PostfixServer, password_logged: Callable[[str], bool]
) -> None:
    with pytest.raises(smtpsec.ProxyError, match="requires credentials"):
        _connect_via(proxies.url("http", proxies.http_auth), postfix.implicit_port)
    secret = "CANARY-PROXY-PW-2"
    with pytest.raises(smtpsec.ProxyError, match="refused the proxy credentials") as caught:
        _connect_via(
            proxies.url("http", proxies.http_auth, auth=True, password=secret),
            postfix.implicit_port,
        )
    assert secret not in str(caught.value) and not password_logged(secret)


def _closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        return int(listener.getsockname()[1])


@pytest.mark.parametrize("scheme", ["socks5h", "http"])
def test_unreachable_target_names_the_proxy(scheme: str, proxies: Proxies) -> None:
    port = proxies.socks5 if scheme == "socks5h" else proxies.http
    closed = _closed_port()
    with pytest.raises(smtpsec.ProxyError) as caught:
        _connect_via(proxies.url(scheme, port), closed)
    exc = caught.value
    assert exc.target_unreachable
    assert str(exc).startswith(f"the {'SOCKS5' if scheme == 'socks5h' else 'HTTP'} proxy")
    assert f"localhost:{closed}" in str(exc)


def test_unreachable_proxy(postfix: PostfixServer) -> None:
    closed = _closed_port()
    with pytest.raises(
        smtpsec.ProxyError, match=f"cannot connect to the SOCKS5 proxy socks5h://127.0.0.1:{closed}"
    ) as caught:
        _connect_via(f"socks5h://u:CANARY-PROXY-PW-3@127.0.0.1:{closed}", postfix.implicit_port)
    assert not caught.value.target_unreachable
    assert "CANARY" not in str(caught.value)


def test_wrong_protocol_is_a_bad_reply(proxies: Proxies, postfix: PostfixServer) -> None:
    """An SMTP server greeting where a proxy reply belongs."""
    with pytest.raises(smtpsec.ProxyError, match="did not answer as a SOCKS5 proxy"):
        _connect_via(f"socks5h://127.0.0.1:{postfix.starttls_port}", postfix.implicit_port)
    with pytest.raises(smtpsec.ProxyError, match="did not answer as an HTTP proxy"):
        _connect_via(f"http://127.0.0.1:{postfix.starttls_port}", postfix.implicit_port)


def test_proxy_that_never_answers_its_protocol(proxies: Proxies, postfix: PostfixServer) -> None:
    """SOCKS5 bytes to an HTTP proxy: it waits for a request line, bounded by timeout."""
    with pytest.raises(smtpsec.TimeoutError, match="did not finish its handshake in time"):
        smtpsec.connect(
            "localhost",
            postfix.implicit_port,
            security=Security.IMPLICIT_TLS,
            proxy=proxies.url("socks5h", proxies.http),
            timeout=0.5,
        )


def test_silent_proxy_times_out_naming_the_proxy() -> None:
    """A proxy that accepts and never answers: the whole step is bounded by timeout."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        accepted: list[socket.socket] = []
        thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]))
        thread.start()
        port = listener.getsockname()[1]
        with pytest.raises(smtpsec.TimeoutError, match=f"proxy socks5h://127.0.0.1:{port}"):
            smtpsec.connect("localhost", 465, proxy=f"socks5h://127.0.0.1:{port}", timeout=0.5)
        thread.join()
        for sock in accepted:
            sock.close()


def test_silent_proxy_times_out_asyncio() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        async def run() -> None:
            await smtpsec.aio.connect(
                "localhost", 465, proxy=f"http://127.0.0.1:{port}", timeout=0.5
            )

        with pytest.raises(smtpsec.TimeoutError, match=f"proxy http://127.0.0.1:{port}"):
            asyncio.run(run())


def test_dropin_proxy_failure_is_an_oserror_and_an_smtplib_exception(proxies: Proxies) -> None:
    import smtplib

    closed = _closed_port()
    with pytest.raises(smtpsec.ProxyError) as caught:
        dropin.SMTP("localhost", closed, proxy=proxies.url("socks5h", proxies.socks5), timeout=5)
    assert isinstance(caught.value, OSError)
    assert isinstance(caught.value, smtplib.SMTPException)
