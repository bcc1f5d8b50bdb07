"""Load the backbone with a fresh N-way head and its image processor, and put the adapter on it.

Two checks run before any data is read: the base resolves (a local folder that exists, kept as an absolute path so the
saved adapter loads from anywhere), and the adapter fits it: the adapter is put on a weightless copy of the model
(the meta device: nothing allocated, nothing downloaded but the config) and run forward once, so modules that cannot
be adapted, or a parallel adapter whose input and output widths differ, fail in one line instead of mid-training.
"""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from peft import PeftConfig, PeftModel, get_peft_model
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    BaseImageProcessor,
    CLIPForImageClassification,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.utils import logging as transformers_logging

from .. import AdapterConfig  # noqa: F401 - importing the package registers the adapter method with PEFT
from ..load_report import report_base_load
from ..stochastic_depth import add_backbone_drop_path
from .arguments import AdapterArguments, ModelArguments
from .errors import InputError
from .transforms import ImageGeometry

logger = logging.getLogger(__name__)


def _hub_kwargs(model_args: ModelArguments) -> dict:
    return {"cache_dir": model_args.cache_dir, "revision": model_args.model_revision, "token": model_args.token}


def resolve_base(name: str) -> str:
    """A local folder as an absolute path (the adapter records it); a Hub id as it is."""
    expanded = os.path.expanduser(name)
    if os.path.isdir(expanded):
        return os.path.abspath(expanded)
    if expanded.startswith(("/", "./", "../", "~")) or expanded.count("/") > 1 or os.sep != "/" and os.sep in name:
        raise InputError(f"--model_name_or_path {name} is neither an existing folder nor a Hub id (org/name).")
    return name


def is_local(name: str) -> bool:
    return os.path.isdir(os.path.expanduser(name))


def load_image_processor(model_args: ModelArguments, name: str | None = None) -> BaseImageProcessor:
    name = name or model_args.image_processor_name or resolve_base(model_args.model_name_or_path)
    try:
        return AutoImageProcessor.from_pretrained(name, **_hub_kwargs(model_args))
    except (OSError, ValueError) as error:
        raise InputError(f"Cannot load the image processor of {name}: {_first_line(error)}") from None


def load_model_config(model_args: ModelArguments, name: str | None = None) -> PretrainedConfig:
    name = name or resolve_base(model_args.model_name_or_path)
    try:
        return AutoConfig.from_pretrained(name, **_hub_kwargs(model_args))
    except (OSError, ValueError) as error:
        raise InputError(f"Cannot load model {name}: {_first_line(error)}") from None


def _classifier_class(config: PretrainedConfig) -> type:
    return CLIPForImageClassification if config.model_type == "clip" else AutoModelForImageClassification


def check_adapter_fits(
    config: PretrainedConfig, adapter_args: AdapterArguments, geometry: ImageGeometry, backbone_drop_path: float = 0.0
) -> dict:
    """Put the adapter (and the backbone drop-path) on a weightless model of `config` and run it forward once; return
    the adapter's settings as the method resolves them (e.g. `target_modules`), for comparing with a checkpoint's."""
    model_class = _classifier_class(config)
    pixel_values = torch.empty(1, 3, *geometry.crop, device="meta")
    with torch.device("meta"), _quiet_transformers():
        try:
            skeleton = model_class.from_config(config) if hasattr(model_class, "from_config") else model_class(config)
        except ValueError as error:
            message = f"Cannot build an image classifier from {config.model_type}: {_first_line(error)}"
            raise InputError(message) from None
        try:
            skeleton(pixel_values=pixel_values)
        except Exception as error:  # noqa: BLE001 - some models cannot run on the meta device: skip the check
            logger.debug(f"Skipping the dry run of the adapter: the bare model fails on the meta device ({error}).")
            runs_on_meta = False
        else:
            runs_on_meta = True
        adapter_config = adapter_args.to_adapter_config()
        try:
            with _quiet_peft():
                skeleton = get_peft_model(skeleton, adapter_config)
        except (ValueError, TypeError) as error:
            raise InputError(f"The adapter does not fit {config.model_type}: {_first_line(error)}") from None
        if backbone_drop_path > 0:
            try:
                add_backbone_drop_path(skeleton, backbone_drop_path)
            except ValueError as error:
                raise InputError(f"--backbone_drop_path {backbone_drop_path}: {error}") from None
        if runs_on_meta:
            try:
                skeleton(pixel_values=pixel_values)
            except Exception as error:  # noqa: BLE001 - the bare model ran, so the adapter is what breaks it
                raise InputError(
                    f"The adapter does not fit {config.model_type} ({_adapter_flags(adapter_args)}): the adapted "
                    f"model fails on its first forward pass ({type(error).__name__}: {_first_line(error)}). Target "
                    "nn.Linear layers, or blocks whose input and output have the same width."
                ) from None
    return skeleton.peft_config["default"].to_dict()


def load_backbone(
    model_args: ModelArguments, id2label: dict[int, str], name: str | None = None, head_from_adapter: bool = False
) -> PreTrainedModel:
    """The checkpoint as an image classifier with `len(id2label)` outputs; a head of another size is replaced.

    A full CLIP checkpoint (`openai/clip-vit-large-patch14`) becomes `CLIPForImageClassification`, which keeps the
    vision tower and puts a linear head on its mean-pooled patch tokens. transformers' load report is replaced by
    one line when it only lists what is expected (the new head, CLIP's unused text tower); anything else stays loud.
    """
    name = name or resolve_base(model_args.model_name_or_path)
    try:
        config = AutoConfig.from_pretrained(name, **_hub_kwargs(model_args))
        with _quiet_transformers():
            model, info = _classifier_class(config).from_pretrained(
                name,
                num_labels=len(id2label),
                id2label=id2label,
                label2id={label: index for index, label in id2label.items()},
                ignore_mismatched_sizes=True,
                output_loading_info=True,
                **_hub_kwargs(model_args),
            )
    except (OSError, ValueError) as error:
        raise InputError(f"Cannot load model {name}: {_first_line(error)}") from None
    report_base_load(name, info, len(id2label), head_from_adapter)
    return model


def add_adapter(model: PreTrainedModel, adapter_args: AdapterArguments, base_model_id: str | None = None) -> PeftModel:
    """Freeze the backbone and insert the adapters; the classification head stays trainable and is saved with them.

    `base_model_id` replaces the recorded base (a local path) in `adapter_config.json`.
    """
    try:
        with _quiet_peft():
            model = get_peft_model(model, adapter_args.to_adapter_config())
    except (ValueError, TypeError) as error:
        raise InputError(str(error)) from None
    if base_model_id is not None:
        model.peft_config["default"].base_model_name_or_path = base_model_id
    return model


def read_adapter_config(adapter: str, model_args: ModelArguments) -> PeftConfig:
    """The config of a trained adapter (a folder or a Hub id), for evaluation-only runs."""
    if os.path.isdir(adapter) and not (Path(adapter) / "adapter_config.json").is_file():
        raise InputError(
            f"--do_train false evaluates a trained adapter, but {adapter} holds none (no adapter_config.json). "
            "Pass --adapter_name_or_path with the adapter's folder or Hub id."
        )
    try:
        return PeftConfig.from_pretrained(adapter, cache_dir=model_args.cache_dir, token=model_args.token)
    except (OSError, ValueError) as error:
        raise InputError(f"Cannot load the adapter {adapter}: {_first_line(error)}") from None


def load_trained_adapter(adapter: str, adapter_config: PeftConfig, model_args: ModelArguments) -> PeftModel:
    """The base (`--model_name_or_path`, by default the one the adapter records) with the adapter and its trained
    head loaded on it."""
    id2label = {int(index): label for index, label in (adapter_config.id2label or {}).items()}
    model = load_backbone(model_args, id2label, head_from_adapter=True)
    try:
        with _quiet_peft():
            return PeftModel.from_pretrained(model, adapter, cache_dir=model_args.cache_dir, token=model_args.token)
    except (OSError, ValueError, RuntimeError) as error:
        raise InputError(f"Cannot load the adapter {adapter}: {_first_line(error)}") from None


@contextmanager
def _quiet_transformers():
    """Hold back transformers' warnings (the load report among them) while our code loads what it expects."""
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(verbosity)


@contextmanager
def _quiet_peft():
    """PEFT 0.21 asks transformers 5 for the deprecated `is_gradient_checkpointing`; no user can act on the warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def _adapter_flags(adapter_args: AdapterArguments) -> str:
    flags = f"--placement {adapter_args.to_adapter_config().placement}"
    if adapter_args.target_modules:
        flags += f" --target_modules {' '.join(adapter_args.target_modules)}"
    return flags


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
