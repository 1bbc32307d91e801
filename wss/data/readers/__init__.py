"""One reader per dataset format, each converting its own conventions at the border.

:mod:`~wss.data.readers.sbd` (the Berkeley ``.mat`` files, also the sample's layout),
:mod:`~wss.data.readers.coco` (instances JSON, also COCO's box and RLE conventions),
:mod:`~wss.data.readers.yolo` (Ultralytics detection and segmentation labels) and
:mod:`~wss.data.readers.voc` (a PASCAL VOC devkit).  Each returns a
:class:`~wss.data.dataset.Dataset` and never a half-read one: a bad annotation becomes a reject.
"""
