"""What a send takes and what it gives back: messages, envelopes, options, outcomes.

These are plain values shared by every front end (:mod:`smtpsec`,
:mod:`smtpsec.aio`, the integrations); the engine that sends them is private.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import BinaryIO, Final, TypeAlias

from .errors import InvalidArgumentError

__all__ = ["MessageInput", "Outgoing", "RecipientRefusal", "SendOptions", "SendResult"]

#: What ``Session.send`` accepts as a message: an :class:`email.message.Message`
#: (``EmailMessage`` or compat32), bytes-like, a binary file object, or an
#: iterable of ``bytes`` chunks (streamed).
MessageInput: TypeAlias = Message | bytes | bytearray | memoryview | BinaryIO | Iterable[bytes]

#: RFC 3461 §4.1: NOTIFY values; NEVER excludes the others.
_NOTIFY: Final = frozenset({"NEVER", "SUCCESS", "FAILURE", "DELAY"})
#: RFC 3461 §4.3.
_RET: Final = frozenset({"FULL", "HDRS"})
#: RFC 3461 §4.4: ENVID is at most 100 characters.
_MAX_ENVID: Final = 100
#: MAIL parameters smtpsec derives from the message itself; ``mail_params`` may
#: not set them (a wrong SIZE or BODY would misdescribe what is sent).
_MANAGED: Final = frozenset({"SIZE", "BODY", "SMTPUTF8", "REQUIRETLS"})
#: DSN parameters that have an option of their own: given raw, they may not
#: also be given through that option.
_DSN_MAIL: Final = {"RET": "ret", "ENVID": "envid"}
_DSN_RCPT: Final = {"NOTIFY": "notify", "ORCPT": "orcpt"}


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
        mail_params: extra ``MAIL FROM`` parameters (keyword -> value, ``None``
            for none), sent as given after the encoder's checks. ``SIZE``,
            ``BODY`` and ``SMTPUTF8`` are set from the message and refused here;
            ``RET``/``ENVID`` given raw count as DSN options (and exclude
            ``ret=``/``envid=``).
        rcpt_params: extra ``RCPT TO`` parameters, likewise; raw ``NOTIFY`` /
            ``ORCPT`` exclude ``notify=`` / ``orcpt=``.
        require_tls: REQUIRETLS (RFC 8689): ask every server on the way to
            relay the message only over verified TLS, and to bounce it rather
            than send it in cleartext. Sent as ``MAIL FROM ... REQUIRETLS``
            when the server offers it after TLS; when it does not, a
            :class:`~smtpsec.errors.CapabilityError` before anything is sent.

    Raises:
        InvalidArgumentError: an option value is not valid.
    """

    notify: tuple[str, ...] = ()
    ret: str | None = None
    envid: str | None = None
    orcpt: bool = False
    require_dsn: bool = True
    mail_params: Mapping[str, str | None] = field(default_factory=dict)
    rcpt_params: Mapping[str, str | None] = field(default_factory=dict)
    require_tls: bool = False

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
                f"mail_params may not set {', '.join(clash)}: smtpsec sets SIZE, BODY and "
                "SMTPUTF8 from the message itself, and REQUIRETLS from require_tls=True"
            )
        for params, dsn, what in (
            (self.mail_params, _DSN_MAIL, "mail_params"),
            (self.rcpt_params, _DSN_RCPT, "rcpt_params"),
        ):
            for key in params:
                option = dsn.get(key.upper())
                if option is not None and getattr(self, option):
                    raise InvalidArgumentError(
                        f"{key.upper()} is given twice: in {what} and as {option}=; keep one"
                    )
        object.__setattr__(self, "mail_params", dict(self.mail_params))
        object.__setattr__(self, "rcpt_params", dict(self.rcpt_params))

    @property
    def wants_dsn(self) -> bool:
        """Whether any DSN option was given (as an option or as a raw parameter)."""
        raw = any(k.upper() in _DSN_MAIL for k in self.mail_params) or any(
            k.upper() in _DSN_RCPT for k in self.rcpt_params
        )
        return bool(self.notify or self.ret or self.envid or self.orcpt or raw)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for ``send_many`` with its own envelope.

    Attributes:
        message: what ``Session.send`` accepts.
        sender: envelope sender (default: from the message headers).
        recipients: envelope recipients (default: To, Cc and Bcc).
    """

    message: MessageInput
    sender: str | None = None
    recipients: Iterable[str] | None = None
