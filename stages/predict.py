"""Command ``predict``: instance masks for an image and boxes, with a trained model.

    python -m stages.predict --model models/model.keras --image IMG --box x1,y1,x2,y2 [--box ...] --out DIR
    python -m stages.predict --model models/model.keras --image IMG --boxes boxes.csv --out DIR
    python -m stages.predict --model models/model.keras --images DIR --boxes FILE --out DIR

``--images``: a directory in one process, boxes from a COCO JSON, YOLO labels or a CSV with an
``image`` column, masks written in the boxes' own format.  Boxes are pixel ``x1,y1,x2,y2`` with
``x2``/``y2`` exclusive, or a CSV/JSON file of them (see :mod:`wss.data.readers.boxes`).  The
threshold and flip averaging are ``evaluate.threshold`` and ``evaluate.flip`` of ``--params``
unless given; so is the refinement cut (``refine.apply``, ``--refine``/``--no-refine``, with the
rest of the ``refine`` section; a ``hed`` cut runs HED on each image).  Writes ``<image>_mask_<k>.png``
(0/255, full resolution) per box and ``<image>_overlay.png``.  Bad input exits with code 2 and a
message.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stages import import_tensorflow_quietly, run

import_tensorflow_quietly()  # before wss imports TensorFlow

from wss.config import EvaluateConfig, RefineConfig
from wss.core.image import read as read_image
from wss.data.readers import boxes as box_files
from wss.data.writers import predictions
from wss.data.readers.boxes import InputError
from wss.errors import WssError
from wss.evaluation.predictor import Predictor, settings


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/model.keras", type=Path)
    ap.add_argument("--image", type=Path)
    ap.add_argument("--images", type=Path, help="a directory of images (--boxes: COCO JSON, YOLO labels, CSV)")
    ap.add_argument("--box", action="append", default=[], help="x1,y1,x2,y2 (repeat for more boxes)")
    ap.add_argument("--boxes", type=Path, help="CSV or JSON file of boxes, used when no --box is given")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--params", default="params.yaml", help="where the evaluate and refine settings are read")
    ap.add_argument("--threshold", type=float, help="probability threshold (default: evaluate.threshold)")
    ap.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        help="average with the mirrored crop's prediction (default: evaluate.flip)",
    )
    ap.add_argument(
        "--refine",
        action=argparse.BooleanOptionalAction,
        help="the refinement cut of the refine section (default: refine.apply)",
    )
    args = ap.parse_args(argv)
    try:
        cfg, cut = settings(args.params, threshold=args.threshold, flip=args.flip, apply=args.refine)
        if args.images:
            return many(args, cfg, cut)
        if not args.image:
            raise InputError("give --image IMG (one image) or --images DIR --boxes FILE (many)")
        image = read_image(args.image)
        if args.box:
            boxes = [box_files.parse_box(b) for b in args.box]
        elif args.boxes:
            boxes = box_files.read_boxes(args.boxes)
        else:
            raise InputError("give boxes with --box x1,y1,x2,y2 or --boxes FILE")
        h, w = image.shape[:2]
        boxes = [box_files.inside_image(b, k, h, w) for k, b in enumerate(boxes)]
        predictor = Predictor.load(args.model, cfg, cut)  # after the checks: a typo costs no TensorFlow start-up
    except WssError as exc:
        print(f"predict: {exc}", file=sys.stderr)
        return 2
    masks = predictor(image, boxes).masks
    predictions.write_pngs(args.out, args.image.stem, image, boxes, masks)
    print(f"predict: {len(masks)} masks for {args.image} -> {args.out}")
    return 0


def many(args: argparse.Namespace, cfg: EvaluateConfig, cut: RefineConfig) -> int:
    """``--images DIR --boxes FILE``: one image in memory at a time, the model loaded once."""
    if not args.boxes:
        raise InputError("--images needs --boxes: a COCO JSON, a YOLO labels directory or a CSV")
    kind, jobs = box_files.jobs_of(args.boxes, args.images)
    results = list(Predictor.load(args.model, cfg, cut).jobs(jobs))
    done = predictions.write(kind, args.boxes, results, args.out)
    print(f"predict: {done['masks']} masks for {done['images']} images ({kind} boxes) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
