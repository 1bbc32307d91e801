import dataclasses
from typing import ClassVar

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
    SECTION: ClassVar[str] = "train"
    steps: int = config.param(at_least=1)
    lr: float = config.param(above=0)
    name: str = config.param(one_of=("x", "y"))
    on: bool = config.param()
    bounds: tuple[int, ...] = config.param(within="[0, 10)")


FULL = {"steps": 3.0, "lr": 1, "name": "x", "bounds": [1, 2.0], "on": True}


def test_read_casts_every_value():
    s = config.read(Section, {"train": FULL})
    assert s == Section(steps=3, lr=1.0, name="x", bounds=(1, 2), on=True)
    assert isinstance(s.lr, float) and isinstance(s.steps, int) and isinstance(s.bounds[1], int)
    assert config.read(Section, {"train": FULL}, lr=0.5).lr == 0.5


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
        ({**FULL, "steps": 0}, r"params.yaml: train.steps must be >= 1, not 0"),
        ({**FULL, "lr": 0}, r"train.lr must be > 0, not 0.0"),
        ({**FULL, "name": "z"}, r"train.name must be one of x, y, not 'z'"),
        ({**FULL, "bounds": [1, 10]}, r"train.bounds must lie in \[0, 10\), not \(1, 10\)"),
        ({**FULL, "steps": 10**400}, "train.steps must be int"),
    ],
)
def test_read_names_the_bad_key(values, match):
    with pytest.raises(ConfigError, match=match):
        config.read(Section, {"train": values})


def test_validate_ties_fields_together_after_each_field_is_checked():
    @dataclasses.dataclass(frozen=True)
    class Checked:
        SECTION: ClassVar[str] = "s"
        lo: int = config.param(at_least=0)
        hi: int = config.param()

        def validate(self):
            config.require(self.lo <= self.hi, "s.lo", "be <= s.hi", (self.lo, self.hi))

    assert config.read(Checked, {"s": {"lo": 1, "hi": 2}}).hi == 2
    with pytest.raises(ConfigError, match=r"params.yaml: s.lo must be <= s.hi, not \(3, 2\)"):
        config.read(Checked, {"s": {"lo": 3, "hi": 2}})
    with pytest.raises(ConfigError, match=r"s.lo must be >= 0"):  # the field's own rule first
        config.read(Checked, {"s": {"lo": -3, "hi": 2}})


def test_a_renamed_key_points_to_its_new_name():
    section = {**PARAMS["labels"], "consensus_runs": 5}
    del section["vote_runs"]
    with pytest.raises(ConfigError, match=r"labels.consensus_runs is now labels.vote_runs \(see CHANGELOG.md\)"):
        config.read(config.LabelsConfig, {"labels": section})
    every = {f"{name}.{key}" for name, sec in PARAMS.items() if isinstance(sec, dict) for key in sec}
    assert not set(config.RENAMED_KEYS.values()) - every, "a renamed key points to no key of params.yaml"


def test_fields_marked_content_false_stay_out_of_the_fingerprint():
    got = config.content_fields(config.read(config.TrainConfig, PARAMS))
    assert "lr" in got and not {"steps", "log_every", "checkpoint_every", "checkpoints_kept", "rounds"} & set(got)
    labels = config.content_fields(config.read(config.LabelsConfig, PARAMS))
    assert "n_jobs" not in labels and labels["grabcut"]["iterations"] == PARAMS["labels"]["iterations"]


def test_seed_and_sections():
    assert config.seed({"base": {"seed": 4}}) == 4
    with pytest.raises(ConfigError, match="base.seed must be int"):
        config.seed({"base": {"seed": "x"}})
    with pytest.raises(ConfigError, match="base.seed must be >= 0"):
        config.seed({"base": {"seed": -1}})
    with pytest.raises(ConfigError, match="missing section train"):
        config.section({"base": {}}, "train")


CONFIGS = (
    config.BaseConfig,
    config.DataConfig,
    config.SampleConfig,
    config.ConvertConfig,
    config.BoundariesConfig,
    config.LabelsConfig,
    config.SurgeryConfig,
    config.TrainConfig,
    config.RefineConfig,
    config.EvaluateConfig,
    config.ExportConfig,
    config.ReviewConfig,
)


def _flat(cfg) -> dict:
    out = {}
    for key, value in dataclasses.asdict(cfg).items():
        if isinstance(value, dict) and key in getattr(type(cfg), "FLAT", ()):
            out.update(value)
        elif not isinstance(value, dict):
            out[key] = value
    return out


def test_params_yaml_is_the_one_source_of_defaults():
    """Every config has no defaults of its own, every key of params.yaml is read by one, and each
    reads its whole section."""
    for cls in CONFIGS + (config.GrabCutConfig,):
        for f in dataclasses.fields(cls):
            assert f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING, (
                f"{cls.__name__}.{f.name}"
            )
    assert {c.SECTION for c in CONFIGS} >= {k for k in PARAMS}, "a params.yaml section no config reads"
    for cls in CONFIGS:
        section = config.section(PARAMS, cls.SECTION)
        flat = _flat(config.read(cls, PARAMS))
        nested = {k for k, v in section.items() if isinstance(v, dict)}
        assert set(flat) == set(section) - nested, cls.SECTION
        for key, value in flat.items():
            expected = tuple(section[key]) if isinstance(value, tuple) else section[key]
            assert value == expected, f"{cls.SECTION}.{key}"


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
