"""Datasets in, one instance table out: the ``download`` and ``convert`` stages' work.

:mod:`~wss.data.readers` holds one reader per dataset format (SBD, COCO, YOLO, VOC), each turning
its files into the common :class:`~wss.data.dataset.Dataset`; :mod:`~wss.data.dataset` checks every
image and annotation and builds the table; :mod:`~wss.data.instances` reads the table back for
the later stages; :mod:`~wss.data.sample` generates the embedded synthetic dataset and
:mod:`~wss.data.fetch` downloads and unpacks archives.  Depends on :mod:`wss.core` only.
"""
