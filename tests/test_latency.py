"""Latency recorder: each captured frame counted once, stages add up, creep is detected."""
import numpy as np

from xr_runtime.latency.recorder import LatencyRecorder, LatencyTrace, creep_ms_per_min, stage_ms


def trace(seq, t0, extra_ns=0):
    ms = 1_000_000
    return LatencyTrace("s", seq, t0, t0 + 4 * ms, t0 + 5 * ms, t0 + 6 * ms + extra_ns, t0 + 8 * ms + extra_ns,
                        t0 + 12 * ms + extra_ns, clock_mapped=True)


def test_frames_recorded_once_and_stages_sum_to_end_to_end():
    rec = LatencyRecorder()
    ms = 1_000_000
    for i in range(100):
        t0 = i * 33 * ms
        tr = trace(i, t0)
        assert rec.displayed(tr, t0 + 13 * ms, t0 + 20 * ms, t0 + 40 * ms)
        assert not rec.displayed(tr, t0 + 30 * ms, t0 + 37 * ms, t0 + 57 * ms)  # same frame, next render frame
    r = rec.report()
    assert r["frames"] == 100
    st = r["stages_ms"]
    assert st["end_to_end"]["p50"] == 40.0 and st["inference"]["p50"] == 4.0 and st["display"]["p50"] == 20.0
    parts = stage_ms(rec.times())
    total = sum(v for k, v in parts.items() if k != "end_to_end")
    np.testing.assert_allclose(total, parts["end_to_end"])
    assert abs(r["creep_ms_per_min"]) < 1e-6


def test_growing_queue_shows_as_creep():
    rec = LatencyRecorder()
    ms = 1_000_000
    for i in range(600):  # 10 s at 60 Hz; the receive queue grows by 1 ms per second
        t0 = int(i * ms * 1000 / 60)
        extra = int(i / 60 * ms)
        tr = trace(i, t0, extra)
        rec.displayed(tr, t0 + 13 * ms + extra, t0 + 20 * ms + extra, t0 + 40 * ms + extra)
    assert abs(creep_ms_per_min(rec.times()) - 60.0) < 1.0  # 1 ms/s = 60 ms/min


def test_recent_means_feed_the_overlay():
    rec = LatencyRecorder()
    ms = 1_000_000
    for i in range(300):
        t0 = i * 33 * ms
        rec.displayed(trace(i, t0), t0 + 13 * ms, t0 + 20 * ms, t0 + 40 * ms)
    recent = rec.recent_ms(120)
    assert recent["end_to_end"] == 40.0 and recent["inference"] == 4.0 and recent["queue"] == 2.0
    assert LatencyRecorder().recent_ms() == {}
