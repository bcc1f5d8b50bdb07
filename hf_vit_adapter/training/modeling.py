"""Load the backbone with a fresh N-way head and its image processor, and put the adapter on it."""

from __future__ import annotations

from peft import PeftModel, get_peft_model
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    BaseImageProcessor,
    CLIPForImageClassification,
    PreTrainedModel,
)

from .. import AdapterConfig  # noqa: F401 - importing the package registers the adapter method with PEFT
from .arguments import AdapterArguments, ModelArguments
from .errors import InputError


def _hub_kwargs(model_args: ModelArguments) -> dict:
    return {"cache_dir": model_args.cache_dir, "revision": model_args.model_revision, "token": model_args.token}


def load_image_processor(model_args: ModelArguments) -> BaseImageProcessor:
    name = model_args.image_processor_name or model_args.model_name_or_path
    try:
        return AutoImageProcessor.from_pretrained(name, **_hub_kwargs(model_args))
    except (OSError, ValueError) as error:
        raise InputError(f"Cannot load the image processor of {name}: {_first_line(error)}") from None


def load_backbone(model_args: ModelArguments, id2label: dict[int, str]) -> PreTrainedModel:
    """The checkpoint as an image classifier with `len(id2label)` outputs; a head of another size is replaced.

    A full CLIP checkpoint (`openai/clip-vit-large-patch14`) becomes `CLIPForImageClassification`, which keeps the
    vision tower and puts a linear head on its mean-pooled patch tokens.
    """
    name = model_args.model_name_or_path
    try:
        config = AutoConfig.from_pretrained(name, **_hub_kwargs(model_args))
        model_class = CLIPForImageClassification if config.model_type == "clip" else AutoModelForImageClassification
        return model_class.from_pretrained(
            name,
            num_labels=len(id2label),
            id2label=id2label,
            label2id={label: index for index, label in id2label.items()},
            ignore_mismatched_sizes=True,
            **_hub_kwargs(model_args),
        )
    except (OSError, ValueError) as error:
        raise InputError(f"Cannot load model {name}: {_first_line(error)}") from None


def add_adapter(model: PreTrainedModel, adapter_args: AdapterArguments) -> PeftModel:
    """Freeze the backbone and insert the adapters; the classification head stays trainable and is saved with them."""
    try:
        return get_peft_model(model, adapter_args.to_adapter_config())
    except ValueError as error:
        raise InputError(str(error)) from None


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
