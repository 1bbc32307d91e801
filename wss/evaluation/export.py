"""Masks out, in COCO format: the ``export`` stage's work.

For each split it writes two COCO instances files, loadable as they are by pycocotools
(``COCO(path)``) and Detectron2 (``register_coco_instances(name, {}, path, "data/raw")``):

* ``teacher_<split>.json``: the labels at full resolution, as the labels stage made them with
  ``labels.method`` (``fallback`` names the fallback shape used where GrabCut failed, "" otherwise;
  the file's ``info`` records the method);
* ``model_<split>.json``: the trained model's mask for every instance (through the refinement cut
  when ``refine.apply`` is on), with ``score``, the model's mean foreground probability inside
  the mask;
* ``fused_<split>.json`` (with ``export.masks: fused``): the refinement cut of the model's
  probability averaged with the teacher's label (:mod:`wss.evaluation.refine`).

Each is a complete dataset file: ``images`` (``file_name`` relative to the dataset directory,
``data/raw``; the ids are the dataset's own for a COCO source), every ``category`` of the dataset,
and one annotation per instance: the given box as ``bbox``, the mask as compressed RLE
``segmentation``, its ``area``, ``iscrowd`` 0, ``instance``, the instance table's key
``<image_id>/<instance_id>``, and ``source_file`` / ``source_id``, where the instance stands in the
user's own annotation files.

Next to them, the user's own dataset with the masks filled in, in its own format and ids
(``export.masks`` says which: the model's, the teacher's or the fused ones): ``coco/`` (the instances files,
:mod:`wss.data.writers.coco`), ``yolo/`` (a YOLO-seg copy, :mod:`wss.data.writers.yolo`) or ``voc/``
(the devkit with segmentation PNGs, :mod:`wss.data.writers.voc`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tqdm import tqdm

from wss.core import atomic
from wss.core.boxes import Box
from wss.data.instances import SPLITS, by_key, read_categories, read_source, read_table
from wss.data.readers import coco
from wss.data.readers.coco import encode
from wss.data.writers import coco as coco_writer
from wss.data.writers import voc as voc_writer
from wss.data.writers import yolo as yolo_writer
from wss.config import ReviewConfig
from wss.data import decisions
from wss.evaluation import review
from wss.evaluation.predictor import Predictor
from wss.evaluation.refine import score
from wss.labels import shards


def coco_file(rows: pd.DataFrame, categories: dict[int, str], annotations: list[dict], what: str) -> dict:
    """A COCO instances file for the images of ``rows`` (instance-table rows) and ``annotations``."""
    images = rows.drop_duplicates("image_id")
    return {
        "info": {"description": f"wss {what}", "version": "1"},
        "images": [
            {"id": int(r.coco_image_id), "file_name": r.file, "height": int(r.height), "width": int(r.width)}
            for r in images.itertuples()
        ],
        "categories": [{"id": c, "name": n} for c, n in categories.items()],
        "annotations": annotations,
    }


def teacher_annotations(shard_dir: Path, split: str, rows: dict[str, object]) -> list[dict]:
    """The full-resolution teacher label of every instance of ``split``, as COCO annotations."""
    out = []
    for path in shards.files(shard_dir, split):
        data = shards.read(path, ("key", "teacher_full", "box_xyxy", "image_size", "fallback"))
        for i, key in enumerate(data["key"]):
            r = rows[key]
            mask = shards.full_label(data["teacher_full"][i], data["box_xyxy"][i], data["image_size"][i])
            out.append(
                coco.annotation(
                    len(out) + 1,
                    int(r.coco_image_id),
                    int(r.category),
                    Box(r.x1, r.y1, r.x2, r.y2),
                    mask,
                    instance=key,
                    fallback=str(data["fallback"][i]),
                    source_file=r.source_file,
                    source_id=r.source_id,
                )
            )
    return out


def model_annotations(
    predictor: Predictor, shard_dir: Path, split: str, rows: dict[str, object], fused: bool, weight: float = 0.5
) -> tuple[list[dict], list[dict]]:
    """The model's full-resolution mask of every instance of ``split`` (as ``refine.apply`` makes
    it), as scored COCO annotations, and with ``fused`` the fused masks likewise, the model counting
    ``weight`` in them (else ``[]``)."""
    total = shards.count(shard_dir, split)
    out: list[dict] = []
    both: list[dict] = []
    files = {key: r.file for key, r in rows.items()}
    for inst in tqdm(predictor.instances(shard_dir, split, files), total=total, desc=f"export {split}", unit="inst"):
        r = rows[inst.key]
        common = {"instance": inst.key, "source_file": r.source_file, "source_id": r.source_id}
        mask = predictor.fused(inst, weight) if fused else None
        out.append(
            coco.annotation(
                len(out) + 1,
                int(r.coco_image_id),
                int(r.category),
                inst.box,
                inst.mask,
                score=round(inst.score, 4),
                **common,
                **review.quality(inst.mask, inst.teacher, inst.certainty),
                **review.shape_signs(inst.mask, inst.box, mask),
            )
        )
        if fused:
            both.append(
                coco.annotation(
                    len(both) + 1,
                    int(r.coco_image_id),
                    int(r.category),
                    inst.box,
                    mask,
                    score=round(score(inst.prob, mask), 4),
                    **common,
                )
            )
    return out, both


def review_row(ann: dict, r, split: str) -> dict:
    """One model mask's row of ``review.csv``: the instance, joined to the user's own file and id, and
    the signs of its quality."""
    return {
        "key": ann["instance"],
        "file": r.file,
        "category_name": r.category_name,
        "source_file": r.source_file,
        "source_id": r.source_id,
        "split": split,
        "x1": r.x1,
        "y1": r.y1,
        "x2": r.x2,
        "y2": r.y2,
        "height": r.height,
        "width": r.width,
        **{k: ann[k] for k in review.SIGNS},
    }


def export(
    predictor: Predictor,
    shard_dir: Path,
    instances_dir: Path,
    data_root: Path,
    out: Path,
    masks: str,
    review_cfg: ReviewConfig,
    verdict: dict | None = None,
    decided: pd.DataFrame | None = None,
) -> dict[str, object]:
    """Write ``teacher_<split>.json`` and ``model_<split>.json`` (and ``fused_<split>.json`` when
    ``masks`` is ``fused``) under ``out``, the review gallery under ``out/review``, and the user's
    own files with the ``masks`` (``model``, ``teacher`` or ``fused``) filled in (atomically, as one
    directory); return what was written.

    ``verdict`` (:func:`wss.evaluation.trust.judge`) sets the model's weight in the fused masks (the
    plain average without one), and a weak network's line stands at the top of the review page.
    ``decided`` (:func:`wss.data.decisions.read`, joined to the instance table) are the
    reviewer's decisions: an accepted mask is written as it was accepted, marked ``accepted``; a
    rejected one is marked ``rejected`` or left out (``review_cfg.rejected``: ``flag`` or ``drop``);
    the quality score is refitted on them (:func:`wss.evaluation.review.refit`) to order the rest."""
    weight = verdict["model_weight"] if verdict else 0.5
    banner = verdict["line"] if verdict else ""
    decided = decided if decided is not None else decisions.empty()
    accepted = decisions.masks(decided)
    verdicts = dict(zip(decided.key, decided.decision))
    table = read_table(instances_dir)
    categories = read_categories(instances_dir)
    source = read_source(instances_dir)
    counts: dict[str, object] = {}
    chosen: dict[str, dict] = {}
    shown: dict[str, str] = {}
    rated: list[dict] = []
    with atomic.target(out, directory=True) as tmp:
        for split in SPLITS:
            part = table[table.split == split]
            rows = by_key(part)
            teacher = f"teacher masks ({shards.read_manifest(shard_dir)['method']}), {split}"
            made = {"teacher": teacher_annotations(shard_dir, split, rows)}
            made["model"], fused = model_annotations(predictor, shard_dir, split, rows, masks == "fused", weight)
            if masks == "fused":
                made["fused"] = fused
            what_is = {
                "teacher": teacher,
                "model": f"model masks, {split}",
                "fused": f"fused masks (model weight {weight:g} and teacher through the refinement cut), {split}"
                if weight > 0
                else f"fused masks (the network is weak: the teacher's), {split}",
            }
            for what, anns in made.items():
                name = f"{what}_{split}.json"
                atomic.write_json(tmp / name, coco_file(part, categories, anns, what_is[what]))
                counts[name] = len(anns)
            rated += [review_row(ann, rows[ann["instance"]], split) for ann in made["model"]]
            quality = {ann["instance"]: ann["quality"] for ann in made["model"]}
            for ann in made[masks]:
                k = ann["instance"]
                mask = {"segmentation": ann["segmentation"], "area": ann["area"], "score": ann.get("score", 1.0)}
                mask.update(quality=quality[k], masks=masks, review="")
                chosen[k] = reviewed(mask, verdicts.get(k, ""), accepted.get(k), review_cfg.rejected)
                # The gallery shows the mask the reviewer decides on, even a dropped one.
                shown[k] = (chosen[k]["segmentation"] or ann["segmentation"])["counts"]
        counts["review"] = write_review(
            pd.DataFrame(rated), shown, decided, review_cfg, review.images_dir(data_root, out / "review"), tmp, banner
        )
        counts["decisions"] = {
            "accepted": sum(m["review"] == "accepted" for m in chosen.values()),
            "rejected": sum(m["review"] == "rejected" for m in chosen.values()),
            "rejected_as": review_cfg.rejected,
            "not_reviewed": sum(m["review"] == "" for m in chosen.values()),
        }
        fmt = source["source"]  # data.source: the dataset's own format
        if fmt == "coco":
            counts["coco"] = coco_writer.write(table, chosen, data_root, tmp / "coco")
        elif fmt == "yolo":
            counts["yolo"] = yolo_writer.write(table, chosen, data_root, tmp / "yolo", source["files"][0])
        elif fmt == "voc":
            counts["voc"] = voc_writer.write(table, chosen, data_root, tmp / "voc", source["files"][0])
    return counts


def write_review(
    rated: pd.DataFrame,
    shown: dict[str, str],
    decided: pd.DataFrame,
    cfg: ReviewConfig,
    images: str,
    tmp: Path,
    banner: str,
) -> dict:
    """The review under ``tmp/review``: the gallery of ``rated`` (review rows) with the ``shown`` masks,
    ordered by the quality score refitted on the ``decided`` masks when there are enough
    (``score.json`` says how it was fitted).  Returns its summary."""
    rated["p_accept"], refitted = review.refit(rated, decided, cfg.min_decisions)
    if not refitted["refitted"]:
        rated = rated.drop(columns="p_accept")
    ranked = review.write(rated, shown, images, tmp / "review", cfg.page_size, banner, decided)
    atomic.write_json(tmp / "review/score.json", refitted)
    return {**review.summary(ranked), "refitted": refitted["refitted"]}


def reviewed(mask: dict, decision: str, accepted, rejected: str) -> dict:
    """The exported ``mask`` (``{"segmentation", "area", ..., "review"}``) after the reviewer's
    ``decision`` on it: ``accept`` writes the ``accepted`` mask (the one the reviewer saw);
    ``reject`` marks it, and with ``rejected: drop`` leaves its segmentation out (``None``)."""
    if decision == "accept":
        return {**mask, "segmentation": encode(accepted), "area": int(accepted.sum()), "review": "accepted"}
    if decision == "reject":
        gone = rejected == "drop"
        return {**mask, "segmentation": None if gone else mask["segmentation"], "review": "rejected"}
    return mask
