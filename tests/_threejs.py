"""A page that loads one mesh.glb into three.js (its own GLTFLoader and WebGL renderer, in Debian's
headless Chromium on SwiftShader), served from a local HTTP server, and the browser session that
renders it from given cameras. Shared by the glTF viewer tests."""
from __future__ import annotations

import contextlib
import functools
import http.server
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from _browser import canvas_pixels, start_chromium, stop_chromium

THREE = Path(__file__).resolve().parents[1] / ".venv" / "node_modules" / "three"

PAGE = """<!doctype html><html><body style="margin:0">
<canvas id="view" width="{size}" height="{size}"></canvas>
<script type="importmap">{{"imports": {{"three": "./three/build/three.module.js",
  "three/addons/": "./three/examples/jsm/"}}}}</script>
<script type="module">
import * as THREE from 'three';
import {{ GLTFLoader }} from 'three/addons/loaders/GLTFLoader.js';
const renderer = new THREE.WebGLRenderer({{canvas: document.getElementById('view'), antialias: false,
                                           preserveDrawingBuffer: true}});
renderer.setClearColor(0x00ff00, 1);
const scene = new THREE.Scene();
scene.add(new THREE.AmbientLight(0xffffff, 3.0));
new GLTFLoader().load('mesh.glb', (gltf) => {{
  scene.add(gltf.scene);
  const materials = [];
  gltf.scene.traverse(o => {{ if (o.isMesh) materials.push({{name: o.material.name, transparent: o.material.transparent,
                                                             textured: !!o.material.map, skinned: !!o.isSkinnedMesh}}); }});
  window.view = (eye, target) => {{
    const camera = new THREE.PerspectiveCamera({fov}, 1, 0.01, 10);
    camera.position.set(...eye); camera.lookAt(new THREE.Vector3(...target));
    renderer.render(scene, camera);
  }};
  // Turn the skin's neck joint about +y (an avatar with a torso): the head over still shoulders.
  window.turnNeck = (radians) => {{
    const neck = gltf.scene.getObjectByName('neck');
    if (!neck) return false;
    neck.quaternion.setFromAxisAngle(new THREE.Vector3(0, 1, 0), radians);
    gltf.scene.updateMatrixWorld(true);
    return true;
  }};
  window.loaded = {{materials}};
}}, undefined, (e) => {{ window.loaded = {{error: String(e)}}; }});
</script></body></html>"""


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript"}

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(glb: Path, root: Path, size: int, fov: float):
    """The page and ``glb`` served from ``root``; yields the page's URL."""
    if not (THREE / "build" / "three.module.js").is_file():
        pytest.fail("three.js is missing: `make test` installs it (npm, .venv/node_modules/three)")
    (root / "three").symlink_to(THREE)
    (root / "mesh.glb").write_bytes(Path(glb).read_bytes())
    (root / "index.html").write_text(PAGE.format(size=size, fov=fov))
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def loaded_page(url: str):
    """A Chromium session with the page loaded: yields (driver, what the page reported loading)."""
    driver = start_chromium()
    try:
        driver.get(url)
        deadline = time.monotonic() + 60
        loaded = None
        while loaded is None and time.monotonic() < deadline:
            loaded = driver.execute_script("return window.loaded || null;")
            time.sleep(0.1)
        assert loaded and "error" not in loaded, f"three.js did not load mesh.glb: {loaded}"
        yield driver, loaded
    finally:
        stop_chromium(driver)


def shoot(driver, eye: np.ndarray, centre: np.ndarray) -> np.ndarray:
    driver.execute_script(f"window.view({json.dumps(np.asarray(eye).tolist())}, {json.dumps(np.asarray(centre).tolist())});")
    return canvas_pixels(driver, "view")


def background(image: np.ndarray) -> np.ndarray:
    """The page's pure green clear colour."""
    return (image[..., 1] > 240) & (image[..., 0] < 20) & (image[..., 2] < 20)
