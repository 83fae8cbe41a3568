"""The envelope (``MAIL``/``RCPT`` with their ESMTP parameters) a message needs on a given
server, decided before anything is sent."""

from __future__ import annotations

from ..errors import CapabilityError
from ..sansio import Command, Extensions, encode_command, xtext
from ..sending import SendOptions
from ._message import PreparedMessage

__all__ = ["plan_envelope"]


def _utf8_addr_xtext(address: str) -> str:
    """RFC 6533 §3 ``utf-8-addr-xtext``: 7-bit, safe without SMTPUTF8."""
    return "".join(
        char if "!" <= char <= "~" and char not in "+=\\" else f"\\x{{{ord(char):X}}}"
        for char in address
    )


def _orcpt(address: str) -> str:
    """The DSN ``ORCPT`` value for ``address`` (RFC 3461 §4.2, RFC 6533 §3)."""
    if address.isascii():
        return "rfc822;" + xtext(address)
    return "utf-8;" + _utf8_addr_xtext(address)


def _fit_body(msg: PreparedMessage, ext: Extensions) -> PreparedMessage:
    """The rendering of ``msg`` this server can take, or a CapabilityError."""
    if msg.smtputf8 and "SMTPUTF8" not in ext:
        raise CapabilityError(
            "an address needs SMTPUTF8 (RFC 6531), which the server does not offer after "
            "TLS; nothing was sent. Use ASCII addresses for this server"
        )
    if not msg.eight_bit or "8BITMIME" in ext:
        return msg
    cause: Exception | None = None
    if msg.seven_bit is not None:
        try:
            seven = msg.as_seven_bit()
        except Exception as exc:  # e.g. an 8-bit part without a charset to re-encode with
            cause = exc
        else:
            if not seven.eight_bit:
                return seven
    raise CapabilityError(
        "the message contains 8-bit octets but the server does not offer 8BITMIME"
        + (f", and re-encoding it to 7 bit failed ({cause})" if cause else "")
        + "; nothing was sent. Send an EmailMessage whose parts can be transfer-encoded, "
        "or encode the body as quoted-printable/base64 yourself"
    ) from cause


def plan_envelope(
    msg: PreparedMessage, ext: Extensions, opts: SendOptions, *, verified_tls: bool = True
) -> tuple[PreparedMessage, Command, list[Command]]:
    """Decide how ``msg`` is sent to a server offering ``ext``.

    Everything that can fail is checked here, before any byte is sent: SIZE
    (R-1870-3), SMTPUTF8 (R-6531-3.2-1), 8BITMIME (re-encoding an
    ``EmailMessage`` to 7 bit when needed), DSN, REQUIRETLS (RFC 8689 §4.1:
    only over verified TLS, only when offered), and the encoding of every
    command. ``verified_tls`` says whether the session runs verified TLS.

    Returns:
        The message as it will be sent (possibly re-encoded), the ``MAIL``
        command and one ``RCPT`` command per recipient.

    Raises:
        CapabilityError: the server lacks what the message or options need.
        InvalidArgumentError: a parameter cannot be encoded.
    """
    msg = _fit_body(msg, ext)
    limit = ext.max_size
    if msg.size is not None and limit is not None and msg.size > limit:
        raise CapabilityError(
            f"the message is {msg.size} octets but the server accepts at most {limit} "
            "(SIZE); nothing was sent. Shrink the message or its attachments"
        )
    params: dict[str, str | None] = {}
    if msg.size is not None and "SIZE" in ext:
        params["SIZE"] = str(msg.size)
    if msg.smtputf8:
        params["SMTPUTF8"] = None
    if "8BITMIME" in ext and (msg.eight_bit is not False or msg.smtputf8):
        # R-6531-1.2-1: SMTPUTF8 goes with BODY=8BITMIME.
        params["BODY"] = "8BITMIME"
    dsn = opts.wants_dsn and "DSN" in ext
    if opts.wants_dsn and not dsn and opts.require_dsn:
        raise CapabilityError(
            "DSN options (notify/ret/envid/orcpt) were given but the server does not offer "
            "DSN after TLS; nothing was sent. Drop them or pass require_dsn=False"
        )
    if dsn and opts.ret:
        params["RET"] = opts.ret
    if dsn and opts.envid:
        params["ENVID"] = xtext(opts.envid)
    if opts.require_tls:
        if not verified_tls:
            raise CapabilityError(
                "require_tls=True (REQUIRETLS) needs a session over verified TLS, and "
                "this one is not; nothing was sent"
            )
        if "REQUIRETLS" not in ext:
            raise CapabilityError(
                "require_tls=True (REQUIRETLS), but the server does not offer REQUIRETLS "
                "after TLS, so it could not pass the requirement on; nothing was sent. "
                "Send without it, or through a server that offers it"
            )
        params["REQUIRETLS"] = None
    params.update(opts.mail_params)
    mail = Command("MAIL", msg.sender, params, unqualified=msg.unqualified)
    rcpts = []
    for address in msg.recipients:
        rcpt_params: dict[str, str | None] = dict(opts.rcpt_params)
        if dsn and opts.notify:
            rcpt_params["NOTIFY"] = ",".join(opts.notify)
        if dsn and opts.orcpt:
            rcpt_params["ORCPT"] = _orcpt(address)
        rcpts.append(Command("RCPT", address, rcpt_params, unqualified=msg.unqualified))
    # Encode now: a bad parameter must fail before the flight, not half-way through it.
    for command in (mail, *rcpts):
        encode_command(command)
    return msg, mail, rcpts
