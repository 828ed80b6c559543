"""Head-model parts on real data from the quick build's work directory (real tracker, real clip)
plus exact checks of the small numerical pieces."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from _avatar_quick import WOMAN, quick_build
from inference.head_model.blendshapes import BasisConfig, fit_blendshapes
from inference.head_model.head_mesh import HeadMesh
from inference.head_model.raster import rasterize
from inference.head_model.texture_unwrap import push_pull_fill, unwrap_frame
from inference.head_model.train_vae import TrainConfig, TrainData, train_vae
from inference.head_model.uv_atlas import texel_table
from inference.head_model.vae import RuntimeDecoder, VaeConfig
from inference.head_model.video_io import iter_frames
from tools.samples import sample_path


@pytest.fixture(scope="session")
def work(tmp_path_factory) -> Path:
    base = tmp_path_factory.getbasetemp()
    quick_build(base)
    return base / "quick-avatar.work"


@pytest.fixture(scope="session")
def mesh(work) -> HeadMesh:
    m = load_file(str(work / "mesh" / "mesh.safetensors"))
    return HeadMesh(m["positions"], m["uvs"], m["faces"], m["face_map"], m["neutral_face"],
                    int(m["n_face_triangles"][0]))


def test_face_is_the_full_facemesh_triangulation(mesh):
    assert mesh.n_face_triangles == 898  # the canonical FaceMesh count, eyes and mouth closed over


def _weld(mesh: HeadMesh) -> np.ndarray:
    """Faces with UV-seam duplicates merged by position."""
    _, inverse = np.unique(np.round(mesh.positions, 5), axis=0, return_inverse=True)
    return inverse.reshape(-1)[mesh.faces]


def test_head_is_closed_and_outward(mesh):
    faces = _weld(mesh)
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])]
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert (counts == 2).all(), f"{(counts != 2).sum()} edges are not shared by exactly two triangles"
    v = mesh.positions[mesh.faces]
    volume = np.einsum("ij,ij->i", v[:, 0], np.cross(v[:, 1], v[:, 2])).sum() / 6
    assert volume > 0, "triangles wind inwards"
    # Whole head: the back reaches well behind the face, the neck below the chin.
    assert mesh.positions[:, 2].min() < mesh.neutral_face[:, 2].min() - 1.0
    assert mesh.positions[:, 1].min() < mesh.neutral_face[:, 1].min() - 0.3


def test_deform_is_identity_at_neutral_and_moves_the_jaw(mesh):
    assert np.allclose(mesh.deform(mesh.neutral_face), mesh.positions, atol=1e-6)
    face = mesh.neutral_face.copy()
    face[152, 1] -= 0.5  # chin down
    moved = mesh.deform(face)
    assert np.isclose(moved[152, 1], mesh.positions[152, 1] - 0.5)


def test_uv_layout_has_no_overlaps_and_a_dense_face(mesh):
    assert (mesh.uvs >= 0).all() and (mesh.uvs <= 1).all()
    uv = mesh.uvs[mesh.faces]
    area = 0.5 * np.abs((uv[:, 1, 0] - uv[:, 0, 0]) * (uv[:, 2, 1] - uv[:, 0, 1])
                        - (uv[:, 1, 1] - uv[:, 0, 1]) * (uv[:, 2, 0] - uv[:, 0, 0]))
    table = texel_table(mesh.uvs, mesh.faces, 256, mesh.n_face_triangles)
    # Sum of triangle areas equals the covered area when no two triangles overlap.
    assert abs(area.sum() - table.covered.mean()) < 0.02
    # The face keeps the densest block of the atlas. With the whole head (builder 8) the hair and the
    # back take a third of the rows (docs/AVATAR.md), so the face holds 0.33 of the texels (0.4+ before).
    face = table.face_region.mean()
    assert face > 0.3 and face > 0.5 * table.covered.mean()


def test_rasterizer_barycentrics_are_exact():
    xy = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    r = rasterize(xy, np.array([[0, 1, 2]]), 8, 8)
    assert r.tri_id[0, 0] == 0 and r.tri_id[7, 7] == -1
    b = r.bary[1, 2]  # pixel centre (2.5, 1.5)
    assert np.allclose(b @ xy, [2.5, 1.5], atol=1e-5)


def test_push_pull_keeps_valid_texels_and_fills_holes():
    img = np.zeros((32, 32, 3), np.float32)
    img[:, :16] = 100
    img[:, 16:] = 200
    mask = np.ones((32, 32), bool)
    mask[10:20, 10:20] = False
    out = push_pull_fill(img, mask)
    assert np.array_equal(out[mask], img[mask])
    assert (out[~mask] >= 100).all() and (out[~mask] <= 200).all()


def test_blendshapes_round_trip():
    rng = np.random.default_rng(0)
    modes = rng.normal(size=(3, 468, 3))
    disp = np.einsum("nk,kpc->npc", rng.normal(size=(200, 3)), modes).astype(np.float32)
    bs = fit_blendshapes(disp, BasisConfig(explained_variance=0.999, k_min=1))
    assert bs.k == 3
    w = bs.weights(disp)
    assert np.allclose(bs.displacement(w), disp, atol=1e-3)
    assert np.allclose(bs.displacement(np.zeros((1, 3), np.float32)), 0)
    assert np.allclose(w.std(0), 1.0, atol=0.15)  # unit-variance weights


def test_selection_rejects_the_hand_over_mouth_passage(work):
    sel = load_file(str(work / "select" / "selection.safetensors"))
    track = load_file(str(work / "track" / "video0.safetensors"))
    frames = track["frame_index"]
    keep = sel["keep"].astype(bool)
    hand_passage = (frames >= 90) & (frames <= 200)  # hand over eyes / mouth in the woman clip
    laughing = (frames >= 300) & (frames <= 340)
    assert keep[hand_passage].mean() < 0.1
    assert keep[laughing].mean() > 0.9


def test_unwrap_is_visibility_aware(work, mesh):
    sel = load_file(str(work / "select" / "selection.safetensors"))
    track = load_file(str(work / "track" / "video0.safetensors"))
    g = int(np.flatnonzero(sel["keep"])[0])
    frame = next(f for i, f in enumerate(iter_frames(sample_path(WOMAN))) if i == int(track["frame_index"][g]))
    table = texel_table(mesh.uvs, mesh.faces, 64, mesh.n_face_triangles)
    tex, valid = unwrap_frame(frame, mesh.deform(sel["canonical"][g]), sel["rotation"][g], sel["translation"][g],
                              float(sel["scale"][g]), mesh, table)
    assert valid[table.face_region].mean() > 0.6  # most of the face is seen
    assert not valid[-3:].any()  # the back-most rings (bottom atlas rows) face away from the camera
    assert not valid[~table.covered].any()
    assert tex[valid].mean() > 30  # real image content, not black


def _tiny_data(n=24, s=16, k=3):
    g = torch.Generator().manual_seed(0)
    tex = (torch.rand(n, 3, s, s, generator=g) * 255).to(torch.uint8)
    return TrainData(tex, torch.ones(n, s, s, dtype=torch.bool), torch.randn(n, k, generator=g), np.arange(n))


def test_vae_training_resumes_exactly(tmp_path):
    """A run stopped at a checkpoint and resumed ends with the same weights as an unbroken run."""
    cfg = VaeConfig(texture_size=16, n_weights=3, z_dim=4, hidden=16, basis_size=8, n_basis=6)
    tcfg = TrainConfig(steps=6, batch=4, adversarial=True, adv_start=0.3, checkpoint_seconds=0.0)
    data = _tiny_data()
    full, _ = train_vae(data, cfg, tcfg, tmp_path / "a.safetensors")

    class Killed(Exception):
        pass

    def kill_at_3(step, _stats):
        if step == 3:
            raise Killed()

    with pytest.raises(Killed):
        train_vae(data, cfg, tcfg, tmp_path / "b.safetensors", on_step=kill_at_3)
    resumed, hist = train_vae(data, cfg, tcfg, tmp_path / "b.safetensors")
    assert hist["resumed_from_step"] == 3
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-5), k


def test_runtime_decoder_layout():
    cfg = VaeConfig(texture_size=32, n_weights=5, z_dim=8, hidden=16, basis_size=16, n_basis=4)
    from inference.head_model.vae import HeadVae

    dec = RuntimeDecoder(HeadVae(cfg).decoder)
    tex, w = dec(torch.zeros(8))
    assert tex.shape == (32, 32, 4) and tex.dtype == torch.uint8 and tex.is_contiguous()
    assert w.shape == (5,)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_vae_trains_and_decodes_on_cuda(tmp_path):
    cfg = VaeConfig(texture_size=16, n_weights=3, z_dim=4, hidden=16, basis_size=8, n_basis=6)
    vae, _ = train_vae(_tiny_data(), cfg, TrainConfig(steps=4, batch=4), tmp_path / "c.safetensors", device="cuda")
    dec = RuntimeDecoder(vae.decoder.cuda())
    tex, w = dec(torch.zeros(4, device="cuda"))
    assert tex.device.type == "cuda" and tex.dtype == torch.uint8 and tex.shape == (16, 16, 4)
