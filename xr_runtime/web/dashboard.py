"""What the page shows besides the picture, as JSON: the render loop's rate and stage times, the
stream table (`streaming.stream_table`, the same cells `headcast listen` prints) and the
per-stage latency of every displayed capture frame (`latency.recorder.RecordCursor`, the records
`bench latency --attach` receives), with p50/p99 over a sliding window.

Built on the web server's thread every half second; it only reads what the render loop and the
receiver publish (append-only records, snapshots), so it never takes a lock the frame loop holds.
"""
from __future__ import annotations

import collections
import time
from dataclasses import dataclass

import numpy as np

from core.percentiles import percentiles
from streaming import stream_table
from xr_runtime.latency.recorder import STAGES, RecordCursor, stage_ms

LATENCY_SERIES = tuple(name for name, _, _ in STAGES) + ("end_to_end",)


@dataclass(frozen=True)
class DashboardConfig:
    window_s: float = 30.0          # latency percentiles and the plot's backlog span this much
    feature_values: int = 6
    max_points_per_update: int = 400   # more new points than this in one update are thinned evenly


class Dashboard:
    def __init__(self, node, receiver=None, clock=None, config: DashboardConfig = DashboardConfig()) -> None:
        self.node = node
        self.receiver = receiver
        self.clock = clock
        self.config = config
        self._cursor = RecordCursor(node.latency)
        self._window: collections.deque = collections.deque()   # (display_ns, {series: ms})
        self._t0_ns = time.monotonic_ns()

    # ---------------------------------------------------------------- latency
    def _new_points(self) -> list[tuple[int, dict]]:
        columns = self._cursor.new_columns()
        n = len(columns["display"])
        points = []
        if n:
            times = {k: np.asarray(v, dtype=np.int64) for k, v in columns.items()}
            ms = stage_ms(times)
            points = [(int(times["display"][i]), {s: float(ms[s][i]) for s in LATENCY_SERIES}) for i in range(n)]
            self._window.extend(points)
        horizon = time.monotonic_ns() - int(self.config.window_s * 1e9)
        while self._window and self._window[0][0] < horizon:
            self._window.popleft()
        return points

    def _thin(self, points: list) -> list:
        cap = self.config.max_points_per_update
        if len(points) <= cap:
            return points
        keep = np.linspace(0, len(points) - 1, cap).round().astype(int)
        return [points[i] for i in keep]

    def _points_json(self, points: list) -> dict:
        return {"t_s": [round((t - self._t0_ns) / 1e9, 4) for t, _ in points],
                **{s: [round(p[s], 3) for _, p in points] for s in LATENCY_SERIES}}

    def _window_stats(self) -> dict:
        out = {}
        for s in LATENCY_SERIES:
            p = percentiles(v[s] for _, v in self._window)
            out[s] = {"n": p["n"], "p50": p["p50"], "p99": p["p99"]}
        return out

    def backlog(self) -> dict:
        """The window's points, for a page that connects mid-session."""
        return self._points_json(self._thin(list(self._window)))

    # ---------------------------------------------------------------- everything
    def update(self) -> dict:
        points = self._new_points()
        node = self.node
        means = node.stats.recent_means()
        status = {
            "type": "status",
            "t_s": round((time.monotonic_ns() - self._t0_ns) / 1e9, 3),
            "render": {"fps": round(node.stats.fps(), 2), "frames": len(node.stats.records),
                       "stage_ms": {k: round(v, 3) for k, v in means.items()},
                       "avatars": node.stream_states()},
            "latency": {"points": self._points_json(self._thin(points)), "window": self._window_stats(),
                        "window_s": self.config.window_s, "series": list(LATENCY_SERIES),
                        "recorded": len(node.latency)},
        }
        if self.receiver is not None:
            stats = stream_table.collect(self.receiver, self.config.feature_values, self.clock)
            status["streams"] = {"summary": stream_table.summary_line(stats),
                                 "columns": [[k, h] for k, h, _ in stream_table.COLUMNS],
                                 "rows": stream_table.rows(stats)}
        return status
