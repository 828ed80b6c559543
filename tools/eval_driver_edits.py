"""Driver clips the sample media does not contain, made from it for `eval transfer` (issue 13):
another frame rate, a wink, a gaze sweep. Edits act on the tracked landmarks (image pixels) before
features are made, exactly where a real wink or look would appear. Each edit returns a copy of
the given `eval_transfer.DriverTrack` (`dataclasses.replace`), so this module never imports it back."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from core.errors import HeadcastError
from geometry.facemesh_eyes import EYES

EDITS = ("wink-right", "wink-left", "gaze-sweep", "smile-start")
SMILE_FROM = 20  # the sample man smiles from frame ~19 to 69
WINK_FRAMES = (6, 12)  # in the sample man's relaxed stretch (0-16), away from his own blink (25-29)
_CREASE = {"right": (247, 30, 29, 27, 28, 56, 190), "left": (467, 260, 259, 257, 258, 286, 414)}


def resample_track(track, fps: float):
    """The clip as a camera at ``fps`` would have seen it: landmarks linearly interpolated at the
    new frame times (a missing neighbour makes the frame missing), images nearest."""
    if not (1.0 <= fps <= 240.0):
        raise HeadcastError(f"--driver-fps {fps}: must be between 1 and 240")
    n = len(track.landmarks)
    duration = n / track.fps
    times = np.arange(0.0, duration - 1e-9, 1.0 / fps)
    marks, frames = [], []
    for t in times:
        x = t * track.fps
        i = min(int(np.floor(x)), n - 1)
        j = min(i + 1, n - 1)
        f = x - i
        a, b = track.landmarks[i], track.landmarks[j]
        marks.append(None if a is None or b is None else ((1 - f) * a + f * b).astype(np.float32))
        if track.frames_bgr:
            frames.append(track.frames_bgr[min(int(round(x)), n - 1)])
    return replace(track, landmarks=marks, frames_bgr=frames, fps=float(fps))


def edit_track(track, edit: str):
    """(edited track, (first, last + 1) edited frame) for one of EDITS."""
    if edit not in EDITS:
        raise HeadcastError(f"unknown driver edit {edit!r} (one of {', '.join(EDITS)})")
    marks = [None if m is None else np.array(m, np.float32, copy=True) for m in track.landmarks]
    n = len(marks)
    if edit == "smile-start":
        # A driver who is smiling at his first frame, relaxes later and smiles again: the clip from
        # mid-smile to its end, then the whole clip once more.
        order = list(range(SMILE_FROM, n)) + list(range(n))
        frames = [track.frames_bgr[i] for i in order] if track.frames_bgr else []
        return replace(track, landmarks=[marks[i] for i in order], frames_bgr=frames, fps=track.fps), (0, len(order))
    if edit.startswith("wink"):
        side = edit.split("-")[1]
        upper, lower, _, _ = EYES[side]
        lo, hi = WINK_FRAMES
        if n < hi:
            raise HeadcastError(f"a wink edit needs at least {hi} driver frames, the clip has {n}")
        for i in range(lo - 2, hi + 2):
            # 2-frame ramps in and out, fully shut over [lo, hi)
            s = 1.0 if lo <= i < hi else (0.5 if i in (lo - 1, hi) else 0.2)
            m = marks[i]
            if m is None:
                continue
            for k, (u, d) in enumerate(zip(upper, lower)):
                move = s * 0.92 * (m[d] - m[u])
                m[u] += move
                m[_CREASE[side][k]] += 0.3 * move
        return replace(track, landmarks=marks, frames_bgr=track.frames_bgr, fps=track.fps), (lo, hi)
    # gaze sweep: both irises along each eye's own axes, ±0.35 half widths across, ±0.2 up/down,
    # with different periods so x and y are not the same signal
    for i, m in enumerate(marks):
        if m is None:
            continue
        t = i / track.fps
        gx = 0.35 * np.sin(2 * np.pi * t / 1.2)
        gy = 0.2 * np.sin(2 * np.pi * t / 1.9 + 1.0)
        for side in ("right", "left"):
            _, _, corners, iris = EYES[side]
            a, b = m[corners[0], :2], m[corners[1], :2]
            # towards the subject's left in the image: right eye outer→inner, left eye inner→outer
            along = (b - a) if side == "right" else (a - b)
            half = 0.5 * along
            up = np.array([half[1], -half[0]])  # image y grows downwards
            if up[1] > 0:
                up = -up
            m[list(iris), :2] += gx * half + gy * up
    return replace(track, landmarks=marks, frames_bgr=track.frames_bgr, fps=track.fps), (0, n)
