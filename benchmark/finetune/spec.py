"""The fine-tuning spec: supplement A.3's recipe as defaults, every value configurable.

"We used AdamW, a learning rate of 0.0001 for all layers, a batch size of 64. Data augmentation
used a 224 pixel resize, a 224 pixel center crop and RandomHorizontalFlip. We selected the model
with the best validation performance within the first 20 epochs."
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from ..config.spec import DatasetSpec, JobSpec, ModelSpec, StrictModel


class FinetuneSpec(StrictModel):
    name: str = Field("finetune", min_length=1, description="Name of the Ray Train run.")
    model: ModelSpec = Field(description="Architecture and starting weights ('imagenet' as in the paper, or a file).")
    dataset: DatasetSpec = Field(
        description="The dataset (kind coco or voc) and its validation split ('split', 'offset', 'limit'); "
        "resize/crop default to 224/224 as in the paper."
    )
    train_split: str = Field("train", description="Training split: COCO 'train' (train2017), VOC ImageSets/Main/train.txt.")
    train_annotation_file: str | None = Field(None, description="coco: instances file of the training split, if not the default.")
    train_images_dir: str | None = Field(None, description="coco: image folder of the training split, if not the default.")
    train_limit: int | None = Field(None, ge=1, description="Use only the first N training images (tests, quick runs).")
    epochs: int = Field(20, ge=1, description="Epochs; the best validation epoch (mAP) among them is kept.")
    batch_size: int = Field(64, ge=1, description="Global batch size, split evenly over the training workers.")
    lr: float = Field(1e-4, gt=0, description="AdamW learning rate, the same for all layers.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (PyTorch's default).")
    hflip: bool = Field(True, description="Random horizontal flip of the training crops.")
    workers: int | None = Field(None, ge=1, description="Ray Train workers; default one per GPU of the cluster, else 1.")
    use_gpu: bool | None = Field(None, description="Train on GPUs; default: when the cluster has any.")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs reserved per training worker.")
    loader_workers: int = Field(4, ge=0, description="DataLoader processes per training worker (decoding runs ahead).")
    seed: int = Field(0, description="Seed of the shuffling, the flips and (weights: random) the initialisation.")
    output: str | None = Field(None, description="Output folder; default runs/finetune-<kind>.")
    storage_path: str | None = Field(
        None, description="Ray Train storage (shared folder or s3://… on multi-node clusters); default <output>/ray."
    )

    @field_validator("dataset")
    @classmethod
    def _multi_label_dataset(cls, dataset: DatasetSpec) -> DatasetSpec:
        if dataset.kind not in ("coco", "voc"):
            raise ValueError(f"dataset.kind must be 'coco' or 'voc' for fine-tuning, got '{dataset.kind}'")
        return dataset

    @model_validator(mode="after")
    def _coco_only_keys(self) -> "FinetuneSpec":
        for key in ("train_annotation_file", "train_images_dir"):
            if getattr(self, key) is not None and self.dataset.kind != "coco":
                raise ValueError(f"{key} is only used with dataset kind coco")
        return self

    def num_classes(self) -> int:
        return self.job_spec().num_classes()

    def train_dataset(self) -> DatasetSpec:
        """The training split: the validation dataset spec with the training split's files, whole."""
        update = {"split": self.train_split, "offset": 0, "limit": self.train_limit}
        if self.dataset.kind == "coco":
            update |= {"annotation_file": self.train_annotation_file, "images_dir": self.train_images_dir}
        return self.dataset.model_copy(update=update)

    def job_spec(self) -> JobSpec:
        """A job spec with this model and dataset, so that the model is built exactly as an evaluation run builds it."""
        return JobSpec(name=self.name, model=self.model, dataset=self.dataset, methods=[{"name": "gradient"}])

    def output_dir(self) -> str:
        return self.output or f"runs/finetune-{self.dataset.kind}"
