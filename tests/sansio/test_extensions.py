"""Extensions mapping and parse_ehlo (RFC 5321 §4.1.1.1, R-1870-1, R-6531-3.1-1)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from smtpsec.errors import LocalProtocolError
from smtpsec.sansio._extensions import Extensions, parse_ehlo
from smtpsec.sansio._replies import Reply, ReplyParser


def ehlo(*lines: str) -> Reply:
    wire = b"".join(
        b"250" + (b" " if i == len(lines) - 1 else b"-") + line.encode() + b"\r\n"
        for i, line in enumerate(lines)
    )
    (reply,) = ReplyParser().feed(wire)
    return reply


def test_typical_ehlo_reply() -> None:
    name, ext = parse_ehlo(
        ehlo(
            "mx.example.test Hello [192.0.2.1]",
            "PIPELINING",
            "SIZE 35882577",
            "AUTH LOGIN PLAIN XOAUTH2",
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
            "CHUNKING",
            "SMTPUTF8",
        )
    )
    assert name == "mx.example.test"
    assert set(ext) == {
        "PIPELINING",
        "SIZE",
        "AUTH",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
        "SMTPUTF8",
    }
    assert ext["size"] == ("35882577",)
    assert ext.max_size == 35882577
    assert ext.auth_mechanisms == frozenset({"LOGIN", "PLAIN", "XOAUTH2"})
    assert ext["PIPELINING"] == ()
    assert len(ext) == 7


def test_single_line_ehlo_has_no_extensions() -> None:
    name, ext = parse_ehlo(ehlo("mx.example.test"))
    assert name == "mx.example.test"
    assert len(ext) == 0
    assert ext.max_size is None
    assert ext.auth_mechanisms == frozenset()


def test_empty_first_line_gives_empty_name() -> None:
    name, ext = parse_ehlo(ehlo("", "PIPELINING"))
    assert name == ""
    assert "pipelining" in ext
    name, _ = parse_ehlo(Reply(250, ()))
    assert name == ""


def test_case_insensitive_keys() -> None:
    _, ext = parse_ehlo(ehlo("x", "starttls", "Size 100"))
    assert "STARTTLS" in ext
    assert "StartTLS" in ext
    assert ext["SIZE"] == ("100",)
    assert list(ext) == ["STARTTLS", "SIZE"]
    assert 42 not in ext
    with pytest.raises(KeyError):
        ext["DSN"]
    with pytest.raises(KeyError):
        ext[42]  # type: ignore[index]


def test_legacy_auth_equals_is_merged() -> None:
    _, ext = parse_ehlo(ehlo("x", "AUTH PLAIN LOGIN", "AUTH=LOGIN CRAM-MD5", "auth=XOAUTH2"))
    assert ext["AUTH"] == ("PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2")
    assert ext.auth_mechanisms == frozenset({"PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"})
    _, only_legacy = parse_ehlo(ehlo("x", "AUTH=PLAIN"))
    assert only_legacy.auth_mechanisms == frozenset({"PLAIN"})
    _, empty_legacy = parse_ehlo(ehlo("x", "AUTH="))
    assert empty_legacy["AUTH"] == ()


def test_auth_mechanisms_upper_cased_and_filtered() -> None:
    _, ext = parse_ehlo(ehlo("x", "AUTH plain scram-sha-256 TOO-LONG-MECHANISM-NAME-X {bad}"))
    assert ext.auth_mechanisms == frozenset({"PLAIN", "SCRAM-SHA-256"})


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("SIZE 1000", 1000),
        ("SIZE 0", None),
        ("SIZE", None),
        ("SIZE -1", None),
        ("SIZE abc", None),
        ("SIZE 1e6", None),
        ("SIZE +5", None),
        ("SIZE 99999999999999999999", 99999999999999999999),
        ("SIZE 999999999999999999999", None),  # 21 digits: over the bound
        ("SIZE 99999999999999999999999", None),
    ],
)
def test_r1870_1_size_parsed_strictly(line: str, expected: int | None) -> None:
    """R-1870-1: malformed SIZE means no declared limit, never a crash."""
    _, ext = parse_ehlo(ehlo("x", line))
    assert ext.max_size == expected


def test_r1870_1_unicode_digits_are_not_a_size() -> None:
    ext = Extensions({"SIZE": ("١٢٣",)})  # Arabic-Indic digits
    assert ext.max_size is None


def test_r6531_3_1_1_parameters_after_smtputf8_ignored() -> None:
    """R-6531-3.1-1: ``250-SMTPUTF8 junk`` is plain support."""
    _, ext = parse_ehlo(ehlo("x", "SMTPUTF8 junk more"))
    assert ext["SMTPUTF8"] == ()


@pytest.mark.parametrize(
    "line",
    ["-BAD", "BAD_KEYWORD", "ÄUTH PLAIN", "X.Y", "   ", "SIZE 10\u00e9", "AUTH=\u00e9"],
)
def test_malformed_lines_are_skipped(line: str) -> None:
    _, ext = parse_ehlo(ehlo("x", line, "PIPELINING"))
    assert list(ext) == ["PIPELINING"]


def test_auth_legacy_with_bad_keyword_after_equals_is_skipped() -> None:
    _, ext = parse_ehlo(ehlo("x", "AUTH=PLAIN LOG\u00efN"))
    assert "AUTH" not in ext


def test_extra_spaces_between_params() -> None:
    _, ext = parse_ehlo(ehlo("x", "AUTH  PLAIN   LOGIN "))
    assert ext["AUTH"] == ("PLAIN", "LOGIN")


def test_duplicate_keywords_merge_and_first_size_wins() -> None:
    _, ext = parse_ehlo(ehlo("x", "SIZE 100", "size 200", "SIZE 100"))
    assert ext["SIZE"] == ("100", "200")
    assert ext.max_size == 100


def test_any_2yz_accepted_other_codes_refused() -> None:
    name, _ = parse_ehlo(Reply(251, ("odd.example",)))
    assert name == "odd.example"
    with pytest.raises(LocalProtocolError, match="check the reply code"):
        parse_ehlo(Reply(502, ("5.5.1 EHLO not supported",)))


def test_extensions_constructor_and_immutability() -> None:
    ext = Extensions({"auth": ("PLAIN",), "AUTH=": ("LOGIN", "PLAIN"), "8bitmime": ()})
    assert dict(ext) == {"AUTH": ("PLAIN", "LOGIN"), "8BITMIME": ()}
    assert isinstance(ext, Mapping)
    assert ext == Extensions({"AUTH": ("PLAIN", "LOGIN"), "8BITMIME": ()})
    assert repr(ext) == "Extensions({'AUTH': ('PLAIN', 'LOGIN'), '8BITMIME': ()})"
    with pytest.raises(TypeError):
        ext["X"] = ()  # type: ignore[index]
    with pytest.raises(AttributeError):
        ext.extra = 1  # type: ignore[attr-defined]
    assert len(Extensions()) == 0
    assert Extensions(None) == Extensions({})
