"""pytest plugin (entry point ``pytest11: smtpsec``): the test kit as fixtures.

Loaded for every pytest run in an environment where smtpsec is installed, so
it imports nothing heavy at module level: :mod:`smtpsec.testing` (and with it
``cryptography``) is imported only when a fixture is first used.

Fixtures:
    smtpsec_ca: a session-wide throwaway :class:`~smtpsec.testing.CA`.
    smtpsec_cert: a leaf for ``localhost``, ``127.0.0.1`` and ``::1``.
    smtpsec_client_context: a verifying client ``SSLContext`` trusting ``smtpsec_ca``.
    smtpsec_server: a factory ``smtpsec_server(Security.STARTTLS, **options)``
        (implicit TLS when no mode is given)
        that starts :class:`~smtpsec.testing.SMTPServer` instances and stops
        them at teardown, failing the test if a server thread raised. Their
        ``ca`` is ``smtpsec_ca`` unless another ``cert=`` is given.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    import ssl

    from smtpsec.modes import Security
    from smtpsec.testing import CA, LeafCert, SMTPServer


class ServerFactory(Protocol):
    """Signature of the ``smtpsec_server`` fixture."""

    def __call__(
        self,
        tls: Security | None = None,
        *,
        cert: LeafCert | ssl.SSLContext | None = None,
        ca: CA | None = None,
        **options: Any,
    ) -> SMTPServer:
        """Start a server (implicit TLS unless ``tls`` says otherwise); ``options``
        are ``SMTPServer`` keywords and ``Script`` fields."""


@pytest.fixture(scope="session")
def smtpsec_ca() -> CA:
    """A throwaway CA shared by the whole test session."""
    from smtpsec.testing import CA

    return CA.create()


@pytest.fixture(scope="session")
def smtpsec_cert(smtpsec_ca: CA) -> LeafCert:
    """A valid server certificate for ``localhost``, ``127.0.0.1`` and ``::1``."""
    return smtpsec_ca.issue("localhost", ips=("127.0.0.1", "::1"))


@pytest.fixture
def smtpsec_client_context(smtpsec_ca: CA) -> ssl.SSLContext:
    """A fresh verifying client context that trusts only ``smtpsec_ca``."""
    return smtpsec_ca.client_context()


@pytest.fixture
def smtpsec_server(smtpsec_ca: CA, smtpsec_cert: LeafCert) -> Iterator[ServerFactory]:
    """Factory for started fake servers, all stopped when the test ends.

    Example:
        >>> def test_stripped(smtpsec_server):
        ...     srv = smtpsec_server(Security.STARTTLS, strip_starttls=True)
    """
    from smtpsec.modes import Security
    from smtpsec.testing import LeafCert, SMTPServer

    servers: list[SMTPServer] = []

    def start(
        tls: Security | None = None,
        *,
        cert: LeafCert | ssl.SSLContext | None = None,
        ca: CA | None = None,
        **options: Any,
    ) -> SMTPServer:
        mode = Security.IMPLICIT_TLS if tls is None else tls
        leaf = cert if cert is not None else smtpsec_cert
        if ca is None and isinstance(leaf, LeafCert) and leaf.issuer_pem == smtpsec_ca.cert_pem:
            ca = smtpsec_ca  # so that srv.ca works for the fixture's own certificates
        server = SMTPServer(leaf, tls=mode, ca=ca, **options)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
    errors = [error for server in servers for error in server.errors]
    if errors:
        pytest.fail(f"smtpsec fake server raised while serving: {errors!r}", pytrace=False)
