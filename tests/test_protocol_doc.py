"""docs/PROTOCOL.md is enough: a reader written from it alone decodes a real capture stream
(`headcast capture` processes, mp478 and expr52), agreeing with our own decoder on every field."""
from __future__ import annotations

import ast
import threading
from pathlib import Path

import numpy as np
import pytest

import independent_reader
from _processes import free_port, run_headcast
from tools.samples import sample_path

READER = Path(independent_reader.__file__)


def test_reader_imports_nothing_of_ours():
    tree = ast.parse(READER.read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"__future__", "math", "re", "struct", "zmq"}, imported


@pytest.mark.parametrize("feature", ["mp478", "expr52"])
def test_independent_reader_decodes_a_real_capture_stream(feature, tmp_path):
    from streaming import protocol

    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    box = {}
    t = threading.Thread(target=lambda: box.update(result=independent_reader.listen(endpoint, timeout_s=60)))
    t.start()
    record = tmp_path / "stream.hcrec"
    r = run_headcast(["capture", "--source", str(sample_path("single_face.mp4")), "--connect", endpoint,
                      "--stream", "doc", "--feature", feature, "--clock", "off", "--record", str(record)], timeout=120)
    t.join(90)
    assert r.returncode == 0, r.stderr[-2000:]
    frames, refused = box["result"]
    assert refused == 0 and frames[-1]["end_of_stream"] and len(frames) >= 60
    body = [f for f in frames if not f["end_of_stream"]]
    assert {f["kind"] for f in body} == {feature}
    assert [f["seq"] for f in frames] == list(range(frames[0]["seq"], frames[0]["seq"] + len(frames)))
    faces = [f for f in body if not f["face_lost"]]
    assert len(faces) >= 60 and all(f["version"] == ((1, 1) if feature == "expr52" else (1, 0)) for f in body)
    # Frontal face: the documented pose convention (≈ 180° about x).
    w, x, y, z = np.median([f["rotation_wxyz"] for f in faces], 0)
    assert abs(x) > 0.9, (w, x, y, z)
    # Same numbers as our decoder, from the recording of the exact bytes that went out.
    from capture.recording import RecordingReader

    ours = [protocol.decode(list(rec.parts)) for rec in RecordingReader(record).read_all()]
    assert len(ours) == len(frames)
    for mine, theirs in zip(ours, frames):
        assert mine.seq == theirs["seq"] and mine.t_capture_ns == theirs["t_capture_ns"]
        assert mine.kind.label == theirs["kind"] and mine.pose.rotation == pytest.approx(theirs["rotation_wxyz"])
        assert np.array_equal(np.asarray(mine.features, np.float64).reshape(-1),
                              np.array(theirs["rows"], np.float64).reshape(-1))
    if feature == "expr52":
        smile = [f["rows"][23][0] for f in faces]  # mouthSmileLeft, row 23 of the documented order
        assert max(smile) > 0.5 and min(smile) < 0.1
