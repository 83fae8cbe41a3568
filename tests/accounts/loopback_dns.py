"""A tiny UDP DNS responder on 127.0.0.1 for discovery tests (shared by test modules)."""

from __future__ import annotations

import socket
import threading

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.rrset


class LoopbackDNS:
    """A tiny UDP DNS responder on 127.0.0.1 that answers from in-memory tables.

    Unknown names get NXDOMAIN; a known name asked for a type it lacks gets an
    empty NOERROR answer (dnspython's NoAnswer).
    """

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}
        self.signed: set[str] = set()  # answered with the AD bit
        self.servfail: set[str] = set()
        self.silent: set[str] = set()  # never answered: the client times out
        self.queries: list[tuple[str, str]] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        # Short receive timeout only so the loop can notice the stop flag.
        self._sock.settimeout(0.05)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="loopback-dns", daemon=True)
        self._thread.start()

    def add(self, name: str, rdtype: str, *rdatas: str) -> None:
        self.records.setdefault((name.lower(), rdtype), []).extend(rdatas)

    def resolver(self, *, lifetime: float = 5.0) -> dns.resolver.Resolver:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.port
        resolver.lifetime = lifetime
        return resolver

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()
        assert not self._thread.is_alive()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            query = dns.message.from_wire(wire)
            question = query.question[0]
            name = question.name.to_text().lower()
            rdtype = dns.rdatatype.to_text(question.rdtype)
            self.queries.append((name, rdtype))
            if name in self.silent:
                continue
            response = dns.message.make_response(query)
            if name in self.servfail:
                response.set_rcode(dns.rcode.SERVFAIL)
            elif (name, rdtype) in self.records:
                response.answer.append(
                    dns.rrset.from_text_list(name, 300, "IN", rdtype, self.records[name, rdtype])
                )
            elif not any(known == name for known, _ in self.records):
                response.set_rcode(dns.rcode.NXDOMAIN)
            if name in self.signed:
                response.flags |= dns.flags.AD
            self._sock.sendto(response.to_wire(), peer)
