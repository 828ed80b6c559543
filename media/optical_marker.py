"""An optical frame counter for glass-to-glass latency: a marker a camera can read off a display.

The render node draws, in a corner of what it shows, an ArUco marker (OpenCV's `aruco` module,
dictionary 4×4_1000) whose id is its frame index modulo 1000; a camera pointed at the display
feeds the capture node, which reads the id back off each camera frame. Joining the two — which
frame was on the glass when the camera exposed, and when the capture frame that saw it was shown
in turn — gives the full loop display → camera → features → network → engine → display, with
nothing but the render host's clock at both ends (`join_loop`).

ArUco rather than a home-made bit pattern: it is found under perspective, blur and the moiré of a
camera looking at a screen, its ids carry error correction, and it is a maintained part of
OpenCV. 1000 ids at 60 Hz repeat every 16.7 s, far longer than any loop; an id is resolved to
the newest frame with that id shown before the camera frame was taken.

Detection costs 0.2 ms on a 128-pixel region of interest here (2 ms on a whole 640×480 frame):
after the first hit only the region around the last marker is searched, the whole frame again
when it is lost.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IDS = 1000                    # ids of the 4×4_1000 dictionary: the counter is the frame index mod IDS
MARKER_CELLS = 6              # a 4×4 code inside a one-cell black border
QUIET_CELLS = 1               # white margin around the marker (the detector needs contrast around it)


def _dictionary():
    import cv2

    return cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_4X4_1000)


def marker_cells(frame_index: int) -> np.ndarray:
    """(8, 8) bool, True = white: the marker for `frame_index` with its quiet zone, row 0 on top."""
    import cv2

    code = cv2.aruco.generateImageMarker(_dictionary(), int(frame_index) % IDS, MARKER_CELLS) > 127
    side = MARKER_CELLS + 2 * QUIET_CELLS
    cells = np.ones((side, side), bool)
    cells[QUIET_CELLS:QUIET_CELLS + MARKER_CELLS, QUIET_CELLS:QUIET_CELLS + MARKER_CELLS] = code
    return cells


def marker_image(frame_index: int, cell_px: int = 8) -> np.ndarray:
    """The marker as a (side·cell_px)² uint8 image (white 255, black 0): for tests and desktops."""
    return np.kron(marker_cells(frame_index).astype(np.uint8) * 255, np.ones((cell_px, cell_px), np.uint8))


class MarkerDetector:
    """Reads the marker's id off camera frames (BGR or grey), tracking its region between frames."""

    def __init__(self) -> None:
        import cv2

        self._cv2 = cv2
        self._detector = cv2.aruco.ArucoDetector(_dictionary(), cv2.aruco.DetectorParameters())
        self._roi: tuple[int, int, int, int] | None = None   # x0, y0, x1, y1 around the last hit
        self.found = 0
        self.missed = 0

    def detect(self, image: np.ndarray) -> int | None:
        cv2 = self._cv2
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        for roi in ((self._roi, None) if self._roi is not None else (None,)):
            x0, y0, x1, y1 = roi if roi is not None else (0, 0, grey.shape[1], grey.shape[0])
            corners, ids, _ = self._detector.detectMarkers(np.ascontiguousarray(grey[y0:y1, x0:x1]))
            if ids is not None and len(ids):
                pts = corners[0].reshape(-1, 2) + (x0, y0)
                lo, hi = pts.min(0), pts.max(0)
                pad = 0.5 * (hi - lo).max()
                self._roi = (max(0, int(lo[0] - pad)), max(0, int(lo[1] - pad)),
                             min(grey.shape[1], int(hi[0] + pad) + 1), min(grey.shape[0], int(hi[1] + pad) + 1))
                self.found += 1
                return int(np.asarray(ids).reshape(-1)[0])
            self._roi = None  # lost it: the next pass (this frame or the next) searches everywhere
        self.missed += 1
        return None


@dataclass(frozen=True)
class LoopSample:
    seq: int                  # the capture frame that saw the marker
    marker_frame: int         # the render frame whose marker it saw
    marker_shown_ns: int      # when that render frame was shown (render host clock)
    camera_ns: int            # when the camera frame was taken (render host clock)
    redisplayed_ns: int       # when the capture frame's animation was shown in turn

    @property
    def loop_ms(self) -> float:                 # display → camera → … → display
        return (self.redisplayed_ns - self.marker_shown_ns) / 1e6

    @property
    def display_to_camera_ms(self) -> float:    # what the display and the camera add
        return (self.camera_ns - self.marker_shown_ns) / 1e6

    @property
    def camera_to_display_ms(self) -> float:    # the internal chain, as the stage stamps see it
        return (self.redisplayed_ns - self.camera_ns) / 1e6


def join_loop(shown: list[tuple[int, int]], seen: list[tuple[int, int, int]],
              redisplayed: dict[int, int]) -> list[LoopSample]:
    """`shown`: (render frame index, shown at) of every frame that carried a marker; `seen`:
    (capture seq, camera time, marker id) of every camera frame that read one; `redisplayed`:
    capture seq → when its state was first shown. All times on the render host's clock."""
    if not shown:
        return []
    shown_sorted = sorted(shown, key=lambda r: r[1])
    times = np.array([t for _, t in shown_sorted], np.int64)
    frames = np.array([f for f, _ in shown_sorted], np.int64)
    out = []
    for seq, camera_ns, marker_id in seen:
        if seq not in redisplayed:
            continue
        before = int(np.searchsorted(times, camera_ns, side="right"))
        # The newest frame with this id shown before the camera frame (ids repeat every IDS frames).
        candidates = np.flatnonzero(frames[:before] % IDS == marker_id)
        if not len(candidates):
            continue
        k = candidates[-1]
        out.append(LoopSample(seq, int(frames[k]), int(times[k]), int(camera_ns), int(redisplayed[seq])))
    return out
