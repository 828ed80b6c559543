"""media/video_writer: every MP4 is H.264 yuv420p, fast-start, stamped with the frames' real times
(the render loop's headless backend included), written atomically."""
from __future__ import annotations

import time

import numpy as np
import pytest

from media.video_writer import Mp4Writer, VideoConfig, VideoWriteError, probe


def _decoded_rgb(path, index=0):
    import av

    with av.open(str(path)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i == index:
                return frame.reformat(format="rgb24", src_colorspace="itu709").to_ndarray()
    raise AssertionError("frame missing")


def test_h264_yuv420p_fast_start_with_the_given_times_and_colours(tmp_path):
    path = tmp_path / "a.mp4"
    t0 = 5_000_000_000
    times = [t0 + i * 16_666_667 for i in range(20)] + [t0 + 20 * 16_666_667 + 200_000_000]  # the last one late
    with Mp4Writer(path, nominal_fps=60) as video:
        for i, t in enumerate(times):
            image = np.zeros((101, 131, 4), np.uint8)
            image[..., 3] = 255
            image[:, :, 0] = 200                      # red
            image[:50, :, 2] = 180                    # top half magenta: orientation survives
            video.write(image, t)
    info = probe(path)
    assert (info.codec, info.pix_fmt, info.width, info.height, info.frames) == ("h264", "yuv420p", 132, 102, 21)
    assert info.fast_start
    expected = [(t - t0) / 1e9 for t in times]
    assert np.allclose(info.pts_s, expected, atol=2e-5)
    assert info.pts_s[-1] - info.pts_s[-2] == pytest.approx(0.2167, abs=1e-3)   # the late frame keeps its gap
    rgb = _decoded_rgb(path).astype(int)
    assert np.abs(rgb[75, 60] - (200, 0, 0)).max() < 12, rgb[75, 60]
    assert np.abs(rgb[20, 60] - (200, 0, 180)).max() < 12, rgb[20, 60]
    import av

    with av.open(str(path)) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.colorspace, cc.color_range) == (1, 1)          # BT.709, limited range, tagged


def test_frames_without_times_use_the_nominal_rate_and_equal_times_are_pushed_on(tmp_path):
    path = tmp_path / "b.mp4"
    with Mp4Writer(path, nominal_fps=25) as video:
        for _ in range(5):
            video.write(np.full((32, 32, 3), 90, np.uint8), pixel_format="bgr24")
    assert probe(path).pts_s == pytest.approx([0.0, 0.04, 0.08, 0.12, 0.16])
    with Mp4Writer(tmp_path / "c.mp4") as video:
        for _ in range(3):
            video.write(np.zeros((32, 32, 4), np.uint8), t_ns=123)
    pts = probe(tmp_path / "c.mp4").pts_s
    assert all(b > a for a, b in zip(pts, pts[1:]))


def test_the_old_codec_by_flag(tmp_path):
    path = tmp_path / "old.mp4"
    with Mp4Writer(path, nominal_fps=30, config=VideoConfig(codec="mp4v")) as video:
        for i in range(4):
            video.write(np.full((48, 64, 4), 40 * i, np.uint8), t_ns=i * 33_333_333)
    info = probe(path)
    assert info.codec == "mpeg4" and info.frames == 4 and info.fast_start


def test_written_atomically_and_bad_frames_are_typed_errors(tmp_path):
    path = tmp_path / "keep.mp4"
    path.write_bytes(b"previous recording")
    video = Mp4Writer(path)
    video.write(np.zeros((16, 16, 4), np.uint8))
    assert path.read_bytes() == b"previous recording"          # nothing replaced until it is finished
    with pytest.raises(VideoWriteError, match="differs from the first frame"):
        video.write(np.zeros((18, 16, 4), np.uint8))
    with pytest.raises(VideoWriteError, match="uint8"):
        video.write(np.zeros((16, 16, 4), np.float32))
    video.abort()
    assert path.read_bytes() == b"previous recording"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.mp4"]   # no temporary file left behind
    with pytest.raises(VideoWriteError, match="codec"):
        Mp4Writer(path, config=VideoConfig(codec="vp9"))
    assert Mp4Writer(tmp_path / "empty.mp4").close() is None and not (tmp_path / "empty.mp4").exists()


def test_headless_render_loop_writes_the_display_times_of_a_late_loop(tmp_path, egl_available):
    """A paced 20 Hz headless run whose source stalls once for 0.3 s: the MP4 keeps the stall
    as a gap (variable frame rate), instead of a fixed-rate file that hides it."""
    from xr_runtime.avatars.dev_source import StaticAvatarStateSource, StaticStream, dev_head_mesh, dev_texture
    from xr_runtime.backends.headless import HeadlessBackend, HeadlessConfig
    from xr_runtime.avatars.assets import AvatarAssets
    from xr_runtime.render_node import RenderNode
    from xr_runtime.scene.scene_file import Scene

    class StallOnce(StaticAvatarStateSource):
        calls = 0

        def latest(self, stream_id, t_display_ns):
            self.calls += 1
            if self.calls == 10:
                time.sleep(0.3)
            return super().latest(stream_id, t_display_ns)

    scene = Scene.from_dict({"version": 1, "avatars": [{"package": "a", "stream": "s", "position": [0, 1.6, -0.6]}]})
    source = StallOnce({"s": StaticStream(dev_texture(), np.zeros(2, np.float32))})
    path = tmp_path / "late.mp4"
    stats = RenderNode(scene, [AvatarAssets(dev_head_mesh(), dev_texture(64))], source).run(
        HeadlessBackend(HeadlessConfig(width=96, height=64, fps=20, paced=True, out=path)), max_frames=24)
    info = probe(path)
    assert info.codec == "h264" and info.frames == 24
    gaps = np.diff(info.pts_s)
    assert gaps.max() > 0.25, gaps                       # the stall is in the file
    assert np.median(gaps) == pytest.approx(0.05, abs=0.01)
    # The file lasts as long as the frame loop ran (its first frame at 0, the last one period early).
    assert info.pts_s[-1] == pytest.approx(stats["seconds"] - 0.05, abs=0.1), (info.pts_s[-1], stats["seconds"])


def test_no_other_code_writes_video_files():
    """One writer: nothing outside media/ opens an OpenCV VideoWriter or a PyAV output container."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    rooms = ("capture", "calibration", "core", "geometry", "inference", "room", "streaming", "tools", "xr_runtime")
    pattern = re.compile(r"VideoWriter\s*\(|av\.open\([^)]*[\"']w[\"']")
    offenders = [str(p.relative_to(root)) for room in rooms for p in (root / room).rglob("*.py")
                 if pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == [], offenders
