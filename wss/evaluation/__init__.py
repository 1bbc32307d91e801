"""A trained model on real instances: the ``evaluate`` and ``export`` stages' work and ``predict``.

:mod:`~wss.evaluation.evaluate` scores the model and its teacher on val at full resolution,
:mod:`~wss.evaluation.mask_ap` is COCO mask AP, :mod:`~wss.evaluation.export` writes the masks
out and :mod:`~wss.evaluation.inference` segments a user's own image and boxes.  The top of the
dependency order: it may import every other package, and none imports it.
"""
