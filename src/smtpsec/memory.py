"""Remember, per account, that a verified TLS session was achieved (and fail closed).

RFC 3207 §6 lets a client record that TLS was used with a peer and act on its
absence later (R-3207-6-2), and RFC 8314 §5.2 sets the minimum confidentiality
level per *account*. :class:`TLSMemory` keeps that record in a small,
human-readable JSON file, keyed by the account (who logs in where: the user at
the host, on every port), so that the guard can refuse a later, weaker session
on any port of that account (R-LIB-GUARD-1): an attacker cannot get around the
record by steering the client to another port of the same server. It never
weakens what it holds: a stored ``implicit_tls`` stays ``implicit_tls`` and the
highest TLS version seen stays; only :meth:`TLSMemory.forget` resets an account
(R-LIB-GUARD-3).

A store that cannot be read or parsed, or that an unknown (newer) smtpsec
wrote, fails closed: every account is then treated as TLS-required and changes
raise :class:`~smtpsec.errors.TLSMemoryError` until a human inspects or
deletes the file (R-LIB-GUARD-2).

Writes are atomic (temporary file + :func:`os.replace`) and serialized across
processes by an exclusive lock on a sidecar ``<path>.lock`` file, re-reading the
store under the lock so that concurrent writers merge instead of clobbering.

On-disk formats: version 1 kept one entry per (user, host, port); version 2,
written now, keeps one entry per (user, host) with the ports seen. A version 1
file is read as version 2 (entries of one account merged, keeping the strongest
of each field) and rewritten in the new format the first time it is read or
changed, under the same lock and by the same atomic replace.
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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final, TypeVar

from .errors import InvalidArgumentError, SMTPSecWarning, TLSMemoryError
from .modes import Security

__all__ = ["STORE_VERSION", "Account", "Expectation", "TLSMemory"]

#: Format version written to the store file (version 1 files are migrated).
STORE_VERSION: Final = 2
#: Older formats this version reads and rewrites as :data:`STORE_VERSION`.
_MIGRATED_VERSIONS: Final = frozenset({1})

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


def _check_port(port: object) -> int:
    # type() rather than isinstance(): True must not pass as port 1.
    if type(port) is not int or not 0 < port <= _MAX_PORT:
        raise InvalidArgumentError(f"port {port!r} is outside 1-65535")
    return port


@dataclass(frozen=True, slots=True, init=False)
class Account:
    """The key TLS memory is kept under: who logs in where, on every port.

    RFC 8314 §5.2 speaks of the minimum confidentiality level of an *account*,
    so the port is not part of the key: verified TLS seen on one port of
    ``host`` is expected on all of them.

    Args:
        user: the login name (``""`` for a connection without credentials).
        host: the configured host name or address.
        port: deprecated and ignored (the memory was kept per port before
            store format 2); passing it warns with :class:`DeprecationWarning`.

    Attributes:
        user: the login name.
        host: the host, lower-cased, trailing dot dropped.

    Raises:
        InvalidArgumentError: empty host, or control characters in either field.
    """

    user: str
    host: str

    def __init__(self, user: str, host: str, port: int | None = None) -> None:
        name = host[:-1] if host.endswith(".") else host
        if not name or _has_control(name) or " " in name or _has_control(user):
            raise InvalidArgumentError(
                f"account {user!r} at {host!r} is not usable as a TLS-memory key: "
                "the host must be a non-empty name or address and neither field may "
                "contain control characters"
            )
        object.__setattr__(self, "user", user)
        object.__setattr__(self, "host", name.lower())
        if port is not None:
            _check_port(port)
            warnings.warn(
                f"Account(..., port={port}) is ignored: TLS memory is kept per account "
                "(user at host) for every port; drop the port argument",
                DeprecationWarning,
                stacklevel=2,
            )

    def __str__(self) -> str:
        return f"{self.user or '(no login)'} at {self.host}"


@dataclass(frozen=True, slots=True)
class Expectation:
    """What an account achieved before: the floor for its later sessions.

    Attributes:
        mode: :attr:`Security.IMPLICIT_TLS` or :attr:`Security.STARTTLS` (the
            strongest seen on any port).
        tls_version: the highest TLS version seen, as ``ssl`` spells it ("TLSv1.3").
        verified: always ``True``: only certificate-verified sessions are recorded.
        first_seen: ISO 8601 UTC time of the first recorded session.
        last_seen: ISO 8601 UTC time of the latest recorded session.
        ports: the ports verified sessions were seen on, ascending (for
            information: the expectation holds on every port).

    Raises:
        InvalidArgumentError: a field has a value the store never writes.
    """

    mode: Security
    tls_version: str
    verified: bool
    first_seen: str
    last_seen: str
    ports: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _check_mode(self.mode)
        _version_rank(self.tls_version)
        if self.verified is not True:
            raise InvalidArgumentError("TLS memory records only verified sessions")
        for stamp in (self.first_seen, self.last_seen):
            _instant(stamp)
        if not isinstance(self.ports, tuple):
            raise InvalidArgumentError(f"ports={self.ports!r}: give a tuple of port numbers")
        ports = tuple(sorted({_check_port(port) for port in self.ports}))
        object.__setattr__(self, "ports", ports)

    def merged(self, other: Expectation) -> Expectation:
        """The stronger of each field of two expectations for the same account."""
        keep_mode = _MODE_RANK[self.mode] >= _MODE_RANK[other.mode]
        keep_version = _version_rank(self.tls_version) >= _version_rank(other.tls_version)
        return Expectation(
            mode=self.mode if keep_mode else other.mode,
            tls_version=self.tls_version if keep_version else other.tls_version,
            verified=True,
            first_seen=min(self.first_seen, other.first_seen, key=_instant),
            last_seen=max(self.last_seen, other.last_seen, key=_instant),
            ports=self.ports + other.ports,
        )


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


def _instant(stamp: str) -> datetime:
    """An ISO 8601 time as an aware datetime (a hand-written one without offset is UTC)."""
    try:
        moment = datetime.fromisoformat(stamp)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"{stamp!r} is not an ISO 8601 time") from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class _CorruptStoreError(Exception):
    """Internal: the store exists but cannot be trusted (the text says why and what to do)."""


@dataclass(frozen=True, slots=True)
class _Loaded:
    """A parsed store and the format version it was found in."""

    entries: dict[Account, Expectation]
    version: int


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

    An account is a user at a host (:class:`Account`); what it achieved on one
    port is expected on every port of that host.

    A missing file is an empty store. A file that cannot be read or parsed, or
    whose format version this smtpsec does not know, makes the memory fail
    closed: :meth:`requires_tls` answers ``True`` for every account, reads warn
    with :class:`~smtpsec.errors.SMTPSecWarning`, and :meth:`record`,
    :meth:`forget` and :meth:`accounts` raise
    :class:`~smtpsec.errors.TLSMemoryError` until the file is fixed or deleted.
    A file in an older format is migrated: read as the current one and
    rewritten (atomically, under the lock) on first use.

    The file is re-read on every call, so several processes can share it;
    locking uses ``fcntl.flock`` on POSIX and ``msvcrt.locking`` on Windows.
    Every call does file I/O; :mod:`smtpsec.aio` runs them in a thread.

    Args:
        path: the store file (``~`` is expanded); its directory is created
            (mode 0700) on first write.
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
        # "~/.config/app/tls.json" means the home directory, never a folder named "~".
        self._path = Path(os.fspath(path)).expanduser()
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
        """What *account* achieved before (on any port), or ``None``.

        ``None`` also comes back when the store is corrupt (no specific record can
        be read), so always ask :meth:`requires_tls` for the fail-closed answer.
        """
        entries = self._load_for_query()
        return None if entries is None else entries.get(account)

    def requires_tls(self, account: Account) -> bool:
        """``True`` when *account* must get verified TLS on every port: recorded, or
        store corrupt."""
        entries = self._load_for_query()
        return entries is None or account in entries

    def accounts(self) -> list[Account]:
        """Every remembered account, sorted by host and user.

        Raises:
            TLSMemoryError: the store is corrupt, unreadable or of an unknown format.
        """
        loaded = self._load_for_change()
        if loaded.version != STORE_VERSION:
            self._migrate_if_free()
        return sorted(loaded.entries, key=_account_order)

    # ------------------------------------------------------------------ changes

    def record(
        self, account: Account, *, mode: Security, tls_version: str, port: int | None = None
    ) -> None:
        """Remember that *account* just completed a certificate-verified TLS session.

        Never weakens a stored expectation: the stronger mode and the higher TLS
        version are kept (use :meth:`forget` to change an account's mode).

        Args:
            account: the account that connected.
            mode: :attr:`Security.IMPLICIT_TLS` or :attr:`Security.STARTTLS`.
            tls_version: the negotiated version, e.g. ``"TLSv1.3"``.
            port: the port the session used, kept in :attr:`Expectation.ports`
                for information.

        Raises:
            InvalidArgumentError: *mode*, *tls_version* or *port* is not recognised.
            TLSMemoryError: the store is corrupt, or cannot be locked or written.
        """
        now = _now()
        fresh = Expectation(
            _check_mode(mode), tls_version, True, now, now, () if port is None else (port,)
        )

        def change(entries: dict[Account, Expectation]) -> bool:
            old = entries.get(account)
            entries[account] = fresh if old is None else old.merged(fresh)
            return True

        self._update(change)

    def forget(self, account: Account) -> bool:
        """Drop what is remembered about *account*, on every port (after a deliberate
        server change).

        Returns:
            ``True`` if something was forgotten, ``False`` if nothing was stored.

        Raises:
            TLSMemoryError: the store is corrupt, or cannot be locked or written.
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
            loaded = self._read()
        except _CorruptStoreError as exc:
            warnings.warn(
                f"{self._corrupt_text(str(exc))} (failing closed)", SMTPSecWarning, stacklevel=3
            )
            return None
        if loaded.version != STORE_VERSION:
            self._migrate_if_free()
        return loaded.entries

    def _load_for_change(self) -> _Loaded:
        try:
            return self._read()
        except _CorruptStoreError as exc:
            raise TLSMemoryError(self._corrupt_text(str(exc)), path=str(self._path)) from exc

    def _read(self) -> _Loaded:
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
            return _Loaded({}, STORE_VERSION)
        except OSError as exc:
            raise _CorruptStoreError(f"cannot read it: {exc.strerror or exc}") from exc
        if len(data) > _MAX_STORE_BYTES:
            raise _CorruptStoreError(f"larger than {_MAX_STORE_BYTES} bytes")
        try:
            document = json.loads(data)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise _CorruptStoreError(f"not valid JSON: {exc}") from exc
        return _parse(document)

    def _migrate_if_free(self) -> None:
        """Rewrite an older-format file now, if nobody else holds the lock.

        A query must not wait for, or fail because of, a migration: the old file
        was read correctly, and the next change writes the new format anyway.
        """
        with contextlib.suppress(TLSMemoryError):
            self._update(lambda entries: False, lock_timeout=0.0)

    def _update(
        self,
        change: Callable[[dict[Account, Expectation]], _T],
        *,
        lock_timeout: float | None = None,
    ) -> _T:
        with self._locked(self._lock_timeout if lock_timeout is None else lock_timeout):
            # Re-read under the lock: another process may have written since.
            loaded = self._load_for_change()
            result = change(loaded.entries)
            if result or loaded.version != STORE_VERSION:
                self._write(loaded.entries)
        return result

    @contextlib.contextmanager
    def _locked(self, timeout: float) -> Iterator[None]:
        lock_path = self._path.with_name(self._path.name + ".lock")
        try:
            self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise TLSMemoryError(
                f"cannot open the TLS memory lock {lock_path} ({exc.strerror or exc}); "
                "check that the directory exists and is writable",
                path=str(self._path),
            ) from exc
        try:
            deadline = time.monotonic() + timeout
            while not _try_lock(fd):
                if time.monotonic() >= deadline:
                    raise TLSMemoryError(
                        f"another process has held the TLS memory lock {lock_path} for "
                        f"over {timeout:g} s; stop it or try again",
                        path=str(self._path),
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
            raise TLSMemoryError(
                f"cannot write the TLS memory at {self._path} ({exc.strerror or exc}); "
                "the previous contents are unchanged. Check free space and permissions",
                path=str(self._path),
            ) from exc
        # Make the rename itself durable; directories cannot be opened on Windows.
        with contextlib.suppress(OSError):
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


# --------------------------------------------------------------------------- format


def _account_order(account: Account) -> tuple[str, str]:
    return account.host, account.user


def _serialize(entries: dict[Account, Expectation]) -> dict[str, Any]:
    ordered = sorted(entries.items(), key=lambda item: _account_order(item[0]))
    return {
        "version": STORE_VERSION,
        "about": (
            "smtpsec TLS memory: accounts (user at host, every port) that achieved "
            "verified TLS (RFC 8314)."
        ),
        "accounts": [
            {
                "user": account.user,
                "host": account.host,
                "mode": expectation.mode.value,
                "tls_version": expectation.tls_version,
                "verified": expectation.verified,
                "first_seen": expectation.first_seen,
                "last_seen": expectation.last_seen,
                "ports": list(expectation.ports),
            }
            for account, expectation in ordered
        ],
    }


#: Fields of an entry, by format version; type() is compared, not isinstance(),
#: so JSON ``true`` never passes as a port number.
_COMMON_TYPES: Final[dict[str, type]] = {
    "user": str,
    "host": str,
    "mode": str,
    "tls_version": str,
    "verified": bool,
    "first_seen": str,
    "last_seen": str,
}
_ENTRY_TYPES: Final[dict[int, dict[str, type]]] = {
    1: {**_COMMON_TYPES, "port": int},
    2: {**_COMMON_TYPES, "ports": list},
}


def _version_of(document: dict[str, Any]) -> int:
    version = document.get("version")
    if type(version) is not int:
        raise _CorruptStoreError(f"its format version {version!r} is not a number")
    if version > STORE_VERSION:
        raise _CorruptStoreError(
            f"it is in format version {version}, written by a newer smtpsec, and this "
            f"one reads versions up to {STORE_VERSION}; upgrade smtpsec (deleting the file "
            "also works, but forgets every account)"
        )
    if version != STORE_VERSION and version not in _MIGRATED_VERSIONS:
        raise _CorruptStoreError(f"format version {version} was never written by smtpsec")
    return version


def _parse(document: object) -> _Loaded:
    if not isinstance(document, dict):
        raise _CorruptStoreError("the top level is not a JSON object")
    version = _version_of(document)
    rows = document.get("accounts")
    if not isinstance(rows, list):
        raise _CorruptStoreError("'accounts' is not a list")
    types = _ENTRY_TYPES[version]
    entries: dict[Account, Expectation] = {}
    seen_v1: set[tuple[Account, object]] = set()
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or any(
            type(row.get(key)) is not kind for key, kind in types.items()
        ):
            raise _CorruptStoreError(f"account entry {index} is missing fields or has wrong types")
        ports: Iterable[object] = [row["port"]] if version == 1 else row["ports"]
        try:
            account = Account(row["user"], row["host"])
            expectation = Expectation(
                _check_mode(row["mode"]),
                row["tls_version"],
                row["verified"],
                row["first_seen"],
                row["last_seen"],
                tuple(_check_port(port) for port in ports),
            )
        except InvalidArgumentError as exc:
            raise _CorruptStoreError(f"account entry {index}: {exc}") from exc
        old = entries.get(account)
        if version == 1:
            if (account, row["port"]) in seen_v1:
                raise _CorruptStoreError(f"account entry {index} repeats an earlier account")
            seen_v1.add((account, row["port"]))
        if old is None:
            entries[account] = expectation
        elif version == 1:
            # Format 1 kept each port apart: one account's ports become one entry.
            entries[account] = old.merged(expectation)
        else:
            raise _CorruptStoreError(f"account entry {index} repeats an earlier account")
    return _Loaded(entries, version)
