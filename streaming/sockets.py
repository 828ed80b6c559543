"""Every ZeroMQ socket Headcast opens goes through `open_socket`: bind policy, CURVE, ZAP, limits.

    s = open_socket(zmq.SUB, "tcp://127.0.0.1:5555", bind=True, curve_server=keys, rcvhwm=64)
    s.sock.recv_multipart(...)
    s.close()

The side that binds is the CURVE server (normally the render node); the side that connects is a
CURVE client holding its own key pair and the server's public key. Binding anything but loopback
without CURVE is refused unless the caller says ``insecure``: a feature stream is a live record of
someone's face. A ZAP authenticator (pyzmq's thread authenticator over a directory of allowed
client public keys) runs for every CURVE server socket, so only listed clients get through; the
client key that ZAP accepted is attached to each message (its ``User-Id`` property), which is what
binds a stream to the key that publishes it.

One helper rather than one per peer, because each copy used to get a different detail wrong (a
socket left open after a failed bind, which then hung the context's teardown; a message size
limit that a CURVE frame does not fit). Failures to bind or connect raise `EndpointError` naming
the endpoint, at once.
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

from core.errors import HeadcastError

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"


class InsecureBindError(HeadcastError, RuntimeError):
    """Binding a non-loopback endpoint without CURVE keys (and without --insecure)."""


class EndpointError(HeadcastError, RuntimeError):
    """An endpoint cannot be bound or connected (in use, malformed, no such interface)."""


class CurveKeyError(HeadcastError, ValueError):
    """A CURVE key file is missing, unreadable or of the wrong kind."""


class KeysExistError(HeadcastError, FileExistsError):
    """`headcast keys generate` would overwrite existing keys."""


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
        raise EndpointError(f"unsupported endpoint {endpoint!r} (use tcp://HOST:PORT, ipc://PATH or inproc://NAME)")
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


def _load_certificate(path: Path) -> tuple[bytes, bytes | None]:
    try:
        return zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise CurveKeyError(f"cannot read CURVE key {path}: {exc}") from exc


def _load_secret(path: Path) -> tuple[bytes, bytes]:
    public, secret = _load_certificate(path)
    if secret is None:
        raise CurveKeyError(f"{path} holds no secret key (use the .key_secret file)")
    return public, secret


def load_public_key(path: Path) -> bytes:
    return _load_certificate(path)[0]


def apply_curve_server(sock: zmq.Socket, curve: CurveServer) -> None:
    public, secret = _load_secret(curve.secret_key_file)
    sock.curve_publickey = public
    sock.curve_secretkey = secret
    sock.curve_server = True


def apply_curve_client(sock: zmq.Socket, curve: CurveClient) -> None:
    public, secret = _load_secret(curve.secret_key_file)
    sock.curve_publickey = public
    sock.curve_secretkey = secret
    sock.curve_serverkey = load_public_key(curve.server_public_key_file)


def start_authenticator(ctx: zmq.Context, curve: CurveServer):
    """Starts ZAP so only clients whose public keys lie in ``allowed_clients_dir`` get through."""
    from zmq.auth.thread import ThreadAuthenticator

    if not Path(curve.allowed_clients_dir).is_dir():
        raise CurveKeyError(f"allowed clients directory {curve.allowed_clients_dir} does not exist")
    auth = ThreadAuthenticator(ctx, log=logging.getLogger("headcast.zap"))
    auth.start()
    auth.configure_curve(domain="*", location=str(curve.allowed_clients_dir))
    return auth


@dataclass(frozen=True)
class SocketOptions:
    """Options applied before bind/connect (None: ZeroMQ's default)."""

    linger_ms: int = 0
    sndhwm: int | None = None
    rcvhwm: int | None = None
    maxmsgsize: int | None = None      # bytes of one message part after decryption; larger ones drop the peer
    subscribe: bytes | None = None      # SUB only: topic prefix (b"" = everything)
    conflate: bool = False


class ManagedSocket:
    """A socket with the context and authenticator it owns; `close()` releases all three, in order."""

    def __init__(self, ctx: zmq.Context, sock: zmq.Socket, auth, own_context: bool, endpoint: str):
        self.ctx = ctx
        self.sock = sock
        self._auth = auth
        self._own_context = own_context
        self.endpoint = endpoint  # resolved (tcp://127.0.0.1:0 → the chosen port) when bound
        self._monitor: HandshakeMonitor | None = None

    def handshake_monitor(self) -> "HandshakeMonitor":
        """The socket's handshake monitor (made on first use, closed with the socket)."""
        if self._monitor is None:
            self._monitor = HandshakeMonitor(self.sock, self.endpoint)
        return self._monitor

    def close(self) -> None:
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            monitor.close()  # before the socket: an open monitor socket would block the context's term()
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()  # with the socket's own linger (SocketOptions.linger_ms)
        auth, self._auth = self._auth, None
        if auth is not None:
            auth.stop()
        if self._own_context and self.ctx is not None:
            ctx, self.ctx = self.ctx, None
            ctx.term()

    @property
    def closed(self) -> bool:
        return self.sock is None

    def __enter__(self) -> "ManagedSocket":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_socket(kind: int, endpoint: str, *, bind: bool, curve_server: CurveServer | None = None,
                curve_client: CurveClient | None = None, insecure: bool = False,
                options: SocketOptions = SocketOptions(), context: zmq.Context | None = None) -> ManagedSocket:
    """Open a socket of `kind` bound to (or connected to) `endpoint`, secured as the arguments say.

    Raises `InsecureBindError` (policy), `CurveKeyError` (keys), `EndpointError` (bind/connect failed);
    nothing is left open when it raises."""
    if bind:
        check_bind_policy(endpoint, curve_server, insecure)
    elif curve_server is not None:
        raise ValueError("curve_server keys belong to the binding side")
    own = context is None
    ctx = context or zmq.Context()
    sock = auth = None
    try:
        sock = ctx.socket(kind)
        sock.linger = options.linger_ms
        if options.sndhwm is not None:
            sock.sndhwm = options.sndhwm
        if options.rcvhwm is not None:
            sock.rcvhwm = options.rcvhwm
        if options.maxmsgsize is not None:
            sock.maxmsgsize = options.maxmsgsize
        if options.conflate:
            sock.conflate = True
        if options.subscribe is not None:
            sock.setsockopt(zmq.SUBSCRIBE, options.subscribe)
        if bind:
            if curve_server is not None:
                auth = start_authenticator(ctx, curve_server)
                apply_curve_server(sock, curve_server)
            try:
                sock.bind(endpoint)
            except zmq.ZMQError as exc:
                hint = " (the port is in use: is another render node running?)" if exc.errno == zmq.EADDRINUSE else ""
                raise EndpointError(f"cannot use endpoint {endpoint}: bind failed: {exc.strerror}{hint}") from exc
            resolved = sock.getsockopt(zmq.LAST_ENDPOINT)
            resolved = resolved.decode() if isinstance(resolved, bytes) else str(resolved)
        else:
            if curve_client is not None:
                apply_curve_client(sock, curve_client)
            try:
                sock.connect(endpoint)
            except zmq.ZMQError as exc:
                raise EndpointError(f"cannot use endpoint {endpoint}: connect failed: {exc.strerror}") from exc
            resolved = endpoint
        return ManagedSocket(ctx, sock, auth, own, resolved)
    except BaseException:
        if sock is not None:
            sock.close(linger=0)
        if auth is not None:
            auth.stop()
        if own:
            ctx.term()
        raise


_HANDSHAKE_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                     | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


_MECHANISMS = {zmq.NULL: "NULL", zmq.PLAIN: "PLAIN", zmq.CURVE: "CURVE"}


def _mismatch_reason(ours: str | None, theirs: str) -> str:
    if ours == "CURVE":
        return ("security mismatch: this client uses CURVE and the peer does not (drop --server-key and "
                "--client-key, or start the peer with --server-key/--allow)")
    if theirs == "CURVE":
        return ("security mismatch: the peer uses CURVE and this client connects in plaintext (give "
                "--server-key and --client-key when the peer was started with --server-key/--allow)")
    return f"security mismatch: the peer uses {theirs} and this client {ours}"


class HandshakeMonitor:
    """What happened to a connecting socket's handshakes (ZeroMQ's socket monitor), read on demand.

    A ZeroMQ socket never tells its user that the peer refused it: a PUB or DEALER whose
    handshake fails (plaintext against a CURVE port, a key not on the allow-list) queues or drops
    every message and reconnects for ever, which made a plaintext capture node exit 0 having
    delivered nothing and `calibrate clock` wait for answers that could never come. The monitor
    turns those failures into a reason the caller can raise.

        mon = HandshakeMonitor(sock)
        mon.wait(timeout_s=1.0)       # True once a handshake succeeded, False on failure/timeout
        mon.failure                   # e.g. "the peer refused this client's CURVE key (...)"

    Not thread-safe: poll it from one thread (the socket's owner)."""

    def __init__(self, sock: zmq.Socket, endpoint: str | None = None):
        self._sock = sock
        self._endpoint = endpoint  # where the socket connects: lets `settle` ask the peer directly
        self._mon = sock.get_monitor_socket(_HANDSHAKE_EVENTS)
        self.succeeded = 0
        self.failed = 0
        self.failure: str | None = None  # why handshakes failed (the most specific reason seen)
        self.specific = False  # the failure names its cause (auth, mechanism), not just "closed"

    def poll(self) -> None:
        """Reads every event that has arrived (non-blocking)."""
        from zmq.utils.monitor import recv_monitor_message

        while self._mon is not None:
            try:
                event = recv_monitor_message(self._mon, zmq.NOBLOCK)
            except zmq.Again:
                return
            except (zmq.ZMQError, RuntimeError):
                return
            self._record(int(event["event"]), int(event["value"]))

    def _record(self, event: int, value: int) -> None:
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.succeeded += 1
            return
        self.failed += 1
        if event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL and self.specific:
            return  # keep the more telling reason an earlier attempt gave
        self.specific = event != zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            self.failure = ("the peer refused this client's CURVE key (it is not in the peer's --allow "
                            "directory, or --server-key is not the peer's public key)")
        elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            ours = self._own_mechanism()
            self.failure = _mismatch_reason(ours, "NULL" if ours == "CURVE" else "CURVE")
        elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            self.failure = f"the handshake failed (ZMTP protocol error 0x{value:x}: not a Headcast peer?)"
        else:
            self.failure = ("the handshake failed (the peer closed the connection: it may require CURVE — give "
                            "--server-key and --client-key — or not be a Headcast peer)")

    def wait(self, timeout_s: float) -> bool:
        """Waits until a handshake succeeded (True) or one failed / the time is up (False)."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            self.poll()
            if self.succeeded:
                return True
            if self.failed:
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._mon is None:
                return False
            self._mon.poll(max(1, int(remaining * 1000)))

    @property
    def refused(self) -> bool:
        """A handshake failed and none has succeeded: nothing this socket sends can arrive."""
        self.poll()
        return self.failed > 0 and self.succeeded == 0

    def settle(self, timeout_s: float = 2.5) -> None:
        """After a failure without detail, finds out whether it was a security mismatch.

        libzmq reports a CURVE/plaintext mismatch as a closed connection whenever the two greetings
        cross within one poll (see `streaming.zmtp_probe`), and under load every reconnect can lose
        that race, so waiting for a reconnect to say more is not enough (2.5 s of waiting still ended
        generic in two CI runs). The peer's mechanism is therefore asked for directly; only where it
        cannot be asked (inproc, no answer) does this wait up to `timeout_s` for a telling event."""
        self.poll()
        if self.specific or self.succeeded or self._mon is None:
            return
        if self._endpoint is not None and self._ask_peer():
            return
        deadline = time.monotonic() + timeout_s
        while self._mon is not None and not self.specific and not self.succeeded:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if self._mon.poll(max(1, int(remaining * 1000))):
                self.poll()

    def _own_mechanism(self) -> str | None:
        return _MECHANISMS.get(self._sock.getsockopt(zmq.MECHANISM))

    def _ask_peer(self) -> bool:
        """Names a mechanism mismatch from the peer's own greeting; True when that settled it."""
        from streaming.zmtp_probe import peer_mechanism

        theirs = peer_mechanism(self._endpoint, timeout_s=1.0)
        ours = self._own_mechanism()
        if theirs is None or ours is None or theirs == ours:
            return False
        self.specific = True
        self.failure = _mismatch_reason(ours, theirs)
        return True

    def close(self) -> None:
        mon, self._mon = self._mon, None
        if mon is not None:
            try:
                self._sock.disable_monitor()
            except zmq.ZMQError:
                pass
            mon.close(linger=0)


def generate_keys(directory: Path, names: list[str]) -> list[tuple[Path, Path]]:
    """Writes ``NAME.key`` (public) and ``NAME.key_secret`` for each name; refuses to overwrite."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        if not re.match(r"^[A-Za-z0-9_.\-]+$", name):
            raise CurveKeyError(f"bad key name {name!r}")
        for suffix in (".key", ".key_secret"):
            if (directory / f"{name}{suffix}").exists():
                raise KeysExistError(f"{directory / (name + suffix)} exists; not overwriting keys")
        pub, sec = zmq.auth.create_certificates(str(directory), name)
        Path(sec).chmod(0o600)
        out.append((Path(pub), Path(sec)))
    return out


def zap_user_id(frame) -> str | None:
    """The ZAP User-Id a received `zmq.Frame` carries (a CURVE client's z85 public key); None on
    plaintext, where no ZAP handler ran. The receiver binds streams to it, the room relay checks it."""
    try:
        uid = frame.get("User-Id")
    except (zmq.ZMQError, AttributeError):
        return None
    return uid or None
