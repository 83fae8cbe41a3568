"""What to do next, in the words of the API the caller is using.

One rule (the guard's, the TLS layer's, the engine's) can fail under three
front ends: the native API, the smtplib drop-in and the CLI. The cause is the
same; the fix is not: a native user passes ``Policy(cafile=...)``, a drop-in
user ``starttls(context=...)``, a CLI user ``--cafile``. Every message that
tells the reader what to change takes that phrase from an :class:`Advice`, so
each front end speaks its own language and no rule is written twice.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CLI", "DROP_IN", "NATIVE", "Advice"]


@dataclass(frozen=True, slots=True)
class Advice:
    """The fixes one front end offers, as phrases that complete a sentence.

    Attributes:
        private_ca: how to trust a private CA.
        pin_self_signed: how to accept a self-signed server by its key, or "".
        update_pins: what to change when a pinned key legitimately changed.
        implicit_tls: how to use implicit TLS (port 465).
        starttls: how to use required STARTTLS (port 587).
        longer_timeout: how to allow a slower server more time.
        tls_floor: where the minimum TLS version is set.
        require_tls13: how to require TLS 1.3.
        verified_tls: how to make sure credentials only travel over verified TLS.
        cleartext_auth: the explicit opt-in for credentials without verified TLS.
        plaintext: how the user asked for no TLS at all.
        opportunistic: how the user asked for "STARTTLS if offered".
        forget_account: how to drop an account from the TLS memory.
        choose_mechanism: how to use one SASL mechanism, a template with
            ``{name}`` (the mechanism's name).
        use_oauth: how to authenticate with an OAuth 2.0 token.
        scram_cap: what to do when a server asks SCRAM for more iterations
            than the client allows.
    """

    private_ca: str
    pin_self_signed: str
    update_pins: str
    implicit_tls: str
    starttls: str
    longer_timeout: str
    tls_floor: str
    require_tls13: str
    verified_tls: str
    cleartext_auth: str
    plaintext: str
    opportunistic: str
    forget_account: str
    choose_mechanism: str
    use_oauth: str
    scram_cap: str


#: ``smtpsec.connect()``, ``smtpsec.aio``, the integrations.
NATIVE = Advice(
    private_ca="trust its CA with Policy(cafile='/path/to/ca.pem')",
    pin_self_signed="or pin its key at setup with Policy(pins=..., pinned_instead_of_ca=True)",
    update_pins="update Policy(pins=...)",
    implicit_tls="use Security.IMPLICIT_TLS (port 465)",
    starttls="use Security.STARTTLS (port 587)",
    longer_timeout="raise timeout=",
    tls_floor="the Policy(min_tls_version=...) floor",
    require_tls13="set Policy(min_tls_version=ssl.TLSVersion.TLSv1_3)",
    verified_tls="use Security.IMPLICIT_TLS or Security.STARTTLS with a verified certificate",
    cleartext_auth="Policy(allow_cleartext_auth=True)",
    plaintext="Security.PLAINTEXT",
    opportunistic="Security.OPPORTUNISTIC",
    forget_account="TLSMemory.forget(Account(user, host))",
    choose_mechanism="pass auth={name!r}",
    use_oauth="pass token= (a token, or a callable that returns a fresh one)",
    scram_cap="raise Policy(scram_max_iterations=...) or choose another mechanism with auth=",
)

#: ``from smtpsec import smtplib``: stdlib names only.
DROP_IN = Advice(
    private_ca=(
        "trust its CA with starttls(context=ssl.create_default_context("
        "cafile='/path/to/ca.pem')) or SMTP_SSL(host, 465, context=...)"
    ),
    pin_self_signed="",
    update_pins="update the pins",
    implicit_tls="use SMTP_SSL(host, 465, context=...)",
    starttls="use SMTP(host, 587) and call starttls()",
    longer_timeout="pass a larger timeout=",
    tls_floor="the drop-in's TLS 1.2 floor (a context cannot lower it)",
    require_tls13="set context.minimum_version = ssl.TLSVersion.TLSv1_3",
    verified_tls=(
        "call starttls() first, or use SMTP_SSL, with context=None or a context that "
        "verifies certificates and host names"
    ),
    cleartext_auth="allow_cleartext_auth=True",
    plaintext="a connection without TLS",
    opportunistic="a connection without TLS",
    forget_account="TLSMemory.forget(Account(user, host))",
    choose_mechanism="call auth({name!r}, authobject) instead of login()",
    use_oauth=(
        "call auth('XOAUTH2', authobject) with an authobject that returns the "
        "XOAUTH2 string for your token"
    ),
    scram_cap="log in with another mechanism, e.g. auth('PLAIN', client.auth_plain)",
)

#: ``python -m smtpsec``.
CLI = Advice(
    private_ca="trust its CA with --cafile /path/to/ca.pem",
    pin_self_signed="",
    update_pins="update the pins",
    implicit_tls="use --security implicit_tls (port 465)",
    starttls="use --security starttls (port 587)",
    longer_timeout="raise --timeout",
    tls_floor="the minimum TLS version (1.2)",
    require_tls13="ask the provider for TLS 1.3",
    verified_tls="use --security implicit_tls or --security starttls",
    cleartext_auth="an explicit opt-in (not available in the CLI)",
    plaintext="--security plaintext",
    opportunistic="--security opportunistic",
    forget_account="TLSMemory.forget(Account(user, host))",
    choose_mechanism="pass --auth {name}",
    use_oauth="use the library (smtpsec.connect(..., token=...)): the CLI takes no tokens",
    scram_cap="choose another mechanism with --auth",
)
