"""Write our side of a conversion: the base as the classifier users will load, the adapter's tensors put into the
modules our method built (found by site, never by key name), and the folder saved in one move.

Source-library modules (`adapterhub.py`, ...) read their files and call these; nothing here knows their formats.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from peft import PeftModel
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    CLIPForImageClassification,
    PretrainedConfig,
    PreTrainedModel,
)

from ..heads import classification_head_names
from ..sites import adapter_sites
from .errors import ConversionError, ConversionWarning

# One adapter's tensors by these names: `down.weight`, `down.bias`, `up.weight`, `up.bias` and, for a trainable
# scale, `scale`.
SiteTensors = dict[str, torch.Tensor]


def check_output_dir(output_dir: Path) -> None:
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise ConversionError(f"{output_dir} exists and is not an empty folder; choose a new output folder.")


def resolve_base(base: str | None) -> str:
    """A Hub id as given; a folder as an absolute path, so the output loads from any working directory."""
    if not base:
        raise ConversionError("The adapter names no base model; pass --base_model.")
    path = Path(base).expanduser()
    return str(path.resolve()) if path.is_dir() else base


def load_base_config(base_id: str) -> PretrainedConfig:
    try:
        return AutoConfig.from_pretrained(base_id)
    except (OSError, ValueError) as error:
        raise ConversionError(
            f"Cannot load the base model {base_id}: {first_line(error)} (pass --base_model)."
        ) from None


def load_classifier(base_id: str, config: PretrainedConfig, id2label: dict[int, str] | None) -> PreTrainedModel:
    """The base as the image classifier `AutoModelForImageClassification` loads it as (`CLIPForImageClassification`
    for a full CLIP checkpoint), with a head for `id2label` when given, else the base's own head."""
    model_class = CLIPForImageClassification if config.model_type == "clip" else AutoModelForImageClassification
    labels = {}
    if id2label is not None:
        labels = dict(
            num_labels=len(id2label),
            id2label=id2label,
            label2id={label: index for index, label in id2label.items()},
            ignore_mismatched_sizes=True,
        )
    try:
        return model_class.from_pretrained(base_id, **labels).eval()
    except (OSError, ValueError) as error:
        raise ConversionError(f"Cannot load the base model {base_id}: {first_line(error)}") from None


@torch.no_grad()
def fill_sites(model: PeftModel, tensors: dict[tuple[int, str], SiteTensors], adapter_name: str = "default") -> None:
    """Copy `{(block, site): tensors}` into the adapter; the model must have adapters at exactly those sites."""
    sites = adapter_sites(model, adapter_name)
    if set(tensors) != set(sites):
        raise ConversionError(
            f"Internal mismatch: the checkpoint has adapters at {sorted(tensors)}, hf_vit_adapter built "
            f"{sorted(sites)}. Please report this."
        )
    for key, params in tensors.items():
        site = sites[key]
        for target, name in ((site.down.weight, "down.weight"), (site.up.weight, "up.weight")):
            _copy(target, params[name], key)
        for target, name in ((site.down.bias, "down.bias"), (site.up.bias, "up.bias")):
            if name in params:
                _copy(target, params[name], key)
            else:
                target.zero_()
        if ("scale" in params) != (site.scale is not None):
            raise ConversionError(f"Block {key[0]} ({key[1]}): the checkpoint's and our trainable scales differ.")
        if site.scale is not None:
            _copy(site.scale, params["scale"].reshape(site.scale.shape), key)


@torch.no_grad()
def fill_head(
    model: PeftModel, weight: torch.Tensor, bias: torch.Tensor | None, adapter_name: str = "default"
) -> None:
    """Copy a linear head into the adapter's own copy of the classifier (saved with the adapter)."""
    (head_name,) = classification_head_names(model.base_model.model)
    classifier = getattr(model.base_model.model, head_name).modules_to_save[adapter_name]
    _copy(classifier.weight, weight, "head")
    if bias is None:  # a head without bias
        classifier.bias.zero_()
    else:
        _copy(classifier.bias, bias, "head")


def write_folder(model: PeftModel, base_id: str, output_dir: Path) -> None:
    """`save_pretrained` plus the base's image processor, staged beside `output_dir` and moved into place, so a
    failure leaves nothing behind."""
    check_output_dir(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}-", dir=output_dir.parent))
    try:
        model.save_pretrained(staging)
        try:
            AutoImageProcessor.from_pretrained(base_id).save_pretrained(staging)
        except (OSError, ValueError):
            warnings.warn(
                f"The base model {base_id} has no image processor, so none was saved; pipeline() needs one: save "
                f"one into {output_dir} (e.g. `ViTImageProcessor(...).save_pretrained(...)`).",
                ConversionWarning,
                stacklevel=3,
            )
        if output_dir.exists():
            output_dir.rmdir()  # empty, checked above
        staging.rename(output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _copy(target: torch.Tensor, source: torch.Tensor, where: object) -> None:
    if target.shape != source.shape:
        raise ConversionError(f"{where}: tensor of shape {tuple(source.shape)} does not fit {tuple(target.shape)}.")
    target.copy_(source)


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
