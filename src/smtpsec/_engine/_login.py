"""Whether a session logs in, with which mechanism, and the login with its one refresh.

:func:`login` is what :mod:`._setup` and early pipelining (:mod:`._early`)
both run: the mechanism chosen from the server's offer, the AUTH exchange of
:mod:`._auth`, and, when a refreshing OAuth provider's token is refused, one
fresh token and one more exchange.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import auth as sasl
from ..errors import AuthenticationError, CapabilityError
from ..sansio import Extensions
from ..tls import TLSInfo
from ._auth import authenticate
from ._io import IO, Offload, perform
from ._wire import Wire

if TYPE_CHECKING:
    from ._recipe import Recipe

__all__ = ["choose", "login", "wants_auth"]


def wants_auth(recipe: Recipe, extensions: Extensions, info: TLSInfo | None) -> bool:
    """Whether this session authenticates: credentials, a token, or a client certificate."""
    external = recipe.policy.client_cert is not None and (
        recipe.mechanism == "EXTERNAL" or "EXTERNAL" in extensions.auth_mechanisms
    )
    return (
        recipe.username is not None or recipe.token is not None or (external and info is not None)
    )


def _credentials(recipe: Recipe) -> sasl.Credentials | None:
    if recipe.username is None:
        return None
    return sasl.Credentials(recipe.username, recipe.password)


def choose(extensions: Extensions, recipe: Recipe, peer: str) -> sasl.Mechanism:
    """The mechanism for this offer.

    Raises:
        CapabilityError: the server offers no AUTH, or nothing usable.
        PolicyError, InvalidArgumentError: see :func:`smtpsec.auth.choose_mechanism`.
    """
    offered = extensions.auth_mechanisms
    if not offered:
        raise CapabilityError(
            f"{peer} offers no AUTH after TLS, but credentials were given; refusing to "
            "send mail unauthenticated (RFC 4954 §9). Check the port (587/465) and account"
        )
    return sasl.choose_mechanism(
        offered,
        credentials=_credentials(recipe),
        token=recipe.token,
        client_cert=recipe.policy.client_cert is not None,
        explicit=recipe.mechanism,
        scram_max_iterations=recipe.policy.scram_max_iterations,
        advice=recipe.advice,
    )


def login(
    wire: Wire,
    extensions: Extensions,
    recipe: Recipe,
    *,
    queued: sasl.Mechanism | None = None,
    outdated: bool = False,
) -> IO[str]:
    """Authenticate; return the mechanism's name.

    Args:
        queued: that mechanism's AUTH line already went out behind an early EHLO.
        outdated: ``queued`` was chosen from a kept EHLO reply and the server no
            longer offers it (see :func:`~._auth.authenticate`).
    """
    mechanism = queued if queued is not None else choose(extensions, recipe, wire.peer)
    try:
        yield from authenticate(wire, mechanism, queued=queued is not None, outdated=outdated)
    except AuthenticationError as exc:
        provider = recipe.token
        refused = sasl.token_refused(exc.code, mechanism.name, mechanism.server_error)
        if outdated or not (refused and isinstance(provider, sasl.RefreshingTokenProvider)):
            raise  # (an outdated mechanism is chosen again, not refreshed)
        # The token was refused (expired, say): one fresh token, one more AUTH.
        fresh = yield from perform(Offload(provider.refresh))
        mechanism = sasl.choose_mechanism(
            extensions.auth_mechanisms,
            credentials=_credentials(recipe),
            token=fresh,
            explicit=mechanism.name,
            advice=recipe.advice,
        )
        yield from authenticate(wire, mechanism)
    return mechanism.name
