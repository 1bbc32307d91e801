import numpy as np
import pytest

from stages import surgery as stage
from tests.conftest import write_params
from wss.net import surgery
from wss.net.model import CONV_LAYERS, vgg16_trunk


@pytest.fixture(scope="module")
def random_weights():
    return surgery.source_weights("random", seed=5)


def test_widening_copies_colour_filters_and_bias_exactly(random_weights):
    wide = surgery.widen_first_conv(random_weights, 0.5, np.random.default_rng(0))
    k3, b3 = random_weights["block1_conv1"]
    k4, b4 = wide["block1_conv1"]
    assert k3.shape == (3, 3, 3, 64) and k4.shape == (3, 3, 4, 64)
    np.testing.assert_array_equal(k4[:, :, :3], k3)
    np.testing.assert_array_equal(b4, b3)
    assert 0.4 < k4[:, :, 3].std() < 0.6
    for name in CONV_LAYERS[1:]:
        assert wide[name] is random_weights[name]


def test_zero_box_channel_gives_the_three_channel_activations(random_weights):
    """The proof of the surgery: the new channel is invisible while it is zero."""
    trunk3 = surgery.build_trunk(random_weights)
    trunk4 = surgery.build_trunk(surgery.widen_first_conv(random_weights, 0.1, np.random.default_rng(1)))
    rgb = np.random.default_rng(2).normal(0, 50, (2, 32, 32, 3)).astype(np.float32)
    x4 = np.concatenate([rgb, np.zeros((2, 32, 32, 1), np.float32)], axis=-1)
    for a, b in zip(trunk3(rgb), trunk4(x4)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-4)
    box = x4.copy()
    box[..., 3] = 127.5
    assert not np.allclose(trunk4(box)[0].numpy(), trunk3(rgb)[0].numpy(), atol=1e-3)


def test_hed_trunk_is_pretrained_and_offline(random_weights):
    hed = surgery.source_weights("hed", seed=0)
    assert set(hed) == set(CONV_LAYERS)
    assert hed["block1_conv1"][0].shape == (3, 3, 3, 64)
    assert not np.allclose(hed["block3_conv1"][0], random_weights["block3_conv1"][0])


def test_imagenet_offline_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(surgery, "keras_cache", lambda: tmp_path / "models")
    with pytest.raises(surgery.WeightsError) as err:
        surgery.source_weights("imagenet", seed=0)
    msg = str(err.value)
    assert str(tmp_path / "models" / surgery.IMAGENET_FILE) in msg and surgery.IMAGENET_URL in msg


def test_imagenet_from_cache(tmp_path, monkeypatch, random_weights):
    import keras

    vgg = keras.applications.VGG16(weights=None, include_top=False)
    for name in CONV_LAYERS:
        vgg.get_layer(name).set_weights(random_weights[name])
    (tmp_path / "models").mkdir()
    # The published file is in Keras' legacy HDF5 layout (layer names -> weights), written the same way here.
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(tmp_path / "models" / surgery.IMAGENET_FILE, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, vgg)
    monkeypatch.setattr(surgery, "keras_cache", lambda: tmp_path / "models")
    got = surgery.source_weights("imagenet", seed=0)
    np.testing.assert_array_equal(got["block5_conv3"][0], random_weights["block5_conv3"][0])


def test_bad_local_file(tmp_path):
    bad = tmp_path / "w.h5"
    bad.write_bytes(b"nope")
    with pytest.raises(surgery.WeightsError, match="w.h5"):
        surgery.source_weights(str(bad), seed=0)
    with pytest.raises(surgery.WeightsError, match="no such weights file"):
        surgery.source_weights(str(tmp_path / "missing.h5"), seed=0)


def test_stage_writes_loadable_weights(tmp_path):
    params = tmp_path / "params.yaml"
    write_params(params, base={"seed": 3}, surgery={"init": "random"})
    out = tmp_path / "models" / "vgg16_4ch.weights.h5"
    stage.main(["--params", str(params), "--out", str(out)])
    trunk = vgg16_trunk(4)
    trunk.load_weights(str(out))
    assert trunk.get_layer("block1_conv1").get_weights()[0].shape == (3, 3, 4, 64)
