"""One connection's SMTP dialogue on the fake server: a strict MSA plus the script.

:class:`ServerSession` answers like a correct submission server (RFC 5321,
6409, 3207, 4954, 2920, 3030, 1870, 6531) unless the :class:`Script` says
otherwise, and records everything into the connection's :class:`Capture`.
Commands are handled strictly in order from our own buffer, so pipelining works
and nothing past ``STARTTLS`` is ever read as a post-TLS command.
"""

from __future__ import annotations

import base64
import contextlib
import ssl
from collections.abc import Callable
from typing import Final, Literal

from smtpsec.modes import Security
from smtpsec.testing._capture import AuthAttempt, Capture, ReceivedMessage
from smtpsec.testing._protocol import (
    BDAT,
    HANDSHAKE,
    MAIL,
    MAX_COMMAND,
    MAX_DATA_LINE,
    MAX_MESSAGE,
    RCPT,
    Transaction,
    decode_b64,
    format_reply,
    parse_params,
    unsupported_param,
)
from smtpsec.testing._sasl import (
    Credentials,
    SASLCancelled,
    SASLMalformed,
    authenticate,
)
from smtpsec.testing._script import SUPPORTED_MECHANISMS, Drip, Endless, Reply, Script
from smtpsec.testing._wire import Closed, LineTooLong, Wire

__all__ = ["ServerSession"]

#: How long to wait for the client's close_notify after 221 (bounded by the stop event).
_QUIT_LINGER: Final = 5.0


class ServerSession:
    """The server side of one SMTP connection (passed to ``Script.on_command`` hooks).

    Attributes:
        capture: what this connection recorded so far.
        script: the behaviour in force.
        mode: the server's TLS mode.
        tls_active: whether TLS is up now.
        user: the authenticated user name, or ``None``.
    """

    def __init__(
        self,
        wire: Wire,
        capture: Capture,
        script: Script,
        *,
        mode: Security,
        tls_context: ssl.SSLContext | None,
        timeout: float,
    ) -> None:
        self.capture = capture
        self.script = script
        self.mode: Security = mode
        self.tls_active = wire.tls
        self.user: str | None = None
        self._wire = wire
        self._ctx = tls_context
        self._timeout = timeout
        self._ehlo = False
        self._tx: Transaction | None = None
        self._closing = False
        self._quit = False
        self._silent = False

    # ------------------------------------------------------------------ public

    def send(self, data: bytes) -> None:
        """Write raw bytes to the client (for ``on_command`` hooks)."""
        self._wire.send(data)

    def close(self) -> None:
        """End the session after the current command, without a reply."""
        self._closing = True

    # ------------------------------------------------------------------ driver

    def run(self) -> None:
        """Serve the connection until QUIT, EOF, a closing reply or server stop."""
        try:
            if self.mode is Security.IMPLICIT_TLS and not self._handshake():
                return
            greeting = self.script.effective_greeting()
            self._silent = greeting is None
            self._reply(greeting)
            while not self._closing:
                try:
                    line = self._wire.readline(MAX_COMMAND)
                except LineTooLong:
                    self._reply((500, "5.5.2 Error: line too long"))
                    return
                self._handle(line)
        except Closed as exc:
            if str(exc) != "EOF":
                self.capture.error = str(exc)
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        if self._quit and self._wire.tls:
            # R-8314-3.4-1: wait (bounded) for the client's close_notify, then
            # send ours so a client that waits for it is not left hanging.
            self._wire.settimeout(min(self._timeout, _QUIT_LINGER))
            self._wire.drain_until_eof(MAX_COMMAND)
        if self.capture.close_notify and isinstance(self._wire.sock, ssl.SSLSocket):
            # Answer the client's close_notify with ours, as a clean TLS peer does.
            with contextlib.suppress(OSError, ValueError):
                self._wire.sock.unwrap()
        self._wire.close()

    def _handle(self, line: bytes) -> None:
        text = line.rstrip(b"\r\n").decode("utf-8", "replace")
        verb = text.split(" ", 1)[0].upper()
        self._record(text, verb)
        if self._silent:
            return
        if self.script.on_command is not None:
            out = self.script.on_command(self, text)
            if out is not None:
                self._wire.send(out)
                return
        if verb == self.script.close_after:
            self._closing = True
            return
        found, reply = self.script.override(verb, tls_active=self.tls_active)
        if found:
            if verb == "BDAT":
                self._read_chunk(text)
            self._reply(reply)
        else:
            _HANDLERS.get(verb, ServerSession._unknown)(self, text)
        extra = self.script.extra_replies_after
        if extra is not None and extra[0] == verb and not self._closing:
            self._wire.send(extra[1])

    def _record(self, text: str, verb: str | None) -> None:
        capture = self.capture
        lines = capture.lines_post_tls if self.tls_active else capture.lines_pre_tls
        lines.append(text)
        if verb is not None:
            verbs = capture.commands_post_tls if self.tls_active else capture.commands_pre_tls
            verbs.append(verb)

    def _reply(self, reply: Reply) -> None:
        if reply is None:
            return
        if isinstance(reply, tuple):
            code, text = reply
            self._wire.send(format_reply(code, text))
            if code == 421:
                # RFC 5321 §3.8: a server that says 421 closes the channel.
                self._closing = True
        elif isinstance(reply, bytes):
            self._wire.send(reply)
        elif isinstance(reply, Drip):
            self._wire.drip(reply)
        elif isinstance(reply, Endless):
            self._wire.stream(reply)
        else:
            self._wire.long_line(reply)

    def _handshake(self) -> bool:
        assert self._ctx is not None
        HANDSHAKE.capture = self.capture
        try:
            sock = self._wire.start_tls(self._ctx)
        except (ssl.SSLError, OSError) as exc:
            self.capture.handshake_error = str(exc) or type(exc).__name__
            self._closing = True
            return False
        finally:
            HANDSHAKE.capture = None
        self.capture.tls_version = sock.version()
        cipher = sock.cipher()
        self.capture.cipher = cipher[0] if cipher else None
        self.capture.client_cert_der = sock.getpeercert(binary_form=True)
        self.tls_active = True
        return True

    # ------------------------------------------------------------------ SASL

    def ask(self, challenge: bytes) -> bytes:
        """Send a ``334`` challenge and return the decoded answer (SASL conversation)."""
        self._wire.send(b"334 " + base64.b64encode(challenge) + b"\r\n")
        text = self._wire.readline(MAX_COMMAND).rstrip(b"\r\n").decode("utf-8", "replace")
        self._record(text, None)
        if text.strip() == "*":
            raise SASLCancelled
        return decode_b64(text.strip())

    # ------------------------------------------------------------------ state

    @property
    def _pre_tls_on_starttls_server(self) -> bool:
        return self.mode is Security.STARTTLS and not self.tls_active

    def _advertised(self) -> tuple[str, ...]:
        return self.script.advertised(
            starttls_mode=self.mode is Security.STARTTLS, tls_active=self.tls_active
        )

    def _has_extension(self, keyword: str) -> bool:
        return any(e.split(" ", 1)[0].upper() == keyword for e in self._advertised())

    # ------------------------------------------------------------------ commands

    def _ehlo_cmd(self, text: str) -> None:
        parts = text.split()
        if len(parts) != 2:
            self._reply((501, "5.5.4 Syntax: EHLO hostname"))
            return
        self._ehlo, self._tx = True, None
        lines = [f"{self.script.hostname} greets {parts[1]}", *self._advertised()]
        self._reply((250, "\n".join(lines)))

    def _helo_cmd(self, text: str) -> None:
        if len(text.split()) != 2:
            self._reply((501, "5.5.4 Syntax: HELO hostname"))
            return
        self._ehlo, self._tx = True, None
        self._reply((250, self.script.hostname))

    def _starttls_cmd(self, text: str) -> None:
        if text.strip().upper() != "STARTTLS":
            self._reply((501, "5.5.4 Syntax: STARTTLS takes no parameters"))
        elif self.tls_active:
            self._reply((554, "5.5.1 Error: TLS already active"))
        elif self.mode is not Security.STARTTLS or self.script.strip_starttls:
            self._reply((502, "5.5.1 Error: command not implemented"))
        else:
            self._starttls()

    def _starttls(self) -> None:
        # Whatever the client sent after STARTTLS is evidence, not input.
        self.capture.after_starttls += self._wire.take_buffered()
        self._wire.send(b"220 2.0.0 Ready to start TLS\r\n" + self.script.starttls_inject)
        plaintext = self.script.starttls_no_handshake
        if plaintext:
            self._wire.send(plaintext if isinstance(plaintext, bytes) else b"250 2.0.0 ok\r\n")
            return
        if self._handshake():
            # RFC 3207 §4.2: forget everything learned before TLS.
            self._ehlo, self._tx, self.user = False, None, None

    def _auth_cmd(self, text: str) -> None:
        parts = text.split()
        if len(parts) not in (2, 3):
            self._reply((501, "5.5.4 Syntax: AUTH mechanism [initial-response]"))
            return
        mechanism = parts[1].upper()
        offered = self.script.offered_mechanisms(
            starttls_mode=self.mode is Security.STARTTLS, tls_active=self.tls_active
        )
        pre_tls_refused = self.script.require_tls and not self.script.pre_tls_auth
        if self.user is not None:
            self._reply((503, "5.5.1 Error: already authenticated"))
        elif self._tx is not None:
            self._reply((503, "5.5.1 Error: AUTH not allowed during a mail transaction"))
        elif self._pre_tls_on_starttls_server and pre_tls_refused:
            self._reply((530, "5.7.0 Must issue a STARTTLS command first"))
        elif mechanism not in offered:
            self._reply((504, "5.5.4 Unrecognized authentication type"))
        elif mechanism not in SUPPORTED_MECHANISMS:
            self._reply((504, "5.5.4 Mechanism not implemented by smtpsec.testing"))
        else:
            self._sasl(mechanism, parts[2] if len(parts) == 3 else None)

    def _sasl(self, mechanism: str, initial_text: str | None) -> None:
        creds = Credentials(
            users=self.script.users,
            tokens=self.script.tokens,
            client_cert=self.capture.client_cert_der,
            hostname=self.script.hostname,
        )
        try:
            initial = None
            if initial_text is not None:
                initial = b"" if initial_text == "=" else decode_b64(initial_text)
            user, ok = authenticate(mechanism, initial, self, creds)
        except SASLCancelled:
            self.capture.auth.append(AuthAttempt(mechanism, None, False))
            self._reply((501, "5.7.0 Authentication cancelled"))
            return
        except SASLMalformed:
            self.capture.auth.append(AuthAttempt(mechanism, None, False))
            self._reply((501, "5.5.2 Cannot decode response"))
            return
        self.capture.auth.append(AuthAttempt(mechanism, user, ok))
        if ok:
            self.user = user or ""
            self._reply((235, "2.7.0 Authentication successful"))
        else:
            self._reply((535, "5.7.8 Error: authentication failed"))

    def _mail_cmd(self, text: str) -> None:
        match = MAIL.fullmatch(text)
        params = parse_params(match.group(2)) if match else None
        if self._pre_tls_on_starttls_server and self.script.require_tls:
            self._reply((530, "5.7.0 Must issue a STARTTLS command first"))
        elif self.script.require_auth and self.user is None:
            self._reply((530, "5.7.0 Authentication required"))
        elif not self._ehlo:
            self._reply((503, "5.5.1 Error: send HELO/EHLO first"))
        elif self._tx is not None:
            self._reply((503, "5.5.1 Error: nested MAIL command"))
        elif match is None or params is None:
            self._reply((501, "5.5.4 Syntax: MAIL FROM:<address> [parameters]"))
        elif (bad := unsupported_param("MAIL", params, self._advertised())) is not None:
            self._reply((555, f"5.5.4 Unsupported option: {bad}"))
        elif self._too_big(params.get("SIZE")):
            self._reply((552, "5.3.4 Message size exceeds fixed limit"))
        elif not match.group(1).isascii() and "SMTPUTF8" not in params:
            self._reply((553, "5.6.7 Non-ASCII address needs SMTPUTF8"))
        else:
            self._tx = Transaction(sender=match.group(1), params=params)
            self._reply((250, "2.1.0 Sender OK"))

    def _rcpt_cmd(self, text: str) -> None:
        match = RCPT.fullmatch(text)
        params = parse_params(match.group(2)) if match else None
        tx = self._tx
        if tx is None:
            self._reply((503, "5.5.1 Error: need MAIL command"))
        elif match is None or params is None:
            self._reply((501, "5.5.4 Syntax: RCPT TO:<address> [parameters]"))
        elif (bad := unsupported_param("RCPT", params, self._advertised())) is not None:
            self._reply((555, f"5.5.4 Unsupported option: {bad}"))
        elif match.group(1) in self.script.refuse_recipients:
            self._reply(self.script.refuse_recipients[match.group(1)])
        elif self.script.max_recipients is not None and (
            len(tx.recipients) >= self.script.max_recipients
        ):
            self._reply((452, "4.5.3 Error: too many recipients"))
        elif not match.group(1).isascii() and "SMTPUTF8" not in tx.params:
            self._reply((553, "5.6.7 Non-ASCII address needs SMTPUTF8"))
        else:
            tx.recipients.append(match.group(1))
            tx.recipient_params.append(params)
            self._reply((250, "2.1.5 Recipient OK"))

    def _data_cmd(self, text: str) -> None:
        tx = self._tx
        if text.strip().upper() != "DATA":
            self._reply((501, "5.5.4 Syntax: DATA takes no parameters"))
        elif tx is None:
            self._reply((503, "5.5.1 Error: need MAIL command"))
        elif tx.chunks:
            self._reply((503, "5.5.1 Error: DATA after BDAT"))
        elif not tx.recipients:
            self._reply((554, "5.5.1 Error: no valid recipients"))
        else:
            self._reply((354, "End data with <CR><LF>.<CR><LF>"))
            self._finish(self._read_data(), "DATA")

    def _read_data(self) -> bytes | None:
        body = bytearray()
        overflow = False
        # Only CRLF ends a line (RFC 5321 §2.3.8): a "." after a bare LF is
        # content, so SMTP-smuggling attempts stay visible inside one message.
        at_line_start = True
        while True:
            try:
                line = self._wire.readline(MAX_DATA_LINE)
            except LineTooLong:
                self._closing = True
                raise Closed("DATA line too long") from None
            if at_line_start and line == b".\r\n":
                return None if overflow else bytes(body)
            if at_line_start and line.startswith(b"."):
                line = line[1:]  # RFC 5321 §4.5.2 transparency
            at_line_start = line.endswith(b"\r\n")
            if len(body) + len(line) > MAX_MESSAGE:
                overflow = True
            else:
                body += line

    def _read_chunk(self, text: str) -> tuple[bytes, bool] | None:
        match = BDAT.fullmatch(text)
        if match is None:
            return None
        size = int(match.group(1))
        if size > MAX_MESSAGE:
            self._closing = True
            raise Closed("BDAT chunk too large to consume")
        return self._wire.read_exact(size), match.group(2) is not None

    def _bdat_cmd(self, text: str) -> None:
        chunk = self._read_chunk(text)
        tx = self._tx
        if chunk is None:
            self._reply((501, "5.5.4 Syntax: BDAT size [LAST]"))
        elif not self._has_extension("CHUNKING"):
            self._reply((503, "5.5.1 Error: CHUNKING not offered"))
        elif tx is None:
            self._reply((503, "5.5.1 Error: need MAIL command"))
        elif not tx.recipients:
            self._reply((554, "5.5.1 Error: no valid recipients"))
        else:
            data, last = chunk
            tx.chunks.append(len(data))
            tx.body += data
            if last:
                self._finish(bytes(tx.body), "BDAT")
            else:
                self._reply((250, f"2.0.0 {len(data)} octets received"))

    def _finish(self, data: bytes | None, via: Literal["DATA", "BDAT"]) -> None:
        tx, self._tx = self._tx, None
        assert tx is not None
        limit = self.script.size_limit(
            starttls_mode=self.mode is Security.STARTTLS, tls_active=self.tls_active
        )
        if data is None or (limit and len(data) > limit):
            self._reply((552, "5.3.4 Message size exceeds fixed limit"))
            return
        found, reply = self.script.override(".", tls_active=self.tls_active)
        final = reply if found else (250, f"2.0.0 Ok: queued as {len(self.capture.messages)}")
        if isinstance(final, tuple) and 200 <= final[0] < 300:
            self.capture.messages.append(
                ReceivedMessage(
                    sender=tx.sender,
                    recipients=tuple(tx.recipients),
                    data=data,
                    mail_params=tx.params,
                    recipient_params=tuple(tx.recipient_params),
                    via=via,
                    bdat_chunks=tuple(tx.chunks),
                    tls=self.tls_active,
                )
            )
        self._reply(final)

    def _rset_cmd(self, text: str) -> None:
        self._tx = None
        self._reply((250, "2.0.0 Ok"))

    def _noop_cmd(self, text: str) -> None:
        self._reply((250, "2.0.0 Ok"))

    def _vrfy_cmd(self, text: str) -> None:
        self._reply((252, "2.5.2 Cannot VRFY user"))

    def _help_cmd(self, text: str) -> None:
        self._reply((214, "2.0.0 smtpsec.testing fake MSA"))

    def _quit_cmd(self, text: str) -> None:
        self._reply((221, "2.0.0 Bye"))
        self._quit = self._closing = True

    def _unknown(self, text: str) -> None:
        self._reply((500, "5.5.2 Error: command not recognized"))

    # ------------------------------------------------------------------ checks

    def _too_big(self, size: str | None) -> bool:
        limit = self.script.size_limit(
            starttls_mode=self.mode is Security.STARTTLS, tls_active=self.tls_active
        )
        return bool(limit and size is not None and size.isdigit() and int(size) > limit)


_HANDLERS: Final[dict[str, Callable[[ServerSession, str], None]]] = {
    "EHLO": ServerSession._ehlo_cmd,
    "HELO": ServerSession._helo_cmd,
    "STARTTLS": ServerSession._starttls_cmd,
    "AUTH": ServerSession._auth_cmd,
    "MAIL": ServerSession._mail_cmd,
    "RCPT": ServerSession._rcpt_cmd,
    "DATA": ServerSession._data_cmd,
    "BDAT": ServerSession._bdat_cmd,
    "RSET": ServerSession._rset_cmd,
    "NOOP": ServerSession._noop_cmd,
    "VRFY": ServerSession._vrfy_cmd,
    "HELP": ServerSession._help_cmd,
    "QUIT": ServerSession._quit_cmd,
}
