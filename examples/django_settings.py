# pyright: basic
# (Django ships no type information; the smtpsec parts are still checked.)
"""Send Django mail through smtpsec's email backend.

In a Django project, the whole change is in ``settings.py``. Django 6.1 and later::

    import smtpsec

    MAILERS = {
        "default": {
            "BACKEND": "smtpsec.integrations.django.EmailBackend",
            "OPTIONS": {
                "host": "smtp.example.com",
                "port": 465,
                "use_ssl": True,      # implicit TLS; "use_tls": True = required STARTTLS
                "username": "app@example.com",
                "password": os.environ["SMTP_PASSWORD"],
                # Only for a private CA (instead of subclassing the backend):
                "policy": smtpsec.Policy(cafile="/etc/ssl/internal-ca.pem"),
            },
        },
    }

Django 4.2 and 5.2 (``MAILERS`` does not exist there)::

    EMAIL_BACKEND = "smtpsec.integrations.django.EmailBackend"
    EMAIL_HOST = "smtp.example.com"
    EMAIL_PORT = 465
    EMAIL_USE_SSL = True              # implicit TLS; EMAIL_USE_TLS = required STARTTLS
    EMAIL_HOST_USER = "app@example.com"
    EMAIL_HOST_PASSWORD = os.environ["SMTP_PASSWORD"]
    SMTPSEC_POLICY = smtpsec.Policy(cafile="/etc/ssl/internal-ca.pem")

``send_mail()``, ``EmailMessage.send()`` and ``mail_admins()`` then submit over
verified TLS and never fall back to cleartext. This script configures Django in
code (no project needed), the way the installed Django expects, and sends one
message with ``send_mail()``. Without Django installed it says so and exits.

By default it runs against smtpsec's test server on loopback. For a real
server::

    SMTPSEC_HOST=smtp.example.com SMTPSEC_USER=app@example.com \\
    SMTPSEC_PASSWORD='app password' python examples/django_settings.py

Optional: ``SMTPSEC_PORT`` (default 465; 465 means ``EMAIL_USE_SSL``, anything
else ``EMAIL_USE_TLS``), ``SMTPSEC_CAFILE``, ``SMTPSEC_TO``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import smtpsec
from smtpsec import Security
from smtpsec.testing import SMTPServer


def send(host: str, port: int, user: str, password: str, to: str, cafile: str | None) -> None:
    """Configure Django's mail settings for smtpsec and send one message."""
    import django
    from django.conf import settings
    from django.core.mail import send_mail

    policy = smtpsec.Policy(cafile=cafile)
    version = (int(django.VERSION[0]), int(django.VERSION[1]))
    if version >= (6, 1):
        # MAILERS: the EMAIL_* settings are deprecated from Django 6.1 on.
        options = {
            "host": host,
            "port": port,
            "use_ssl": port == 465,
            "use_tls": port != 465,
            "username": user,
            "password": password,
            "timeout": 30,
            "policy": policy,
        }
        settings.configure(
            MAILERS={
                "default": {
                    "BACKEND": "smtpsec.integrations.django.EmailBackend",
                    "OPTIONS": options,
                }
            },
            DEFAULT_FROM_EMAIL=user,
        )
    else:
        settings.configure(
            EMAIL_BACKEND="smtpsec.integrations.django.EmailBackend",
            EMAIL_HOST=host,
            EMAIL_PORT=port,
            EMAIL_USE_SSL=port == 465,
            EMAIL_USE_TLS=port != 465,
            EMAIL_HOST_USER=user,
            EMAIL_HOST_PASSWORD=password,
            EMAIL_TIMEOUT=30,
            SMTPSEC_POLICY=policy,
            DEFAULT_FROM_EMAIL=user,
        )
    sent = send_mail(
        "smtpsec: Django example",
        "Sent by Django through smtpsec's backend, over verified TLS.",
        None,  # DEFAULT_FROM_EMAIL
        [to],
    )
    print(f"Django reports {sent} message(s) sent to {host}:{port}")


def main() -> int:
    """Send to SMTPSEC_HOST if set, else to a local test server."""
    if importlib.util.find_spec("django") is None:
        print("django_settings.py: not run: Django is not installed (pip install django).")
        return 0
    host = os.environ.get("SMTPSEC_HOST")
    if host:
        user = os.environ["SMTPSEC_USER"]
        send(
            host,
            int(os.environ.get("SMTPSEC_PORT", "465")),
            user,
            os.environ["SMTPSEC_PASSWORD"],
            os.environ.get("SMTPSEC_TO", user),
            os.environ.get("SMTPSEC_CAFILE"),
        )
        return 0

    user, password = "app@example.test", "demo-password"
    # The test server listens on an ephemeral port; tls=Security.STARTTLS pairs with
    # EMAIL_USE_TLS (required STARTTLS), which the script picks for any port but 465.
    with (
        SMTPServer(tls=Security.STARTTLS, users={user: password}) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        cafile = server.ca.write_cafile(Path(tmp) / "test-ca.pem")  # the server's own CA
        send("localhost", server.port, user, password, "ops@example.test", str(cafile))
    (message,) = server.messages
    print(f"the test server received a message for {', '.join(message.recipients)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
