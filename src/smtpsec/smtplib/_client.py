"""``SMTP``: smtplib's class as a facade over the engine (mail on top of TLS and AUTH).

Every method keeps smtplib's contract step by step (what it sends, what it
returns, which exception class it raises), but the work is the engine's: the
Wire owns the socket and checks for unsolicited replies before each flight,
the engine parses and bounds replies, validates every command with the one
character and address rule set, runs the one STARTTLS switch and the one AUTH
loop, and sends mail with the native transaction engine. The guard decides,
with its fixes worded for drop-in users (:data:`smtpsec._advice.DROP_IN`).

The class is built in layers, one module each: the connection and EHLO
(``_session``), STARTTLS and AUTH (``_secure``), mail (here); ``SMTP_SSL`` and
``LMTP`` are in ``_variants``.
"""

from __future__ import annotations

import contextlib
import smtplib as _std
import warnings
from collections.abc import Sequence
from dataclasses import replace
from email.message import Message
from typing import TYPE_CHECKING

from .._engine import (
    PreparedMessage,
    check_headers,
    envelope_from_headers,
    flatten,
    prepare_message,
    run_transactions,
)
from ..errors import (
    CapabilityError,
    ConnectError,
    InsecureConfigurationWarning,
    InvalidArgumentError,
    RecipientsRefused,
    RemoteProtocolError,
    ReplyError,
    SenderRefused,
    ServerClosing,
    SMTPSecError,
)
from ..errors import TimeoutError as DeadlineError
from ..sansio import (
    Command,
    DataEncoder,
    Extensions,
    State,
)
from ..sending import SendOptions, SendResult
from . import _errors as errors
from ._commands import (
    address_command,
    envelope_address,
    message_bytes,
    refusal_bytes,
    reply_bytes,
    send_options,
    stdlib_wording,
    text_bytes,
)
from ._secure import _Secured

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, SizedBuffer

__all__ = ["SMTP"]


class SMTP(_Secured):
    """:class:`smtplib.SMTP` with verified TLS, fail-closed STARTTLS and safe AUTH.

    Every public method of :class:`smtplib.SMTP` works as documented there,
    except where ``docs/migration-smtplib.md`` says otherwise.

    Args:
        host: connect to this host at once (like smtplib; the greeting must be 220).
        port: the port (default 25; a ``host:port`` suffix also works).
        local_hostname: the EHLO name; default ``[127.0.0.1]``, never the
            machine's FQDN (R-PY-12). Validated and IDNA-encoded when used.
        timeout: seconds for connect, TLS handshake and each whole reply; default
            the socket module's default timeout, else 60 (never "forever", R-PY-11).
        source_address: ``(host, port)`` to bind before connecting.
        allow_cleartext_auth: let ``login()`` send credentials without verified
            TLS. Honoured only for loopback hosts (test servers); any other host
            raises :class:`~smtpsec.PolicyError` at connect time.
        proxy: smtpsec's keyword (smtplib has none): connect through a SOCKS5,
            SOCKS4a or HTTP CONNECT proxy, a URL such as
            ``"socks5h://user:pw@127.0.0.1:1080"`` or a :class:`smtpsec.Proxy`.
            The proxy resolves the name; certificates are still checked
            against ``host``. A proxy failure is :class:`smtpsec.ProxyError`
            (an ``OSError``, as smtplib's connection errors are).

    Raises:
        SMTPConnectError: the greeting was not 220 (also a :class:`smtpsec.ReplyError`).
        PolicyError: ``allow_cleartext_auth=True`` for a non-loopback host.
    """

    # ------------------------------------------------------------------ mail

    def _before_mail(self) -> None:
        """Warn once per connection when a message is about to leave without TLS."""
        if self._tls is None and not self._local and not self._warned_cleartext:
            self._warned_cleartext = True
            warnings.warn(
                f"sending mail to {self._peer} without TLS: anyone on the path can read and "
                "change it. Call starttls() after connecting, or use SMTP_SSL",
                InsecureConfigurationWarning,
                stacklevel=4,
            )

    def mail(self, sender: str, options: Sequence[str] = ()) -> tuple[int, bytes]:
        """MAIL FROM; the address and options are checked by the engine's rules first."""
        self.ehlo_or_helo_if_needed()
        options = list(options) if self.does_esmtp else []
        if any(option.lower() == "smtputf8" for option in options if isinstance(option, str)):
            if not self.has_extn("smtputf8"):
                raise errors.ExtensionNotSupported("SMTPUTF8 not supported by server")
            self.command_encoding = "utf-8"
        line = f"mail FROM:{_std.quoteaddr(sender)}" + "".join(f" {o}" for o in options)
        try:
            command = address_command("MAIL", sender, options)
        except InvalidArgumentError as exc:
            raise stdlib_wording(line, exc) from None
        self._before_mail()
        self._accepted = []
        reply = self._command(command, line)
        return reply.code, reply_bytes(reply)

    def rcpt(self, recip: str, options: Sequence[str] = ()) -> tuple[int, bytes]:
        """RCPT TO; the address and options are checked by the engine's rules first."""
        self.ehlo_or_helo_if_needed()
        options = list(options) if self.does_esmtp else []
        line = f"rcpt TO:{_std.quoteaddr(recip)}" + "".join(f" {o}" for o in options)
        try:
            command = address_command("RCPT", recip, options)
        except InvalidArgumentError as exc:
            raise stdlib_wording(line, exc) from None
        reply = self._command(command, line)
        if reply.code in (250, 251):
            self._accepted.append(recip)
        return reply.code, reply_bytes(reply)

    def rset(self) -> tuple[int, bytes]:
        """RSET: abort the current transaction."""
        self._accepted = []
        self._needs_rset = False
        return super().rset()

    def data(self, msg: ReadableBuffer | str) -> tuple[int, bytes]:
        """DATA with normalised line ends and dot-stuffing, also for bytes (R-PY-10).

        Returns:
            The final reply; for LMTP the first failing per-recipient reply, or
            the first reply when all succeeded.

        Raises:
            SMTPDataError: DATA was not answered 354 (also a :class:`smtpsec.ReplyError`).
            SMTPNotSupportedError: the message has 8-bit octets and the server
                does not offer 8BITMIME (checked before DATA is sent).
            UnicodeEncodeError: a ``str`` message that is not ASCII (as smtplib),
                raised before DATA is sent.
        """
        body = message_bytes(msg)
        if not body.isascii() and "8BITMIME" not in self._extensions:
            raise errors.ExtensionNotSupported(
                "the message contains 8-bit octets but the server does not offer 8BITMIME; "
                "nothing was sent. Transfer-encode the body (quoted-printable or base64), "
                "or use send_message(), which does it for you"
            )
        reply = self._command(Command("DATA"), "data")
        if self.debuglevel > 0:
            self._debug("data:", (reply.code, reply_bytes(reply)))
        if reply.code != 354:
            raise errors.DataRefused(
                f"{self._peer} refused DATA with {reply.code}",
                code=reply.code,
                msg=reply_bytes(reply),
                tls=self._tls is not None,
            )
        wire = self._require_wire()
        encoder = DataEncoder()
        wire.queue_content(encoder.feed(body) + encoder.finish())
        wire.log_content(encoder.body_octets)
        count = max(1, len(self._accepted)) if self._lmtp else 1
        wire.end_data(replies=count)
        finals = [self._read_reply() for _ in range(count)]
        if self.debuglevel > 0:
            self._debug("data:", [(r.code, reply_bytes(r)) for r in finals])
        failed = [r for r in finals if r.code != 250]
        chosen = failed[0] if failed else finals[0]
        return chosen.code, reply_bytes(chosen)

    def sendmail(
        self,
        from_addr: str,
        to_addrs: str | Sequence[str],
        msg: SizedBuffer | str,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> dict[str, tuple[int, bytes]]:
        """Send one message with smtplib's contract; on the wire, the native engine's.

        Addresses, options and the message are checked before anything is
        sent; line ends are normalised (R-PY-10); SIZE is the exact size; the
        envelope (and with CHUNKING the body) is pipelined when offered. Mail
        over a non-loopback connection without TLS emits an
        :class:`~smtpsec.InsecureConfigurationWarning` once per connection.

        Returns:
            The refused recipients, ``{address: (code, msg)}``, like smtplib.
        """
        self.ehlo_or_helo_if_needed()
        body = message_bytes(_std._fix_eols(msg) if isinstance(msg, str) else msg)  # type: ignore[attr-defined]
        recipients = [to_addrs] if isinstance(to_addrs, str) else list(to_addrs)
        options, utf8, eight_bit = send_options(mail_options, rcpt_options)
        try:
            sender = envelope_address(from_addr, "MAIL")
            # smtplib reports refusals under the caller's own spelling of each address.
            given = {envelope_address(r, "RCPT"): r for r in recipients}
            prepared = prepare_message(
                body, sender=sender, recipients=list(given), allow_unqualified=True
            )
        except InvalidArgumentError as exc:
            if not recipients:
                raise errors.RecipientsRefusedError(
                    "sendmail() was given no recipients; nothing was sent", recipients={}
                ) from None
            raise stdlib_wording(f"mail FROM:{from_addr}", exc) from None
        if utf8 or eight_bit:
            # What the caller declared about the content counts: the engine then
            # sends SMTPUTF8 / BODY=8BITMIME (or refuses before anything if the
            # server lacks them).
            prepared = replace(
                prepared,
                smtputf8=prepared.smtputf8 or utf8,
                eight_bit=prepared.eight_bit or eight_bit,
            )
        return self._transaction(prepared, options, from_addr, given)

    def _transaction(
        self,
        prepared: PreparedMessage,
        options: SendOptions,
        from_addr: str,
        given: dict[str, str],
    ) -> dict[str, tuple[int, bytes]]:
        wire = self._require_wire()
        extensions = self._extensions if self.does_esmtp else Extensions()
        self._before_mail()
        outcomes, self._needs_rset = self._run(
            run_transactions(
                wire,
                extensions,
                [prepared],
                options,
                needs_rset=self._needs_rset,
                lmtp=self._lmtp,
            )
        )
        (outcome,) = outcomes
        if isinstance(outcome, SendResult):
            return {
                given.get(address, address): (
                    refusal.code,
                    refusal_bytes(refusal.enhanced_status, refusal.text),
                )
                for address, refusal in outcome.refused.items()
            }
        error = self._stdlib_outcome(outcome, from_addr, given)
        if self._wire is not None and not isinstance(
            outcome, CapabilityError | InvalidArgumentError
        ):
            # smtplib resets the transaction right after a refusal.
            with contextlib.suppress(SMTPSecError):
                self.rset()
        raise error

    def _stdlib_outcome(
        self, error: SMTPSecError, sender: str, given: dict[str, str]
    ) -> BaseException:
        """A failed transaction in smtplib's classes (the connection closed if it broke)."""
        tls = self._tls is not None
        broken = self._wire is None or self._wire.conn.state is State.CLOSED
        if broken:
            self.close()
        if isinstance(error, SenderRefused):
            return errors.SenderRefusedError(
                str(error), code=error.code, msg=text_bytes(error), sender=sender, tls=tls
            )
        if isinstance(error, ServerClosing) and error.command == "RCPT":
            # smtplib: a 421 to RCPT closes and reports the refusals so far.
            refused = {
                given.get(address, address): (code, refusal_bytes(status, text))
                for address, (code, status, text) in error.refused.items()
            }
            return errors.RecipientsRefusedError(str(error), recipients=refused, tls=tls)
        if isinstance(error, RecipientsRefused):
            refused = {
                given.get(address, address): (code, refusal_bytes(status, text))
                for address, (code, status, text) in error.refused.items()
            }
            return errors.RecipientsRefusedError(str(error), recipients=refused, tls=tls)
        if isinstance(error, CapabilityError):
            return errors.ExtensionNotSupported(str(error))
        if isinstance(error, ReplyError):
            return errors.DataRefused(str(error), code=error.code, msg=text_bytes(error), tls=tls)
        if isinstance(error, DeadlineError):
            return errors.ReplyTimeout(str(error))
        if isinstance(error, RemoteProtocolError):
            return error  # an SMTPException already; the stream was not trustworthy
        if isinstance(error, ConnectError) or broken:
            return errors.ServerDisconnected(str(error))
        return error

    def send_message(
        self,
        msg: Message,
        from_addr: str | None = None,
        to_addrs: str | Sequence[str] | None = None,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> dict[str, tuple[int, bytes]]:
        """smtplib's ``send_message``: envelope from the headers, Bcc removed, then
        :meth:`sendmail`; header injection is refused first (R-PY-18), and an
        8-bit message for a server without 8BITMIME is re-encoded to 7 bit."""
        self.ehlo_or_helo_if_needed()
        check_headers(msg)
        if from_addr is None or to_addrs is None:
            sender, recipients = envelope_from_headers(msg)
            from_addr = sender if from_addr is None else from_addr
            to_addrs = recipients if to_addrs is None else to_addrs
        recipients = [to_addrs] if isinstance(to_addrs, str) else list(to_addrs)
        international = not "".join([from_addr, *recipients]).isascii()
        options = tuple(mail_options)
        if international:
            if not self.has_extn("smtputf8"):
                raise errors.ExtensionNotSupported(
                    "One or more source or delivery addresses require internationalized "
                    "email support, but the server does not advertise the required SMTPUTF8 "
                    "capability"
                )
            options = (*options, "SMTPUTF8", "BODY=8BITMIME")
        seven_bit = "8BITMIME" not in self._extensions
        flat = flatten(msg, utf8=international, seven_bit=seven_bit and not international)
        return self.sendmail(from_addr, recipients, flat, options, rcpt_options)
