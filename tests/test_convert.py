import shutil

import numpy as np
import pandas as pd
import pytest

from stages import convert as stage
from tests.conftest import DATA
from wss.data import convert
from wss.data.instances import COLUMNS, gt_mask, read_table
from wss.data.readers import sbd
from wss.errors import DataError, StageInputError


def _rejects(out):
    return pd.read_csv(out / "rejects.csv")


def test_clean_conversion(tiny_sbd, tmp_path):
    out = tmp_path / "instances"
    table = convert.convert(tiny_sbd, out, DATA, 0.0)
    assert list(read_table(out).columns) == COLUMNS
    assert len(table) > 0 and set(table.split) == {"train", "val"}
    assert table.category.between(1, 20).all()
    assert _rejects(out).empty
    for row in table.itertuples():
        m = gt_mask(row)
        assert m.sum() == row.area and row.file == f"img/{row.image_id}.jpg"
        ys, xs = np.nonzero(m)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (row.x1, row.y1, row.x2, row.y2)
        assert sbd.VOC_CLASSES[row.category - 1] == row.category_name


def _ids(root):
    return sbd.read_split(root, "train")


def _break_missing_jpg(root, i):
    sbd.image_path(root, i).unlink()
    return "file is missing"


def _break_missing_mat(root, i):
    sbd.inst_path(root, i).unlink()
    return "file is missing"


def _break_unreadable_mat(root, i):
    sbd.inst_path(root, i).write_bytes(b"\x00garbage")
    return "unreadable .mat"


def _break_no_gtinst(root, i):
    import scipy.io

    scipy.io.savemat(sbd.inst_path(root, i), {"GTcls": {"Segmentation": np.zeros((3, 3), np.uint8)}})
    return "no GTinst"


def _break_corrupt_jpg(root, i):
    sbd.image_path(root, i).write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return "corrupt, truncated or unreadable image"


def _break_jpeg_cut_in_half(root, i):
    # OpenCV decodes the first half and greys the rest, with only a warning: a full decode catches it.
    path = sbd.image_path(root, i)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return "corrupt, truncated or unreadable image"


def _break_empty_instance(root, i):
    seg, cats = sbd.read_inst(sbd.inst_path(root, i))
    sbd.write_inst(sbd.inst_path(root, i), seg, list(cats) + [5])  # instance N+1 has no pixels
    return "no pixels"


def _break_size_mismatch(root, i):
    seg, cats = sbd.read_inst(sbd.inst_path(root, i))
    sbd.write_inst(sbd.inst_path(root, i), seg[:-3], list(cats))
    return "the annotations say"


def _break_bad_category(root, i):
    seg, cats = sbd.read_inst(sbd.inst_path(root, i))
    sbd.write_inst(sbd.inst_path(root, i), seg, [25] + list(cats[1:]))
    return "category 25 outside 1..20"


@pytest.mark.parametrize(
    "breaker",
    [
        _break_missing_jpg,
        _break_missing_mat,
        _break_unreadable_mat,
        _break_no_gtinst,
        _break_corrupt_jpg,
        _break_jpeg_cut_in_half,
        _break_empty_instance,
        _break_size_mismatch,
        _break_bad_category,
    ],
)
def test_bad_input_becomes_a_reject(tiny_sbd, tmp_path, breaker):
    victim = _ids(tiny_sbd)[1]
    reason = breaker(tiny_sbd, victim)
    out = tmp_path / "instances"
    table = convert.convert(tiny_sbd, out, DATA, 0.5)
    rejects = _rejects(out)
    assert len(rejects) == 1, rejects
    assert rejects.image_id[0] == victim and reason in rejects.reason[0]
    assert victim in rejects.file[0]
    # The other images are all there.
    assert set(table.image_id) >= set(_ids(tiny_sbd)) - {victim}


def test_too_many_rejects_fail_and_keep_previous_output(tiny_sbd, tmp_path):
    out = tmp_path / "instances"
    convert.convert(tiny_sbd, out, DATA, 0.0)
    before = (out / "instances.parquet").read_bytes()
    for i in _ids(tiny_sbd)[:3]:
        sbd.image_path(tiny_sbd, i).unlink()
    with pytest.raises(DataError, match="max_reject_fraction"):
        convert.convert(tiny_sbd, out, DATA, 0.1)
    assert (out / "instances.parquet").read_bytes() == before  # nothing lost
    failed = pd.read_csv(tmp_path / "instances-rejects.csv")
    assert len(failed) == 3


def test_duplicate_id_in_lists(tiny_sbd, tmp_path):
    first = _ids(tiny_sbd)[0]
    with open(sbd.split_path(tiny_sbd, "val"), "a") as f:
        f.write(first + "\n")
    convert.convert(tiny_sbd, tmp_path / "out", DATA, 0.5)
    assert "listed twice" in _rejects(tmp_path / "out").reason[0]


def test_cli_on_missing_dir(tmp_path):
    with pytest.raises(StageInputError, match="run the download stage first"):
        stage.main(
            [
                "--data",
                str(tmp_path / "nope"),
                "--out",
                str(tmp_path / "o"),
                "--params",
                str(__import__("tests.conftest").conftest.ROOT / "params.yaml"),
            ]
        )
    assert not (tmp_path / "o").exists()
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_an_empty_split_stops_convert_with_the_reason_and_the_rejects(tmp_path):
    import json

    from tests.conftest import data_cfg
    from wss.errors import DataError

    raw = tmp_path / "raw"
    raw.mkdir()
    cv2 = __import__("cv2")
    import numpy as np

    images, anns = [], []
    for n in range(1, 4):
        cv2.imwrite(str(raw / f"{n}.png"), np.zeros((20, 30, 3), np.uint8))
        images.append({"id": n, "file_name": f"{n}.png", "height": 20, "width": 30})
        anns.append({"id": n, "image_id": n, "category_id": 1, "bbox": [2, 2, 10, 10], "iscrowd": 0})
    (raw / "instances.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "x"}]})
    )
    out = tmp_path / "instances"
    with pytest.raises(DataError, match=r"the val split is empty \(data.val_fraction is 0.1\)"):
        convert.convert(raw, out, data_cfg(source="coco", archive=str(raw), val_fraction=0.1), 0.5)
    assert not out.exists() and (tmp_path / "instances-rejects.csv").is_file()
    table = convert.convert(raw, out, data_cfg(source="coco", archive=str(raw), val_fraction=0.34), 0.5)
    assert (table.split == "val").sum() == 1 and (table.split == "train").sum() == 2
