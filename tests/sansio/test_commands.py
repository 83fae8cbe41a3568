"""Command encoding and argument validation (R-5321-4.1.2-1/-2, R-5321-4.5.3.1-1, R-LIB-EHLO-1)."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpsec.errors import InvalidArgumentError
from smtpsec.sansio._commands import (
    Command,
    ehlo_name,
    encode_command,
    mailbox_needs_smtputf8,
    validate_mailbox,
    xtext,
)

CONTROLS = [chr(c) for c in range(0x20)] + ["\x7f"]


# --------------------------------------------------------------------------- encoding


@pytest.mark.parametrize(
    ("command", "wire"),
    [
        (Command("EHLO", "client.example.test"), b"EHLO client.example.test\r\n"),
        (Command("HELO", "[127.0.0.1]"), b"HELO [127.0.0.1]\r\n"),
        (Command("MAIL", "a@example.test"), b"MAIL FROM:<a@example.test>\r\n"),
        (Command("MAIL", ""), b"MAIL FROM:<>\r\n"),
        (
            Command("MAIL", "a@example.test", {"SIZE": "1234", "BODY": "8BITMIME"}),
            b"MAIL FROM:<a@example.test> SIZE=1234 BODY=8BITMIME\r\n",
        ),
        (
            Command("MAIL", "用户@例子.测试", {"SMTPUTF8": None, "BODY": "8BITMIME"}),
            "MAIL FROM:<用户@例子.测试> SMTPUTF8 BODY=8BITMIME\r\n".encode(),
        ),
        (Command("RCPT", "b@example.test"), b"RCPT TO:<b@example.test>\r\n"),
        (
            Command("RCPT", "b@example.test", {"NOTIFY": "SUCCESS,FAILURE"}),
            b"RCPT TO:<b@example.test> NOTIFY=SUCCESS,FAILURE\r\n",
        ),
        (Command("RCPT", "Postmaster"), b"RCPT TO:<Postmaster>\r\n"),
        (Command("DATA"), b"DATA\r\n"),
        (Command("BDAT", "0 LAST"), b"BDAT 0 LAST\r\n"),
        (Command("BDAT", "12"), b"BDAT 12\r\n"),
        (Command("BDAT", "12 last"), b"BDAT 12 LAST\r\n"),
        (Command("AUTH", "PLAIN"), b"AUTH PLAIN\r\n"),
        (
            Command("AUTH", "PLAIN AGFsaWNlAHNlY3JldA==", redact=True),
            b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
        ),
        (Command("AUTH", "EXTERNAL ="), b"AUTH EXTERNAL =\r\n"),
        (Command("", "dXNlcg==", redact=True), b"dXNlcg==\r\n"),
        (Command("", ""), b"\r\n"),
        (Command("", "*"), b"*\r\n"),
        (Command("STARTTLS"), b"STARTTLS\r\n"),
        (Command("RSET"), b"RSET\r\n"),
        (Command("NOOP"), b"NOOP\r\n"),
        (Command("NOOP", "ping"), b"NOOP ping\r\n"),
        (Command("QUIT"), b"QUIT\r\n"),
        (Command("VRFY", "someone"), b"VRFY someone\r\n"),
    ],
)
def test_every_command_encodes(command: Command, wire: bytes) -> None:
    assert encode_command(command) == wire


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        (Command("AUTH", "PLAIN AGFsaWNlAHNlY3JldA==", redact=True), "AUTH PLAIN <redacted>"),
        (Command("AUTH", "PLAIN", redact=True), "AUTH PLAIN"),
        (Command("", "c2VjcmV0", redact=True), "<redacted>"),
        (Command("", "", redact=True), ""),
        (
            Command("MAIL", "a@example.test", {"SIZE": "1", "SMTPUTF8": None}),
            "MAIL FROM:<a@example.test> SIZE=1 SMTPUTF8",
        ),
        (Command("RCPT", "b@example.test"), "RCPT TO:<b@example.test>"),
        (Command("EHLO", "h", redact=True), "EHLO <redacted>"),
        (Command("QUIT"), "QUIT"),
        (
            Command("rcpt", "x@y.test>\r\nRCPT TO:<victim@z.test"),
            "RCPT TO:<x@y.test>\\x0d\\x0aRCPT TO:<victim@z.test>",
        ),
    ],
)
def test_loggable_redacts_and_escapes(command: Command, shown: str) -> None:
    text = command.loggable()
    assert text == shown
    assert "\r" not in text
    assert "\n" not in text


def test_loggable_never_contains_the_secret() -> None:
    secret = "AGFsaWNlAENBTkFSWS1QVy0x"
    assert secret not in Command("AUTH", f"PLAIN {secret}", redact=True).loggable()
    assert secret not in Command("", secret, redact=True).loggable()


# --------------------------------------------------------------------------- injection


def test_r5321_4_1_2_1_recipient_injection_raises() -> None:
    """R-5321-4.1.2-1: the checklist's recipient vector."""
    with pytest.raises(InvalidArgumentError, match="control character 0x0d"):
        encode_command(Command("RCPT", "x@y.test>\r\nRCPT TO:<victim@z.test>"))


def test_r5321_4_1_2_1_ehlo_injection_raises() -> None:
    with pytest.raises(InvalidArgumentError, match="control character"):
        encode_command(Command("EHLO", "h\r\nMAIL FROM:<a@b>"))
    with pytest.raises(InvalidArgumentError, match="control character"):
        ehlo_name("h\r\nMAIL FROM:<a@b>")


def test_angle_bracket_injection_without_controls_raises() -> None:
    with pytest.raises(InvalidArgumentError, match="'<' and '>'"):
        encode_command(Command("RCPT", "x@y.test> NOTIFY=NEVER"))
    with pytest.raises(InvalidArgumentError, match="'<' and '>'"):
        encode_command(Command("MAIL", "<a@b.test>"))


_CONTROL = st.sampled_from(CONTROLS)
_SAFE = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='<>="\\'), max_size=10
)


@settings(max_examples=200, deadline=None)
@given(
    _SAFE,
    _CONTROL,
    _SAFE,
    st.sampled_from(["arg", "mail", "rcpt", "key", "value", "auth", "cont", "verb", "ehlo"]),
)
def test_r5321_4_1_2_1_every_control_rejected_everywhere(
    before: str, control: str, after: str, where: str
) -> None:
    """R-5321-4.1.2-1: any C0 control or DEL in any part raises before bytes exist."""
    bad = before + control + after
    command = {
        "arg": Command("NOOP", bad),
        "mail": Command("MAIL", f"{bad}@example.test"),
        "rcpt": Command("RCPT", f"user@{bad}.test"),
        "key": Command("MAIL", "a@b.test", {bad: "1"}),
        "value": Command("MAIL", "a@b.test", {"X-K": bad}),
        "auth": Command("AUTH", f"PLAIN {bad}", redact=True),
        "cont": Command("", bad, redact=True),
        "verb": Command(bad),
        "ehlo": Command("EHLO", bad),
    }[where]
    with pytest.raises(InvalidArgumentError) as info:
        encode_command(command)
    if where in {"auth", "cont"}:
        # SASL data is secret: never echoed into the message.
        assert "\\x" not in str(info.value)
        if len(before) >= 8:
            assert before not in str(info.value)
    else:
        assert "control character" in str(info.value)


@pytest.mark.parametrize("char", ["\x85", "\u2028", "\u2029", "\x9b"])
def test_unicode_line_breaks_and_c1_controls_rejected(char: str) -> None:
    with pytest.raises(InvalidArgumentError):
        encode_command(Command("MAIL", f"a{char}b@example.test"))


@pytest.mark.parametrize(
    "params",
    [
        {"SIZE": "1 AUTH=<>"},  # two parameters smuggled in one value
        {"SIZE=1 AUTH": "<>"},  # ... or in one keyword
        {"SIZE": "1=2"},
        {"SIZE": ""},
        {"SIZE": "é"},  # non-ASCII without SMTPUTF8
        {"-SIZE": "1"},
        {"SI ZE": "1"},
        {"": "1"},
        {"SIZE": "1", "size": "2"},
        {"SMTPUTF8": None, "AUTH": "a b"},
        {"SMTPUTF8": None, "AUTH": "a\u3000b"},  # ideographic space
        {"SMTPUTF8": None, "AUTH": "a=b"},
    ],
)
def test_r5321_4_1_2_2_param_smuggling_raises(params: dict[str, str | None]) -> None:
    """R-5321-4.1.2-2: keywords and values must match the ESMTP grammar."""
    with pytest.raises(InvalidArgumentError, match="ESMTP parameter"):
        encode_command(Command("MAIL", "a@example.test", params))


def test_r6531_utf8_param_values_allowed_with_smtputf8() -> None:
    wire = encode_command(
        Command("MAIL", "a@example.test", {"SMTPUTF8": None, "AUTH": "用户@例子"})
    )
    assert wire == "MAIL FROM:<a@example.test> SMTPUTF8 AUTH=用户@例子\r\n".encode()


@pytest.mark.parametrize("verb", ["EHLO", "DATA", "AUTH", "", "QUIT", "BDAT"])
def test_params_only_on_mail_and_rcpt(verb: str) -> None:
    with pytest.raises(InvalidArgumentError, match="takes no ESMTP parameters"):
        encode_command(Command(verb, "x", {"SIZE": "1"}))


@pytest.mark.parametrize(
    ("command", "fragment"),
    [
        (Command("EHLO", ""), "needs one ASCII domain"),
        (Command("EHLO", "a b"), "needs one ASCII domain"),
        (Command("EHLO", "bücher.example"), "ehlo_name"),
        (Command("DATA", "x"), "takes no argument"),
        (Command("QUIT", "now"), "takes no argument"),
        (Command("BDAT", "-1"), "BDAT argument"),
        (Command("BDAT", "12 LAST extra"), "BDAT argument"),
        (Command("BDAT", ""), "BDAT argument"),
        (Command("AUTH", ""), "SASL mechanism"),
        (Command("AUTH", "PL@IN"), "SASL mechanism"),
        (Command("AUTH", "PLAIN not base64!"), "SASL mechanism"),
        (Command("AUTH", "PLAIN "), "SASL mechanism"),
        (Command("", "not base64"), "SASL response"),
        (Command("mail", "a@b.test"), "upper-case"),
        (Command("MA1L", "a@b.test"), "upper-case"),
        (Command("RCPT", ""), "empty"),
        (Command("RCPT", "nobody"), "local-part@domain"),
    ],
)
def test_bad_arguments_raise(command: Command, fragment: str) -> None:
    with pytest.raises(InvalidArgumentError, match=fragment):
        encode_command(command)


# --------------------------------------------------------------------------- line limits


def test_r5321_4_5_3_1_1_300_octet_path_raises() -> None:
    """R-5321-4.5.3.1-1: a 300-octet path fails before RCPT is produced."""
    address = "a" * 60 + "@" + ".".join(["b" * 59] * 4)  # 60 + 1 + 239 = 300 octets
    assert len(address) == 300
    with pytest.raises(InvalidArgumentError, match="over 256 octets"):
        encode_command(Command("RCPT", address))


def test_line_limit_512_plus_40_per_param() -> None:
    # 512 octets with CRLF: NOOP + space + 504 + CRLF.
    assert len(encode_command(Command("NOOP", "x" * 505))) == 512
    with pytest.raises(InvalidArgumentError, match="over the 512-octet limit"):
        encode_command(Command("NOOP", "x" * 506))
    base = Command("MAIL", "a@example.test")
    fixed = len(encode_command(base))  # 30
    value = "v" * (512 + 40 - fixed - len(" X-LONG="))
    assert len(encode_command(Command("MAIL", "a@example.test", {"X-LONG": value}))) == 552
    with pytest.raises(InvalidArgumentError, match="over the 552-octet limit"):
        encode_command(Command("MAIL", "a@example.test", {"X-LONG": value + "v"}))


def test_auth_lines_may_reach_12288_octets() -> None:
    """RFC 4954 §4: SASL lines get the larger limit."""
    token = "A" * 12286
    assert len(encode_command(Command("", token, redact=True))) == 12288
    with pytest.raises(InvalidArgumentError, match="12288"):
        encode_command(Command("", token + "A", redact=True))
    ir = "B" * (12288 - len("AUTH XOAUTH2 \r\n"))
    assert len(encode_command(Command("AUTH", f"XOAUTH2 {ir}", redact=True))) == 12288
    with pytest.raises(InvalidArgumentError, match="12288"):
        encode_command(Command("AUTH", f"XOAUTH2 {ir}B", redact=True))


# --------------------------------------------------------------------------- mailboxes


@pytest.mark.parametrize(
    "address",
    [
        "user@example.test",
        "first.last+tag@sub.example.test",
        "a..b@docomo.example",
        '"john doe"@example.test',
        '"with\\"quote"@example.test',
        '""@example.test',
        "user@[192.0.2.1]",
        "user@[IPv6:2001:db8::1]",
        "用户@例子.测试",
        "o'brien@example.test",
        "under_score@my_host.example",
        "x@" + "a" * 63 + ".test",
    ],
)
def test_valid_mailboxes_pass_unchanged(address: str) -> None:
    assert validate_mailbox(address) == address


def test_null_sender_only_when_allowed() -> None:
    assert validate_mailbox("", allow_empty=True) == ""
    with pytest.raises(InvalidArgumentError, match="empty"):
        validate_mailbox("")


@pytest.mark.parametrize(
    ("address", "fragment"),
    [
        ("no-at-sign", "local-part@domain"),
        ("@example.test", "local-part@domain"),
        ("user@", "domain is missing"),
        ("a@b@example.test", "'@'"),
        ("john doe@example.test", "' '"),
        ("tab\there@example.test", "control character"),
        ("nbsp\u00a0x@example.test", "quote the local part"),
        ("x@exa mple.test", "dot-separated labels"),
        ("x@exa\u3000mple.test", "dot-separated labels"),
        ("x@example..test", "dot-separated labels"),
        ("x@example.test.", "dot-separated labels"),
        ("x@exa(mple.test", "dot-separated labels"),
        ("x@[192.0.2.300]", "not a valid IP"),
        ("x@[IPv6:fe80::1%eth0]", "not a valid IP"),
        ("x@[IPv6:nonsense]", "not a valid IP"),
        ("x@[tag:content]", "not a valid IP"),
        ('"unclosed@example.test', "no closing quote"),
        ('"bad\\\u00e9"@example.test', "backslash"),
        ('"trailing\\', "backslash"),
        ('"q"x@example.test', "local-part@domain"),
        ("a" * 65 + "@example.test", "local part is over 64"),
        ("é" * 33 + "@example.test", "local part is over 64"),  # 66 octets in UTF-8
        ("x@" + "a" * 256, "domain is over 255"),
    ],
)
def test_invalid_mailboxes_raise(address: str, fragment: str) -> None:
    with pytest.raises(InvalidArgumentError, match="envelope address") as info:
        validate_mailbox(address)
    assert fragment in str(info.value)


def test_mailbox_needs_smtputf8() -> None:
    assert mailbox_needs_smtputf8("用户@例子.测试")
    assert mailbox_needs_smtputf8("user@bücher.example")
    assert not mailbox_needs_smtputf8("user@example.test")


def test_non_ascii_address_encoded_as_utf8() -> None:
    """The caller decides about SMTPUTF8; encode_command only encodes."""
    assert encode_command(Command("RCPT", "δοκιμή@παράδειγμα.δοκιμή")) == (
        "RCPT TO:<δοκιμή@παράδειγμα.δοκιμή>\r\n".encode()
    )


# --------------------------------------------------------------------------- EHLO name


def test_r_lib_ehlo_1_default_is_an_address_literal() -> None:
    """R-LIB-EHLO-1: the default never leaks the machine's name."""
    assert ehlo_name(None) == "[127.0.0.1]"
    assert ehlo_name(None) != socket.getfqdn()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("client.example.test", "client.example.test"),
        ("client.example.test.", "client.example.test"),
        ("bücher.example", "xn--bcher-kva.example"),  # R-6531-3.7.1-1
        ("192.0.2.1", "[192.0.2.1]"),
        ("2001:db8::1", "[IPv6:2001:db8::1]"),
        ("2001:0db8:0000::0001", "[IPv6:2001:db8::1]"),
        ("[192.0.2.1]", "[192.0.2.1]"),
        ("[IPv6:::1]", "[IPv6:::1]"),
        ("localhost", "localhost"),
        ("a-b.c0", "a-b.c0"),
    ],
)
def test_ehlo_name(name: str, expected: str) -> None:
    assert ehlo_name(name) == expected
    assert encode_command(Command("EHLO", ehlo_name(name))) == f"EHLO {expected}\r\n".encode()


@pytest.mark.parametrize(
    "name",
    [
        "",
        "has space.example",
        "under_score.example",
        "-leading.example",
        "trailing-.example",
        "a..b",
        ".",
        "a" * 64 + ".example",
        ".".join(["a" * 63] * 5),
        "[300.1.1.1]",
        "[not-an-ip]",
        "fe80::1%eth0",
        "bad!char.example",
        "\u3000.example",
    ],
)
def test_ehlo_name_rejects_invalid(name: str) -> None:
    with pytest.raises(InvalidArgumentError, match="EHLO"):
        ehlo_name(name)


# --------------------------------------------------------------------------- xtext


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        ("e=mc2@example.test", "e+3Dmc2@example.test"),  # R-4954-5-1
        ("a+b@example.test", "a+2Bb@example.test"),
        ("plain@example.test", "plain@example.test"),
        ("sp ace", "sp+20ace"),
        ("tab\t", "tab+09"),
        ("é", "+C3+A9"),
        ("<>", "<>"),
        ("", ""),
        ("\x7f", "+7F"),
    ],
)
def test_xtext(raw: str, encoded: str) -> None:
    assert xtext(raw) == encoded


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_xtext_output_is_a_valid_param_value(raw: str) -> None:
    """Any xtext output can be sent as an AUTH= value."""
    value = xtext(raw)
    if value:
        wire = encode_command(Command("MAIL", "a@b.test", {"AUTH": value}))
        assert wire.endswith(b" AUTH=" + value.encode("ascii") + b"\r\n")


def test_validate_mailbox_remembers_only_good_addresses_and_their_flags() -> None:
    """The check is cached per (text, flags): a refusal is raised every time, and an
    address accepted under one rule is not taken as accepted under a stricter one."""
    for _ in range(3):
        with pytest.raises(InvalidArgumentError, match="control character"):
            validate_mailbox("ann@example.test\r\nRCPT TO:<evil@x.test>")
        assert validate_mailbox("root", allow_unqualified=True) == "root"
        with pytest.raises(InvalidArgumentError, match="local-part@domain"):
            validate_mailbox("root")
        with pytest.raises(InvalidArgumentError, match="empty"):
            validate_mailbox("")
        assert validate_mailbox("", allow_empty=True) == ""


class _Sneaky(str):
    """A str subclass that compares equal to a good address but holds other text."""

    def __eq__(self, other: object) -> bool:
        return other == "ann@example.test" or str.__eq__(self, other)

    def __hash__(self) -> int:
        return hash("ann@example.test")


def test_validate_mailbox_checks_a_str_subclass_itself() -> None:
    validate_mailbox("ann@example.test")  # now remembered
    with pytest.raises(InvalidArgumentError, match="control character"):
        validate_mailbox(_Sneaky("ann@example.test\r\nDATA"))
