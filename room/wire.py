"""The room's control messages: strict JSON objects in one ZeroMQ part, an optional binary part.

    client → room (DEALER → ROUTER):  [json request]  or  [json request, package bytes]
    room → client:                    [json reply]    or  [json reply, package bytes]
    room → everyone (PUB):            [b"scene", json delta | beat]

A request is ``{"op": ..., "id": n, ...}``; its reply ``{"id": n, "ok": true, ...}`` or
``{"id": n, "ok": false, "reason": code, "error": text}``. Everything that arrives is hostile:
`decode_request` yields a dict or raises `WireError` (counted by the service, never fatal).
"""
from __future__ import annotations

import json

from core.errors import HeadcastError
from core.strict_json import StrictJsonError, loads_strict

DELTA_TOPIC = b"scene"
MAX_JSON_BYTES = 64 << 10
MAX_DEPTH = 8


class WireError(HeadcastError, ValueError):
    pass


def encode(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")


def decode(data: bytes, what: str = "room message") -> dict:
    if len(data) > MAX_JSON_BYTES:
        raise WireError(f"{what}: {len(data)} bytes, over {MAX_JSON_BYTES}")
    try:
        obj = loads_strict(bytes(data), what, max_depth=MAX_DEPTH)
    except StrictJsonError as exc:
        raise WireError(str(exc)) from None
    if not isinstance(obj, dict) or not isinstance(obj.get("op", ""), str):
        raise WireError(f"{what}: not an object with an 'op'")
    return obj


def reply(request: dict, ok: bool = True, **fields) -> dict:
    rid = request.get("id") if isinstance(request.get("id"), int) else None
    return {"id": rid, "ok": ok, **fields}


def refusal(request: dict, reason: str, error: str) -> dict:
    return reply(request, False, reason=reason, error=error)


__all__ = ["DELTA_TOPIC", "WireError", "decode", "encode", "refusal", "reply"]
