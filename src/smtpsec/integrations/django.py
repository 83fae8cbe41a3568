"""A Django email backend that submits mail through smtpsec (verified TLS, no downgrade).

It is configured like Django's own SMTP backend, in either of Django's two ways:

- Django 6.1 and later, ``MAILERS``: ``"BACKEND":
  "smtpsec.integrations.django.EmailBackend"`` with the SMTP backend's
  ``OPTIONS`` (``host``, ``port``, ``username``, ``password``, ``use_tls``,
  ``use_ssl``, ``timeout``, ``ssl_keyfile``, ``ssl_certfile``,
  ``fail_silently``) plus ``security`` and ``policy``. No ``EMAIL_*`` or
  ``SMTPSEC_*`` setting is read, and a misspelt option is Django's
  ``InvalidMailer`` naming it.
- Django 4.2 and 5.2 (and 6.1 without ``MAILERS``): ``EMAIL_BACKEND =
  "smtpsec.integrations.django.EmailBackend"`` and the usual ``EMAIL_*``
  settings, plus ``SMTPSEC_POLICY`` and ``SMTPSEC_SECURITY``.

Either way the security rules of RFC 8314 apply: ``use_tls`` is *required*
STARTTLS, ``use_ssl`` is implicit TLS, and with neither the connection still
never runs in cleartext (:attr:`~smtpsec.Security.AUTO`). Certificates are
always verified; trust a private CA with a :class:`~smtpsec.Policy`
(``policy`` option, or ``SMTPSEC_POLICY``).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email import _header_value_parser as header_parser
from email.errors import HeaderParseError
from email.header import Header
from email.headerregistry import Address
from email.message import Message
from typing import Any, Final

import django
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail.backends.base import BaseEmailBackend

from .._engine import envelope_from_headers
from ..client import Session, connect
from ..errors import SMTPSecError
from ..options import ConnectOptions
from ..policy import DEFAULT_POLICY, Policy, Security
from ..pool import Pool
from ..sending import SendResult

__all__ = ["DEFAULT_TIMEOUT", "EmailBackend"]

#: Django's ``EMAIL_TIMEOUT`` defaults to ``None`` (wait forever); a mail
#: backend that can hang a web request forever is a bug, so we bound it.
DEFAULT_TIMEOUT: Final[float] = 30.0

#: Django 6.1 added ``MAILERS``: a backend built from it receives ``alias=`` and
#: its ``OPTIONS`` as keyword arguments, and the ``EMAIL_*`` settings are deprecated.
_HAS_MAILERS: Final[bool] = tuple(django.VERSION[:2]) >= (6, 1)

#: Django's defaults for the ``EMAIL_*`` settings the backend reads
#: (``django/conf/global_settings.py``), for a settings object that lacks one.
_EMAIL_DEFAULTS: Final[Mapping[str, object]] = {
    "EMAIL_HOST": "localhost",
    "EMAIL_PORT": 25,
    "EMAIL_HOST_USER": "",
    "EMAIL_HOST_PASSWORD": "",
    "EMAIL_USE_TLS": False,
    "EMAIL_USE_SSL": False,
    "EMAIL_TIMEOUT": None,
    "EMAIL_SSL_KEYFILE": None,
    "EMAIL_SSL_CERTFILE": None,
}

#: How errors name each value: the setting in the ``EMAIL_*`` configuration...
_SETTING_NAMES: Final[Mapping[str, str]] = {
    "use_ssl": "EMAIL_USE_SSL",
    "use_tls": "EMAIL_USE_TLS",
    "security": "SMTPSEC_SECURITY",
    "policy": "SMTPSEC_POLICY",
    "ssl_keyfile": "EMAIL_SSL_KEYFILE",
    "ssl_certfile": "EMAIL_SSL_CERTFILE",
}
#: ...and the option under ``MAILERS``.
_OPTION_NAMES: Final[Mapping[str, str]] = {key: f"OPTIONS[{key!r}]" for key in _SETTING_NAMES}

#: smtpsec's own settings, which ``MAILERS`` replaces with per-mailer options.
_SMTPSEC_SETTINGS: Final[Mapping[str, str]] = {
    "SMTPSEC_POLICY": "policy",
    "SMTPSEC_SECURITY": "security",
}

#: The keyword arguments, for the message about an unknown one.
_ARGUMENTS: Final[str] = (
    "host, port, username, password, use_tls, fail_silently, use_ssl, timeout, "
    "ssl_keyfile, ssl_certfile, security, policy"
)


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
    ``get_connection(host=..., use_ssl=True)`` keeps working). Built from
    ``MAILERS`` (Django 6.1+), they are the mailer's ``OPTIONS`` and nothing
    else is read; otherwise each one that is ``None`` falls back to its
    ``EMAIL_*`` or ``SMTPSEC_*`` setting.

    Args:
        host: server name (``EMAIL_HOST``); the certificate must be valid for
            it. Required under ``MAILERS``.
        port: server port (``EMAIL_PORT``; Django's default is 25). Under
            ``MAILERS`` the default follows Django's SMTP backend: 465 for
            implicit TLS, 587 for STARTTLS, else 25.
        username: ``EMAIL_HOST_USER``; used only together with a password.
        password: ``EMAIL_HOST_PASSWORD``.
        use_tls: ``EMAIL_USE_TLS``: STARTTLS, required (never "if offered").
        fail_silently: swallow smtpsec errors; :meth:`send_messages` then
            returns the number of messages actually accepted.
        use_ssl: ``EMAIL_USE_SSL``: implicit TLS (port 465).
        timeout: ``EMAIL_TIMEOUT`` in seconds; ``None`` (in both, or as the
            option) means :data:`DEFAULT_TIMEOUT` (never "wait forever").
        ssl_keyfile: ``EMAIL_SSL_KEYFILE``, the client certificate's key.
        ssl_certfile: ``EMAIL_SSL_CERTFILE``, a client certificate presented
            when the server asks (RFC 8314 §5.5).
        security: a :class:`~smtpsec.Security` (or its value, e.g.
            ``"implicit_tls"``) overriding ``SMTPSEC_SECURITY`` and the
            ``use_tls``/``use_ssl`` mapping.
        policy: a :class:`~smtpsec.Policy` overriding ``SMTPSEC_POLICY``.
        alias: the ``MAILERS`` alias; Django's ``mail.mailers`` passes it.
        **kwargs: under ``MAILERS``, passed to Django's ``BaseEmailBackend``,
            which reports any unknown option. Otherwise there must be none.

    Raises:
        ImproperlyConfigured: ``use_tls`` and ``use_ssl`` are both true, a
            value has the wrong type, or the values contradict each other
            (under ``MAILERS``: Django's ``InvalidMailer``, a subclass, naming
            the mailer and the option, also for an unknown option, a missing
            ``host``, or an ``SMTPSEC_*`` setting that belongs in ``OPTIONS``).
        TypeError: an unknown keyword argument outside ``MAILERS``.

    Attributes:
        connection: the open :class:`~smtpsec.Session`, or ``None``.
        alias: the ``MAILERS`` alias, or ``None`` outside ``MAILERS``.
    """

    host: str
    username: str
    password: str
    use_tls: bool
    use_ssl: bool
    timeout: float
    ssl_keyfile: str | os.PathLike[str] | None
    ssl_certfile: str | os.PathLike[str] | None

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
        alias: str | None = None,
        **kwargs: Any,
    ) -> None:
        if alias is not None and _HAS_MAILERS:
            # Built by django.core.mail.mailers: Django raises InvalidMailer for
            # any option left in kwargs (a typo), and drops the ones it marked
            # as deprecated get_connection() overrides (_ignore_unknown_kwargs).
            super().__init__(alias=alias, **kwargs)
        else:
            if kwargs:
                names = ", ".join(repr(name) for name in kwargs)
                raise TypeError(
                    f"EmailBackend() got unknown keyword argument(s) {names}; it takes "
                    f"{_ARGUMENTS}. Check the spelling."
                )
            # Not fail_silently: Django 6.1 deprecates it in BaseEmailBackend.
            super().__init__()
        self.alias: str | None = alias
        # A backend that supports fail_silently keeps it itself (Django 6.1).
        self.fail_silently: bool = bool(fail_silently)
        self.connection: Session | None = None
        self._lock = threading.RLock()
        # Under MAILERS (built from it, or built by hand while the setting
        # exists) the arguments are the whole configuration.
        from_options = alias is not None or _mailers_configured()
        self._names: Mapping[str, str] = _OPTION_NAMES if from_options else _SETTING_NAMES
        connection_values = (host, port, username, password, use_tls, use_ssl, timeout)
        if from_options:
            requested_port = self._configure_from_options(
                *connection_values, ssl_keyfile, ssl_certfile
            )
            chosen_security: object = security
            chosen_policy: object = policy
        else:
            requested_port = self._configure_from_settings(
                *connection_values, ssl_keyfile, ssl_certfile
            )
            if security is None:
                security = getattr(settings, "SMTPSEC_SECURITY", None)
            if policy is None:
                policy = getattr(settings, "SMTPSEC_POLICY", None)
            chosen_security, chosen_policy = security, policy
        self.security: Security = self._security(chosen_security)
        self.policy: Policy = self._policy(chosen_policy)
        # Only MAILERS leaves the port open: Django's default for the mode then.
        self.port: int = _default_port(self.security) if requested_port is None else requested_port

    # ------------------------------------------------------------------ configuration

    def _configure_from_settings(
        self,
        host: str | None,
        port: int | None,
        username: str | None,
        password: str | None,
        use_tls: bool | None,
        use_ssl: bool | None,
        timeout: float | None,
        ssl_keyfile: str | os.PathLike[str] | None,
        ssl_certfile: str | os.PathLike[str] | None,
    ) -> int:
        """Django 4.2/5.2 (and 6.1 without MAILERS): arguments, else EMAIL_* settings.

        Returns:
            The port.
        """
        self.host = host or _email_setting("EMAIL_HOST")
        self.username = _email_setting("EMAIL_HOST_USER") if username is None else username
        self.password = _email_setting("EMAIL_HOST_PASSWORD") if password is None else password
        self.use_tls = bool(_email_setting("EMAIL_USE_TLS") if use_tls is None else use_tls)
        self.use_ssl = bool(_email_setting("EMAIL_USE_SSL") if use_ssl is None else use_ssl)
        if timeout is None:
            timeout = _email_setting("EMAIL_TIMEOUT")
        self.timeout = DEFAULT_TIMEOUT if timeout is None else float(timeout)
        self.ssl_keyfile = (
            _email_setting("EMAIL_SSL_KEYFILE") if ssl_keyfile is None else ssl_keyfile
        )
        self.ssl_certfile = (
            _email_setting("EMAIL_SSL_CERTFILE") if ssl_certfile is None else ssl_certfile
        )
        if self.use_ssl and self.use_tls:
            # Django's own wording, so the message is familiar.
            raise ImproperlyConfigured(
                "EMAIL_USE_TLS/EMAIL_USE_SSL are mutually exclusive, so only set "
                "one of those settings to True."
            )
        return int(port or _email_setting("EMAIL_PORT"))

    def _configure_from_options(
        self,
        host: str | None,
        port: int | None,
        username: str | None,
        password: str | None,
        use_tls: bool | None,
        use_ssl: bool | None,
        timeout: float | None,
        ssl_keyfile: str | os.PathLike[str] | None,
        ssl_certfile: str | os.PathLike[str] | None,
    ) -> int | None:
        """Django 6.1 MAILERS: the OPTIONS are the whole configuration.

        Returns:
            The port, or ``None`` when the options name none.
        """
        for setting, option in _SMTPSEC_SETTINGS.items():
            # Never ignore it silently: that would drop pins or a private CA.
            if getattr(settings, setting, None) is not None:
                raise self._error(
                    f"the {setting} setting is not used with MAILERS. Move its value "
                    f"to OPTIONS[{option!r}] of each mailer that needs it, and remove "
                    "the setting."
                )
        if not host:
            raise self._error(
                "OPTIONS must define 'host', the submission server's name (its "
                "certificate must be valid for it)."
            )
        self.host = str(host)
        self.username = "" if username is None else username
        self.password = "" if password is None else password
        self.use_tls = bool(use_tls)
        self.use_ssl = bool(use_ssl)
        self.timeout = DEFAULT_TIMEOUT if timeout is None else float(timeout)
        self.ssl_keyfile = ssl_keyfile
        self.ssl_certfile = ssl_certfile
        if self.use_ssl and self.use_tls:
            # Django's own wording for its SMTP backend's OPTIONS.
            raise self._error(
                "The 'use_ssl' and 'use_tls' OPTIONS are incompatible. "
                "Set at most one of them to True."
            )
        return None if port is None else int(port)

    def _error(self, message: str) -> ImproperlyConfigured:
        """A configuration error: ``InvalidMailer`` (naming the mailer) under MAILERS."""
        if self._names is _OPTION_NAMES:
            return _invalid_mailer(message, self.alias)
        return ImproperlyConfigured(message)

    def _security(self, requested: object) -> Security:
        names = self._names
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
            choices = ", ".join(f"Security.{s.name}" for s in Security)
            raise self._error(
                f"{names['security']} must be one of {choices}, not {requested!r}."
            ) from None
        if self.use_ssl and chosen is not Security.IMPLICIT_TLS:
            raise self._error(
                f"{names['use_ssl']} asks for implicit TLS but {names['security']} is "
                f"Security.{chosen.name}; set only one of them."
            )
        if self.use_tls and chosen is not Security.STARTTLS:
            raise self._error(
                f"{names['use_tls']} asks for required STARTTLS but {names['security']} is "
                f"Security.{chosen.name}; set only one of them."
            )
        return chosen

    def _policy(self, configured: object) -> Policy:
        names = self._names
        if configured is None:
            policy = DEFAULT_POLICY
        elif isinstance(configured, Policy):
            policy = configured
        else:
            raise self._error(
                f"{names['policy']} must be a smtpsec.Policy instance, e.g. "
                f"Policy(cafile='/etc/ssl/private-ca.pem'), not {type(configured).__name__}."
            )
        if not (self.ssl_certfile or self.ssl_keyfile):
            return policy
        if not self.ssl_certfile:
            raise self._error(
                f"{names['ssl_keyfile']} is set but {names['ssl_certfile']} is not; a "
                "client key needs its certificate."
            )
        if policy.client_cert is not None:
            raise self._error(
                f"{names['ssl_certfile']} and {names['policy']}.client_cert are both set; "
                "keep only one."
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
            try:
                self.connection = connect(self.host, self.port, **self._options())
            except OSError:  # every SMTPSecError, and an unreadable CA or key file
                # Django's contract: fail_silently swallows OSError from open().
                if self.fail_silently:
                    return None
                raise
            return True

    def _options(self) -> ConnectOptions:
        credentials = bool(self.username and self.password)
        return {
            "security": self.security,
            # Like Django: log in only when both parts are set.
            "username": self.username if credentials else None,
            "password": self.password if credentials else None,
            "policy": self.policy,
            "timeout": self.timeout,
        }

    def close(self) -> None:
        """Close the connection (QUIT, then TLS close_notify); never raises."""
        with self._lock:
            session, self.connection = self.connection, None
            if session is not None:
                session.close()

    # ------------------------------------------------------------------ sending

    def send_messages(self, email_messages: Sequence[Any]) -> int:
        """Send Django ``EmailMessage`` objects on one connection.

        Without a connection opened earlier with :meth:`open` (or ``with
        backend:``), the messages go on a session of the process-wide
        :meth:`smtpsec.Pool.shared` pool for this configuration: consecutive
        requests reuse an authenticated session instead of connecting,
        logging in and quitting each time. A connection opened with
        :meth:`open` is used and left open, as Django's backend does. Messages
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
            outgoing = [o for o in map(self._prepare, email_messages) if o is not None]
            if self.connection is not None and not self.connection.closed:
                outcomes = _deliver(self.connection, outgoing)
            else:
                pool = Pool.shared(self.host, self.port, **self._options())
                try:
                    with pool.session() as session:
                        outcomes = _deliver(session, outgoing)
                except OSError:  # every SMTPSecError, and an unreadable CA or key file
                    if self.fail_silently:
                        return 0
                    raise
        errors = [o for o in outcomes if isinstance(o, SMTPSecError)]
        if errors and not self.fail_silently:
            raise errors[0]
        return sum(isinstance(o, SendResult) for o in outcomes)

    def _prepare(self, email_message: Any) -> _Outgoing | None:
        if not email_message.recipients():
            return None
        encoding = email_message.encoding or settings.DEFAULT_CHARSET
        sender = _envelope_address(email_message.from_email, encoding)
        recipients = tuple(
            dict.fromkeys(_envelope_address(a, encoding) for a in email_message.recipients())
        )
        message = email_message.message()
        bcc = [_envelope_address(a, encoding) for a in email_message.bcc if a]
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


def _mailers_configured() -> bool:
    """Django 6.1+ with a ``MAILERS`` setting: ``EMAIL_*`` must not be read."""
    return _HAS_MAILERS and hasattr(settings, "MAILERS")


def _email_setting(name: str) -> Any:
    """One of Django's ``EMAIL_*`` settings, for the configuration without ``MAILERS``.

    Django 6.1 deprecates these settings and warns on every read through
    ``django.conf.settings``, blaming the reader; it exempts only its own
    modules, which is how its SMTP backend reads them without a warning. The
    warning is meant for the project that *sets* them, and Django already gives
    it there (for each one in the settings module, ``settings.configure()`` or
    ``override_settings()``). So, like Django's backend, we read the value
    without a second warning, from the settings object beneath the lazy proxy,
    where the proxy itself reads it.
    """
    default = _EMAIL_DEFAULTS[name]
    holder = getattr(settings, "_wrapped", None)
    if not _HAS_MAILERS or holder is None or not settings.configured:
        return getattr(settings, name, default)
    return getattr(holder, name, default)


def _invalid_mailer(message: str, alias: str | None) -> ImproperlyConfigured:
    """Django's ``InvalidMailer`` (6.1+): ``"MAILERS['alias']: message"``."""
    if _HAS_MAILERS:
        from django.core.mail import InvalidMailer

        return InvalidMailer(message, alias=alias)
    # Only reachable by passing alias= by hand on Django < 6.1.
    prefix = "" if alias is None else f"MAILERS[{alias!r}]: "
    return ImproperlyConfigured(prefix + message)


def _default_port(security: Security) -> int:
    """The port Django's SMTP backend uses under ``MAILERS`` when none is given."""
    if security is Security.IMPLICIT_TLS:
        return 465
    if security is Security.STARTTLS:
        return 587
    # Django's default. Security.AUTO requires STARTTLS here, never cleartext.
    return 25


def _envelope_address(address: object, encoding: str) -> str:
    """The envelope form (``MAIL FROM``/``RCPT TO``) of an address Django was given.

    This is what ``parseaddr(sanitize_address(address, encoding))[1]`` gave before
    Django 6.1 deprecated ``sanitize_address()``: the display name is dropped (it
    belongs in the headers, which Django encodes), the domain is IDNA-encoded
    (punycode), and a non-ASCII local part is RFC 2047-encoded with ``encoding``,
    as Django did.

    Raises:
        ValueError: ``address`` is not exactly one mailbox, or contains CR or LF
            (Django's rule and messages).
        UnicodeError: the domain cannot be IDNA-encoded.
    """
    if isinstance(address, tuple):  # (name, addr), which sanitize_address accepted
        name, addr = (str(part) for part in address)
        if "@" not in addr:
            raise ValueError(f'Invalid address "{addr}"')
        local_part, domain = addr.rsplit("@", 1)
    else:
        text = address.decode() if isinstance(address, bytes) else str(address)
        try:
            token, rest = header_parser.get_mailbox(text)
        except (HeaderParseError, ValueError, IndexError):
            raise ValueError(f'Invalid address "{text}"') from None
        if rest:
            # The entire address must be one mailbox.
            raise ValueError(f'Invalid address; only {token} could be parsed from "{text}"')
        name = token.display_name or ""
        local_part = token.local_part or ""
        domain = token.domain or ""
    if "\n" in name + local_part + domain or "\r" in name + local_part + domain:
        raise ValueError("Invalid address; address parts cannot contain newlines.")
    if not local_part.isascii():
        local_part = Header(local_part, encoding).encode()
    return Address(username=local_part, domain=domain.encode("idna").decode("ascii")).addr_spec


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
