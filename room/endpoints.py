"""Where a room's sockets are: one base endpoint, five consecutive ports.

    ep = RoomEndpoints.from_base("tcp://127.0.0.1:7000")
    ep.streams_in   tcp://127.0.0.1:7000   capture nodes' PUB → the relay's XSUB
    ep.streams_out  tcp://127.0.0.1:7001   the relay's XPUB → render nodes' SUB
    ep.control      tcp://127.0.0.1:7002   ROUTER: snapshot, edits, heartbeats, package upload/fetch
    ep.deltas       tcp://127.0.0.1:7003   PUB: versioned scene deltas and the room's beat
    ep.clock        tcp://127.0.0.1:7004   the room's clock service (calibration/clock_service)

One address to hand a participant (like `render`'s feature port + 1 for its clock service), and the
same rule on both sides, so a room and its participants never disagree about a port.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import HeadcastError

PORTS = 5


@dataclass(frozen=True)
class RoomEndpoints:
    streams_in: str
    streams_out: str
    control: str
    deltas: str
    clock: str

    @classmethod
    def from_base(cls, base: str) -> RoomEndpoints:
        m = re.match(r"^(tcp://(?:\[[^\]]+\]|[^:/]+)):(\d+)$", base or "")
        if not m or not (1 <= int(m.group(2)) <= 65535 - PORTS + 1):
            raise HeadcastError(f"room endpoint {base!r} must look like tcp://HOST:PORT (the room uses PORT to "
                                f"PORT+{PORTS - 1})")
        host, port = m.group(1), int(m.group(2))
        return cls(*(f"{host}:{port + i}" for i in range(PORTS)))

    def for_clients(self, host: str) -> RoomEndpoints:
        """The same ports as seen from a client (a room bound on 0.0.0.0 is reached at its host name)."""
        def swap(ep: str) -> str:
            return re.sub(r"^tcp://(\[[^\]]+\]|[^:/]+)", f"tcp://{host}", ep)

        return RoomEndpoints(*(swap(e) for e in (self.streams_in, self.streams_out, self.control, self.deltas,
                                                 self.clock)))


__all__ = ["PORTS", "RoomEndpoints"]
