"""The transfer benchmark's downstream task: scikit-learn's 1,797 handwritten digits, in fixed splits.

The images are the demo's (`hf_vit_adapter.demo.digit_image`: 8x8, bicubic to the backbone's size, greyscale as
RGB), normalised with the backbone's image processor. The test split is held out once, stratified, with a fixed
seed, and is never used to choose anything; the validation split, taken from the remaining (training) images,
chooses each method's learning rate; the rest is the training pool.
"""

from __future__ import annotations

from dataclasses import dataclass

import datasets
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from transformers import BaseImageProcessor

from hf_vit_adapter.demo import digit_image

SPLIT_SEED = 0  # fixes the test and validation splits for every run and every method
TEST_FRACTION = 0.3
VALIDATION_PER_CLASS = 10


@dataclass(frozen=True)
class DigitSplits:
    """Pixel values and labels of every digit, and which of them form each split (indices into `labels`)."""

    pixel_values: np.ndarray  # (1797, 3, size, size) float32, normalised
    labels: np.ndarray  # (1797,)
    test: np.ndarray
    validation: np.ndarray
    pool: np.ndarray  # the training images: everything that is neither test nor validation

    def dataset(self, indices: np.ndarray) -> datasets.Dataset:
        """The images at `indices` as a torch-formatted dataset (fixed-shape arrays, so batches are fast to read)."""
        features = datasets.Features(
            {
                "pixel_values": datasets.Array3D(self.pixel_values.shape[1:], "float32"),
                "labels": datasets.Value("int64"),
            }
        )
        data = {"pixel_values": self.pixel_values[indices], "labels": self.labels[indices]}
        return datasets.Dataset.from_dict(data, features=features).with_format("torch")

    def few_labels(self, per_class: int, seed: int) -> np.ndarray:
        """`per_class` training images of every digit, drawn from the pool with `seed`."""
        rng = np.random.default_rng(seed)
        pool_labels = self.labels[self.pool]
        chosen = [rng.choice(self.pool[pool_labels == label], per_class, replace=False) for label in range(10)]
        return np.sort(np.concatenate(chosen))


def digit_splits(processor: BaseImageProcessor, limit_per_class: int | None = None) -> DigitSplits:
    """Load, upscale and split the digits; `limit_per_class` keeps only the first images of each class (quick runs)."""
    digits = load_digits()
    size = processor.size["height"]
    images = [digit_image(pixels, size).convert("RGB") for pixels in digits.images]
    pixel_values = np.stack(processor(images, return_tensors="np")["pixel_values"]).astype(np.float32)
    labels = digits.target.astype(np.int64)
    everything = np.arange(len(labels))
    if limit_per_class is not None:
        everything = np.sort(np.concatenate([np.flatnonzero(labels == c)[:limit_per_class] for c in range(10)]))
    rest, test = train_test_split(
        everything, test_size=TEST_FRACTION, stratify=labels[everything], random_state=SPLIT_SEED
    )
    validation_count = min(VALIDATION_PER_CLASS * 10, len(rest) // 3)
    pool, validation = train_test_split(
        rest, test_size=validation_count, stratify=labels[rest], random_state=SPLIT_SEED
    )
    return DigitSplits(pixel_values, labels, np.sort(test), np.sort(validation), np.sort(pool))
