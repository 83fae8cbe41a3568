"""What goes on the wire for each kind of body: EmailMessage, bytes, files, iterables;
SIZE, 8BITMIME, SMTPUTF8, DSN and SMTP smuggling (R-1870-*, R-6531-*, R-5321-2.3.8-1,
R-5321-4.5.2-1, R-3030-3-1, R-6409-8-1, R-PY-18)."""

from __future__ import annotations

import email
import email.policy
import io
from collections.abc import Iterator
from email.message import EmailMessage, Message
from typing import Any

import pytest
from sending_helpers import CANARY, finished, message, without

from smtpsec import SendOptions
from smtpsec.errors import CapabilityError, InvalidArgumentError
from smtpsec.testing import ReceivedMessage

ENVELOPE: dict[str, Any] = {"sender": "ann@example.test", "recipients": ["bob@example.test"]}
CHUNKING = {"bdat": {}, "data": {"extensions": without("CHUNKING")}}


def _one(srv: Any) -> ReceivedMessage:
    (delivered,) = srv.messages
    return delivered  # type: ignore[no-any-return]


def _assert_crlf_only(data: bytes) -> None:
    assert data.count(b"\r") == data.count(b"\r\n") == data.count(b"\n")


# ---------------------------------------------------------------- EmailMessage


def test_R_6409_8_1_date_and_message_id_added_bcc_removed(serve: Any, connect: Any) -> None:
    msg = message()
    msg["Bcc"] = "hidden@example.test"
    with connect(serve()) as session:
        srv_result = session.send(msg)
    assert "hidden@example.test" in srv_result.accepted
    assert msg["Date"] is None and msg["Bcc"] == "hidden@example.test"  # caller's object untouched


def test_R_6409_8_1_on_the_wire(serve: Any, connect: Any) -> None:
    srv = serve()
    msg = message()
    msg["Bcc"] = "hidden@example.test"
    with connect(srv) as session:
        session.send(msg)
    delivered = _one(srv)
    parsed = email.message_from_bytes(delivered.data, policy=email.policy.default)
    assert len(parsed.get_all("Date") or []) == 1
    assert len(parsed.get_all("Message-ID") or []) == 1
    assert str(parsed["Message-ID"]).endswith("@example.test>")
    assert b"Bcc" not in delivered.data and b"hidden" not in delivered.data
    assert "hidden@example.test" in delivered.recipients


def test_existing_date_and_message_id_are_kept(serve: Any, connect: Any) -> None:
    srv = serve()
    msg = message()
    msg["Date"] = "Mon, 01 Jan 2024 00:00:00 +0000"
    msg["Message-ID"] = "<fixed@example.test>"
    with connect(srv) as session:
        session.send(msg)
    data = _one(srv).data
    assert data.count(b"Message-ID: <fixed@example.test>") == 1
    assert data.count(b"Date: Mon, 01 Jan 2024") == 1


def test_R_PY_18_modern_python_refuses_crlf_in_a_header() -> None:
    msg = EmailMessage()
    with pytest.raises(ValueError, match=r"linefeed|carriage"):
        msg["Subject"] = "x\r\nBcc: evil@x.test"


@pytest.mark.parametrize("kind", ["compat32", "set_raw", "name", "part"])
def test_R_PY_18_header_injection_refused_before_sending(
    serve: Any, connect: Any, kind: str
) -> None:
    msg: Message
    if kind == "compat32":
        msg = Message()
        msg["From"], msg["To"] = "ann@example.test", "bob@example.test"
        msg["Subject"] = "x\r\nBcc: evil@x.test"
        msg.set_payload("hi\n")
    else:
        msg = message()
        if kind == "set_raw":
            msg.set_raw("Subject", "x\r\nBcc: evil@x.test")
        elif kind == "name":
            msg.set_raw("X-Bad\r\nBcc", "evil@x.test")
        else:
            msg.add_attachment(b"data", maintype="application", subtype="octet-stream")
            msg.get_payload()[1].set_raw("X-Part", "y\nBcc: evil@x.test")  # type: ignore[index]
    srv = serve()
    with connect(srv) as session, pytest.raises(InvalidArgumentError, match="header"):
        session.send(msg)
    assert "MAIL" not in finished(srv).commands


@pytest.mark.parametrize("sender", ["ann@example.test\r\nX-Evil: y", "ann@[192.0.2.1]\nRCPT"])
def test_R_PY_18_unsafe_envelope_sender_is_refused_before_the_message_is_built(
    serve: Any, connect: Any, sender: str
) -> None:
    """The sender's domain goes into the Message-ID smtpsec adds: a CR/LF in it must be
    an InvalidArgumentError about the address, never the email package's ValueError."""
    srv = serve()
    with connect(srv) as session, pytest.raises(InvalidArgumentError, match="envelope address"):
        session.send(message(), sender=sender)
    assert "MAIL" not in finished(srv).commands


def test_R_PY_18_folded_values_are_fine(serve: Any, connect: Any) -> None:
    msg = email.message_from_bytes(
        b"From: ann@example.test\r\nTo: bob@example.test\r\nSubject: a long\r\n folded subject\r\n"
        b"\r\nbody\r\n",
        policy=email.policy.default,
    )
    srv = serve()
    with connect(srv) as session:
        session.send(msg)
    assert b"folded subject" in _one(srv).data


def test_compat32_message(serve: Any, connect: Any) -> None:
    msg = Message()
    msg["From"], msg["To"], msg["Subject"] = "ann@example.test", "bob@example.test", "old"
    msg.set_payload(f"{CANARY}\n")
    srv = serve()
    with connect(srv) as session:
        session.send(msg)
    data = _one(srv).data
    assert CANARY.encode() in data and b"Message-ID:" in data
    _assert_crlf_only(data)


def test_resent_headers_choose_the_envelope(serve: Any, connect: Any) -> None:
    msg = message()
    msg["Resent-Date"] = "Mon, 01 Jan 2024 00:00:00 +0000"
    msg["Resent-From"] = "fwd@example.test"
    msg["Resent-To"] = "new@example.test"
    msg["Resent-Bcc"] = "secret@example.test"
    srv = serve()
    with connect(srv) as session:
        result = session.send(msg)
    assert result.sender == "fwd@example.test"
    assert result.accepted == ("new@example.test", "secret@example.test")
    assert b"secret@" not in _one(srv).data


def test_two_resent_blocks_are_ambiguous(serve: Any, connect: Any) -> None:
    msg = message()
    msg["Resent-Date"] = "Mon, 01 Jan 2024 00:00:00 +0000"
    msg["Resent-Date"] = "Tue, 02 Jan 2024 00:00:00 +0000"
    with connect(serve()) as session, pytest.raises(InvalidArgumentError, match="Resent"):
        session.send(msg)


# ---------------------------------------------------------------- bytes, files, iterables


@pytest.mark.parametrize("method", CHUNKING)
def test_R_1870_2_size_counts_the_crlf_added_at_the_end(
    serve: Any, connect: Any, method: str
) -> None:
    srv = serve(**CHUNKING[method])
    body = b"Subject: s\n\nline one\nno final newline"
    with connect(srv) as session:
        result = session.send(body, **ENVELOPE)
    delivered = _one(srv)
    assert delivered.data.endswith(b"no final newline\r\n")
    assert int(delivered.mail_params["SIZE"] or 0) == len(delivered.data) == result.size


@pytest.mark.parametrize("method", CHUNKING)
def test_R_1870_2_size_of_a_seekable_file(serve: Any, connect: Any, method: str) -> None:
    srv = serve(**CHUNKING[method])
    body = b"Subject: s\r\n\r\n" + b"." * 10 + b"\n.\r\n..x\n.hidden\r" * 20_000
    fp = io.BytesIO(b"IGNORED" + body)
    fp.seek(len(b"IGNORED"))
    with connect(srv) as session:
        result = session.send(fp, **ENVELOPE)
    delivered = _one(srv)
    assert int(delivered.mail_params["SIZE"] or 0) == len(delivered.data) == result.size
    assert not delivered.data.startswith(b"IGNORED")
    _assert_crlf_only(delivered.data)
    # R-5321-4.5.2-1: dot lines round-trip through a dot-unstuffing server.
    assert delivered.data.count(b"\r\n..x\r\n.hidden\r\n") == 20_000


class _Pipe(io.RawIOBase):
    """A readable, non-seekable binary stream."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._data.read(size)


@pytest.mark.parametrize("method", CHUNKING)
def test_unseekable_file_and_iterable_are_streamed_without_size(
    serve: Any, connect: Any, method: str
) -> None:
    srv = serve(**CHUNKING[method])
    body = b"Subject: s\r\n\r\n" + f"{CANARY}\n".encode() * 100_000

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 7_777):
            yield body[start : start + 7_777]

    with connect(srv) as session:
        first = session.send(_Pipe(body), **ENVELOPE)
        second = session.send(chunks(), **ENVELOPE)
    one, two = srv.messages
    assert "SIZE" not in one.mail_params and "SIZE" not in two.mail_params
    assert one.data == two.data == body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert first.size == second.size == len(one.data)
    if method == "bdat":
        assert len(two.bdat_chunks) > 1  # streamed in chunks, not one buffer


def test_empty_body(serve: Any, connect: Any) -> None:
    srv = serve(extensions=without("CHUNKING"))
    with connect(srv) as session:
        assert session.send(b"", **ENVELOPE).size == 0
        assert session.send([], **ENVELOPE).size == 0
    assert [m.data for m in srv.messages] == [b"", b""]


def test_empty_body_over_bdat(serve: Any, connect: Any) -> None:
    srv = serve()
    with connect(srv) as session:
        session.send(iter([b""]), **ENVELOPE)
    assert _one(srv).bdat_chunks == (0,)


@pytest.mark.parametrize("method", CHUNKING)
def test_R_5321_2_3_8_1_smuggling_body_stays_one_message(
    serve: Any, connect: Any, method: str
) -> None:
    srv = serve(**CHUNKING[method])
    body = b"Subject: s\r\n\r\na\nb\r.\r\nc\n.\nd\r.\re " + CANARY.encode() + b"\r\n"
    with connect(srv) as session:
        session.send(body, **ENVELOPE)
        session.send(bytearray(body), **ENVELOPE)
        session.send(memoryview(body), **ENVELOPE)
    delivered = srv.messages
    assert len(delivered) == 3
    for received in delivered:
        assert received.via == method.upper()
        _assert_crlf_only(received.data)
        assert received.data.endswith(CANARY.encode() + b"\r\n")
        # The three lone dots stayed content, on lines of their own.
        assert received.data.count(b"\r\n.\r\n") == 3
    assert finished(srv).commands_post_tls.count("MAIL") == 3


def test_text_mode_file_is_refused(serve: Any, connect: Any) -> None:
    srv = serve()
    with connect(srv) as session, pytest.raises(InvalidArgumentError, match="binary"):
        session.send(io.StringIO("text"), **ENVELOPE)  # type: ignore[arg-type]
    assert "MAIL" not in finished(srv).commands


@pytest.mark.parametrize(
    ("value", "match"),
    [("str body", "ambiguous"), (12, "cannot send")],
)
def test_unsupported_message_types(connect: Any, serve: Any, value: Any, match: str) -> None:
    with connect(serve()) as session, pytest.raises(InvalidArgumentError, match=match):
        session.send(value, **ENVELOPE)


def test_envelope_required(serve: Any, connect: Any) -> None:
    with connect(serve()) as session:
        with pytest.raises(InvalidArgumentError, match="sender"):
            session.send(b"x", recipients=["bob@example.test"])
        with pytest.raises(InvalidArgumentError, match="recipients"):
            session.send(b"x", sender="ann@example.test")
        msg = message()
        del msg["To"]
        with pytest.raises(InvalidArgumentError, match="recipients"):
            session.send(msg)
        msg = message()
        del msg["From"]
        with pytest.raises(InvalidArgumentError, match="sender"):
            session.send(msg)  # never silently the null sender


@pytest.mark.parametrize("method", CHUNKING)
def test_iterable_that_fails_before_anything_is_sent(serve: Any, connect: Any, method: str) -> None:
    srv = serve(**CHUNKING[method])
    with connect(srv) as session:
        with pytest.raises(InvalidArgumentError, match="chunks must be bytes"):
            session.send(["text"], **ENVELOPE)  # type: ignore[list-item]
        session.send(message())
    assert finished(srv).commands_post_tls.count("MAIL") == 1


def _failing(after: bytes) -> Iterator[bytes]:
    yield after
    raise OSError("disk went away")


def test_iterable_failing_mid_data_closes_the_connection(serve: Any, connect: Any) -> None:
    srv = serve(extensions=without("CHUNKING"))
    session = connect(srv)
    with pytest.raises(InvalidArgumentError, match="disk went away") as info:
        session.send(_failing(b"Subject: s\r\n\r\n" + CANARY.encode() * 10), **ENVELOPE)
    assert isinstance(info.value.__cause__, OSError)
    assert session.closed
    assert srv.messages == []
    assert "." not in finished(srv).lines_post_tls


def test_iterable_failing_mid_bdat_is_discarded_with_rset(serve: Any, connect: Any) -> None:
    srv = serve()
    with connect(srv) as session:
        with pytest.raises(InvalidArgumentError, match="disk went away"):
            session.send(_failing(b"x" * (3 * 1024 * 1024)), **ENVELOPE)
        assert not session.closed
        session.send(message())
    (delivered,) = srv.messages
    assert CANARY.encode() in delivered.data
    assert "RSET" in finished(srv).commands


def test_iterable_can_be_sent_once(serve: Any, connect: Any) -> None:
    from smtpsec._engine._message import prepare_message

    prepared = prepare_message(iter([b"x"]), **ENVELOPE)
    assert list(prepared.chunks()) == [b"x"]
    with pytest.raises(InvalidArgumentError, match="only once"):
        list(prepared.chunks())
    with pytest.raises(InvalidArgumentError, match="7 bit"):
        prepared.as_seven_bit()


# ---------------------------------------------------------------- SIZE


def test_R_1870_3_too_big_fails_before_mail(serve: Any, connect: Any) -> None:
    srv = serve(extensions=(*without("SIZE"), "SIZE 1000"))
    with connect(srv) as session:
        outcomes = session.send_many([message(body="x\n" * 1000), message()])
        with pytest.raises(CapabilityError, match="1000"):
            session.send(b"y" * 2000, **ENVELOPE)
    assert isinstance(outcomes[0], CapabilityError)
    assert not isinstance(outcomes[1], Exception)
    assert finished(srv).commands_post_tls.count("MAIL") == 1


@pytest.mark.parametrize("value", ["-1", "abc", "9" * 25, "", "0"])
def test_R_1870_1_malformed_size_is_ignored(serve: Any, connect: Any, value: str) -> None:
    srv = serve(extensions=(*without("SIZE"), f"SIZE {value}".strip()))
    with connect(srv) as session:
        session.send(message())
    assert "SIZE" in _one(srv).mail_params


def test_R_1870_2_no_size_parameter_without_the_extension(serve: Any, connect: Any) -> None:
    srv = serve(extensions=without("SIZE"))
    with connect(srv) as session:
        session.send(message())
    assert "SIZE" not in _one(srv).mail_params


# ---------------------------------------------------------------- 8BITMIME / SMTPUTF8


def _eight_bit_message() -> EmailMessage:
    msg = message(body=f"grüße {CANARY}\n", subject="héllo")
    msg.add_attachment(b"\xff\xfe\x00raw", maintype="application", subtype="octet-stream")
    return msg


def test_R_5321_2_4_1_8bitmime_declared(serve: Any, connect: Any) -> None:
    srv = serve()
    with connect(srv) as session:
        session.send(_eight_bit_message())
        session.send(message())
    eight, seven = srv.messages
    assert eight.mail_params.get("BODY") == "8BITMIME"
    assert not eight.data.isascii()
    assert "BODY" not in seven.mail_params


@pytest.mark.parametrize("method", CHUNKING)
def test_R_5321_2_4_1_reencoded_to_7bit_without_8bitmime(
    serve: Any, connect: Any, method: str
) -> None:
    extensions = without("8BITMIME", *(("CHUNKING",) if method == "data" else ()))
    srv = serve(extensions=extensions)
    with connect(srv) as session:
        result = session.send(_eight_bit_message())
    delivered = _one(srv)
    assert delivered.data.isascii()
    assert finished(srv).post_tls.isascii()
    assert "BODY" not in delivered.mail_params
    assert int(delivered.mail_params["SIZE"] or 0) == len(delivered.data) == result.size
    parsed = email.message_from_bytes(delivered.data, policy=email.policy.default)
    assert str(parsed["Subject"]) == "héllo"
    body = parsed.get_body()
    assert body is not None and body.get_content() == f"grüße {CANARY}\n"
    (attachment,) = parsed.iter_attachments()
    assert attachment.get_content() == b"\xff\xfe\x00raw"


def test_R_5321_2_4_1_raw_8bit_bytes_fail_before_mail(serve: Any, connect: Any) -> None:
    srv = serve(extensions=without("8BITMIME"))
    with connect(srv) as session, pytest.raises(CapabilityError, match="8BITMIME"):
        session.send("Subject: é\r\n\r\nx\r\n".encode(), **ENVELOPE)
    assert "MAIL" not in finished(srv).commands


def test_8bit_compat32_message_reencoded(serve: Any, connect: Any) -> None:
    msg = Message()
    msg["From"], msg["To"] = "ann@example.test", "bob@example.test"
    msg.set_payload("grüße\n", "utf-8")
    msg.replace_header("Content-Transfer-Encoding", "8bit")
    msg.set_payload("grüße\n".encode().decode("ascii", "surrogateescape"))
    srv = serve(extensions=without("8BITMIME"))
    with connect(srv) as session:
        session.send(msg)
    assert _one(srv).data.isascii()


@pytest.mark.parametrize("method", CHUNKING)
def test_streamed_8bit_without_8bitmime_is_stopped(serve: Any, connect: Any, method: str) -> None:
    extensions = without("8BITMIME", *(("CHUNKING",) if method == "data" else ()))
    srv = serve(extensions=extensions)
    session = connect(srv)
    body = [b"Subject: s\r\n\r\n", b"ascii\r\n" * 10, "é\r\n".encode()]
    with pytest.raises(CapabilityError, match="8BITMIME"):
        session.send(iter(body), **ENVELOPE)
    assert srv.messages == []
    assert session.closed is (method == "data")


def test_R_6531_3_4_1_smtputf8_and_8bitmime_for_utf8_addresses(serve: Any, connect: Any) -> None:
    srv = serve()
    with connect(srv) as session:
        session.send(message(to="用户@例子.测试"))
        session.send(
            b"Subject: x\r\n\r\nx\r\n", sender="ann@example.test", recipients=["jörg@example.test"]
        )
        session.send(message(subject="ünïcödé only in the subject"))
    utf8_header, utf8_envelope, plain = srv.messages
    for received in (utf8_header, utf8_envelope):
        assert "SMTPUTF8" in received.mail_params
        assert received.mail_params.get("BODY") == "8BITMIME"
    assert "用户@例子.测试".encode() in utf8_header.data
    assert "SMTPUTF8" not in plain.mail_params
    assert b"=?utf-8?" in plain.data


def test_R_6531_3_4_1_utf8_address_only_in_a_header_needs_smtputf8(
    serve: Any, connect: Any
) -> None:
    """A non-ASCII addr-spec in Reply-To (not in the envelope) still needs SMTPUTF8; an
    ASCII address with a non-ASCII display name does not (RFC 2047 encodes the name)."""
    srv = serve()
    utf8 = message()
    utf8["Reply-To"] = "Jörg <jörg@example.test>"
    named = message()
    named["Reply-To"] = "Jörg <joerg@example.test>"
    with connect(srv) as session:
        for msg in (utf8, named):
            session.send(msg, sender="ann@example.test", recipients=["bob@example.test"])
    first, second = srv.messages
    assert "SMTPUTF8" in first.mail_params
    assert "jörg@example.test".encode() in first.data
    assert "SMTPUTF8" not in second.mail_params
    assert b"=?utf-8?" in second.data


def test_R_6531_3_2_1_utf8_address_without_smtputf8_fails_before_mail(
    serve: Any, connect: Any
) -> None:
    srv = serve(extensions=without("SMTPUTF8"))
    with connect(srv) as session:
        with pytest.raises(CapabilityError, match="SMTPUTF8"):
            session.send(message(to="用户@例子.测试"))
        with pytest.raises(CapabilityError, match="SMTPUTF8"):
            session.send(b"x\r\n", sender="jörg@example.test", recipients=["bob@example.test"])
    assert "MAIL" not in finished(srv).commands


def test_utf8_headers_without_8bitmime(serve: Any, connect: Any) -> None:
    srv = serve(extensions=(*without("8BITMIME"),))
    with connect(srv) as session, pytest.raises(CapabilityError, match="8BITMIME"):
        session.send(message(to="用户@例子.测试"))
    assert "MAIL" not in finished(srv).commands


# ---------------------------------------------------------------- DSN


def test_dsn_options_when_offered(serve: Any, connect: Any) -> None:
    srv = serve()
    options = SendOptions(notify="failure, delay", ret="hdrs", envid="id+1=x", orcpt=True)  # type: ignore[arg-type]
    with connect(srv) as session:
        session.send(message(to="bob+tag@example.test, jörg@example.test"), options=options)
    delivered = _one(srv)
    assert delivered.mail_params["RET"] == "HDRS"
    assert delivered.mail_params["ENVID"] == "id+2B1+3Dx"
    first, second = delivered.recipient_params
    assert first == {"NOTIFY": "FAILURE,DELAY", "ORCPT": "rfc822;bob+2Btag@example.test"}
    assert second["ORCPT"] == "utf-8;j\\x{F6}rg@example.test"


def test_dsn_not_offered(serve: Any, connect: Any) -> None:
    srv = serve(extensions=without("DSN"))
    with connect(srv) as session:
        with pytest.raises(CapabilityError, match="DSN"):
            session.send(message(), options=SendOptions(notify=("NEVER",)))
        session.send(message(), options=SendOptions(ret="FULL", require_dsn=False))
    delivered = _one(srv)
    assert "RET" not in delivered.mail_params
    assert finished(srv).commands_post_tls.count("MAIL") == 1


def test_mail_params_pass_through(serve: Any, connect: Any) -> None:
    srv = serve()
    with connect(srv) as session:
        session.send(message(), options=SendOptions(mail_params={"AUTH": "<>"}))
    assert _one(srv).mail_params.get("AUTH") == "<>"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"notify": ("NEVER", "FAILURE")},
        {"notify": ("SOMETIMES",)},
        {"ret": "ALL"},
        {"envid": ""},
        {"envid": "x" * 101},
        {"envid": "caf\u00e9"},
        {"mail_params": {"size": "1"}},
    ],
)
def test_invalid_send_options(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError):
        SendOptions(**kwargs)


def test_bad_mail_param_fails_before_sending(serve: Any, connect: Any) -> None:
    srv = serve()
    with connect(srv) as session, pytest.raises(InvalidArgumentError):
        session.send(message(), options=SendOptions(mail_params={"X": "a b"}))
    assert "MAIL" not in finished(srv).commands


# ---------------------------------------------------------------- edge cases


def test_null_sender_gets_a_neutral_message_id(serve: Any, connect: Any) -> None:
    srv = serve()
    msg = message()
    del msg["From"]
    msg["From"] = "MAILER-DAEMON <>"
    with connect(srv) as session:
        result = session.send(msg, sender="")
    assert result.sender == ""
    assert _one(srv).sender == ""
    assert b"@smtpsec.invalid>" in _one(srv).data


def test_compat32_message_with_utf8_address(serve: Any, connect: Any) -> None:
    msg = Message()
    msg["From"], msg["To"] = "ann@example.test", "jörg@example.test"
    msg.set_payload("hi\n")
    srv = serve()
    with connect(srv) as session:
        session.send(msg)
    delivered = _one(srv)
    assert "SMTPUTF8" in delivered.mail_params
    assert "To: jörg@example.test".encode() in delivered.data
    assert b"@xn--" not in delivered.data  # Message-ID: sender's domain, not IDNA


def test_non_contiguous_buffer(serve: Any, connect: Any) -> None:
    raw = b"S.u.b.j.e.c.t.:. .x.\r.\n.\r.\n.b.o.d.y.\r.\n."
    srv = serve()
    with connect(srv) as session:
        session.send(memoryview(raw)[::2], **ENVELOPE)
    assert _one(srv).data == b"Subject: x\r\n\r\nbody\r\n"


def test_R_PY_18_serialised_bcc_is_caught() -> None:
    from smtpsec._engine._message import _render

    msg = message()
    msg["Bcc"] = "x@example.test"  # _render runs after Bcc removal: here it must refuse
    with pytest.raises(InvalidArgumentError, match="injected"):
        _render(msg, email.policy.SMTP)


def test_unserialisable_message() -> None:
    from smtpsec._engine._message import prepare_message

    msg = Message()
    msg["From"], msg["To"] = "ann@example.test", "bob@example.test"
    msg.set_payload(12)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="could not be serialised"):
        prepare_message(msg, sender=None, recipients=None)


def test_8bit_part_that_cannot_be_made_7bit(serve: Any, connect: Any) -> None:
    msg = Message()
    msg["From"], msg["To"] = "ann@example.test", "bob@example.test"
    msg["Content-Type"] = "application/octet-stream"
    msg["Content-Transfer-Encoding"] = "binary"
    msg.set_payload("\udcff\udcfe raw")
    srv = serve(extensions=without("8BITMIME"))
    with connect(srv) as session, pytest.raises(CapabilityError, match="re-encoding") as info:
        session.send(msg)
    assert info.value.__cause__ is not None
    assert "MAIL" not in finished(srv).commands


@pytest.mark.parametrize("method", CHUNKING)
def test_streamed_ascii_without_8bitmime(serve: Any, connect: Any, method: str) -> None:
    extensions = without("8BITMIME", *(("CHUNKING",) if method == "data" else ()))
    srv = serve(extensions=extensions)
    with connect(srv) as session:
        session.send(iter([b"Subject: s\r\n\r\n", b"ascii\r\n"]), **ENVELOPE)
    assert "BODY" not in _one(srv).mail_params


class _Interrupt(BaseException):
    pass


def _interrupted() -> Iterator[bytes]:
    yield b"Subject: s\r\n\r\n" + CANARY.encode()
    raise _Interrupt


def test_base_exception_mid_body_closes_the_connection(serve: Any, connect: Any) -> None:
    srv = serve(extensions=without("CHUNKING"))
    session = connect(srv)
    with pytest.raises(_Interrupt):
        session.send(_interrupted(), **ENVELOPE)
    session.close()  # no QUIT into an open DATA body
    capture = finished(srv)
    assert srv.messages == []
    assert "QUIT" not in capture.lines_post_tls


def test_recipients_given_as_a_generator_are_read_once(serve: Any, connect: Any) -> None:
    """An iterator of recipients (read once) reaches the envelope whole, for bytes too."""
    srv = serve()
    wanted = ["bob@example.test", "carl@example.test"]
    with connect(srv) as session:
        result = session.send(
            b"Subject: x\r\n\r\nhi\r\n", sender="ann@example.test", recipients=iter(wanted)
        )
    assert result.accepted == tuple(wanted)
