import numpy as np
import pytest
import scipy.io
import scipy.sparse

from tests.conftest import TINY
from wss.data import sample
from wss.data.readers import sbd


def test_sample_round_trip(tiny_sbd):
    """The sample's .mat files read back to exactly the masks and categories that were drawn."""
    ids = sbd.read_split(tiny_sbd, "train") + sbd.read_split(tiny_sbd, "val")
    assert len(ids) == TINY.n_train + TINY.n_val
    for i, image_id in enumerate(ids):
        _, inst, cats, _ = sample.render(i, 7, TINY)
        got_inst, got_cats = sbd.read_inst(sbd.inst_path(tiny_sbd, image_id))
        np.testing.assert_array_equal(got_inst, inst)
        assert got_cats.tolist() == cats
        cls_map = sbd.read_cls(sbd.cls_path(tiny_sbd, image_id))
        for k, c in enumerate(cats, start=1):
            assert np.all(cls_map[inst == k] == c)
        assert np.all(cls_map[inst == 0] == 0)


def test_written_structs_have_sbd_fields_in_order(tiny_sbd):
    image_id = sbd.read_split(tiny_sbd, "train")[0]
    raw = scipy.io.loadmat(sbd.inst_path(tiny_sbd, image_id), struct_as_record=True)
    assert raw["GTinst"].dtype.names == ("Segmentation", "Boundaries", "Categories")
    raw = scipy.io.loadmat(sbd.cls_path(tiny_sbd, image_id), struct_as_record=True)
    assert raw["GTcls"].dtype.names == ("Boundaries", "Segmentation", "CategoriesPresent")
    bounds = scipy.io.loadmat(sbd.inst_path(tiny_sbd, image_id), squeeze_me=True, struct_as_record=False)
    cell = np.atleast_1d(bounds["GTinst"].Boundaries)
    assert all(scipy.sparse.issparse(b) for b in cell)


def test_one_instance_categories_squeezes_to_scalar(tmp_path):
    seg = np.zeros((5, 6), np.uint8)
    seg[1:3, 2:4] = 1
    path = tmp_path / "one.mat"
    sbd.write_inst(path, seg, [15])
    assert np.ndim(scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)["GTinst"].Categories) == 0
    got, cats = sbd.read_inst(path)
    assert cats.tolist() == [15] and got.dtype == np.uint8


def test_double_segmentation_is_accepted(tmp_path):
    seg = np.zeros((5, 6))
    seg[1:3, 2:4] = 2
    seg[4, :] = 1
    path = tmp_path / "double.mat"
    empty = sbd._cell([scipy.sparse.csc_matrix((5, 6)), scipy.sparse.csc_matrix((5, 6))])
    scipy.io.savemat(
        path, {"GTinst": {"Segmentation": seg, "Boundaries": empty, "Categories": np.array([[3.0], [7.0]])}}
    )
    got, cats = sbd.read_inst(path)
    assert got.dtype == np.uint8 and got.max() == 2 and cats.tolist() == [3, 7]


@pytest.mark.parametrize(
    "content,match",
    [
        (b"not a mat file at all", "unreadable"),
        (None, "no GTinst"),
    ],
)
def test_bad_mat_files(tmp_path, content, match):
    path = tmp_path / "bad.mat"
    if content is None:
        scipy.io.savemat(path, {"something": np.ones(3)})
    else:
        path.write_bytes(content)
    with pytest.raises(sbd.SBDFormatError, match=match) as err:
        sbd.read_inst(path)
    assert str(path) in str(err.value)


def test_non_integer_segmentation_rejected(tmp_path):
    path = tmp_path / "frac.mat"
    scipy.io.savemat(path, {"GTinst": {"Segmentation": np.full((3, 3), 0.5), "Categories": np.array([1])}})
    with pytest.raises(sbd.SBDFormatError, match="not integers"):
        sbd.read_inst(path)


def test_sample_is_deterministic():
    a = sample.render(3, 11, TINY)
    b = sample.render(3, 11, TINY)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2]
