"""Capture host → render host through the room's clock: what a render node in a room maps with.

    clock = RoomClock(client, endpoints.clock, curve).start()
    clock.mapping_for("anna")     # ClockMapping capture(anna) → this host, or None while unknown

In a room no capture node talks to a render node directly, so neither can measure the other's
clock. Both measure the room's instead (`calibration.clock_service`: capture nodes ping the room's
clock service and report their mapping in-band, as they do to a render node; the room passes the
reports of its slots' streams out in its beat), and `calibration.clock.through_common_clock`
chains capture → room → render. It answers the same `mapping_for(stream)` the render node's own
clock service does, so `xr_runtime/avatars/engine_source.latency_trace` needs no change; its
uncertainty is the sum of the two legs'.
"""
from __future__ import annotations

from calibration.clock import ClockMapping, EstimatorConfig, through_common_clock
from calibration.clock_service import ClockClient, report_mapping
from room.client import RoomClient
from streaming.sockets import CurveClient

# The render node's leg: one trusted share over the last minute, no drift fit. Its pings run on a
# thread of the render process, where a pong can wait tens of milliseconds for the GIL (an engine
# being built for a new slot holds it for seconds); with the default 16-bucket drift fit a few
# buckets of such late replies pulled the offset 20 ms off on one host (measured in the
# three-participant test), while the lowest-delay fifth of a minute's pings stays within the
# round trip. A minute without drift costs at most 10 ppm × 60 s = 0.6 ms.
RENDER_LEG = EstimatorConfig(max_samples=120, buckets=1)


class RoomClock:
    def __init__(self, client: RoomClient, endpoint: str, curve: CurveClient | None = None,
                 period_s: float = 0.5):
        self.room = client
        self.endpoint = endpoint
        self._curve = curve
        self._period_s = period_s
        self._clock: ClockClient | None = None
        self.bad_reports = 0

    def start(self) -> RoomClock:
        self._clock = ClockClient(self.endpoint, "", curve_client=self._curve, estimator=RENDER_LEG)
        self._clock.start_background(self._period_s)
        return self

    def local_to_room(self) -> ClockMapping | None:
        return self._clock.mapping() if self._clock is not None else None

    def mapping_for(self, stream_id: str) -> ClockMapping | None:
        local = self.local_to_room()
        raw = self.room.clocks.get(stream_id)
        if local is None or not isinstance(raw, dict):
            return None
        try:
            peer = report_mapping(float(raw["offset_ns"]), float(raw["drift_ppm"]) / 1e6, int(raw["ref_local_ns"]),
                                  float(raw["uncertainty_ns"]))
        except (KeyError, TypeError, ValueError, OverflowError):
            peer = None
        if peer is None:
            self.bad_reports += 1
            return None
        return through_common_clock(peer, local)

    def stats(self) -> dict:
        local = self.local_to_room()
        mapped = {sid: self.mapping_for(sid) for sid in sorted(self.room.clocks)}
        return {"endpoint": self.endpoint, "render_to_room": local.as_dict() if local else None,
                "capture_to_here": {sid: {"offset_ms": m.offset_ns / 1e6, "uncertainty_ms": m.uncertainty_ns / 1e6}
                                    for sid, m in mapped.items() if m is not None},
                "bad_reports": self.bad_reports}

    def close(self) -> None:
        if self._clock is not None:
            self._clock.close()
            self._clock = None


__all__ = ["RoomClock"]
