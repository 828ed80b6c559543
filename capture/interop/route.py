"""The byte-level round trip of one frame through an ecosystem format, without sockets: what
``eval transfer --via`` puts between the driver's measurement and the avatar, so the cost of each
format (its vocabulary, its lost confidences, its quantisation) is measured on exactly its bytes."""
from __future__ import annotations

import numpy as np

from inference.features.expr52 import effective_weights, payload_from_weights
from streaming import protocol
from streaming.protocol import FeatureFrame, FeatureKind

from . import livelink, osc

VIAS = ("mp478", "expr52", "livelink", "vmc", "osc")


def through(via: str, payload: np.ndarray, t_ns: int = 0) -> np.ndarray:
    """An expr52 payload (52, 2) → what arrives at the avatar after ``via``'s encode and decode."""
    if via == "expr52":
        parts = protocol.encode(FeatureFrame("via", 0, FeatureKind.EXPR52, payload, t_ns, t_ns))
        return np.array(protocol.decode(parts).features)
    w = effective_weights(payload)  # the ecosystem formats carry no confidences: weights × confidence
    if via == "livelink":
        return payload_from_weights(livelink.decode(livelink.encode(livelink.frame_from_expr52(w, None, t_ns / 1e9))).weights)
    if via in ("vmc", "osc"):
        mode = "vmc" if via == "vmc" else "unified"
        msgs = osc.vmc_messages(w, None, t_ns / 1e9) if mode == "vmc" else osc.unified_messages(w)
        frames = osc.OscDecoder(mode).feed(osc.bundle(msgs), t_ns)
        weights, conf, _, _ = frames[0]
        return payload_from_weights(weights, conf)
    raise ValueError(f"unknown route {via!r} (known: {', '.join(VIAS)})")
