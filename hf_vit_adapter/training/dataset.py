"""Load the image dataset with `datasets.load_dataset` and pick its train and evaluation splits."""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from pathlib import Path

from datasets import ClassLabel, Dataset, DatasetDict, concatenate_datasets, load_dataset
from PIL import Image as PILImage

from .arguments import DataTrainingArguments
from .errors import InputError

logger = logging.getLogger(__name__)


def load_image_dataset(data_args: DataTrainingArguments, cache_dir: str | None, token: str | None) -> DatasetDict:
    """A Hub or local dataset (`--dataset_name`), or image folders (`--train_dir` / `--validation_dir`).

    Any failure to load is bad input (unknown id, missing folder, no images), reported in one line.
    """
    if data_args.dataset_name is not None:
        source = data_args.dataset_name
        kwargs = {"path": data_args.dataset_name, "name": data_args.dataset_config_name, "token": token}
    else:
        folders = {"train": data_args.train_dir, "validation": data_args.validation_dir}
        for split, folder in folders.items():
            flag = f"--{'validation' if split == 'validation' else 'train'}_dir"
            if folder is not None and not os.path.isdir(folder):
                raise InputError(f"{flag} {folder} is not a folder.")
            if folder is not None and not _holds_images(folder):
                raise InputError(f"{flag} {folder} holds no image files.")
        data_files = {split: os.path.join(folder, "**") for split, folder in folders.items() if folder is not None}
        source = " and ".join(folder for folder in folders.values() if folder is not None)
        kwargs = {"path": "imagefolder", "data_files": data_files}
    try:
        dataset = load_dataset(**kwargs, cache_dir=cache_dir)
    except Exception as error:  # noqa: BLE001 - datasets raises many types; all mean "cannot use this input"
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"Cannot load dataset {source}: {message}") from None
    if not isinstance(dataset, DatasetDict):
        raise InputError(f"Dataset {source} did not load as named splits.")
    return dataset


def _holds_images(folder: str) -> bool:
    extensions = {extension.lower() for extension in PILImage.registered_extensions()}
    return any(path.suffix.lower() in extensions for path in Path(folder).rglob("*") if path.is_file())


def select_splits(
    dataset: DatasetDict, data_args: DataTrainingArguments, seed: int, label_column: str | None = None
) -> tuple[Dataset | None, Dataset | None]:
    """The train split (`"train+validation"` joins splits, as in `datasets`), and the evaluation split (carved from
    train with `--train_val_split` when missing)."""
    train_names = data_args.train_split_name.split("+")
    for name in [*train_names, data_args.eval_split_name]:
        if name is not None and name not in dataset:
            raise InputError(f"Dataset has no split {name!r}; its splits are {list(dataset)}.")
    train = (
        dataset[train_names[0]]
        if len(train_names) == 1
        else concatenate_datasets([dataset[name] for name in train_names])
    )
    eval_name = data_args.eval_split_name
    if eval_name is None and "validation" in dataset and "validation" not in train_names:
        eval_name = "validation"
    if eval_name in train_names:
        raise InputError(
            f"--eval_split_name {eval_name} is also a training split (--train_split_name "
            f"{data_args.train_split_name}); evaluate on a split the adapter does not train on."
        )
    evaluation = dataset[eval_name] if eval_name is not None else None
    if evaluation is None and data_args.train_val_split > 0 and len(train) > 1:
        train, evaluation = carve_validation(train, data_args.train_val_split, seed, label_column)
    if data_args.max_train_samples is not None and len(train) > data_args.max_train_samples:
        train = train.shuffle(seed=seed).select(range(data_args.max_train_samples))
    if evaluation is not None and data_args.max_eval_samples is not None:
        if len(evaluation) > data_args.max_eval_samples:
            evaluation = evaluation.shuffle(seed=seed).select(range(data_args.max_eval_samples))
    return train, evaluation


def carve_validation(
    train: Dataset, fraction: float, seed: int, label_column: str | None = None
) -> tuple[Dataset, Dataset]:
    """Hold out `fraction` of `train` for evaluation, stratified by label when every class has two rows or more (and
    both parts can hold every class), so that no class vanishes from either part."""
    held_out = math.ceil(fraction * len(train))
    if held_out >= len(train):
        raise InputError(
            f"--train_val_split {fraction} holds out {held_out} of the {len(train)} training rows, leaving none to "
            "train on. Use a smaller fraction, or pass an evaluation split (--eval_split_name, --validation_dir)."
        )
    stratify = None
    if label_column is not None and isinstance(train.features.get(label_column), ClassLabel):
        counts = Counter(train[label_column])
        fits = min(held_out, len(train) - held_out) >= len(counts)
        if min(counts.values()) >= 2 and fits:
            stratify = label_column
        else:
            logger.info("The validation split is drawn at random: some class has too few rows to stratify by label.")
    try:
        parts = train.train_test_split(test_size=fraction, seed=seed, stratify_by_column=stratify)
    except ValueError as error:
        raise InputError(f"Cannot hold out --train_val_split {fraction} of train: {error}") from None
    return parts["train"], parts["test"]
