"""Drop-in integrations that route other frameworks' mail through smtpsec.

Each submodule is imported on its own, so an integration's framework is needed
only when that submodule is used:

- :mod:`smtpsec.integrations.django`: ``EMAIL_BACKEND =
  "smtpsec.integrations.django.EmailBackend"``.
- :mod:`smtpsec.integrations.logging`: :class:`~smtpsec.integrations.logging.SMTPHandler`,
  a verified-TLS replacement for :class:`logging.handlers.SMTPHandler`.
"""

__all__: list[str] = []
