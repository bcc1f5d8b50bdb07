"""Train- and eval-time image transforms, built with kornia from the checkpoint's image processor.

kornia is a maintained, torchvision-free augmentation library on plain torch tensors. The transforms mirror
transformers' image-classification example: random resized crop and horizontal flip for training, resize and center
crop for evaluation, then the processor's mean / std. Sizes follow the processor, so evaluation matches what
`pipeline("image-classification")` does at inference.

Training images are augmented with randomness drawn from (seed, epoch, index) alone (`SeededAugmentation`), never
from the global random state. A run is then reproducible whatever the number of dataloader workers, and a run
resumed from any checkpoint, even mid-epoch, sees the very images the uninterrupted run saw: Trainer skips the
batches already trained on without loading them, and the dataloader reads one batch ahead of the step it saves at,
so augmentation that consumed the global random state would drift after a resume.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kornia.augmentation as K
import numpy as np
import torch
from datasets import Dataset
from kornia.utils import image_to_tensor
from PIL import Image as PILImage
from transformers import BaseImageProcessor

from .images import to_rgb


@dataclass(frozen=True)
class ImageGeometry:
    """Where images are resized to (an int is the shorter side) and the crop the model sees."""

    resize: int | tuple[int, int]
    crop: tuple[int, int]
    mean: list[float]
    std: list[float]


def image_geometry(processor: BaseImageProcessor) -> ImageGeometry:
    """Read resize and crop sizes, mean and std from an image processor (ViT: 224x224; CLIP: short side + crop)."""
    size = dict(processor.size)
    resize = size["shortest_edge"] if "shortest_edge" in size else (size["height"], size["width"])
    crop_size = getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", False) else None
    if crop_size:
        crop = (crop_size["height"], crop_size["width"])
    else:
        crop = (resize, resize) if isinstance(resize, int) else resize
    return ImageGeometry(resize, crop, list(processor.image_mean), list(processor.image_std))


def _normalize(geometry: ImageGeometry) -> K.Normalize:
    return K.Normalize(mean=torch.tensor(geometry.mean), std=torch.tensor(geometry.std), keepdim=True)


def train_augmentation(
    geometry: ImageGeometry, min_crop_scale: float = 0.08, horizontal_flip: bool = True
) -> torch.nn.Module:
    flip = [K.RandomHorizontalFlip(keepdim=True)] if horizontal_flip else []
    return K.AugmentationSequential(
        K.RandomResizedCrop(geometry.crop, scale=(min_crop_scale, 1.0), keepdim=True),
        *flip,
        _normalize(geometry),
    )


def eval_preprocessing(geometry: ImageGeometry) -> torch.nn.Module:
    side = {"side": "short"} if isinstance(geometry.resize, int) else {}
    return torch.nn.Sequential(
        K.Resize(geometry.resize, antialias=True, keepdim=True, **side),
        K.CenterCrop(geometry.crop, keepdim=True),
        _normalize(geometry),
    )


def pil_to_tensor(image: PILImage.Image) -> torch.Tensor:
    """An RGB float tensor of shape (3, H, W) in [0, 1], from an image of any mode."""
    return image_to_tensor(np.array(to_rgb(image)), keepdim=True).float().div(255.0)


def batch_transform(
    pipeline: torch.nn.Module, image_column: str, label_column: str
) -> Callable[[dict[str, list]], dict[str, Any]]:
    """A `Dataset.set_transform` function that turns a batch of images and labels into model inputs."""

    @torch.no_grad()
    def transform(batch: dict[str, list]) -> dict[str, Any]:
        return {
            "pixel_values": [pipeline(pil_to_tensor(image)) for image in batch[image_column]],
            "labels": batch[label_column],
        }

    return transform


class SeededAugmentation(torch.utils.data.Dataset):
    """`dataset`'s images through `augmentation`, each with its own seed made from (seed, epoch, index).

    `set_epoch` is called at the start of every epoch; the epoch lives in shared memory so that persistent
    dataloader workers see it too.
    """

    def __init__(
        self, dataset: Dataset, augmentation: torch.nn.Module, image_column: str, label_column: str, seed: int
    ) -> None:
        self.dataset, self.augmentation = dataset, augmentation
        self.image_column, self.label_column = image_column, label_column
        self.seed = seed
        self.epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        self.epoch.fill_(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.dataset[index]
        seed = np.random.SeedSequence([self.seed % 2**32, int(self.epoch), int(index)]).generate_state(1)[0]
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(int(seed))  # the CPU generator only: CUDA's stays the training's
            pixel_values = self.augmentation(pil_to_tensor(row[self.image_column]))
        return {"pixel_values": pixel_values, "labels": row[self.label_column]}


def collate(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    return {
        "pixel_values": torch.stack([example["pixel_values"] for example in examples]),
        "labels": torch.tensor([example["labels"] for example in examples]),
    }
