"""Drop-in replacement for the standard library's :mod:`smtplib` that is safe by default.

Change one import and existing code keeps running, with smtpsec's defaults::

    from smtpsec import smtplib          # was: import smtplib

    with smtplib.SMTP_SSL("smtp.example.com") as s:
        s.login("ann", "secret")
        s.send_message(msg)

What changes (each item is in ``docs/migration-smtplib.md`` with its reason):

* ``SMTP_SSL(context=None)`` and ``starttls(context=None)`` verify the
  certificate chain and host name with :func:`smtpsec.tls.build_context`
  (TLS >= 1.2, certifi roots) instead of not verifying at all (R-PY-1). A
  private CA or a test server therefore needs ``context=``.
* ``starttls()`` fails closed: STARTTLS missing, refused, or followed by
  injected bytes closes the connection with a :class:`~smtpsec.DowngradeError`
  that old ``except smtplib.SMTP...`` clauses also catch; everything learnt
  before TLS is forgotten, and no HELO fallback happens inside TLS (R-PY-2,
  R-PY-7, R-PY-8, R-PY-17).
* ``login()``/``auth()`` send credentials only over verified TLS, treat only
  ``235`` as success and try exactly one mechanism (R-PY-3, R-PY-4, R-PY-5).
* Commands, addresses and options are checked by the same rules as the native
  API (control characters, address syntax, line lengths); message line ends
  are normalised, also for ``bytes`` (R-PY-9, R-PY-10).
* Every reply is bounded in size and must arrive within ``timeout`` (60 s when
  not given); EHLO says ``[127.0.0.1]`` unless told otherwise (R-PY-11, R-PY-12).
* ``set_debuglevel()`` output shows ``<redacted>`` instead of AUTH payloads.

Every exception raised is both the standard library's class (so ``except
smtplib.SMTPException`` works whichever module raised) and an
:class:`~smtpsec.SMTPSecError`; the classes below are documented in
``docs/migration-smtplib.md``. The constants and helpers are the standard
library's own objects.
"""

# Code (and CPython's own tests) that patch ``smtplib.socket`` replace this one;
# the classes look it up here at call time.
import socket as socket
from smtplib import CRLF as CRLF
from smtplib import LMTP_PORT as LMTP_PORT
from smtplib import OLDSTYLE_AUTH as OLDSTYLE_AUTH
from smtplib import SMTP_PORT as SMTP_PORT
from smtplib import SMTP_SSL_PORT as SMTP_SSL_PORT
from smtplib import SMTPAuthenticationError as SMTPAuthenticationError
from smtplib import SMTPConnectError as SMTPConnectError
from smtplib import SMTPDataError as SMTPDataError
from smtplib import SMTPException as SMTPException
from smtplib import SMTPHeloError as SMTPHeloError
from smtplib import SMTPNotSupportedError as SMTPNotSupportedError
from smtplib import SMTPRecipientsRefused as SMTPRecipientsRefused
from smtplib import SMTPResponseException as SMTPResponseException
from smtplib import SMTPSenderRefused as SMTPSenderRefused
from smtplib import SMTPServerDisconnected as SMTPServerDisconnected
from smtplib import bCRLF as bCRLF
from smtplib import quoteaddr as quoteaddr
from smtplib import quotedata as quotedata

from .._types import MAX_REPLY_LINE
from ._client import SMTP
from ._errors import (
    AuthFailed,
    AuthNotFresh,
    BadGreeting,
    CertificateVerifyFailed,
    ConnectRefused,
    DataRefused,
    EhloRefused,
    ExtensionNotSupported,
    MalformedReply,
    NoAuthExtension,
    QuitRefused,
    RecipientsRefusedError,
    ReplyTimeout,
    SenderRefusedError,
    ServerDisconnected,
    StartTLSNotOffered,
    StartTLSRefused,
    TLSHandshakeFailed,
    TLSVersionTooLow,
)
from ._variants import LMTP, SMTP_SSL

#: smtplib's longest reply line (private there, read by code that tests it);
#: here the bound the reply parser enforces.
_MAXLINE = MAX_REPLY_LINE

__all__ = [
    "LMTP",
    "SMTP",
    "SMTP_SSL",
    "AuthFailed",
    "AuthNotFresh",
    "BadGreeting",
    "CertificateVerifyFailed",
    "ConnectRefused",
    "DataRefused",
    "EhloRefused",
    "ExtensionNotSupported",
    "MalformedReply",
    "NoAuthExtension",
    "QuitRefused",
    "RecipientsRefusedError",
    "ReplyTimeout",
    "SMTPAuthenticationError",
    "SMTPConnectError",
    "SMTPDataError",
    "SMTPException",
    "SMTPHeloError",
    "SMTPNotSupportedError",
    "SMTPRecipientsRefused",
    "SMTPResponseException",
    "SMTPSenderRefused",
    "SMTPServerDisconnected",
    "SenderRefusedError",
    "ServerDisconnected",
    "StartTLSNotOffered",
    "StartTLSRefused",
    "TLSHandshakeFailed",
    "TLSVersionTooLow",
    "quoteaddr",
    "quotedata",
]
