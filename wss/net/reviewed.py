"""The reviewer's decisions, made into training data: a copy of the shards where each accepted mask
is its instance's label and each rejected instance is gone.

The copy has two more fields (:mod:`wss.labels.shards`): ``reviewed`` ``(n,) bool``, and
``reviewed_label`` ``(n, S, S) uint8``, the accepted mask cropped as the shard's crops are
(:func:`wss.core.masks.crop_mask`).  Training (:func:`wss.net.inputs.instance_label`) takes that
label whatever ``train.labels`` says, and trains on the instance even where the teacher's label
fell back to a shape; self-training keeps it (:func:`wss.net.selftrain.relabel`).  A val instance
with a ground-truth mask stays held out: its score must stay honest.

Shards no decision touches are hard links to the originals.  The copy is resumable
(:mod:`wss.core.resumable`): a rerun with the same shards and decisions reuses it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from wss.core import atomic, provenance, resumable
from wss.core.boxes import Box
from wss.core.masks import crop_mask
from wss.data.fetch import link_or_copy
from wss.data import decisions as decisions_file
from wss.labels import shards


def apply(shard_dir: Path, decided: pd.DataFrame, out: Path) -> dict:
    """Write ``out``: the shards of ``shard_dir`` with the ``decided`` decisions
    (:func:`wss.data.decisions.read`) applied (module docstring).  Returns
    ``{"accepted", "rejected"}``: how many instances of the shards each touched."""
    manifest = shards.read_manifest(shard_dir)
    verdicts = dict(zip(decided.key, decided.decision))
    accepted = decisions_file.masks(decided)
    parts = {p[0]: p for p in decisions_file.digest_parts(decided)}
    fp = provenance.digest(
        manifest["params_fingerprint"], [s["fingerprint"] for s in manifest["shards"]], sorted(parts.values())
    )
    done = resumable.finished(out, fp)
    if done is not None:
        return done["reviewed"]
    stats = {"accepted": 0, "rejected": 0}
    counts = dict(manifest["counts"])
    entries = []
    with atomic.target(out, directory=True) as tmp:
        for entry in manifest["shards"]:
            src = Path(shard_dir) / entry["file"]
            keys = entry["keys"]  # the shard's keys, in its order (the labels stage's manifest)
            touched = [k for k in keys if k in verdicts]
            if not touched:
                link_or_copy(src, tmp / entry["file"])
                entries.append(entry)
                continue
            data = shards.read(src)
            keep = np.array([verdicts.get(k) != "reject" for k in keys])
            side = data["image"].shape[1]
            label = np.zeros((len(keys), side, side), np.uint8)
            reviewed = np.zeros(len(keys), bool)
            for i, k in enumerate(keys):
                if verdicts.get(k) == "accept":
                    label[i] = crop_mask(accepted[k], Box(*(int(v) for v in data["window"][i])), side)
                    reviewed[i] = True
            stats["accepted"] += int(reviewed.sum())
            stats["rejected"] += int((~keep).sum())
            data = {name: values[keep] for name, values in data.items()}
            data["reviewed"], data["reviewed_label"] = reviewed[keep], label[keep]
            shard_fp = provenance.digest(entry["fingerprint"], [parts[k] for k in touched])
            counts[entry["split"]] -= int((~keep).sum())
            if keep.any():
                shards.write(tmp / entry["file"], data, shard_fp)
                kept = [k for k, y in zip(keys, keep) if y]
                entries.append({**entry, "fingerprint": shard_fp, "count": len(kept), "keys": kept})
        resumable.mark(tmp, fp)
        resumable.finish(
            tmp,
            {
                **manifest,
                "shards": entries,
                "counts": counts,
                "params_fingerprint": provenance.digest(manifest["params_fingerprint"], fp),
                "reviewed": stats,
            },
        )
    return stats
