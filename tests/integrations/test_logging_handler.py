"""smtpsec.integrations.logging.SMTPHandler: the stdlib handler's API, verified TLS always.

R-PY-14: the stdlib handler uses TLS only with credentials, never verifies, and has
no implicit TLS. Ours refuses self-signed and stripped servers; the stdlib one is
shown leaking the password to the very same stripped server.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from poolkit import finished
from smtpsec import (
    CertificateError,
    InvalidArgumentError,
    Policy,
    Security,
    SMTPSecError,
    TimeoutError,
    TLSUnavailableError,
)
from smtpsec.integrations.logging import SMTPHandler
from smtpsec.testing import CA, SMTPServer

USER = "ops"
PASSWORD = "canary-logging-51e0c"  # a canary: it must never appear before TLS


class RecordingHandler(SMTPHandler):
    """Keeps what reached handleError instead of printing it to stderr."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failures: list[BaseException | None] = []

    def handleError(self, record: logging.LogRecord) -> None:
        self.failures.append(sys.exc_info()[1])


class RecordingStdlibHandler(logging.handlers.SMTPHandler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failures: list[BaseException | None] = []

    def handleError(self, record: logging.LogRecord) -> None:
        self.failures.append(sys.exc_info()[1])


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    """A private logger that does not propagate to the root (and its handlers)."""
    log = logging.getLogger("smtpsec-tests.logging-handler")
    log.propagate = False
    log.setLevel(logging.INFO)
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)


def _handler(
    server: SMTPServer,
    policy: Policy | None,
    *,
    cls: type[SMTPHandler] = RecordingHandler,
    **kw: Any,
) -> Any:
    kw.setdefault("credentials", (USER, PASSWORD))
    return cls(
        ("localhost", server.port),
        "app@example.test",
        ["ops@example.test", "oncall@example.test"],
        "Application error",
        policy=policy,
        **kw,
    )


def test_delivers_over_required_starttls(
    smtpsec_server: Any, trusting_policy: Policy, logger: logging.Logger
) -> None:
    srv = smtpsec_server(Security.STARTTLS, users={USER: PASSWORD}, require_auth=True)
    handler = _handler(srv, trusting_policy, timeout=5.0)
    logger.addHandler(handler)
    logger.error("disk %s is full", "/var")
    assert handler.failures == []
    (msg,) = srv.messages
    assert msg.tls
    assert msg.sender == "app@example.test"
    assert msg.recipients == ("ops@example.test", "oncall@example.test")
    assert b"Subject: Application error" in msg.data
    assert b"disk /var is full" in msg.data
    (capture,) = finished(srv, 1)
    assert capture.auth[0].success
    assert capture.secrets_leaked(PASSWORD) == []


def test_a_burst_of_records_shares_one_session(
    smtpsec_server: Any, trusting_policy: Policy, logger: logging.Logger
) -> None:
    srv = smtpsec_server(Security.STARTTLS, users={USER: PASSWORD}, require_auth=True)
    handler = _handler(srv, trusting_policy, timeout=5.0)
    logger.addHandler(handler)
    for n in range(4):
        logger.error("failure %d", n)
    assert handler.failures == []
    (capture,) = finished(srv, 1)
    assert len(capture.messages) == 4
    assert len(capture.auth) == 1
    assert len(srv.connections) == 1


def test_delivers_over_implicit_tls_and_accepts_a_single_address(
    smtpsec_server: Any, trusting_policy: Policy, logger: logging.Logger
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    handler = RecordingHandler(
        ("localhost", srv.port),
        "app@example.test",
        "ops@example.test",
        "Subject",
        policy=trusting_policy,
        security=Security.IMPLICIT_TLS,
    )
    assert handler.toaddrs == ["ops@example.test"]
    logger.addHandler(handler)
    logger.critical("down")
    assert handler.failures == []
    assert srv.messages[0].recipients == ("ops@example.test",)
    assert "AUTH" not in srv.connections[0].commands  # no credentials given


def test_subject_can_depend_on_the_record(
    smtpsec_server: Any, trusting_policy: Policy, logger: logging.Logger
) -> None:
    class PerLevel(RecordingHandler):
        def getSubject(self, record: logging.LogRecord) -> str:
            return f"[{record.levelname}] app"

    srv = smtpsec_server(Security.STARTTLS, users={USER: PASSWORD})
    handler = _handler(srv, trusting_policy, cls=PerLevel)
    logger.addHandler(handler)
    logger.warning("hm")
    assert b"Subject: [WARNING] app" in srv.messages[0].data


def test_refuses_a_self_signed_server(
    smtpsec_server: Any, trusting_policy: Policy, logger: logging.Logger
) -> None:
    """R-PY-14: the certificate is verified even though the stdlib handler would not."""
    srv = smtpsec_server(
        Security.STARTTLS, cert=CA.self_signed("localhost"), users={USER: PASSWORD}
    )
    handler = _handler(srv, trusting_policy)
    logger.addHandler(handler)
    logger.error("secret stack trace")
    assert len(handler.failures) == 1
    assert isinstance(handler.failures[0], CertificateError)
    (capture,) = finished(srv, 1)
    assert srv.messages == []
    assert capture.auth == []
    assert capture.secrets_leaked(PASSWORD) == []


def test_refuses_a_stripped_server(
    smtpsec_server: Any, trusting_policy: Policy, logger: logging.Logger
) -> None:
    """R-PY-14 / R-PY-6: no STARTTLS means no mail and no password, not cleartext."""
    srv = smtpsec_server(
        Security.STARTTLS,
        strip_starttls=True,
        require_tls=False,
        pre_tls_auth=("PLAIN", "LOGIN"),
        users={USER: PASSWORD},
    )
    handler = _handler(srv, trusting_policy)
    logger.addHandler(handler)
    logger.error("secret stack trace")
    assert len(handler.failures) == 1
    assert isinstance(handler.failures[0], TLSUnavailableError)
    (capture,) = finished(srv, 1)
    assert srv.messages == []
    assert capture.commands == ["EHLO", "QUIT"]
    assert capture.secrets_leaked(PASSWORD, "secret stack trace") == []


def test_stdlib_handler_sends_password_and_log_in_cleartext_to_the_stripped_server(
    smtpsec_server: Any, logger: logging.Logger
) -> None:
    """The pitfall this module exists for (R-PY-14), shown against the same server."""
    srv = smtpsec_server(
        Security.STARTTLS,
        strip_starttls=True,
        require_tls=False,
        pre_tls_auth=("PLAIN", "LOGIN"),
        users={USER: PASSWORD},
    )
    handler = RecordingStdlibHandler(
        ("127.0.0.1", srv.port),
        "app@example.test",
        ["ops@example.test"],
        "Application error",
        credentials=(USER, PASSWORD),
        timeout=5.0,
    )
    logger.addHandler(handler)
    logger.error("secret stack trace")
    assert handler.failures == []
    (capture,) = finished(srv, 1)
    assert capture.secrets_leaked(PASSWORD, "secret stack trace") == [
        PASSWORD,
        "secret stack trace",
    ]
    assert not srv.messages[0].tls


def test_silent_server_cannot_block_logging(
    smtpsec_server: Any, trusting_policy: Policy, logger: logging.Logger
) -> None:
    """timeout= bounds the wait for the greeting: emit() returns with a TimeoutError."""
    srv = smtpsec_server(Security.STARTTLS, greeting=None)
    handler = _handler(srv, trusting_policy, timeout=0.3)
    logger.addHandler(handler)
    logger.error("x")
    assert len(handler.failures) == 1
    assert isinstance(handler.failures[0], TimeoutError)
    assert srv.messages == []


def test_own_debug_logging_does_not_recurse(smtpsec_server: Any, trusting_policy: Policy) -> None:
    """On the root logger at DEBUG, smtpsec's transcript must not mail itself."""
    srv = smtpsec_server(Security.STARTTLS, users={USER: PASSWORD})
    handler = _handler(srv, trusting_policy)
    root = logging.getLogger()
    transcript = logging.getLogger("smtpsec")
    old_root, old_transcript = root.level, transcript.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    transcript.setLevel(logging.DEBUG)
    try:
        logging.getLogger("smtpsec-tests.root").error("once")
    finally:
        root.removeHandler(handler)
        root.setLevel(old_root)
        transcript.setLevel(old_transcript)
    assert handler.failures == []
    assert len(srv.messages) == 1


def test_recursion_error_is_not_swallowed(
    smtpsec_server: Any, trusting_policy: Policy, logger: logging.Logger
) -> None:
    """Like the stdlib, RecursionError propagates; the handler still works afterwards."""

    class DeepOnce(RecordingHandler):
        calls = 0

        def getSubject(self, record: logging.LogRecord) -> str:
            DeepOnce.calls += 1
            if DeepOnce.calls == 1:
                raise RecursionError
            return "fine"

    srv = smtpsec_server(Security.STARTTLS, users={USER: PASSWORD})
    handler = _handler(srv, trusting_policy, cls=DeepOnce)
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "x", (), None)
    with pytest.raises(RecursionError):
        handler.emit(record)
    handler.emit(record)
    assert handler.failures == []
    assert len(srv.messages) == 1


def test_unreachable_default_ports_go_to_handle_error(
    trusting_policy: Policy, refused_submission_ports: tuple[int, int]
) -> None:
    """A bare host name means port None: smtpsec tries 465, then 587 (never cleartext 25)."""
    handler = RecordingHandler(
        "127.0.0.1", "a@example.test", ["b@example.test"], "s", policy=trusting_policy, timeout=2.0
    )
    assert handler.mailport is None
    handler.emit(logging.makeLogRecord({"msg": "x"}))
    assert len(handler.failures) == 1
    assert isinstance(handler.failures[0], SMTPSecError)


# --------------------------------------------------------------------------- secure=


@pytest.fixture(scope="module")
def client_files(
    smtpsec_ca: CA, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, Path]:
    leaf = smtpsec_ca.issue_client("app@example.test")
    folder = tmp_path_factory.mktemp("logging-client")
    certfile, keyfile = leaf.write(folder)
    combined = folder / "combined.pem"
    combined.write_bytes(leaf.cert_pem + leaf.key_pem)
    return certfile, keyfile, combined


def test_secure_keyfile_certfile_presents_a_client_certificate(
    smtpsec_server: Any,
    trusting_policy: Policy,
    logger: logging.Logger,
    client_files: tuple[Path, Path, Path],
) -> None:
    certfile, keyfile, _combined = client_files
    srv = smtpsec_server(Security.STARTTLS, request_client_cert=True)
    handler = _handler(srv, trusting_policy, credentials=None, secure=(str(keyfile), str(certfile)))
    assert handler.policy.client_cert == (str(certfile), str(keyfile))
    assert handler.policy.cafile == trusting_policy.cafile  # trust kept
    logger.addHandler(handler)
    logger.error("with a client certificate")
    assert handler.failures == []
    assert finished(srv, 1)[0].client_cert_der is not None


def test_secure_forms(trusting_policy: Policy, client_files: tuple[Path, Path, Path]) -> None:
    certfile, keyfile, combined = client_files
    empty = SMTPHandler(
        ("h", 587), "a@x.test", ["b@x.test"], "s", secure=(), policy=trusting_policy
    )
    assert empty.policy is trusting_policy  # () never means "unverified"
    single = SMTPHandler(("h", 587), "a@x.test", ["b@x.test"], "s", secure=(str(combined),))
    assert single.policy.client_cert == (str(combined), str(combined))
    assert single.policy.verifies
    with pytest.raises(InvalidArgumentError, match="secure="):
        SMTPHandler(("h", 587), "a@x.test", ["b@x.test"], "s", secure=("a", "b", "c"))  # type: ignore[arg-type]
    both = Policy(client_cert=(str(certfile), str(keyfile)))
    with pytest.raises(InvalidArgumentError, match="both secure="):
        SMTPHandler(("h", 587), "a@x.test", ["b@x.test"], "s", secure=(str(keyfile),), policy=both)


def test_is_a_stdlib_smtp_handler() -> None:
    handler = SMTPHandler(("h", 465), "a@x.test", ["b@x.test"], "s", credentials=("u", "p"))
    assert isinstance(handler, logging.handlers.SMTPHandler)
    assert (handler.mailhost, handler.mailport) == ("h", 465)
    assert handler.timeout == 5.0
    assert handler.security is Security.AUTO
    assert handler.policy == Policy()
