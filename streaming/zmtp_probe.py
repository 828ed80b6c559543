"""Asks a ZeroMQ peer which security mechanism it speaks, without completing a handshake.

Why this exists: a plaintext client against a CURVE port (or the reverse) is *sometimes* told
"mechanism mismatch" and sometimes only sees the connection close. libzmq queues the rest of its
greeting (the part that names the mechanism) for the next write, but compares the peer's mechanism
as soon as that arrives and closes on a mismatch in the same pass; when both greetings cross within
one poll (a loaded host) the server closes before its mechanism is written. Two clean-clone CI runs
saw `calibrate clock` report the generic "peer closed the connection" even after waiting 2.5 s for a
reconnect to say more, because every reconnect ran the same race.

The probe sidesteps the race with ZMTP 3's own greeting (RFC 23): it sends the 10-byte signature and
the major version only, so the peer sends its whole greeting (minor version, then the 20-byte
mechanism name) and then waits for ours, which never comes. Nothing is compared, so nothing is
closed early; the answer is deterministic. The probe is a read-only question to an endpoint the
caller was already connecting to; the peer sees one handshake that timed out (closed by us).
"""
from __future__ import annotations

import socket
import time

_SIGNATURE = b"\xff" + b"\x00" * 8 + b"\x7f"
_MAJOR = b"\x03"
_MECHANISM_END = 32  # signature (10) + major (1) + minor (1) + mechanism (20)


def _address(endpoint: str) -> tuple[int, object] | None:
    """(family, address) for tcp:// and ipc:// endpoints; None for what the probe cannot reach
    (inproc, source-address syntax, wildcards)."""
    if endpoint.startswith("ipc://"):
        path = endpoint[len("ipc://"):]
        return (socket.AF_UNIX, path) if path and not path.startswith("@") else None
    if not endpoint.startswith("tcp://") or ";" in endpoint:
        return None
    host, _, port = endpoint[len("tcp://"):].rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or host == "*" or not port.isdigit():
        return None
    return (socket.AF_INET6 if ":" in host else socket.AF_INET, (host, int(port)))


def peer_mechanism(endpoint: str, timeout_s: float = 1.0) -> str | None:
    """The mechanism the ZeroMQ peer at `endpoint` announces ("NULL", "CURVE", "PLAIN"), or None when
    it cannot be asked (unreachable, not ZMTP 3, an endpoint kind the probe does not speak, timeout)."""
    address = _address(endpoint)
    if address is None:
        return None
    family, target = address
    deadline = time.monotonic() + timeout_s
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(timeout_s)
            s.connect(target)
            s.sendall(_SIGNATURE + _MAJOR)
            got = b""
            while len(got) < _MECHANISM_END:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                s.settimeout(remaining)
                chunk = s.recv(_MECHANISM_END - len(got))
                if not chunk:
                    return None
                got += chunk
    except (OSError, ValueError):
        return None
    if got[0] != 0xFF or got[9] != 0x7F or got[10] < 3:
        return None  # not a ZMTP 3 peer
    name = got[12:_MECHANISM_END].rstrip(b"\x00")
    return name.decode("ascii") if name.isalnum() else None  # bytes.isalnum is ASCII-only
