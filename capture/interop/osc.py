"""VMC protocol and Unified-Expressions OSC (VRCFaceTracking → VRChat) over UDP, through python-osc.

**VMC** (the Virtual Motion Capture protocol VSeeFace and others send, port 39539 by default):
``/VMC/Ext/Blend/Val (string name, float value)`` for each blendshape clip, then
``/VMC/Ext/Blend/Apply`` commits the frame; ``/VMC/Ext/Bone/Pos (string bone, float px py pz, qx qy
qz qw)`` with bone ``Head`` carries the head's local rotation (Unity: left-handed, y up, z forward
out of the face, x to the avatar's right); ``/VMC/Ext/T (float seconds)`` the sender's time.
Clip names: ARKit's 52 ("Perfect Sync"; matched case-insensitively) and the VRM presets
``Blink``, ``Blink_L``, ``Blink_R``, ``A``, ``Joy`` (mapped onto eyeBlink*, jawOpen, mouthSmile*).

**Unified Expressions** (``/avatar/parameters/v2/<Name> float``, as VRCFaceTracking sends avatar
parameters): the shapes of ``expr52_names.ARKIT_TO_UNIFIED`` (an ARKit weight = the mean of its
Unified shapes received), ``EyeLidLeft/Right`` (openness: eyeBlink = 1 − lid) and
``EyeLeftX/Y``, ``EyeRightX/Y`` gaze (X + = towards the subject's right, Y + = up). Plain ARKit names
(``/avatar/parameters/JawOpen``, ``.../v2/jawOpen``) are accepted too. Unified OSC has no frame
marker: a bundle is one frame. Loose messages (one parameter per datagram, as python-osc's
SimpleUDPClient and most scripts send) make a frame that ends when a parameter already in it
comes again (the sender's next frame has begun) or after ``quiet_period_s`` with no message (the
sender paused or stopped). Grouping by the first message's age instead (commit 1/60 s after it)
merged two of a 60 Hz sender's frames whenever its loop jittered and split one frame in two when a
loaded host spread it over the period: a CI run saw the avatar at the held smile up to 1.02 away
from Live Link's for the same sent weights. Grouped by repetition the same end-to-end test
(``tests/test_interop_e2e.py``) measures 0.0005–0.0006 quiet and 0.0006–0.00075 with four busy
loops on the two cores (it allows ≈ 0.12).

Malformed datagrams (python-osc's ``ParseError``, wrong argument types, non-finite values, unknown
addresses) are counted by reason and skipped; a loop never dies of one. No confidences in either
format: 1 for every weight the packet carried, 0 for the rest (so an absent weight reads as neutral).
"""
from __future__ import annotations

import logging
import math
import socket
import threading
import time

import numpy as np
from pythonosc import osc_bundle_builder, osc_message_builder
from pythonosc.osc_packet import OscPacket

from inference.features.expr52_names import ARKIT52, ARKIT_TO_UNIFIED, INDEX
from streaming.protocol import HeadPose

from .common import AdapterStats, Expr52Stream, SourceClock, listen_udp

log = logging.getLogger(__name__)

VMC_PORT = 39539
UNIFIED_PORT = 9000  # VRChat's OSC input port
UNIFIED_PREFIX = "/avatar/parameters/v2/"
MAX_DATAGRAM = 65507
_LOWER = {n.lower(): n for n in ARKIT52}
_VRM_PRESETS = {"blink": ("eyeBlinkLeft", "eyeBlinkRight"), "blink_l": ("eyeBlinkLeft",),
                "blink_r": ("eyeBlinkRight",), "a": ("jawOpen",), "joy": ("mouthSmileLeft", "mouthSmileRight")}
_UNIFIED_TO_ARKIT: dict[str, str] = {u: a for a, us in ARKIT_TO_UNIFIED.items() for u in us}
# Unity (left-handed, x to the avatar's right) → our head frame (right-handed, x to the subject's left):
# mirror x, which maps a quaternion (x, y, z, w) to (x, −y, −z, w).


def _finite_float(v) -> float:
    f = float(v)
    if not math.isfinite(f):
        raise ValueError("non-finite")
    return f


def _head_pose_from_unity(qx: float, qy: float, qz: float, qw: float) -> HeadPose:
    from .common import _FLIP
    from geometry.rotations import quaternion_to_rotation, rotation_to_quaternion

    r = quaternion_to_rotation((qw, qx, -qy, -qz))
    return HeadPose(rotation=rotation_to_quaternion(_FLIP @ r))


def _unity_from_head_pose(pose: HeadPose) -> tuple[float, float, float, float]:
    from .common import _FLIP
    from geometry.rotations import quaternion_to_rotation, rotation_to_quaternion

    w, x, y, z = rotation_to_quaternion(_FLIP.T @ quaternion_to_rotation(pose.rotation))
    return x, -y, -z, w


# -- frame assembly --------------------------------------------------------------------------------
class _Frame:
    def __init__(self):
        self.sums = np.zeros(52, np.float64)
        self.counts = np.zeros(52, np.int64)
        self.pose: HeadPose | None = None
        self.source_s: float | None = None

    def add(self, name: str, value: float) -> None:
        i = INDEX[name]
        self.sums[i] += min(max(value, 0.0), 1.0)
        self.counts[i] += 1

    @property
    def empty(self) -> bool:
        return not self.counts.any() and self.pose is None

    def weights(self) -> tuple[np.ndarray, np.ndarray]:
        have = self.counts > 0
        w = np.where(have, self.sums / np.maximum(self.counts, 1), 0.0)
        return w.astype(np.float32), have.astype(np.float32)


def _apply_unified(frame: _Frame, name: str, value: float) -> bool:
    """One Unified-Expressions (or ARKit-named) parameter into the frame; False when unknown."""
    if name in _UNIFIED_TO_ARKIT:
        frame.add(_UNIFIED_TO_ARKIT[name], value)
    elif name.lower() in _LOWER:
        frame.add(_LOWER[name.lower()], value)
    elif name in ("EyeLidLeft", "EyeLidRight"):
        frame.add("eyeBlinkLeft" if name.endswith("Left") else "eyeBlinkRight", 1.0 - value)
    elif name in ("EyeLeftX", "EyeRightX"):
        # X + is towards the subject's right: inwards for the left eye, outwards for the right one.
        side = "Left" if "Left" in name else "Right"
        towards_right, towards_left = (f"eyeLookIn{side}", f"eyeLookOut{side}") if side == "Left" \
            else (f"eyeLookOut{side}", f"eyeLookIn{side}")
        frame.add(towards_right, max(value, 0.0))
        frame.add(towards_left, max(-value, 0.0))
    elif name in ("EyeLeftY", "EyeRightY"):
        side = "Left" if "Left" in name else "Right"
        frame.add(f"eyeLookUp{side}", max(value, 0.0))
        frame.add(f"eyeLookDown{side}", max(-value, 0.0))
    else:
        return False
    return True


def unified_messages(weights) -> list[tuple[str, float]]:
    """expr52 weights (52,) → Unified-Expressions avatar parameters (address, value)."""
    w = np.clip(np.asarray(weights, np.float64).reshape(52), 0.0, 1.0)
    out = []
    for name, targets in ARKIT_TO_UNIFIED.items():
        for t in targets:
            out.append((UNIFIED_PREFIX + t, float(w[INDEX[name]])))
    g = {n: float(w[INDEX[n]]) for n in ARKIT52 if n.startswith("eye")}
    out += [(UNIFIED_PREFIX + "EyeLidLeft", 1.0 - g["eyeBlinkLeft"]), (UNIFIED_PREFIX + "EyeLidRight", 1.0 - g["eyeBlinkRight"]),
            (UNIFIED_PREFIX + "EyeLeftX", g["eyeLookInLeft"] - g["eyeLookOutLeft"]),
            (UNIFIED_PREFIX + "EyeLeftY", g["eyeLookUpLeft"] - g["eyeLookDownLeft"]),
            (UNIFIED_PREFIX + "EyeRightX", g["eyeLookOutRight"] - g["eyeLookInRight"]),
            (UNIFIED_PREFIX + "EyeRightY", g["eyeLookUpRight"] - g["eyeLookDownRight"])]
    return out


def vmc_messages(weights, pose: HeadPose | None, t_s: float | None = None) -> list[tuple[str, list]]:
    """expr52 weights → VMC messages: one ``Blend/Val`` per ARKit clip (Perfect Sync names, as VRM
    clips are spelled: upper camel case), the head bone, the time, then ``Blend/Apply``."""
    w = np.clip(np.asarray(weights, np.float64).reshape(52), 0.0, 1.0)
    out: list[tuple[str, list]] = []
    if t_s is not None:
        out.append(("/VMC/Ext/T", [float(t_s)]))
    for i, n in enumerate(ARKIT52):
        out.append(("/VMC/Ext/Blend/Val", [n[0].upper() + n[1:], float(w[i])]))
    if pose is not None:
        out.append(("/VMC/Ext/Bone/Pos", ["Head", 0.0, 0.0, 0.0, *_unity_from_head_pose(pose)]))
    out.append(("/VMC/Ext/Blend/Apply", []))
    return out


def bundle(messages) -> bytes:
    """python-osc's builders: one bundle (time tag 'immediately') holding the messages."""
    b = osc_bundle_builder.OscBundleBuilder(osc_bundle_builder.IMMEDIATELY)
    for address, args in messages:
        m = osc_message_builder.OscMessageBuilder(address=address)
        for a in (args if isinstance(args, (list, tuple)) else [args]):
            m.add_arg(a)
        b.add_content(m.build())
    return b.build().dgram


# -- input -------------------------------------------------------------------------------------------
class OscDecoder:
    """Datagrams of VMC (``mode="vmc"``) or Unified-Expressions OSC (``mode="unified"``) → frames.

    ``feed`` returns the frames a datagram completed as (weights (52,), confidences (52,), head pose
    or None, source time in s or None); malformed datagrams and arguments are counted in ``stats``."""

    def __init__(self, mode: str, stats: AdapterStats | None = None):
        if mode not in ("vmc", "unified"):
            raise ValueError(f"OSC mode must be vmc or unified, got {mode!r}")
        self.mode = mode
        self.stats = stats or AdapterStats()
        self.unknown_addresses = 0
        self._frame = _Frame()
        self._loose_names: set[str] = set()  # parameters of the frame being assembled from loose messages
        self.last_change_ns: int | None = None

    def commit(self) -> list:
        self._loose_names.clear()
        self.last_change_ns = None
        if self._frame.empty:
            return []
        w, c = self._frame.weights()
        out = [(w, c, self._frame.pose, self._frame.source_s)]
        self._frame = _Frame()
        return out

    def _message(self, address: str, params: list, arrival_ns: int, loose: bool = False) -> list:
        if self.mode == "vmc":
            if address == "/VMC/Ext/Blend/Val":
                if len(params) != 2 or not isinstance(params[0], str):
                    raise ValueError("Blend/Val takes (string name, float value)")
                name, value = params[0], _finite_float(params[1])
                key = name.lower()
                names = (_LOWER[key],) if key in _LOWER else _VRM_PRESETS.get(key)
                if names is None:
                    self.unknown_addresses += 1
                    return []
                for n in names:
                    self._frame.add(n, value)
            elif address == "/VMC/Ext/Blend/Apply":
                return self.commit()
            elif address == "/VMC/Ext/Bone/Pos":
                if not isinstance(params[0], str):
                    raise ValueError("Bone/Pos takes (string bone, 7 floats)")
                if params[0] == "Head":
                    q = [_finite_float(v) for v in params[4:8]]
                    if len(q) != 4 or sum(v * v for v in q) < 1e-6:
                        raise ValueError("head bone needs a non-zero quaternion")
                    self._frame.pose = _head_pose_from_unity(*q)
            elif address == "/VMC/Ext/T":
                self._frame.source_s = _finite_float(params[0])
            else:
                self.unknown_addresses += 1  # other VMC messages (root, cameras, devices) carry no face
            return []
        if not address.startswith("/avatar/parameters/"):
            self.unknown_addresses += 1
            return []
        name = address[len("/avatar/parameters/"):].removeprefix("v2/")
        if len(params) != 1 or isinstance(params[0], (str, bytes)):
            raise ValueError("avatar parameter needs one number")
        value = _finite_float(params[0])
        out = self.commit() if loose and name in self._loose_names else []  # the next frame has begun
        if _apply_unified(self._frame, name, value):
            if loose:
                self._loose_names.add(name)
                self.last_change_ns = arrival_ns
        else:
            self.unknown_addresses += 1
        return out

    def feed(self, data: bytes, arrival_ns: int) -> list:
        self.stats.packets += 1
        try:
            packet = OscPacket(bytes(data))
        except Exception:  # ParseError, or python-osc tripping over hostile bytes: a counted drop
            self.stats.bad("osc_parse")
            return []
        is_bundle = bytes(data[:8]) == b"#bundle\0"
        unified_bundle = self.mode == "unified" and is_bundle
        loose = self.mode == "unified" and not is_bundle
        # A bundle is one frame of its own: loose parameters before it are a frame already.
        out = self.commit() if unified_bundle else []
        for timed in packet.messages:
            try:
                out += self._message(timed.message.address, list(timed.message.params), arrival_ns, loose)
            except (ValueError, TypeError, IndexError, OverflowError):
                self.stats.bad("bad_arguments")
        if unified_bundle:
            out += self.commit()
        return out


class OscAdapter:
    """Listens for VMC or Unified-Expressions OSC datagrams and publishes ``expr52`` frames."""

    def __init__(self, host: str, port: int, stream: Expr52Stream, mode: str, quiet_period_s: float = 1 / 60):
        self.stream = stream
        self.stats = AdapterStats()
        self.decoder = OscDecoder(mode, self.stats)
        self.mode = mode
        # 1/60 s: longer than a GIL switch or two inside one sender's burst of parameters, and a 60 Hz
        # sender's next frame ends the current one sooner anyway (a repeated parameter).
        self.quiet_period_ns = int(quiet_period_s * 1e9)
        self.clock = SourceClock()
        self._pose = HeadPose()
        self.sock = listen_udp(host, port, f"{mode.upper()} OSC", 0.02)
        self.address = self.sock.getsockname()
        self._stop = threading.Event()

    def _publish(self, frames, arrival_ns: int) -> None:
        for w, c, pose, source_s in frames:
            if pose is not None:
                self._pose = pose
            t = self.clock.map(source_s, arrival_ns)
            self.stats.clock_resets = self.clock.resets
            ok = self.stream.publish(w, c, t, self._pose)
            self.stats.frames += 1
            self.stats.send_dropped += int(not ok)

    def handle(self, data: bytes, arrival_ns: int | None = None) -> bool:
        arrival = time.monotonic_ns() if arrival_ns is None else arrival_ns
        before = self.stats.malformed
        self._publish(self.decoder.feed(data, arrival), arrival)
        return self.stats.malformed == before

    def poll(self, now_ns: int | None = None) -> None:
        """Commits loose Unified parameters once ``quiet_period_s`` has passed with no new one."""
        now = time.monotonic_ns() if now_ns is None else now_ns
        last = self.decoder.last_change_ns
        if last is not None and now - last >= self.quiet_period_ns:
            self._publish(self.decoder.commit(), now)

    def run(self, seconds: float | None = None) -> AdapterStats:
        t_end = None if seconds is None else time.monotonic() + seconds
        while not self._stop.is_set() and (t_end is None or time.monotonic() < t_end):
            try:
                data, _ = self.sock.recvfrom(MAX_DATAGRAM)
                self.handle(data)
            except socket.timeout:
                pass
            except OSError:
                if self._stop.is_set():
                    break
                raise
            self.poll()
        return self.stats

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.sock.close()


# -- output ------------------------------------------------------------------------------------------
class OscSender:
    """``capture --emit-vmc`` / ``--emit-osc``: one OSC bundle per frame over UDP, never blocks."""

    def __init__(self, host: str, port: int, mode: str):
        if mode not in ("vmc", "unified"):
            raise ValueError(f"OSC output mode must be vmc or unified, got {mode!r}")
        self.mode, self.addr = mode, (host, int(port))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sent = self.dropped = 0

    def emit(self, weights, pose, t_capture_ns: int) -> None:
        msgs = vmc_messages(weights, pose, t_capture_ns / 1e9) if self.mode == "vmc" else unified_messages(weights)
        try:
            self.sock.sendto(bundle(msgs), self.addr)
            self.sent += 1
        except OSError:
            self.dropped += 1

    def close(self) -> None:
        self.sock.close()
