"""A verified-TLS replacement for :class:`logging.handlers.SMTPHandler`.

The stdlib handler starts TLS only when credentials are given, then without
certificate verification, and has no implicit TLS (R-PY-14). This one takes the
same arguments but always sends with :func:`smtpsec.send`: implicit TLS on
port 465, required STARTTLS elsewhere, certificates verified, never cleartext.
"""

from __future__ import annotations

import dataclasses
import email.utils
import logging
import logging.handlers
import threading
from collections.abc import Sequence
from email.message import EmailMessage

from ..errors import InvalidArgumentError
from ..policy import DEFAULT_POLICY, Policy, Security
from ..pool import Pool

__all__ = ["SMTPHandler"]


class SMTPHandler(logging.handlers.SMTPHandler):
    """E-mail each log record over verified TLS (drop-in for the stdlib handler).

    It is a subclass of :class:`logging.handlers.SMTPHandler`, so
    ``getSubject`` overrides and ``isinstance`` checks keep working.

    Args:
        mailhost: ``"host"`` or ``("host", port)``. Port 465 uses implicit TLS,
            any other port required STARTTLS; no port tries 465, then 587.
        fromaddr: the ``From`` address (also the envelope sender).
        toaddrs: one address or a list of them.
        subject: the ``Subject`` (override :meth:`getSubject` to vary it).
        credentials: ``(username, password)`` for SMTP AUTH, sent only inside
            verified TLS.
        secure: accepted for compatibility. ``()`` changes nothing (TLS is
            always on and verified); ``(keyfile,)`` or ``(keyfile, certfile)``
            present a client certificate. It never means "unverified".
        timeout: seconds for connecting, the TLS handshake and each reply, so
            a stuck server cannot block logging forever.
        policy: trust settings (e.g. ``Policy(cafile=...)`` for a private CA);
            a client certificate from ``secure`` is added to it.
        security: how TLS starts; :attr:`~smtpsec.Security.AUTO` by default.

    Raises:
        InvalidArgumentError: ``secure`` has more than two items, or both
            ``secure`` and ``policy`` name a client certificate.
    """

    def __init__(
        self,
        mailhost: str | tuple[str, int],
        fromaddr: str,
        toaddrs: str | Sequence[str],
        subject: str,
        credentials: tuple[str, str] | None = None,
        secure: tuple[()] | tuple[str] | tuple[str, str] | None = None,
        timeout: float = 5.0,
        *,
        policy: Policy | None = None,
        security: Security = Security.AUTO,
    ) -> None:
        super().__init__(
            mailhost,
            fromaddr,
            list(toaddrs) if not isinstance(toaddrs, str) else toaddrs,
            subject,
            credentials=credentials,
            secure=secure,
            timeout=timeout,
        )
        self.policy: Policy = _with_client_cert(policy or DEFAULT_POLICY, secure)
        self.security: Security = security
        # Records logged *while* a record is being mailed (e.g. smtpsec's own
        # transcript at DEBUG when this handler sits on the root logger) would
        # each send another mail: recursion. They are dropped instead.
        self._sending = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        """Format ``record`` and mail it; failures go to :meth:`handleError`.

        Args:
            record: the log record.
        """
        if getattr(self._sending, "active", False):
            return
        self._sending.active = True
        try:
            message = EmailMessage()
            message["From"] = self.fromaddr
            message["To"] = ",".join(self.toaddrs)
            message["Subject"] = self.getSubject(record)
            message["Date"] = email.utils.localtime()
            message.set_content(self.format(record))
            username = getattr(self, "username", None)
            # A process-wide pool: a burst of records reuses one authenticated
            # session instead of connecting and logging in for each.
            pool = Pool.shared(
                self.mailhost,
                self.mailport or None,
                security=self.security,
                username=username or None,
                password=self.password if username else None,
                policy=self.policy,
                timeout=self.timeout,
            )
            pool.send(message)
        except RecursionError:  # the stdlib re-raises this one too
            raise
        except Exception:
            self.handleError(record)
        finally:
            self._sending.active = False


def _with_client_cert(
    policy: Policy, secure: tuple[()] | tuple[str] | tuple[str, str] | None
) -> Policy:
    """Fold the stdlib ``secure=(keyfile, certfile)`` tuple into ``policy``."""
    if not secure:
        return policy
    if len(secure) > 2:
        raise InvalidArgumentError(
            "secure= takes (), (keyfile,) or (keyfile, certfile); for trust settings "
            "pass policy=Policy(cafile=...)"
        )
    if policy.client_cert is not None:
        raise InvalidArgumentError(
            "both secure= and policy.client_cert name a client certificate; keep one"
        )
    keyfile = secure[0]
    # (keyfile,) alone: the certificate and key live in the same PEM file.
    certfile = secure[1] if len(secure) == 2 else keyfile
    return dataclasses.replace(policy, client_cert=(certfile, keyfile))
