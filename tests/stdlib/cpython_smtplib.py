"""Run CPython's own ``test_smtplib`` against ``smtpsec.smtplib``.

"Change one import" is the drop-in's promise; the standard library's test
suite is the best judge of it. This script loads the running interpreter's
copy of ``Lib/test/test_smtplib.py`` with ``sys.modules["smtplib"]`` replaced
by the drop-in, runs it, and compares the outcome with :data:`EXPECTED`: the
tests that fail on purpose, each because of a documented difference (a
security rule, or a stricter input rule) listed in docs/migration-smtplib.md.

It exits non-zero when a test outside the list fails or errors, and also when
a listed test passes (so the list stays true). It is a script, not a pytest
module: replacing ``smtplib`` inside the pytest process would affect every
other test. ``.ci/run`` runs it once per CPython in the matrix.

Usage: ``python tests/stdlib/cpython_smtplib.py [--summary FILE]``
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import sys
import sysconfig
import unittest
from collections.abc import Iterator
from pathlib import Path
from typing import Final

#: The anchor of the table in docs/migration-smtplib.md that lists these.
DOC: Final = "docs/migration-smtplib.md#cpythons-test_smtplib"

_CLEARTEXT_AUTH: Final = (
    "credentials over cleartext: the test server has no TLS and login()/auth() "
    "refuse to send credentials without verified TLS (row 'login()/auth() without TLS')"
)
_TIMEOUT_NONE: Final = (
    "timeout=None means the 60 s default, never 'block forever' (row 'No timeout given')"
)
_EHLO_NAME: Final = (
    "ehlo('test_auth_login') and ehlo('test_auth_buggy'): EHLO names must be host "
    "names, and '_' is not allowed in one (row 'local_hostname given'); the test "
    "then logs in over cleartext as well"
)

#: test id (without the ``test.test_smtplib.`` prefix) -> why it fails on purpose.
EXPECTED: Final[dict[str, str]] = {
    "SMTPGeneralTests.testTimeoutNone": _TIMEOUT_NONE,
    "LMTPGeneralTests.testTimeoutNone": _TIMEOUT_NONE,
    "LMTPGeneralTests.testUnixDomainSocketTimeoutDefault": _TIMEOUT_NONE,
    "SMTPSimTests.testAUTH_PLAIN": _CLEARTEXT_AUTH,
    "SMTPSimTests.testAUTH_LOGIN": _CLEARTEXT_AUTH,
    "SMTPSimTests.testAUTH_CRAM_MD5": _CLEARTEXT_AUTH,
    "SMTPSimTests.testAUTH_multiple": _CLEARTEXT_AUTH,
    "SMTPSimTests.test_auth_function": _CLEARTEXT_AUTH,
    "SMTPAUTHInitialResponseSimTests.testAUTH_PLAIN_initial_response_login": _CLEARTEXT_AUTH,
    "SMTPAUTHInitialResponseSimTests.testAUTH_PLAIN_initial_response_auth": _CLEARTEXT_AUTH,
    "SMTPSimTests.testAUTH_BUGGY": _EHLO_NAME,
    "SMTPSimTests.testAUTH_LOGIN_initial_response_ok": _EHLO_NAME,
    "SMTPSimTests.testAUTH_LOGIN_initial_response_notok": _EHLO_NAME,
    "SMTPSimTests.test_send_unicode_without_SMTPUTF8": (
        "sendmail() with a non-ASCII address to a server without SMTPUTF8 raises "
        "SMTPNotSupportedError (as smtplib's own send_message() does), not "
        "UnicodeEncodeError (row 'Non-ASCII address without SMTPUTF8')"
    ),
    "SMTPSimTests.test_lowercase_mail_from_rcpt_to": (
        "commands go out in RFC 5321's upper case, and SIZE is the exact number of "
        "octets sent (line ends normalised, final CRLF added); CPython 3.13 checks "
        "for 'mail from:<John> size=14' (row 'Command spelling and SIZE')"
    ),
}


def _test_module_path() -> Path:
    return Path(sysconfig.get_paths()["stdlib"]) / "test" / "test_smtplib.py"


def _load_suite(path: Path) -> unittest.TestSuite:
    import smtpsec.smtplib as drop_in

    # The module under test reads smtplib from sys.modules, as user code does.
    sys.modules["smtplib"] = drop_in
    spec = importlib.util.spec_from_file_location("test.test_smtplib", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["test.test_smtplib"] = module
    spec.loader.exec_module(module)
    return unittest.defaultTestLoader.loadTestsFromModule(module)


def _cases(suite: unittest.TestSuite) -> Iterator[unittest.TestCase]:
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from _cases(item)
        else:
            yield item


def _name(test: unittest.TestCase) -> str:
    """``Class.method`` without the module prefix or a subTest's parameters."""
    test_id = test.id().removeprefix("test.test_smtplib.")
    return test_id.split(" ", 1)[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--summary", type=Path, help="append the one-line summary to this file")
    args = parser.parse_args(argv)
    version = platform.python_version()
    path = _test_module_path()
    if not path.is_file():
        print(
            f"cpython_smtplib: {path} does not exist: this CPython {version} was installed "
            "without its test suite (Debian: apt install libpython3.X-testsuite; pyenv "
            "builds include it)",
            file=sys.stderr,
        )
        return 2
    suite = _load_suite(path)
    names = {_name(case) for case in _cases(suite)}
    result = unittest.TextTestRunner(stream=sys.stdout, verbosity=1).run(suite)
    failed = {_name(test) for test, _ in (*result.failures, *result.errors)}
    failed |= {_name(test) for test in result.unexpectedSuccesses}
    listed = {name for name in EXPECTED if name in names}
    unexpected = sorted(failed - listed)
    fixed = sorted(listed - failed)
    skipped = {_name(test) for test, _ in result.skipped} - failed
    passed = len(names - failed - skipped)
    summary = (
        f"CPython {version} test_smtplib on smtpsec.smtplib: {passed} of {len(names)} tests "
        f"pass, {len(skipped)} skipped, {len(listed & failed)} fail as expected (see {DOC}), "
        f"{len(unexpected)} unexpected failure(s), {len(fixed)} listed test(s) now passing"
    )
    for name in unexpected:
        print(f"UNEXPECTED FAILURE: {name}")
    for name in fixed:
        print(f"LISTED BUT PASSING (remove it from EXPECTED and the docs): {name}")
    print(summary)
    if args.summary is not None:
        with args.summary.open("a", encoding="utf-8") as out:
            out.write(summary + "\n")
    return 1 if unexpected or fixed else 0


if __name__ == "__main__":
    sys.exit(main())
