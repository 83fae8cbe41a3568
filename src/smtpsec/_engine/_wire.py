"""The Wire: sole owner of one connection's transport and protocol state.

Everything any front end sends or receives passes through :class:`Wire`:
commands are validated and encoded by the sans-I/O
:class:`~smtpsec.sansio.ClientConnection` (the one place that counts what is
outstanding), written in flights, and answered by replies read against a
whole-reply deadline. Before every flight that starts with nothing
outstanding, the wire looks for bytes nobody asked for: a stale or injected
reply would otherwise be taken as the answer to the next command
(R-LIB-DESYNC-1).
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from .._advice import NATIVE, Advice
from ..errors import ConnectError, LocalProtocolError, RemoteProtocolError
from ..errors import TimeoutError as DeadlineError
from ..sansio import ClientConnection, Command, Reply, Response, State
from ..transports import AnyTransport
from ._io import IO, Close, Poll, Read, Write, perform

__all__ = ["Wire", "WireObserver"]

transcript = logging.getLogger("smtpsec.transcript")


class WireObserver(Protocol):
    """Sees every command as it is queued and every reply as it is taken.

    The smtplib drop-in uses one for ``set_debuglevel()`` output, whichever
    engine step sends or reads (its own commands, the AUTH loop, transactions).
    """

    def sent(self, command: Command) -> None:
        """``command`` was queued for the next flight."""

    def received(self, reply: Reply) -> None:
        """``reply`` was taken by the dialogue."""


class Wire:
    """One connection's I/O: flights out, replies in, transcript on the side.

    Args:
        transport: the byte stream (replaced by :meth:`upgraded` after TLS).
        conn: the protocol state machine.
        timeout: seconds allowed for each *whole* reply (a dripping server cannot
            stretch it) and for each write.
        host: the server's name (what certificates are checked against).
        port: its port (0 for a Unix socket).
        advice: how fixes are worded for the caller's API.

    Attributes:
        writes: flights written to the transport; with :attr:`reads`, lets tests
            and benchmarks count round trips.
        reads: reads the transport answered.
        lockstep_after_data: the server refuses commands pipelined behind the
            end of a message (Haraka answers them ``503``, since its fixes for
            SMTP smuggling); from then on the next message's ``MAIL`` waits
            for the previous message's final reply on this connection.
    """

    def __init__(
        self,
        transport: AnyTransport,
        conn: ClientConnection,
        *,
        timeout: float,
        host: str,
        port: int,
        advice: Advice = NATIVE,
    ) -> None:
        self.transport = transport
        self.conn = conn
        self.timeout = timeout
        self.host = host
        self.port = port
        self.advice = advice
        self.writes = 0
        self.reads = 0
        self.observer: WireObserver | None = None
        self.lockstep_after_data = False
        self._flight = bytearray()
        self._check_before_flight = False

    @property
    def peer(self) -> str:
        """``host:port`` (the host alone for a Unix socket), for messages."""
        return f"{self.host}:{self.port}" if self.port else self.host

    # ------------------------------------------------------------------ out

    @property
    def unwritten(self) -> int:
        """Octets queued for the next flight."""
        return len(self._flight)

    def queue(self, command: Command, *, tag: object = None) -> None:
        """Add ``command`` to the next flight (validated by the state table now).

        Args:
            command: the command.
            tag: handed back on the :class:`~smtpsec.sansio.Response` to it.
        """
        if not self._flight:
            # Whether the flight starts with nothing outstanding decides whether
            # anything already received would be unsolicited.
            self._check_before_flight = self.conn.idle
        self._flight += self.conn.send(command, tag=tag)
        if transcript.isEnabledFor(logging.DEBUG):
            transcript.debug("C: %s", command.loggable())
        if self.observer is not None:
            self.observer.sent(command)

    def queue_content(self, data: bytes) -> None:
        """Add message octets (a BDAT payload or DATA body) to the next flight.

        Content never reaches the transcript; the caller logs its size with
        :meth:`log_content`.
        """
        self._flight += data

    def end_data(self, *, tag: object = None, replies: int = 1) -> None:
        """Record that the DATA terminator (already queued) ends the body."""
        self.conn.end_data(tag=tag, replies=replies)

    def flush(self) -> IO[None]:
        """Write the queued flight in one write.

        Raises:
            RemoteProtocolError: the flight started with nothing outstanding, yet
                the server had sent something (closed first).
            ConnectError: the server had closed the idle connection.
        """
        if not self._flight:
            return
        if self._check_before_flight:
            self._check_before_flight = False
            yield from self.check_idle()
        data = bytes(self._flight)
        self._flight.clear()
        self.writes += 1
        yield from perform(Write(self.transport, data, self.timeout))

    def log_content(self, octets: int) -> None:
        """Note in the transcript that message content went out (size only)."""
        if transcript.isEnabledFor(logging.DEBUG):
            transcript.debug("C: <message content, %d octets>", octets)

    def check_idle(self) -> IO[None]:
        """With nothing outstanding, nothing may have arrived (R-LIB-DESYNC-1).

        A server that dropped an idle connection (EOF, or ``421`` then EOF)
        gives a :class:`ConnectError`, so pools can replace the connection.
        Either way the connection is closed before the error is raised.
        """
        early = self.conn.partial_reply
        if not early:
            polled = yield from perform(Poll(self.transport))
            if polled is None:
                return
            early = polled
        yield from self.close()
        if not early or early.startswith(b"421"):
            text = early.decode("utf-8", "replace").strip()
            raise ConnectError(
                f"{self.peer} closed the connection{f' ({text})' if text else ''}; open a "
                "new session"
            )
        raise RemoteProtocolError(
            f"{self.peer} sent data nobody asked for ({early[:60]!r}); replies and commands "
            "would be out of step, so the connection was closed"
        )

    # ------------------------------------------------------------------ in

    def read(self) -> IO[Response]:
        """The next response; each gets a whole-reply deadline.

        Raises:
            ConnectError: the connection closed (or the server said 421, RFC
                5321 §3.8, and the 421 was already taken) with a reply still
                due; nothing more can come.
            TimeoutError: the reply did not complete in time.
            RemoteProtocolError: a malformed or unsolicited reply.
        """
        yield from self.flush()
        response = self.conn.next_response()
        if response is None:
            response = yield from self._receive()
        return self._seen(response)

    def arrived(self) -> IO[list[Response]]:
        """The responses that already arrived, without waiting or writing.

        For a dialogue that must stop (a write failed): replies the server sent
        before the failure still say what became of the commands they answer.
        Stops at the first malformed reply or at the end of the stream.
        """
        found: list[Response] = []
        while True:
            response = self.conn.next_response()
            if response is not None:
                found.append(self._seen(response))
                continue
            if self.conn.state is State.CLOSED or not self.conn.unanswered:
                return found
            data = yield from perform(Poll(self.transport))
            if not data:
                return found
            try:
                self.conn.receive_data(data)
            except RemoteProtocolError:
                return found

    def _seen(self, response: Response) -> Response:
        if transcript.isEnabledFor(logging.DEBUG):
            for line in response.reply.lines or ("",):
                transcript.debug("S: %d %s", response.reply.code, line)
        if self.observer is not None:
            self.observer.received(response.reply)
        return response

    def _receive(self) -> IO[Response]:
        """Read until the next response is complete."""
        response: Response | None = None
        if self.conn.state is State.CLOSED:
            raise ConnectError(
                f"{self.peer} closed the connection while replies were still due; the "
                "command(s) in flight were not carried out"
            )
        if not self.conn.unanswered:
            raise LocalProtocolError("no reply is due: nothing was sent that awaits one")
        deadline = time.monotonic() + self.timeout
        while response is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._late()
            try:
                data = yield from perform(Read(self.transport, remaining))
            except DeadlineError:
                raise self._late() from None
            self.reads += 1
            if not data:
                self.conn.close()
                raise ConnectError(
                    f"{self.peer} closed the connection while a reply was due; the "
                    "command(s) in flight were not carried out"
                )
            try:
                self.conn.receive_data(data)
            except RemoteProtocolError:
                # A broken or unsolicited reply: nothing read from here on can
                # be trusted, so the connection ends now.
                yield from self.close()
                raise
            response = self.conn.next_response()
        return response

    def _late(self) -> DeadlineError:
        if self.conn.partial_reply:
            return DeadlineError(
                f"{self.peer} started a reply but did not finish it within {self.timeout:g}s "
                "(a stuck or deliberately slow server); "
                f"{self.advice.longer_timeout} only if the server is known to be slow"
            )
        return DeadlineError(
            f"no reply from {self.peer} within {self.timeout:g}s; the server is stuck or "
            f"slow ({self.advice.longer_timeout} if it is just slow)"
        )

    def command(self, command: Command) -> IO[Reply]:
        """Send one command on its own and return its reply."""
        self.queue(command)
        response = yield from self.read()
        return response.reply

    # ------------------------------------------------------------------ life cycle

    def upgraded(self, transport: AnyTransport) -> None:
        """Continue over ``transport`` (the TLS one returned by a handshake)."""
        self.transport = transport

    def close(self) -> IO[None]:
        """Close the transport (TLS close_notify first, where TLS is active)."""
        self.conn.close()
        self._flight.clear()
        yield from perform(Close(self.transport))
