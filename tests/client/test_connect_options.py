"""The connect options are declared once (``ConnectOptions``) and checked at the call.

A misspelt option is a ``TypeError`` naming the keyword, raised by the call
itself, before any connection is tried (the port given here refuses
connections, so a call that went on to connect would raise ``ConnectError``
instead). ``tests/typing`` holds the static side: the same typo is a type error.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import pytest

import smtpsec
import smtpsec.aio
from smtpsec.transports import SocketTransport

Options = dict[str, Any]


def _connect(port: int, options: Options) -> object:
    return smtpsec.connect("127.0.0.1", port, **options)


def _send(port: int, options: Options) -> object:
    return smtpsec.send(b"Subject: x\r\n\r\nhi\r\n", host="127.0.0.1", port=port, **options)


def _connect_transport(port: int, options: Options) -> object:
    sock = socket.socket()
    try:
        return smtpsec.connect_transport(SocketTransport(sock), "127.0.0.1", port, **options)
    finally:
        sock.close()


def _aio_connect(port: int, options: Options) -> object:
    async def run() -> object:
        return await smtpsec.aio.connect("127.0.0.1", port, **options)

    return asyncio.run(run())


def _aio_send(port: int, options: Options) -> object:
    return asyncio.run(
        smtpsec.aio.send(b"Subject: x\r\n\r\nhi\r\n", host="127.0.0.1", port=port, **options)
    )


def _aio_pool(port: int, options: Options) -> object:
    async def run() -> object:
        return smtpsec.aio.Pool("127.0.0.1", port, **options)

    return asyncio.run(run())


CALLS: dict[str, Callable[[int, Options], object]] = {
    "connect": _connect,
    "send": _send,
    "connect_transport": _connect_transport,
    "aio.connect": _aio_connect,
    "aio.send": _aio_send,
    "aio.Pool": _aio_pool,
}


@pytest.mark.parametrize("name", list(CALLS))
def test_a_misspelt_option_is_a_type_error_before_connecting(name: str, refused_port: int) -> None:
    where = name.rpartition(".")[2]
    with pytest.raises(
        TypeError, match=rf"^{where}\(\) got an unexpected keyword argument 'usernme'$"
    ):
        CALLS[name](refused_port, {"usernme": "ann"})


@pytest.mark.parametrize("name", ["connect", "aio.connect"])
def test_the_same_call_spelt_right_gets_as_far_as_the_network(name: str, refused_port: int) -> None:
    """The control: with the right spelling the call does try the (refusing) port."""
    with pytest.raises(smtpsec.ConnectError):
        CALLS[name](refused_port, {"username": "ann", "password": "pw"})
