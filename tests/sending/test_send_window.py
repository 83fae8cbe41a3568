"""``send_many`` reads its input one window at a time (bounded memory at any batch size).

Evidence from the server side: when the first ``MAIL`` of the run arrives,
the client has pulled at most one window of messages from the generator, and
in the end every message arrived exactly once, in order.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import smtpsec
from smtpsec import Security
from smtpsec._engine._session import SEND_WINDOW
from smtpsec.testing import CA, HookSession
from smtpsec.testing.plugin import ServerFactory

COUNT = SEND_WINDOW * 3 + 7


def test_a_generator_is_consumed_window_by_window(
    smtpsec_server: ServerFactory, smtpsec_ca: CA, tmp_path: Path
) -> None:
    pulled = 0
    at_first_mail: list[int] = []

    def messages() -> Iterator[bytes]:
        nonlocal pulled
        for n in range(COUNT):
            pulled += 1
            yield f"Subject: {n}\r\n\r\nbody {n}\r\n".encode()

    def hook(session: HookSession, line: str) -> bytes | None:
        if line.upper().startswith("MAIL") and not at_first_mail:
            at_first_mail.append(pulled)
        return None

    srv = smtpsec_server(Security.IMPLICIT_TLS, on_command=hook)
    options: dict[str, Any] = {
        "security": Security.IMPLICIT_TLS,
        "policy": smtpsec.Policy(cafile=smtpsec_ca.write_cafile(tmp_path / "ca.pem")),
    }
    with smtpsec.connect("localhost", srv.port, **options) as session:
        outcomes = session.send_many(
            smtpsec.Outgoing(m, "a@example.test", ["b@example.test"]) for m in messages()
        )
    assert at_first_mail == [SEND_WINDOW]
    assert len(outcomes) == COUNT
    assert all(isinstance(o, smtpsec.SendResult) for o in outcomes)
    subjects = [m.data.split(b"\r\n", 1)[0] for m in srv.messages]
    assert subjects == [f"Subject: {n}".encode() for n in range(COUNT)]
