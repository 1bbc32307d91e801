import dataclasses

import pytest

from tests.conftest import PARAMS, ROOT
from wss import config
from wss.errors import ConfigError


def test_exponent_without_dot_is_a_float():
    # What `dvc exp run -S train.lr=1e-6` writes back into params.yaml.
    p = config.loads("train:\n  lr: 1e-06\n  wd: 2.0e-4\n  steps: 10\n  name: box\n  big: 1E+3\n")
    assert p["train"]["lr"] == 1e-6 and isinstance(p["train"]["lr"], float)
    assert p["train"]["wd"] == 2e-4
    assert p["train"]["steps"] == 10 and isinstance(p["train"]["steps"], int)
    assert p["train"]["name"] == "box"
    assert p["train"]["big"] == 1000.0 and isinstance(p["train"]["big"], float)


def test_empty_file_is_empty_dict():
    assert config.loads("") == {}


@dataclasses.dataclass(frozen=True)
class Section:
    steps: int
    lr: float
    name: str
    on: bool
    bounds: tuple[int, ...]


FULL = {"steps": 3.0, "lr": 1, "name": "x", "bounds": [1, 2.0], "on": True}


def test_typed_casts_every_value():
    s = config.typed(Section, FULL, "train")
    assert s == Section(steps=3, lr=1.0, name="x", bounds=(1, 2), on=True)
    assert isinstance(s.lr, float) and isinstance(s.steps, int) and isinstance(s.bounds[1], int)


@pytest.mark.parametrize(
    "values,match",
    [
        ({**FULL, "stpes": 3}, r"unknown keys under train: \['stpes'\]"),
        ({k: v for k, v in FULL.items() if k != "lr"}, r"missing keys under train: \['train.lr'\]"),
        ({**FULL, "steps": "many"}, "train.steps must be int, not 'many'"),
        ({**FULL, "steps": 2.5}, "train.steps must be int, not 2.5"),
        ({**FULL, "steps": True}, "train.steps must be int"),
        ({**FULL, "on": "yes"}, "train.on must be true or false"),
        ({**FULL, "bounds": "1,2"}, "train.bounds must be tuple"),
    ],
)
def test_typed_names_the_bad_key(values, match):
    with pytest.raises(ConfigError, match=match):
        config.typed(Section, values, "train")


def test_validate_runs_before_the_config_is_returned():
    @dataclasses.dataclass(frozen=True)
    class Checked:
        n: int

        def validate(self):
            config.require(self.n >= 1, "s.n", "be >= 1", self.n)

    assert config.typed(Checked, {"n": 2}, "s").n == 2
    with pytest.raises(ConfigError, match=r"params.yaml: s.n must be >= 1, not -5"):
        config.typed(Checked, {"n": -5}, "s")


def test_seed_and_sections():
    assert config.seed({"base": {"seed": 4}}) == 4
    with pytest.raises(ConfigError, match="base.seed must be an integer"):
        config.seed({"base": {"seed": "x"}})
    with pytest.raises(ConfigError, match="missing section train"):
        config.section({"base": {}}, "train")


def _configs():

    return [
        (config.DataConfig, "data"),
        (config.SampleConfig, "data.sample"),
        (config.ConvertConfig, "convert"),
        (config.LabelsConfig, "labels"),
        (config.SurgeryConfig, "surgery"),
        (config.TrainConfig, "train"),
        (config.EvaluateConfig, "evaluate"),
    ]


def test_params_yaml_is_the_one_source_of_defaults():
    """Every stage config has no defaults of its own and reads its whole section of params.yaml."""

    for cls, _where in _configs() + [(config.GrabCutConfig, "labels")]:
        for f in dataclasses.fields(cls):
            assert f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING, (
                f"{cls.__name__}.{f.name}"
            )
    for cls, where in _configs():
        section = config.section(PARAMS, where)
        cfg = cls.from_params(section) if hasattr(cls, "from_params") else config.typed(cls, section, where)
        got = dataclasses.asdict(cfg)
        flat = {**got.pop("grabcut"), **got} if cls is config.LabelsConfig else got
        nested = {k for k, v in section.items() if isinstance(v, dict)}
        assert set(flat) == set(section) - nested, where
        for key, value in flat.items():
            expected = tuple(section[key]) if isinstance(value, tuple) else section[key]
            assert value == expected, f"{where}.{key}"


def test_repo_params_load():
    p = config.load(ROOT / "params.yaml")
    assert p["data"]["source"] == "sample" and isinstance(config.seed(p), int)


def test_auto_label_method_follows_the_source(tmp_path):
    """A user who switches data.source to real photos gets GrabCut+; the sample keeps GrabCut; an
    explicit method is left alone."""
    path = tmp_path / "params.yaml"
    for source, given, made in (
        ("sample", "auto", "grabcut"),
        ("coco", "auto", "grabcut_plus"),
        ("yolo", "auto", "grabcut_plus"),
        ("coco", "grabcut", "grabcut"),
        ("sample", "grabcut_plus", "grabcut_plus"),
    ):
        path.write_text(f"data:\n  source: {source}\nlabels:\n  method: {given}\n")
        assert config.load(path)["labels"]["method"] == made
    path.write_text("labels:\n  method: auto\n")
    with pytest.raises(ConfigError, match="labels.method is auto.*data.source"):
        config.load(path)


def test_auto_rounds_follow_the_source(tmp_path):
    """Real photos get one round of self-training, the sample none; a number is left alone."""
    path = tmp_path / "params.yaml"
    for source, given, made in (
        ("sample", "auto", 1),
        ("coco", "auto", 2),
        ("voc", "auto", 2),
        ("coco", "1", 1),
        ("sample", "3", 3),
    ):
        path.write_text(f"data:\n  source: {source}\ntrain:\n  rounds: {given}\n")
        assert config.load(path)["train"]["rounds"] == made
    path.write_text("train:\n  rounds: auto\n")
    with pytest.raises(ConfigError, match="train.rounds is auto.*data.source"):
        config.load(path)


def test_the_repo_defaults_are_auto():
    p = config.loads((ROOT / "params.yaml").read_text())
    assert p["labels"]["method"] == "auto" and p["train"]["rounds"] == "auto"
    assert config.load(ROOT / "params.yaml")["train"]["rounds"] == 1  # the sample's
