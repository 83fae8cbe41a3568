"""A real Exim 4.96 (Debian's exim4-daemon-light) for the interop tests.

``tests/interop/exim.sh`` unpacks the Debian package (not installed: it would
conflict with Postfix) into ``$SMTPSEC_EXIM_DIR`` (``/tmp/smtpsec-exim``);
:func:`start_exim` writes a config into a directory and runs the daemon in the
foreground on two free loopback ports, one implicit TLS and one STARTTLS, with
a certificate from the test CA for ``localhost`` and ``127.0.0.1``.

Exim is here for PIPECONNECT (early pipelining, draft-harris-early-pipe): the
EHLO reply advertises it, and the main log's ``<=`` line for each accepted
message carries a pipelining field that says whether the client used it:

* ``L*`` the client pipelined early: it sent before the greeting, or sent
  more commands in the same flight as EHLO (``EHLO`` + ``AUTH``);
* ``L.`` PIPECONNECT was offered but not used;
* a trailing ``-`` (``L*-``, ``L.-``) means no ordinary PIPELINING either
  (every command waited for its reply).

:meth:`EximServer.early_pipelining_used` reads it for a message id, which
:func:`message_id` takes from the final ``250 OK id=...`` reply.

Exim starts as root and runs as its compiled-in user ``Debian-exim`` (the
daemon, every connection, and delivery: ``deliver_drop_privilege``), so the
server's directory must be reachable by that user: :func:`running_exim` makes
one in the system temp dir (pytest's ``tmp_path`` is private to root).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from node_servers import PASSWORD, USER, _certificates, _free_port, _wait_listening

from smtpsec.testing import CA

__all__ = [
    "DOMAIN",
    "EXIM_BIN",
    "HOSTNAME",
    "PASSWORD",
    "USER",
    "Accepted",
    "EximServer",
    "message_id",
    "missing",
    "running_exim",
    "start_exim",
]

EXIM_DIR: Final = Path(os.environ.get("SMTPSEC_EXIM_DIR", "/tmp/smtpsec-exim"))
EXIM_ROOT: Final = EXIM_DIR / "root"
EXIM_BIN: Final = EXIM_ROOT / "usr" / "sbin" / "exim4"
#: Compiled into Debian's binary; Exim refuses to start when it does not exist.
EXIM_USER: Final = "Debian-exim"
INSTALL_HINT: Final = "run tests/interop/exim.sh (as root)"
#: The server's own name (banner, EHLO reply); not the certificate's name.
HOSTNAME: Final = "exim.test"
#: The only domain it accepts mail for (from authenticated clients only).
DOMAIN: Final = "example.test"
LOOPBACK: Final = "127.0.0.1"
#: A bound for waiting on the server, not a performance figure.
DEADLINE: Final = 10.0

_SAFE_PATH = re.compile(r"^/[A-Za-z0-9_./-]+$")
_SAFE_WORD = re.compile(r"^[A-Za-z0-9_.@-]+$")
# 2026-12-04 20:11:12 1xZZce-0006F4-0G <= ann@example.test H=(raw.test) [127.0.0.1]
#   I=[127.0.0.1]:42465 P=esmtpsa L* X=TLS1.3:... A=plain:ann S=275 T="early" for bob@...
_ACCEPT_LINE = re.compile(r"^\S+ \S+ (?P<id>[-0-9A-Za-z]+) <= (?P<sender>\S+) (?P<rest>.*)$")
_PIPELINING_FIELD = re.compile(r" P=\S+ (?P<field>L[*.]?-?)(?= |$)")
_SUBJECT_FIELD = re.compile(r' T="(?P<subject>(?:[^"\\]|\\.)*)"')
_REPLY_ID = re.compile(r"\bid=(?P<id>[-0-9A-Za-z]+)")

# Placeholders are @NAME@ (Exim itself uses $ and braces everywhere).
_CONFIG: Final = r"""# Written by tests/interop/exim_server.py; Exim 4.96.
primary_hostname = exim.test
exim_path = @EXIM_BIN@
keep_environment =
spool_directory = @DIR@/spool
log_file_path = @DIR@/log/%slog
pid_file_path = @DIR@/run/exim.pid
message_logs = false

# Loopback only, on two ports; fail at once when one is taken (the harness
# retries with others) instead of Exim's default 9 retries 30 s apart.
local_interfaces = <; @HOST@.@IMPLICIT_PORT@ ; @HOST@.@STARTTLS_PORT@
tls_on_connect_ports = @IMPLICIT_PORT@
daemon_startup_retries = 0
queue_run_max = 0
# No reverse DNS, no ident: nothing on the network but the client.
host_lookup =
rfc1413_hosts =

tls_advertise_hosts = *
tls_certificate = @DIR@/tls/cert.pem
tls_privatekey = @DIR@/tls/key.pem

pipelining_advertise_hosts = *
pipelining_connect_advertise_hosts = @PIPE_CONNECT_HOSTS@
chunking_advertise_hosts = *
auth_advertise_hosts = ${if eq{$tls_in_cipher}{}{}{*}}

# Deliver everything at once: by default the 11th message on a connection
# would only be queued, and there is no queue runner.
smtp_accept_queue_per_connection = 0
smtp_accept_max = 100
# Deliver in the receiving process, as the exim user: no re-exec of the
# binary (which would lose LD_LIBRARY_PATH) and no root needed after start.
deliver_drop_privilege = true

log_selector = +pipelining +smtp_connection +incoming_interface +subject \
  +received_recipients +tls_cipher

domainlist local_domains = @DOMAIN@
acl_smtp_rcpt = acl_check_rcpt

begin acl

acl_check_rcpt:
  deny    message = authentication required
          !authenticated = *
  accept  domains = +local_domains
  deny    message = relay not permitted

begin routers

local:
  driver = accept
  domains = +local_domains
  transport = maildir

begin transports

maildir:
  driver = appendfile
  directory = @DIR@/mail
  maildir_format
  create_directory
  directory_mode = 0755
  mode = 0644
  delivery_date_add
  envelope_to_add
  return_path_add
  user = @EXIM_USER@

begin authenticators

plain:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = ${if and{{eq{$auth2}{@USER@}}{eq{$auth3}{@PASSWORD@}}}}
  server_set_id = $auth2

login:
  driver = plaintext
  public_name = LOGIN
  server_prompts = Username:: : Password::
  server_condition = ${if and{{eq{$auth1}{@USER@}}{eq{$auth2}{@PASSWORD@}}}}
  server_set_id = $auth1
"""


def missing() -> str | None:
    """Why Exim cannot run here, or ``None`` when it can."""
    if not EXIM_BIN.is_file():
        return f"{EXIM_BIN} is missing: {INSTALL_HINT}"
    try:
        pwd.getpwnam(EXIM_USER)
    except KeyError:
        return f"there is no {EXIM_USER} user: {INSTALL_HINT}"
    if os.geteuid() != 0:
        return "the Exim harness starts Exim as root (it then runs as Debian-exim)"
    return None


def message_id(reply: str | bytes) -> str:
    """The Exim message id in a final reply such as ``250 OK id=1xZZce-0006F4-0G``."""
    text = reply.decode("ascii", "replace") if isinstance(reply, bytes) else reply
    found = _REPLY_ID.search(text)
    if found is None:
        raise ValueError(f"no Exim message id in {reply!r}")
    return found["id"]


@dataclass(frozen=True)
class Accepted:
    """One ``<=`` line of Exim's main log: a message it accepted."""

    message_id: str
    sender: str
    #: The pipelining field: ``L*``, ``L*-``, ``L.``, ``L.-`` (see the module
    #: docs), ``L``/``L-`` without PIPECONNECT offered; ``""`` when absent.
    pipelining: str
    #: The Subject header as logged (Exim escapes quotes), if there was one.
    subject: str | None
    line: str

    @property
    def early_pipelining_used(self) -> bool:
        """Exim saw the client pipeline early (PIPECONNECT): field ``L*``."""
        return self.pipelining.startswith("L*")

    @property
    def pipelining_used(self) -> bool:
        """Exim saw the client pipeline at all (no trailing ``-``)."""
        return self.pipelining.startswith("L") and not self.pipelining.endswith("-")


@dataclass
class EximServer:
    """A running Exim daemon, where its mail lands, and what its log says."""

    #: The address it listens on; the certificate is valid for ``localhost``
    #: and ``127.0.0.1`` (verify against :attr:`cafile` with either name).
    host: str
    implicit_port: int
    starttls_port: int
    cafile: Path
    directory: Path
    #: The main log (``log/mainlog``).
    log: Path
    process: subprocess.Popen[bytes]
    config: Path
    pipe_connect: bool = True
    user: str = USER
    password: str = PASSWORD
    maildir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.maildir = self.directory / "mail"

    def stop(self) -> None:
        """Stop the daemon and every process it forked; never fails when it is gone."""
        pid = self.process.pid
        if self.process.returncode is None:
            # SIGTERM the whole group (daemon, connections, deliveries), then wait
            # for the daemon without reaping it: its zombie keeps the group id
            # reserved, so the SIGKILL for stragglers cannot hit a newcomer.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):  # a stuck daemon gets SIGKILL below
                _wait_exited(pid, DEADLINE)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            self.process.wait()
        for straggler in _processes_using(self.config):  # e.g. one that left the group
            with contextlib.suppress(ProcessLookupError):
                os.kill(straggler, signal.SIGKILL)

    def main_log(self) -> str:
        """The main log so far (empty before the first line)."""
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def accepted(self) -> list[Accepted]:
        """Every message the log says Exim accepted (``<=`` lines), oldest first."""
        found = []
        for line in self.main_log().splitlines():
            match = _ACCEPT_LINE.match(line)
            if match is None:
                continue
            rest = match["rest"]
            pipelining = _PIPELINING_FIELD.search(" " + rest.split(' T="', 1)[0])
            subject = _SUBJECT_FIELD.search(rest)
            found.append(
                Accepted(
                    message_id=match["id"],
                    sender=match["sender"],
                    pipelining=pipelining["field"] if pipelining else "",
                    subject=subject["subject"] if subject else None,
                    line=line,
                )
            )
        return found

    def accepted_message(self, message_id: str, timeout: float = DEADLINE) -> Accepted:
        """The ``<=`` record for ``message_id`` (waits a little for the log line)."""
        deadline = time.monotonic() + timeout
        while True:
            for record in self.accepted():
                if record.message_id == message_id:
                    return record
            if time.monotonic() >= deadline:
                raise LookupError(f"no '<=' line for {message_id} in {self.log}")
            time.sleep(0.05)

    def early_pipelining_used(self, message_id: str) -> bool:
        """Whether the client used PIPECONNECT for ``message_id`` (log field ``L*``)."""
        return self.accepted_message(message_id).early_pipelining_used

    def deliveries(self, at_least: int = 0, timeout: float = DEADLINE) -> list[bytes]:
        """The delivered messages (maildir files), oldest first.

        Delivery follows the ``250`` reply asynchronously, so this waits up to
        ``timeout`` seconds until there are ``at_least`` of them. Each message
        starts with ``Return-path:``, ``Envelope-to:`` and ``Delivery-date:``.
        """
        deadline = time.monotonic() + timeout
        while True:
            files = [
                path
                for sub in ("new", "cur")
                if (self.maildir / sub).is_dir()
                for path in (self.maildir / sub).iterdir()
            ]
            if len(files) >= at_least or time.monotonic() >= deadline:
                files.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
                return [path.read_bytes() for path in files]
            time.sleep(0.05)

    def delivered(self, message_id: str, timeout: float = DEADLINE) -> list[bytes]:
        """The delivered copies of ``message_id``, one per recipient, once it is done.

        Waits up to ``timeout`` seconds for the log's ``<id> Completed`` line;
        copies are found by the ``id <message_id>`` of Exim's ``Received:``.
        """
        done = f" {message_id} Completed"
        deadline = time.monotonic() + timeout
        while done not in self.main_log():
            if time.monotonic() >= deadline:
                raise LookupError(f"{message_id} was not delivered in {timeout} s ({self.log})")
            time.sleep(0.05)
        token = re.compile(rb"\n\s+id " + re.escape(message_id.encode()) + rb"\b")
        return [m for m in self.deliveries() if token.search(m.split(b"\n\n", 1)[0])]


def start_exim(ca: CA, directory: Path, *, pipe_connect: bool = True) -> EximServer:
    """Run Exim from ``directory`` (config, spool, logs, mail) on two free ports.

    Args:
        ca: the CA that issues the server certificate (``localhost`` and
            ``127.0.0.1``); its root is written to ``directory/tls/ca.pem``.
        directory: the server's own directory. Exim runs as ``Debian-exim``, so
            every directory above it must be searchable by that user.
        pipe_connect: ``False`` stops advertising PIPECONNECT (then Exim
            answers early input with ``554 SMTP synchronization error``).
    """
    why = missing()
    if why is not None:
        raise RuntimeError(f"cannot start Exim: {why}")
    directory = directory.resolve()
    if not _SAFE_PATH.match(str(directory)):
        raise ValueError(f"{directory}: only letters, digits and _ . / - go into Exim's config")
    exim = pwd.getpwnam(EXIM_USER)
    blocked = _unsearchable_parent(directory, exim.pw_uid, exim.pw_gid)
    if blocked is not None:
        raise RuntimeError(
            f"{blocked} is not searchable by {EXIM_USER}, which Exim runs as; "
            "use running_exim() or a directory in the system temp dir"
        )
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o711)
    tls = directory / "tls"
    tls.mkdir(exist_ok=True)
    key, _cert, cafile = _certificates(ca, tls)
    os.chown(key, exim.pw_uid, exim.pw_gid)
    key.chmod(0o600)
    for name in ("spool", "log", "mail", "run"):
        (directory / name).mkdir(exist_ok=True)
        os.chown(directory / name, exim.pw_uid, exim.pw_gid)
    config = directory / "exim.conf"
    output = directory / "exim.out"  # the daemon's stderr: start-up errors
    env = {**os.environ, "LD_LIBRARY_PATH": _library_path()}
    for _attempt in range(5):
        implicit = _free_port()
        starttls = _free_port()
        if starttls == implicit:
            continue
        # Exim insists on a config owned by root and writable by nobody else.
        config.write_text(_render(directory, implicit, starttls, pipe_connect=pipe_connect))
        config.chmod(0o644)
        with output.open("wb") as out:
            process = subprocess.Popen(
                [str(EXIM_BIN), "-C", str(config), "-bdf"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own group, which stop() kills
            )
        server = EximServer(
            host=LOOPBACK,
            implicit_port=implicit,
            starttls_port=starttls,
            cafile=cafile,
            directory=directory,
            log=directory / "log" / "mainlog",
            process=process,
            config=config,
            pipe_connect=pipe_connect,
        )
        try:
            _wait_listening(implicit, process, output)
            _wait_listening(starttls, process, output)
        except RuntimeError:
            server.stop()
            if "Address already in use" in output.read_text(errors="replace"):
                continue  # another process took a port in between: try others
            raise
        return server
    raise RuntimeError("could not start Exim on free ports")


@contextlib.contextmanager
def running_exim(ca: CA, *, pipe_connect: bool = True) -> Iterator[EximServer]:
    """Start Exim in a fresh directory under the system temp dir; stop and remove it after."""
    directory = Path(tempfile.mkdtemp(prefix="smtpsec-exim-"))
    try:
        server = start_exim(ca, directory, pipe_connect=pipe_connect)
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _render(directory: Path, implicit: int, starttls: int, *, pipe_connect: bool) -> str:
    for word in (USER, PASSWORD, DOMAIN):
        if not _SAFE_WORD.match(word):  # pragma: no cover - constants
            raise ValueError(f"{word!r} cannot go into Exim's config unquoted")
    values = {
        "EXIM_BIN": str(EXIM_BIN),
        "EXIM_USER": EXIM_USER,
        "DIR": str(directory),
        "HOST": LOOPBACK,
        "IMPLICIT_PORT": str(implicit),
        "STARTTLS_PORT": str(starttls),
        # An empty host list: PIPECONNECT is offered to no one.
        "PIPE_CONNECT_HOSTS": "*" if pipe_connect else ":",
        "DOMAIN": DOMAIN,
        "USER": USER,
        "PASSWORD": PASSWORD,
    }
    text = _CONFIG
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    left = re.search(r"@[A-Z_]+@", text)
    if left is not None:  # pragma: no cover - a template typo
        raise AssertionError(f"unrendered placeholder {left[0]} in the Exim config")
    return text


def _library_path() -> str:
    """The unpacked library directories (libidn12 and whatever else exim.sh added)."""
    dirs = sorted(EXIM_ROOT.glob("lib/*-linux-gnu")) + sorted(EXIM_ROOT.glob("usr/lib/*-linux-gnu"))
    inherited = os.environ.get("LD_LIBRARY_PATH")
    return os.pathsep.join([*map(str, dirs), *([inherited] if inherited else [])])


def _unsearchable_parent(directory: Path, uid: int, gid: int) -> Path | None:
    """The first existing directory above ``directory`` that ``uid`` cannot enter."""
    groups = {gid, *(g for g in os.getgrouplist(EXIM_USER, gid))}
    for parent in directory.parents:
        try:
            info = parent.stat()
        except FileNotFoundError:
            continue  # created by start_exim with the default (searchable) mode
        if info.st_uid == uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid in groups:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            return parent
    return None


def _wait_exited(pid: int, timeout: float) -> None:
    """Wait for ``pid`` (a child) to exit, leaving it unreaped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return
        time.sleep(0.02)
    raise TimeoutError(f"process {pid} did not exit in {timeout} s")


def _processes_using(config: Path) -> list[int]:
    """Pids of live processes started with ``-C config`` (Exim forks keep the argv)."""
    needle = os.fsencode(config)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # gone, or not ours to read
        if needle in argv and state != "Z":
            found.append(int(entry.name))
    return found
