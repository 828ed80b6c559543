"""The shoulders and upper chest (the *torso*) from a clip that shows them, and the neck that joins them.

A render node receives the driver's head motion and nothing of their body, so the torso does not
turn with the head: it is drawn with the *body* transform (the head's placement and translation
without its rotation about the neck pivot), and the head's neck blends from the head's transform
at the jaw to the body's at its base (two-bone linear skinning, ``neck_body_weights``). Turning the
head then twists the neck over still shoulders instead of swinging the shoulders round.

Fitted to the person, not a fixed bust:

* **Gate.** MediaPipe Pose (``shoulders.ShoulderTracker``) must find both shoulders, visible and
  inside the image, in at least ``min_share`` of the frames; otherwise there is no torso and the
  manifest says why (the sample woman's clip cuts at her chin).
* **Outline.** The body faces the camera and its frame follows the head's neck pivot (the body
  frame: the camera's axes, the pivot's image point as origin, the head's scale). Each row of the
  body frame below the chin line reads the person matte's run through the body's centre line;
  the median over the frames of its left and right ends is the outline at that height. A run that
  touches the image's side is cut there and does not vote for that side. The slope from the neck is
  capped at the anatomical one and the outline smoothed along the rings (``fit_profile``: a webcam
  above the screen sees the shoulder tops rise almost to the chin, which a silhouette cannot tell
  from depth).
* **Below the frame.** Rows no frame sees keep the width of the last seen row (at least the
  shoulders' joint-to-joint width × ``shoulder_pad``) down to ``drop`` below the shoulder line,
  and are marked inferred, as is the depth: a monocular clip gives none, so the cross-section is a
  superellipse whose half-depth is ``depth_ratio`` × the half-width (anthropometric: chest depth ≈
  half the shoulder width), behind the neck's axis.
* **Texture.** Each texel's surface point is projected into the frames that see it (facing the
  camera, inside the person matte, below the chin line) and takes the median colour; the back and
  whatever else no frame sees takes the median of its own row's seen texels (the clothing's colour).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.head_model.head_closure import CHIN, FOREHEAD, fit_head_shape
from inference.head_model.matte import chin_line_height

# Where a head turns and nods: the top of the neck, behind and below the canonical origin (the
# bridge of the nose), in interocular units of the canonical frame (y up, z out of the face).
NECK_PIVOT = (0.0, -1.3, -1.5)
# The body frame's axes in the tracker's pixel frame: canonical x right, y up, z out of the face →
# pixel x right, y down, depth away from the camera.
CAMERA_FLIP = np.array([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class TorsoConfig:
    enabled: bool = True
    min_visibility: float = 0.5  # MediaPipe Pose's shoulder visibility for a shoulder to count
    min_share: float = 0.5  # share of the sampled frames that must show both shoulders
    max_frames: int = 48  # frames sampled (spread evenly over the kept frames)
    rows: int = 24  # rings from the neck to the bust's lower edge
    cols: int = 48  # vertices per ring
    min_seen: int = 3  # frames that must see a row's side for it to count as observed
    # How far the bust reaches below the shoulder line (canonical units; 2.2 × 63 mm ≈ 14 cm).
    drop: float = 2.2
    shoulder_pad: float = 1.15  # the outline beyond the shoulder joints (deltoids), below the frame
    shoulder_slope: float = 2.7  # most outward per downward unit from the neck (a ≈ 20° trapezius)
    shoulder_round: float = 1.5  # Gaussian smoothing of the outline along the rings (rings; 0: none)
    depth_ratio: float = 0.5  # half-depth / half-width of the cross-section (inferred)
    max_half_depth: float = 1.6  # ≈ 10 cm: a chest ≈ 20 cm deep
    back_shift: float = 0.35  # the chest's axis lies this far behind the neck's at the shoulders
    exponent: float = 2.6  # superellipse exponent of the cross-section (2: an ellipse)
    texture_size: int = 128
    # The head's neck: body weight 0 at chin − neck_from × face height, 1 at the neck stub's base.
    neck_from: float = 0.1


@dataclass(frozen=True)
class TorsoFrame:
    """One frame's evidence: its person matte, the head's pose canonical → pixel, its landmarks."""
    person: np.ndarray  # (H, W) float32 in [0, 1]
    rotation: np.ndarray
    translation: np.ndarray
    scale: float
    landmarks_px: np.ndarray  # (478, 3)


@dataclass(frozen=True)
class TorsoProfile:
    """The torso as rings: at height y[i] a superellipse of half-width a, half-depth b centred at
    (cx, cz). ``seen[i]``: the outline at that height was measured (else inferred)."""
    y: np.ndarray
    a: np.ndarray
    b: np.ndarray
    cx: np.ndarray
    cz: np.ndarray
    seen: np.ndarray
    shoulder_y: float
    exponent: float

    def ring(self, i: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Points (..., 3) and outward normals at fractional ring index i and angle theta (0: the
        front, +z; π/2: the subject's left, +x)."""
        n = len(self.y)
        fi = np.clip(i, 0, n - 1)
        i0 = np.clip(np.floor(fi).astype(np.int64), 0, n - 2)
        t = fi - i0

        def lerp(v):
            return v[i0] * (1 - t) + v[i0 + 1] * t

        y, a, b, cx, cz = (lerp(v) for v in (self.y, self.a, self.b, self.cx, self.cz))
        e = self.exponent
        s, c = np.sin(theta), np.cos(theta)
        x = cx + a * np.sign(s) * np.abs(s) ** (2 / e)
        z = cz + b * np.sign(c) * np.abs(c) ** (2 / e)
        # Gradient of |x/a|^e + |z/b|^e: the cross-section's outward normal (the slope in y ignored).
        gx = np.sign(s) * np.abs(s) ** (2 * (e - 1) / e) / a
        gz = np.sign(c) * np.abs(c) ** (2 * (e - 1) / e) / b
        nrm = np.stack([gx, np.zeros_like(gx), gz], -1)
        nrm /= np.maximum(np.linalg.norm(nrm, axis=-1, keepdims=True), 1e-12)
        return np.stack([x, y, z], -1), nrm


def face_height(neutral: np.ndarray) -> float:
    return float(neutral[FOREHEAD, 1] - neutral[CHIN, 1])


def pivot_px(frame: TorsoFrame, pivot=NECK_PIVOT) -> np.ndarray:
    """The neck pivot's image point (x, y, depth) in this frame: the body frame's origin."""
    return frame.scale * frame.rotation @ np.asarray(pivot, np.float64) + frame.translation


def body_to_px(frame: TorsoFrame, points: np.ndarray, pivot=NECK_PIVOT) -> np.ndarray:
    """Body-frame points (canonical units, (..., 3)) → pixels (x, y, depth) in this frame."""
    return frame.scale * (points - np.asarray(pivot)) * CAMERA_FLIP + pivot_px(frame, pivot)


def below_chin(frame: TorsoFrame, xy: np.ndarray, margin_px: float) -> np.ndarray:
    """Image points (..., 2) at least margin_px below the chin line (the head does not cover them)."""
    return chin_line_height(xy[..., 0], xy[..., 1], frame.landmarks_px) <= -margin_px


def fit_profile(frames: list[TorsoFrame], neutral: np.ndarray, shoulders_body: np.ndarray,
                config: TorsoConfig = TorsoConfig()) -> TorsoProfile:
    """The outline from the person mattes (see the module docstring). ``shoulders_body``: (2, 2)
    the median shoulder joints (x, y) in the body frame, right then left."""
    neutral = np.asarray(neutral, np.float64)
    shape = fit_head_shape(neutral)
    h = face_height(neutral)
    chin_y = float(neutral[CHIN, 1])
    shoulder_y = float(shoulders_body[:, 1].mean())
    top = shape.neck_bottom + 0.35 * (chin_y - shape.neck_bottom)  # inside the neck stub
    bottom = shoulder_y - config.drop
    ys = np.linspace(top, bottom, config.rows)
    pivot = np.asarray(NECK_PIVOT)
    left = np.full((len(frames), len(ys)), np.nan)  # subject's right = image left = −x
    right = np.full((len(frames), len(ys)), np.nan)
    for k, f in enumerate(frames):
        hgt, wid = f.person.shape
        q = pivot_px(f)
        py = q[1] - f.scale * (ys - pivot[1])
        centre_px = q[0] + f.scale * (shape.centre[0] - pivot[0])
        ok = (py >= 0) & (py <= hgt - 1) & below_chin(f, np.stack([np.full_like(py, centre_px), py], -1), 0.1 * h * f.scale)
        ci = int(round(centre_px))
        if not 0 <= ci < wid:
            continue
        for i in np.flatnonzero(ok):
            row = f.person[int(round(py[i]))] >= 0.5
            if not row[ci]:
                continue
            off = np.flatnonzero(~row)
            lo = off[off < ci]
            hi = off[off > ci]
            if len(lo):  # the run's left end; a run reaching the image's edge is cut there
                left[k, i] = (lo[-1] + 0.5 - q[0]) / f.scale + pivot[0]
            if len(hi):
                right[k, i] = (hi[0] - 0.5 - q[0]) / f.scale + pivot[0]

    def robust(v):
        n = np.isfinite(v).sum(0)
        med = np.full(v.shape[1], np.nan)
        have = n >= config.min_seen
        if have.any():
            med[have] = np.nanmedian(v[:, have], axis=0)
        return med

    lx, rx = robust(left), robust(right)
    seen = np.isfinite(lx) & np.isfinite(rx)
    neck_a = 0.92 * shape.neck_radius
    shoulder_half = 0.5 * float(abs(shoulders_body[1, 0] - shoulders_body[0, 0])) * config.shoulder_pad
    a = np.where(seen, 0.5 * (rx - lx), np.nan)
    cx = np.where(seen, 0.5 * (rx + lx), np.nan)
    a[0], cx[0] = neck_a, shape.centre[0]
    idx = np.arange(len(ys))
    known = np.isfinite(a)
    last = int(idx[known].max())
    below = idx > last
    a[below] = max(float(a[last]), shoulder_half if ys[last] > shoulder_y - 0.5 else 0.0)
    cx[below] = cx[last]
    known = np.isfinite(a)
    a = np.interp(idx, idx[known], a[known])
    cx = np.interp(idx, idx[known], cx[known])
    a = np.maximum.accumulate(np.maximum(a, neck_a))  # neck → shoulders only widens
    # A silhouette cannot tell height from depth: seen from above (a webcam over the screen) the
    # shoulder tops rise nearly to the chin in the image, which read literally gives a flat box
    # (the man of the single_face clip). The slope from the neck is capped at the anatomical one.
    a = np.minimum(a, neck_a + config.shoulder_slope * (top - ys))
    # Rounded shoulders: where the slope meets the arm's vertical the capped outline has a corner,
    # a hard crease all round the bust in a 3/4 view. Smoothed along the rings (the neck ring stays).
    if config.shoulder_round > 0:
        k = np.arange(-3, 4, dtype=np.float64)
        g = np.exp(-0.5 * (k / config.shoulder_round) ** 2)
        a = np.convolve(np.pad(a, 3, mode="edge"), g / g.sum(), mode="valid")
        a[0] = neck_a
    # Depth: round at the neck, a flattened chest below, its axis moving back towards the spine.
    t = np.clip((top - ys) / max(top - shoulder_y, 1e-6), 0, 1)
    b = np.clip(config.depth_ratio * a, neck_a, config.max_half_depth)
    b = neck_a * (1 - t) + b * t
    cz = shape.centre[2] - config.back_shift * t
    return TorsoProfile(ys.astype(np.float64), a, b, cx, cz, seen, shoulder_y, config.exponent)


@dataclass(frozen=True)
class TorsoMesh:
    positions: np.ndarray  # (V, 3) float32, canonical units, body frame at rest (= head frame)
    uvs: np.ndarray  # (V, 2) float32, glTF convention
    faces: np.ndarray  # (F, 3) int64, counter-clockwise seen from outside


def torso_mesh(profile: TorsoProfile, cols: int) -> TorsoMesh:
    """Rings × (cols + 1) vertices (a seam column repeats the first) and a flat bottom cap."""
    rows = len(profile.y)
    i, j = np.meshgrid(np.arange(rows, dtype=np.float64), np.arange(cols + 1), indexing="ij")
    theta = -np.pi + 2 * np.pi * j / cols
    pts, _ = profile.ring(i, theta)
    uv = np.stack([(j + 0.5) / (cols + 1), (i + 0.5) / (rows + 1)], -1)
    positions = pts.reshape(-1, 3)
    uvs = uv.reshape(-1, 2)
    faces = []
    for r in range(rows - 1):
        for c in range(cols):
            a0, b0 = r * (cols + 1) + c, r * (cols + 1) + c + 1
            a1, b1 = a0 + cols + 1, b0 + cols + 1
            faces += [(a0, a1, b1), (a0, b1, b0)]
    # The bottom cap: a fan round the last ring's centre, coloured from the texture's last row.
    centre = len(positions)
    last = (rows - 1) * (cols + 1)
    bottom = np.array([[profile.cx[-1], profile.y[-1], profile.cz[-1]]])
    positions = np.concatenate([positions, bottom])
    uvs = np.concatenate([uvs, [[0.5, (rows + 0.5) / (rows + 1)]]])
    faces += [(last + c, centre, last + c + 1) for c in range(cols)]
    faces = np.array(faces, np.int64)
    # Orient outwards: the cross-section's centre at each triangle's height.
    tri = positions[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    mid = tri.mean(1)
    axis = np.stack([np.interp(-mid[:, 1], -profile.y, profile.cx), mid[:, 1],
                     np.interp(-mid[:, 1], -profile.y, profile.cz)], -1)
    out = mid - axis
    out[len(faces) - cols:] = [0.0, -1.0, 0.0]  # the cap faces down
    inward = (normal * out).sum(-1) < 0
    faces[inward] = faces[inward][:, [0, 2, 1]]
    return TorsoMesh(positions.astype(np.float32), uvs.astype(np.float32), faces)


def unwrap_texture(profile: TorsoProfile, frames: list[TorsoFrame], images: list[np.ndarray], cols: int,
                   size: int, neutral: np.ndarray) -> tuple[np.ndarray, float]:
    """(size, size, 3) uint8 RGB texture of ``torso_mesh(profile, cols)``'s UV layout, from the
    frames (``images`` their RGB pixels), and the share of the texels some frame saw."""
    from inference.head_model.render import sample_bilinear

    rows = len(profile.y)
    v, u = np.meshgrid((np.arange(size) + 0.5) / size, (np.arange(size) + 0.5) / size, indexing="ij")
    i = v * (rows + 1) - 0.5
    j = u * (cols + 1) - 0.5
    theta = -np.pi + 2 * np.pi * j / cols
    pts, nrm = profile.ring(i, theta)
    h = face_height(np.asarray(neutral, np.float64))
    samples = []
    for f, img in zip(frames, images):
        hgt, wid = f.person.shape
        px = body_to_px(f, pts.reshape(-1, 3))
        facing = nrm.reshape(-1, 3)[:, 2] > 0.25
        inside = (px[:, 0] >= 0) & (px[:, 0] <= wid - 1) & (px[:, 1] >= 0) & (px[:, 1] <= hgt - 1)
        ok = facing & inside & below_chin(f, px[:, :2], 0.1 * h * f.scale)
        col = np.full((len(px), 3), np.nan, np.float32)
        if ok.any():
            m = sample_bilinear(f.person[..., None], px[ok, 0], px[ok, 1])[:, 0]
            c = sample_bilinear(img, px[ok, 0], px[ok, 1])
            c[m < 0.6] = np.nan
            col[ok] = c
        samples.append(col)
    stack = np.stack(samples) if samples else np.full((1, size * size, 3), np.nan, np.float32)
    n_seen = np.isfinite(stack[..., 0]).sum(0)
    seen = n_seen >= 2
    tex = np.full((size * size, 3), np.nan, np.float32)
    if seen.any():
        tex[seen] = np.nanmedian(stack[:, seen], axis=0)
    tex = tex.reshape(size, size, 3)
    seen2 = seen.reshape(size, size)
    fallback = np.nanmedian(tex[seen2], axis=0) if seen2.any() else np.array([128.0, 128.0, 128.0])
    row_colour = np.full((size, 3), np.nan)
    for r in range(size):
        if seen2[r].sum() >= 4:
            row_colour[r] = np.median(tex[r, seen2[r]], axis=0)
    have = np.isfinite(row_colour[:, 0])
    if have.any():
        rr = np.arange(size)
        row_colour = np.stack([np.interp(rr, rr[have], row_colour[have, c]) for c in range(3)], -1)
    else:
        row_colour[:] = fallback
    fill = np.broadcast_to(row_colour[:, None, :], tex.shape)
    tex = np.where(seen2[..., None], tex, fill)
    return np.clip(tex + 0.5, 0, 255).astype(np.uint8), float(seen2.mean())


def neck_body_weights(positions: np.ndarray, neutral: np.ndarray, first_closure_vertex: int,
                      config: TorsoConfig = TorsoConfig()) -> np.ndarray:
    """(V,) float32: how much each head vertex follows the body rather than the head. The tracked
    face (the first ``first_closure_vertex`` vertices) follows the head; the closure's neck blends
    smoothly to the body at the neck stub's base, where the torso takes over."""
    neutral = np.asarray(neutral, np.float64)
    shape = fit_head_shape(neutral)
    hi = float(neutral[CHIN, 1]) - config.neck_from * face_height(neutral)
    lo = float(shape.neck_bottom)
    t = np.clip((hi - np.asarray(positions, np.float64)[:, 1]) / max(hi - lo, 1e-6), 0, 1)
    w = t * t * (3 - 2 * t)
    w[:first_closure_vertex] = 0.0
    return w.astype(np.float32)


def append_torso(positions: np.ndarray, faces: np.ndarray, uvs: np.ndarray, texture: np.ndarray,
                 torso_positions: np.ndarray, torso_faces: np.ndarray, torso_uvs: np.ndarray,
                 torso_texture: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Head and torso at rest as one mesh with one texture (the two side by side, the torso's
    resized to the head's), for the software renderer (previews, turntables)."""
    import cv2

    h, w, c = texture.shape
    tt = cv2.resize(np.ascontiguousarray(torso_texture[..., :3]), (w, h), interpolation=cv2.INTER_AREA)
    if c == 4:
        tt = np.concatenate([tt, np.full((h, w, 1), 255, np.uint8)], axis=2)
    tex = np.concatenate([texture, tt.astype(texture.dtype)], axis=1)
    uv = np.concatenate([np.asarray(uvs) * [0.5, 1.0], np.asarray(torso_uvs) * [0.5, 1.0] + [0.5, 0.0]])
    pos = np.concatenate([positions, torso_positions]).astype(np.float32)
    tri = np.concatenate([np.asarray(faces, np.int64), np.asarray(torso_faces, np.int64) + len(positions)])
    return pos, tri, uv.astype(np.float32), np.ascontiguousarray(tex)
