"""Boxes to training labels: the ``boundaries`` and ``labels`` stages' work.

How a label is made: :mod:`~wss.labels.grabcut` (GrabCut on a region around the box, with its
fallbacks) on top of :mod:`~wss.labels.graphcut` (GrabCut's graph cut written out, with the
pairwise term as an argument: colour for GrabCut, HED boundaries from
:mod:`~wss.labels.boundaries` for GrabCut+).  :mod:`~wss.labels.build` runs it over the instance
table into fingerprinted HDF5 shards (:mod:`~wss.labels.shards`), on local processes or a Dask
cluster (:mod:`~wss.labels.scheduler`).  Depends on :mod:`wss.core` and :mod:`wss.data`.
"""
