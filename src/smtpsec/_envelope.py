"""Send options and outcomes as values, and the envelope (``MAIL``/``RCPT`` with their ESMTP
parameters) a message needs on a given server, decided before anything is sent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from ._message import PreparedMessage
from .errors import CapabilityError, InvalidArgumentError
from .sansio import Command, Extensions, encode_command, xtext

__all__ = ["RecipientRefusal", "SendOptions", "SendResult", "plan_envelope"]

#: RFC 3461 §4.1: NOTIFY values; NEVER excludes the others.
_NOTIFY: Final = frozenset({"NEVER", "SUCCESS", "FAILURE", "DELAY"})
#: RFC 3461 §4.3.
_RET: Final = frozenset({"FULL", "HDRS"})
#: RFC 3461 §4.4: ENVID is at most 100 characters.
_MAX_ENVID: Final = 100
#: MAIL parameters smtpsec sets itself; ``mail_params`` may not override them.
_MANAGED: Final = frozenset({"SIZE", "BODY", "SMTPUTF8", "RET", "ENVID"})


@dataclass(frozen=True, slots=True)
class RecipientRefusal:
    """Why the server refused one recipient.

    Attributes:
        code: the reply code (``550``, ``452``...).
        enhanced_status: the RFC 3463 status (``"5.1.1"``), or ``None``.
        text: the reply text.
    """

    code: int
    enhanced_status: str | None
    text: str

    @property
    def transient(self) -> bool:
        """4xx: the recipient may be accepted later (``452`` too many recipients...)."""
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        """5xx: the same recipient will be refused again."""
        return 500 <= self.code < 600


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of one accepted message.

    Attributes:
        sender: the envelope sender.
        accepted: recipients the server accepted.
        refused: recipient -> refusal, for recipients it refused (the message still
            went to ``accepted``; retry the transient ones later).
        code: the final reply code (250).
        enhanced_status: its enhanced status, if any.
        text: its text (often a queue id).
        size: octets sent (normalised content, without dot-stuffing).
        method: ``"DATA"`` or ``"BDAT"``.
    """

    sender: str
    accepted: tuple[str, ...]
    refused: Mapping[str, RecipientRefusal]
    code: int
    enhanced_status: str | None
    text: str
    size: int
    method: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SendOptions:
    """Per-send ESMTP options.

    Attributes:
        notify: DSN ``NOTIFY`` values (RFC 3461), e.g. ``("FAILURE", "DELAY")``;
            ``("NEVER",)`` alone. A comma-separated string is accepted too.
        ret: DSN ``RET``: ``"FULL"`` or ``"HDRS"``.
        envid: DSN ``ENVID`` (printable ASCII, at most 100 characters; sent
            xtext-encoded).
        orcpt: send DSN ``ORCPT`` with each recipient (``rfc822;`` + xtext, or
            ``utf-8;`` + RFC 6533 xtext for an internationalised address).
        require_dsn: when DSN options are given but the server does not offer
            DSN, raise :class:`~smtpsec.errors.CapabilityError` (the default);
            ``False`` sends without them.
        mail_params: extra ``MAIL FROM`` parameters for extensions smtpsec does
            not manage (keyword -> value, ``None`` for none). ``SIZE``, ``BODY``,
            ``SMTPUTF8``, ``RET`` and ``ENVID`` are managed and refused here.

    Raises:
        InvalidArgumentError: an option value is not valid.
    """

    notify: tuple[str, ...] = ()
    ret: str | None = None
    envid: str | None = None
    orcpt: bool = False
    require_dsn: bool = True
    mail_params: Mapping[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        raw: object = self.notify
        values = raw.split(",") if isinstance(raw, str) else list(self.notify)
        notify = tuple(dict.fromkeys(str(v).strip().upper() for v in values if str(v).strip()))
        if not set(notify) <= _NOTIFY or ("NEVER" in notify and len(notify) > 1):
            raise InvalidArgumentError(
                f"notify={self.notify!r} is invalid: use NEVER alone, or any of SUCCESS, "
                "FAILURE, DELAY (RFC 3461 §4.1)"
            )
        object.__setattr__(self, "notify", notify)
        if self.ret is not None:
            if self.ret.upper() not in _RET:
                raise InvalidArgumentError(
                    f"ret={self.ret!r} is invalid: use 'FULL' or 'HDRS' (RFC 3461 §4.3)"
                )
            object.__setattr__(self, "ret", self.ret.upper())
        if self.envid is not None and not (
            0 < len(self.envid) <= _MAX_ENVID and all(" " <= char <= "~" for char in self.envid)
        ):
            raise InvalidArgumentError(
                "envid must be 1-100 printable ASCII characters (RFC 3461 §4.4)"
            )
        clash = sorted(k.upper() for k in self.mail_params if k.upper() in _MANAGED)
        if clash:
            raise InvalidArgumentError(
                f"mail_params may not set {', '.join(clash)}: smtpsec sets these from the "
                "message and the other options"
            )
        object.__setattr__(self, "mail_params", dict(self.mail_params))

    @property
    def wants_dsn(self) -> bool:
        """Whether any DSN option was given."""
        return bool(self.notify or self.ret or self.envid or self.orcpt)


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
    msg: PreparedMessage, ext: Extensions, opts: SendOptions
) -> tuple[PreparedMessage, Command, list[Command]]:
    """Decide how ``msg`` is sent to a server offering ``ext``.

    Everything that can fail is checked here, before any byte is sent: SIZE
    (R-1870-3), SMTPUTF8 (R-6531-3.2-1), 8BITMIME (re-encoding an
    ``EmailMessage`` to 7 bit when needed), DSN, and the encoding of every
    command.

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
    params.update(opts.mail_params)
    mail = Command("MAIL", msg.sender, params)
    rcpts = []
    for address in msg.recipients:
        rcpt_params: dict[str, str | None] = {}
        if dsn and opts.notify:
            rcpt_params["NOTIFY"] = ",".join(opts.notify)
        if dsn and opts.orcpt:
            rcpt_params["ORCPT"] = _orcpt(address)
        rcpts.append(Command("RCPT", address, rcpt_params))
    # Encode now: a bad parameter must fail before the flight, not half-way through it.
    for command in (mail, *rcpts):
        encode_command(command)
    return msg, mail, rcpts
