"""DECA ResNet50 feature extractor (kind deca2048) with a randomly initialised DECA-layout checkpoint."""
from __future__ import annotations

import collections

import numpy as np
import pytest
import torch

from capture.sources import SourceConfig, open_source
from inference.features.deca import (
    DecaCheckpointError,
    DecaConfig,
    DecaExtractor,
    DecaFlameEncoder,
    crop_box,
    crop_face,
    load_flame_encoder,
    write_random_checkpoint,
)
from inference.features.face_tracker import FaceTracker
from streaming.protocol import FeatureKind
from tools import cli
from tools.samples import sample_path
from streaming.receiver import Receiver, ReceiverConfig

MAN = "single_face.mp4"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_random_checkpoint(tmp_path_factory.mktemp("deca") / "deca_model.tar", seed=1)


@pytest.fixture(scope="module")
def man_frames():
    """Frame 5 (neutral) and frame 40 (smiling) of the man, with landmarks."""
    out = {}
    with open_source(SourceConfig(str(sample_path(MAN)), max_frames=41)) as src, FaceTracker() as tr:
        for f in src:
            obs = tr.track(f.image)
            if f.index in (5, 40):
                out[f.index] = (f.image, obs.landmarks_px)
    return out


@pytest.fixture(scope="module")
def extractor(checkpoint):
    return DecaExtractor(DecaConfig(checkpoint))


@pytest.fixture(scope="module")
def checkpoint_data(checkpoint):
    return torch.load(checkpoint, weights_only=True)


def _edit(data, tmp_path, edit) -> str:
    data = {**data, "E_flame": dict(data["E_flame"])}
    edit(data["E_flame"])
    path = tmp_path / "edited.tar"
    torch.save(data, path)
    return path


def test_layout_matches_decas_resnet_encoder():
    sd = DecaFlameEncoder().state_dict()
    for key in ("encoder.conv1.weight", "encoder.bn1.running_mean", "encoder.layer1.0.conv1.weight",
                "encoder.layer1.0.downsample.0.weight", "encoder.layer1.0.downsample.1.running_var",
                "encoder.layer3.5.conv2.weight", "encoder.layer4.2.bn3.bias",
                "layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"):
        assert key in sd, key
    assert not any(k.startswith("encoder.fc") for k in sd)  # DECA's ResNet has no fc layer
    blocks = collections.Counter(k.split(".")[1] for k in sd if k.startswith("encoder.layer"))
    assert set(blocks) == {"layer1", "layer2", "layer3", "layer4"}
    n_encoder = sum(v.numel() for k, v in DecaFlameEncoder().named_parameters() if k.startswith("encoder."))
    assert n_encoder == 23_508_032  # torchvision ResNet50 (25,557,032) minus its fc (2,049,000)
    assert sd["layers.2.weight"].shape == (236, 1024)


def test_random_checkpoint_gives_2048_nonnegative_features(extractor, checkpoint_data, man_frames):
    ex = extractor
    saved = checkpoint_data["E_flame"]
    torch.testing.assert_close(ex.model.state_dict()["encoder.bn1.running_var"], saved["encoder.bn1.running_var"])
    assert not ex.model.training
    img, lm = man_frames[5]
    f1 = ex.extract(img, lm)
    assert f1.shape == (2048, 1) and f1.dtype == np.float32
    assert np.isfinite(f1).all() and (f1 >= 0).all() and f1.max() > 0
    np.testing.assert_array_equal(f1, ex.extract(img, lm))  # eval mode: deterministic
    f2 = ex.extract(*man_frames[40])
    assert not np.allclose(f1, f2)


def test_crop_is_square_224_around_the_landmarks_times_1_25(man_frames):
    img, lm = man_frames[5]
    cx, cy, side = crop_box(lm)
    w, h = np.ptp(lm[:, 0]), np.ptp(lm[:, 1])
    assert side == pytest.approx(1.25 * max(w, h))
    assert cx == pytest.approx((lm[:, 0].min() + lm[:, 0].max()) / 2)
    crop = crop_face(img, lm)
    assert crop.shape == (224, 224, 3) and crop.dtype == np.float32
    assert 0.0 <= crop.min() and crop.max() <= 1.0
    # RGB order: the centre pixel equals the source pixel with channels reversed
    src = img[int(round(cy)), int(round(cx))][::-1] / 255.0
    np.testing.assert_allclose(crop[112, 112], src, atol=0.08)


def test_bad_checkpoints_are_refused_with_names(checkpoint_data, tmp_path):
    def drop(sd):
        del sd["encoder.layer2.1.conv2.weight"]

    with pytest.raises(DecaCheckpointError, match=r"missing keys: encoder\.layer2\.1\.conv2\.weight"):
        load_flame_encoder(_edit(checkpoint_data, tmp_path, drop))

    def extra(sd):
        sd["encoder.fc.weight"] = torch.zeros(1000, 2048)

    with pytest.raises(DecaCheckpointError, match=r"unexpected keys: encoder\.fc\.weight"):
        load_flame_encoder(_edit(checkpoint_data, tmp_path, extra))

    def reshape(sd):
        sd["layers.2.weight"] = torch.zeros(100, 1024)

    with pytest.raises(DecaCheckpointError, match="wrong tensor shapes: layers.2.weight"):
        load_flame_encoder(_edit(checkpoint_data, tmp_path, reshape))

    def old_torch(sd):  # checkpoints from torch < 0.4.1 have no num_batches_tracked: still fine
        for k in [k for k in sd if k.endswith("num_batches_tracked")]:
            del sd[k]

    load_flame_encoder(_edit(checkpoint_data, tmp_path, old_torch))

    torch.save({"E_detail": {}}, tmp_path / "noflame.tar")
    with pytest.raises(DecaCheckpointError, match="no 'E_flame'"):
        load_flame_encoder(tmp_path / "noflame.tar")
    (tmp_path / "junk.tar").write_bytes(b"\x00" * 1000)
    with pytest.raises(DecaCheckpointError, match="not a loadable"):
        load_flame_encoder(tmp_path / "junk.tar")
    with pytest.raises(DecaCheckpointError, match="does not exist"):
        load_flame_encoder(tmp_path / "nope.tar")
    torch.save({"E_flame": collections.OrderedDict(), "evil": collections.Counter(a=1)}, tmp_path / "pickle.tar")
    with pytest.raises(DecaCheckpointError):
        load_flame_encoder(tmp_path / "pickle.tar")  # weights_only: arbitrary objects never unpickled


def test_capture_node_streams_deca2048(checkpoint, tmp_path, capsys):
    with Receiver(ReceiverConfig(endpoint="tcp://127.0.0.1:*", history=16)) as rx:
        rc = cli.main(["capture", "--source", str(sample_path(MAN)), "--connect", rx.bound_endpoint,
                       "--stream", "deca", "--frames", "3", "--feature", "deca2048",
                       "--deca-checkpoint", str(checkpoint)])
        assert rc == 0
        assert rx.wait_for(lambda r: "deca" in r.snapshot() and r.snapshot()["deca"].end_of_stream, 5)
        frames = rx.window("deca", 16)[:-1]
    assert len(frames) == 3
    for f in frames:
        assert f.kind is FeatureKind.DECA2048 and f.features.shape == (2048, 1)
        assert np.isfinite(f.features).all() and (f.features >= 0).all() and not f.face_lost
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a checkpoint")
    assert cli.main(["capture", "--source", str(sample_path(MAN)), "--connect", "tcp://127.0.0.1:9",
                     "--stream", "deca", "--frames", "1", "--feature", "deca2048", "--deca-checkpoint", str(bad)]) == 2
    assert "not a loadable torch checkpoint" in capsys.readouterr().err
    assert cli.main(["capture", "--source", str(sample_path(MAN)), "--connect", "tcp://127.0.0.1:9",
                     "--stream", "deca", "--feature", "deca2048"]) == 2
