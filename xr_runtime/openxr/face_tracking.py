"""The wearer's own face from the headset: XR_FB_face_tracking2, XR_HTC_facial_tracking,
XR_ANDROID_face_tracking → ``expr52`` payloads (the 52 ARKit weights + confidences).

A person wearing a headset cannot be filmed, but Quest Pro / Quest 3 (FB face tracking 2), Vive
(HTC facial tracking) and Android XR headsets track the face themselves. When the runtime offers
one of these extensions, the session enables it, creates the tracker after the session, and samples
it at each frame's predicted display time; ``FrameInfo.face`` then carries the payload and
``WearerFaceStream`` publishes it as an ordinary Headcast ``expr52`` stream (so two headsets can
drive each other's avatars through a render node or a room).

The conversion tables (``inference/features/expr52_names.py``) are keyed by the extensions' enum
member names and resolved here against pyopenxr's real enums; the structs are pyopenxr's. The
getters are called through the raw function pointers because pyopenxr 1.1.6501's convenience
wrappers (``get_face_expression_weights2_fb`` and the HTC/Android ones) pass structs without the
caller-allocated weight arrays the specifications require.

**This has not run against a headset.** Monado's simulated HMD offers none of the three
extensions, so only the conversion (tests/test_face_tracking.py, on the real enums and structs)
and the "not offered → disabled" path are exercised here.
"""
from __future__ import annotations

import ctypes
import logging
import time
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from inference.features.expr52_names import ARKIT52, FACS_TO_ARKIT, HTC_TO_ARKIT, facs_region

log = logging.getLogger(__name__)

FB2 = "XR_FB_face_tracking2"
HTC = "XR_HTC_facial_tracking"
ANDROID = "XR_ANDROID_face_tracking"
EXTENSIONS = (FB2, HTC, ANDROID)  # preference order when a runtime offers several


@dataclass(frozen=True)
class Table:
    """For each of the 52 ARKit weights: source indices to average (-1 padded) and a confidence slot."""

    index: np.ndarray  # (52, M) int64, -1 = unused
    confidence_slot: np.ndarray  # (52,) int64 into the source's confidence array, -1 = none (→ 1)
    source_count: int

    def convert(self, weights: np.ndarray, confidences: np.ndarray | None = None) -> np.ndarray:
        """Source weights (source_count,) (+ confidences) → (52, 2) expr52 payload; unmapped weights
        get weight 0 and confidence 0 (they are not measured by this headset)."""
        w = np.nan_to_num(np.asarray(weights, np.float64).reshape(-1), nan=0.0)
        if w.shape[0] < self.source_count:
            raise ValueError(f"expected {self.source_count} source weights, got {w.shape[0]}")
        used = self.index >= 0
        vals = np.where(used, w[np.maximum(self.index, 0)], 0.0)
        count = used.sum(1)
        out = np.zeros((52, 2), np.float32)
        out[:, 0] = np.clip(np.where(count > 0, vals.sum(1) / np.maximum(count, 1), 0.0), 0.0, 1.0)
        conf = np.ones(52)
        if confidences is not None:
            c = np.nan_to_num(np.asarray(confidences, np.float64).reshape(-1), nan=0.0)
            slot = self.confidence_slot
            conf = np.where(slot >= 0, c[np.clip(slot, 0, max(len(c) - 1, 0))] if len(c) else 1.0, 1.0)
        out[:, 1] = np.clip(np.where(count > 0, conf, 0.0), 0.0, 1.0)
        return out


def _table(sources: dict[str, tuple[int, ...]], count: int, confidence: dict[str, int] | None = None) -> Table:
    width = max(len(v) for v in sources.values())
    index = np.full((52, width), -1, np.int64)
    slots = np.full(52, -1, np.int64)
    for i, name in enumerate(ARKIT52):
        idx = sources.get(name, ())
        index[i, :len(idx)] = idx
        if confidence is not None and name in confidence:
            slots[i] = confidence[name]
    return Table(index, slots, count)


def fb2_table(xr: ModuleType) -> Table:
    e = xr.FaceExpression2FB
    regions = {m.name: int(m.value) for m in xr.FaceConfidence2FB}
    return _table({a: tuple(int(e[n].value) for n in ns) for a, ns in FACS_TO_ARKIT.items()}, int(e.COUNT.value),
                  {a: regions[facs_region(a)] for a in ARKIT52})


def android_table(xr: ModuleType) -> Table:
    e = xr.FaceParameterIndicesANDROID
    regions = {m.name: int(m.value) for m in xr.FaceConfidenceRegionsANDROID}
    return _table({a: tuple(int(e[n].value) for n in ns) for a, ns in FACS_TO_ARKIT.items()},
                  int(xr.FACE_PARAMETER_COUNT_ANDROID), {a: regions[facs_region(a, android=True)] for a in ARKIT52})


def htc_table(xr: ModuleType) -> Table:
    """One table over the eye weights followed by the lip weights (14 + 37)."""
    n_eye = int(xr.FACIAL_EXPRESSION_EYE_COUNT_HTC)
    src = {}
    for a, pairs in HTC_TO_ARKIT.items():
        src[a] = tuple(int(xr.EyeExpressionHTC[n].value) if part == "eye" else n_eye + int(xr.LipExpressionHTC[n].value)
                       for part, n in pairs)
    return _table(src, n_eye + int(xr.FACIAL_EXPRESSION_LIP_COUNT_HTC))


def choose_extension(offered, wanted: bool = True) -> str | None:
    """The face-tracking extension to enable: the first of EXTENSIONS the runtime offers."""
    if not wanted:
        return None
    return next((e for e in EXTENSIONS if e in offered), None)


def _pfn(xr: ModuleType, instance, name: str):
    return ctypes.cast(xr.get_instance_proc_addr(instance, name), getattr(xr, f"PFN_{name}"))


class FaceTracker:
    """The extension's tracker on a live session; ``sample(xr_time)`` → (52, 2) payload or None."""

    def __init__(self, xr: ModuleType, instance, session, extension: str):
        self.xr, self.instance, self.extension = xr, instance, extension
        self.samples = self.invalid = self.errors = 0
        self._handles = []
        if extension == FB2:
            self.table = fb2_table(xr)
            self._handles.append(xr.create_face_tracker2_fb(session, xr.FaceTrackerCreateInfo2FB(
                face_expression_set=xr.FaceExpressionSet2FB.DEFAULT,
                requested_data_sources=(ctypes.c_int * 1)(int(xr.FaceTrackingDataSource2FB.VISUAL)))))
            self._get = _pfn(xr, instance, "xrGetFaceExpressionWeights2FB")
        elif extension == HTC:
            self.table = htc_table(xr)
            for kind in (xr.FacialTrackingTypeHTC.EYE_DEFAULT, xr.FacialTrackingTypeHTC.LIP_DEFAULT):
                self._handles.append(xr.create_facial_tracker_htc(session, xr.FacialTrackerCreateInfoHTC(
                    facial_tracking_type=kind)))
            self._get = _pfn(xr, instance, "xrGetFacialExpressionsHTC")
        elif extension == ANDROID:
            self.table = android_table(xr)
            self._handles.append(xr.create_face_tracker_android(session, xr.FaceTrackerCreateInfoANDROID()))
            self._get = _pfn(xr, instance, "xrGetFaceStateANDROID")
        else:
            raise ValueError(f"unknown face-tracking extension {extension!r}")

    def _check(self, result) -> bool:
        ok = int(result) >= 0
        if not ok:
            self.errors += 1
            if self.errors == 1:
                log.warning("%s: sampling failed with XrResult %d (logged once)", self.extension, int(result))
        return ok

    def sample(self, xr_time: int) -> np.ndarray | None:
        xr = self.xr
        self.samples += 1
        if self.extension == FB2:
            w, c = (ctypes.c_float * self.table.source_count)(), (ctypes.c_float * 2)()
            out = xr.FaceExpressionWeights2FB(weights=w, confidences=c)
            if not self._check(self._get(self._handles[0], ctypes.byref(xr.FaceExpressionInfo2FB(time=int(xr_time))),
                                         ctypes.byref(out))) or not out.is_valid:
                self.invalid += 1
                return None
            return self.table.convert(np.ctypeslib.as_array(w), np.ctypeslib.as_array(c))
        if self.extension == HTC:
            n_eye = int(xr.FACIAL_EXPRESSION_EYE_COUNT_HTC)
            parts = []
            for handle, n in zip(self._handles, (n_eye, self.table.source_count - n_eye)):
                buf = (ctypes.c_float * n)()
                out = xr.FacialExpressionsHTC(expression_weightings=buf)
                if not self._check(self._get(handle, ctypes.byref(out))) or not out.is_active:
                    parts.append(np.zeros(n))
                else:
                    parts.append(np.ctypeslib.as_array(buf).astype(np.float64))
            return self.table.convert(np.concatenate(parts))
        params = (ctypes.c_float * self.table.source_count)()
        regions = (ctypes.c_float * 3)()
        out = xr.FaceStateANDROID(parameters_capacity_input=self.table.source_count, parameters=params,
                                  region_confidences_capacity_input=3, region_confidences=regions)
        if not self._check(self._get(self._handles[0], ctypes.byref(xr.FaceStateGetInfoANDROID(time=int(xr_time))),
                                     ctypes.byref(out))) or not out.is_valid:
            self.invalid += 1
            return None
        return self.table.convert(np.ctypeslib.as_array(params), np.ctypeslib.as_array(regions))

    def destroy(self) -> None:
        xr = self.xr
        destroy = {FB2: "destroy_face_tracker2_fb", HTC: "destroy_facial_tracker_htc",
                   ANDROID: "destroy_face_tracker_android"}[self.extension]
        for h in self._handles:
            try:
                getattr(xr, destroy)(h)
            except Exception as exc:  # noqa: BLE001 - teardown must go on
                log.debug("%s: %s", destroy, exc)
        self._handles = []

    def stats(self) -> dict:
        return {"extension": self.extension, "samples": self.samples, "invalid": self.invalid, "errors": self.errors}


@dataclass(frozen=True)
class WearerFaceTarget:
    """Where the wearer's face goes: ``endpoint`` (a peer render node's bind, or a room's streams-in
    port), as ``stream_id``; ``curve_client`` when that end requires CURVE (a room does: its relay
    forwards a stream only from the key named like it); ``clock_endpoint``, the receiving side's
    clock service, pinged under the stream id as a capture node does, so frame times map onto it."""

    endpoint: str
    stream_id: str
    curve_client: object | None = None  # streaming.sockets.CurveClient
    clock_endpoint: str | None = None


class WearerFaceStream:
    """Publishes the headset's face samples (``FrameInfo.face``) as an expr52 stream."""

    def __init__(self, target: WearerFaceTarget):
        from calibration.clock_service import ClockClient
        from streaming.protocol import validate_stream_id
        from streaming.publisher import Publisher

        self.stream_id = validate_stream_id(target.stream_id)
        self.publisher = Publisher(target.endpoint, curve_client=target.curve_client)
        self.clock = None
        if target.clock_endpoint:
            self.clock = ClockClient(target.clock_endpoint, self.stream_id, curve_client=target.curve_client)
            self.clock.start_background(period_s=0.25)
        self.seq = 0

    def on_frame(self, info) -> None:
        from inference.features.expr52 import payload_from_weights
        from streaming.protocol import FeatureFrame, FeatureKind

        face = getattr(info, "face", None)
        if face is None:
            return
        t = info.display_time_monotonic_ns or time.monotonic_ns()
        self.publisher.send(FeatureFrame(self.stream_id, self.seq, FeatureKind.EXPR52,
                                         payload_from_weights(face[:, 0], face[:, 1]), t, time.monotonic_ns()))
        self.seq += 1

    def close(self) -> None:
        if self.clock is not None:
            self.clock.close()
        self.publisher.close()
