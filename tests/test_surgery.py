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


def imagenet_like(path, random_weights) -> str:
    """A VGG16 (no top) weights file in the layout of Keras' published ImageNet file (its legacy
    HDF5: layer names -> weights) holding ``random_weights``; returns its MD5."""
    import hashlib

    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    vgg = keras.applications.VGG16(weights=None, include_top=False)
    for name in CONV_LAYERS:
        vgg.get_layer(name).set_weights(random_weights[name])
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, vgg)
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving ``tmp_path / "www"``; yields its base URL."""
    import functools
    import http.server
    import threading

    (tmp_path / "www").mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_imagenet_downloads_through_keras_with_the_published_hash(tmp_path, monkeypatch, server, random_weights):
    md5 = imagenet_like(tmp_path / "www" / surgery.IMAGENET_FILE, random_weights)
    monkeypatch.setattr(surgery, "keras_cache", lambda: tmp_path / "home/models")
    monkeypatch.setattr(surgery, "IMAGENET_URL", f"{server}/{surgery.IMAGENET_FILE}")
    monkeypatch.setattr(surgery, "IMAGENET_HASH", md5)
    got = surgery.source_weights("imagenet", seed=0)
    np.testing.assert_array_equal(got["block5_conv3"][0], random_weights["block5_conv3"][0])
    cached = tmp_path / "home/models" / surgery.IMAGENET_FILE
    assert cached.read_bytes() == (tmp_path / "www" / surgery.IMAGENET_FILE).read_bytes()
    # Now cached: no server needed.
    (tmp_path / "www" / surgery.IMAGENET_FILE).unlink()
    np.testing.assert_array_equal(
        surgery.source_weights("imagenet", seed=0)["block1_conv1"][1], random_weights["block1_conv1"][1]
    )


def test_imagenet_with_a_wrong_hash_fails_in_one_line_and_keeps_nothing(tmp_path, monkeypatch, server, random_weights):
    imagenet_like(tmp_path / "www" / surgery.IMAGENET_FILE, random_weights)
    monkeypatch.setattr(surgery, "keras_cache", lambda: tmp_path / "home/models")
    monkeypatch.setattr(surgery, "IMAGENET_URL", f"{server}/{surgery.IMAGENET_FILE}")
    monkeypatch.setattr(surgery, "IMAGENET_HASH", "0" * 32)
    with pytest.raises(surgery.WeightsError) as err:
        surgery.source_weights("imagenet", seed=0)
    msg = str(err.value)
    assert "\n" not in msg and "not the published one" in msg
    assert str(tmp_path / "home/models" / surgery.IMAGENET_FILE) in msg and "surgery.init=hed" in msg
    assert not (tmp_path / "home/models" / surgery.IMAGENET_FILE).exists()


def test_imagenet_offline_says_where_to_put_the_file_in_one_line(tmp_path, monkeypatch, server):
    monkeypatch.setattr(surgery, "keras_cache", lambda: tmp_path / "models")
    monkeypatch.setattr(surgery, "IMAGENET_URL", f"{server}/{surgery.IMAGENET_FILE}")  # 404
    with pytest.raises(surgery.WeightsError, match="cannot download .*404") as err:
        surgery.source_weights("imagenet", seed=0)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "models" / surgery.IMAGENET_FILE) in msg
    assert surgery.IMAGENET_HASH in msg
    # No server at all (a closed port), as on a machine that is offline.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(surgery, "IMAGENET_URL", f"http://127.0.0.1:{port}/{surgery.IMAGENET_FILE}")
    with pytest.raises(surgery.WeightsError, match="cannot download .*refused") as err:
        surgery.source_weights("imagenet", seed=0)
    assert "\n" not in str(err.value) and not (tmp_path / "models" / surgery.IMAGENET_FILE).exists()


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
