"""smtplib's text in, the engine's values out: command lines, options, replies, timeouts.

The drop-in keeps smtplib's surface (``putcmd("mail", "FROM:<a@b> SIZE=1")``,
``mail(addr, ["BODY=8BITMIME"])``, replies as ``(code, bytes)``). This module
turns that text into :class:`~smtpsec.sansio.Command` values, which the
engine's one rule set validates (control characters, address syntax, lengths),
and renders the engine's replies back the way smtplib does.
"""

from __future__ import annotations

import email.utils
import socket
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Final

from ..errors import ConnectError, InvalidArgumentError, ReplyError
from ..sansio import Command, Reply, ehlo_name, encode_command, first_control_character
from ..sending import SendOptions

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = [
    "DEFAULT_TIMEOUT",
    "address_command",
    "checked_ehlo_name",
    "disconnect_text",
    "envelope_address",
    "loggable",
    "message_bytes",
    "parse_line",
    "parse_options",
    "refusal_bytes",
    "reply_bytes",
    "resolve_timeout",
    "send_options",
    "stdlib_wording",
    "text_bytes",
]

#: Used when the caller gives no timeout and no socket default is set: smtplib
#: would wait forever (R-PY-11).
DEFAULT_TIMEOUT: Final = 60.0


def stdlib_wording(line: str, exc: InvalidArgumentError) -> InvalidArgumentError:
    """smtplib's wording for a refused line with CR or LF, followed by smtpsec's reason.

    Code written for smtplib searches for "prohibited newline characters"
    (bpo-43124); the reason after it says which character and why.
    """
    if "\r" not in line and "\n" not in line:
        return exc
    shown = line.replace("\n", "\\n").replace("\r", "\\r")
    error = InvalidArgumentError(
        f"command and arguments contain prohibited newline characters: {shown} ({exc})"
    )
    error.__cause__ = exc
    return error


def parse_options(options: Iterable[str], what: str) -> dict[str, str | None]:
    """ESMTP options as smtplib takes them (``["SIZE=10", "SMTPUTF8"]``) -> parameters.

    Raises:
        InvalidArgumentError: a non-str option, an empty one, or one holding a
            space (one option is one parameter); the keyword and value rules
            are the engine's, checked when the command is encoded.
    """
    params: dict[str, str | None] = {}
    for option in options:
        if not isinstance(option, str) or not option.strip():
            raise InvalidArgumentError(f"{what} option {option!r} is empty or not a str")
        if " " in option:
            raise InvalidArgumentError(
                f"{what} option {option!r} contains a space: give each ESMTP parameter as "
                "its own list item, e.g. ['BODY=8BITMIME', 'SMTPUTF8']"
            )
        key, eq, value = option.partition("=")
        params[key] = value if eq else None
    return params


def envelope_address(address: object, what: str) -> str:
    """An smtplib address argument as the bare envelope address smtplib would send.

    smtplib passes every address through ``quoteaddr()``: ``"Ann <ann@x>"``
    and ``"<ann@x>"`` send ``ann@x``, ``"<>"`` is the null sender, anything it
    cannot parse is sent as given. The same happens here, except that a
    control character anywhere in what the caller gave is refused first, so
    parsing can never hide an injection attempt; the result then goes through
    the engine's address rules (with bare local parts allowed, as smtplib does).
    """
    if not isinstance(address, str):
        raise InvalidArgumentError(
            f"the {what} address must be a str, not {type(address).__name__}"
        )
    found = first_control_character(address)
    if found is not None:
        raise InvalidArgumentError(
            f"the {what} address {address[:80]!r} contains the control character "
            f"{ord(found):#04x}; nothing was sent. Remove the character"
        )
    stripped = address.strip()
    if stripped == "<>":
        return ""
    display, parsed = email.utils.parseaddr(stripped)
    if (display, parsed) == ("", ""):
        return stripped[1:-1] if stripped.startswith("<") and stripped.endswith(">") else stripped
    return parsed


def address_command(verb: str, address: str, options: Iterable[str]) -> Command:
    """``MAIL``/``RCPT`` for an address and smtplib-style options."""
    bare = envelope_address(address, verb)
    return Command(verb, bare, parse_options(options, verb) or None, unqualified=True)


def parse_line(line: str) -> Command:
    """One command line as ``putcmd``/``docmd`` receive it -> a :class:`Command`.

    ``MAIL FROM:<a> K=V`` and ``RCPT TO:<b>`` are split into address and
    parameters, so the engine's address and parameter rules apply to them as
    to the native API; other verbs keep their argument text.
    """
    verb, _, rest = line.strip(" ").partition(" ")
    upper = verb.upper()
    if upper in ("MAIL", "RCPT"):
        prefix = "FROM:" if upper == "MAIL" else "TO:"
        if not rest[: len(prefix)].upper() == prefix:
            raise InvalidArgumentError(
                f"{upper} needs '{prefix}<address>', got {line[:80]!r}; use "
                f"{'mail' if upper == 'MAIL' else 'rcpt'}(address, options)"
            )
        path, _, params = rest[len(prefix) :].strip(" ").partition(" ")
        return address_command(upper, path, params.split(" ") if params else ())
    if upper == "AUTH":
        return Command(upper, rest, redact=True)
    return Command(upper, rest)


def checked_ehlo_name(name: str) -> str:
    """The EHLO argument for a ``local_hostname``, validated like the native client's."""
    return ehlo_name(name)


def reply_bytes(reply: Reply) -> bytes:
    """smtplib's rendering of a reply: each line's text, stripped, joined by LF."""
    return b"\n".join(line.strip(" \t\r\n").encode("utf-8") for line in reply.lines)


def resolve_timeout(timeout: object) -> float:
    """The timeout to use: the caller's number, else the socket default, else 60 s.

    smtplib's "no timeout given" sentinel and ``None`` both mean "the default";
    smtpsec never blocks without a bound (R-PY-11).

    Raises:
        InvalidArgumentError: zero or a negative number (smtplib refuses
            non-blocking sockets too).
    """
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        if timeout <= 0:
            raise InvalidArgumentError(
                f"timeout={timeout!r} is not supported: pass a positive number of "
                "seconds (or leave it out for the 60 s default)"
            )
        return float(timeout)
    default = socket.getdefaulttimeout()
    return default if default is not None else DEFAULT_TIMEOUT


def disconnect_text(exc: ConnectError) -> str:
    """smtplib's words for a lost connection (what its users search for), then ours."""
    lead = "Server not connected" if "writing" in str(exc) else "Connection unexpectedly closed"
    return f"{lead}: {exc}"


def message_bytes(msg: object) -> bytes:
    """smtplib's message argument as bytes: ``str`` must be ASCII, like in smtplib."""
    if isinstance(msg, str):
        return msg.encode("ascii")
    if isinstance(msg, (bytes, bytearray, memoryview)):
        return bytes(msg)
    raise TypeError(f"the message must be str or bytes-like, not {type(msg).__name__}")


def loggable(data: ReadableBuffer | str) -> str:
    """A sent AUTH line for ``set_debuglevel()`` output, with ``<redacted>`` payloads."""
    text = data if isinstance(data, str) else bytes(data).decode("ascii", "replace")
    line = text.rstrip("\r\n")
    verb, _, argument = line.partition(" ")
    if verb.upper() == "AUTH":
        return Command("AUTH", argument, redact=True).loggable() + "\r\n"
    if line == "*":
        return text  # the cancel line carries nothing secret
    return Command("", line, redact=True).loggable() + "\r\n"


def text_bytes(error: ReplyError) -> bytes:
    return refusal_bytes(error.enhanced_status, error.text)


def refusal_bytes(status: str | None, text: str) -> bytes:
    """A refusal as smtplib reports it: the reply text, enhanced status included."""
    return (f"{status} {text}" if status else text).encode("utf-8", "replace")


def send_options(
    mail_options: Sequence[str], rcpt_options: Sequence[str]
) -> tuple[SendOptions, bool, bool]:
    """smtplib's option strings as the engine's send options, and whether SMTPUTF8 and
    BODY=8BITMIME were declared.

    ``SIZE`` and ``BODY`` are set by the engine from the message itself (the
    exact size; 8BITMIME when the content needs it), so the caller's values
    are not sent; ``REQUIRETLS`` becomes the engine's ``require_tls`` (sent
    only when offered over verified TLS, else refused before anything is
    sent); everything else goes on the command lines as given, through the
    engine's parameter rules.
    """
    mail = parse_options(mail_options, "MAIL")
    # Every option given passes the engine's parameter rules, also those the
    # engine then sets itself: an unsafe value is refused, never dropped.
    encode_command(Command("MAIL", "", mail or None))
    utf8 = any(key.upper() == "SMTPUTF8" for key in mail)
    eight_bit = any(
        key.upper() == "BODY" and (value or "").upper() == "8BITMIME" for key, value in mail.items()
    )
    require_tls = any(key.upper() == "REQUIRETLS" for key in mail)
    managed = ("SIZE", "BODY", "SMTPUTF8", "REQUIRETLS")
    kept = {k: v for k, v in mail.items() if k.upper() not in managed}
    options = SendOptions(
        mail_params=kept,
        rcpt_params=parse_options(rcpt_options, "RCPT"),
        require_dsn=False,
        require_tls=require_tls,
    )
    return options, utf8, eight_bit
