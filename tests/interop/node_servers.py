"""Real Node.js SMTP servers for the interop tests: Haraka and nodemailer's smtp-server.

``tests/interop/node.sh`` installs them (``npm ci`` into
``tests/interop/node/node_modules``); the fixtures here start each one on a
free loopback port with a certificate from the test CA, and read back what it
accepted. Both are real servers with their own SMTP implementations, which is
the point: Haraka answers ``503`` to commands pipelined behind the end of a
message, and smtp-server offers REQUIRETLS (RFC 8689).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from smtpsec.testing import CA

NODE_DIR: Final = Path(__file__).resolve().parent / "node"
MODULES: Final = NODE_DIR / "node_modules"
USER: Final = "ann"
PASSWORD: Final = "interop-pw"
#: A bound for starting a server, not a performance figure.
START_DEADLINE: Final = 60.0


def missing() -> str | None:
    """Why the Node servers cannot run here, or ``None`` when they can."""
    if shutil.which("node") is None:
        return "node is not on PATH"
    if not (MODULES / "Haraka").is_dir() or not (MODULES / "smtp-server").is_dir():
        return f"{MODULES} lacks Haraka or smtp-server: run tests/interop/node.sh"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}):\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the server did not listen on {port} in time:\n{log.read_text()}")


@dataclass
class NodeServer:
    """A running Node.js SMTP server and where its accepted mail lands."""

    port: int
    cafile: Path
    maildir: Path
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a stuck server
            self.process.kill()
            self.process.wait()

    def accepted(self) -> list[Path]:
        """The files of the messages the server accepted, oldest first."""
        return sorted(self.maildir.iterdir(), key=lambda p: p.stat().st_mtime_ns)


def _certificates(ca: CA, directory: Path) -> tuple[Path, Path, Path]:
    leaf = ca.issue("localhost", ips=("127.0.0.1",))
    key, cert = directory / "key.pem", directory / "cert.pem"
    key.write_bytes(leaf.key_pem)
    cert.write_bytes(leaf.cert_pem)
    cafile = ca.write_cafile(directory / "ca.pem")
    return key, cert, cafile


def start_haraka(ca: CA, directory: Path) -> NodeServer:
    """Haraka with STARTTLS, AUTH PLAIN/LOGIN, and the capture queue plugin."""
    haraka = ["node", str(MODULES / "Haraka" / "bin" / "haraka")]
    # Haraka's own defaults first (connection.ini and friends), then ours on top.
    subprocess.run([*haraka, "-i", str(directory)], check=True, capture_output=True)
    config = directory / "config"
    plugins = directory / "plugins"
    maildir = directory / "mail"
    for folder in (config, plugins, maildir):
        folder.mkdir(parents=True, exist_ok=True)
    key, cert, cafile = _certificates(ca, config)
    shutil.copy(NODE_DIR / "haraka" / "capture.js", plugins / "capture.js")
    (config / "tls.ini").write_text(f"[main]\nkey={key.name}\ncert={cert.name}\n")
    (config / "plugins").write_text("tls\nauth/flat_file\nrcpt_to.in_host_list\ncapture\n")
    (config / "auth_flat_file.ini").write_text(
        f"[core]\nmethods=PLAIN,LOGIN\n[users]\n{USER}={PASSWORD}\n"
    )
    (config / "host_list").write_text("example.test\n")
    (config / "me").write_text("haraka.test\n")
    (config / "log.ini").write_text("[main]\nlevel=notice\n")
    log = directory / "haraka.log"
    env = {**os.environ, "SMTPSEC_HARAKA_MAILDIR": str(maildir)}
    for _attempt in range(5):
        port = _free_port()
        (config / "smtp.ini").write_text(f"listen=127.0.0.1:{port}\n[main]\n")
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*haraka, "-c", str(directory)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        try:
            _wait_listening(port, process, log)
        except RuntimeError:
            if "EADDRINUSE" in log.read_text():
                continue  # another process took the port in between: try another
            raise
        return NodeServer(port, cafile, maildir, process, log)
    raise RuntimeError("could not start Haraka on a free port")


def start_smtp_server(ca: CA, directory: Path, *, requiretls: bool) -> NodeServer:
    """nodemailer's smtp-server with implicit TLS; REQUIRETLS offered or not."""
    maildir = directory / "mail"
    maildir.mkdir(parents=True, exist_ok=True)
    key, cert, cafile = _certificates(ca, directory)
    log = directory / "smtp-server.log"
    for _attempt in range(5):
        port = _free_port()
        argv = ["node", str(NODE_DIR / "smtp_server.js"), str(port), str(key), str(cert)]
        argv += [str(maildir), *([] if requiretls else ["--hide-requiretls"])]
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "NODE_PATH": str(MODULES)},
            )
        try:
            _wait_listening(port, process, log)
        except RuntimeError:
            if "EADDRINUSE" in log.read_text():
                continue
            raise
        return NodeServer(port, cafile, maildir, process, log)
    raise RuntimeError("could not start smtp-server on a free port")


def smtp_server_records(server: NodeServer) -> list[dict[str, object]]:
    """What smtp-server accepted: ``{from, params, to, data}`` per message."""
    return [json.loads(path.read_text()) for path in server.accepted()]
