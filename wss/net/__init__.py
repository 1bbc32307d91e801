"""The network and its training: the ``surgery`` and ``train`` stages' work, and the only TensorFlow importers.

:mod:`~wss.net.model` (the 4-channel VGG16 trunk and the OSVOS head), :mod:`~wss.net.surgery`
(3-channel weights to 4), :mod:`~wss.net.inputs` (shards to ``tf.data`` batches, one label
source each), :mod:`~wss.net.training` (the resumable, fingerprinted training loop, on one
device or several) and :mod:`~wss.net.selftrain` (relabelling with a trained model).
Depends on :mod:`wss.core`, :mod:`wss.data` and :mod:`wss.labels` (the shards it reads).
"""
