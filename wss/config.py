"""Reading ``params.yaml``, the one place where defaults live, into each stage's ``*Config``.

Each params section is a frozen dataclass **without defaults**, and each of its fields carries
its own constraint (:func:`param`)::

    lr: float = param(above=0)
    optimizer: str = param(one_of=("adam", "sgd"))

:func:`read` is the one loader: it takes the class's ``SECTION`` of the loaded params, requires
every key, refuses unknown ones (pointing renamed keys to their new name), casts each value to
its field's type, checks each field's constraint and then the class's ``validate`` (only the
rules that tie several fields together).  Adding a parameter is one line in ``params.yaml`` and
one field here.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from wss.core import image
from wss.errors import ConfigError

# PyYAML follows YAML 1.1, where a float needs a dot: ``1e-06`` (what ``dvc exp run -S lr=1e-6``
# writes back) would load as the *string* "1e-06".  DVC itself reads YAML 1.2, so we add the
# YAML 1.2 core-schema float pattern to keep both readers in agreement.
_FLOAT_12 = re.compile(
    r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))


def loads(text: str) -> dict[str, Any]:
    """Parse params YAML text; numbers such as ``1e-06`` come back as ``float``."""
    data = yaml.load(text, Loader=_Loader)
    return data or {}


def load(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Load the whole params file, with every ``auto`` choice of :func:`resolve` made."""
    return resolve(loads(Path(path).read_text()))


def resolve(p: dict[str, Any]) -> dict[str, Any]:
    """Every ``auto`` of :data:`AUTO` becomes the value measured best for ``data.source``
    (docs/results.md): ``labels.method`` is ``grabcut`` on the synthetic sample (GrabCut+'s ellipse
    prior hurts its crescents and rings) and ``grabcut_plus`` on every real dataset;
    ``train.rounds`` is 1 on the sample (self-training does not help there) and 2 on real data."""
    for (name, key), by_source in AUTO.items():
        sec = p.get(name)
        if not (isinstance(sec, dict) and sec.get(key) == "auto"):
            continue
        source = p.get("data", {}).get("source") if isinstance(p.get("data"), dict) else None
        if source is None:
            raise ConfigError(f"{name}.{key} is auto, which follows data.source, but params have no data.source")
        sec[key] = by_source.get(source, by_source["real"])
    return p


def section(p: dict[str, Any], dotted: str) -> dict[str, Any]:
    """The section ``dotted`` (``"train"``, ``"data.sample"``) of the loaded params; an error names it if absent."""
    node: Any = p
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"missing section {dotted}")
        node = node[part]
    if not isinstance(node, dict):
        raise ConfigError(f"{dotted} must be a mapping of keys to values")
    return node


def require(ok: bool, name: str, what: str, value: Any) -> None:
    """Raise :class:`~wss.errors.ConfigError` ``params.yaml: <name> must <what>, not <value>`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{name} must {what}, not {value!r}")


_INTERVAL = re.compile(r"([\[(])\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*([\])])")


def param(
    *,
    at_least: float | None = None,
    above: float | None = None,
    within: str | None = None,
    one_of: tuple = (),
    check: Callable[[Any], bool] | None = None,
    must: str = "",
    note: str = "",
    content: bool = True,
) -> Any:
    """A params field and its constraint: ``at_least`` (value >= it), ``above`` (value > above),
    ``within`` an interval written as in mathematics (``"[0, 1)"``), ``one_of`` a closed vocabulary,
    or any ``check`` with the ``must`` that says it.  Tuples are checked item by item.  ``note``
    ends the error message (``"(0 = off)"``).  ``content=False`` marks a field that changes how fast
    or how often a stage works or logs, never what it makes: it stays out of the fingerprints."""
    tests: list[tuple[Callable[[Any], bool], str]] = []
    if at_least is not None:
        tests.append((lambda v: v >= at_least, f"be >= {at_least:g}"))
    if above is not None:
        tests.append((lambda v: v > above, f"be > {above:g}"))
    if within is not None:
        m = _INTERVAL.fullmatch(within.strip())
        if not m:
            raise ValueError(f"param(within={within!r}) is not an interval such as '[0, 1)'")
        lo_closed, lo, hi, hi_closed = m.group(1) == "[", float(m.group(2)), float(m.group(3)), m.group(4) == "]"
        tests.append(
            (
                lambda v: (lo <= v if lo_closed else lo < v) and (v <= hi if hi_closed else v < hi),
                f"lie in {within.strip()}",
            )
        )
    if one_of:
        tests.append((lambda v: v in one_of, f"be one of {', '.join(map(str, one_of))}"))
    if check is not None:
        tests.append((check, must))
    return dataclasses.field(metadata={"tests": tuple(tests), "note": note, "content": content})


def content_fields(cfg: Any) -> dict[str, Any]:
    """The values of ``cfg`` that shape what its stage makes (every field not marked ``content=False``),
    for a fingerprint."""
    return {
        f.name: content_fields(v) if dataclasses.is_dataclass(v := getattr(cfg, f.name)) else v
        for f in dataclasses.fields(cfg)
        if f.metadata.get("content", True)
    }


def read(cls: type, p: dict[str, Any], **over: Any) -> Any:
    """The config ``cls`` from the loaded params ``p``: its ``SECTION``, with the keys of ``over``
    replaced (a bench's variants, a test's sizes), each value cast to its field's type and checked
    (module docstring).  A dataclass-typed field is read from the subsection of its name, or, when
    the class lists it in ``FLAT``, from keys of the same section."""
    return _build(cls, {**section(p, cls.SECTION), **over}, cls.SECTION)


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    nested = {f.name: hints[f.name] for f in dataclasses.fields(cls) if dataclasses.is_dataclass(hints[f.name])}
    built = {}
    for name, sub in nested.items():
        if name in getattr(cls, "FLAT", ()):
            keys = {f.name for f in dataclasses.fields(sub)}
            built[name] = _build(sub, {k: values.pop(k) for k in list(values) if k in keys}, where)
        else:
            if not isinstance(values.get(name), dict):
                raise ConfigError(f"missing section {where}.{name}")
            built[name] = _build(sub, values.pop(name), f"{where}.{name}")
    kinds = {f.name: f for f in dataclasses.fields(cls) if f.name not in nested}
    unknown = set(values) - set(kinds) - {k for k in values if f"{where}.{k}" in SUBSECTIONS}
    for key in sorted(unknown):
        if f"{where}.{key}" in RENAMED_KEYS:
            raise ConfigError(f"{where}.{key} is now {RENAMED_KEYS[f'{where}.{key}']} (see CHANGELOG.md)")
    if unknown:
        raise ConfigError(f"unknown keys under {where}: {sorted(unknown)}")
    missing = set(kinds) - set(values)
    values = {k: v for k, v in values.items() if k in kinds}
    if missing:
        raise ConfigError(f"missing keys under {where}: {sorted(f'{where}.{k}' for k in missing)}")
    for name, f in kinds.items():
        value = built[name] = _cast(hints[name], values[name], f"{where}.{name}")
        for ok, what in f.metadata.get("tests", ()):
            items = value if isinstance(value, tuple) else (value,)
            require(all(ok(v) for v in items), f"{where}.{name}", f"{what} {f.metadata['note']}".strip(), value)
    cfg = cls(**built)
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


def _cast(kind: Any, value: Any, name: str) -> Any:
    """``value`` as the field type ``kind`` (``bool``, ``int``, ``float``, ``str``, ``tuple[int, ...]``,
    ``tuple[float, ...]``); a bool where a number is meant, or a fraction where an int is, is refused."""
    label = getattr(kind, "__name__", None) if typing.get_origin(kind) is None else str(kind)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, not {value!r}")
        return value
    try:
        if typing.get_origin(kind) is tuple:
            if isinstance(value, (str, bytes, dict)):
                raise TypeError(value)
            return tuple(_number(typing.get_args(kind)[0], v) for v in (value or ()))
        if kind in (int, float):
            return _number(kind, value)
        return str(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(f"{name} must be {label}, not {value!r}") from exc


def _number(kind: type, value: Any) -> int | float:
    if isinstance(value, bool):
        raise TypeError(value)
    if kind is int:
        as_float = float(value)
        if as_float != int(as_float):
            raise ValueError(value)
        return int(as_float)
    return float(value)


# The closed vocabularies of params values; the modules that act on a value import it from here.
SOURCES = ("sample", "sbd", "coco", "yolo", "voc")  # data.source
METHODS = ("grabcut", "grabcut_plus")  # labels.method (or auto: see AUTO)
# What ``auto`` means, by data.source ("real" = any source but the sample): see resolve.
AUTO = {
    ("labels", "method"): {"sample": "grabcut", "real": "grabcut_plus"},
    ("train", "rounds"): {"sample": 1, "real": 2},
}
TRAIN_LABELS = ("teacher", "teacher_i", "box", "box_i", "gt")  # train.labels (self-training: train.rounds)
RENAMED = {"grabcut": "teacher", "grabcut_i": "teacher_i"}  # old train.labels values, refused with a pointer
# Old keys, refused with their new name (CHANGELOG.md).
SUBSECTIONS = ("data.sample",)  # sections inside a section, read by their own config (SampleConfig)
RENAMED_KEYS = {
    "labels.consensus_runs": "labels.vote_runs",
    "labels.consensus_jitter": "labels.vote_jitter",
    "train.consensus_fg": "train.votes_fg",
    "train.consensus_bg": "train.votes_bg",
    "evaluate.refine": "refine.apply",
    "evaluate.cut_pairwise": "refine.pairwise",
    "evaluate.cut_gamma": "refine.gamma",
    "evaluate.cut_sigma": "refine.sigma",
    "evaluate.cut_max_side": "refine.max_side",
    "export.review": "review.page_size",
}
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")  # train.precision
CUT_PAIRWISE = ("colour", "hed")  # refine.pairwise
EXPORT_MASKS = ("model", "teacher", "fused")  # export.masks (see wss.evaluation.refine)
REVIEW_REJECTED = ("flag", "drop")  # review.rejected
LOCAL_SCHEDULER = re.compile(r"local:(\d+)")
# Schemes of dask.distributed's comms; a bare host:port is taken as tcp, as Dask does.
SCHEDULER_ADDRESS = re.compile(r"(tcp|tls|ws|wss|inproc|ucx)://\S+|[\w.\-]+:\d+")


def check_scheduler(scheduler: str) -> str | None:
    """What is wrong with a ``labels.scheduler`` value, or ``None``."""
    if scheduler == "":
        return None
    m = LOCAL_SCHEDULER.fullmatch(scheduler)
    if m and int(m.group(1)) >= 1 or not scheduler.startswith("local:") and SCHEDULER_ADDRESS.fullmatch(scheduler):
        return None
    return "be '' (local processes), local:N (N >= 1 workers) or a scheduler address such as tcp://host:8786"


@dataclass(frozen=True)
class BaseConfig:
    """The ``base`` params section."""

    SECTION: ClassVar[str] = "base"
    seed: int = param(at_least=0)  # the one seed every stage derives its randomness from


def seed(p: dict[str, Any]) -> int:
    """``base.seed``."""
    return read(BaseConfig, p).seed


@dataclass(frozen=True)
class SampleConfig:
    """The ``data.sample`` params section: the synthetic sample the pipeline generates."""

    SECTION: ClassVar[str] = "data.sample"
    n_train: int = param(at_least=1)
    n_val: int = param(at_least=1)
    min_side: int = param(at_least=32)
    max_side: int = param()
    max_instances: int = param(at_least=1)
    min_object: float = param(within="(0, 1]")  # object size as a fraction of the image's shorter side
    max_object: float = param(within="(0, 1]")
    close_color_prob: float = param(within="[0, 1]")  # chance an object takes the colour of the background behind it
    clutter: int = param(at_least=0)  # distractor blobs painted into the background
    noise_std: float = param(at_least=0)
    jpeg_quality_min: int = param(within="[1, 100]")
    jpeg_quality_max: int = param(within="[1, 100]")
    min_visible: float = param(within="[0, 1]")  # drop an instance when occlusion leaves less than this share of it

    def validate(self) -> None:
        pairs = (("min_side", "max_side"), ("min_object", "max_object"), ("jpeg_quality_min", "jpeg_quality_max"))
        for lo, hi in pairs:
            a, b = getattr(self, lo), getattr(self, hi)
            require(a <= b, f"data.sample.{lo}", f"be <= data.sample.{hi}", (a, b))


@dataclass(frozen=True)
class DataConfig:
    """The ``data`` params section (stages ``download`` and ``convert``); ``data.sample`` is :class:`SampleConfig`."""

    SECTION: ClassVar[str] = "data"
    source: str = param(one_of=SOURCES)
    url: str = param()  # the download (when ``archive`` names no dataset; sbd: '' = the official release)
    md5: str = param()  # of the downloaded or given archive; empty = not checked
    archive: str = param()  # a local .zip, .tar, .tar.gz or directory; when set, nothing is downloaded
    annotations: str = param()  # coco: the instances JSON, yolo: the dataset yaml, voc: the devkit; '' = find it
    val_fraction: float = param(within="[0, 1)")  # share of images that go to val when the dataset has one split

    def validate(self) -> None:
        if self.source not in ("sample", "sbd"):
            require(
                bool(self.archive or self.url),
                "data.archive",
                f"name the {self.source} dataset (a local archive or directory), or data.url its download, "
                f"when data.source is {self.source}",
                self.archive,
            )


@dataclass(frozen=True)
class ConvertConfig:
    """The ``convert`` params section."""

    SECTION: ClassVar[str] = "convert"
    max_reject_fraction: float = param(within="[0, 1]")  # share of images with a reject tolerated
    max_image_pixels: int = param(  # a larger image is a reject, read from its header before any decoding
        check=lambda v: 1 <= v <= image.CEILING, must=f"lie in [1, {image.CEILING}] (PIL's decompression-bomb limit)"
    )


@dataclass(frozen=True)
class BoundariesConfig:
    """The ``boundaries`` params section."""

    SECTION: ClassVar[str] = "boundaries"
    batch_size: int = param(at_least=1)  # images per HED forward pass; batch-mates move a map a little, so it counts


@dataclass(frozen=True)
class GrabCutConfig:
    """GrabCut's settings, flat in the ``labels`` params section."""

    SECTION: ClassVar[str] = "labels"
    method: str = param(one_of=METHODS)
    iterations: int = param(at_least=1)
    roi_margin: float = param()  # GrabCut runs on the box grown by this share of its size; < 0: whole image
    min_side: int = param(at_least=0)  # the ROI is enlarged until the box's shorter side has this many pixels
    max_side: int = param(check=lambda v: v == 0 or v >= 16, must="be 0 (no limit) or >= 16")
    boundary_sigma: float = param(above=0)  # grabcut_plus: pairwise weight gamma * exp(-hed^2 / (2 sigma^2))
    shape_prior: float = param(at_least=0)  # grabcut_plus: unary pull toward the box's inscribed ellipse (0 = none)
    min_box_area: int = param(at_least=1)
    min_box_side: int = param(at_least=1)
    min_fg_fraction: float = param(within="[0, 1]")
    whole_image_band: float = param(within="(0, 0.5)")  # outer band of the box seeded as probable background
    fallback_shape: str = param(one_of=("ellipse", "box"))

    def validate(self) -> None:
        require(
            self.max_side == 0 or self.max_side >= self.min_side,
            "labels.max_side",
            "be 0 (no limit) or >= labels.min_side",
            self.max_side,
        )


@dataclass(frozen=True)
class LabelsConfig:
    """The ``labels`` params section; GrabCut's own settings sit flat in it and land in ``grabcut``."""

    SECTION: ClassVar[str] = "labels"
    FLAT: ClassVar[tuple[str, ...]] = ("grabcut",)
    crop_size: int = param(
        check=lambda v: v >= 16 and v % 16 == 0, must="be a positive multiple of 16 (the network downsamples by 16)"
    )
    context_margin: float = param(at_least=0)
    shard_size: int = param(at_least=1)
    n_jobs: int = param(check=lambda v: v != 0, must="be a worker count or negative (-1 = all cores)", content=False)
    scheduler: str = param(check=lambda v: check_scheduler(v) is None, must=check_scheduler("?"), content=False)
    vote_runs: int = param(at_least=0)  # jittered GrabCuts per train instance, for train.labels=teacher_i; 0 = none
    vote_jitter: float = param(within="[0, 0.5)")
    grabcut: GrabCutConfig = param()


@dataclass(frozen=True)
class SurgeryConfig:
    """The ``surgery`` params section."""

    SECTION: ClassVar[str] = "surgery"
    init: str = param(check=bool, must="name hed, imagenet, random or a weights file")
    box_std: float = param(at_least=0)  # std of the new box-channel filters of conv1_1


@dataclass(frozen=True)
class TrainConfig:
    """The ``train`` params section (see ``params.yaml`` for the meaning of each key).  The fields
    marked ``content=False`` change when or how much is saved or logged, not the weights of a given
    step; ``rounds`` too, since round 1 of a self-training run is the run without self-training."""

    SECTION: ClassVar[str] = "train"
    labels: str = param(one_of=TRAIN_LABELS, note="(self-training: train.rounds)")
    holdout: str = param(one_of=("auto", "split"))
    rounds: int = param(at_least=1, note="(1 = no self-training)", content=False)
    steps: int = param(at_least=1, content=False)  # optimizer updates
    batch_size: int = param(at_least=1)
    accum_steps: int = param(at_least=1)  # batches whose gradients are averaged into one update
    optimizer: str = param(one_of=("adam", "sgd"))
    lr: float = param(above=0)
    momentum: float = param(within="[0, 1)")
    weight_decay: float = param(at_least=0)
    ema: float = param(within="[0, 1)", note="(0 = off)")  # > 0: the saved model is the weights' moving average
    lr_boundaries: tuple[int, ...] = param(above=0)  # updates
    lr_factors: tuple[float, ...] = param(above=0)
    lr_warmup: int = param(at_least=0)  # updates of linear warm-up from 0 to the lr
    lr_decay: str = param(one_of=("none", "cosine"))  # cosine: the lr falls to 0 at train.steps
    side_boundaries: tuple[int, ...] = param(above=0)  # updates
    side_weights: tuple[float, ...] = param(at_least=0)
    side_channels: int = param(at_least=1)
    loss_reduction: str = param(one_of=("mean", "sum"))
    class_balance: bool = param()
    iou_weight: float = param(at_least=0, note="(0 = cross-entropy alone)")
    label_weight: float = param(at_least=0, note="(0 = the box terms alone, no teacher)")
    projection_weight: float = param(at_least=0)  # BoxInst's projection loss
    pairwise_weight: float = param(at_least=0)  # BoxInst's colour-pairwise loss
    pairwise_threshold: float = param(within="[0, 1]")  # pairs of at least this colour affinity
    skip_fallbacks: bool = param()
    votes_fg: float = param(within="[0, 1]")
    votes_bg: float = param(within="[0, 1]")
    box_i_core: float = param(within="(0, 1]")
    flip: bool = param()
    scale_jitter: float = param(within="[0, 1)")
    box_jitter: float = param(within="[0, 0.5)")
    input_side: int = param(  # side of the training input; 0 = the labels' crop (labels.crop_size)
        check=lambda v: v >= 0 and v % 16 == 0, must="be 0 or a multiple of 16"
    )
    shuffle_buffer: int = param(at_least=1)
    checkpoint_every: int = param(at_least=1, content=False)  # updates
    checkpoints_kept: int = param(at_least=1, content=False)
    log_every: int = param(at_least=1, content=False)  # updates
    device: str = param(one_of=("auto", "cpu", "gpu"))
    devices: str = param(  # "auto" or a count; > 1 = data-parallel replicas (MirroredStrategy)
        check=lambda v: v == "auto" or v.isdigit() and int(v) >= 1, must="be auto or a number of devices >= 1"
    )
    precision: str = param(one_of=PRECISIONS)
    jit_compile: bool = param()
    deterministic: bool = param()

    def validate(self) -> None:
        if self.labels in RENAMED:
            raise ConfigError(
                f"train.labels: {self.labels} is now called {RENAMED[self.labels]} (the labels stage's "
                "masks, whichever labels.method made them)"
            )
        for values, bounds in (("lr_factors", "lr_boundaries"), ("side_weights", "side_boundaries")):
            v, b = getattr(self, values), getattr(self, bounds)
            require(len(v) == len(b) + 1, f"train.{values}", f"have one more entry than train.{bounds}", v)
            require(list(b) == sorted(set(b)), f"train.{bounds}", "be increasing", b)
        require(
            self.votes_bg <= self.votes_fg,
            "train.votes_bg",
            "be <= train.votes_fg",
            (self.votes_bg, self.votes_fg),
        )
        require(
            not (self.jit_compile and self.deterministic),
            "train.jit_compile and train.deterministic",
            "not both be true (XLA has no deterministic max-pool gradient): set deterministic: false with XLA",
            (self.jit_compile, self.deterministic),
        )


@dataclass(frozen=True)
class RefineConfig:
    """The ``refine`` params section: the refinement cut, a CRF on the network's probabilities
    (:mod:`wss.evaluation.refine`), for ``evaluate``, ``export`` and ``predict``."""

    SECTION: ClassVar[str] = "refine"
    apply: bool = param()  # the model's masks through the cut (the fused masks of export always are)
    pairwise: str = param(one_of=CUT_PAIRWISE)  # colour | hed (the boundaries stage's maps)
    gamma: float = param(at_least=0)  # the pairwise weight, against unaries of -log p nats
    sigma: float = param(above=0)  # hed: exp(-hed^2 / (2 sigma^2))
    max_side: int = param(check=lambda v: v == 0 or v >= 16, must="be 0 or >= 16")  # 0 = full resolution


@dataclass(frozen=True)
class EvaluateConfig:
    """The ``evaluate`` params section (``export`` and ``predict`` use ``threshold`` and ``flip`` too)."""

    SECTION: ClassVar[str] = "evaluate"
    threshold: float = param(within="(0, 1)")  # on the predicted probability
    boundary_tolerance: float = param(above=0)
    batch_size: int = param(at_least=1, content=False)
    n_overlays: int = param(at_least=0, content=False)
    flip: bool = param()  # average with the mirrored crop's prediction
    trust_min_instances: int = param(at_least=0)  # a network that learnt from fewer is weak (wss.core.trust)
    trust_agreement: tuple[float, ...] = param(  # (weak below, trusted in full from): agreement with the teacher
        within="[0, 1]"
    )

    def validate(self) -> None:
        t = self.trust_agreement
        require(
            len(t) == 2 and t[0] <= t[1],
            "evaluate.trust_agreement",
            "be two numbers [weak below, trusted from] with 0 <= weak <= trusted <= 1",
            list(t),
        )


@dataclass(frozen=True)
class ExportConfig:
    """The ``export`` params section."""

    SECTION: ClassVar[str] = "export"
    masks: str = param(one_of=EXPORT_MASKS)  # which masks fill the user's own files


@dataclass(frozen=True)
class ReviewConfig:
    """The ``review`` params section: the gallery ``export`` writes, and the reviewer's decisions
    that ``train`` and ``export`` read (:mod:`wss.data.decisions`)."""

    SECTION: ClassVar[str] = "review"
    decisions: str = param(check=bool, must="name a decisions file or directory")
    rejected: str = param(one_of=REVIEW_REJECTED)  # export: what a rejected mask becomes in the user's files
    page_size: int = param(at_least=1)  # gallery cards per page
    min_decisions: int = param(at_least=2)  # of each kind, to refit the quality score on them
