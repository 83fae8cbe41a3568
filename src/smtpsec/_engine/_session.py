"""What a blocking and an asyncio session share: their state and their dialogue steps.

Each ``*_steps`` method is a generator of I/O requests (see :mod:`._io`);
:class:`smtpsec.Session` runs them blocking and
:class:`smtpsec.aio.AsyncSession` awaits them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Final

from ..errors import ConnectError, LocalProtocolError, SMTPSecError
from ..guard import Finding
from ..report import SecurityReport
from ..sansio import Command, Extensions, Reply, State
from ..sending import MessageInput, Outgoing, SendOptions, SendResult
from . import _phases
from ._io import IO
from ._message import PreparedMessage, prepare_message
from ._setup import Established
from ._transactions import run_transactions

__all__ = ["SessionState", "emit", "single"]


def emit(findings: list[Finding], *, stacklevel: int) -> None:
    """Warn about each finding once (the list is emptied), pointing ``stacklevel``
    frames above the caller of this function: the user's own line."""
    pending = list(findings)
    findings.clear()
    for finding in pending:
        warnings.warn(finding.message, finding.category, stacklevel=stacklevel + 1)


def single(outcomes: list[SendResult | SMTPSecError]) -> SendResult:
    """The one outcome of a one-message send: the result, or its error raised."""
    (outcome,) = outcomes
    if isinstance(outcome, SMTPSecError):
        raise outcome
    return outcome


#: Messages prepared and pipelined together by ``send_many``; later ones wait
#: for the next window, so memory does not grow with the number of messages.
SEND_WINDOW: Final = 200


class SessionState:
    """An open, checked session's state and steps (the facades add the driving).

    Attributes:
        report: the :class:`~smtpsec.report.SecurityReport` of this session.
    """

    def __init__(self, established: Established) -> None:
        self._wire = established.wire
        self._guard = established.guard
        self.report: SecurityReport = established.report
        self._extensions = established.extensions
        self._needs_rset = False
        self._closed = False

    @property
    def extensions(self) -> Extensions:
        """The server's extensions from the EHLO that followed TLS."""
        return self._extensions

    @property
    def closed(self) -> bool:
        """True after ``close()`` or after an error that ended the connection."""
        return self._closed or self._wire.conn.state is State.CLOSED

    def _require_open(self) -> None:
        if self.closed:
            raise LocalProtocolError("this session is closed; open a new one with connect()")

    def _send_steps(
        self,
        items: Iterable[MessageInput | Outgoing],
        options: SendOptions | None,
        *,
        then_quit: bool = False,
    ) -> IO[list[SendResult | SMTPSecError]]:
        """Send ``items`` in windows of :data:`SEND_WINDOW` messages.

        ``items`` is read one window at a time and each window's messages are
        released once sent, so memory stays flat for any number of messages
        (a generator of 40,000 costs what one window costs); within a window
        everything is pipelined. ``then_quit`` (the one-shot send of a single
        message) lets ``QUIT`` ride in the message's last flight where the
        server allows it, and the connection is then closed; otherwise
        ``close()`` says QUIT as usual.
        """
        self._require_open()
        self._guard.before_mail(self._wire.transport.tls)
        outcomes: list[SendResult | SMTPSecError] = []
        window: list[MessageInput | Outgoing] = []
        for item in items:
            window.append(item)
            if len(window) == SEND_WINDOW:
                outcomes += yield from self._send_window(window, options)
                window = []
        if window or not outcomes:
            outcomes += yield from self._send_window(window, options, then_quit=then_quit)
        return outcomes

    def _send_one_steps(
        self,
        message: MessageInput,
        sender: str | None,
        recipients: Iterable[str] | None,
        options: SendOptions | None,
        *,
        then_quit: bool = False,
    ) -> IO[SendResult]:
        """One message: its result, or its error raised (``then_quit`` as for ``_send_steps``)."""
        item = Outgoing(message, sender, recipients)
        return single((yield from self._send_steps([item], options, then_quit=then_quit)))

    def _send_window(
        self,
        items: list[MessageInput | Outgoing],
        options: SendOptions | None,
        *,
        then_quit: bool = False,
    ) -> IO[list[SendResult | SMTPSecError]]:
        slots: list[SendResult | SMTPSecError | None] = []
        ready: list[PreparedMessage] = []
        for item in items:
            if not isinstance(item, Outgoing):
                item = Outgoing(item)
            try:
                ready.append(
                    prepare_message(item.message, sender=item.sender, recipients=item.recipients)
                )
                slots.append(None)
            except SMTPSecError as exc:
                slots.append(exc)
        outcomes: list[SendResult | SMTPSecError] = []
        if ready:
            if self.closed:
                # An earlier window ended the connection: these were not sent.
                error = ConnectError("not sent: the connection had already failed")
                outcomes = [error] * len(ready)
            else:
                try:
                    outcomes, self._needs_rset = yield from run_transactions(
                        self._wire,
                        self._extensions,
                        ready,
                        options or SendOptions(),
                        needs_rset=self._needs_rset,
                        then_quit=then_quit,
                    )
                finally:
                    if self._wire.conn.state is State.CLOSED:
                        self._closed = True
        sent = iter(outcomes)
        return [slot if slot is not None else next(sent) for slot in slots]

    def _noop_steps(self) -> IO[Reply]:
        self._require_open()
        try:
            return (yield from self._wire.command(Command("NOOP")))
        except BaseException:
            # No reply (timeout, drop, cancellation): one may still be in flight and
            # would be taken as the next command's answer, so the session ends here.
            yield from self._abandon_steps()
            raise

    def _check_idle_steps(self) -> IO[None]:
        try:
            yield from self._wire.check_idle()
        except SMTPSecError:
            self._closed = True
            raise

    def _abandon_steps(self) -> IO[None]:
        """Close the connection without QUIT (a reply may still be due)."""
        self._closed = True
        yield from _phases.abandon(self._wire)

    def _close_steps(self) -> IO[None]:
        if self._closed:
            return
        self._closed = True
        yield from _phases.quit_quietly(self._wire)
