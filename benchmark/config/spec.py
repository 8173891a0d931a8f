"""The job spec: every experimental parameter of DESIGN.md as typed, validated configuration.

A job file is validated into a ``JobSpec`` before any work starts, so that a typo in a key,
an unknown model or a wrong type fails at once with the key path and the allowed values.
Defaults are the paper's settings; the per-model randomization defaults live in
``benchmark.models.registry`` next to the models they describe.
"""

from __future__ import annotations

import re
import typing
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, WrapValidator, field_validator, model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

DatasetKind = Literal["samples", "synthetic", "imagenet", "coco", "voc", "digits"]
RandomizationMode = Literal["top_down", "independent", "bottom_up", "split"]
TargetPolicy = Literal["label", "original_prediction", "own_prediction"]
Reduction = Literal["sum", "mean", "l2"]
Normalization = Literal["second_moment", "max_abs", "none"]
DataRangeRule = Literal["joint", "reference"]
Precision = Literal["auto", "fp32", "tf32"]
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+=-]*$")  # a model or method id: a partition value, a file-name part


def key_error(key: str, value: Any, message: str) -> ValidationError:
    """A problem a section's validator finds with one of its keys, reported under that key's path."""
    error = PydanticCustomError("value_error", "{message}", {"message": message})
    return ValidationError.from_exception_data("spec", [{"type": error, "loc": (key,), "input": value}])


class StrictModel(BaseModel):
    """Base for every spec section: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class ModelSpec(StrictModel):
    """The model: one of the registered architectures, a library's model, or a user's factory (DESIGN §3).

    ``name`` is checked against the registries of ``benchmark.models.registry`` (the paper's five,
    ``torchvision:<builder>``, ``timm:<model>``) or is a code reference ``path/to/file.py:build`` /
    ``package.module:build``; a factory is imported when the model is built, before any work.
    """

    name: str = Field(
        ...,
        description="resnet50, resnet34, vgg16, densenet121, efficientnet-b0; torchvision:<builder> (any torchvision "
        "classification model); timm:<model>; or a factory returning an nn.Module: path/to/file.py:build or "
        "package.module:build.",
    )
    label: str | None = Field(
        None, description="The model's id in the results (the 'model' column and partition); default from the name."
    )
    weights: str = Field(
        "imagenet",
        description="'imagenet' (the library's pretrained weights, through its cache: torchvision's DEFAULT weights, "
        "timm's default tag), a torchvision weights enum name such as 'IMAGENET1K_V2' or a timm tag, 'random' (the "
        "library's or factory's own initialisation under weights_seed), a path to a state-dict file, or 'testbed' "
        "(tiny-resnet only: the trained-network test bed, trained on the digits once per machine and cached). "
        "Default 'imagenet', 'random' for a factory.",
    )
    weights_seed: int = Field(0, description="Seed of the library's own initialisation when weights='random'.")
    num_classes: int | None = Field(
        None, ge=1, description="Output classes; default from the dataset (ImageNet 1000, COCO 80, VOC 20)."
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments of the builder or factory (torchvision:, timm:, file/module factories), "
        "e.g. {image_size: 32} for torchvision:vit_b_16.",
    )
    mean: list[float] | None = Field(
        None, min_length=1, description="Per-channel input mean the model expects; default the weights' (ImageNet's)."
    )
    std: list[float] | None = Field(
        None, min_length=1, description="Per-channel input std the model expects; default the weights' (ImageNet's)."
    )

    @model_validator(mode="before")
    @classmethod
    def _factory_default_weights(cls, data: Any) -> Any:
        if isinstance(data, dict) and "weights" not in data and isinstance(data.get("name"), str):
            from ..models.registry import is_factory_name

            if is_factory_name(data["name"]):
                data = {**data, "weights": "random"}
        return data

    @field_validator("name")
    @classmethod
    def _registered(cls, value: str) -> str:
        from ..models.registry import check_model_name

        check_model_name(value)
        return value

    @field_validator("label")
    @classmethod
    def _safe_label(cls, value: str | None) -> str | None:
        if value is not None and not SAFE_ID.match(value):
            raise ValueError("a model label is a folder name in the output: letters, digits and . _ - : + = only")
        return value

    @field_validator("std")
    @classmethod
    def _positive_std(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and min(value) <= 0:
            raise ValueError(f"std must be positive, got {value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "ModelSpec":
        from ..models.registry import MODELS, is_factory_name

        if self.kwargs and self.name in MODELS:
            raise key_error("kwargs", self.kwargs, f"the built-in model '{self.name}' takes no keyword arguments")
        if is_factory_name(self.name) and (self.weights == "imagenet" or self.weights.isupper()):
            raise key_error(
                "weights", self.weights,
                "a factory model takes 'random' (what the factory builds, under weights_seed; weights it loads "
                "itself are kept) or a state-dict file, not a library's pretrained weights",
            )
        if self.mean is not None and self.std is not None and len(self.mean) != len(self.std):
            raise key_error("std", self.std, f"has {len(self.std)} values, model.mean {len(self.mean)}")
        return self

    @property
    def model_id(self) -> str:
        """The model's id in the results: the label, else the name made fit for a folder
        (``torchvision:resnet18`` -> ``torchvision-resnet18``, ``nets/tiny.py:build`` -> ``tiny-build``,
        ``mypkg.nets:build`` -> ``mypkg.nets-build``)."""
        if self.label:
            return self.label
        from ..models.registry import MODEL_SOURCES, is_factory_name
        from ..usercode import parse_ref

        scheme, sep, rest = self.name.partition(":")
        if sep and scheme in MODEL_SOURCES:
            name = f"{scheme}-{rest}"
        elif is_factory_name(self.name):
            ref = parse_ref(self.name)
            name = f"{ref.stem if ref.is_file else ref.target}-{ref.attribute}" if ref else self.name
        else:
            name = self.name
        return re.sub(r"[^A-Za-z0-9._+=-]+", "-", name)


class DatasetSpec(StrictModel):
    """Which images, in which canonical order, preprocessed how (DESIGN §8).

    Canonical orders: ImageNet sorted by file name (across class folders), COCO by image id,
    VOC in the order of ``ImageSets/Main/<split>.txt``. Relative file paths are relative to ``root``.
    """

    kind: DatasetKind
    root: str | None = Field(
        None,
        description="Dataset root folder. imagenet: the folder holding '<split>/' (class folders or flat files) "
        "or the images themselves; coco: the folder holding 'annotations/' and '<split>2017/'; voc: the "
        "'VOC2007'/'VOC2012' folder (or a folder holding exactly one of them).",
    )
    split: str = Field(
        "val",
        description="Split: ImageNet sub-folder, COCO '<split>2017', VOC ImageSets/Main/<split>.txt, digits 'val' or 'train'.",
    )
    offset: int = Field(0, ge=0, description="Images skipped at the start of the canonical order.")
    limit: int | None = Field(None, ge=1, description="Images used after the offset; all when null.")
    shard_size: int = Field(32, ge=1, description="Images per shard: the unit of scheduling, writing and resume.")
    resize: int | None = Field(
        None, ge=8, description="Shorter side after resizing; default crop*256/224 (ImageNet, samples) or crop (COCO, VOC)."
    )
    crop: int = Field(
        224, ge=32, description="Centre-crop size: the model's input size (digits: 32 unless set, the images' own size)."
    )
    labels_file: str | None = Field(
        None,
        description="imagenet, flat folder: the labels, either Kaggle's LOC_val_solution.csv or a text file of "
        "'<file name> <class index or wnid>' lines. Default: LOC_val_solution.csv next to the images or in root.",
    )
    class_list: str | None = Field(
        None,
        description="imagenet: file of wnids in class-index order (first token of each line, so "
        "LOC_synset_mapping.txt works). Default: the standard 1000 ILSVRC-2012 wnids, sorted.",
    )
    images_dir: str | None = Field(
        None, description="imagenet/coco: the image folder; default '<root>/<split>' (coco: '<root>/<split>2017')."
    )
    annotation_file: str | None = Field(
        None, description="coco: the instances file; default '<root>/annotations/instances_<split>2017.json'."
    )
    box_fraction: float = Field(
        0.4,
        gt=0,
        le=1,
        description="coco/voc: a class is a positive label of the centre crop when the crop holds at least this "
        "fraction of the area of one of its boxes (supplement A.3), measured in the resized image.",
    )
    skip_flagged_boxes: bool = Field(
        False, description="coco/voc: ignore COCO 'iscrowd' and VOC 'difficult' boxes when deriving crop labels."
    )
    read_timeout: float = Field(
        60.0, gt=0, description="Seconds one image file may take to read (a hung network mount); then it becomes an "
        "error row and the shard goes on."
    )
    synthetic_images: int = Field(8, ge=1, description="Number of images of the synthetic dataset.")
    synthetic_seed: int = 0

    @model_validator(mode="after")
    def _digits_at_their_own_size(self) -> "DatasetSpec":
        if self.kind == "digits" and "crop" not in self.model_fields_set:
            self.crop = 32
        if self.kind == "digits" and self.split not in ("val", "train"):
            raise ValueError(f"dataset.split: the digits dataset has splits val and train, not '{self.split}'")
        return self

    @model_validator(mode="after")
    def _root_required(self) -> "DatasetSpec":
        if self.kind in ("imagenet", "coco", "voc") and not self.root:
            raise ValueError(f"dataset.root is required for dataset kind '{self.kind}' (set it with --set dataset.root=PATH)")
        for key, kinds in _KIND_SPECIFIC_KEYS.items():
            if getattr(self, key) is not None and self.kind not in kinds:
                raise ValueError(f"dataset.{key} is only used with dataset kind {' or '.join(kinds)}, not '{self.kind}'")
        return self


# Optional dataset keys that mean something for some kinds only: setting one elsewhere is a mistake.
_KIND_SPECIFIC_KEYS: dict[str, tuple[str, ...]] = {
    "labels_file": ("imagenet",),
    "class_list": ("imagenet",),
    "images_dir": ("imagenet", "coco"),
    "annotation_file": ("coco",),
}


class RandomizationSpec(StrictModel):
    enabled: bool = True
    mode: RandomizationMode = "top_down"
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    head: str | None = Field(None, description="Name of the classifier head module; default per model.")
    boundary: str | None = Field(None, description="Regex of boundary module names; default per model.")
    every: int | None = Field(None, ge=1, description="Every k-th boundary match ends a stage; default per model.")
    max_boundaries: int | None = Field(
        None, ge=0, description="Stop after this many boundary matches (the paper's 16 / 63 / 17); default per model."
    )
    split_after: str | None = Field(None, description="split mode: keep modules up to and including this one.")
    layers: list[str] | None = Field(
        None, description="independent mode: explicit modules, one stage each (e.g. ResNet-34 'layer4.2.conv2')."
    )
    reset_batchnorm: bool = Field(False, description="Also reset BatchNorm (weight 1, bias 0, running stats 0/1).")
    target: TargetPolicy = "label"

    @field_validator("boundary")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as error:
                raise ValueError(f"not a valid regular expression: {error}") from None
        return value

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError(f"seeds must be distinct, got {value}")
        return value

    @model_validator(mode="after")
    def _mode_arguments(self) -> "RandomizationSpec":
        if self.mode == "split" and not self.split_after:
            raise ValueError("randomization.split_after is required when mode is 'split'")
        if self.layers is not None and self.mode != "independent":
            raise ValueError("randomization.layers is only used with mode 'independent'")
        return self


class MethodBase(StrictModel):
    """What every method section has. The method behind a ``name`` is found in the registry of
    ``benchmark.attribution`` (``METHODS`` and its name patterns); each registered method names
    the spec class its section is validated with."""

    TAG: ClassVar[str | None] = None  # the kind of method, for specs whose name is a pattern (captum:<Class>)

    label: str | None = Field(None, description="Name of this method in the results; default derived from its settings.")
    reduction: Reduction = "sum"

    @property
    def method_id(self) -> str:
        return self.label or self.default_label()

    def default_label(self) -> str:
        return self.name  # type: ignore[attr-defined]

    @classmethod
    def tag(cls) -> str:
        """The name this spec class stands for: its ``name`` literal, or ``TAG`` for name patterns."""
        args = typing.get_args(cls.model_fields["name"].annotation) if "name" in cls.model_fields else ()
        return str(args[0]) if len(args) == 1 else (cls.TAG or cls.__name__)

    @field_validator("label")
    @classmethod
    def _safe_label(cls, value: str | None) -> str | None:
        if value is not None and not SAFE_ID.match(value):
            raise ValueError("a method label names files and figures: letters, digits and . _ - : + = only")
        return value


class GradientSpec(MethodBase):
    name: Literal["gradient"]


class GradientInputSpec(MethodBase):
    name: Literal["gradient_x_input"]


class IntegratedGradientsSpec(MethodBase):
    name: Literal["integrated_gradients"]
    steps: int = Field(32, ge=1)
    baseline: Literal["zero"] = "zero"
    rule: Literal["riemann_middle", "riemann_left", "riemann_right", "riemann_trapezoid", "gausslegendre"] = Field(
        "riemann_middle",
        description="Quadrature of the path integral (Captum's names). riemann_trapezoid is the trapezoid rule on "
        "linspace(0, 1, steps), weights summing to one (Captum's weights sum to (steps-1)/steps).",
    )

    @model_validator(mode="after")
    def _enough_steps(self) -> "IntegratedGradientsSpec":
        if self.rule == "riemann_trapezoid" and self.steps < 2:
            raise ValueError("the riemann_trapezoid rule needs steps >= 2")
        return self

    def default_label(self) -> str:
        return f"integrated_gradients_{self.steps}"


class SmoothGradSpec(MethodBase):
    name: Literal["smoothgrad"]
    samples: int = Field(20, ge=1)
    noise_level: float = Field(
        0.1, gt=0, description="Noise std as a fraction of each image's max - min, in the model's (normalized) input space."
    )
    seed: int = Field(0, description="Noise seed; the noise is a pure function of (image, seed), the same at every stage.")


class GuidedBackpropSpec(MethodBase):
    name: Literal["guided_backprop"]


class LRPSpec(MethodBase):
    name: Literal["lrp"]
    composite: str = Field(
        "epsilon_plus_flat", description="A composite registered in benchmark.attribution.lrp.COMPOSITES."
    )
    epsilon: float = Field(
        1e-6, gt=0, description="Stabiliser of the epsilon rule (and of the adaptive_beta rule's denominators)."
    )
    gamma: float = Field(0.25, ge=0, description="Gamma of the gamma rule.")
    gamma_start: float = Field(1.0, ge=0, description="vgg_paper: gamma at the first convolution.")
    gamma_end: float = Field(0.01, ge=0, description="vgg_paper: gamma at the last convolution.")
    beta_max: float = Field(3.0, ge=0, description="adaptive_beta: the cap of beta.")
    beta_formula: Literal["ratio", "printed"] = Field(
        "ratio", description="adaptive_beta: n/(p-n) (supplement eq. 1) or the printed eq. 2, n/(p+n)."
    )
    output_relevance: Literal["one", "logit"] = Field(
        "one",
        description="Relevance put on the target output: 1 (zennit's and Quantus' convention, how the gradient "
        "family is seeded; DESIGN §4) or its logit (input relevance then sums to the logit where the rules "
        "conserve, but a randomized model's negative target logit flips the sign of the whole map: "
        "docs/lrp-seeding.md). 'logit' adds '_logit' to the method's default label.",
    )

    @field_validator("composite")
    @classmethod
    def _registered_composite(cls, value: str) -> str:
        from ..attribution.lrp import COMPOSITES

        if value not in COMPOSITES:
            raise ValueError(f"Input should be {_choices(COMPOSITES)}")
        return value

    @model_validator(mode="after")
    def _positive_gamma_ends(self) -> "LRPSpec":
        if self.composite == "vgg_paper" and min(self.gamma_start, self.gamma_end) <= 0:
            raise ValueError("vgg_paper decays gamma exponentially: gamma_start and gamma_end must be positive")
        return self

    def default_label(self) -> str:
        return f"lrp_{self.composite}" + ("_logit" if self.output_relevance == "logit" else "")


class NoiseSpec(MethodBase):
    name: Literal["noise"]
    seed: int = 0

    def default_label(self) -> str:
        return "noise"


class CaptumSpec(MethodBase):
    """A Captum attribution class, ``captum:<Class>`` (e.g. ``captum:Saliency``, ``captum:LayerGradCam``).

    ``args`` go to the class's constructor (a layer method's ``layer`` is a module name of the
    model) or to its ``attribute`` call, whichever takes them. Layer attributions are upsampled to
    the input size. Captum is the optional extra ``[captum]``.
    """

    TAG: ClassVar[str | None] = "captum"

    name: str = Field(..., pattern=r"^captum:[A-Za-z_][A-Za-z0-9_]*$", description="captum:<AttributionClass>")
    args: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments of the class's constructor and of its attribute() call."
    )
    upsample: Literal["bilinear", "nearest"] = Field(
        "bilinear", description="Layer methods: how the layer's attribution is resized to the input."
    )


class DeclaredPasses(StrictModel):
    """Model passes per image of one call, when the method's author knows them (speed accounting)."""

    forward: int = Field(..., ge=0)
    backward: int = Field(..., ge=0)


class CallableSpec(MethodBase):
    """A user's function ``(model, inputs, targets, **args) -> maps`` (Quantus' ``explain_func``
    convention), named ``package.module:function`` or ``path/to/file.py:function``."""

    TAG: ClassVar[str | None] = "callable"

    name: str = Field(..., description="package.module:function or path/to/file.py:function")
    args: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments passed on every call.")
    arrays: Literal["torch", "numpy"] = Field(
        "torch", description="torch: device tensors in and out; numpy: host arrays (as Quantus passes them)."
    )
    passes: DeclaredPasses | None = Field(
        None, description="Forward/backward passes per image of one call, for the speed accounting; unknown if null."
    )

    @field_validator("name")
    @classmethod
    def _reference(cls, value: str) -> str:
        from ..usercode import parse_ref

        if parse_ref(value) is None:
            raise ValueError("expected package.module:function or path/to/file.py:function")
        return value

    def default_label(self) -> str:
        return self.name.rsplit(":", 1)[1]


def _choices(names: typing.Iterable[str]) -> str:
    quoted = [f"'{name}'" for name in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _validate_method(value: Any, handler: Any) -> MethodBase:
    """A method section, validated with the spec class its ``name`` is registered with."""
    if isinstance(value, MethodBase):
        return value
    if not isinstance(value, dict):
        raise PydanticCustomError("method_type", "a method is a mapping with a name, e.g. {{name: gradient}}")
    name = value.get("name")
    from ..attribution.base import allowed_method_names, method_spec_type

    spec_type = method_spec_type(name) if isinstance(name, str) else None
    if spec_type is None:
        kind = "missing" if name is None else "unknown_method"
        message = "required key is missing" if name is None else f"unknown method; allowed: {allowed_method_names()}"
        error = PydanticCustomError(kind, "{message}", {"message": message})
        raise ValidationError.from_exception_data("method", [{"type": error, "loc": ("name",), "input": name}])
    try:
        return spec_type.model_validate(value)
    except ValidationError as error:  # the same problems, under the method kind (how error paths find its keys)
        details = [
            {"type": item["type"], "loc": (spec_type.tag(), *item["loc"]), "input": item.get("input"),
             **({"ctx": item["ctx"]} if "ctx" in item else {})}
            for item in error.errors()
        ]
        raise ValidationError.from_exception_data(error.title, details) from None


class RegisteredMethods:
    """Marks the methods list for ``config.load``: its entries are the registered spec classes."""

    @staticmethod
    def models() -> list[type[MethodBase]]:
        from ..attribution.base import method_spec_types

        return method_spec_types()


MethodSpec = Annotated[SerializeAsAny[MethodBase], WrapValidator(_validate_method), RegisteredMethods()]


class SSIMSpec(StrictModel):
    """Settings of skimage.metrics.structural_similarity that our batched SSIM reproduces."""

    win_size: int | None = Field(
        7,
        ge=3,
        description="Window side (odd): filter size for uniform weights, border crop and sample-covariance "
        "factor for both. None is skimage's own default: 7 for uniform weights, 2*int(truncate*sigma+0.5)+1 "
        "(11 for sigma 1.5) for Gaussian weights.",
    )
    gaussian_weights: bool = False
    sigma: float = Field(1.5, gt=0)
    truncate: float = Field(3.5, gt=0, description="Gaussian radius in sigmas; skimage's SSIM hard-codes 3.5.")
    k1: float = Field(0.01, gt=0)
    k2: float = Field(0.03, gt=0)
    data_range: DataRangeRule | float = Field(
        "joint", description="'joint': max-min over both maps; 'reference': max-min of the stage-0 map; or a number."
    )
    use_sample_covariance: bool = True

    @field_validator("win_size")
    @classmethod
    def _odd(cls, value: int | None) -> int | None:
        if value is not None and value % 2 == 0:
            raise ValueError(f"win_size must be odd, got {value}")
        return value

    @field_validator("data_range")
    @classmethod
    def _positive_range(cls, value: DataRangeRule | float) -> DataRangeRule | float:
        if not isinstance(value, str) and not (0 < value < float("inf")):
            raise ValueError(f"a constant data_range must be positive and finite, got {value}")
        return value


def _registered_metrics() -> dict:
    """The similarity metrics registry (``benchmark.metrics``; imported here lazily: it needs torch)."""
    from ..metrics import METRICS

    return METRICS


def _default_similarities() -> list[str]:
    from ..metrics import default_metrics

    return default_metrics()


class MetricsSpec(StrictModel):
    similarities: list[str] = Field(
        default_factory=_default_similarities,
        min_length=1,
        description="Registered similarity metrics (benchmark.metrics.register_metric); default the paper's "
        "ssim, mse, spearman.",
    )
    normalizations: list[Normalization] = Field(default_factory=lambda: ["second_moment", "max_abs", "none"], min_length=1)
    absolute: list[bool] = Field(default_factory=lambda: [False, True], min_length=1)
    ssim: SSIMSpec = Field(default_factory=SSIMSpec)

    @field_validator("similarities")
    @classmethod
    def _registered(cls, value: list[str]) -> list[str]:
        registered = _registered_metrics()
        unknown = [name for name in value if name not in registered]
        if unknown:
            raise ValueError(f"unknown similarity {', '.join(map(repr, unknown))}; allowed: {', '.join(registered)}")
        if len(set(value)) != len(value):
            raise ValueError(f"similarities must be distinct, got {value}")
        return value


class OcclusionSpec(StrictModel):
    enabled: bool = True
    kernels: list[int] = Field(default_factory=lambda: [15, 8], min_length=1)
    steps: int = Field(30, ge=1)
    blur_kernel: int = Field(15, ge=1)
    blur_padding: Literal["reflect", "replicate"] = "reflect"
    orders: list[Literal["mif", "lif"]] = Field(
        default_factory=lambda: ["mif"],
        min_length=1,
        description="Occlusion orders: mif (most relevant tiles first, the paper's) and lif (least relevant first); "
        "both give the symmetric relevance gain SRG = mean(LIF curve) - mean(MIF curve) (Bluecher et al. 2024). "
        "Each order is one more batch of forwards per method.",
    )
    imputers: list[Literal["blur", "mean"]] = Field(
        default_factory=lambda: ["blur"],
        min_length=1,
        description="What replaces an occluded tile: blur (the blurred copy, supplement A.1) and/or mean (the "
        "image's per-channel mean colour).",
    )

    @field_validator("kernels", "orders", "imputers")
    @classmethod
    def _distinct(cls, value: list) -> list:
        if len(set(value)) != len(value):
            raise ValueError(f"values must be distinct, got {value}")
        return value


class MapOutputSpec(StrictModel):
    """Whether an experiment also writes its attribution maps (table ``maps``, float16)."""

    save_maps: bool = Field(False, description="Write this experiment's 2-D maps to the 'maps' table (float16).")
    map_size: int | None = Field(
        None, ge=1, description="Side of the saved maps (area-averaged); null keeps the input size."
    )


class ActivationsSpec(StrictModel):
    """Activation statistics of the trained model (supplement I, J; DESIGN §7)."""

    enabled: bool = False
    layers: str | None = Field(
        None,
        description="Regex of the modules whose outputs are the 'layers'; default per model family: residual "
        "blocks (ResNet 'layerX.Y', EfficientNet '_blocks.K'), DenseNet's dense-layer inputs after ReLU "
        "('...denselayerN.relu1', transitions, final ReLU), VGG's ReLUs in 'features'.",
    )


class LogitsSpec(StrictModel):
    """Logit preservation under randomization (paper §4.2, Fig. 5), over the randomization plan's stages."""

    enabled: bool = False


class SkipPathSpec(MapOutputSpec):
    """LRP relevance through a residual block's skip connection vs its residual branch (paper §4.2, Fig. 7)."""

    enabled: bool = False
    block: str = Field(
        "layer4.2", description="Residual block whose sum is split (ResNet 'layerX.Y', EfficientNet '_blocks.K')."
    )


class KeptActivationSpec(MapOutputSpec):
    """Explanation of the sum of the kept layer's activations (paper §4.1, Fig. 4 bottom left)."""

    enabled: bool = False
    layer: str | None = Field(
        None, description="Module whose output activations are explained; default randomization.split_after."
    )


class RuntimeSpec(StrictModel):
    device: str = Field("auto", description="'auto', 'cpu', 'cuda' or 'cuda:N'.")
    # Execution settings: 'auto' (the default) is decided by a short probe at the start of a run, on the run's
    # model, input size, device and method mix (benchmark/models/tuning.py), recorded in the manifest and reused
    # by every worker and on every resume; an explicit value is used as given.
    precision: Precision = Field(
        "auto", description="Matmul precision on GPU: tf32, strict fp32, or 'auto' (tf32 where the probe measures it "
        "faster). No effect on a CPU."
    )
    batch_size: int = Field(
        16,
        ge=1,
        description="Images per device batch inside a shard. Part of the spec hash: which images share a "
        "convolution's batch changes the last bits of its results (the library picks its kernels by batch size).",
    )
    chunk_size: int | Literal["auto"] = Field(
        "auto",
        description="Most inputs in one forward/backward pass (images, IG steps, SmoothGrad samples, occlusion "
        "steps): 'auto' is chosen by the probe (on a GPU up to what memory allows). Changes the last bits of results.",
    )
    channels_last: bool | Literal["auto"] = Field(
        "auto",
        description="Convolutions in channels-last (NHWC) memory layout, or the default (NCHW) layout: same numbers "
        "to float rounding; which is faster depends on model, input size and device ('auto': the probe decides).",
    )
    reuse_bottom_forward: bool | Literal["auto"] = Field(
        "auto",
        description="Record the plain gradient pass of the trained model once per batch and, in every randomized "
        "stage, recompute only the modules from the first randomized one on (same numbers; 'auto': on unless the "
        "probe measures a replayed pass no faster than a fresh one).",
    )
    fold_batchnorm: bool | Literal["auto"] = Field(
        "auto",
        description="Forward passes that need no gradient (occlusion curves) run through a copy of the model with "
        "each BatchNorm folded into the convolution before it: same numbers to float rounding ('auto': on where "
        "the probe measures it faster; gradients always go through the model itself).",
    )
    threads: int | Literal["auto"] = Field(
        "auto",
        description="torch intra-op CPU threads of every worker (the inline run and each Ray actor), whatever the "
        "machine. torch splits float reductions across its threads, so the thread count changes the last bits of "
        "results: fixed for the whole run, numbers do not depend on where they ran. 'auto': the probe chooses "
        "between 1 and the CPUs a worker may use (runtime.num_cpus, default 1, so 1 thread).",
    )
    tuning_seconds: float = Field(
        30.0,
        ge=0,
        description="Budget of the probe that decides the 'auto' execution settings at the start of a run (each "
        "kind of pass is measured at least once in each layout, and a close call between the layouts is timed "
        "once more); 0: no probe, fixed fallbacks.",
    )
    num_gpus: float = Field(1.0, ge=0, description="GPUs per actor (fractions allowed; 0 on CPU clusters).")
    num_cpus: float = Field(1.0, ge=0, description="CPUs per actor.")
    actors: int | None = Field(
        None, ge=1, description="Number of Ray actors; default one per num_gpus GPUs (CPU-only: per num_cpus CPUs) of the alive nodes."
    )
    in_flight: int = Field(2, ge=1, description="Shards queued per Ray actor, so the next one is there when the current one ends.")
    max_attempts: int = Field(3, ge=1, description="Attempts per shard before it is recorded as failed.")
    save_maps: int = Field(0, ge=0, description="Save attribution maps of the first N images of the run (float16).")

    @field_validator("chunk_size")
    @classmethod
    def _positive_chunk(cls, value: int | str) -> int | str:
        if value != "auto" and value < 1:
            raise ValueError(f"chunk_size must be 'auto' or at least 1, got {value}")
        return value

    @field_validator("threads")
    @classmethod
    def _positive_threads(cls, value: int | str) -> int | str:
        if value != "auto" and value < 1:
            raise ValueError(f"threads must be 'auto' or at least 1, got {value}")
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", value):
            raise ValueError(f"device must be one of auto, cpu, cuda, cuda:N, mps; got '{value}'")
        return value


class ExperimentSection(StrictModel):
    """Base of a new experiment's spec section: ``enabled`` switches the experiment on."""

    enabled: bool = False

    def check_job(self, spec: "JobSpec") -> list[tuple[str, str]]:
        """What this section needs of the rest of the job, as (key in the section or '', problem) pairs;
        reported with the job's other validation errors (key path ``<section>.<key>``)."""
        return []


# Spec sections of experiments registered by code (``benchmark.experiments.register_experiment``),
# beyond the paper's, which ``JobSpec`` declares itself. A job may name any of them; absent, its
# section has its defaults (``JobSpec.section``) and does not enter the spec's dump or hash.
SECTIONS: dict[str, type[StrictModel]] = {}


def register_section(name: str, section: type[StrictModel]) -> None:
    """Let jobs carry a top-level section ``name`` validated by ``section``."""
    if name in JobSpec.model_fields:
        declared = JobSpec.model_fields[name].annotation
        if declared is not section:
            raise ValueError(f"spec section '{name}' is declared by JobSpec as {declared}, not {section.__name__}")
        return
    SECTIONS[name] = section


def unregister_section(name: str) -> None:
    SECTIONS.pop(name, None)


def _error_details(error: ValidationError, prefix: tuple[Any, ...] = ()) -> list[InitErrorDetails]:
    """The problems of ``error`` to raise again (under ``prefix``), each with its type and its message as
    it was (also for custom error types, e.g. a registry's 'unknown_method')."""
    return [
        InitErrorDetails(type=PydanticCustomError(item["type"], item["msg"]), loc=prefix + tuple(item["loc"]),
                         input=item["input"])
        for item in error.errors()
    ]


class JobSpec(StrictModel):
    model_config = ConfigDict(extra="allow", validate_assignment=True, frozen=False)  # extras: registered sections only

    name: str = Field(..., min_length=1)
    description: str = ""
    model: ModelSpec
    dataset: DatasetSpec
    randomization: RandomizationSpec = Field(default_factory=RandomizationSpec)
    methods: list[MethodSpec] = Field(..., min_length=1)
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)
    occlusion: OcclusionSpec = Field(default_factory=OcclusionSpec)
    activations: ActivationsSpec = Field(default_factory=ActivationsSpec)
    logits: LogitsSpec = Field(default_factory=LogitsSpec)
    skip_path: SkipPathSpec = Field(default_factory=SkipPathSpec)
    kept_activation_explanation: KeptActivationSpec = Field(default_factory=KeptActivationSpec)
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
    output: str | None = Field(None, description="Output URI (local path, s3://, gs://); --out overrides.")

    @model_validator(mode="after")
    def _unique_method_ids(self) -> "JobSpec":
        ids = [method.method_id for method in self.methods]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(
                f"methods: two methods share the name {duplicates}; give them distinct 'label' values"
            )
        return self

    @model_validator(mode="after")
    def _testbed_weights_fit(self) -> "JobSpec":
        if self.model.weights == "testbed" and (self.model.name != "tiny-resnet" or self.num_classes() != 10):
            raise ValueError(
                "model.weights 'testbed' is the tiny-resnet trained on the 10 digit classes: use it with "
                f"model.name tiny-resnet and 10 classes (got {self.model.name} with {self.num_classes()} classes)"
            )
        return self

    @model_validator(mode="after")
    def _experiments_have_what_they_need(self) -> "JobSpec":
        kept = self.kept_activation_explanation
        if kept.enabled and kept.layer is None and self.randomization.split_after is None:
            raise ValueError(
                "kept_activation_explanation.layer is required unless randomization.split_after names the kept layer"
            )
        has_lrp = any(method.name == "lrp" for method in self.methods)
        for section, enabled in (("skip_path", self.skip_path.enabled), ("kept_activation_explanation", kept.enabled)):
            if enabled and not has_lrp:
                raise ValueError(f"{section} explains with the job's LRP methods: add one to methods (name: lrp)")
        return self

    @model_validator(mode="wrap")
    @classmethod
    def _registered_sections(cls, data: Any, handler: Any) -> "JobSpec":
        """Top-level keys beyond the declared fields must be registered experiment sections (``SECTIONS``)."""
        errors: list[InitErrorDetails] = []
        sections: dict[str, StrictModel] = {}
        if isinstance(data, dict):
            for key, value in data.items():
                if key in cls.model_fields:
                    continue
                if key not in SECTIONS:
                    errors.append(InitErrorDetails(type="extra_forbidden", loc=(key,), input=value))
                    continue
                try:
                    sections[key] = SECTIONS[key].model_validate(value)
                except ValidationError as error:
                    errors.extend(_error_details(error, (key,)))
        try:
            spec = handler(data)
        except ValidationError as error:
            raise ValidationError.from_exception_data(cls.__name__, _error_details(error) + errors) from None
        for key, section in sections.items():
            for where, problem in section.check_job(spec) if isinstance(section, ExperimentSection) else ():
                errors.append(InitErrorDetails(type="value_error", loc=(key, where) if where else (key,),
                                               input=data.get(key), ctx={"error": ValueError(problem)}))
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        if spec.__pydantic_extra__:
            spec.__pydantic_extra__.update({key: sections.get(key, value) for key, value in spec.__pydantic_extra__.items()})
        return spec

    def section(self, name: str) -> StrictModel:
        """An experiment's spec section: a declared field, or a registered section (its defaults when absent)."""
        if name in type(self).model_fields:
            return getattr(self, name)
        if name in (self.__pydantic_extra__ or {}):
            return self.__pydantic_extra__[name]
        if name in SECTIONS:
            return SECTIONS[name]()
        raise KeyError(f"no spec section '{name}'")

    def num_classes(self) -> int:
        """The model's output size: explicit, or the dataset's class count."""
        if self.model.num_classes is not None:
            return self.model.num_classes
        return {"coco": 80, "voc": 20, "digits": 10}.get(self.dataset.kind, 1000)


# Keys whose values do not change any number in the results: a resume may change them. Not here:
# runtime.threads, batch_size, chunk_size, channels_last, fold_batchnorm, precision (float reduction order;
# tests/engine/test_determinism.py); their 'auto' values are resolved once and recorded in the manifest.
# runtime.device is here although a GPU's numbers differ from a CPU's in the last bits: 'auto'
# resolves per machine anyway, and every shard records its device (table 'shards').
EXECUTION_ONLY_KEYS = {
    ("runtime", "device"),
    ("runtime", "num_gpus"),
    ("runtime", "num_cpus"),
    ("runtime", "actors"),
    ("runtime", "in_flight"),
    ("runtime", "max_attempts"),
    ("runtime", "tuning_seconds"),  # only how long the first attempt probes; resumes take the recorded settings
    ("dataset", "read_timeout"),
    ("output",),
    ("description",),
}

# Where the dataset lives, not what it is: a resume may change them (a moved mount point). The
# run identifies its images by their canonical list instead (ids, labels, boxes, file sizes;
# ``benchmark.data.identity``), checked against the manifest on every resume.
LOCATION_KEYS = {
    ("dataset", "root"),
    ("dataset", "images_dir"),
    ("dataset", "annotation_file"),
    ("dataset", "labels_file"),
    ("dataset", "class_list"),
}

# Keys added after runs were made, with their default: left out of the spec's identity while they hold it,
# so a run made before the key existed (which did what the default does) still resumes.
ADDED_LATER_KEYS = {
    ("runtime", "fold_batchnorm"): "auto",
}
