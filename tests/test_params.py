from stages import params


def test_exponent_without_dot_is_a_float():
    # What `dvc exp run -S train.lr=1e-6` writes back into params.yaml.
    p = params.loads("train:\n  lr: 1e-06\n  wd: 2.0e-4\n  steps: 10\n  name: box\n  big: 1E+3\n")
    assert p["train"]["lr"] == 1e-6 and isinstance(p["train"]["lr"], float)
    assert p["train"]["wd"] == 2e-4
    assert p["train"]["steps"] == 10 and isinstance(p["train"]["steps"], int)
    assert p["train"]["name"] == "box"
    assert p["train"]["big"] == 1000.0 and isinstance(p["train"]["big"], float)


def test_empty_file_is_empty_dict():
    assert params.loads("") == {}


def test_repo_params_load(tmp_path):
    from tests.conftest import ROOT

    p = params.load(ROOT / "params.yaml")
    assert p["data"]["source"] == "sample"
    assert isinstance(p["base"]["seed"], int)


def test_typed_casts_and_names_bad_keys():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Section:
        steps: int = 1
        lr: float = 0.1
        name: str = "x"
        on: bool = False
        bounds: tuple[int, ...] = ()

    s = params.typed(Section, {"steps": 3.0, "lr": 1, "bounds": [1, 2.0], "on": True}, "train")
    assert s == Section(steps=3, lr=1.0, bounds=(1, 2), on=True)
    assert isinstance(s.lr, float) and isinstance(s.steps, int)
    import pytest

    with pytest.raises(SystemExit, match="unknown keys under train"):
        params.typed(Section, {"stpes": 3}, "train")
    with pytest.raises(SystemExit, match="train.steps must be int"):
        params.typed(Section, {"steps": "many"}, "train")
    with pytest.raises(SystemExit, match="train.on must be true or false"):
        params.typed(Section, {"on": "yes"}, "train")
