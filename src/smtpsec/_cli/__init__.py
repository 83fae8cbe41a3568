"""The ``smtpsec`` command line: ``demo``, ``probe`` and ``send``.

:func:`main` takes ``argv`` and returns the exit code, so tests call it
in-process. Exit codes:

- ``0``: success (``probe``: PASS).
- ``1``: ``probe`` found warnings; ``send``: the server refused the message
  or some of its recipients.
- ``2``: failure: a security requirement was not met, the server could not be
  reached, bad arguments (``probe``: FAIL).

Errors are printed as one line on stderr, without a traceback unless
``--debug`` is given.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from email.message import EmailMessage
from typing import BinaryIO, Final

from .._advice import CLI
from .._engine import Recipe, connect_steps, emit, envelope_from_headers, run_sync
from .._version import __version__
from ..client import Session
from ..errors import (
    AuthenticationError,
    CapabilityError,
    InvalidArgumentError,
    PolicyError,
    RecipientsRefused,
    ReplyError,
    SMTPSecError,
)
from ..policy import DEFAULT_POLICY, Policy, Security, split_host_port
from ..tls import build_context
from ..transports import Proxy, Route

__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_WARNING", "main"]

EXIT_OK: Final[int] = 0
#: probe warnings; send: the server refused the message or some recipients.
EXIT_WARNING: Final[int] = 1
#: a security failure, an unreachable server, bad arguments; probe FAIL.
EXIT_FAILURE: Final[int] = 2
#: the conventional code after Ctrl-C (128 + SIGINT).
_EXIT_INTERRUPTED: Final = 130

_PROG: Final = "smtpsec"


#: ``--mode`` words -> how TLS starts (parsed once, here).
_PROBE_MODES: Final = {"implicit": Security.IMPLICIT_TLS, "starttls": Security.STARTTLS}


class _UsageError(Exception):
    """A problem with the arguments that argparse cannot see (reported like one)."""


# --------------------------------------------------------------------------- parser


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"port {value} is out of range (1-65535)")
    return value


def _parser() -> argparse.ArgumentParser:
    # No abbreviations: "--password" must never be taken as a prefix of
    # --password-env/--password-stdin, and scripts should not rely on prefixes.
    parser = argparse.ArgumentParser(
        prog=_PROG,
        allow_abbrev=False,
        description="Secure-by-default SMTP submission (RFC 8314): demo, probe, send.",
        epilog="Exit codes: 0 ok, 1 warnings (probe) or refused by the server (send), "
        "2 failure. Start with: smtpsec demo",
    )
    parser.add_argument("--version", action="version", version=f"{_PROG} {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show tracebacks and the (redacted) SMTP transcript on stderr",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    commands.add_parser(
        "demo",
        allow_abbrev=False,
        help="show secure submission and two refused attacks (no network, a few seconds)",
        description="Start a throwaway loopback server and CA, send over implicit TLS and "
        "required STARTTLS, and show a STARTTLS-stripping and a wrong-certificate attack "
        "being refused. Needs no network and no arguments.",
    )

    probe = commands.add_parser(
        "probe",
        allow_abbrev=False,
        help="audit a submission server's TLS posture (sends no credentials)",
        description="Check HOST against RFC 8314 without sending AUTH or MAIL: implicit "
        "TLS on 465, STARTTLS on 587 (and 25), TLS versions, certificate, AUTH before and "
        "after TLS, extensions. Exit code 0 PASS, 1 WARN, 2 FAIL.",
    )
    probe.add_argument(
        "host",
        metavar="HOST",
        help="the server name certificates must match (HOST:PORT means --port PORT)",
    )
    probe.add_argument("--port", type=_port, help="probe only this port (default: 465, 587 and 25)")
    probe.add_argument(
        "--mode",
        choices=("auto", *_PROBE_MODES),
        default="auto",
        help="how TLS starts on --port (auto: 465 implicit, 587/25 STARTTLS, other "
        "ports detected from whether the server greets)",
    )
    probe.add_argument("--cafile", metavar="FILE", help="trust this CA file instead of certifi")
    probe.add_argument(
        "--discover",
        action="store_true",
        help="treat HOST as an email domain: show its _submissions/_submission SRV "
        "endpoints and the certificate identity each must present (needs smtpsec[dns])",
    )
    probe.add_argument(
        "--nameserver",
        metavar="IP[:PORT]",
        help="with --discover: ask this DNS server instead of the system resolver",
    )
    probe.add_argument(
        "--autoconfig",
        action="store_true",
        help="with --discover: also read the domain's autoconfig document over verified "
        "HTTPS and merge it with SRV (needs smtpsec[autoconfig])",
    )
    _add_proxy_options(probe)
    probe.add_argument("--json", action="store_true", help="print a JSON report")
    probe.add_argument(
        "--timeout",
        type=_positive_float,
        default=10.0,
        metavar="S",
        help="seconds for each connect, handshake and reply (default 10)",
    )

    send = commands.add_parser(
        "send",
        allow_abbrev=False,
        help="send a message file over verified TLS and print the security report",
        description="Send FILE (an RFC 5322 message; '-' reads stdin) and print the "
        "security report. With --from and --to, FILE is sent exactly as it is. Without "
        "them, the envelope comes from FILE's headers, as smtpsec.connect().send() takes it "
        "from an EmailMessage: the sender from Sender or From, the recipients from To, Cc "
        "and Bcc; the Bcc header is then removed, and Date and Message-ID are added when "
        "missing. Passwords are never taken as an argument value: use --password-env or "
        "--password-stdin. Exit code 1 when the server refuses.",
    )
    send.add_argument(
        "--host", required=True, help="the submission server (HOST, or HOST:PORT for --port)"
    )
    send.add_argument("--port", type=_port, help="465 (implicit TLS) or 587 (STARTTLS)")
    send.add_argument(
        "--security",
        choices=[s.value for s in Security],
        default=Security.AUTO.value,
        help="how TLS starts (default auto: never cleartext)",
    )
    send.add_argument(
        "--from",
        dest="sender",
        metavar="ADDR",
        help="envelope sender (default: FILE's Sender or From header)",
    )
    send.add_argument(
        "--to",
        dest="recipients",
        action="append",
        metavar="ADDR",
        help="envelope recipient, repeat for more (default: FILE's To, Cc and Bcc headers)",
    )
    send.add_argument("--user", help="user name for SMTP AUTH")
    send.add_argument(
        "--auth",
        metavar="MECH",
        help="use exactly this SASL mechanism (e.g. PLAIN); default: the strongest "
        "one the server offers",
    )
    secret = send.add_mutually_exclusive_group()
    secret.add_argument("--password-env", metavar="VAR", help="read the password from $VAR")
    secret.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin",
    )
    send.add_argument("--cafile", metavar="FILE", help="trust this CA file instead of certifi")
    _add_proxy_options(send)
    send.add_argument(
        "--timeout",
        type=_positive_float,
        default=30.0,
        metavar="S",
        help="seconds for connecting, the handshake and each reply (default 30)",
    )
    send.add_argument("file", metavar="FILE", help="the message (.eml); '-' reads stdin")
    return parser


def _add_proxy_options(command: argparse.ArgumentParser) -> None:
    """``--proxy URL`` or ``--proxy-env VAR`` (read by :func:`_proxy`)."""
    tunnel = command.add_mutually_exclusive_group()
    tunnel.add_argument(
        "--proxy",
        metavar="URL",
        help="connect through this proxy: socks5h://host:port, socks4a://, http:// "
        "(no password here: use --proxy-env)",
    )
    tunnel.add_argument(
        "--proxy-env", metavar="VAR", help="read the proxy URL (with credentials) from $VAR"
    )


# --------------------------------------------------------------------------- commands


def _run_demo(_args: argparse.Namespace) -> int:
    from ._demo import run_demo  # imports smtpsec.testing: only when asked for

    return run_demo(sys.stdout)


def _run_probe(args: argparse.Namespace) -> int:
    from ._probe import DEFAULT_PORTS, probe
    from ._probe_verdict import judge, render_json, render_text

    if args.discover:
        if args.proxy or args.proxy_env:
            raise _UsageError(
                "--proxy does not apply to --discover: the SRV and autoconfig lookups "
                "would go to the network directly, around the proxy"
            )
        return _run_discover(args)
    if args.nameserver or args.autoconfig:
        raise _UsageError("--nameserver and --autoconfig apply to --discover")
    if args.port is None and args.mode != "auto":
        raise _UsageError("--mode applies to --port; a scan of 465, 587 and 25 knows each mode")
    policy = _policy(args.cafile)
    context = build_context(policy)
    ports: list[tuple[int, Security | None]]
    if args.port is None:
        ports = list(DEFAULT_PORTS)
    elif args.mode != "auto":
        ports = [(args.port, _PROBE_MODES[args.mode])]
    else:
        known = dict(DEFAULT_PORTS)
        ports = [(args.port, known.get(args.port))]
    facts = probe(
        args.host,
        ports=ports,
        context=context,
        trust=args.cafile or "certifi roots",
        timeout=args.timeout,
        explicit_port=args.port is not None,
        route=Route(proxy=_proxy(args)),
    )
    verdict = judge(facts)
    if args.json:
        print(json.dumps(render_json(facts, verdict), indent=2))
    else:
        print(render_text(facts, verdict))
    return verdict.exit_code


def _run_discover(args: argparse.Namespace) -> int:
    from ._discover import discover_report, render_discovery_json, render_discovery_text

    resolver = None
    if args.nameserver:
        try:
            import dns.resolver
        except ImportError as exc:
            raise CapabilityError(
                "SRV discovery needs dnspython: pip install dnspython (smtpsec's 'dns' extra)"
            ) from exc
        address, _, port = args.nameserver.partition(":")
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [address]
        resolver.port = _port(port) if port else 53
        resolver.lifetime = args.timeout
    report = discover_report(
        args.host,
        resolver=resolver,
        autoconfig=args.autoconfig,
        policy=_policy(args.cafile) if args.cafile else None,
        timeout=args.timeout,
    )
    if args.json:
        print(json.dumps(render_discovery_json(report), indent=2))
    else:
        print(render_discovery_text(report))
    return report.exit_code


def _policy(cafile: str | None) -> Policy:
    """The policy for ``--cafile``, checked now so a bad file is a usage error."""
    policy = Policy(cafile=cafile) if cafile else DEFAULT_POLICY
    try:
        build_context(policy)
    except OSError as exc:  # missing file, or no certificate in it (ssl.SSLError)
        raise _UsageError(f"cannot load --cafile {cafile}: {exc.strerror or exc}") from exc
    return policy


def _password(args: argparse.Namespace) -> str | None:
    if args.password_env:
        value = os.environ.get(args.password_env)
        if value is None:
            raise _UsageError(
                f"--password-env: the environment variable {args.password_env} is not set"
            )
        return value
    if args.password_stdin:
        if args.file == "-":
            raise _UsageError(
                "--password-stdin and FILE '-' both want stdin; pass the message as a file"
            )
        return sys.stdin.readline().rstrip("\r\n")
    return None


def _open_message(path: str) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb")  # closed by _send
    except OSError as exc:
        raise _UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _proxy(args: argparse.Namespace) -> Proxy | None:
    """``--proxy`` or ``--proxy-env``, checked now (a bad URL is a usage error)."""
    url: str | None = args.proxy
    if args.proxy_env:
        url = os.environ.get(args.proxy_env)
        if url is None:
            raise _UsageError(f"--proxy-env: the environment variable {args.proxy_env} is not set")
    if url is None:
        return None
    try:
        proxy = Proxy.from_url(url)
    except PolicyError as exc:
        raise _UsageError(f"--proxy: {exc}") from None
    if args.proxy and proxy.password is not None:
        raise _UsageError(
            "--proxy: a password on the command line is visible to every user of this "
            "machine; put the URL in an environment variable and pass --proxy-env VAR"
        )
    return proxy


def _envelope(
    file: BinaryIO, args: argparse.Namespace
) -> tuple[BinaryIO | EmailMessage, str, list[str]]:
    """What to send and to whom: FILE as it is, or parsed when its headers give the envelope.

    The headers are read by the same rule as the library's (``envelope_from_headers``),
    so a missing header can be reported here, in command-line words, before connecting.
    """
    if args.sender is not None and args.recipients is not None:
        return file, args.sender, args.recipients
    message = email.message_from_binary_file(file, policy=email.policy.default)
    try:
        sender, recipients = envelope_from_headers(message)
    except InvalidArgumentError:
        raise _UsageError(
            f"{args.file} has several Resent- header blocks; pass --from and --to"
        ) from None
    if args.sender is None and not sender:
        raise _UsageError(f"{args.file} has no Sender or From header; pass --from ADDR")
    if args.recipients is None and not recipients:
        raise _UsageError(f"{args.file} has no To, Cc or Bcc header; pass --to ADDR")
    chosen_sender = sender if args.sender is None else args.sender
    return message, chosen_sender, recipients if args.recipients is None else args.recipients


def _run_send(args: argparse.Namespace) -> int:
    password = _password(args)
    if (password is None) != (args.user is None):
        raise _UsageError(
            "--user needs --password-env VAR or --password-stdin (and those need --user)"
        )
    policy = _policy(args.cafile)
    recipe = Recipe.prepare(
        args.host,
        args.port,
        {
            "security": Security(args.security),
            "username": args.user,
            "password": password,
            "auth": args.auth,
            "policy": policy,
            "timeout": args.timeout,
            "proxy": _proxy(args),
        },
        where="send",
        advice=CLI,  # every fix named as a command-line option
    )
    message = _open_message(args.file)
    try:
        outgoing, sender, recipients = _envelope(message, args)
        try:
            established = run_sync(connect_steps(recipe))
        finally:
            emit(recipe.findings, stacklevel=2)
        with Session(established) as session:
            print(session.report)
            try:
                result = session.send(outgoing, sender=sender, recipients=recipients)
            except RecipientsRefused as exc:
                for rcpt, (code, _enh, text) in exc.refused.items():
                    print(f"refused          {rcpt}: {code} {text}")
                raise
    finally:
        if message is not sys.stdin.buffer:
            message.close()
    print(f"accepted         {', '.join(result.accepted)}")
    for rcpt, why in result.refused.items():
        print(f"refused          {rcpt}: {why.code} {why.text}")
    print(f"server said      {result.code} {result.text}")
    print(f"sent             {result.size} octets by {result.method}")
    return EXIT_WARNING if result.refused else EXIT_OK


_COMMANDS: Final = {"demo": _run_demo, "probe": _run_probe, "send": _run_send}


def _split_host(args: argparse.Namespace) -> None:
    """Take a port written into the host (``--host H:587``, ``probe H:587``), before any I/O.

    The rule is the library's (:func:`smtpsec.policy.split_host_port`), worded
    with this command's option names.
    """
    if args.command == "send":
        name = "--host"
    elif args.command == "probe" and not args.discover:
        name = "HOST"
    else:
        return
    args.host, args.port = split_host_port(
        args.host, args.port, host_name=name, port_name="--port "
    )
    if args.port is not None and not 0 < args.port < 65536:
        raise _UsageError(f"{name} {args.host}: port {args.port} is out of range (1-65535)")


# --------------------------------------------------------------------------- main


def _error(text: str) -> None:
    print(f"{_PROG}: error: {text}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: the arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The exit code (see the module docstring).
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors: argparse's own codes
        return exc.code if isinstance(exc.code, int) else EXIT_FAILURE
    logger = logging.getLogger("smtpsec")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    previous = logger.level
    if args.debug:
        # The transcript is redacted (no AUTH payloads), so it is safe to show.
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        _split_host(args)
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        _error("interrupted")
        return _EXIT_INTERRUPTED
    except (SMTPSecError, _UsageError) as exc:
        if args.debug:
            traceback.print_exc()
        _error(str(exc))
        # The server refusing the message is a send failure (1); refusing the
        # connection's security, unreachable servers and bad input are 2.
        refused = isinstance(exc, ReplyError) and not isinstance(exc, AuthenticationError)
        return EXIT_WARNING if refused and args.command == "send" else EXIT_FAILURE
    finally:
        # main() may run many times in one process (tests): leave logging as found.
        logger.removeHandler(handler)
        logger.setLevel(previous)
