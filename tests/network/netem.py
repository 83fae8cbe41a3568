"""A userspace ``tc netem`` between two namespaces: loss, delay with jitter,
reordering, and TCP resets injected in the middle of a connection.

This machine's kernel has no ``sch_netem`` (``tc qdisc ... netem`` answers
"Specified qdisc kind is unknown"), so the impairment is done where netem
would do it, on IP packets: each namespace gets a TUN device, and
:class:`Wire` moves every packet between the two, delaying (``delay`` ±
``jitter``, uniform), dropping (``loss``), sending some at once so they
overtake the ones held back (``reorder``), and now and then dropping a data
segment and forging a TCP RST to *both* ends instead (``reset``), as a
middlebox that kills the connection does. The kernels' TCP stacks on each
side see real loss, reordering and resets.

Addresses: 198.18.1.1 (server namespace) and 198.18.1.2 (client namespace),
point to point; nothing is routed anywhere else.
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import os
import random
import selectors
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Final

from netns import inside, ip

SERVER: Final = "198.18.1.1"
CLIENT: Final = "198.18.1.2"
_TUNSETIFF: Final = 0x400454CA
_IFF_TUN: Final = 0x0001
_IFF_NO_PI: Final = 0x1000


def _open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TUN | _IFF_NO_PI))
    return fd


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _rst(src: bytes, dst: bytes, sport: int, dport: int, seq: int) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x04, 0, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, src, dst)
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + tcp


@dataclass
class Faults:
    """Per-packet impairment, each direction on its own."""

    loss: float = 0.02
    delay: float = 0.004
    jitter: float = 0.004
    reorder: float = 0.05
    reset: float = 0.004
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("packets", "lost", "reordered", "resets"), 0))  # fmt: skip


class Wire:
    """The impaired link; start it, use the namespaces, stop it."""

    def __init__(self, server_ns: str, client_ns: str, faults: Faults, *, seed: int = 8305) -> None:
        self.faults = faults
        self._random = random.Random(seed)
        self._fds = {
            "s": inside(server_ns, lambda: _open_tun("tun-smtps")),
            "c": inside(client_ns, lambda: _open_tun("tun-smtpc")),
        }
        for ns, dev, here, there in (
            (server_ns, "tun-smtps", SERVER, CLIENT),
            (client_ns, "tun-smtpc", CLIENT, SERVER),
        ):
            ip("-n", ns, "addr", "add", here, "peer", there, "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="netem", daemon=True)

    def start(self) -> Wire:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for fd in self._fds.values():
            os.close(fd)

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        for side, fd in self._fds.items():
            selector.register(fd, selectors.EVENT_READ, side)
        queue: list[tuple[float, int, int, bytes]] = []
        seq = 0
        counts = self.faults.counts
        while not self._stop.is_set():
            now = time.monotonic()
            while queue and queue[0][0] <= now:
                _due, _n, fd, packet = heapq.heappop(queue)
                with contextlib.suppress(OSError):  # the peer device is going away
                    os.write(fd, packet)
            wait = min(0.05, max(queue[0][0] - now, 0.0)) if queue else 0.05
            for key, _events in selector.select(wait):
                side = key.data
                other = self._fds["c" if side == "s" else "s"]
                try:
                    packet = os.read(key.fd, 65535)
                except BlockingIOError:
                    continue
                counts["packets"] += 1
                seq += 1
                for out_fd, out in self._impair(packet, other, key.fd):
                    jitter = self._random.uniform(-self.faults.jitter, self.faults.jitter)
                    due = now + max(self.faults.delay + jitter, 0.0)
                    if self._random.random() < self.faults.reorder:
                        due = now  # overtakes everything held back
                        counts["reordered"] += 1
                    heapq.heappush(queue, (due, seq, out_fd, out))
        selector.close()

    def _impair(self, packet: bytes, towards: int, back: int) -> list[tuple[int, bytes]]:
        faults, counts = self.faults, self.faults.counts
        if self._random.random() < faults.loss:
            counts["lost"] += 1
            return []
        if len(packet) >= 40 and packet[0] >> 4 == 4 and packet[9] == 6:
            ihl = (packet[0] & 0x0F) * 4
            sport, dport, seq, ack = struct.unpack("!HHII", packet[ihl : ihl + 12])
            offset = (packet[ihl + 12] >> 4) * 4
            payload = len(packet) - ihl - offset
            if payload > 0 and self._random.random() < faults.reset:
                counts["resets"] += 1
                src, dst = packet[12:16], packet[16:20]
                # The segment is dropped; the receiver still expects ``seq``, the
                # sender expects ``ack``: RSTs at exactly those numbers are
                # accepted (RFC 5961 §3.2), as from a middlebox cutting the line.
                return [
                    (towards, _rst(src, dst, sport, dport, seq)),
                    (back, _rst(dst, src, dport, sport, ack)),
                ]
        return [(towards, packet)]
