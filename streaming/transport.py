"""ZeroMQ sockets for feature streams: endpoint policy, CURVE security, the publisher side.

The side that binds is the CURVE server (normally the render node's SUB); the side that connects
is a CURVE client holding its own key pair and the server's public key. Binding anything but
loopback without CURVE is refused unless the caller says ``insecure``.
"""
from __future__ import annotations

import ipaddress
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

from . import protocol

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"
# Small high-water marks: a frame that cannot be delivered at once is stale by the next one, so it
# is dropped rather than queued (queued frames are the latency creep users complain about).
DEFAULT_HWM = 8


class InsecureBindError(RuntimeError):
    pass


@dataclass(frozen=True)
class CurveServer:
    """Keys of the binding side: its secret key file and a directory of allowed client public keys."""

    secret_key_file: Path
    allowed_clients_dir: Path


@dataclass(frozen=True)
class CurveClient:
    """Keys of the connecting side: its own secret key file and the server's public key file."""

    secret_key_file: Path
    server_public_key_file: Path


def is_loopback_endpoint(endpoint: str) -> bool:
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    m = re.match(r"^tcp://(\[[^\]]+\]|[^:]+):(\d+|\*)$", endpoint)
    if not m:
        raise ValueError(f"unsupported endpoint {endpoint!r} (use tcp://HOST:PORT, ipc://PATH or inproc://NAME)")
    host = m.group(1).strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # '*', interface names and host names may reach other machines


def check_bind_policy(endpoint: str, curve: CurveServer | None, insecure: bool) -> None:
    if curve is None and not insecure and not is_loopback_endpoint(endpoint):
        raise InsecureBindError(
            f"refusing to bind {endpoint} without CURVE encryption: give server keys "
            "(headcast keys generate DIR) or pass --insecure to accept anyone on the network"
        )


def _load_secret(path: Path) -> tuple[bytes, bytes]:
    public, secret = zmq.auth.load_certificate(str(path))
    if secret is None:
        raise ValueError(f"{path} holds no secret key (use the .key_secret file)")
    return public, secret


def _load_public(path: Path) -> bytes:
    public, _ = zmq.auth.load_certificate(str(path))
    return public


def apply_curve_server(sock: zmq.Socket, curve: CurveServer) -> None:
    public, secret = _load_secret(curve.secret_key_file)
    sock.curve_publickey = public
    sock.curve_secretkey = secret
    sock.curve_server = True


def apply_curve_client(sock: zmq.Socket, curve: CurveClient) -> None:
    public, secret = _load_secret(curve.secret_key_file)
    sock.curve_publickey = public
    sock.curve_secretkey = secret
    sock.curve_serverkey = _load_public(curve.server_public_key_file)


def start_authenticator(ctx: zmq.Context, curve: CurveServer):
    """Starts ZAP so only clients whose public keys lie in ``allowed_clients_dir`` get through."""
    from zmq.auth.thread import ThreadAuthenticator

    if not Path(curve.allowed_clients_dir).is_dir():
        raise FileNotFoundError(f"allowed clients directory {curve.allowed_clients_dir} does not exist")
    auth = ThreadAuthenticator(ctx, log=logging.getLogger("headcast.zap"))
    auth.start()
    auth.configure_curve(domain="*", location=str(curve.allowed_clients_dir))
    return auth


def generate_keys(directory: Path, names: list[str]) -> list[tuple[Path, Path]]:
    """Writes ``NAME.key`` (public) and ``NAME.key_secret`` for each name; refuses to overwrite."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        if not re.match(r"^[A-Za-z0-9_.\-]+$", name):
            raise ValueError(f"bad key name {name!r}")
        for suffix in (".key", ".key_secret"):
            if (directory / f"{name}{suffix}").exists():
                raise FileExistsError(f"{directory / (name + suffix)} exists; not overwriting keys")
        pub, sec = zmq.auth.create_certificates(str(directory), name)
        Path(sec).chmod(0o600)
        out.append((Path(pub), Path(sec)))
    return out


class Publisher:
    """A capture node's PUB socket. ``send`` never blocks.

    ZeroMQ's PUB drops messages silently once a peer's queue is at its high-water mark, so the
    sender cannot count those drops; the receiver does, from gaps in the sequence numbers.
    ``dropped`` only counts sends the socket refused outright (rare: e.g. during shutdown).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        bind: bool = False,
        curve_client: CurveClient | None = None,
        curve_server: CurveServer | None = None,
        insecure: bool = False,
        hwm: int = DEFAULT_HWM,
        context: zmq.Context | None = None,
    ):
        self._own_ctx = context is None
        self.ctx = context or zmq.Context()
        self.sock = self.ctx.socket(zmq.PUB)
        self.sock.sndhwm = hwm
        self.sock.linger = 200
        self._auth = None
        self.sent = 0
        self.dropped = 0
        try:
            if bind:
                check_bind_policy(endpoint, curve_server, insecure)
                if curve_server:
                    self._auth = start_authenticator(self.ctx, curve_server)
                    apply_curve_server(self.sock, curve_server)
                self.sock.bind(endpoint)
            else:
                if curve_client:
                    apply_curve_client(self.sock, curve_client)
                self.sock.connect(endpoint)
        except Exception:
            self.close()
            raise

    def send(self, frame: protocol.FeatureFrame, t_send_ns: int | None = None) -> bool:
        parts = protocol.encode(frame, time.monotonic_ns() if t_send_ns is None else t_send_ns)
        return self.send_parts(parts)

    def send_parts(self, parts: list[bytes]) -> bool:
        try:
            self.sock.send_multipart(parts, flags=zmq.NOBLOCK, copy=True)
            self.sent += 1
            return True
        except zmq.Again:
            self.dropped += 1
            return False

    def close(self) -> None:
        try:
            self.sock.close()
        finally:
            if self._auth is not None:
                self._auth.stop()
            if self._own_ctx:
                self.ctx.term()

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
