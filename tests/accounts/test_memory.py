"""Per-account TLS memory: round trips, fail-closed corruption, locking, atomic writes.

Requirement IDs: R-LIB-GUARD-1, R-LIB-GUARD-2, R-LIB-GUARD-3, R-3207-6-2.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from smtpsec import Security
from smtpsec.errors import InvalidArgumentError, PolicyError, SMTPSecWarning
from smtpsec.memory import STORE_VERSION, Account, Expectation, TLSMemory

ANN = Account("ann", "smtp.example.test", 465)
BOB = Account("bob", "smtp.example.test", 587)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "tls-memory.json"


def entry(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "user": "ann",
        "host": "smtp.example.test",
        "port": 465,
        "mode": "implicit_tls",
        "tls_version": "TLSv1.3",
        "verified": True,
        "first_seen": "2026-01-01T00:00:00+00:00",
        "last_seen": "2026-01-02T00:00:00+00:00",
    }
    row.update(changes)
    return row


def document(*rows: dict[str, object]) -> str:
    return json.dumps({"version": STORE_VERSION, "accounts": list(rows)})


# --------------------------------------------------------------------------- basics


def test_missing_file_is_an_empty_store(store: Path) -> None:
    memory = TLSMemory(store)
    assert memory.expectation(ANN) is None
    assert memory.requires_tls(ANN) is False
    assert memory.accounts() == []
    assert memory.corrupt is None
    assert not store.exists()  # reading never creates the file
    assert memory.path == store
    assert repr(memory) == f"TLSMemory({str(store)!r})"


def test_R_LIB_GUARD_1_record_expectation_forget_round_trip(store: Path) -> None:
    memory = TLSMemory(store)
    memory.record(ANN, mode=Security.STARTTLS, tls_version="TLSv1.3")
    expectation = memory.expectation(ANN)
    assert expectation is not None
    assert (expectation.mode, expectation.tls_version, expectation.verified) == (
        Security.STARTTLS,
        "TLSv1.3",
        True,
    )
    assert datetime.fromisoformat(expectation.first_seen).tzinfo is not None
    assert memory.requires_tls(ANN) is True
    assert memory.requires_tls(BOB) is False
    # A second instance (another process, later) sees the same record.
    assert TLSMemory(store).expectation(ANN) == expectation
    assert memory.forget(ANN) is True
    assert memory.forget(ANN) is False
    assert memory.requires_tls(ANN) is False
    assert memory.accounts() == []


def test_accounts_are_listed_sorted(store: Path) -> None:
    memory = TLSMemory(store)
    other = Account("zed", "a.example.test", 465)
    for account in (BOB, ANN, other):
        memory.record(account, mode=Security.IMPLICIT_TLS, tls_version="TLSv1.2")
    assert memory.accounts() == [other, ANN, BOB]


def test_store_is_human_readable_versioned_json(store: Path) -> None:
    TLSMemory(store).record(ANN, mode=Security.IMPLICIT_TLS, tls_version="TLSv1.3")
    text = store.read_text(encoding="utf-8")
    assert text.endswith("\n")
    assert '\n  "version": 1,' in text
    data = json.loads(text)
    assert data["accounts"][0]["host"] == "smtp.example.test"
    assert data["accounts"][0]["port"] == 465


def test_account_key_is_normalized() -> None:
    assert Account("ann", "SMTP.Example.TEST.", 465) == ANN
    assert Account("Ann", "smtp.example.test", 465) != ANN  # user names may be case-sensitive


@pytest.mark.parametrize(
    ("user", "host", "port", "match"),
    [
        ("ann", "", 465, "non-empty"),
        ("ann", "bad host", 465, "non-empty"),
        ("ann\r\n", "smtp.example.test", 465, "control characters"),
        ("ann", "smtp.example.test", 0, "outside 1-65535"),
        ("ann", "smtp.example.test", 65536, "outside 1-65535"),
        ("ann", "smtp.example.test", True, "outside 1-65535"),
    ],
)
def test_account_rejects_bad_keys(user: str, host: str, port: int, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        Account(user, host, port)


# --------------------------------------------------------------------------- no downgrade


def test_R_LIB_GUARD_3_record_never_downgrades(store: Path) -> None:
    memory = TLSMemory(store)
    memory.record(ANN, mode=Security.IMPLICIT_TLS, tls_version="TLSv1.3")
    first = memory.expectation(ANN)
    memory.record(ANN, mode=Security.STARTTLS, tls_version="TLSv1.2")
    after = memory.expectation(ANN)
    assert first is not None
    assert after is not None
    assert (after.mode, after.tls_version) == (Security.IMPLICIT_TLS, "TLSv1.3")
    assert after.first_seen == first.first_seen
    assert after.last_seen >= first.last_seen


def test_record_keeps_the_strongest_of_each_field(store: Path) -> None:
    memory = TLSMemory(store)
    memory.record(ANN, mode=Security.STARTTLS, tls_version="TLSv1.2")
    memory.record(ANN, mode=Security.IMPLICIT_TLS, tls_version="TLSv1.2")
    memory.record(ANN, mode=Security.STARTTLS, tls_version="TLSv1.3")
    expectation = memory.expectation(ANN)
    assert expectation is not None
    assert (expectation.mode, expectation.tls_version) == (Security.IMPLICIT_TLS, "TLSv1.3")


def test_R_LIB_GUARD_3_changing_mode_needs_forget(store: Path) -> None:
    memory = TLSMemory(store)
    memory.record(ANN, mode=Security.IMPLICIT_TLS, tls_version="TLSv1.3")
    assert memory.forget(ANN)
    memory.record(ANN, mode=Security.STARTTLS, tls_version="TLSv1.3")
    expectation = memory.expectation(ANN)
    assert expectation is not None
    assert expectation.mode is Security.STARTTLS


@pytest.mark.parametrize(
    ("mode", "version", "match"),
    [
        ("plaintext", "TLSv1.3", "cannot be remembered"),
        ("IMPLICIT_TLS", "TLSv1.3", "cannot be remembered"),
        ("starttls", "SSLv3", "not of the form"),
        ("starttls", "1.3", "not of the form"),
    ],
)
def test_record_rejects_unknown_values(store: Path, mode: str, version: str, match: str) -> None:
    memory = TLSMemory(store)
    with pytest.raises(InvalidArgumentError, match=match):
        memory.record(ANN, mode=mode, tls_version=version)
    assert not store.exists()


def test_expectation_only_describes_verified_sessions() -> None:
    with pytest.raises(InvalidArgumentError, match="only verified"):
        Expectation("starttls", "TLSv1.3", False, "2026-01-01T00:00:00", "2026-01-01T00:00:00")


# --------------------------------------------------------------------------- fail closed


CORRUPT_CONTENTS = {
    "not json": b"{not json",
    "not utf-8": b"\xff\xfe\x00",
    "empty": b"",
    "top level list": b"[]",
    "wrong version": json.dumps({"version": 2, "accounts": []}).encode(),
    "bool version": json.dumps({"version": True, "accounts": []}).encode(),
    "no version": json.dumps({"accounts": []}).encode(),
    "accounts not a list": json.dumps({"version": 1, "accounts": {}}).encode(),
    "entry not an object": document().replace("[]", "[1]").encode(),
    "port is a string": document(entry(port="465")).encode(),
    "port is a bool": document(entry(port=True)).encode(),
    "port out of range": document(entry(port=0)).encode(),
    "missing field": document({k: v for k, v in entry().items() if k != "mode"}).encode(),
    "unknown mode": document(entry(mode="plaintext")).encode(),
    "bad tls version": document(entry(tls_version="SSLv3")).encode(),
    "unverified": document(entry(verified=False)).encode(),
    "bad timestamp": document(entry(first_seen="yesterday")).encode(),
    "empty host": document(entry(host="")).encode(),
    "duplicate account": document(entry(), entry(host="SMTP.example.test")).encode(),
}


@pytest.mark.parametrize("content", CORRUPT_CONTENTS.values(), ids=CORRUPT_CONTENTS.keys())
def test_R_LIB_GUARD_2_corrupt_store_fails_closed(store: Path, content: bytes) -> None:
    store.write_bytes(content)
    memory = TLSMemory(store)
    assert memory.corrupt is not None
    with pytest.warns(SMTPSecWarning, match="failing closed"):
        assert memory.requires_tls(BOB) is True  # even an account never recorded
    with pytest.warns(SMTPSecWarning, match="treated as TLS-required"):
        assert memory.expectation(ANN) is None
    for change in (
        lambda: memory.record(ANN, mode=Security.IMPLICIT_TLS, tls_version="TLSv1.3"),
        lambda: memory.forget(ANN),
        memory.accounts,
    ):
        with pytest.raises(PolicyError) as caught:
            change()
        message = str(caught.value)
        assert str(store) in message
        assert "corrupt" in message
        assert "every account is treated as TLS-required" in message
        assert "delete it to reset" in message
    assert store.read_bytes() == content  # nothing was overwritten


def test_R_LIB_GUARD_2_oversized_store_fails_closed(store: Path) -> None:
    store.write_bytes(b" " * (8 * 1024 * 1024 + 1))
    assert "larger than" in (TLSMemory(store).corrupt or "")
    with pytest.warns(SMTPSecWarning):
        assert TLSMemory(store).requires_tls(ANN)


def test_R_LIB_GUARD_2_unreadable_store_fails_closed(store: Path) -> None:
    store.mkdir()  # a directory where the file should be: cannot be read as a file
    memory = TLSMemory(store)
    assert "cannot read it" in (memory.corrupt or "")
    with pytest.warns(SMTPSecWarning, match=str(store)):
        assert memory.requires_tls(ANN) is True
    with pytest.raises(PolicyError, match="corrupt or unreadable"):
        memory.record(ANN, mode=Security.IMPLICIT_TLS, tls_version="TLSv1.3")


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0, reason="root (or Windows) ignores mode 000"
)
def test_R_LIB_GUARD_2_permission_denied_fails_closed(store: Path) -> None:
    store.write_text(document(entry()))
    store.chmod(0)
    memory = TLSMemory(store)
    with pytest.warns(SMTPSecWarning):
        assert memory.requires_tls(BOB) is True
    assert "cannot read it" in (memory.corrupt or "")


def test_fixing_the_file_recovers(store: Path) -> None:
    store.write_text("garbage")
    memory = TLSMemory(store)
    assert memory.corrupt is not None
    store.unlink()  # the documented reset
    assert memory.corrupt is None
    memory.record(ANN, mode=Security.IMPLICIT_TLS, tls_version="TLSv1.3")
    assert memory.requires_tls(ANN)


def test_unknown_keys_are_tolerated(store: Path) -> None:
    store.write_text(document(entry(note="added by hand")))
    expectation = TLSMemory(store).expectation(ANN)
    assert expectation is not None
    assert expectation.mode is Security.IMPLICIT_TLS


# --------------------------------------------------------------------------- files


def test_atomic_write_leaves_no_temporary_files(store: Path) -> None:
    memory = TLSMemory(store)
    for port in range(1, 6):
        memory.record(
            Account("ann", "h.example.test", port), mode=Security.STARTTLS, tls_version="TLSv1.2"
        )
    memory.forget(Account("ann", "h.example.test", 1))
    assert sorted(p.name for p in store.parent.iterdir()) == [
        "tls-memory.json",
        "tls-memory.json.lock",
    ]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_store_is_private_0600(store: Path) -> None:
    store.write_text(document(entry()))
    store.chmod(0o644)
    TLSMemory(store).record(BOB, mode=Security.STARTTLS, tls_version="TLSv1.3")
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    lock = store.with_name(store.name + ".lock")
    assert stat.S_IMODE(lock.stat().st_mode) & 0o077 == 0


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_missing_directory_is_created_private(tmp_path: Path) -> None:
    path = tmp_path / "config" / "smtpsec" / "tls.json"
    TLSMemory(path).record(ANN, mode=Security.IMPLICIT_TLS, tls_version="TLSv1.3")
    assert TLSMemory(path).requires_tls(ANN)
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0


def test_failed_write_keeps_old_contents_and_cleans_up(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory = TLSMemory(store)
    memory.record(ANN, mode=Security.IMPLICIT_TLS, tls_version="TLSv1.3")
    before = store.read_bytes()

    def disk_full(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    # Fault injection: a full disk cannot be produced portably on loopback.
    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(PolicyError, match=r"cannot write the TLS memory.*No space left"):
        memory.record(BOB, mode=Security.STARTTLS, tls_version="TLSv1.3")
    monkeypatch.undo()
    assert store.read_bytes() == before
    assert sorted(p.name for p in store.parent.iterdir()) == [
        "tls-memory.json",
        "tls-memory.json.lock",
    ]


def test_lock_that_cannot_be_created_is_a_policy_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    memory = TLSMemory(blocker / "tls.json")
    with pytest.raises(PolicyError, match="cannot open the TLS memory lock"):
        memory.record(ANN, mode=Security.IMPLICIT_TLS, tls_version="TLSv1.3")


@pytest.mark.skipif(sys.platform == "win32", reason="uses fcntl.flock")
def test_lock_held_by_someone_else_times_out(store: Path) -> None:
    import fcntl

    lock = store.with_name(store.name + ".lock")
    with lock.open("w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        memory = TLSMemory(store, lock_timeout=0.05)
        with pytest.raises(PolicyError, match="another process has held"):
            memory.record(ANN, mode=Security.IMPLICIT_TLS, tls_version="TLSv1.3")
    assert not store.exists()
    TLSMemory(store).record(ANN, mode=Security.IMPLICIT_TLS, tls_version="TLSv1.3")  # released
    assert TLSMemory(store).requires_tls(ANN)


WRITER = """
import sys
from smtpsec import Security
from smtpsec.memory import Account, TLSMemory

path, prefix = sys.argv[1], sys.argv[2]
memory = TLSMemory(path)
sys.stdin.readline()  # start together with the other writer
for i in range(50):
    account = Account(f"{prefix}{i}", "smtp.example.test", 465)
    memory.record(account, mode=Security.IMPLICIT_TLS, tls_version="TLSv1.3")
"""


def test_concurrent_processes_merge_instead_of_clobbering(store: Path) -> None:
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(store), prefix],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for prefix in ("a", "b")
    ]
    try:
        for writer in writers:
            assert writer.stdin is not None
            writer.stdin.write("go\n")
            writer.stdin.flush()
        for writer in writers:
            _, err = writer.communicate(timeout=60)
            assert writer.returncode == 0, err
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.communicate()
    users = {account.user for account in TLSMemory(store).accounts()}
    assert users == {f"{prefix}{i}" for prefix in "ab" for i in range(50)}
    assert sorted(p.name for p in store.parent.iterdir()) == [
        "tls-memory.json",
        "tls-memory.json.lock",
    ]


def test_must_exist_store_that_vanished_fails_closed(tmp_path: Path) -> None:
    """R-LIB-GUARD-2: an expected store that is missing is treated like a corrupt one."""
    path = tmp_path / "memory.json"
    account = Account("ann", "smtp.example.test", 587)
    TLSMemory(path).record(account, mode=Security.STARTTLS, tls_version="TLSv1.3")
    path.unlink()
    strict = TLSMemory(path, must_exist=True)
    other = Account("bob", "elsewhere.test", 465)
    with pytest.warns(SMTPSecWarning, match="missing"):
        assert strict.requires_tls(other)
    assert strict.corrupt is not None
    with pytest.raises(PolicyError, match="must_exist"):
        strict.record(account, mode=Security.STARTTLS, tls_version="TLSv1.3")
    assert not TLSMemory(path).requires_tls(other)  # without the flag: empty store
