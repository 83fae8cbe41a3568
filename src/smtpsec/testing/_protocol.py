"""Pure SMTP helpers for the fake server: grammar, limits, reply encoding.

Nothing here touches a socket; :mod:`smtpsec.testing._session` uses these to
parse commands and ESMTP parameters and to encode replies, so the session
module is only about dialogue and state.
"""

from __future__ import annotations

import base64
import binascii
import re
import ssl
import threading
from dataclasses import dataclass, field
from typing import Final, Literal

from smtpsec.testing._capture import Capture
from smtpsec.testing._sasl import SASLMalformed

__all__ = [
    "BDAT",
    "HANDSHAKE",
    "MAIL",
    "MAX_COMMAND",
    "MAX_DATA_LINE",
    "MAX_MESSAGE",
    "RCPT",
    "Transaction",
    "decode_b64",
    "format_reply",
    "parse_params",
    "record_sni",
    "unsupported_param",
]

#: Longest command or SASL line accepted (XOAUTH2 tokens exceed RFC 5321's 512).
MAX_COMMAND: Final = 64 * 1024
#: Longest line inside DATA, and the most message bytes kept in memory.
MAX_DATA_LINE: Final = 1024 * 1024
MAX_MESSAGE: Final = 64 * 1024 * 1024

MAIL: Final = re.compile(r"MAIL FROM:\s?<([^<>]*)>(.*)", re.IGNORECASE | re.DOTALL)
RCPT: Final = re.compile(r"RCPT TO:\s?<([^<>]*)>(.*)", re.IGNORECASE | re.DOTALL)
BDAT: Final = re.compile(r"BDAT ([0-9]{1,12})( +LAST)? *", re.IGNORECASE)
_PARAM: Final = re.compile(r"([A-Za-z0-9][A-Za-z0-9-]*)(?:=(\S*))?")

#: ESMTP parameter -> extension that must have been advertised (RFC 5321 §4.1.1.11).
_PARAMS: Final[dict[str, dict[str, str]]] = {
    "MAIL": {
        "SIZE": "SIZE",
        "SMTPUTF8": "SMTPUTF8",
        "RET": "DSN",
        "ENVID": "DSN",
        "AUTH": "AUTH",
        "REQUIRETLS": "REQUIRETLS",
    },
    "RCPT": {"NOTIFY": "DSN", "ORCPT": "DSN"},
}
#: ``BODY=`` value -> extension it needs (``7BIT`` needs none).
_BODY: Final[dict[str, str | None]] = {
    "7BIT": None,
    "8BITMIME": "8BITMIME",
    "BINARYMIME": "BINARYMIME",
}

#: Per-thread pointer to the capture whose handshake is running (see ``record_sni``).
HANDSHAKE: Final = threading.local()


def record_sni(sock: ssl.SSLSocket | ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
    """``SSLContext.sni_callback`` that stores the client's SNI in the current capture.

    The handshake runs on the connection's own thread, so a thread-local
    tells the callback which capture it belongs to.
    """
    capture: Capture | None = getattr(HANDSHAKE, "capture", None)
    if capture is not None:
        capture.sni = name


@dataclass
class Transaction:
    """An open mail transaction (between ``MAIL`` and the final reply)."""

    sender: str
    params: dict[str, str | None]
    recipients: list[str] = field(default_factory=list)
    recipient_params: list[dict[str, str | None]] = field(default_factory=list)
    chunks: list[int] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)


def format_reply(code: int, text: str) -> bytes:
    """Encode ``(code, text)`` as an SMTP reply; ``\\n`` in ``text`` makes it multi-line.

    Args:
        code: the three-digit reply code.
        text: the reply text.

    Returns:
        The reply with CRLF line endings.
    """
    lines = text.split("\n")
    out = [f"{code}-{line}\r\n" for line in lines[:-1]]
    out.append(f"{code} {lines[-1]}\r\n")
    return "".join(out).encode("utf-8")


def parse_params(text: str) -> dict[str, str | None] | None:
    """Parse ``KEY[=VALUE]`` words; ``None`` when one is malformed."""
    params: dict[str, str | None] = {}
    for word in text.split():
        match = _PARAM.fullmatch(word)
        if match is None:
            return None
        params[match.group(1).upper()] = match.group(2)
    return params


def unsupported_param(
    command: Literal["MAIL", "RCPT"], params: dict[str, str | None], advertised: tuple[str, ...]
) -> str | None:
    """Return the first parameter whose extension was not advertised, if any.

    Args:
        command: ``"MAIL"`` or ``"RCPT"``.
        params: the parsed parameters.
        advertised: the ``EHLO`` keywords in force.
    """
    keywords = {ext.split(" ", 1)[0].upper() for ext in advertised}
    table = _PARAMS[command]
    for key, value in params.items():
        if command == "MAIL" and key == "BODY":
            needed = _BODY.get((value or "").upper(), "?")
        else:
            needed = table.get(key, "?")
        if needed is not None and needed not in keywords:
            return key
    return None


def decode_b64(text: str) -> bytes:
    """Strictly decode a SASL response.

    Raises:
        SASLMalformed: ``text`` is not base64.
    """
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SASLMalformed("not base64") from exc
