"""A local DNS server for tests: dnslib's server answering from a zone written by the test.

UDP and TCP on 127.0.0.1, a free port. A name with no record of any type
is answered NXDOMAIN (dnslib's own ZoneResolver answers an empty NOERROR),
so "the domain does not exist" can be tested as well as "no such record".
"""

from __future__ import annotations

import socket

from dnslib import QTYPE, RCODE, RR
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class _ZoneResolver(BaseResolver):
    def __init__(self, zone: str):
        self.records = [(rr.rname, rr.rtype, rr) for rr in RR.fromZone(zone)]
        self.queries: list[tuple[str, str]] = []

    def resolve(self, request, handler):
        reply = request.reply()
        qname, qtype = request.q.qname, request.q.qtype
        self.queries.append((str(qname).rstrip("."), QTYPE[qtype]))
        named = [(rtype, rr) for name, rtype, rr in self.records if name == qname]
        if not named:
            reply.header.rcode = RCODE.NXDOMAIN
        for rtype, rr in named:
            if rtype == qtype:
                reply.add_answer(rr)
        return reply


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ZoneServer:
    """``with ZoneServer(zone_text) as dns:`` serves the zone at ``dns.address`` ("127.0.0.1:PORT")."""

    def __init__(self, zone: str, port: int = 0):
        """``port`` 0: a free one."""
        self.resolver = _ZoneResolver(zone)
        self.port, self._fixed_port = port, port
        self._servers: list[DNSServer] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> ZoneServer:
        logger = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
        for _ in range(5):  # the UDP port found free may be taken for TCP: try another
            self.port = self._fixed_port or _free_port()
            try:
                udp = DNSServer(self.resolver, address="127.0.0.1", port=self.port, logger=logger)
                tcp = DNSServer(self.resolver, address="127.0.0.1", port=self.port, tcp=True, logger=logger)
            except OSError:
                continue
            self._servers = [udp, tcp]
            break
        else:
            raise RuntimeError("no free port for the test DNS server")
        for server in self._servers:
            server.start_thread()
        return self

    def __exit__(self, *exc) -> None:
        for server in self._servers:
            server.stop()
            server.server.server_close()


def closed_udp_port() -> str:
    """``127.0.0.1:PORT`` where nothing listens: a resolver that never answers."""
    return f"127.0.0.1:{_free_port()}"
