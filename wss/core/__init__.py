"""The conventions every other package builds on, with no knowledge of datasets, labels or networks.

:mod:`~wss.core.boxes` (the one box convention, ``(x1, y1, x2, y2)``, ``x2``/``y2`` exclusive),
:mod:`~wss.core.masks` (the one mask convention, crops and pastes, RLE), :mod:`~wss.core.metrics`
(IoU, boundary F, size buckets), :mod:`~wss.core.draw` (overlays), :mod:`~wss.core.atomic`
(outputs appear whole or not at all) and :mod:`~wss.core.provenance` (which code and which package
versions made a result: the code half of every fingerprint).  Nothing here imports another
``wss`` package.
"""
