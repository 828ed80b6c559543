"""Avatar package contract: loading, glTF round trip, decoder output, and every way a package can
be damaged (each must fail with a message naming the problem)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pygltflib
import pytest
import torch

from _avatar_quick import quick_build
from inference.avatar_package import (
    MANIFEST,
    MESH,
    PREVIEW,
    WEIGHTS,
    AvatarPackage,
    AvatarPackageError,
    write_package,
)
from tools import cli


@pytest.fixture(scope="session")
def package_dir(tmp_path_factory) -> Path:
    return quick_build(tmp_path_factory.getbasetemp())


@pytest.fixture
def copy(package_dir, tmp_path) -> Path:
    dst = tmp_path / "pkg"
    shutil.copytree(package_dir, dst)
    return dst


def test_load_gives_runtime_arrays_and_decoder(package_dir):
    pkg = AvatarPackage.load(package_dir)
    m = pkg.manifest
    v, k = len(pkg.mesh.positions), m.n_blendshapes
    assert pkg.mesh.positions.shape == (v, 3) and pkg.mesh.positions.dtype == np.float32
    assert pkg.mesh.uvs.shape == (v, 2) and (pkg.mesh.uvs >= 0).all() and (pkg.mesh.uvs <= 1).all()
    assert pkg.mesh.indices.dtype == np.uint32 and pkg.mesh.indices.shape[1] == 3
    assert pkg.mesh.blendshapes.shape == (k, v, 3)
    # A head is ~15-25 cm tall: the mesh is in metres.
    height = np.ptp(pkg.mesh.positions[:, 1])
    assert 0.15 < height < 0.4
    tex, w = pkg.decoder(torch.zeros(m.z_dim))
    assert tex.dtype == torch.uint8 and tuple(tex.shape) == (m.texture_size, m.texture_size, 4)
    assert tex.is_contiguous()
    # A: the whole head's learned alpha (builder 9), or opaque without one.
    expect = torch.full(tex.shape[:2], 255, dtype=torch.uint8) if pkg.alpha is None else torch.from_numpy(pkg.alpha)
    assert torch.equal(tex[..., 3], expect)
    assert w.shape == (k,)
    assert m.feature_kind == "mp478" and m.animation_included is True
    net, norm = pkg.animation  # the trained animation network, validated against the manifest
    assert net.feature_dim == 478 * 3 and net.z_dim == m.z_dim and net.window == 8 and norm.dim == 478 * 3
    assert set(pkg.extra_tensors) >= {"anim.norm.mean", "anim.norm.std", "anim.net.head.weight"}


def test_decoded_texture_looks_like_the_neutral_face(package_dir):
    """z = 0 decodes near the average face: compare with the glb's embedded neutral texture."""
    import cv2

    pkg = AvatarPackage.load(package_dir)
    gltf = pygltflib.GLTF2().load_binary(str(package_dir / MESH))
    view = gltf.bufferViews[gltf.images[0].bufferView]
    png = gltf.binary_blob()[view.byteOffset:view.byteOffset + view.byteLength]
    neutral = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1].astype(np.float32)
    tex, _ = pkg.decoder(torch.zeros(pkg.manifest.z_dim))
    diff = np.abs(tex[..., :3].numpy().astype(np.float32) - neutral)
    s = pkg.manifest.texture_size
    face = diff[int(0.2 * s):int(0.6 * s), int(0.3 * s):int(0.7 * s)]  # centre of the face region
    assert face.mean() < 25, f"decoded face differs from the neutral by {face.mean():.1f} levels"


def test_glb_opens_in_pygltflib_with_matching_morph_targets(package_dir):
    pkg = AvatarPackage.load(package_dir)
    gltf = pygltflib.GLTF2().load_binary(str(package_dir / MESH))
    assert gltf.asset.version == "2.0"
    prim = gltf.meshes[0].primitives[0]
    # The avatar's own blendshapes first (what the runtime drives), then its ARKit-named shapes.
    assert gltf.meshes[0].extras["runtimeTargets"] == pkg.manifest.n_blendshapes
    assert len(prim.targets) == len(gltf.meshes[0].extras["targetNames"]) > pkg.manifest.n_blendshapes
    assert gltf.accessors[prim.attributes.POSITION].count == len(pkg.mesh.positions)
    assert gltf.accessors[prim.attributes.TEXCOORD_0].count == len(pkg.mesh.positions)
    assert gltf.accessors[prim.indices].count == pkg.mesh.indices.size
    assert gltf.materials and gltf.images  # the neutral texture is embedded for Blender/three.js


def test_manifest_records_provenance_and_metrics(package_dir):
    raw = json.loads((package_dir / MANIFEST).read_text())
    src = raw["provenance"]["sources"][0]
    assert src["sha256"] == "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f"
    assert "build-avatar" in raw["provenance"]["build_command"]
    assert "torch" in raw["provenance"]["libraries"]
    for key in ("holdout_psnr_db", "holdout_ssim", "holdout_reprojection_px", "decode_ms_cpu_1thread"):
        assert isinstance(raw["metrics"][key], (int, float))
    assert raw["metrics"]["holdout_psnr_db"] > 18
    assert raw["metrics"]["holdout_reprojection_px"] < 5
    assert raw["build"]["rejected"]["hand_over_face"] > 0


def test_avatar_info_json(package_dir, capsys):
    assert cli.main(["avatar", "info", str(package_dir), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["valid"] is True and info["decoder_parameters"] > 0 and info["decode_ms_this_machine"] > 0
    a = info["animation"]
    assert (a["arch"], a["window"], a["layers"], a["hidden"]) == ("lstm", 8, 1, 128)
    assert a["parameters"] > 10_000 and set(a["holdout"]) >= {"z_r2", "weights_r2", "z_corr"}
    assert cli.main(["avatar", "info", str(package_dir)]) == 0
    text = capsys.readouterr().out
    assert "animation network: lstm T=8, 1 layer(s) × 128" in text and "held-out z R²" in text


def _expect(path: Path, *words: str) -> None:
    with pytest.raises(AvatarPackageError) as err:
        AvatarPackage.load(path)
    msg = str(err.value)
    for w in words:
        assert w in msg, msg


def test_tampered_weights_are_named(copy):
    data = bytearray((copy / WEIGHTS).read_bytes())
    data[-10] ^= 0xFF
    (copy / WEIGHTS).write_bytes(bytes(data))
    _expect(copy, WEIGHTS, "sha256")


def test_truncated_weights_are_named(copy):
    data = (copy / WEIGHTS).read_bytes()
    (copy / WEIGHTS).write_bytes(data[: len(data) // 2])
    _expect(copy, WEIGHTS, "truncated")


def test_truncated_mesh_is_named(copy):
    data = (copy / MESH).read_bytes()
    (copy / MESH).write_bytes(data[:100])
    _expect(copy, MESH, "truncated")


def test_missing_preview_is_named(copy):
    (copy / PREVIEW).unlink()
    _expect(copy, PREVIEW, "missing")


def test_missing_manifest(copy):
    (copy / MANIFEST).unlink()
    _expect(copy, MANIFEST, "missing")


def test_wrong_schema_version(copy):
    raw = json.loads((copy / MANIFEST).read_text())
    raw["schema_version"] = 99
    (copy / MANIFEST).write_text(json.dumps(raw))
    _expect(copy, "schema_version 99", "not supported")


def test_schema_violation_names_the_field(copy):
    raw = json.loads((copy / MANIFEST).read_text())
    del raw["head_model"]["z_dim"]
    (copy / MANIFEST).write_text(json.dumps(raw))
    _expect(copy, "head_model", "z_dim")


def test_mismatched_network_config_names_the_tensor(copy):
    raw = json.loads((copy / MANIFEST).read_text())
    raw["head_model"]["vae"]["hidden"] += 8  # files still hash fine; their shapes no longer fit
    (copy / MANIFEST).write_text(json.dumps(raw))
    _expect(copy, WEIGHTS, "shape")


def test_mismatched_blendshape_count(copy):
    raw = json.loads((copy / MANIFEST).read_text())
    raw["head_model"]["n_blendshapes"] += 1
    raw["head_model"]["vae"]["n_weights"] += 1
    (copy / MANIFEST).write_text(json.dumps(raw))
    _expect(copy, WEIGHTS, "shape")


def test_corrupt_manifest_json(copy):
    (copy / MANIFEST).write_text("{ not json")
    _expect(copy, MANIFEST, "JSON")


def test_not_a_directory(tmp_path):
    _expect(tmp_path / "nothing-here", "no such avatar package")


def test_info_on_damaged_package_exits_2_with_reason(copy, capsys):
    (copy / WEIGHTS).write_bytes(b"\0" * 10)
    assert cli.main(["avatar", "info", str(copy)]) == 2
    assert "truncated" in capsys.readouterr().err


class _Interrupted(Exception):
    pass


def _rewrite(pkg: AvatarPackage, out: Path, **kw) -> None:
    import cv2

    raw = dict(pkg.manifest.raw)
    tex = np.zeros((8, 8, 3), np.uint8)
    ok, png = cv2.imencode(".png", tex)
    write_package(out, raw, pkg.vae_decoder, pkg.mesh, tex, png.tobytes(), extra_tensors=pkg.extra_tensors, **kw)


def test_interrupted_export_leaves_no_package(package_dir, tmp_path):
    pkg = AvatarPackage.load(package_dir)
    out = tmp_path / "new"

    def boom(_tmp: Path) -> None:
        raise _Interrupted()

    with pytest.raises(_Interrupted):
        _rewrite(pkg, out, before_commit=boom)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # the temporary directory is gone too
    _expect(out, "no such avatar package")


def test_interrupted_export_keeps_the_previous_package(package_dir, tmp_path):
    pkg = AvatarPackage.load(package_dir)
    out = tmp_path / "pkg"
    shutil.copytree(package_dir, out)

    def boom(_tmp: Path) -> None:
        raise _Interrupted()

    with pytest.raises(_Interrupted):
        _rewrite(pkg, out, before_commit=boom)
    AvatarPackage.load(out)  # still the complete old package


def test_export_round_trip_replaces_atomically(package_dir, tmp_path):
    pkg = AvatarPackage.load(package_dir)
    out = tmp_path / "pkg"
    shutil.copytree(package_dir, out)
    _rewrite(pkg, out)
    again = AvatarPackage.load(out)
    assert again.manifest.z_dim == pkg.manifest.z_dim
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]


def test_export_killed_mid_write_leaves_no_package_and_is_cleaned_up(package_dir, tmp_path):
    """SIGKILL during the export (no Python cleanup runs): the target does not exist, the hidden
    temporary directory is ignored by loading and removed by the next export."""
    import signal
    import subprocess
    import sys

    out = tmp_path / "pkg"
    script = (
        "import sys, time, cv2, numpy as np\n"
        "from inference.avatar_package import AvatarPackage, write_package\n"
        f"pkg = AvatarPackage.load({str(package_dir)!r})\n"
        "ok, png = cv2.imencode('.png', np.zeros((8, 8, 3), np.uint8))\n"
        "def hang(tmp):\n"
        "    print('ready', flush=True); time.sleep(60)\n"
        f"write_package(__import__('pathlib').Path({str(out)!r}), pkg.manifest.raw, pkg.vae_decoder, pkg.mesh,\n"
        "              np.zeros((8, 8, 3), np.uint8), png.tobytes(), before_commit=hang,\n"
        "              extra_tensors=pkg.extra_tensors)\n"
    )
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=repo, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert not out.exists() and len(leftovers) == 1 and leftovers[0].startswith(".pkg.tmp-")
    _expect(out, "no such avatar package")
    _rewrite(AvatarPackage.load(package_dir), out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]
    AvatarPackage.load(out)


def test_animation_tensors_travel_only_when_declared(package_dir, tmp_path):
    pkg = AvatarPackage.load(package_dir)
    raw = json.loads((package_dir / MANIFEST).read_text())
    import cv2

    ok, png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    tex = np.zeros((8, 8, 3), np.uint8)
    anim = dict(pkg.extra_tensors)
    head_only = dict(raw, animation={"included": False})
    with pytest.raises(ValueError, match="animation.included"):
        write_package(tmp_path / "a", head_only, pkg.vae_decoder, pkg.mesh, tex, png.tobytes(), extra_tensors=anim)
    # The writer refuses tensors that do not fit the declared network (never writes what it cannot load).
    bad = dict(anim, **{"anim.net.head.weight": anim["anim.net.head.weight"][:, :-1]})
    with pytest.raises(ValueError, match="anim.net.head.weight"):
        write_package(tmp_path / "b", raw, pkg.vae_decoder, pkg.mesh, tex, png.tobytes(), extra_tensors=bad)
    assert not (tmp_path / "b").exists()
    write_package(tmp_path / "a", raw, pkg.vae_decoder, pkg.mesh, tex, png.tobytes(), extra_tensors=anim)
    again = AvatarPackage.load(tmp_path / "a")
    assert again.extra_tensors.keys() == anim.keys()
    assert all(torch.equal(again.extra_tensors[k], v) for k, v in anim.items())
    # The same weights file under a manifest without an animation network: undeclared tensors.
    raw2 = json.loads((tmp_path / "a" / MANIFEST).read_text())
    raw2["animation"] = {"included": False}
    (tmp_path / "a" / MANIFEST).write_text(json.dumps(raw2))
    _expect(tmp_path / "a", WEIGHTS, "does not declare")


def _rewrite_weights(pkg_dir: Path, mutate) -> None:
    """Changes weights.safetensors and re-records its size and sha256, so only the animation
    network's own validation can catch the change (not the tamper check)."""
    from safetensors.torch import load_file, save_file

    from core.atomic_files import sha256_file

    tensors = load_file(str(pkg_dir / WEIGHTS))
    mutate(tensors)
    save_file(tensors, str(pkg_dir / WEIGHTS))
    raw = json.loads((pkg_dir / MANIFEST).read_text())
    raw["files"][WEIGHTS] = {"sha256": sha256_file(pkg_dir / WEIGHTS), "bytes": (pkg_dir / WEIGHTS).stat().st_size}
    (pkg_dir / MANIFEST).write_text(json.dumps(raw))


def test_missing_animation_tensor_is_named(copy):
    _rewrite_weights(copy, lambda t: t.pop("anim.net.head.weight"))
    _expect(copy, "animation", "missing", "head.weight")


def test_unexpected_animation_tensor_is_named(copy):
    _rewrite_weights(copy, lambda t: t.update({"anim.net.extra_layer": torch.zeros(3)}))
    _expect(copy, "animation", "unexpected", "extra_layer")
    _rewrite_weights(copy, lambda t: (t.pop("anim.net.extra_layer"), t.update({"anim.spare": torch.zeros(2)})))
    _expect(copy, "animation", "unexpected", "anim.spare")


def test_misshaped_animation_tensors_are_named(copy):
    _rewrite_weights(copy, lambda t: t.update({"anim.norm.std": t["anim.norm.std"][:-3].clone()}))
    _expect(copy, "animation", "anim.norm.std", "shape")


def test_non_finite_animation_weights_are_named(copy):
    def poison(t):
        t["anim.net.head.bias"] = t["anim.net.head.bias"].clone()
        t["anim.net.head.bias"][0] = float("nan")
    _rewrite_weights(copy, poison)
    _expect(copy, "animation", "head.bias", "non-finite")


def test_animation_block_mismatching_its_tensors_is_named(copy):
    raw = json.loads((copy / MANIFEST).read_text())
    raw["animation"]["config"]["hidden"] += 8  # the files still hash fine; the LSTM no longer fits
    (copy / MANIFEST).write_text(json.dumps(raw))
    _expect(copy, "animation", "shape")


def test_animation_block_for_another_latent_size_is_refused(copy):
    raw = json.loads((copy / MANIFEST).read_text())
    raw["animation"]["z_dim"] += 1
    (copy / MANIFEST).write_text(json.dumps(raw))
    _expect(copy, "animation", "z of size")


def test_incomplete_animation_block_is_a_schema_violation(copy):
    raw = json.loads((copy / MANIFEST).read_text())
    del raw["animation"]["config"]
    (copy / MANIFEST).write_text(json.dumps(raw))
    _expect(copy, "schema violation", "animation", "config")


# ---- what the package carries (schema 2): the runtime's networks, said in manifest and header

def test_package_carries_the_decoder_and_says_what_the_weights_hold(package_dir, tmp_path_factory):
    from safetensors.torch import load_file

    from inference.avatar_package import SCHEMA_VERSION, manifest_digest, read_weights_header

    raw = json.loads((package_dir / MANIFEST).read_text())
    assert raw["schema_version"] == SCHEMA_VERSION == 2
    tensors = load_file(str(package_dir / WEIGHTS))
    prefixes = {k.split(".", 1)[0] + "." for k in tensors}
    # The quick build of the woman carries the screen-space refinement (builder 8) beside the networks.
    expected = {"decoder.", "anim."} | ({"refine."} if raw["refinement"]["included"] else set()) \
        | ({"alpha."} if raw["alpha"]["included"] else set())  # and its learned alpha (builder 9)
    assert prefixes == expected == set(raw["weights"]["holds"])
    assert set(raw["weights"]["not_included"]) == {"encoder."}
    assert "vae/vae.safetensors" in raw["weights"]["not_included"]["encoder."]
    # The encoder stays where the manifest says: the build's work directory holds the whole VAE.
    work = load_file(str(tmp_path_factory.getbasetemp() / "quick-avatar.work" / "vae" / "vae.safetensors"))
    assert any(k.startswith("encoder.") for k in work)
    assert all(torch.equal(work[k], v) for k, v in tensors.items() if k.startswith("decoder."))
    header = read_weights_header(package_dir / WEIGHTS)
    assert header["schema"] == "headcast.avatar" and header["schema_version"] == "2"
    assert header["manifest_sha256"] == manifest_digest(raw)
    assert json.loads(header["holds"]) == raw["weights"]["holds"]


def test_manifest_edited_after_export_is_named(copy):
    raw = json.loads((copy / MANIFEST).read_text())
    raw["metrics"]["holdout_psnr_db"] = 99.0  # schema-valid, files still hash fine: only the header knows
    (copy / MANIFEST).write_text(json.dumps(raw))
    _expect(copy, MANIFEST, "changed after export", WEIGHTS)


def test_schema_1_package_with_the_encoder_still_loads(copy, package_dir, tmp_path_factory):
    """A package written before schema 2 (the whole VAE in its weights, no ``weights`` block, no
    header metadata) loads: the encoder is validated and dropped; the decoder is the same."""
    from safetensors.torch import load_file, save_file

    from core.atomic_files import sha256_file

    vae = load_file(str(tmp_path_factory.getbasetemp() / "quick-avatar.work" / "vae" / "vae.safetensors"))
    tensors = load_file(str(copy / WEIGHTS))
    tensors.update({k: v for k, v in vae.items() if k.startswith("encoder.")})
    save_file(tensors, str(copy / WEIGHTS), metadata={"format": "headcast-avatar"})
    raw = json.loads((copy / MANIFEST).read_text())
    raw["schema_version"] = 1
    del raw["weights"]
    raw["files"][WEIGHTS] = {"sha256": sha256_file(copy / WEIGHTS), "bytes": (copy / WEIGHTS).stat().st_size}
    (copy / MANIFEST).write_text(json.dumps(raw))
    old, new = AvatarPackage.load(copy), AvatarPackage.load(package_dir)
    assert old.manifest.schema_version == 1 and "encoder." in old.manifest.weights_holds
    z = torch.randn(3, new.manifest.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for a, b in zip(old.vae_decoder(z), new.vae_decoder(z)):
            assert torch.equal(a, b)
    # ... while a schema-2 manifest over weights with the encoder is refused, naming why.
    raw["schema_version"] = 2
    raw["weights"] = json.loads((package_dir / MANIFEST).read_text())["weights"]
    (copy / MANIFEST).write_text(json.dumps(raw))
    _expect(copy, WEIGHTS, "unexpected tensors", "encoder")


def test_idle_face_is_the_engines_idle_face(package_dir):
    """One idle face for both render paths: the decoded neutral_z of the package's animation
    network, which is exactly what the streaming engine shows for a slot with no stream yet."""
    from inference.engine.engine import EngineConfig, StreamingEngine
    from inference.engine.package_loader import avatar_model_from_package, idle_face, idle_z

    pkg = AvatarPackage.load(package_dir)
    texture, weights = idle_face(pkg)
    s, k = pkg.manifest.texture_size, pkg.manifest.n_blendshapes
    assert texture.dtype == np.uint8 and texture.shape == (s, s, 4) and weights.shape == (k,)
    assert torch.equal(idle_z(pkg), pkg.animation[0].neutral_z)
    model = avatar_model_from_package(pkg)
    assert model.decoder is pkg.engine_decoder  # the VAE decoder, with the learned alpha when it has one
    state = StreamingEngine({"s": model}, EngineConfig(device="cpu")).step({}, now_ns=10**12)["s"]
    assert state.status == "waiting"
    assert np.abs(state.texture.astype(int) - texture.astype(int)).max() <= 1
    np.testing.assert_allclose(state.weights, weights, atol=1e-5)
    # The network's rest face is not the VAE prior's mean (z = 0): which one a path shows matters.
    zero_tex, _ = pkg.decoder(torch.zeros(pkg.manifest.z_dim))
    assert np.abs(zero_tex.numpy().astype(int) - texture.astype(int)).mean() > 0.5


def test_learned_alpha_travels_only_whole_and_well_formed(package_dir, tmp_path):
    """The whole head's alpha (builder 9): a package without it (older builders) loads opaque; the
    writer refuses a declared alpha that is missing or of the wrong shape, naming it."""
    import cv2

    from inference.engine.package_loader import idle_face
    from inference.head_model.alpha_atlas import ALPHA_TENSOR

    pkg = AvatarPackage.load(package_dir)
    raw = json.loads((package_dir / MANIFEST).read_text())
    assert raw["alpha"]["included"] and pkg.alpha is not None and (pkg.alpha < 255).any()
    ok, png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    tex = np.zeros((8, 8, 3), np.uint8)
    without = {k: v for k, v in pkg.extra_tensors.items() if k != ALPHA_TENSOR}
    old = dict(raw, alpha={"included": False})
    write_package(tmp_path / "old", old, pkg.vae_decoder, pkg.mesh, tex, png.tobytes(), extra_tensors=without)
    opaque = AvatarPackage.load(tmp_path / "old")
    assert opaque.alpha is None and (idle_face(opaque)[0][..., 3] == 255).all()
    with pytest.raises(ValueError, match="alpha.atlas is missing"):
        write_package(tmp_path / "a", raw, pkg.vae_decoder, pkg.mesh, tex, png.tobytes(), extra_tensors=without)
    bad = dict(without, **{ALPHA_TENSOR: pkg.extra_tensors[ALPHA_TENSOR][:-1]})
    with pytest.raises(ValueError, match="alpha.atlas"):
        write_package(tmp_path / "b", raw, pkg.vae_decoder, pkg.mesh, tex, png.tobytes(), extra_tensors=bad)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
