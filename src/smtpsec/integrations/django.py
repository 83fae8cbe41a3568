"""A Django email backend that submits mail through smtpsec (verified TLS, no downgrade).

Set ``EMAIL_BACKEND = "smtpsec.integrations.django.EmailBackend"``. The usual
``EMAIL_*`` settings keep their meaning, with the security rules of RFC 8314:
``EMAIL_USE_TLS`` is *required* STARTTLS, ``EMAIL_USE_SSL`` is implicit TLS,
and with neither the connection still never runs in cleartext
(:attr:`~smtpsec.Security.AUTO`). Certificates are always verified; trust a
private CA with ``SMTPSEC_POLICY = smtpsec.Policy(cafile=...)``.
"""

from __future__ import annotations

import dataclasses
import email.utils
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.message import Message
from typing import Any, Final

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import sanitize_address

from .._engine import envelope_from_headers
from ..client import Session, connect
from ..errors import SMTPSecError
from ..policy import Policy, Security
from ..sending import SendResult

__all__ = ["DEFAULT_TIMEOUT", "EmailBackend"]

#: Django's ``EMAIL_TIMEOUT`` defaults to ``None`` (wait forever); a mail
#: backend that can hang a web request forever is a bug, so we bound it.
DEFAULT_TIMEOUT: Final[float] = 30.0


@dataclass(frozen=True, slots=True)
class _Outgoing:
    """One Django message turned into what smtpsec sends."""

    message: Message
    sender: str
    recipients: tuple[str, ...]
    # True when the envelope smtpsec derives from the headers is exactly this
    # one, so the message can join a pipelined ``send_many`` batch.
    batchable: bool


class EmailBackend(BaseEmailBackend):  # type: ignore[misc]  # Django ships no type hints
    """Send Django mail over a verified, never-downgraded TLS connection.

    Positional and keyword arguments are those of Django's SMTP backend (so
    ``get_connection(host=..., use_ssl=True)`` keeps working); each one that is
    ``None`` falls back to its setting.

    Args:
        host: server name (``EMAIL_HOST``); the certificate must be valid for it.
        port: server port (``EMAIL_PORT``; Django's default is 25).
        username: ``EMAIL_HOST_USER``; used only together with a password.
        password: ``EMAIL_HOST_PASSWORD``.
        use_tls: ``EMAIL_USE_TLS``: STARTTLS, required (never "if offered").
        fail_silently: swallow smtpsec errors; :meth:`send_messages` then
            returns the number of messages actually accepted.
        use_ssl: ``EMAIL_USE_SSL``: implicit TLS (port 465).
        timeout: ``EMAIL_TIMEOUT`` in seconds; ``None`` in both means
            :data:`DEFAULT_TIMEOUT` (never "wait forever").
        ssl_keyfile: ``EMAIL_SSL_KEYFILE``, the client certificate's key.
        ssl_certfile: ``EMAIL_SSL_CERTFILE``, a client certificate presented
            when the server asks (RFC 8314 §5.5).
        security: a :class:`~smtpsec.Security` (or its value, e.g.
            ``"implicit_tls"``) overriding ``SMTPSEC_SECURITY`` and the
            ``use_tls``/``use_ssl`` mapping.
        policy: a :class:`~smtpsec.Policy` overriding ``SMTPSEC_POLICY``.
        **kwargs: passed to Django's ``BaseEmailBackend``.

    Raises:
        ImproperlyConfigured: ``use_tls`` and ``use_ssl`` are both true, a
            setting has the wrong type, or the settings contradict each other.

    Attributes:
        connection: the open :class:`~smtpsec.Session`, or ``None``.
    """

    # The positional order copies Django's SMTP backend on purpose: code that
    # builds backends positionally keeps working after switching EMAIL_BACKEND.
    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool | None = None,
        fail_silently: bool = False,
        use_ssl: bool | None = None,
        timeout: float | None = None,
        ssl_keyfile: str | os.PathLike[str] | None = None,
        ssl_certfile: str | os.PathLike[str] | None = None,
        *,
        security: Security | str | None = None,
        policy: Policy | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(fail_silently=fail_silently, **kwargs)
        self.host: str = host or settings.EMAIL_HOST
        self.port: int = int(port or settings.EMAIL_PORT)
        self.username: str = settings.EMAIL_HOST_USER if username is None else username
        self.password: str = settings.EMAIL_HOST_PASSWORD if password is None else password
        self.use_tls: bool = bool(settings.EMAIL_USE_TLS if use_tls is None else use_tls)
        self.use_ssl: bool = bool(settings.EMAIL_USE_SSL if use_ssl is None else use_ssl)
        if timeout is None:
            timeout = getattr(settings, "EMAIL_TIMEOUT", None)
        self.timeout: float = DEFAULT_TIMEOUT if timeout is None else float(timeout)
        self.ssl_keyfile = settings.EMAIL_SSL_KEYFILE if ssl_keyfile is None else ssl_keyfile
        self.ssl_certfile = settings.EMAIL_SSL_CERTFILE if ssl_certfile is None else ssl_certfile
        if self.use_ssl and self.use_tls:
            # Django's own wording, so the message is familiar.
            raise ImproperlyConfigured(
                "EMAIL_USE_TLS/EMAIL_USE_SSL are mutually exclusive, so only set "
                "one of those settings to True."
            )
        if security is None:
            security = getattr(settings, "SMTPSEC_SECURITY", None)
        self.security: Security = self._security(security)
        if policy is None:
            policy = getattr(settings, "SMTPSEC_POLICY", None)
        self.policy: Policy = self._policy(policy)
        self.connection: Session | None = None
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ configuration

    def _security(self, requested: object) -> Security:
        if requested is None:
            if self.use_ssl:
                return Security.IMPLICIT_TLS
            if self.use_tls:
                return Security.STARTTLS
            # Neither flag: AUTO still never sends cleartext (port 25 or 587
            # means required STARTTLS, 465 implicit TLS).
            return Security.AUTO
        try:
            chosen = requested if isinstance(requested, Security) else Security(requested)
        except ValueError:
            names = ", ".join(f"Security.{s.name}" for s in Security)
            raise ImproperlyConfigured(
                f"SMTPSEC_SECURITY must be one of {names}, not {requested!r}."
            ) from None
        if self.use_ssl and chosen is not Security.IMPLICIT_TLS:
            raise ImproperlyConfigured(
                f"EMAIL_USE_SSL asks for implicit TLS but SMTPSEC_SECURITY is "
                f"Security.{chosen.name}; set only one of them."
            )
        if self.use_tls and chosen is not Security.STARTTLS:
            raise ImproperlyConfigured(
                f"EMAIL_USE_TLS asks for required STARTTLS but SMTPSEC_SECURITY is "
                f"Security.{chosen.name}; set only one of them."
            )
        return chosen

    def _policy(self, configured: object) -> Policy:
        if configured is None:
            policy = Policy()
        elif isinstance(configured, Policy):
            policy = configured
        else:
            raise ImproperlyConfigured(
                "SMTPSEC_POLICY must be a smtpsec.Policy instance, e.g. "
                f"Policy(cafile='/etc/ssl/private-ca.pem'), not {type(configured).__name__}."
            )
        if not (self.ssl_certfile or self.ssl_keyfile):
            return policy
        if not self.ssl_certfile:
            raise ImproperlyConfigured(
                "EMAIL_SSL_KEYFILE is set but EMAIL_SSL_CERTFILE is not; a client key "
                "needs its certificate."
            )
        if policy.client_cert is not None:
            raise ImproperlyConfigured(
                "EMAIL_SSL_CERTFILE and SMTPSEC_POLICY.client_cert are both set; keep only one."
            )
        certfile = os.fspath(self.ssl_certfile)
        # Without a separate key file the key is read from the certificate file,
        # as ssl.SSLContext.load_cert_chain does.
        keyfile = os.fspath(self.ssl_keyfile) if self.ssl_keyfile else certfile
        return dataclasses.replace(policy, client_cert=(certfile, keyfile))

    # ------------------------------------------------------------------ connection

    def open(self) -> bool | None:
        """Ensure a connection is open.

        Returns:
            ``True`` when a new connection was made, ``False`` when one was
            already open, ``None`` when opening failed and ``fail_silently``
            is set (Django's contract).

        Raises:
            SMTPSecError: the connection failed (a :class:`~smtpsec.SecurityError`
                when a security requirement was not met; nothing was sent).
            OSError: a CA or client-certificate file could not be read.
        """
        with self._lock:
            if self.connection is not None and not self.connection.closed:
                return False
            self.connection = None
            credentials = bool(self.username and self.password)
            try:
                self.connection = connect(
                    self.host,
                    self.port,
                    security=self.security,
                    # Like Django: log in only when both parts are set.
                    username=self.username if credentials else None,
                    password=self.password if credentials else None,
                    policy=self.policy,
                    timeout=self.timeout,
                )
            except OSError:  # every SMTPSecError, and an unreadable CA or key file
                # Django's contract: fail_silently swallows OSError from open().
                if self.fail_silently:
                    return None
                raise
            return True

    def close(self) -> None:
        """Close the connection (QUIT, then TLS close_notify); never raises."""
        with self._lock:
            session, self.connection = self.connection, None
            if session is not None:
                session.close()

    # ------------------------------------------------------------------ sending

    def send_messages(self, email_messages: Sequence[Any]) -> int:
        """Send Django ``EmailMessage`` objects on one connection.

        A connection opened here is closed at the end; one opened earlier with
        :meth:`open` (or ``with backend:``) is reused and left open. Messages
        whose envelope matches their headers are pipelined together with
        :meth:`smtpsec.Session.send_many`; Bcc recipients travel only in the
        envelope.

        Args:
            email_messages: ``django.core.mail.EmailMessage`` objects.

        Returns:
            How many messages the server accepted. Messages without recipients
            are skipped, as Django does.

        Raises:
            SMTPSecError: the first failure, after the whole batch was tried,
                unless ``fail_silently`` is set.
        """
        if not email_messages:
            return 0
        with self._lock:
            new_connection = self.open()
            if self.connection is None or new_connection is None:
                return 0  # opening failed silently
            try:
                outgoing = [o for o in map(self._prepare, email_messages) if o is not None]
                outcomes = _deliver(self.connection, outgoing)
            finally:
                if new_connection:
                    self.close()
        errors = [o for o in outcomes if isinstance(o, SMTPSecError)]
        if errors and not self.fail_silently:
            raise errors[0]
        return sum(isinstance(o, SendResult) for o in outcomes)

    def _prepare(self, email_message: Any) -> _Outgoing | None:
        if not email_message.recipients():
            return None
        encoding = email_message.encoding or settings.DEFAULT_CHARSET
        sender = _bare(sanitize_address(email_message.from_email, encoding))
        recipients = tuple(
            dict.fromkeys(_bare(sanitize_address(a, encoding)) for a in email_message.recipients())
        )
        message = email_message.message()
        bcc = [_bare(sanitize_address(a, encoding)) for a in email_message.bcc if a]
        if bcc:
            # smtpsec removes Bcc before transmission; here it only lets the
            # header-derived envelope include those recipients.
            message["Bcc"] = ", ".join(bcc)
        try:
            derived_sender, derived = envelope_from_headers(message)
        except SMTPSecError:
            batchable = False
        else:
            batchable = derived_sender == sender and tuple(dict.fromkeys(derived)) == recipients
        return _Outgoing(message, sender, recipients, batchable)


def _bare(address: str) -> str:
    """``"Name" <a@b>`` → ``a@b`` (the envelope takes bare addresses)."""
    return email.utils.parseaddr(address)[1] or address


def _deliver(session: Session, outgoing: Iterable[_Outgoing]) -> list[SendResult | SMTPSecError]:
    """Send in order: runs of batchable messages in one pipelined ``send_many``."""
    outcomes: list[SendResult | SMTPSecError] = []
    batch: list[_Outgoing] = []

    def flush() -> None:
        if not batch:
            return
        try:
            outcomes.extend(session.send_many([item.message for item in batch]))
        except SMTPSecError as exc:  # the connection failed: none of them is known sent
            outcomes.extend([exc] * len(batch))
        batch.clear()

    for item in outgoing:
        if item.batchable:
            batch.append(item)
            continue
        flush()
        try:
            outcomes.append(
                session.send(item.message, sender=item.sender, recipients=item.recipients)
            )
        except SMTPSecError as exc:
            outcomes.append(exc)
    flush()
    return outcomes
