"""Scene files: schema validation names the problem; saves are atomic round trips."""
from __future__ import annotations

import json
import os

import pytest

from xr_runtime.scene.scene_file import Scene, SceneError, single_avatar_scene

GOOD = {
    "version": 1,
    "name": "meeting",
    "environment": {"kind": "room"},
    "avatars": [
        {"package": "avatars/anna", "stream": "anna", "position": [0, 1.6, -1.2], "rotation": [1, 0, 0, 0], "scale": 1.0},
        {"package": "avatars/ben", "stream": "ben", "position": [0.8, 1.6, -1.0]},
    ],
    "viewer": {"position": [0, 1.7, 0]},
}


def test_load_resolves_packages_relative_to_the_scene(tmp_path):
    p = tmp_path / "scene.json"
    p.write_text(json.dumps(GOOD))
    s = Scene.load(p)
    assert [a.stream for a in s.avatars] == ["anna", "ben"]
    assert s.avatars[0].package == tmp_path / "avatars/anna"
    assert s.avatars[1].transform.rotation == (1.0, 0.0, 0.0, 0.0)  # default
    assert s.viewer.position == (0, 1.7, 0)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(version=2), "version"),
    (lambda d: d["avatars"][0].update(stream="bad id"), "avatars/0/stream"),
    (lambda d: d["avatars"][0].update(position=[0, 1]), "avatars/0/position"),
    (lambda d: d["avatars"][1].update(scale=-1), "avatars/1/scale"),
    (lambda d: d["avatars"][0].pop("package"), "package"),
    (lambda d: d.update(extra=1), "extra"),
    (lambda d: d["avatars"][1].update(stream="anna"), "drives two avatar slots"),
    (lambda d: d.update(environment={"kind": "gltf"}), "needs a path"),
])
def test_invalid_scenes_name_the_problem(tmp_path, mutate, message):
    data = json.loads(json.dumps(GOOD))
    mutate(data)
    p = tmp_path / "scene.json"
    p.write_text(json.dumps(data))
    with pytest.raises(SceneError, match=message.replace("/", ".")):
        Scene.load(p)


def test_not_json_and_missing(tmp_path):
    p = tmp_path / "scene.json"
    p.write_bytes(b"\xff{not json")
    with pytest.raises(SceneError, match="not valid JSON"):
        Scene.load(p)
    with pytest.raises(SceneError, match="does not exist"):
        Scene.load(tmp_path / "none.json")


def test_save_round_trip_and_atomicity(tmp_path, monkeypatch):
    p = tmp_path / "scene.json"
    p.write_text(json.dumps(GOOD))
    s = Scene.load(p)
    s.avatars[0].transform.position = (0.5, 1.5, -2.0)
    s.save(p)
    assert Scene.load(p).avatars[0].transform.position == (0.5, 1.5, -2.0)
    assert Scene.load(p).avatars[0].package == tmp_path / "avatars/anna"
    before = p.read_bytes()
    # A crash while replacing the file leaves the old scene intact and no temp files behind.
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    s.avatars[0].transform.position = (9.0, 9.0, 9.0)
    with pytest.raises(OSError):
        s.save(p)
    assert p.read_bytes() == before
    assert [f.name for f in tmp_path.iterdir()] == ["scene.json"]


def test_single_avatar_scene(tmp_path):
    s = single_avatar_scene(tmp_path / "a", "alice")
    s.save(tmp_path / "s.json")
    assert Scene.load(tmp_path / "s.json").avatars[0].stream == "alice"
