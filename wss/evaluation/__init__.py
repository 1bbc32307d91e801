"""A trained model on real instances: the ``evaluate`` and ``export`` stages' work and ``predict``.

The :class:`~wss.evaluation.predictor.Predictor` holds a trained network and everything
prediction needs, and segments a user's own image and boxes or a dataset's instances;
:mod:`~wss.evaluation.evaluate` scores it and its teacher on val at full resolution,
:mod:`~wss.evaluation.mask_ap` is COCO mask AP, :mod:`~wss.evaluation.trust` judges how far the
fused masks may trust it, and :mod:`~wss.evaluation.export` writes the masks out.  The top of the
dependency order: it may import every other package, and none imports it.
"""
