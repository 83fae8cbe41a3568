"""``sendmail()`` of the smtplib drop-in: checked envelope, pipelined when offered.

The return value and the exceptions are smtplib's (a dict of refused recipients;
``SMTPSenderRefused``, ``SMTPRecipientsRefused``, ``SMTPDataError``), raised as
smtpsec errors that are also those classes. What differs is on the wire:
everything is checked before the first byte is sent, the body's line ends are
normalised (R-PY-10), and with PIPELINING (RFC 2920) ``MAIL``, every ``RCPT``
and ``DATA`` leave in one write, which saves a round trip per recipient.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from smtplib import SMTPNotSupportedError, SMTPServerDisconnected, quoteaddr
from typing import TYPE_CHECKING

from ._smtplib_errors import DataRefused, RecipientsRefusedError, SenderRefusedError
from ._smtplib_io import (
    check_address,
    check_command,
    check_options,
    data_payload,
    message_bytes,
    normalised,
)

if TYPE_CHECKING:
    from ._smtplib_compat import WireSMTP

__all__ = ["sendmail"]

_Refused = dict[str, tuple[int, bytes]]
_Envelope = tuple[_Refused, int, bytes]


def sendmail(
    conn: WireSMTP,
    from_addr: str,
    to_addrs: str | Sequence[str],
    msg: object,
    mail_options: Sequence[str],
    rcpt_options: Sequence[str],
) -> _Refused:
    """Run one mail transaction on ``conn`` with smtplib's ``sendmail`` contract."""
    conn.ehlo_or_helo_if_needed()
    body = normalised(message_bytes(msg))
    recipients = [to_addrs] if isinstance(to_addrs, str) else list(to_addrs)
    check_address(from_addr, "sender")
    for recipient in recipients:
        check_address(recipient, "recipient")
    mail_opts = check_options(mail_options, "MAIL")
    rcpt_opts = check_options(rcpt_options, "RCPT")
    if not recipients:
        raise RecipientsRefusedError(
            "sendmail() was given no recipients; nothing was sent", recipients={}
        )
    esmtp: list[str] = []
    if conn.does_esmtp:
        if conn.has_extn("size"):
            esmtp.append(f"size={len(body)}")
        esmtp.extend(mail_opts)
    if conn.does_esmtp and conn.has_extn("pipelining"):
        refused, code, resp = _pipelined(conn, from_addr, recipients, esmtp, rcpt_opts)
    else:
        refused, code, resp = _one_by_one(conn, from_addr, recipients, esmtp, rcpt_opts)
    if code != 354:
        _abort(conn, code)
        raise _data_refused(conn, code, resp, "DATA")
    conn.send(data_payload(body))
    return _judge(conn, conn._final_replies(), refused)


def _one_by_one(
    conn: WireSMTP, sender: str, recipients: list[str], esmtp: list[str], rcpt_opts: list[str]
) -> _Envelope:
    code, resp = conn.mail(sender, esmtp)
    if code != 250:
        _abort(conn, code)
        raise _sender_refused(conn, code, resp, sender)
    refused: _Refused = {}
    for recipient in recipients:
        code, resp = conn.rcpt(recipient, rcpt_opts)
        if code not in (250, 251):
            refused[recipient] = (code, resp)
        if code == 421:
            conn.close()
            raise _all_refused(conn, refused)
    if len(refused) == len(recipients):
        _abort(conn, 0)
        raise _all_refused(conn, refused)
    conn.putcmd("data")
    code, resp = conn.getreply()
    return refused, code, resp


def _mail_line(conn: WireSMTP, sender: str, options: list[str]) -> str:
    """``MAIL FROM`` exactly as smtplib's ``mail()`` builds it."""
    suffix = ""
    if options:
        if any(option.lower() == "smtputf8" for option in options):
            if not conn.has_extn("smtputf8"):
                raise SMTPNotSupportedError("SMTPUTF8 not supported by server")
            conn.command_encoding = "utf-8"
        suffix = " " + " ".join(options)
    return f"mail FROM:{quoteaddr(sender)}{suffix}"


def _pipelined(
    conn: WireSMTP, sender: str, recipients: list[str], esmtp: list[str], rcpt_opts: list[str]
) -> _Envelope:
    """RFC 2920: send MAIL, all RCPTs and DATA at once, then read the replies in order."""
    suffix = " " + " ".join(rcpt_opts) if rcpt_opts else ""
    lines = [
        _mail_line(conn, sender, esmtp),
        *(f"rcpt TO:{quoteaddr(recipient)}{suffix}" for recipient in recipients),
        "data",
    ]
    for line in lines:
        check_command(line)
    conn._before_mail()
    conn.send("".join(f"{line}\r\n" for line in lines))
    conn._accepted = []
    mail_code, mail_resp = conn.getreply()
    if mail_code == 421:
        conn.close()
        raise _sender_refused(conn, mail_code, mail_resp, sender)
    refused: _Refused = {}
    for recipient in recipients:
        code, resp = conn.getreply()
        if code in (250, 251):
            conn._accepted.append(recipient)
        else:
            refused[recipient] = (code, resp)
        if code == 421:
            conn.close()
            raise _all_refused(conn, refused)
    code, resp = conn.getreply()
    if mail_code == 250 and conn._accepted:
        return refused, code, resp
    if code == 354:
        # RFC 2920 §3.1: a server that began DATA without any valid recipient
        # gets an empty message end, then the transaction is reset.
        conn.send(b".\r\n")
        code, _ = conn.getreply()
    _abort(conn, code)
    if mail_code != 250:
        raise _sender_refused(conn, mail_code, mail_resp, sender)
    raise _all_refused(conn, refused)


def _judge(conn: WireSMTP, finals: list[tuple[int, bytes]], refused: _Refused) -> _Refused:
    """Apply the final reply (or LMTP's per-recipient replies) to the result."""
    if len(finals) == 1:
        code, resp = finals[0]
        if code != 250:
            _abort(conn, code)
            raise _data_refused(conn, code, resp, "the message")
        return refused
    # LMTP (RFC 2033 §4.2): one reply per accepted recipient, in RCPT order.
    for recipient, (code, resp) in zip(conn._accepted, finals, strict=True):
        if code != 250:
            refused[recipient] = (code, resp)
    failed = [reply for reply in finals if reply[0] != 250]
    if len(failed) == len(finals):
        _abort(conn, failed[0][0])
        raise _data_refused(conn, *failed[0], "the message for every recipient")
    return refused


def _abort(conn: WireSMTP, code: int) -> None:
    """smtplib's clean-up after a failed step: close on 421, else RSET quietly."""
    if code == 421:
        conn.close()
        return
    with contextlib.suppress(SMTPServerDisconnected):
        conn.rset()


def _tls(conn: WireSMTP) -> bool:
    return conn._tls is not None


def _sender_refused(conn: WireSMTP, code: int, resp: bytes, sender: str) -> SenderRefusedError:
    return SenderRefusedError(
        f"{conn._peer} refused the sender {sender!r} with {code} "
        f"({resp.decode('utf-8', 'replace')!r}); nothing was sent",
        code=code,
        msg=resp,
        sender=sender,
        tls=_tls(conn),
    )


def _all_refused(conn: WireSMTP, refused: _Refused) -> RecipientsRefusedError:
    shown = ", ".join(f"{addr} ({code})" for addr, (code, _) in refused.items())
    return RecipientsRefusedError(
        f"{conn._peer} refused every recipient: {shown}; nothing was sent",
        recipients=refused,
        tls=_tls(conn),
    )


def _data_refused(conn: WireSMTP, code: int, resp: bytes, what: str) -> DataRefused:
    return DataRefused(
        f"{conn._peer} refused {what} with {code} ({resp.decode('utf-8', 'replace')!r})",
        code=code,
        msg=resp,
        tls=_tls(conn),
    )
