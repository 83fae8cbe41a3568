"""Remember, per account, that a verified TLS session was achieved (and fail closed).

RFC 3207 §6 lets a client record that TLS was used with a peer and act on its
absence later (R-3207-6-2). :class:`TLSMemory` keeps that record in a small,
human-readable JSON file so that the guard can refuse a later, weaker session
(R-LIB-GUARD-1). It never weakens what it holds: a stored ``implicit_tls``
stays ``implicit_tls`` and the highest TLS version seen stays; only
:meth:`TLSMemory.forget` resets an account (R-LIB-GUARD-3).

A store that cannot be read or parsed fails closed: every account is then
treated as TLS-required and changes are refused until a human inspects or
deletes the file (R-LIB-GUARD-2).

Writes are atomic (temporary file + :func:`os.replace`) and serialized across
processes by an exclusive lock on a sidecar ``<path>.lock`` file, re-reading the
store under the lock so that concurrent writers merge instead of clobbering.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final, TypeVar

from .errors import InvalidArgumentError, PolicyError, SMTPSecWarning
from .modes import Security

__all__ = ["STORE_VERSION", "Account", "Expectation", "TLSMemory"]

#: Format version written to and required from the store file.
STORE_VERSION: Final = 1

#: Stronger modes rank higher; implicit TLS has no cleartext phase to attack.
_MODE_RANK: Final[dict[Security, int]] = {Security.STARTTLS: 0, Security.IMPLICIT_TLS: 1}
#: What ssl.SSLSocket.version() reports for TLS ("TLSv1.2", "TLSv1.3").
_TLS_VERSION_RE: Final = re.compile(r"TLSv([0-9])(?:\.([0-9]))?")
#: A store of many thousand accounts is still far below this; more is not ours.
_MAX_STORE_BYTES: Final = 8 * 1024 * 1024
_MAX_PORT: Final = 65535
#: A lock held longer than this belongs to a stuck process: fail, never hang.
_DEFAULT_LOCK_TIMEOUT: Final = 10.0
_LOCK_POLL: Final = 0.01

_T = TypeVar("_T")


def _has_control(text: str) -> bool:
    return any(ord(char) < 0x20 or ord(char) == 0x7F for char in text)


@dataclass(frozen=True, slots=True)
class Account:
    """The key TLS memory is kept under: who logs in where.

    Attributes:
        user: the login name (``""`` for a connection without credentials).
        host: the configured host name or address; lower-cased, trailing dot dropped.
        port: the TCP port.

    Raises:
        InvalidArgumentError: empty host, control characters, or a port outside
            1-65535.
    """

    user: str
    host: str
    port: int

    def __post_init__(self) -> None:
        host = self.host[:-1] if self.host.endswith(".") else self.host
        object.__setattr__(self, "host", host.lower())
        if not host or _has_control(host) or " " in host or _has_control(self.user):
            raise InvalidArgumentError(
                f"account {self.user!r} at {self.host!r} is not usable as a TLS-memory key: "
                "the host must be a non-empty name or address and neither field may "
                "contain control characters"
            )
        if isinstance(self.port, bool) or not 0 < self.port <= _MAX_PORT:
            raise InvalidArgumentError(f"port {self.port!r} is outside 1-65535")


@dataclass(frozen=True, slots=True)
class Expectation:
    """What an account achieved before: the floor for its later sessions.

    Attributes:
        mode: :attr:`Security.IMPLICIT_TLS` or :attr:`Security.STARTTLS` (the
            strongest seen).
        tls_version: the highest TLS version seen, as ``ssl`` spells it ("TLSv1.3").
        verified: always ``True``: only certificate-verified sessions are recorded.
        first_seen: ISO 8601 UTC time of the first recorded session.
        last_seen: ISO 8601 UTC time of the latest recorded session.

    Raises:
        InvalidArgumentError: a field has a value the store never writes.
    """

    mode: Security
    tls_version: str
    verified: bool
    first_seen: str
    last_seen: str

    def __post_init__(self) -> None:
        _check_mode(self.mode)
        _version_rank(self.tls_version)
        if self.verified is not True:
            raise InvalidArgumentError("TLS memory records only verified sessions")
        for stamp in (self.first_seen, self.last_seen):
            try:
                datetime.fromisoformat(stamp)
            except (TypeError, ValueError) as exc:
                raise InvalidArgumentError(f"{stamp!r} is not an ISO 8601 time") from exc


def _check_mode(mode: object) -> Security:
    """A mode TLS memory can hold: a :class:`Security` member or its stored value."""
    if isinstance(mode, str):
        mode = next((m for m in _MODE_RANK if m.value == mode), mode)
    if not isinstance(mode, Security) or mode not in _MODE_RANK:
        raise InvalidArgumentError(
            f"TLS mode {mode!r} cannot be remembered; use Security.IMPLICIT_TLS or "
            "Security.STARTTLS"
        )
    return mode


def _version_rank(version: str) -> tuple[int, int]:
    match = _TLS_VERSION_RE.fullmatch(version) if isinstance(version, str) else None
    if match is None:
        raise InvalidArgumentError(
            f"TLS version {version!r} is not of the form 'TLSv1.3' "
            "(what ssl.SSLSocket.version() reports)"
        )
    return int(match[1]), int(match[2] or 0)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class _CorruptStoreError(Exception):
    """Internal: the store exists but cannot be trusted (the text says why)."""


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


class TLSMemory:
    """A per-account store of "verified TLS was achieved here", kept in one JSON file.

    A missing file is an empty store. A file that cannot be read or parsed makes
    the memory fail closed: :meth:`requires_tls` answers ``True`` for every
    account, reads warn with :class:`~smtpsec.errors.SMTPSecWarning`, and
    :meth:`record`, :meth:`forget` and :meth:`accounts` raise
    :class:`~smtpsec.errors.PolicyError` until the file is fixed or deleted.

    The file is re-read on every call, so several processes can share it;
    locking uses ``fcntl.flock`` on POSIX and ``msvcrt.locking`` on Windows.

    Args:
        path: the store file; its directory is created (mode 0700) on first write.
        lock_timeout: seconds to wait for another process's lock before raising.
        must_exist: the store was set up before, so a *missing* file means it was
            deleted or moved (perhaps to wipe the record of TLS): fail closed as
            for a corrupt file (R-LIB-GUARD-2) instead of starting empty.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lock_timeout: float = _DEFAULT_LOCK_TIMEOUT,
        must_exist: bool = False,
    ) -> None:
        self._path = Path(os.fspath(path))
        self._lock_timeout = lock_timeout
        self._must_exist = must_exist

    def __repr__(self) -> str:
        return f"TLSMemory({str(self._path)!r})"

    @property
    def path(self) -> Path:
        """The store file."""
        return self._path

    @property
    def corrupt(self) -> str | None:
        """Why the store cannot be trusted right now, or ``None`` when it is usable."""
        try:
            self._read()
        except _CorruptStoreError as exc:
            return str(exc)
        return None

    # ------------------------------------------------------------------ queries

    def expectation(self, account: Account) -> Expectation | None:
        """What *account* achieved before, or ``None``.

        ``None`` also comes back when the store is corrupt (no specific record can
        be read), so always ask :meth:`requires_tls` for the fail-closed answer.
        """
        entries = self._load_for_query()
        return None if entries is None else entries.get(account)

    def requires_tls(self, account: Account) -> bool:
        """``True`` when *account* must get verified TLS: recorded, or store corrupt."""
        entries = self._load_for_query()
        return entries is None or account in entries

    def accounts(self) -> list[Account]:
        """Every remembered account, sorted by host, port and user.

        Raises:
            PolicyError: the store is corrupt or unreadable.
        """
        entries = self._load_for_change()
        return sorted(entries, key=lambda acc: (acc.host, acc.port, acc.user))

    # ------------------------------------------------------------------ changes

    def record(self, account: Account, *, mode: Security, tls_version: str) -> None:
        """Remember that *account* just completed a certificate-verified TLS session.

        Never weakens a stored expectation: the stronger mode and the higher TLS
        version are kept (use :meth:`forget` to change an account's mode).

        Args:
            account: the account that connected.
            mode: :attr:`Security.IMPLICIT_TLS` or :attr:`Security.STARTTLS`.
            tls_version: the negotiated version, e.g. ``"TLSv1.3"``.

        Raises:
            InvalidArgumentError: *mode* or *tls_version* is not recognised.
            PolicyError: the store is corrupt, or cannot be locked or written.
        """
        checked_mode = _check_mode(mode)
        rank = _version_rank(tls_version)
        now = _now()

        def change(entries: dict[Account, Expectation]) -> bool:
            old = entries.get(account)
            if old is None:
                entries[account] = Expectation(checked_mode, tls_version, True, now, now)
                return True
            keep_mode = _MODE_RANK[old.mode] >= _MODE_RANK[checked_mode]
            keep_version = _version_rank(old.tls_version) >= rank
            entries[account] = Expectation(
                mode=old.mode if keep_mode else checked_mode,
                tls_version=old.tls_version if keep_version else tls_version,
                verified=True,
                first_seen=old.first_seen,
                last_seen=now,
            )
            return True

        self._update(change)

    def forget(self, account: Account) -> bool:
        """Drop what is remembered about *account* (after a deliberate server change).

        Returns:
            ``True`` if something was forgotten, ``False`` if nothing was stored.

        Raises:
            PolicyError: the store is corrupt, or cannot be locked or written.
        """
        return self._update(lambda entries: entries.pop(account, None) is not None)

    # ------------------------------------------------------------------ file I/O

    def _corrupt_text(self, reason: str) -> str:
        return (
            f"the TLS memory at {self._path} is corrupt or unreadable ({reason}); every "
            "account is treated as TLS-required until it is fixed. Inspect the file, or "
            "delete it to reset what smtpsec remembers"
        )

    def _load_for_query(self) -> dict[Account, Expectation] | None:
        try:
            return self._read()
        except _CorruptStoreError as exc:
            warnings.warn(
                f"{self._corrupt_text(str(exc))} (failing closed)", SMTPSecWarning, stacklevel=3
            )
            return None

    def _load_for_change(self) -> dict[Account, Expectation]:
        try:
            return self._read()
        except _CorruptStoreError as exc:
            raise PolicyError(self._corrupt_text(str(exc))) from exc

    def _read(self) -> dict[Account, Expectation]:
        try:
            with self._path.open("rb") as stream:
                data = stream.read(_MAX_STORE_BYTES + 1)
        except FileNotFoundError:
            if self._must_exist:
                raise _CorruptStoreError(
                    "the file is missing although must_exist=True (deleted or moved?); "
                    "restore it, or create a new store with TLSMemory(path) if that was "
                    "intended"
                ) from None
            return {}
        except OSError as exc:
            raise _CorruptStoreError(f"cannot read it: {exc.strerror or exc}") from exc
        if len(data) > _MAX_STORE_BYTES:
            raise _CorruptStoreError(f"larger than {_MAX_STORE_BYTES} bytes")
        try:
            document = json.loads(data)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise _CorruptStoreError(f"not valid JSON: {exc}") from exc
        return _parse(document)

    def _update(self, change: Callable[[dict[Account, Expectation]], _T]) -> _T:
        with self._locked():
            # Re-read under the lock: another process may have written since.
            entries = self._load_for_change()
            result = change(entries)
            if result:
                self._write(entries)
        return result

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock_path = self._path.with_name(self._path.name + ".lock")
        try:
            self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise PolicyError(
                f"cannot open the TLS memory lock {lock_path} ({exc.strerror or exc}); "
                "check that the directory exists and is writable"
            ) from exc
        try:
            deadline = time.monotonic() + self._lock_timeout
            while not _try_lock(fd):
                if time.monotonic() >= deadline:
                    raise PolicyError(
                        f"another process has held the TLS memory lock {lock_path} for "
                        f"over {self._lock_timeout:g} s; stop it or try again"
                    )
                time.sleep(_LOCK_POLL)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _write(self, entries: dict[Account, Expectation]) -> None:
        text = json.dumps(_serialize(entries), indent=2, ensure_ascii=False) + "\n"
        directory = self._path.parent
        try:
            # mkstemp creates the file 0600: other users never see the store.
            fd, temp_name = tempfile.mkstemp(
                prefix=f".{self._path.name}.", suffix=".tmp", dir=directory
            )
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as stream:
                    stream.write(text)
                    stream.flush()
                    os.fsync(stream.fileno())
                os.replace(temp_name, self._path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp_name)
                raise
        except OSError as exc:
            raise PolicyError(
                f"cannot write the TLS memory at {self._path} ({exc.strerror or exc}); "
                "the previous contents are unchanged. Check free space and permissions"
            ) from exc
        # Make the rename itself durable; directories cannot be opened on Windows.
        with contextlib.suppress(OSError):
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


# --------------------------------------------------------------------------- format


def _serialize(entries: dict[Account, Expectation]) -> dict[str, Any]:
    ordered = sorted(entries.items(), key=lambda item: (item[0].host, item[0].port, item[0].user))
    return {
        "version": STORE_VERSION,
        "about": "smtpsec TLS memory: accounts that achieved verified TLS (RFC 8314).",
        "accounts": [
            {
                "user": account.user,
                "host": account.host,
                "port": account.port,
                "mode": expectation.mode.value,
                "tls_version": expectation.tls_version,
                "verified": expectation.verified,
                "first_seen": expectation.first_seen,
                "last_seen": expectation.last_seen,
            }
            for account, expectation in ordered
        ],
    }


_ENTRY_TYPES: Final[dict[str, type]] = {
    "user": str,
    "host": str,
    "port": int,
    "mode": str,
    "tls_version": str,
    "verified": bool,
    "first_seen": str,
    "last_seen": str,
}


def _parse(document: object) -> dict[Account, Expectation]:
    if not isinstance(document, dict):
        raise _CorruptStoreError("the top level is not a JSON object")
    version = document.get("version")
    if type(version) is not int or version != STORE_VERSION:
        raise _CorruptStoreError(f"version {version!r} is not {STORE_VERSION}")
    rows = document.get("accounts")
    if not isinstance(rows, list):
        raise _CorruptStoreError("'accounts' is not a list")
    entries: dict[Account, Expectation] = {}
    for index, row in enumerate(rows):
        # type() rather than isinstance(): JSON true must not pass as a port number.
        if not isinstance(row, dict) or any(
            type(row.get(key)) is not kind for key, kind in _ENTRY_TYPES.items()
        ):
            raise _CorruptStoreError(f"account entry {index} is missing fields or has wrong types")
        try:
            account = Account(row["user"], row["host"], row["port"])
            expectation = Expectation(
                _check_mode(row["mode"]),
                row["tls_version"],
                row["verified"],
                row["first_seen"],
                row["last_seen"],
            )
        except InvalidArgumentError as exc:
            raise _CorruptStoreError(f"account entry {index}: {exc}") from exc
        if account in entries:
            raise _CorruptStoreError(f"account entry {index} repeats an earlier account")
        entries[account] = expectation
    return entries
