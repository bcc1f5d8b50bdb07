"""The CLI's argument dataclasses, parsed with `HfArgumentParser` together with `TrainingArguments`.

As in transformers' `run_image_classification.py`, the same arguments come from the command line or from one
`.json` / `.yaml` file, so a recipe in `examples/` is just the flags written down.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser, TrainingArguments

from ..config import PLACEMENTS, AdapterConfig
from .errors import InputError

CONFIG_SUFFIXES = (".json", ".yaml", ".yml")


@dataclass
class ModelArguments:
    """Which backbone and image processor to start from."""

    model_name_or_path: str = field(
        default="google/vit-base-patch16-224-in21k",
        metadata={"help": "Backbone checkpoint: a Hub id or a local folder (CLIP checkpoints get CLIP's classifier)."},
    )
    image_processor_name: str | None = field(
        default=None, metadata={"help": "Image processor to take size, mean and std from. Defaults to the model's."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where to cache downloaded models and datasets."})
    model_revision: str = field(default="main", metadata={"help": "Branch, tag or commit of the checkpoint."})
    token: str | None = field(default=None, metadata={"help": "Hub token for private models or datasets."})
    license: str | None = field(default=None, metadata={"help": "License written into the adapter's model card."})


@dataclass
class AdapterArguments:
    """Settings of the bottleneck adapter, mapped one to one onto `AdapterConfig`."""

    bottleneck_size: int = field(default=64, metadata={"help": "Width of the bottleneck (the seed's adapter_length)."})
    placement: str = field(default="houlsby", metadata={"help": f"Where adapters go in each block: {PLACEMENTS}."})
    non_linearity: str = field(default="gelu", metadata={"help": "Activation in the bottleneck, a key of ACT2FN."})
    scaling: float = field(default=1.0, metadata={"help": "Factor on the adapter output."})
    adapter_dropout: float = field(default=0.0, metadata={"help": "Dropout probability inside the adapter."})
    init_weights: str = field(
        default="true",
        metadata={"help": "'true' (adapter starts as identity), 'houlsby', 'bert' or 'false'."},
    )
    target_modules: list[str] | None = field(
        default=None, metadata={"help": "Module names to adapt. Default: resolved from the model type and placement."}
    )
    layers_to_transform: list[int] | None = field(
        default=None, metadata={"help": "Indices of the blocks to adapt. Default: every block."}
    )

    def __post_init__(self) -> None:
        self.to_adapter_config()  # a bad adapter flag fails at parse time, before any data is loaded

    def to_adapter_config(self) -> AdapterConfig:
        init = {"true": True, "false": False}.get(self.init_weights.lower(), self.init_weights.lower())
        try:
            return AdapterConfig(
                bottleneck_size=self.bottleneck_size,
                placement=self.placement,
                non_linearity=self.non_linearity,
                scaling=self.scaling,
                dropout=self.adapter_dropout,
                init_weights=init,
                target_modules=self.target_modules,
                layers_to_transform=self.layers_to_transform,
            )
        except ValueError as error:
            raise InputError(str(error)) from None


@dataclass
class DataTrainingArguments:
    """Which images to train and evaluate on."""

    dataset_name: str | None = field(
        default=None, metadata={"help": "Hub dataset id, or a local dataset folder, for `datasets.load_dataset`."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Configuration name of the dataset."})
    train_dir: str | None = field(default=None, metadata={"help": "Image folder with the training images."})
    validation_dir: str | None = field(default=None, metadata={"help": "Image folder with the evaluation images."})
    train_split_name: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split_name: str | None = field(
        default=None,
        metadata={
            "help": "Split to evaluate on. Default: 'validation' when the dataset has one, else a part of train "
            "carved off with --train_val_split."
        },
    )
    image_column_name: str | None = field(
        default=None, metadata={"help": "Column with the images. Default: found from its name or Image type."}
    )
    label_column_name: str | None = field(
        default=None, metadata={"help": "Column with the labels. Default: found from its name or ClassLabel type."}
    )
    train_val_split: float = field(
        default=0.15, metadata={"help": "Fraction of train held out for evaluation when there is no eval split."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Train on at most this many images."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on at most this many images."})
    min_crop_scale: float = field(
        default=0.08, metadata={"help": "Smallest fraction of the image area that the random resized crop keeps."}
    )
    horizontal_flip: bool = field(
        default=True, metadata={"help": "Flip training images left-right at random (off for digits or text)."}
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for the up-front check that every image decodes."}
    )

    def __post_init__(self) -> None:
        if self.dataset_name is None and self.train_dir is None:
            raise InputError("Pass --dataset_name (a Hub id or a local dataset folder) or --train_dir (images).")
        if self.dataset_name is not None and (self.train_dir or self.validation_dir):
            raise InputError("Pass either --dataset_name or --train_dir/--validation_dir, not both.")
        if not 0.0 <= self.train_val_split < 1.0:
            raise InputError(f"--train_val_split must be in [0, 1), got {self.train_val_split}.")
        if not 0.0 < self.min_crop_scale <= 1.0:
            raise InputError(f"--min_crop_scale must be in (0, 1], got {self.min_crop_scale}.")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"--{name} must be at least 1, got {value}.")


ARGUMENT_CLASSES = (ModelArguments, DataTrainingArguments, AdapterArguments, TrainingArguments)


def cli_defaults() -> dict[str, Any]:
    """Defaults that differ from `TrainingArguments`' own: train and evaluate unless told not to, keep the image
    column for the transforms, and log to TensorBoard when it is installed."""
    defaults: dict[str, Any] = {"do_train": True, "do_eval": True, "remove_unused_columns": False}
    if importlib.util.find_spec("tensorboard") is not None:
        defaults["report_to"] = ["tensorboard"]
    return defaults


def make_parser() -> HfArgumentParser:
    parser = HfArgumentParser(ARGUMENT_CLASSES)
    parser.set_defaults(**cli_defaults())
    return parser


def parse_args(
    args: list[str] | None = None,
) -> tuple[ModelArguments, DataTrainingArguments, AdapterArguments, TrainingArguments]:
    """Parse `args` (default: `sys.argv[1:]`); a single `.json` / `.yaml` path is read as a config file."""
    parser = make_parser()
    args = sys.argv[1:] if args is None else list(args)
    try:
        if len(args) == 1 and args[0].endswith(CONFIG_SUFFIXES):
            return tuple(parser.parse_dict({**cli_defaults(), **read_config_file(args[0])}))
        return tuple(parser.parse_args_into_dataclasses(args=args))
    except (InputError, ValueError, TypeError) as error:
        raise InputError(str(error)) from None


def read_config_file(path: str) -> dict[str, Any]:
    """The arguments in a `.json` or `.yaml` config file, as a dict."""
    file = Path(os.path.expanduser(path))
    if not file.is_file():
        raise InputError(f"Config file {path} does not exist.")
    text = file.read_text()
    try:
        data = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise InputError(f"Cannot read config file {path}: {error}") from None
    if not isinstance(data, dict):
        raise InputError(f"Config file {path} must hold a mapping of argument names to values.")
    return data
