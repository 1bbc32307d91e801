"""Masks back into the user's own files, one writer per dataset format, joined by the source's ids.

Each writer takes the instance table (whose ``source_file`` and ``source_id`` say where every
instance stands in the user's annotation files) and one exported mask per instance key, and
writes a copy of the user's dataset with the masks filled in: :mod:`~wss.data.writers.coco`
(the instances JSON with ``segmentation`` and ``area``), :mod:`~wss.data.writers.yolo` (YOLO-seg
label files and the dataset yaml), :mod:`~wss.data.writers.voc` (``SegmentationObject`` and
``SegmentationClass`` PNGs).  Every field, id and line the pipeline did not use is left as
it was.  Depends on :mod:`wss.core` and :mod:`wss.data`.
"""
