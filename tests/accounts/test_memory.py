"""Per-account TLS memory: round trips, fail-closed corruption, locking, atomic writes,
and the migration of format 1 (per port) files to format 2 (per account).

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
from smtpsec.errors import InvalidArgumentError, PolicyError, SMTPSecWarning, TLSMemoryError
from smtpsec.memory import STORE_VERSION, Account, Expectation, TLSMemory

ANN = Account("ann", "smtp.example.test")
BOB = Account("bob", "smtp.example.test")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "tls-memory.json"


def entry(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "user": "ann",
        "host": "smtp.example.test",
        "ports": [465],
        "mode": "implicit_tls",
        "tls_version": "TLSv1.3",
        "verified": True,
        "first_seen": "2026-01-01T00:00:00+00:00",
        "last_seen": "2026-01-02T00:00:00+00:00",
    }
    row.update(changes)
    return row


def document(*rows: dict[str, object], version: object = STORE_VERSION) -> str:
    return json.dumps({"version": version, "accounts": list(rows)})


def v1_entry(**changes: object) -> dict[str, object]:
    """A row as format 1 wrote it: one per (user, host, port)."""
    row = {k: v for k, v in entry().items() if k != "ports"}
    row["port"] = 465
    row.update(changes)
    return row


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
    other = Account("zed", "a.example.test")
    for account in (BOB, ANN, other):
        memory.record(account, mode=Security.IMPLICIT_TLS, tls_version="TLSv1.2")
    assert memory.accounts() == [other, ANN, BOB]


def test_store_is_human_readable_versioned_json(store: Path) -> None:
    TLSMemory(store).record(ANN, mode=Security.IMPLICIT_TLS, tls_version="TLSv1.3")
    text = store.read_text(encoding="utf-8")
    assert text.endswith("\n")
    assert '\n  "version": 2,' in text
    data = json.loads(text)
    assert data["accounts"][0]["host"] == "smtp.example.test"
    assert data["accounts"][0]["ports"] == []
    assert "port" not in data["accounts"][0]


def test_record_keeps_the_ports_seen(store: Path) -> None:
    """The key has no port; the ports verified sessions used are kept for information."""
    memory = TLSMemory(store)
    for port in (587, 465, 587):
        memory.record(ANN, mode=Security.STARTTLS, tls_version="TLSv1.3", port=port)
    expectation = memory.expectation(ANN)
    assert expectation is not None
    assert expectation.ports == (465, 587)
    assert json.loads(store.read_text())["accounts"][0]["ports"] == [465, 587]


def test_R_8314_5_2_one_record_covers_every_port_of_the_account(store: Path) -> None:
    memory = TLSMemory(store)
    memory.record(ANN, mode=Security.STARTTLS, tls_version="TLSv1.3", port=587)
    assert memory.requires_tls(Account("ann", "smtp.example.test"))
    assert not memory.requires_tls(Account("ann", "other.example.test"))
    assert not memory.requires_tls(Account("", "smtp.example.test"))


def test_account_key_is_normalized() -> None:
    assert Account("ann", "SMTP.Example.TEST.") == ANN
    assert Account("Ann", "smtp.example.test") != ANN  # user names may be case-sensitive
    assert str(ANN) == "ann at smtp.example.test"
    assert str(Account("", "h.example.test")) == "(no login) at h.example.test"


@pytest.mark.parametrize(
    ("user", "host", "match"),
    [
        ("ann", "", "non-empty"),
        ("ann", "bad host", "non-empty"),
        ("ann\r\n", "smtp.example.test", "control characters"),
    ],
)
def test_account_rejects_bad_keys(user: str, host: str, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        Account(user, host)


def test_account_port_is_deprecated_and_ignored() -> None:
    """Code written for format 1 keeps working: the port no longer splits an account."""
    with pytest.warns(DeprecationWarning, match="drop the port") as caught:
        assert Account("ann", "smtp.example.test", 587) == ANN
    assert caught[0].filename == __file__  # the warning points at the caller's line
    with pytest.warns(DeprecationWarning, match="per account"):
        assert hash(Account("ann", "smtp.example.test", port=465)) == hash(ANN)


@pytest.mark.parametrize("port", [0, 65536, True, "465"])
def test_account_still_checks_a_deprecated_port(port: object) -> None:
    with pytest.raises(InvalidArgumentError, match="outside 1-65535"):
        Account("ann", "smtp.example.test", port)  # type: ignore[arg-type]


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


@pytest.mark.parametrize("ports", [(0,), (True,), [465]])
def test_expectation_rejects_bad_ports(ports: object) -> None:
    with pytest.raises(InvalidArgumentError):
        Expectation(
            Security.STARTTLS,
            "TLSv1.3",
            True,
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00",
            ports,  # type: ignore[arg-type]
        )


def test_record_rejects_a_bad_port(store: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="outside 1-65535"):
        TLSMemory(store).record(ANN, mode=Security.STARTTLS, tls_version="TLSv1.3", port=0)
    assert not store.exists()


# --------------------------------------------------------------------------- fail closed


CORRUPT_CONTENTS = {
    "not json": b"{not json",
    "not utf-8": b"\xff\xfe\x00",
    "empty": b"",
    "top level list": b"[]",
    "version never written": document(version=0).encode(),
    "bool version": document(version=True).encode(),
    "string version": document(version="2").encode(),
    "no version": json.dumps({"accounts": []}).encode(),
    "accounts not a list": json.dumps({"version": 2, "accounts": {}}).encode(),
    "entry not an object": document().replace("[]", "[1]").encode(),
    "ports not a list": document(entry(ports=465)).encode(),
    "port is a string": document(entry(ports=["465"])).encode(),
    "port is a bool": document(entry(ports=[True])).encode(),
    "port out of range": document(entry(ports=[0])).encode(),
    "format 1 row in a format 2 file": document(v1_entry()).encode(),
    "format 2 row in a format 1 file": document(entry(), version=1).encode(),
    "format 1 port is a bool": document(v1_entry(port=True), version=1).encode(),
    "format 1 repeats a port": document(
        v1_entry(), v1_entry(host="SMTP.example.test"), version=1
    ).encode(),
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
        with pytest.raises(TLSMemoryError) as caught:
            change()
        assert isinstance(caught.value, PolicyError)  # what callers caught before
        assert caught.value.path == str(store)
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
    for user in "abcde":
        memory.record(
            Account(user, "h.example.test"), mode=Security.STARTTLS, tls_version="TLSv1.2"
        )
    memory.forget(Account("a", "h.example.test"))
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
    account = Account(f"{prefix}{i}", "smtp.example.test")
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
    account = Account("ann", "smtp.example.test")
    TLSMemory(path).record(account, mode=Security.STARTTLS, tls_version="TLSv1.3")
    path.unlink()
    strict = TLSMemory(path, must_exist=True)
    other = Account("bob", "elsewhere.test")
    with pytest.warns(SMTPSecWarning, match="missing"):
        assert strict.requires_tls(other)
    assert strict.corrupt is not None
    with pytest.raises(PolicyError, match="must_exist"):
        strict.record(account, mode=Security.STARTTLS, tls_version="TLSv1.3")
    assert not TLSMemory(path).requires_tls(other)  # without the flag: empty store


# --------------------------------------------------------------------------- migration


FORMAT_1 = document(
    v1_entry(port=587, mode="starttls", tls_version="TLSv1.3", last_seen="2026-03-01T00:00:00"),
    v1_entry(
        port=465, mode="implicit_tls", tls_version="TLSv1.2", first_seen="2025-06-01T12:00:00+00:00"
    ),
    v1_entry(user="bob", port=587, mode="starttls"),
    version=1,
)


def _private_files(store: Path) -> list[str]:
    return sorted(p.name for p in store.parent.iterdir())


def test_format_1_is_read_per_account_and_rewritten_as_format_2(store: Path) -> None:
    """A per-port file from before works at once: one account, the strongest of each field."""
    store.write_text(FORMAT_1)
    memory = TLSMemory(store)
    assert memory.corrupt is None
    expectation = memory.expectation(ANN)
    assert expectation == Expectation(
        mode=Security.IMPLICIT_TLS,  # from the 465 row
        tls_version="TLSv1.3",  # from the 587 row
        verified=True,
        first_seen="2025-06-01T12:00:00+00:00",  # the earliest of both rows
        last_seen="2026-03-01T00:00:00",  # the latest (no offset: read as UTC)
        ports=(465, 587),
    )
    assert memory.requires_tls(BOB)
    # The first read rewrote the file in format 2, atomically and privately.
    data = json.loads(store.read_text(encoding="utf-8"))
    assert data["version"] == STORE_VERSION == 2
    assert [(row["user"], row["ports"]) for row in data["accounts"]] == [
        ("ann", [465, 587]),
        ("bob", [587]),
    ]
    assert _private_files(store) == ["tls-memory.json", "tls-memory.json.lock"]
    if sys.platform != "win32":
        assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert TLSMemory(store).expectation(ANN) == expectation  # nothing lost in the rewrite


@pytest.mark.parametrize(
    "change",
    [
        lambda memory: memory.record(BOB, mode=Security.IMPLICIT_TLS, tls_version="TLSv1.3"),
        lambda memory: memory.forget(Account("nobody", "smtp.example.test")),
        lambda memory: memory.accounts(),
    ],
    ids=["record", "forget-nothing", "accounts"],
)
def test_format_1_is_migrated_by_any_use(store: Path, change: object) -> None:
    store.write_text(FORMAT_1)
    change(TLSMemory(store))  # type: ignore[operator]
    assert json.loads(store.read_text())["version"] == 2
    assert TLSMemory(store).accounts() == [ANN, BOB]


@pytest.mark.skipif(sys.platform == "win32", reason="uses fcntl.flock")
def test_migration_never_waits_for_a_busy_lock(store: Path) -> None:
    """A query answers from the old file at once; the rewrite waits for a free lock."""
    import fcntl
    import time

    store.write_text(FORMAT_1)
    lock = store.with_name(store.name + ".lock")
    memory = TLSMemory(store, lock_timeout=30)
    with lock.open("w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        started = time.monotonic()
        assert memory.requires_tls(ANN)
        assert time.monotonic() - started < 5
        assert json.loads(store.read_text())["version"] == 1  # left for later
    assert memory.requires_tls(ANN)
    assert json.loads(store.read_text())["version"] == 2


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0, reason="root (or Windows) ignores mode 0500"
)
def test_migration_in_a_read_only_directory_still_answers(store: Path) -> None:
    """The query must not fail because the rewrite cannot happen; the change says why."""
    store.write_text(FORMAT_1)
    store.with_name(store.name + ".lock").touch()
    store.parent.chmod(0o500)
    try:
        memory = TLSMemory(store)
        assert memory.requires_tls(ANN)
        with pytest.raises(TLSMemoryError, match="cannot write the TLS memory"):
            memory.record(ANN, mode=Security.IMPLICIT_TLS, tls_version="TLSv1.3")
    finally:
        store.parent.chmod(0o700)
    assert json.loads(store.read_text())["version"] == 1


@pytest.mark.parametrize("version", [3, 99])
def test_R_LIB_GUARD_2_newer_format_fails_closed_with_what_to_do(store: Path, version: int) -> None:
    """A file from a newer smtpsec is never guessed at: TLS required, changes refused."""
    content = document(entry(), version=version)
    store.write_text(content)
    memory = TLSMemory(store)
    with pytest.warns(SMTPSecWarning, match="newer smtpsec"):
        assert memory.requires_tls(Account("someone", "never.example.test"))
    with pytest.raises(TLSMemoryError) as caught:
        memory.record(ANN, mode=Security.IMPLICIT_TLS, tls_version="TLSv1.3")
    message = str(caught.value)
    assert f"format version {version}" in message
    assert "upgrade smtpsec" in message
    assert "every account is treated as TLS-required" in message
    assert caught.value.path == str(store)
    assert store.read_text() == content  # never rewritten, never downgraded


def test_migration_that_cannot_write_still_answers(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection (a full disk cannot be made portably): the query still answers."""
    store.write_text(FORMAT_1)

    def disk_full(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    memory = TLSMemory(store)
    assert memory.requires_tls(ANN)
    assert [a.user for a in memory.accounts()] == ["ann", "bob"]
    with pytest.raises(TLSMemoryError, match="No space left"):
        memory.record(ANN, mode=Security.IMPLICIT_TLS, tls_version="TLSv1.3")
    monkeypatch.undo()
    assert json.loads(store.read_text())["version"] == 1
    assert _private_files(store) == ["tls-memory.json", "tls-memory.json.lock"]


def test_home_directory_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USERPROFILE", str(tmp_path))  # Windows
    memory = TLSMemory("~/app/tls.json")
    assert memory.path == tmp_path / "app" / "tls.json"
    memory.record(ANN, mode=Security.IMPLICIT_TLS, tls_version="TLSv1.3")
    assert (tmp_path / "app" / "tls.json").exists()
