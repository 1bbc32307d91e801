import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from stages import predict
from tests.conftest import ROOT, write_params
from tests.test_evaluate import assert_is_the_box, box_stub
from wss.core.boxes import Box, fill
from wss.data.readers import sbd


@pytest.fixture
def image(built):
    return sbd.image_path(built.data, sbd.read_split(built.data, "val")[0])


@pytest.fixture
def tiny_model(built):
    return built.model


def run(*args):
    return predict.main(["--params", str(ROOT / "params.yaml"), *[str(a) for a in args]])


def read_mask(path):
    m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert set(np.unique(m)) <= {0, 255}
    return (m > 0).astype(np.uint8)


def test_box_stub_gives_exactly_the_box_when_the_crop_is_not_resized(image, tmp_path):
    """40x40 boxes with margin 0.1 have a 48-pixel window: with 48-pixel crops nothing is resampled,
    so the stub's masks must be the boxes, pixel for pixel, at the image's full resolution."""
    stub = box_stub(tmp_path / "stub.keras", 48, 0.1)
    out = tmp_path / "out"
    boxes = ["10,12,50,52", "30,30,70,70"]
    assert run("--model", stub, "--image", image, "--box", boxes[0], "--box", boxes[1], "--out", out) == 0
    h, w = cv2.imread(str(image)).shape[:2]
    for k, b in enumerate(boxes):
        m = read_mask(out / f"{image.stem}_mask_{k}.png")
        assert m.shape == (h, w)
        np.testing.assert_array_equal(m, fill(Box(*map(int, b.split(","))), h, w))
    assert cv2.imread(str(out / f"{image.stem}_overlay.png")).shape == (h, w, 3)


@pytest.mark.parametrize("crop", [32, 96])
def test_box_stub_gives_the_box_through_resized_crops(image, tmp_path, crop):
    stub = box_stub(tmp_path / "stub.keras", crop, 0.1)
    box = Box(7, 9, 61, 40)  # wide, off-centre, near the border
    assert run("--model", stub, "--image", image, "--box", ",".join(map(str, box)), "--out", tmp_path / "o") == 0
    assert_is_the_box(read_mask(tmp_path / "o" / f"{image.stem}_mask_0.png"), box, slack=1)


def test_masks_stop_at_the_box_whatever_the_network_says_of_the_context(image, tmp_path):
    """A network that calls its whole crop foreground (context margin 0.25) gives exactly the box."""
    stub = box_stub(tmp_path / "all.keras", 48, 0.25, everywhere=True)
    box = Box(20, 15, 60, 45)
    assert run("--model", stub, "--image", image, "--box", ",".join(map(str, box)), "--out", tmp_path / "o") == 0
    m = read_mask(tmp_path / "o" / f"{image.stem}_mask_0.png")
    np.testing.assert_array_equal(m, fill(box, *m.shape))


def test_threshold_and_flip_come_from_params(image, tmp_path, tiny_model, monkeypatch):
    from wss.evaluation.predictor import Prediction, Predictor

    seen = {}

    def spy(self, image_bgr, boxes):
        c = self.cfg
        seen.update(threshold=c.threshold, flip=c.flip, refine=self.cut.apply and self.cut.gamma == 3.5)
        return Prediction([], [np.zeros(image_bgr.shape[:2], np.uint8) for _ in boxes])

    monkeypatch.setattr(Predictor, "__call__", spy)
    write_params(tmp_path / "p.yaml", evaluate={"threshold": 0.3, "flip": False}, refine={"apply": False, "gamma": 3.5})
    common = ["--model", str(tiny_model), "--image", str(image), "--box", "10,12,60,70", "--out", str(tmp_path / "o")]
    assert predict.main(["--params", str(tmp_path / "p.yaml"), *common]) == 0
    assert seen == {"threshold": 0.3, "flip": False, "refine": False}
    assert predict.main(["--params", str(tmp_path / "p.yaml"), "--threshold", "0.7", "--flip", *common]) == 0
    assert seen == {"threshold": 0.7, "flip": True, "refine": False}
    assert predict.main(["--params", str(tmp_path / "p.yaml"), "--refine", *common]) == 0
    assert seen == {"threshold": 0.3, "flip": False, "refine": True}  # the cut's settings come from the params


def test_cli_output_is_clean(image, tmp_path, tiny_model):
    """No TensorFlow, oneDNN or CUDA start-up noise in what a user sees."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "stages.predict",
            "--model",
            str(tiny_model),
            "--image",
            str(image),
            "--box",
            "10,12,60,70",
            "--out",
            str(tmp_path / "o"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().startswith("predict: 1 masks for")
    for noise in ("oneDNN", "cuda", "CUDA", "cpu_feature_guard", "absl", "I0000", "W0000", "E0000", "tensorflow/"):
        assert noise not in res.stdout + res.stderr, (noise, res.stderr[:2000])


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


@pytest.mark.parametrize(
    "case,match",
    [
        ("missing image", "no such image"),
        ("corrupt image", "corrupt or unreadable image"),
        ("box outside", "outside the"),
        ("zero-area box", "zero area"),
        ("bad box text", "expected four numbers"),
        ("missing model", "no such model file"),
        ("wrong model", "not a wss model"),
        ("no boxes", "give boxes"),
        ("bad boxes file", "cannot read boxes"),
        ("broken boxes json", "b.json: not readable JSON"),
        ("empty image", "empty.jpg: empty file, not an image"),
        ("no params file", "no such params file"),
        ("bad threshold", "--threshold 1.5: must lie in (0, 1)"),
    ],
)
def test_bad_input_exits_2_with_a_message(tiny_model, image, tmp_path, capsys, case, match):
    args = {
        "--params": ROOT / "params.yaml",
        "--model": tiny_model,
        "--image": image,
        "--box": "10,12,60,70",
        "--out": tmp_path / "o",
    }
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
    elif case == "broken boxes json":
        del args["--box"]
        f = tmp_path / "b.json"
        f.write_text('[{"x1": 1,')
        args["--boxes"] = f
    elif case == "empty image":
        args["--image"] = tmp_path / "empty.jpg"
        args["--image"].write_bytes(b"")
    elif case == "no params file":
        args["--params"] = tmp_path / "missing.yaml"
    elif case == "bad threshold":
        args["--threshold"] = 1.5
    code = predict.main([str(x) for kv in args.items() for x in kv])
    assert code == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "(DataError" not in err  # one line, no message wrapping another
    assert not (tmp_path / "o").exists()


def test_many_images_in_one_process_from_coco_yolo_and_csv_boxes(tiny_model, image, tmp_path):
    """``--images DIR --boxes FILE``: the model loads once; masks come back in the boxes' own format."""
    import json

    from stages import predict as stage
    from wss.core.masks import from_segmentation

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    h, w = cv2.imread(str(image)).shape[:2]
    for n in ("p", "q"):
        cv2.imwrite(str(imgs / f"{n}.png"), cv2.imread(str(image)))
    box = [10, 8, 40, 30]
    coco_file = tmp_path / "boxes.json"
    coco_file.write_text(
        json.dumps(
            {
                "images": [
                    {"id": 5, "file_name": "p.png", "height": h, "width": w},
                    {"id": 6, "file_name": "q.png", "height": h, "width": w},
                ],
                "annotations": [
                    {"id": 70, "image_id": 5, "category_id": 1, "bbox": [10, 8, 30, 22], "iscrowd": 0, "note": "mine"},
                    {"id": 71, "image_id": 6, "category_id": 1, "bbox": [12, 9, 20, 20], "iscrowd": 0},
                ],
                "categories": [{"id": 1, "name": "thing"}],
            }
        )
    )
    assert (
        stage.main(
            [
                "--model",
                str(tiny_model),
                "--images",
                str(imgs),
                "--boxes",
                str(coco_file),
                "--out",
                str(tmp_path / "c"),
                "--threshold",
                "0.5",
                "--no-flip",
            ]
        )
        == 0
    )
    back = json.loads((tmp_path / "c/boxes.json").read_text())
    assert [a["id"] for a in back["annotations"]] == [70, 71] and back["annotations"][0]["note"] == "mine"
    for a in back["annotations"]:
        assert from_segmentation(a["segmentation"], h, w).sum() == a["area"]
    labels = tmp_path / "labels"
    labels.mkdir()
    for n in ("p", "q"):
        (labels / f"{n}.txt").write_text(f"3 {25 / w:.6f} {19 / h:.6f} {30 / w:.6f} {22 / h:.6f}\n")
    assert (
        stage.main(
            [
                "--model",
                str(tiny_model),
                "--images",
                str(imgs),
                "--boxes",
                str(labels),
                "--out",
                str(tmp_path / "y"),
                "--threshold",
                "0.5",
                "--no-flip",
            ]
        )
        == 0
    )
    for n in ("p", "q"):
        lines = (tmp_path / f"y/labels/{n}.txt").read_text().splitlines()
        assert len(lines) <= 1 and all(line.startswith("3 ") and len(line.split()) >= 7 for line in lines)
    table = tmp_path / "boxes.csv"
    table.write_text("image,x1,y1,x2,y2\np.png,10,8,40,30\nq.png,12,9,32,29\nq.png,1,1,20,20\n")
    assert (
        stage.main(
            [
                "--model",
                str(tiny_model),
                "--images",
                str(imgs),
                "--boxes",
                str(table),
                "--out",
                str(tmp_path / "v"),
                "--threshold",
                "0.5",
                "--no-flip",
            ]
        )
        == 0
    )
    masks = json.loads((tmp_path / "v/masks.json").read_text())
    assert [a["row"] for a in masks["annotations"]] == [2, 3, 4] and len(masks["images"]) == 2
    assert masks["annotations"][0]["bbox"] == [float(v) for v in (box[0], box[1], box[2] - box[0], box[3] - box[1])]
    missing = tmp_path / "none.csv"
    missing.write_text("image,x1,y1,x2,y2\nnope.png,1,1,5,5\n")
    assert (
        stage.main(
            [
                "--model",
                str(tiny_model),
                "--images",
                str(imgs),
                "--boxes",
                str(missing),
                "--out",
                str(tmp_path / "n"),
                "--threshold",
                "0.5",
                "--no-flip",
            ]
        )
        == 2
    )
