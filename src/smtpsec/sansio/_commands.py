"""Command encoder: every SMTP command as bytes, arguments validated first.

No argument containing CR, LF, NUL or another C0 control (or DEL) ever reaches the
wire (R-5321-4.1.2-1): the check runs before any byte is produced.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from .._types import MAX_COMMAND_LINE, MAX_DOMAIN, MAX_LOCAL_PART, MAX_PATH
from ..errors import InvalidArgumentError
from ._extensions import is_mechanism_name

__all__ = [
    "Command",
    "ehlo_name",
    "encode_command",
    "first_control_character",
    "mailbox_needs_smtputf8",
    "validate_mailbox",
    "xtext",
]

#: C0 controls, DEL, C1 controls and the Unicode line/paragraph separators: none
#: of them belongs in a command, and some parsers treat the last ones as line ends.
_CONTROL_RE: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: RFC 5321 §4.1.2: esmtp-keyword.
_PARAM_KEYWORD_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*", re.ASCII)
#: esmtp-value = 1*(%d33-60 / %d62-126): printable ASCII except "=" (and space).
_PARAM_VALUE_RE: Final = re.compile(r"[\x21-\x3c\x3e-\x7e]+", re.ASCII)
#: RFC 6531 §3.3 adds UTF8-non-ascii to esmtp-value when SMTPUTF8 is used.
_PARAM_VALUE_UTF8_RE: Final = re.compile("[^\\s=\x00-\x20\x7f-\x9f\u2028\u2029]+")
#: A base64 SASL response (RFC 4954 §4); "=" alone is the empty initial response.
_BASE64_RE: Final = re.compile(r"[A-Za-z0-9+/]+={0,2}|=", re.ASCII)
#: RFC 3030 §2: "BDAT" SP chunk-size [ SP end-marker ].
_BDAT_RE: Final = re.compile(r"([0-9]{1,20})(?: (LAST))?", re.ASCII | re.IGNORECASE)
#: An LDH label (RFC 5321 §4.1.2 sub-domain; RFC 1035 length).
_LDH_LABEL_RE: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?", re.ASCII)
#: Characters that end or break an unquoted local part (RFC 5322 specials).
_LOCAL_SPECIALS: Final = frozenset('"(),:;<>@[\\]')
#: A domain label: letters/digits/"-"/"_" or any non-ASCII (U-labels, RFC 6531).
_DOMAIN_LABEL_RE: Final = re.compile(r"(?:[A-Za-z0-9_-]|[^\x00-\x7f])+")

#: RFC 4954 §4: the AUTH command and each SASL response line may be this long.
_MAX_AUTH_LINE: Final = 12288
#: RFC 5321 §4.5.3.1.4: each ESMTP parameter may extend the command line limit.
_PARAM_ALLOWANCE: Final = 40
_DEFAULT_EHLO: Final = "[127.0.0.1]"
_NO_ARGUMENT: Final = frozenset({"DATA", "STARTTLS", "RSET", "QUIT"})
_REDACTED: Final = "<redacted>"


@dataclass(frozen=True, slots=True)
class Command:
    """One command to send.

    Attributes:
        verb: upper-case verb (``EHLO``, ``MAIL``, ``RCPT``, ``DATA``, ``BDAT``,
            ``AUTH``, ``STARTTLS``, ``RSET``, ``NOOP``, ``QUIT``, ``HELO``), or
            ``""`` for an AUTH continuation line (SASL response data).
        argument: the argument text (address for MAIL/RCPT without brackets,
            hostname for EHLO, mechanism + optional initial response for AUTH,
            size and optional ``LAST`` for BDAT, base64 for continuations).
        params: ESMTP parameters for MAIL/RCPT (``{"SIZE": "123", "SMTPUTF8": None}``).
        redact: when true the argument is a secret: logs show ``<redacted>``.
        unqualified: MAIL/RCPT only: the address may be a bare local part
            (``root``), which a local MTA qualifies with its own domain; see
            :func:`validate_mailbox`.
    """

    verb: str
    argument: str = ""
    params: Mapping[str, str | None] | None = None
    redact: bool = False
    unqualified: bool = False

    def loggable(self) -> str:
        """The command as text for a transcript, with secrets replaced.

        A redacted AUTH keeps its mechanism (``AUTH PLAIN <redacted>``); any
        other redacted argument becomes ``<redacted>``. Control characters are
        shown escaped, so even an invalid command cannot forge transcript lines.
        """
        argument = self.argument
        if self.redact and argument:
            if self.verb.upper() == "AUTH":
                mechanism, _, rest = argument.partition(" ")
                argument = f"{mechanism} {_REDACTED}" if rest else mechanism
            else:
                argument = _REDACTED
        return _escape(_render(self.verb.upper(), argument, self.params))


def _escape(text: str) -> str:
    return _CONTROL_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _render(verb: str, argument: str, params: Mapping[str, str | None] | None) -> str:
    """The command line as text, without CRLF (no validation)."""
    if verb == "MAIL":
        line = f"MAIL FROM:<{argument}>"
    elif verb == "RCPT":
        line = f"RCPT TO:<{argument}>"
    elif not verb:
        line = argument
    else:
        line = f"{verb} {argument}" if argument else verb
    for key, value in (params or {}).items():
        line += f" {key}" if value is None else f" {key}={value}"
    return line


def first_control_character(value: str) -> str | None:
    """The first character of ``value`` that no protocol field may carry, or ``None``.

    The one control-character rule: C0 controls (CR, LF, NUL, ...), DEL, C1
    controls (NEL, ...) and U+2028/U+2029. Commands, addresses and parameters
    are checked with it here, SASL fields (user names, authzid, XOAUTH2/
    OAUTHBEARER fields) in :mod:`smtpsec.auth`.
    """
    match = _CONTROL_RE.search(value)
    return None if match is None else match.group()


def _reject_controls(what: str, value: str, *, secret: bool = False) -> None:
    found = first_control_character(value)
    if found is not None:
        # Never echo a secret (SASL data) into an exception message.
        shown = "" if secret else f" ('{_escape(value[:80])}')"
        raise InvalidArgumentError(
            f"{what} contains the control character {ord(found):#04x}{shown}; "
            "CR, LF, NUL and other controls would let it inject extra SMTP commands, "
            "so nothing was sent. Remove the character"
        )


def _check_params(verb: str, params: Mapping[str, str | None]) -> None:
    if verb not in {"MAIL", "RCPT"}:
        raise InvalidArgumentError(
            f"{verb or 'an AUTH continuation'} takes no ESMTP parameters; only MAIL and RCPT do"
        )
    utf8 = any(key.upper() == "SMTPUTF8" for key in params)
    seen: set[str] = set()
    for key, value in params.items():
        _reject_controls("ESMTP parameter keyword", key)
        if not _PARAM_KEYWORD_RE.fullmatch(key):
            raise InvalidArgumentError(
                f"ESMTP parameter keyword {key!r} is invalid: it must be letters, digits "
                "and '-' (RFC 5321 §4.1.2); pass each parameter as its own key"
            )
        if key.upper() in seen:
            raise InvalidArgumentError(f"ESMTP parameter {key.upper()} given twice")
        seen.add(key.upper())
        if value is None:
            continue
        _reject_controls(f"value of ESMTP parameter {key}", value)
        pattern = _PARAM_VALUE_UTF8_RE if utf8 else _PARAM_VALUE_RE
        if not pattern.fullmatch(value):
            raise InvalidArgumentError(
                f"value {value!r} of ESMTP parameter {key} is invalid: it must be "
                "non-empty printable ASCII without spaces or '=' (RFC 5321 §4.1.2; "
                "non-ASCII only with SMTPUTF8). One value cannot carry several "
                "parameters; xtext-encode addresses (see xtext())"
            )


def _check_argument(verb: str, argument: str, *, unqualified: bool) -> None:
    """Verb-specific argument rules (controls were already rejected)."""
    if verb in {"EHLO", "HELO"}:
        if not argument or not argument.isascii() or " " in argument:
            raise InvalidArgumentError(
                f"{verb} needs one ASCII domain or address literal, got {argument!r}; "
                "build it with ehlo_name()"
            )
    elif verb == "MAIL":
        validate_mailbox(argument, allow_empty=True, allow_unqualified=unqualified)
    elif verb == "RCPT":
        # RFC 5321 §4.1.1.3: "<Postmaster>" without a domain is a valid recipient.
        if argument.lower() != "postmaster":
            validate_mailbox(argument, allow_unqualified=unqualified)
    elif verb == "BDAT":
        if not _BDAT_RE.fullmatch(argument):
            raise InvalidArgumentError(
                f"BDAT argument {argument!r} is invalid: expected '<octets>' or "
                "'<octets> LAST' (RFC 3030 §2)"
            )
    elif verb == "AUTH":
        mechanism, space, response = argument.partition(" ")
        # Servers compare mechanism names case-insensitively.
        bad_name = not is_mechanism_name(mechanism.upper())
        if bad_name or (space and not _BASE64_RE.fullmatch(response)):
            raise InvalidArgumentError(
                "AUTH needs a SASL mechanism name and optionally one base64 initial "
                "response ('=' when empty) (RFC 4954 §4); the argument is not that"
            )
    elif not verb:
        if argument not in {"", "*"} and not _BASE64_RE.fullmatch(argument):
            raise InvalidArgumentError(
                "a SASL response line must be base64, empty, or '*' to cancel "
                "(RFC 4954 §4); the response given is not"
            )
    elif verb in _NO_ARGUMENT and argument:
        raise InvalidArgumentError(f"{verb} takes no argument, got {argument!r}")


def encode_command(command: Command) -> bytes:
    """Validate and encode one command line, CRLF included.

    MAIL renders ``MAIL FROM:<addr> K=V ...``, RCPT ``RCPT TO:<addr> ...``,
    BDAT ``BDAT <n>[ LAST]``, a continuation just the data. Param keywords must
    match ``[A-Za-z0-9][A-Za-z0-9-]*`` and values must be printable ASCII without
    ``=`` or space (R-5321-4.1.2-2), except the ``SMTPUTF8`` value rules: when
    the ``SMTPUTF8`` parameter is present, values may also hold non-ASCII text
    (RFC 6531 §3.3). Non-ASCII addresses are encoded as UTF-8; whether the
    server allows them (SMTPUTF8) is the caller's decision.

    AUTH lines and SASL continuation lines may be up to 12,288 octets
    (RFC 4954 §4); the caller decides when to omit a long initial response.

    Raises:
        InvalidArgumentError: control characters anywhere, bad address syntax,
            bad parameter, or the line exceeds the 512-octet limit (plus 40 octets
            per ESMTP parameter given).
    """
    verb = command.verb
    _reject_controls("SMTP verb", verb)
    if verb and not (verb.isascii() and verb.isalpha() and verb.isupper() and len(verb) <= 20):
        raise InvalidArgumentError(
            f"SMTP verb {verb!r} is invalid: use an upper-case word such as 'MAIL'"
        )
    secret = command.redact or verb in {"", "AUTH"}
    _reject_controls(f"{verb or 'SASL response'} argument", command.argument, secret=secret)
    params = command.params or {}
    if params:
        _check_params(verb, params)
    _check_argument(verb, command.argument, unqualified=command.unqualified)
    if verb == "BDAT":
        size, _, last = command.argument.partition(" ")
        argument = f"{size} LAST" if last else size
    else:
        argument = command.argument
    line = (_render(verb, argument, params) + "\r\n").encode("utf-8")
    if verb in {"", "AUTH"}:
        limit = _MAX_AUTH_LINE
    else:
        limit = MAX_COMMAND_LINE + _PARAM_ALLOWANCE * len(params)
    if len(line) > limit:
        raise InvalidArgumentError(
            f"the {verb or 'SASL response'} command line would be {len(line)} octets, "
            f"over the {limit}-octet limit (RFC 5321 §4.5.3.1.4); shorten the argument"
        )
    return line


def _octets(text: str) -> int:
    return len(text.encode("utf-8"))


def _invalid_address(address: str, why: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"invalid envelope address {_escape(address[:100])!r}: {why}; nothing was sent"
    )


def _split_quoted(address: str) -> tuple[str, str]:
    """Split ``"quoted local"@rest``; return ``(local incl. quotes, rest)``."""
    index = 1
    while index < len(address):
        char = address[index]
        if char == "\\":
            # quoted-pairSMTP = "\" %d32-126: any printable ASCII may be escaped.
            if index + 1 >= len(address) or not " " <= address[index + 1] <= "~":
                raise _invalid_address(address, "bad backslash escape in the quoted local part")
            index += 2
            continue
        if char == '"':
            return address[: index + 1], address[index + 1 :]
        index += 1
    raise _invalid_address(address, "the quoted local part has no closing quote")


def _valid_address_literal(literal: str) -> bool:
    """Is ``literal`` (without brackets) an IPv4 or ``IPv6:`` address literal?

    General address literals (RFC 5321 §4.1.3) have no registered tag besides
    IPv6, so they are refused rather than passed on unchecked.
    """
    tag, colon, rest = literal.partition(":")
    try:
        if not colon:
            ipaddress.IPv4Address(literal)
            return True
        # A zone ("fe80::1%eth0") is meaningless to the peer: refuse it.
        return tag.upper() == "IPV6" and not ipaddress.IPv6Address(rest).scope_id
    except ValueError:
        return False


def validate_mailbox(
    address: str, *, allow_empty: bool = False, allow_unqualified: bool = False
) -> str:
    """Check an envelope address enough to stop injection and return it unchanged.

    Rejects controls, ``<``, ``>``, whitespace outside a quoted local part, a
    missing ``@`` (except the null sender ``""`` when ``allow_empty``, and a
    bare local part such as ``root`` when ``allow_unqualified``: local MTAs
    qualify it with their own domain, and smtplib code relies on that), and
    local-part > 64, domain > 255, path > 256 octets (UTF-8 encoded)
    (R-5321-4.5.3.1-1). Quoted local parts (``"john doe"@example.com``) and
    address literals (``user@[192.0.2.1]``, ``user@[IPv6:2001:db8::1]``) are
    accepted. Dots in an unquoted local part are not policed (some providers
    issue ``a..b@`` addresses); non-ASCII is allowed (RFC 6531; see
    :func:`mailbox_needs_smtputf8`).

    Raises:
        InvalidArgumentError: with a message naming the problem and the address.
    """
    if type(address) is str:  # a str subclass could compare equal to a checked address
        _check_mailbox_cached(address, bool(allow_empty), bool(allow_unqualified))
    else:
        _check_mailbox(address, allow_empty, allow_unqualified)
    return address


def _check_mailbox(address: str, allow_empty: bool, allow_unqualified: bool) -> None:
    if not address:
        if allow_empty:
            return
        raise _invalid_address(address, "it is empty (only the sender may be empty, '<>')")
    _reject_controls("envelope address", address)
    if "<" in address or ">" in address:
        raise _invalid_address(address, "'<' and '>' are not allowed; pass the bare address")
    if address.startswith('"'):
        local, rest = _split_quoted(address)
    else:
        local, at, domain = address.rpartition("@")
        if allow_unqualified and not at:
            local = address  # a bare local part
        rest = "@" + domain if local and at else ("" if local else address)
        bad = sorted({char for char in local if char in _LOCAL_SPECIALS or char.isspace()})
        if bad:
            raise _invalid_address(
                address, f"the local part contains {''.join(bad)!r}; quote the local part"
            )
    if allow_unqualified and local and not rest:
        if _octets(local) > MAX_LOCAL_PART:
            raise _invalid_address(address, f"the local part is over {MAX_LOCAL_PART} octets")
        return
    if not rest.startswith("@") or len(local) == 0:
        raise _invalid_address(address, "it needs the form local-part@domain")
    domain = rest[1:]
    if not domain:
        raise _invalid_address(address, "the domain is missing after '@'")
    if domain.startswith("[") and domain.endswith("]"):
        if not _valid_address_literal(domain[1:-1]):
            raise _invalid_address(address, "the address literal is not a valid IP address")
    elif any(char.isspace() for char in domain) or not all(
        _DOMAIN_LABEL_RE.fullmatch(label) for label in domain.split(".")
    ):
        raise _invalid_address(
            address, "the domain must be dot-separated labels of letters, digits and '-'"
        )
    if _octets(local) > MAX_LOCAL_PART:
        raise _invalid_address(address, f"the local part is over {MAX_LOCAL_PART} octets")
    if _octets(domain) > MAX_DOMAIN:
        raise _invalid_address(address, f"the domain is over {MAX_DOMAIN} octets")
    if _octets(address) + 2 > MAX_PATH:
        raise _invalid_address(address, f"the path <...> is over {MAX_PATH} octets")


#: Each address is checked when a message is prepared, when its envelope is
#: planned and when its command is encoded; the rules depend on the text alone,
#: so recent good addresses are remembered (a refusal raises and is not kept).
#: The last 4,096 good addresses thus stay in this process's memory.
_check_mailbox_cached: Final = functools.lru_cache(maxsize=4096)(_check_mailbox)


def mailbox_needs_smtputf8(address: str) -> bool:
    """True when the address has non-ASCII characters (RFC 6531)."""
    return not address.isascii()


def ehlo_name(name: str | None) -> str:
    """The EHLO argument: ``name`` IDNA-encoded, or ``[127.0.0.1]`` when ``None``.

    The default never leaks the machine's FQDN (R-LIB-EHLO-1); IP literals given
    as ``"192.0.2.1"`` become ``"[192.0.2.1]"`` (``"[IPv6:...]"`` for IPv6).
    Internationalised names become A-labels (``bücher.example`` ->
    ``xn--bcher-kva.example``, R-6531-3.7.1-1) with Python's built-in ``idna``
    codec (IDNA 2003); every label must then be LDH (letters, digits, ``-``).
    One trailing dot is dropped.

    Raises:
        InvalidArgumentError: for controls, spaces or an invalid hostname.
    """
    if name is None:
        return _DEFAULT_EHLO
    _reject_controls("EHLO name", name)
    if not name or any(char.isspace() for char in name):
        raise InvalidArgumentError(
            f"EHLO name {name!r} is invalid: it must be one hostname or IP address without spaces"
        )
    if name.startswith("[") and name.endswith("]"):
        if not _valid_address_literal(name[1:-1]):
            raise InvalidArgumentError(f"EHLO address literal {name!r} is not a valid IP")
        return name
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        if isinstance(ip, ipaddress.IPv4Address):
            return f"[{ip}]"
        if ip.scope_id:
            raise InvalidArgumentError(
                f"EHLO name {name!r} has an IPv6 zone; address literals cannot carry one"
            )
        return f"[IPv6:{ip.compressed}]"
    host = name[:-1] if name.endswith(".") else name
    try:
        encoded = host.encode("idna").decode("ascii")
    except UnicodeError:
        encoded = ""
    labels = encoded.split(".")
    if len(encoded) > MAX_DOMAIN or not all(_LDH_LABEL_RE.fullmatch(label) for label in labels):
        raise InvalidArgumentError(
            f"EHLO name {name!r} is not a valid hostname: each label must be 1-63 "
            "letters, digits or '-' (IDNA-encoded if international); pass a valid "
            "hostname or None for the default [127.0.0.1]"
        )
    return encoded


def xtext(value: str) -> str:
    """RFC 3461 xtext-encode (``+``, ``=``, controls and non-ASCII as ``+HH``).

    Non-ASCII characters are encoded octet by octet from their UTF-8 form, as
    needed for ``AUTH=`` on ``MAIL FROM`` (R-4954-5-1):
    ``xtext("e=mc2@x") == "e+3Dmc2@x"``.
    """
    out: list[str] = []
    for char in value:
        if "!" <= char <= "~" and char not in "+=":
            out.append(char)
        else:
            out.extend(f"+{octet:02X}" for octet in char.encode("utf-8"))
    return "".join(out)
