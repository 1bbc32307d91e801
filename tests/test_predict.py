import json

import cv2
import numpy as np
import pytest

from stages import predict, sbd


@pytest.fixture
def image(built):
    return sbd.image_path(built.sbd, sbd.read_split(built.sbd, "val")[0])


@pytest.fixture
def tiny_model(built):
    return built.model


def run(*args):
    return predict.main([str(a) for a in args])


def test_masks_at_full_resolution(tiny_model, image, tmp_path):
    out = tmp_path / "out"
    assert run("--model", tiny_model, "--image", image, "--box", "10,12,60,70", "--box", "30,30,90,90", "--out", out) == 0
    h, w = cv2.imread(str(image)).shape[:2]
    for k in range(2):
        m = cv2.imread(str(out / f"{image.stem}_mask_{k}.png"), cv2.IMREAD_UNCHANGED)
        assert m.shape == (h, w) and set(np.unique(m)) <= {0, 255}
        assert not m[:, 95:].any() if k == 0 else True  # nothing outside the crop window
    assert cv2.imread(str(out / f"{image.stem}_overlay.png")).shape == (h, w, 3)


@pytest.mark.parametrize("fmt", ["csv", "json", "json-dicts"])
def test_boxes_from_file(tiny_model, image, tmp_path, fmt):
    if fmt == "csv":
        f = tmp_path / "boxes.csv"
        f.write_text("label,x1,y1,x2,y2\ncat,10,12,60,70\ndog,30,30,90,90\n")
    else:
        f = tmp_path / "boxes.json"
        rows = [[10, 12, 60, 70], [30, 30, 90, 90]]
        f.write_text(json.dumps(rows if fmt == "json" else [dict(zip(["x1", "y1", "x2", "y2"], r)) for r in rows]))
    assert run("--model", tiny_model, "--image", image, "--boxes", f, "--out", tmp_path / "o") == 0
    assert len(list((tmp_path / "o").glob("*_mask_*.png"))) == 2


@pytest.mark.parametrize("mode", ["gray", "rgba", "gray16"])
def test_grayscale_and_rgba_are_converted(tiny_model, image, tmp_path, mode):
    bgr = cv2.imread(str(image))
    if mode == "gray":
        img = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    elif mode == "rgba":
        img = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    else:
        img = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257
    path = tmp_path / f"{mode}.png"
    cv2.imwrite(str(path), img)
    assert run("--model", tiny_model, "--image", path, "--box", "10,12,60,70", "--out", tmp_path / "o") == 0
    assert (tmp_path / "o" / f"{mode}_mask_0.png").is_file()


def _bad_image(tmp_path):
    p = tmp_path / "bad.jpg"
    p.write_bytes(b"\xff\xd8\xff garbage")
    return p


@pytest.mark.parametrize("case,match", [
    ("missing image", "no such image"),
    ("corrupt image", "corrupt or unsupported image"),
    ("box outside", "outside the"),
    ("zero-area box", "zero area"),
    ("bad box text", "expected four numbers"),
    ("missing model", "no such model file"),
    ("wrong model", "not a wss model"),
    ("no boxes", "give boxes"),
    ("bad boxes file", "cannot read boxes"),
])  # fmt: skip
def test_bad_input_exits_2_with_a_message(tiny_model, image, tmp_path, capsys, case, match):
    args = {"--model": tiny_model, "--image": image, "--box": "10,12,60,70", "--out": tmp_path / "o"}
    if case == "missing image":
        args["--image"] = tmp_path / "nope.jpg"
    elif case == "corrupt image":
        args["--image"] = _bad_image(tmp_path)
    elif case == "box outside":
        args["--box"] = "5000,5000,5100,5100"
    elif case == "zero-area box":
        args["--box"] = "10,10,10,40"
    elif case == "bad box text":
        args["--box"] = "10,10,40"
    elif case == "missing model":
        args["--model"] = tmp_path / "none.keras"
    elif case == "wrong model":
        wrong = tmp_path / "wrong.keras"
        wrong.write_bytes(b"not a zip")
        wrong.with_suffix(".json").write_text('{"crop_size": 32, "context_margin": 0.25}')
        args["--model"] = wrong
    elif case == "no boxes":
        del args["--box"]
    elif case == "bad boxes file":
        del args["--box"]
        f = tmp_path / "b.csv"
        f.write_text("a,b\n1,2\n")
        args["--boxes"] = f
    code = run(*[x for kv in args.items() for x in kv])
    assert code == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
