"""OpenXR face tracking → expr52, on pyopenxr's real enums and structs (no headset here: Monado's
simulated HMD offers none of the extensions, so the conversion is what can be tested)."""
from __future__ import annotations

import ctypes

import numpy as np
import pytest

xr = pytest.importorskip("xr")

from inference.features.expr52_names import INDEX  # noqa: E402
from xr_runtime.openxr import face_tracking as ft  # noqa: E402


def test_extension_names_are_pyopenxrs():
    assert ft.FB2 == xr.FB_FACE_TRACKING2_EXTENSION_NAME
    assert ft.HTC == xr.HTC_FACIAL_TRACKING_EXTENSION_NAME
    assert ft.ANDROID == xr.ANDROID_FACE_TRACKING_EXTENSION_NAME
    assert ft.choose_extension({"XR_KHR_opengl_enable"}) is None  # Monado: nothing offered → disabled
    assert ft.choose_extension({ft.HTC, ft.FB2}) == ft.FB2
    assert ft.choose_extension({ft.FB2}, wanted=False) is None


def test_fb2_conversion_on_the_real_struct():
    table = ft.fb2_table(xr)
    e = xr.FaceExpression2FB
    w = (ctypes.c_float * int(e.COUNT.value))()
    c = (ctypes.c_float * 2)(0.9, 0.4)  # LOWER_FACE, UPPER_FACE
    w[int(e.JAW_DROP.value)] = 0.8
    w[int(e.LIP_CORNER_PULLER_L.value)] = 0.6
    w[int(e.EYES_CLOSED_R.value)] = 1.0
    w[int(e.EYES_LOOK_LEFT_L.value)] = 0.5  # the left eye looking to the subject's left: outwards
    w[int(e.LIP_FUNNELER_LB.value)] = w[int(e.LIP_FUNNELER_RT.value)] = 0.4
    s = xr.FaceExpressionWeights2FB(weights=w, confidences=c, is_valid=1)
    assert s.weight_count == 70 and s.confidence_count == 2
    out = table.convert(np.ctypeslib.as_array(s.weights), np.ctypeslib.as_array(s.confidences))
    assert out[INDEX["jawOpen"], 0] == pytest.approx(0.8) and out[INDEX["jawOpen"], 1] == pytest.approx(0.9)
    assert out[INDEX["mouthSmileLeft"], 0] == pytest.approx(0.6) and out[INDEX["mouthSmileRight"], 0] == 0
    assert out[INDEX["eyeBlinkRight"], 0] == 1.0 and out[INDEX["eyeBlinkRight"], 1] == pytest.approx(0.4)
    assert out[INDEX["eyeLookOutLeft"], 0] == pytest.approx(0.5) and out[INDEX["eyeLookInLeft"], 0] == 0
    assert out[INDEX["mouthFunnel"], 0] == pytest.approx(0.2)  # mean of its four funnelers
    assert out[INDEX["tongueOut"], 1] > 0  # FB2 measures the tongue


def test_android_and_htc_conversion():
    a = ft.android_table(xr)
    p = np.zeros(int(xr.FACE_PARAMETER_COUNT_ANDROID))
    p[int(xr.FaceParameterIndicesANDROID.JAW_DROP.value)] = 0.7
    p[int(xr.FaceParameterIndicesANDROID.TONGUE_OUT.value)] = 0.3
    out = a.convert(p, np.array([0.8, 0.5, 0.6]))  # LOWER, LEFT_UPPER, RIGHT_UPPER
    assert out[INDEX["jawOpen"], 0] == pytest.approx(0.7) and out[INDEX["tongueOut"], 0] == pytest.approx(0.3)
    assert out[INDEX["eyeBlinkLeft"], 1] == pytest.approx(0.5) and out[INDEX["eyeBlinkRight"], 1] == pytest.approx(0.6)
    h = ft.htc_table(xr)
    n_eye = int(xr.FACIAL_EXPRESSION_EYE_COUNT_HTC)
    eye = (ctypes.c_float * n_eye)()
    lip = (ctypes.c_float * int(xr.FACIAL_EXPRESSION_LIP_COUNT_HTC))()
    eye[int(xr.EyeExpressionHTC.LEFT_BLINK.value)] = 0.9
    lip[int(xr.LipExpressionHTC.JAW_OPEN.value)] = 0.5
    lip[int(xr.LipExpressionHTC.MOUTH_RAISER_RIGHT.value)] = 0.6
    s = xr.FacialExpressionsHTC(expression_weightings=lip, is_active=1)
    assert s.expression_count == 37
    out = h.convert(np.concatenate([np.ctypeslib.as_array(eye), np.ctypeslib.as_array(s.expression_weightings)]))
    assert out[INDEX["eyeBlinkLeft"], 0] == pytest.approx(0.9) and out[INDEX["jawOpen"], 0] == pytest.approx(0.5)
    assert out[INDEX["mouthSmileRight"], 0] == pytest.approx(0.6)
    assert out[INDEX["browInnerUp"], 1] == 0.0  # HTC has no brows: not measured
    with pytest.raises(ValueError):
        h.convert(np.zeros(10))


@pytest.mark.xr
def test_render_on_monado_without_face_tracking_says_so(tmp_path):
    """Monado offers none of the extensions: the session runs without a tracker, the stats say
    so, and --face-stream warns once instead of failing."""
    import os

    if os.environ.get("HEADCAST_MONADO_ENV") != "1" and not os.environ.get("XR_RUNTIME_JSON"):
        pytest.skip("needs an OpenXR runtime: run under scripts/monado_env.sh run")
    import json
    import subprocess
    import sys

    from _processes import free_port

    stats_path = tmp_path / "stats.json"
    r = subprocess.run([sys.executable, "-m", "tools.cli", "render", "--avatar", str(tmp_path / "a"), "--dev-avatars",
                        "--bind", "tcp://127.0.0.1:0", "--clock-bind", "off", "--backend", "openxr", "--frames", "5",
                        "--face-stream", "wearer", "--face-connect", f"tcp://127.0.0.1:{free_port()}",
                        "--json", str(stats_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(stats_path.read_text())["backend_info"]["face_tracking"] is None
    assert "offers no face tracking" in r.stderr


def test_bad_face_stream_id_is_a_clear_error(tmp_path):
    from _processes import run_headcast

    r = run_headcast(["render", "--avatar", str(tmp_path / "a"), "--dev-avatars", "--backend", "headless",
                      "--frames", "1", "--face-stream", "bad id!"])
    assert r.returncode == 2 and "--face-stream" in r.stderr and "Traceback" not in r.stderr
