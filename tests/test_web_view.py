"""`headcast render --web` in a real headless Chromium, and every MP4 the project writes played in a
`<video>` element of the same browser.

The live page: a render node (the real `--quick` avatar and its animation network on the
streaming engine, headless EGL) is driven by a replay of recorded expression frames — the two
frames of the sample clip whose lip gaps lie furthest apart (a wide open smile, a nearly closed
mouth), alternating every two seconds — and the
test reads the page's own canvas: the avatar is there (skin, not the wall), it changes when the
replayed expression changes and holds still while it does not, the stream table lists the
stream, and the latency plot keeps updating.
"""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("xr_runtime.gl.egl_context")
pytest.importorskip("selenium")

sys.path.insert(0, str(Path(__file__).parent))
from _avatar_quick import quick_build  # noqa: E402
from _browser import canvas_pixels, save_artifact, start_chromium, stop_chromium  # noqa: E402

from tools.samples import sample_path  # noqa: E402

HEADCAST = [sys.executable, "-m", "tools.cli"]
PHASE_S = 2.0
SIZE = (320, 240)


@pytest.fixture(scope="module")
def browser():
    driver = start_chromium()
    yield driver
    stop_chromium(driver)


@pytest.fixture(scope="module")
def quick_avatar(tmp_path_factory):
    return quick_build(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def expressions(tmp_path_factory):
    """Two recorded frames of the sample driver whose lip gaps differ most (after the neutral settled)."""
    from capture.recording import RecordingReader
    from streaming.protocol import Flags, decode

    rec = tmp_path_factory.mktemp("rec") / "driver.hcrec"
    r = subprocess.run(HEADCAST + ["capture", "--source", str(sample_path("single_face.mp4")), "--connect",
                                   "tcp://127.0.0.1:9", "--stream", "driver", "--clock", "off", "--record", str(rec)],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    frames = [decode(record.parts) for record in RecordingReader(rec)]
    usable = [f for f in frames if not f.flags & (Flags.CALIBRATING | Flags.FACE_LOST | Flags.END_OF_STREAM)]
    assert len(usable) > 30, len(frames)
    opening = np.array([float(f.features[14, 1]) - float(f.features[13, 1]) for f in usable])  # lower − upper lip
    lo, hi = usable[int(opening.argmin())], usable[int(opening.argmax())]
    assert abs(opening.max() - opening.min()) > 1e-3
    return lo, hi


def start_render(args: list[str]) -> tuple[subprocess.Popen, str, str, list[str]]:
    render = subprocess.Popen(HEADCAST + ["render", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    lines, bind, url = [], None, None
    deadline = time.monotonic() + 240
    while url is None:
        line = render.stdout.readline()
        if not line:
            if render.poll() is not None or time.monotonic() > deadline:
                render.kill()
                pytest.fail("render node did not start:\n" + "".join(lines))
            continue
        lines.append(line)
        if m := re.search(r"listening on (\S+)", line):
            bind = m.group(1)
        if m := re.search(r"web page on (\S+)", line):
            url = m.group(1)
    return render, bind, url, lines


def page_state(driver) -> dict:
    return driver.execute_script("const h = Object.assign({}, window.headcast); delete h.lastStatus; return h;")


def wait_for(driver, condition: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if driver.execute_script(f"return Boolean({condition});"):
            return
        time.sleep(0.1)
    pytest.fail(f"page never reached {condition}: {page_state(driver)}")


def face_box(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return image[int(h * 0.30):int(h * 0.62), int(w * 0.38):int(w * 0.62)].astype(np.float64)


def test_live_page_shows_the_avatar_following_a_replayed_stream(quick_avatar, expressions, browser, tmp_path):
    from streaming.protocol import FeatureFrame
    from streaming.publisher import Publisher

    stats_path, scene = tmp_path / "render.json", tmp_path / "scene.json"
    # Close enough that the face fills the middle of a small view.
    scene.write_text(json.dumps({"version": 1, "avatars": [{"package": str(quick_avatar), "stream": "driver",
                                                            "position": [0, 1.6, -0.32]}],
                                 "viewer": {"position": [0, 1.6, 0]}}))
    render, bind, url, lines = start_render([
        "--scene", str(scene), "--bind", "tcp://127.0.0.1:*", "--backend", "headless",
        "--fps", "20", "--size", f"{SIZE[0]}x{SIZE[1]}", "--seconds", "120", "--no-head-motion",
        "--web", "0", "--web-fps", "20", "--json", str(stats_path)])
    samples, plot_samples, states, table = [], [], [], None
    try:
        browser.get(url)
        wait_for(browser, "window.headcast.connected && window.headcast.framesShown > 3")
        with Publisher(bind) as pub:
            seq = 0
            for phase, frame in enumerate([expressions[0], expressions[1]] * 2):
                t_phase = time.monotonic()
                sampled = False
                while time.monotonic() - t_phase < PHASE_S:
                    t = time.monotonic_ns()
                    pub.send(FeatureFrame("driver", seq, frame.kind, frame.features, t, t, pose=frame.pose,
                                          confidence=frame.confidence))
                    seq += 1
                    if not sampled and time.monotonic() - t_phase > PHASE_S - 0.35:
                        samples.append(canvas_pixels(browser, "spectator"))
                        plot_samples.append(canvas_pixels(browser, "latency-plot"))
                        states.append(page_state(browser))
                        sampled = True
                        if phase == 1:
                            table = browser.execute_script(
                                "return [...document.querySelectorAll('#streams-table tbody tr')]"
                                ".map(tr => [...tr.children].map(td => td.textContent));")
                            save_artifact(browser, "live_page.png")
                    time.sleep(1 / 30)
    finally:
        render.send_signal(signal.SIGINT)        # the orderly stop: stats written, page closed
        try:
            out, _ = render.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            render.kill()
            out, _ = render.communicate()
    assert render.returncode == 0, "".join(lines) + out
    a1, b1, a2, b2 = samples
    for i, image in enumerate(samples):
        save_artifact(image, f"spectator_phase{i}.png")
    assert a1.shape == (SIZE[1], SIZE[0], 3)

    # The avatar is visible: skin in the middle of the view, not the wall beside it.
    face = face_box(a1).reshape(-1, 3).mean(axis=0)
    wall = a1[int(SIZE[1] * 0.45), int(SIZE[0] * 0.1)].astype(float)
    assert np.abs(face - wall).max() > 25, (face, wall)
    assert face[0] > face[2], face                           # skin: more red than blue

    # It changes with the replayed expression and holds still while the expression does.
    def diff(x, y):
        return float(np.abs(face_box(x) - face_box(y)).mean())

    across = min(diff(a1, b1), diff(b1, a2), diff(a2, b2))
    within = max(diff(a1, a2), diff(b1, b2))
    assert across > 1.5 and across > 3 * within, (across, within)

    # The stream table names the stream, live; the latency plot updates and is drawn.
    assert table and table[0][0] == "driver" and table[0][2] == "live", table
    assert states[-1]["plotUpdates"] >= states[0]["plotUpdates"] + 4, states
    assert states[-1]["plotPoints"] > 20 and states[-1]["latencyWindow"]["end_to_end"]["n"] > 20
    assert float(np.abs(plot_samples[0].astype(int) - plot_samples[-1].astype(int)).mean()) > 0.05
    assert states[-1]["framesShown"] > states[0]["framesShown"] + 40     # ~20 fps for 6 s

    stats = json.loads(stats_path.read_text())
    web = stats["web"]
    assert web["frames_shown"] > 40 and web["viewers_max"] == 1
    assert web["page_latency_ms"]["eye_drawn_to_shown"]["n"] > 20
    assert stats["spectator"]["grabbed"] >= web["frames_sent"]


def _mp4s(quick_avatar, tmp_path: Path) -> dict[str, Path]:
    """One MP4 from each writer: `render --out` (what `demo` runs), `eval transfer --video`, and the
    old codec by flag (the negative control: browsers refuse it)."""
    scene = tmp_path / "scene.json"
    scene.write_text(json.dumps({"version": 1, "avatars": [{"package": "a", "stream": "s", "position": [0, 1.6, -0.6]}]}))
    out = {"render": tmp_path / "render.mp4", "render_mp4v": tmp_path / "render_mp4v.mp4", "eval": tmp_path / "eval.mp4"}
    for name, codec in (("render", "h264"), ("render_mp4v", "mp4v")):
        r = subprocess.run(HEADCAST + ["render", "--scene", str(scene), "--dev-avatars", "--bind", "tcp://127.0.0.1:*",
                                       "--backend", "headless", "--frames", "24", "--size", "161x121",
                                       "--out", str(out[name]), "--video-codec", codec],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
    r = subprocess.run(HEADCAST + ["eval", "transfer", "--avatar", str(quick_avatar), "--driver",
                                   str(sample_path("single_face.mp4")), "--frames", "10:30", "--size", "128",
                                   "--json", str(tmp_path / "eval.json"), "--video", str(out["eval"])],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return out


PLAYER = """<!doctype html><body><script>
window.results = {};
const names = %s;
for (const name of names) {
  const v = document.createElement('video');
  v.muted = true; v.playsInline = true; v.src = name + '.mp4';
  const r = window.results[name] = {loaded: false, error: null, presented: 0, width: 0, height: 0, duration: 0};
  v.addEventListener('loadeddata', () => { r.loaded = true; r.width = v.videoWidth; r.height = v.videoHeight;
                                            r.duration = v.duration; v.play().catch(e => r.playError = String(e)); });
  v.addEventListener('error', () => { r.error = v.error ? v.error.code : -1; });
  const onFrame = () => { r.presented += 1; v.requestVideoFrameCallback(onFrame); };
  v.requestVideoFrameCallback(onFrame);
  document.body.appendChild(v);
}
</script></body>"""


def test_every_mp4_the_project_writes_is_h264_and_plays_in_chromium(quick_avatar, browser, tmp_path):
    from media.video_writer import probe

    videos = _mp4s(quick_avatar, tmp_path)
    for name, path in videos.items():
        info = probe(path)
        assert info.fast_start, name
        assert info.pix_fmt == "yuv420p" and info.width % 2 == 0 and info.height % 2 == 0, (name, info)
        assert all(b > a for a, b in zip(info.pts_s, info.pts_s[1:])), name
        assert info.codec == ("mpeg4" if name.endswith("mp4v") else "h264"), (name, info.codec)
    assert probe(videos["eval"]).frames == 20
    (tmp_path / "player.html").write_text(PLAYER % json.dumps([p.stem for p in videos.values()]))
    browser.get((tmp_path / "player.html").as_uri())
    deadline = time.monotonic() + 30
    results = {}
    while time.monotonic() < deadline:
        results = browser.execute_script("return window.results;")
        settled = [r["error"] is not None or r["presented"] >= 3 for r in results.values()]
        if len(results) == len(videos) and all(settled):
            break
        time.sleep(0.2)
    for name in ("render", "eval"):
        r = results[videos[name].stem]
        info = probe(videos[name])
        assert r["error"] is None and r["loaded"], (name, r)
        assert (r["width"], r["height"]) == (info.width, info.height), (name, r)
        assert r["presented"] >= 3, (name, r)            # decoded and shown, not only parsed
    old = results[videos["render_mp4v"].stem]
    assert old["error"] == 4, old                        # MEDIA_ERR_SRC_NOT_SUPPORTED: why H.264 is the default
