"""No secret in logs or error text (checklist R-LIB-SECRETS-1).

With the ``smtpsec.transcript`` logger at DEBUG, a full authenticated send over
each SASL mechanism that carries a password leaves no password canary (raw or
base64) and no body canary in the captured log.
"""

from __future__ import annotations

import base64
import logging

import pytest
from _security_kit import Kit, leaked

import smtpsec

Security = smtpsec.Security


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_transcript_has_no_secrets__R_LIB_SECRETS_1(
    kit: Kit, caplog: pytest.LogCaptureFixture, mechanism: str
) -> None:
    srv = kit.server(auth_mechanisms=(mechanism,))
    with (
        caplog.at_level(logging.DEBUG, logger="smtpsec"),
        kit.connect(srv, Security.STARTTLS) as session,
    ):
        session.send(kit.message())
    capture = kit.finished(srv)
    assert capture.auth[0].mechanism == mechanism and capture.auth[0].success
    assert kit.body.encode() in capture.messages[0].data
    transcript = [r for r in caplog.records if r.name == "smtpsec.transcript"]
    assert any("AUTH" in r.getMessage() for r in transcript)  # the log is really on
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert leaked(text, kit.password, kit.body) == []
    # The check itself works: a PLAIN initial response in the log would be caught.
    plain = base64.b64encode(f"\0{kit.user}\0{kit.password}".encode()).decode()
    assert leaked(f"{text}\nC: AUTH PLAIN {plain}", kit.password) == [kit.password]


def test_auth_failure_text_has_no_secrets__R_LIB_SECRETS_1(kit: Kit) -> None:
    """A refused password does not come back in the exception message."""
    srv = kit.server(users={kit.user: "something else"})
    with pytest.raises(smtpsec.AuthenticationError) as info:
        kit.connect(srv, Security.STARTTLS)
    assert leaked(str(info.value), kit.password) == []
    assert leaked(repr(info.value.args), kit.password) == []
