"""Runs one ecosystem input adapter as a capture node would run: UDP in → ``expr52`` frames out
through ``streaming.publisher.Publisher`` to a render node (which sees an ordinary stream: it shows
up in ``headcast listen`` and drives any avatar that accepts ``expr52``)."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from core.errors import HeadcastError
from streaming.protocol import validate_stream_id
from streaming.publisher import Publisher
from streaming.sockets import CurveClient

from .common import AdapterStats, Expr52Stream, is_loopback

log = logging.getLogger(__name__)

KINDS = ("livelink", "vmc", "osc")


@dataclass(frozen=True)
class AdaptConfig:
    kind: str  # livelink | vmc | osc (Unified Expressions)
    listen_host: str
    listen_port: int
    endpoint: str  # render node (or room) to publish to
    stream_id: str
    bind: bool = False
    insecure_listen: bool = False  # UDP has no CURVE: a non-loopback listen address must be asked for
    curve_client: CurveClient | None = None
    subject: str | None = None  # Live Link: only this subject


def open_adapter(cfg: AdaptConfig, stream: Expr52Stream):
    if cfg.kind not in KINDS:
        raise HeadcastError(f"unknown adapter {cfg.kind!r} (known: {', '.join(KINDS)})")
    if not is_loopback(cfg.listen_host) and not cfg.insecure_listen:
        raise HeadcastError(f"--listen {cfg.listen_host}:{cfg.listen_port} is not loopback: {cfg.kind} arrives "
                            "unauthenticated over UDP, so anyone on the network could drive the avatar; "
                            "pass --insecure-listen to accept that")
    if cfg.kind == "livelink":
        from .livelink import LiveLinkAdapter

        return LiveLinkAdapter(cfg.listen_host, cfg.listen_port, stream, cfg.subject)
    from .osc import OscAdapter

    return OscAdapter(cfg.listen_host, cfg.listen_port, stream, "vmc" if cfg.kind == "vmc" else "unified")


class AdapterNode:
    """Publisher + adapter; ``run`` until ``stop`` (or ``seconds``), then an end-of-stream frame."""

    def __init__(self, cfg: AdaptConfig):
        try:
            validate_stream_id(cfg.stream_id)
        except ValueError as exc:
            raise HeadcastError(str(exc)) from exc
        self.cfg = cfg
        self.publisher = Publisher(cfg.endpoint, bind=cfg.bind, curve_client=cfg.curve_client)
        self.stream = Expr52Stream(self.publisher, cfg.stream_id)
        try:
            self.adapter = open_adapter(cfg, self.stream)
        except BaseException:
            self.publisher.close()
            raise

    @property
    def address(self):
        return self.adapter.address

    def run(self, seconds: float | None = None) -> AdapterStats:
        log.info("%s on %s:%d → %s as stream %r (expr52)", self.cfg.kind, *self.adapter.address[:2],
                 self.cfg.endpoint, self.cfg.stream_id)
        try:
            return self.adapter.run(seconds)
        finally:
            self.stream.end()

    def stop(self) -> None:
        self.adapter.stop()

    def close(self) -> None:
        self.adapter.close()
        self.publisher.close()
