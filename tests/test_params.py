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
