"""Fixtures of the security suite (the helpers themselves live in ``_security_kit``).

``_security_kit`` has a name no other test directory uses, so test modules can
import it directly without colliding with other ``conftest`` modules.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _security_kit import Kit, hosts_aliases

from smtpsec.policy import is_loopback
from smtpsec.testing import CA, LeafCert
from smtpsec.testing.plugin import ServerFactory


@pytest.fixture(scope="session")
def cafile(smtpsec_ca: CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session CA written to a PEM file (for ``Policy(cafile=...)``)."""
    return smtpsec_ca.write_cafile(tmp_path_factory.mktemp("trust") / "ca.pem")


@pytest.fixture(params=["sync", "async"])
def kit(
    request: pytest.FixtureRequest,
    smtpsec_ca: CA,
    smtpsec_cert: LeafCert,
    cafile: Path,
    smtpsec_server: ServerFactory,
) -> Kit:
    """The attack-test toolbox (servers are stopped when the test ends).

    Parametrised: every test that uses ``kit.connect`` runs against the blocking
    client and against :mod:`smtpsec.aio` (issue: parametrise, don't copy).
    """
    return Kit(smtpsec_ca, smtpsec_cert, cafile, smtpsec_server, client=request.param)


@pytest.fixture(scope="session")
def non_loopback_alias() -> str:
    """A host name that resolves to 127.0.0.1 through /etc/hosts but does not *look* loopback.

    It lets a test connect to a loopback server while smtpsec treats the name
    as a network host (warnings for cleartext apply). Skips when none exists.
    """
    for name in hosts_aliases():
        if not is_loopback(name):
            return name
    pytest.skip("no /etc/hosts alias for 127.0.0.1 that is not spelled like loopback")
