"""Reading ``params.yaml``, the one place where defaults live, and every stage's ``*Config``.

Each stage's settings are a frozen dataclass **without defaults**: :func:`typed` builds it from its
params section, requires every key, refuses unknown ones and casts each value to the field's
type, so a value reaches the code with the type a user meant.  Range checks (:func:`require`)
run in each config's ``validate`` before the stage does any work.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

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


def seed(p: dict[str, Any]) -> int:
    """``base.seed``, the one seed every stage derives its randomness from."""
    value = section(p, "base").get("seed")
    require(
        isinstance(value, int) and not isinstance(value, bool) and value >= 0, "base.seed", "be an integer >= 0", value
    )
    return int(value)


def typed(cls: type, values: dict[str, Any], where: str, **fixed: Any) -> Any:
    """Build the dataclass ``cls`` from a params section, casting each value to its field's type.

    Field types (``int``, ``float``, ``str``, ``bool``, ``tuple[int, ...]``, ``tuple[float, ...]``)
    are read from the annotations; ``fixed`` fields are passed through.  Every other field must be
    in ``values`` and nothing else may be: a missing or unknown key stops the stage with a message
    naming it (``where`` is its section).  The config's ``validate()``, if it has one, runs last.
    """
    kinds = {f.name: f.type for f in dataclasses.fields(cls) if f.name not in fixed}
    unknown = set(values) - set(kinds)
    if unknown:
        raise ConfigError(f"unknown keys under {where}: {sorted(unknown)}")
    missing = set(kinds) - set(values)
    if missing:
        raise ConfigError(f"missing keys under {where}: {sorted(f'{where}.{k}' for k in missing)}")
    cfg = cls(**{k: _cast(_kind(kinds[k]), v, f"{where}.{k}") for k, v in values.items()}, **fixed)
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


def require(ok: bool, name: str, what: str, value: Any) -> None:
    """Raise :class:`~wss.errors.ConfigError` ``params.yaml: <name> must <what>, not <value>`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{name} must {what}, not {value!r}")


def _kind(annotation: Any) -> str:
    """``"int"``, ``"tuple[float, ...]"``...: the annotation as text, whether postponed or not."""
    if isinstance(annotation, str):
        return annotation
    return annotation.__name__ if isinstance(annotation, type) else str(annotation)


def _cast(kind: str, value: Any, name: str) -> Any:
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, not {value!r}")
        return value
    try:
        if kind.startswith("tuple"):
            item = int if "int" in kind else float
            if isinstance(value, (str, bytes, dict)):
                raise TypeError
            return tuple(_number(item, v) for v in (value or ()))
        if kind in ("int", "float"):
            return _number(int if kind == "int" else float, value)
        return {"str": str}[kind](value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be {kind}, not {value!r}") from exc


def _number(kind: type, value: Any) -> int | float:
    """``value`` as ``kind``; a bool, or a float with a fraction where an int is meant, is refused."""
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
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")  # train.precision
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
class DataConfig:
    """The ``data`` params section (its ``sample`` subsection is :class:`SampleConfig`)."""

    source: str  # one of SOURCES
    url: str  # where the download stage fetches the archive (when ``archive`` is empty; sbd: '' = the release)
    md5: str  # of the downloaded or given archive; empty = not checked
    archive: str  # a local .zip, .tar, .tar.gz or directory; when set, nothing is downloaded
    annotations: str  # coco: the instances JSON, yolo: the dataset yaml, relative to the dataset; '' = find it
    val_fraction: float  # share of images that go to val when the dataset has one split

    @classmethod
    def from_params(cls, section: dict) -> DataConfig:
        return typed(cls, {k: v for k, v in section.items() if k != "sample"}, "data")

    def validate(self) -> None:
        req = require
        req(self.source in SOURCES, "data.source", f"be one of {', '.join(SOURCES)}", self.source)
        req(0 <= self.val_fraction < 1, "data.val_fraction", "lie in [0, 1)", self.val_fraction)
        if self.source not in ("sample", "sbd"):
            req(
                bool(self.archive or self.url),
                "data.archive",
                f"name the {self.source} dataset (a local archive "
                f"or directory), or data.url its download, when data.source is {self.source}",
                self.archive,
            )


@dataclass(frozen=True)
class SampleConfig:
    """The ``data.sample`` params section."""

    n_train: int
    n_val: int
    min_side: int
    max_side: int
    max_instances: int
    min_object: float  # object size as a fraction of the image's shorter side
    max_object: float
    close_color_prob: float  # chance an object takes the colour of the background behind it
    clutter: int  # distractor blobs painted into the background
    noise_std: float
    jpeg_quality_min: int
    jpeg_quality_max: int
    min_visible: float  # drop an instance when occlusion leaves less than this share of it

    def validate(self) -> None:
        req = require
        req(
            self.n_train >= 1 and self.n_val >= 1,
            "data.sample.n_train and n_val",
            "be >= 1",
            (self.n_train, self.n_val),
        )
        req(
            32 <= self.min_side <= self.max_side,
            "data.sample.min_side",
            "satisfy 32 <= min_side <= max_side",
            (self.min_side, self.max_side),
        )
        req(self.max_instances >= 1, "data.sample.max_instances", "be >= 1", self.max_instances)
        req(
            0 < self.min_object <= self.max_object <= 1,
            "data.sample.min_object",
            "satisfy 0 < min_object <= max_object <= 1",
            (self.min_object, self.max_object),
        )
        req(0 <= self.close_color_prob <= 1, "data.sample.close_color_prob", "lie in [0, 1]", self.close_color_prob)
        req(
            self.clutter >= 0 and self.noise_std >= 0,
            "data.sample.clutter and noise_std",
            "be >= 0",
            (self.clutter, self.noise_std),
        )
        req(
            1 <= self.jpeg_quality_min <= self.jpeg_quality_max <= 100,
            "data.sample.jpeg_quality_min",
            "satisfy 1 <= min <= max <= 100",
            (self.jpeg_quality_min, self.jpeg_quality_max),
        )
        req(0 <= self.min_visible <= 1, "data.sample.min_visible", "lie in [0, 1]", self.min_visible)


@dataclass(frozen=True)
class ConvertConfig:
    """The ``convert`` params section."""

    max_reject_fraction: float  # share of images with a reject tolerated before the stage fails

    def validate(self) -> None:
        require(
            0 <= self.max_reject_fraction <= 1, "convert.max_reject_fraction", "lie in [0, 1]", self.max_reject_fraction
        )


@dataclass(frozen=True)
class BoundariesConfig:
    """The ``boundaries`` params section."""

    batch_size: int  # images per HED forward pass (padded to the batch's largest)

    def validate(self) -> None:
        require(self.batch_size >= 1, "boundaries.batch_size", "be >= 1", self.batch_size)


@dataclass(frozen=True)
class GrabCutConfig:
    """GrabCut's settings, from the ``labels`` params section."""

    method: str  # grabcut | grabcut_plus
    iterations: int
    roi_margin: float  # GrabCut runs on the box grown by this share of its size; < 0: whole image
    min_side: int  # the ROI is enlarged until the box's shorter side has this many pixels (0 = never)
    max_side: int  # ... and shrunk until the ROI's longer side has at most this many (0 = never)
    boundary_sigma: float  # grabcut_plus: pairwise weight gamma * exp(-hed^2 / (2 sigma^2))
    shape_prior: float  # grabcut_plus: unary pull toward the box's inscribed ellipse (0 = none)
    min_box_area: int
    min_box_side: int
    min_fg_fraction: float
    whole_image_band: float  # outer band of the box seeded as probable background
    fallback_shape: str

    def validate(self) -> None:
        req = require
        req(self.method in METHODS, "labels.method", f"be one of {', '.join(METHODS)}", self.method)
        req(self.min_side >= 0, "labels.min_side", "be >= 0", self.min_side)
        req(
            self.max_side == 0 or self.max_side >= max(16, self.min_side),
            "labels.max_side",
            "be 0 (no limit) or >= 16 and >= labels.min_side",
            self.max_side,
        )
        req(self.shape_prior >= 0, "labels.shape_prior", "be >= 0", self.shape_prior)
        req(self.boundary_sigma > 0, "labels.boundary_sigma", "be > 0", self.boundary_sigma)
        req(self.iterations >= 1, "labels.iterations", "be >= 1", self.iterations)
        req(self.min_box_area >= 1, "labels.min_box_area", "be >= 1", self.min_box_area)
        req(self.min_box_side >= 1, "labels.min_box_side", "be >= 1", self.min_box_side)
        req(0 <= self.min_fg_fraction <= 1, "labels.min_fg_fraction", "lie in [0, 1]", self.min_fg_fraction)
        req(0 < self.whole_image_band < 0.5, "labels.whole_image_band", "lie in (0, 0.5)", self.whole_image_band)
        req(
            self.fallback_shape in ("ellipse", "box"), "labels.fallback_shape", "be ellipse or box", self.fallback_shape
        )


@dataclass(frozen=True)
class LabelsConfig:
    """The ``labels`` params section (``n_jobs`` and ``scheduler`` change speed, never content);
    GrabCut's own settings sit flat in the same section and land in ``grabcut``."""

    crop_size: int  # side of the square training crop; a multiple of 16 (the network's stride)
    context_margin: float
    shard_size: int
    n_jobs: int
    scheduler: str  # '' | local:N | a Dask scheduler address (see wss.labels.scheduler)
    consensus_runs: int  # jittered GrabCuts per train instance for the grabcut_i labels; 0 = none
    consensus_jitter: float
    grabcut: GrabCutConfig

    @classmethod
    def from_params(cls, section: dict) -> LabelsConfig:
        mine = {f.name for f in dataclasses.fields(GrabCutConfig)}
        gc = typed(GrabCutConfig, {k: v for k, v in section.items() if k in mine}, "labels")
        return typed(cls, {k: v for k, v in section.items() if k not in mine}, "labels", grabcut=gc)

    def validate(self) -> None:
        req = require
        req(
            self.crop_size >= 16 and self.crop_size % 16 == 0,
            "labels.crop_size",
            "be a positive multiple of 16 (the network downsamples by 16)",
            self.crop_size,
        )
        req(self.context_margin >= 0, "labels.context_margin", "be >= 0", self.context_margin)
        req(self.shard_size >= 1, "labels.shard_size", "be >= 1", self.shard_size)
        req(self.n_jobs != 0, "labels.n_jobs", "be a worker count or negative (-1 = all cores)", self.n_jobs)
        wrong = check_scheduler(self.scheduler)
        req(wrong is None, "labels.scheduler", wrong, self.scheduler)
        req(self.consensus_runs >= 0, "labels.consensus_runs", "be >= 0", self.consensus_runs)
        req(0 <= self.consensus_jitter < 0.5, "labels.consensus_jitter", "lie in [0, 0.5)", self.consensus_jitter)


@dataclass(frozen=True)
class SurgeryConfig:
    """The ``surgery`` params section."""

    init: str  # hed | imagenet | random | path/to/vgg16_notop.weights.h5
    box_std: float  # std of the new box-channel filters of conv1_1

    def validate(self) -> None:
        require(self.box_std >= 0, "surgery.box_std", "be >= 0", self.box_std)
        require(bool(self.init), "surgery.init", "name hed, imagenet, random or a weights file", self.init)


@dataclass(frozen=True)
class TrainConfig:
    """The ``train`` params section (see ``params.yaml`` for the meaning of each key)."""

    labels: str
    holdout: str  # auto = only val instances with a ground-truth mask are held out | split = the train split alone
    rounds: int  # 1 = train once; n > 1 = n - 1 rounds of self-training after it (wss.net.selftrain)
    steps: int  # optimizer updates
    batch_size: int
    accum_steps: int  # batches whose gradients are averaged into one update
    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    ema: float  # > 0: the saved model holds the moving average of the weights with this momentum
    lr_boundaries: tuple[int, ...]  # updates
    lr_factors: tuple[float, ...]
    side_boundaries: tuple[int, ...]  # updates
    side_weights: tuple[float, ...]
    side_channels: int
    loss_reduction: str
    class_balance: bool
    iou_weight: float  # weight of the soft-IoU term on the fused output (0 = cross-entropy alone)
    skip_fallbacks: bool
    consensus_fg: float
    consensus_bg: float
    box_i_core: float
    flip: bool
    scale_jitter: float
    box_jitter: float
    shuffle_buffer: int
    checkpoint_every: int  # updates
    checkpoints_kept: int
    log_every: int  # updates
    device: str
    devices: str  # "auto" or a count; > 1 = data-parallel replicas (MirroredStrategy)
    precision: str  # auto | float32 | mixed_float16 | mixed_bfloat16
    jit_compile: bool
    deterministic: bool

    def validate(self) -> None:
        req = require
        if self.labels in RENAMED:
            raise ConfigError(
                f"train.labels: {self.labels} is now called {RENAMED[self.labels]} (the labels stage's "
                "masks, whichever labels.method made them)"
            )
        req(
            self.labels in TRAIN_LABELS,
            "train.labels",
            f"be one of {', '.join(TRAIN_LABELS)} (self-training: train.rounds)",
            self.labels,
        )
        req(
            self.holdout in ("auto", "split"),
            "train.holdout",
            "be auto (every box without a ground-truth mask "
            "teaches, whatever its split) or split (the train split alone)",
            self.holdout,
        )
        req(self.rounds >= 1, "train.rounds", "be >= 1 (1 = no self-training)", self.rounds)
        for name in (
            "steps",
            "batch_size",
            "accum_steps",
            "side_channels",
            "shuffle_buffer",
            "checkpoint_every",
            "checkpoints_kept",
            "log_every",
        ):
            req(getattr(self, name) >= 1, f"train.{name}", "be >= 1", getattr(self, name))
        req(self.optimizer in ("sgd", "adam"), "train.optimizer", "be sgd or adam", self.optimizer)
        req(self.lr > 0, "train.lr", "be > 0", self.lr)
        req(0 <= self.momentum < 1, "train.momentum", "lie in [0, 1)", self.momentum)
        req(self.weight_decay >= 0, "train.weight_decay", "be >= 0", self.weight_decay)
        req(0 <= self.ema < 1, "train.ema", "lie in [0, 1) (0 = off)", self.ema)
        req(
            len(self.lr_factors) == len(self.lr_boundaries) + 1,
            "train.lr_factors",
            "have one more entry than train.lr_boundaries",
            self.lr_factors,
        )
        req(
            len(self.side_weights) == len(self.side_boundaries) + 1,
            "train.side_weights",
            "have one more entry than train.side_boundaries",
            self.side_weights,
        )
        for name in ("lr_boundaries", "side_boundaries"):
            b = getattr(self, name)
            req(list(b) == sorted(set(b)) and all(x > 0 for x in b), f"train.{name}", "be increasing and > 0", b)
        req(all(f > 0 for f in self.lr_factors), "train.lr_factors", "be > 0", self.lr_factors)
        req(all(w >= 0 for w in self.side_weights), "train.side_weights", "be >= 0", self.side_weights)
        req(self.loss_reduction in ("mean", "sum"), "train.loss_reduction", "be mean or sum", self.loss_reduction)
        req(self.iou_weight >= 0, "train.iou_weight", "be >= 0 (0 = cross-entropy alone)", self.iou_weight)
        req(
            0 <= self.consensus_bg <= self.consensus_fg <= 1,
            "train.consensus_bg",
            "satisfy 0 <= consensus_bg <= consensus_fg <= 1",
            (self.consensus_bg, self.consensus_fg),
        )
        req(0 < self.box_i_core <= 1, "train.box_i_core", "lie in (0, 1]", self.box_i_core)
        req(0 <= self.scale_jitter < 1, "train.scale_jitter", "lie in [0, 1)", self.scale_jitter)
        req(0 <= self.box_jitter < 0.5, "train.box_jitter", "lie in [0, 0.5)", self.box_jitter)
        req(self.device in ("auto", "cpu", "gpu"), "train.device", "be auto, cpu or gpu", self.device)
        req(
            self.devices == "auto" or self.devices.isdigit() and int(self.devices) >= 1,
            "train.devices",
            "be auto or a number of devices >= 1",
            self.devices,
        )
        req(self.precision in PRECISIONS, "train.precision", f"be one of {', '.join(PRECISIONS)}", self.precision)
        req(
            not (self.jit_compile and self.deterministic),
            "train.jit_compile and train.deterministic",
            "not both be true (XLA has no deterministic max-pool gradient): set deterministic: false with XLA",
            (self.jit_compile, self.deterministic),
        )


CUT_PAIRWISE = ("colour", "hed")  # evaluate.cut_pairwise


@dataclass(frozen=True)
class EvaluateConfig:
    """The ``evaluate`` params section (``predict`` uses its ``threshold`` and ``flip`` too)."""

    threshold: float  # on the predicted probability
    boundary_tolerance: float
    batch_size: int
    n_overlays: int
    flip: bool  # average with the mirrored crop's prediction
    refine: bool  # the model's masks through the refinement cut (wss.evaluation.refine)
    cut_pairwise: str  # the refinement cut's pairwise term: colour | hed (the boundaries stage's maps)
    cut_gamma: float  # its weight, against unaries of -log p nats
    cut_sigma: float  # hed: exp(-hed^2 / (2 sigma^2))
    cut_max_side: int  # a box larger than this is cut at this size (0 = full resolution)
    trust_min_instances: int  # a network that learnt from fewer instances is weak (wss.evaluation.trust)
    trust_agreement: tuple[float, ...]  # (weak below, trusted in full from): its agreement with the teacher

    def validate(self) -> None:
        req = require
        req(self.trust_min_instances >= 0, "evaluate.trust_min_instances", "be >= 0", self.trust_min_instances)
        req(
            len(self.trust_agreement) == 2 and 0 <= self.trust_agreement[0] <= self.trust_agreement[1] <= 1,
            "evaluate.trust_agreement",
            "be two numbers [weak below, trusted from] with 0 <= weak <= trusted <= 1",
            list(self.trust_agreement),
        )
        req(
            self.cut_pairwise in CUT_PAIRWISE,
            "evaluate.cut_pairwise",
            f"be one of {', '.join(CUT_PAIRWISE)}",
            self.cut_pairwise,
        )
        req(self.cut_gamma >= 0, "evaluate.cut_gamma", "be >= 0", self.cut_gamma)
        req(self.cut_sigma > 0, "evaluate.cut_sigma", "be > 0", self.cut_sigma)
        req(
            self.cut_max_side == 0 or self.cut_max_side >= 16,
            "evaluate.cut_max_side",
            "be 0 or >= 16",
            self.cut_max_side,
        )
        req(0 < self.threshold < 1, "evaluate.threshold", "lie in (0, 1)", self.threshold)
        req(self.boundary_tolerance > 0, "evaluate.boundary_tolerance", "be > 0", self.boundary_tolerance)
        req(self.batch_size >= 1, "evaluate.batch_size", "be >= 1", self.batch_size)
        req(self.n_overlays >= 0, "evaluate.n_overlays", "be >= 0", self.n_overlays)


EXPORT_MASKS = ("model", "teacher", "fused")  # export.masks (see wss.evaluation.refine)


@dataclass(frozen=True)
class ExportConfig:
    """The ``export`` params section."""

    masks: str  # which masks fill the user's own files: the model's, the teacher's or the two fused
    review: int  # cards in the review gallery, lowest quality first (0 = none)

    def validate(self) -> None:
        require(self.masks in EXPORT_MASKS, "export.masks", f"be one of {', '.join(EXPORT_MASKS)}", self.masks)
        require(self.review >= 0, "export.review", "be >= 0", self.review)
