"""Issue 11, files the user gives: each hostile or careless file handed to a real process (the
render node, `avatar info`, `build-avatar`, `replay`, `capture`), and the typed error, the refusal or
the counted skip it must produce. Case numbers are the issue's (docs/HARDENING.md lists them)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _avatar_quick import quick_build
from _gltf_samples import environment_document, scene_with_environment, write_glb, write_gltf
from _processes import REPO, assert_no_traceback, run_headcast

from capture.recording import RecordingReader, RecordingWriter
from core.atomic_files import sha256_file
from streaming import protocol
from streaming.protocol import FeatureFrame, FeatureKind
from streaming.receiver import Receiver, ReceiverConfig
from tools.samples import sample_path


def _render(scene: Path) -> subprocess.CompletedProcess:
    return run_headcast(["render", "--scene", str(scene), "--dev-avatars", "--backend", "headless", "--bind",
                         "tcp://127.0.0.1:0", "--frames", "3", "--size", "64x48", "--clock-bind", "off"], timeout=60)


# -- 7. hostile glTF environments ------------------------------------------------------------------
def _negative_stride(doc, folder):
    doc["bufferViews"][0]["byteStride"] = -12


def _own_child(doc, folder):
    doc["nodes"][0]["children"] = [0]


def _cycle(doc, folder):
    doc["nodes"][0]["children"] = [1]
    doc["nodes"][1]["children"] = [0]
    doc["scenes"][0]["nodes"] = [0]


def _dev_zero(doc, folder):
    doc["buffers"][0]["uri"] = "/dev/zero"


def _dev_zero_via_link(doc, folder):
    os.symlink("/dev/zero", folder / "zero.bin")
    doc["buffers"][0]["uri"] = "zero.bin"


def _outside_folder(doc, folder):
    (folder.parent / "secret.bin").write_bytes(b"\0" * 4096)
    doc["buffers"][0]["uri"] = "../secret.bin"


def _huge_accessor(doc, folder):
    doc["accessors"].append({"componentType": 5126, "count": 10**7, "type": "VEC3"})  # no buffer view
    doc["meshes"][0]["primitives"][0]["attributes"]["POSITION"] = 4


def _draco(doc, folder):
    doc["extensionsUsed"] = doc["extensionsRequired"] = ["KHR_draco_mesh_compression"]


def _past_view(doc, folder):
    doc["accessors"][0]["count"] = 400  # 400 VEC3 in a 48-byte view


def _missing(doc, folder):
    return "missing.gltf"


@pytest.mark.parametrize("mutate, message", [
    (_negative_stride, "byteStride"),
    (_own_child, "its own child"),
    (_cycle, "cycle"),
    (_dev_zero, "not a relative path"),
    (_dev_zero_via_link, "outside the glTF file's folder"),
    (_outside_folder, "outside the glTF file's folder"),
    (_huge_accessor, "10000000 elements"),
    (_draco, "KHR_draco_mesh_compression"),
    (_past_view, "runs to byte"),
    (_missing, "does not exist"),
], ids=lambda v: getattr(v, "__name__", "")[1:] if callable(v) else None)
def test_7_a_hostile_gltf_environment_is_refused_by_the_render_node(tmp_path, mutate, message):
    folder = tmp_path / "env"
    folder.mkdir()
    doc, blob = environment_document()
    name = mutate(doc, folder) or "room.gltf"
    if name == "room.gltf":
        write_gltf(folder / name, doc, blob, external=True)
    t0 = time.monotonic()
    r = _render(scene_with_environment(folder, name))
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])   # not 139 (segfault), not a hang
    assert message in r.stderr and name in r.stderr, r.stderr[-2000:]
    assert time.monotonic() - t0 < 45
    assert_no_traceback(r.stderr)


def test_7_a_valid_environment_still_renders(tmp_path):
    folder = tmp_path / "env"
    folder.mkdir()
    doc, blob = environment_document()
    write_glb(folder / "room.glb", doc, blob)
    r = _render(scene_with_environment(folder, "room.glb"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "3 frames" in r.stdout


# -- 8. tampered avatar manifests ------------------------------------------------------------------
@pytest.fixture(scope="module")
def package_dir(tmp_path_factory):
    return quick_build(tmp_path_factory.getbasetemp())


def _edit_manifest(pkg: Path, edit) -> None:
    raw = json.loads((pkg / "avatar.json").read_text())
    edit(raw)
    (pkg / "avatar.json").write_text(json.dumps(raw))


def _deep(pkg: Path) -> None:
    text = (pkg / "avatar.json").read_text()
    (pkg / "avatar.json").write_text(text[:-1] + ', "deep": ' + "[" * 100_000 + "]" * 100_000 + "}")


def _bad_mesh_accessor(pkg: Path) -> None:
    raw = (pkg / "mesh.glb").read_bytes()
    (json_len,) = struct.unpack_from("<I", raw, 12)
    doc = json.loads(raw[20:20 + json_len])
    doc["accessors"][0]["count"] = 10**9
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    rest = raw[20 + json_len:]
    body = struct.pack("<II", len(text), 0x4E4F534A) + text + rest
    (pkg / "mesh.glb").write_bytes(struct.pack("<III", 0x46546C67, 2, 12 + len(body)) + body)
    _edit_manifest(pkg, lambda m: m["files"].__setitem__("mesh.glb", {
        "sha256": sha256_file(pkg / "mesh.glb"), "bytes": (pkg / "mesh.glb").stat().st_size}))


def _weights_link_outside(pkg: Path) -> None:
    outside = pkg.parent / f"{pkg.name}-outside"
    outside.mkdir()
    shutil.move(pkg / "weights.safetensors", outside / "weights.safetensors")
    os.symlink(outside / "weights.safetensors", pkg / "weights.safetensors")


def _window(m):
    m["animation"]["window"] = m["animation"]["config"]["window"] = 10**9


def _texture(size):
    def edit(m):
        m["head_model"]["texture_size"] = m["head_model"]["vae"]["texture_size"] = size
    return edit


TAMPERED = {
    "window_1e9": (lambda p: _edit_manifest(p, _window), "animation/config/window"),
    "texture_16384": (lambda p: _edit_manifest(p, _texture(16384)), "head_model/texture_size"),
    "texture_100000": (lambda p: _edit_manifest(p, _texture(100000)), "head_model/texture_size"),
    "vae_extra_key": (lambda p: _edit_manifest(p, lambda m: m["head_model"]["vae"].__setitem__("extra", 1)),
                      "head_model/vae"),
    "negative_size": (lambda p: _edit_manifest(p, lambda m: m["head_model"].__setitem__("n_blendshapes", -3)),
                      "head_model/n_blendshapes"),
    "fractional_size": (lambda p: _edit_manifest(p, lambda m: m["head_model"].__setitem__("z_dim", 16.5)),
                        "head_model/z_dim"),
    "float_size": (lambda p: _edit_manifest(p, lambda m: m["head_model"]["vae"].__setitem__("z_dim", 16.0)),
                   "head_model/vae/z_dim"),
    "deeply_nested": (_deep, "nested too deeply"),
    "bad_mesh_accessor": (_bad_mesh_accessor, "1000000000 elements"),
    "weights_link_outside": (_weights_link_outside, "outside the package"),
}


def test_8_tampered_manifests_are_refused_by_avatar_info_without_allocating(package_dir, tmp_path):
    dirs = []
    for name, (tamper, _) in TAMPERED.items():
        d = tmp_path / name
        shutil.copytree(package_dir, d)
        tamper(d)
        dirs.append(d)
    t0 = time.monotonic()
    r = run_headcast(["avatar", "info", str(package_dir), *map(str, dirs)], timeout=240)
    assert r.returncode == 2 and time.monotonic() - t0 < 200
    assert_no_traceback(r.stderr)
    errors = [line for line in r.stderr.splitlines() if line.startswith("headcast avatar: error:")]
    assert len(errors) == len(TAMPERED), r.stderr[-3000:]
    for (name, (_, message)), line in zip(TAMPERED.items(), errors):
        assert f"/{name}" in line and message in line, (name, line)
        assert len(line) < 600, line  # one line, not a dump of the instance
    assert f"{package_dir}: valid avatar package" in r.stdout  # the untouched one still loads


# -- 9. scenes ---------------------------------------------------------------------------------------
def _scene_text(avatar: str = '{"package": "p", "stream": "s"}', env: str = "", extra: str = "") -> str:
    return '{"version": 1, ' + env + '"avatars": [' + avatar + "]" + extra + "}"


@pytest.mark.parametrize("text, message", [
    (_scene_text('{"package": "p", "stream": "s", "position": [NaN, 1.6, -1]}'), "NaN is not a JSON number"),
    (_scene_text('{"package": "p", "stream": "s", "position": [1e308, 1.6, -1]}'), "is greater than the maximum"),
    (_scene_text('{"package": "p", "stream": "s", "position": [1e400, 1.6, -1]}'), "out of range"),
    (_scene_text('{"package": "p", "stream": "s", "scale": NaN}'), "NaN"),
    (_scene_text('{"package": "p", "stream": "s", "rotation": [0, 0, 0, 0]}'), "not a unit quaternion"),
    (_scene_text(env='"environment": {"kind": "room", "scale": Infinity}, '), "Infinity"),
    (_scene_text(env='"environment": {"kind": "room", "scale": 1e300}, '), "environment/scale"),
    (_scene_text(extra=', "name": ' + "[" * 50_000 + "]" * 50_000), "nested too deeply"),
    (_scene_text(", ".join(f'{{"package": "p", "stream": "s{i}"}}' for i in range(65))), "more than 64 items"),
])
def test_9_absurd_scenes_are_refused_by_the_render_node_in_one_line(tmp_path, text, message):
    scene = tmp_path / "scene.json"
    scene.write_text(text)
    r = _render(scene)
    assert r.returncode == 2 and message in r.stderr, r.stderr[-2000:]
    assert_no_traceback(r.stderr)
    assert len(r.stderr.strip().splitlines()[-1]) < 400  # 65 avatars: no dump of the whole list


SAVER = r"""
import os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from xr_runtime.scene.scene_file import Scene
real_fsync = os.fsync
def slow_fsync(fd):  # a slow disk (SD card, NFS): the kill lands while the temporary file exists
    time.sleep(0.2)
    real_fsync(fd)
os.fsync = slow_fsync
scene = Scene.load(Path(sys.argv[1]))
print("saving", flush=True)
while True:
    scene.save(Path(sys.argv[1]))
"""


@pytest.mark.parametrize("mode", [0o644, 0o640])
def test_9_scene_save_keeps_the_mode_and_sweeps_what_a_killed_writer_left(tmp_path, mode):
    scene = tmp_path / "scene.json"
    scene.write_text(_scene_text(", ".join(f'{{"package": "p", "stream": "s{i}", "position": [{i * 0.1}, 1, -1]}}'
                                           for i in range(64))))
    scene.chmod(mode)
    leftovers = 0
    for attempt in range(3):
        saver = subprocess.Popen([sys.executable, "-c", SAVER, str(scene), str(REPO)], stdout=subprocess.PIPE, text=True)
        assert saver.stdout.readline().startswith("saving")
        time.sleep(0.1 + 0.15 * attempt)
        saver.send_signal(signal.SIGKILL)
        saver.wait(10)
        leftovers += len(list(tmp_path.glob(".scene.json.*.tmp")))
        assert oct(scene.stat().st_mode & 0o777) == oct(mode)
        json.loads(scene.read_text())  # never half a file
    r = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[2]);"
                        "from pathlib import Path; from xr_runtime.scene.scene_file import Scene;"
                        "p = Path(sys.argv[1]); Scene.load(p).save(p)", str(scene), str(REPO)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert leftovers >= 1  # the kills did land mid-save (temporaries left behind) ...
    assert list(tmp_path.glob(".scene.json.*.tmp")) == []  # ... and the next save swept them
    assert oct(scene.stat().st_mode & 0o777) == oct(mode)


def test_9_recordings_get_the_users_mode_not_0600(tmp_path):
    rec = tmp_path / "session.hcrec"
    old = os.umask(0o022)
    try:
        r = run_headcast(["capture", "--source", str(sample_path("single_face.mp4")), "--connect",
                          "tcp://127.0.0.1:9", "--stream", "cam", "--frames", "3", "--clock", "off",
                          "--record", str(rec)], timeout=90)
    finally:
        os.umask(old)
    assert r.returncode == 0, r.stderr[-2000:]
    assert oct(rec.stat().st_mode & 0o777) == "0o644"
    assert len(RecordingReader(rec).read_all()) == 4


# -- 10. build-avatar --out replaces only packages --------------------------------------------------
def test_10_build_avatar_never_deletes_a_directory_that_only_holds_an_avatar_json(tmp_path, package_dir):
    mine = tmp_path / "mine"
    (mine / "photos").mkdir(parents=True)
    (mine / "photos" / "me.jpg").write_bytes(b"jpeg")
    (mine / "notes.txt").write_text("keep me")
    (mine / "avatar.json").write_text("{}")
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "avatar.json").write_text("{}")
    extra = tmp_path / "package-and-more"
    shutil.copytree(package_dir, extra)
    (extra / "notes.txt").write_text("keep me too")
    video = str(sample_path("single_face.mp4"))
    for out, message in ((mine, "notes.txt, photos"), (bare, "is not a Headcast avatar package"),
                         (extra, "notes.txt")):
        r = run_headcast(["build-avatar", "--video", video, "--out", str(out), "--quick"], timeout=120)
        assert r.returncode == 2 and message in r.stderr, r.stderr[-2000:]
        assert_no_traceback(r.stderr)
    assert (mine / "notes.txt").read_text() == "keep me" and (mine / "photos" / "me.jpg").read_bytes() == b"jpeg"
    assert (mine / "avatar.json").read_text() == "{}" and (bare / "avatar.json").read_text() == "{}"
    assert (extra / "notes.txt").read_text() == "keep me too" and (extra / "weights.safetensors").is_file()


# -- 11. recordings resynchronise past damage -------------------------------------------------------
def _recording(path: Path, n: int = 60) -> Path:
    t0 = time.monotonic_ns()
    with RecordingWriter(path) as w:
        for i in range(n):
            feats = np.full((478, 3), i / 100, np.float16)
            frame = FeatureFrame("rec", i, FeatureKind.MP478, feats, t0 + i * 16_000_000, t0 + i * 16_000_000)
            w.write(t0 + i * 16_000_000, protocol.encode(frame, t0 + i * 16_000_000))
    return path


def _replay_into_receiver(path: Path) -> tuple[subprocess.CompletedProcess, list[int]]:
    with Receiver(ReceiverConfig(endpoint="tcp://127.0.0.1:*", history=128)) as rx:
        r = run_headcast(["replay", str(path), "--connect", rx.bound_endpoint], timeout=60)
        rx.wait_for(lambda x: "rec" in x.snapshot() and x.snapshot()["rec"].last_seq == 59, 3)
        seqs = [f.seq for f in rx.window("rec", 128)]
    return r, seqs


def test_11_sixteen_corrupt_bytes_in_the_middle_lose_only_the_records_they_hit(tmp_path):
    path = _recording(tmp_path / "r.hcrec")
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = np.random.default_rng(1).bytes(16)
    path.write_bytes(bytes(data))
    r, seqs = _replay_into_receiver(path)
    assert r.returncode == 0, r.stderr
    assert 58 <= len(seqs) <= 59 and seqs[-1] == 59        # one record hit (two if the bytes straddle)
    assert "damaged region" in r.stderr and "truncated" not in r.stderr
    assert_no_traceback(r.stderr)


def test_11_a_corrupt_length_in_the_first_record_loses_only_that_record(tmp_path):
    path = _recording(tmp_path / "r.hcrec")
    data = bytearray(path.read_bytes())
    data[24:28] = struct.pack("<I", 0x7FFFFFFF)            # header (20) + record magic (4): the length
    path.write_bytes(bytes(data))
    r, seqs = _replay_into_receiver(path)
    assert r.returncode == 0, r.stderr
    assert seqs == list(range(1, 60))
    assert "implausible record length" in r.stderr


def test_11_version_1_recordings_resynchronise_too(tmp_path):
    """Files written before record magics existed: the reader scans for length + CRC."""
    import zlib

    path = tmp_path / "v1.hcrec"
    body_of = [struct.pack("<qH", i, 2) + struct.pack("<I", 3) + b"rec" + struct.pack("<I", 40) + bytes([i]) * 40
               for i in range(30)]
    out = bytearray(struct.pack("<8sHHq", b"HCREC\0\r\n", 1, 0, 0))
    for body in body_of:
        out += struct.pack("<II", len(body), zlib.crc32(body)) + body
    out[200:216] = b"\xff" * 16
    path.write_bytes(bytes(out))
    reader = RecordingReader(path)
    records = reader.read_all()
    assert reader.version == 1 and len(records) in (28, 29) and records[-1].t_send_ns == 29
    assert len(reader.damaged) == 1 and reader.truncated_tail_bytes == 0


# -- 12. a few missing trailing frames are a warning -----------------------------------------------
def test_12_no_face_sample_with_missing_trailing_frames_is_a_warning(tmp_path):
    stats = tmp_path / "stats.json"
    with Receiver(ReceiverConfig(endpoint="tcp://127.0.0.1:*", history=256)) as rx:
        r = run_headcast(["capture", "--source", str(sample_path("no_face.mp4")), "--connect", rx.bound_endpoint,
                          "--stream", "empty", "--clock", "off", "--stats-json", str(stats)], timeout=120)
        rx.wait_for(lambda x: "empty" in x.snapshot() and x.snapshot()["empty"].end_of_stream, 5)
        received = rx.snapshot()["empty"].received
    assert r.returncode == 0, r.stderr[-2000:]
    assert "did not decode" in r.stderr and "98" in r.stderr
    summary = json.loads(stats.read_text())
    assert summary["frames"] == 95 and summary["source_missing_frames"] == 3
    assert received == 96  # every decoded frame and the end-of-stream frame
