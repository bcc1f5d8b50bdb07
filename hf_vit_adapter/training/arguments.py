"""The CLI's argument dataclasses, parsed with `HfArgumentParser` together with `TrainingArguments`.

As in transformers' `run_image_classification.py`, the same arguments come from the command line or from a `.json` /
`.yaml` file, so a recipe in `examples/` is just the flags written down. A config file may be followed by flags,
which override it (`hf-vit-adapter-train recipe.json --output_dir x --bf16 false`). Every mistake a parser can see (an
unknown flag, a value of the wrong type, a batch size of 0) is an `InputError`, answered in one line.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from transformers import HfArgumentParser, TrainingArguments
from transformers.integrations import get_available_reporting_integrations

from ..config import PLACEMENTS, SCALING_MODES, AdapterConfig
from .errors import InputError

CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
PROG = "hf-vit-adapter-train"


@dataclass
class ModelArguments:
    """Which backbone and image processor to start from."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Backbone checkpoint: a Hub id or a local folder (CLIP checkpoints get CLIP's classifier). "
            "Default: google/vit-base-patch16-224-in21k; with --do_train false, the base the adapter records."
        },
    )
    image_processor_name: str | None = field(
        default=None, metadata={"help": "Image processor to take size, mean and std from. Defaults to the model's."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where to cache downloaded models and datasets."})
    model_revision: str = field(default="main", metadata={"help": "Branch, tag or commit of the checkpoint."})
    token: str | None = field(default=None, metadata={"help": "Hub token for private models or datasets."})
    license: str | None = field(default=None, metadata={"help": "License written into the adapter's model card."})
    base_model_id: str | None = field(
        default=None,
        metadata={
            "help": "Hub id (org/name) of the backbone when --model_name_or_path is a local copy of it; it goes into "
            "adapter_config.json and the model card, so the adapter loads anywhere. Needed to push with a local base."
        },
    )
    adapter_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Trained adapter to evaluate with --do_train false: a folder or a Hub id. Default: --output_dir."
        },
    )
    backbone_drop_path: float = field(
        default=0.0,
        metadata={
            "help": "Stochastic depth on the frozen backbone's attention and MLP branches in training, rising "
            "linearly over the blocks from 0 to this rate (Adapter+ trains with 0.1). ViT, DeiT, DINOv2, CLIP, "
            "SigLIP, BEiT and Data2Vec-vision."
        },
    )

    def __post_init__(self) -> None:
        if isinstance(self.backbone_drop_path, bool) or not 0.0 <= self.backbone_drop_path < 1.0:
            raise InputError(f"--backbone_drop_path must be in [0, 1), got {self.backbone_drop_path}.")


ADAPTER_PRESETS = {"adapter_plus": AdapterConfig.adapter_plus}
_DEFAULT = AdapterConfig()
_ADAPTER_PLUS = AdapterConfig.adapter_plus()


def _default(name: str) -> str:
    """`Default: 64 (adapter_plus: 8).`: AdapterConfig's default, and the preset's when it differs."""
    value, preset = getattr(_DEFAULT, name), getattr(_ADAPTER_PLUS, name)
    shown = str(value).lower() if isinstance(value, bool) else value
    return f"Default: {shown}" + (f" (adapter_plus: {preset})." if preset != value else ".")


@dataclass
class AdapterArguments:
    """Settings of the bottleneck adapter, mapped one to one onto `AdapterConfig`.

    A flag that is not given (None) takes the value of `--adapter_preset` when there is one, else `AdapterConfig`'s
    default; a given flag (also from a config file) always wins, so `to_adapter_config()` is what the run really uses.
    """

    adapter_preset: Literal["adapter_plus"] | None = field(
        default=None,
        metadata={
            "help": "Start from a named adapter: adapter_plus (Adapter+, Steitz & Roth 2024: pfeiffer placement, "
            "bottleneck 8, gelu, per-channel learned scaling, houlsby init, adapter drop-path 0.1). Adapter flags "
            "given as well override the preset's values."
        },
    )
    bottleneck_size: int | None = field(
        default=None,
        metadata={"help": f"Width of the bottleneck (the seed's adapter_length). {_default('bottleneck_size')}"},
    )
    placement: str | None = field(
        default=None, metadata={"help": f"Where adapters go in each block: {PLACEMENTS}. {_default('placement')}"}
    )
    non_linearity: str | None = field(
        default=None, metadata={"help": f"Activation in the bottleneck, a key of ACT2FN. {_default('non_linearity')}"}
    )
    scaling: str | None = field(
        default=None,
        metadata={
            "help": "Factor on the adapter output: a number, 'learned' (one trainable scalar per adapter) or "
            f"'channel' (one trainable value per channel). {_default('scaling')}"
        },
    )
    adapter_dropout: float | None = field(
        default=None, metadata={"help": f"Dropout probability inside the adapter. {_default('dropout')}"}
    )
    adapter_drop_path: float | None = field(
        default=None,
        metadata={
            "help": "Per-sample stochastic depth on the adapter branch, in training only. " + _default("drop_path")
        },
    )
    init_weights: str | None = field(
        default=None,
        metadata={
            "help": "'true' (adapter starts as identity), 'houlsby', 'bert' or 'false'. " + _default("init_weights")
        },
    )
    target_modules: list[str] | None = field(
        default=None, metadata={"help": "Module names to adapt. Default: resolved from the model type and placement."}
    )
    layers_to_transform: list[int] | None = field(
        default=None,
        metadata={
            "help": "Indices of the blocks to adapt, counted across the model (Swin: across its stages). "
            "Default: every block."
        },
    )

    def __post_init__(self) -> None:
        if self.scaling is not None:
            self.scaling = _scaling(self.scaling)  # a flag's text, a config file's number: the same value
        self.to_adapter_config()  # a bad adapter flag fails at parse time, before any data is loaded

    def to_adapter_config(self) -> AdapterConfig:
        """The adapter this run trains: the preset (or AdapterConfig's defaults) with every given flag on top."""
        given = {name: getattr(self, flag) for flag, name in _CONFIG_FIELDS.items() if getattr(self, flag) is not None}
        if isinstance(given.get("init_weights"), str):
            text = given["init_weights"].lower()
            given["init_weights"] = {"true": True, "false": False}.get(text, text)
        if self.adapter_preset is not None and self.adapter_preset not in ADAPTER_PRESETS:  # from a config file
            raise InputError(f"--adapter_preset must be one of {list(ADAPTER_PRESETS)}, got {self.adapter_preset!r}.")
        build = ADAPTER_PRESETS[self.adapter_preset] if self.adapter_preset is not None else AdapterConfig
        try:
            return build(**given)
        except (ValueError, TypeError) as error:
            raise InputError(str(error)) from None


# AdapterArguments' flags and the AdapterConfig fields they set.
_CONFIG_FIELDS = {
    "bottleneck_size": "bottleneck_size",
    "placement": "placement",
    "non_linearity": "non_linearity",
    "scaling": "scaling",
    "adapter_dropout": "dropout",
    "adapter_drop_path": "drop_path",
    "init_weights": "init_weights",
    "target_modules": "target_modules",
    "layers_to_transform": "layers_to_transform",
}


def _scaling(value: Any) -> Any:
    """`--scaling 0.5` arrives as text: a number, or 'learned' / 'channel' as they are (AdapterConfig checks them)."""
    if not isinstance(value, str) or value in SCALING_MODES:
        return value
    try:
        return float(value)
    except ValueError:
        raise InputError(f"--scaling must be a number, 'learned' or 'channel', got {value!r}.") from None


@dataclass
class DataTrainingArguments:
    """Which images to train and evaluate on."""

    dataset_name: str | None = field(
        default=None, metadata={"help": "Hub dataset id, or a local dataset folder, for `datasets.load_dataset`."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Configuration name of the dataset."})
    train_dir: str | None = field(default=None, metadata={"help": "Image folder with the training images."})
    validation_dir: str | None = field(default=None, metadata={"help": "Image folder with the evaluation images."})
    train_split_name: str = field(
        default="train", metadata={"help": "Split to train on; 'train+validation' trains on both, joined."}
    )
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


@dataclass
class AdapterTrainingArguments(TrainingArguments):
    """`TrainingArguments`, checked for values `Trainer` would only stumble on later, plus `--overwrite_output_dir`.

    transformers 5 dropped `overwrite_output_dir` (resuming took its place), so nothing guarded a finished run any
    more; the CLI brings the flag back, with the meaning users of the earlier examples know.
    """

    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Train into a non-empty --output_dir, replacing the run there (its checkpoints are deleted "
            "when training starts; its adapter, card and results are replaced when the new run is saved)."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name} must be at least 1, got {getattr(self, name)}.")
        if self.learning_rate < 0:
            raise InputError(f"--learning_rate must be >= 0, got {self.learning_rate}.")
        if self.output_dir is not None and os.path.exists(self.output_dir) and not os.path.isdir(self.output_dir):
            raise InputError(f"--output_dir {self.output_dir} is a file, not a folder.")
        missing = sorted(set(self.report_to or []) - {"all", "none"} - set(get_available_reporting_integrations()))
        if missing:
            raise InputError(
                f"--report_to {' '.join(missing)}: not installed (e.g. `pip install {missing[0]}`); "
                "pass --report_to none to log nowhere."
            )


ARGUMENT_CLASSES = (ModelArguments, DataTrainingArguments, AdapterArguments, AdapterTrainingArguments)


def cli_defaults() -> dict[str, Any]:
    """Defaults that differ from `TrainingArguments`' own: train and evaluate unless told not to, keep the image
    column for the transforms, log to TensorBoard when it is installed, and tell DDP that every trainable parameter
    (adapters and head) is used in each step, which spares it a search and a warning."""
    defaults: dict[str, Any] = {
        "do_train": True,
        "do_eval": True,
        "remove_unused_columns": False,
        "ddp_find_unused_parameters": False,
    }
    if importlib.util.find_spec("tensorboard") is not None:
        defaults["report_to"] = ["tensorboard"]
    return defaults


class ArgumentParser(HfArgumentParser):
    """`HfArgumentParser` whose errors are `InputError`s (one line, exit code 2) instead of a usage dump."""

    def __init__(self) -> None:
        super().__init__(ARGUMENT_CLASSES, prog=PROG)

    def error(self, message: str):
        raise InputError(message)


def make_parser() -> HfArgumentParser:
    parser = ArgumentParser()
    parser.set_defaults(**cli_defaults())
    return parser


def parse_args(
    args: list[str] | None = None,
) -> tuple[ModelArguments, DataTrainingArguments, AdapterArguments, AdapterTrainingArguments]:
    """Parse `args` (default: `sys.argv[1:]`). A leading `.json` / `.yaml` path is a config file; flags after it
    override its values. Unknown flags or config keys are named before any argument is checked."""
    parser = make_parser()
    args = sys.argv[1:] if args is None else list(args)
    try:
        if args and args[0].endswith(CONFIG_SUFFIXES):
            parser.set_defaults(**known_settings(parser, read_config_file(args[0]), args[0]))
            args = args[1:]
        _, unknown = parser.parse_known_args(args)
        if unknown:
            raise InputError(f"unrecognized arguments: {' '.join(unknown)} (see {PROG} --help)")
        return tuple(parser.parse_args_into_dataclasses(args=args))
    except (InputError, ValueError, TypeError) as error:
        raise InputError(str(error)) from None


def known_settings(parser: HfArgumentParser, settings: dict[str, Any], path: str) -> dict[str, Any]:
    """`settings` after checking that each names an argument; the values are then typed as flags would be."""
    known = {action.dest for action in parser._actions}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise InputError(f"Config file {path} sets unknown arguments: {', '.join(unknown)}.")
    return settings


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
